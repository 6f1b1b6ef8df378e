//! Text a peer supplied, made safe to log: control characters escaped, bounded in length.
//!
//! Error bodies, SOAP faults, stanza error texts and stream errors come from the network and
//! end up in log lines and on the status page. A raw line feed in them would let a peer forge
//! a whole log line, and bidirectional overrides would make a line read differently from what
//! it holds; [`printable`] escapes both.

/// Bytes of a peer's text kept in one log line or status field: room for a useful error
/// message, small enough that a peer cannot fill the log.
pub const PEER_TEXT_BYTES_MAX: usize = 200;

/// Whether `c` must not appear raw in a log line: control characters (C0, DEL, C1), the
/// Unicode line and paragraph separators, and bidirectional formatting characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `bytes` (a peer's text, any encoding) as one printable line of at most `max_bytes` input
/// bytes: invalid UTF-8 becomes U+FFFD, `\n` `\r` `\t` are written as those escapes and every
/// other character of [`needs_escape`] as `\u{…}`; a backslash is doubled, so an escape in
/// the output always means one in the input.
pub fn printable(bytes: &[u8], max_bytes: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max_bytes)]);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_log_line_stays_on_one_line() {
        let body = b"denied\n2026-12-06T12:00:00Z  INFO connector status phase=running";
        let shown = printable(body, PEER_TEXT_BYTES_MAX);
        assert_eq!(
            shown,
            "denied\\n2026-12-06T12:00:00Z  INFO connector status phase=running"
        );
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn controls_bidi_and_backslashes_are_escaped() {
        let shown = printable("a\u{1b}[31m\u{202e}b\\n\r\t\u{85}".as_bytes(), 100);
        assert_eq!(shown, "a\\u{1b}[31m\\u{202e}b\\\\n\\r\\t\\u{85}");
    }

    #[test]
    fn the_length_is_bounded_and_invalid_utf8_replaced() {
        let long = vec![b'x'; 1000];
        assert_eq!(printable(&long, 200).len(), 200);
        assert_eq!(printable(b"ok\xff", 200), "ok\u{fffd}");
        // A character cut by the bound is replaced, never a panic.
        assert_eq!(printable("é".as_bytes(), 1), "\u{fffd}");
    }
}
