//! The connector's state file (real mode): what Control Hub's registration gave it
//! ([`SavedRegistration`]: its node id and connector token), kept across a process restart as
//! a real Expressway keeps its registration. The registration token is single use, so without
//! this file a restarted connector could not register again.
//!
//! The file sits next to the config file: `connector.yaml` → `connector.state.json`
//! ([`path_for`]). It holds a bearer token, so it is written with mode 0600, and atomically (a
//! temporary file in the same directory, synced, then renamed over the old one), so a crash
//! mid-write leaves the old file or the new one, never half of one. A file that cannot be read
//! or parsed is reported and ignored: the connector then registers with its registration token.

use crate::core::node::SavedRegistration;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Longest state file read: the JSON of one node id and one token is under 1 KiB; a bound
/// keeps a wrong path (a log file, a device) from being read whole.
pub const STATE_BYTES_MAX: u64 = 64 * 1024;

/// The state file of the config file `config`: same directory, `<stem>.state.json`.
pub fn path_for(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map_or_else(|| "connector".into(), |s| s.to_string_lossy().into_owned());
    config.with_file_name(format!("{stem}.state.json"))
}

/// Reads the state file at `path`: `Ok(None)` if there is none.
///
/// # Errors
/// The file exists but cannot be read, is larger than [`STATE_BYTES_MAX`], or is not a saved
/// registration (the message names the file).
pub fn load(path: &Path) -> Result<Option<SavedRegistration>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let mut text = String::new();
    let read = std::io::Read::read_to_string(
        &mut std::io::Read::take(file, STATE_BYTES_MAX + 1),
        &mut text,
    );
    read.map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if text.len() as u64 > STATE_BYTES_MAX {
        return Err(format!(
            "{}: longer than {STATE_BYTES_MAX} bytes: not a state file",
            path.display()
        ));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: not a saved registration: {e}", path.display()))
}

/// Writes `saved` to `path` atomically, readable and writable by its owner only.
///
/// # Errors
/// The temporary file cannot be created, written, synced or renamed.
pub fn save(path: &Path, saved: &SavedRegistration) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(saved)?;
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> SavedRegistration {
        SavedRegistration {
            connector_id: "exp-a-1".into(),
            connector_token: "con-0123".into(),
        }
    }

    #[test]
    fn next_to_the_config() {
        assert_eq!(
            path_for(Path::new("/etc/hm/connector.yaml")),
            PathBuf::from("/etc/hm/connector.state.json")
        );
        assert_eq!(path_for(Path::new("c.yml")), PathBuf::from("c.state.json"));
    }

    #[test]
    fn saved_atomically_owner_only_and_read_back() {
        let dir = std::env::temp_dir().join(format!("hm-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("connector.state.json");
        let _ = std::fs::remove_file(&path);
        assert_eq!(load(&path), Ok(None), "no file yet");
        save(&path, &saved()).unwrap();
        save(&path, &saved()).unwrap();
        assert_eq!(load(&path), Ok(Some(saved())));
        assert!(!path.with_extension("json.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        std::fs::write(&path, "{\"connector_id\": 3}").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.contains("connector.state.json"), "{err}");
        std::fs::write(&path, vec![b' '; STATE_BYTES_MAX as usize + 10]).unwrap();
        assert!(load(&path).unwrap_err().contains("longer than"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
