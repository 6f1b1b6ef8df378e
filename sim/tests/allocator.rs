//! With the `mimalloc` feature `hmsim` allocates through mimalloc (`sim`'s global allocator):
//! glibc's malloc and free were about 14 % of a 3,000-user run's profile (`_int_malloc`,
//! `unlink_chunk`, `free`, `malloc_consolidate`; README, "Scale", session 9). Without it, glibc's
//! malloc (the default: mimalloc keeps about a fifth more memory). Asked with
//! `MIMALLOC_SHOW_STATS=1`, mimalloc prints its statistics on stderr as the process ends;
//! glibc's malloc knows no such variable and prints nothing.

use std::process::Command;

#[test]
fn hmsim_allocates_through_the_allocator_its_features_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_hmsim"))
        .args([
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/smoke.yaml"),
        ])
        .env("MIMALLOC_SHOW_STATS", "1")
        .output()
        .expect("hmsim runs");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stats = stderr.contains("heap stats:");
    assert_eq!(
        stats,
        cfg!(feature = "mimalloc"),
        "mimalloc statistics on stderr: {stats}, feature on: {}\n{stderr}",
        cfg!(feature = "mimalloc")
    );
}
