//! Message bodies a workload asks for: a size in bytes (fixed or drawn) and a character set,
//! drawn by the sending client from its own seeded RNG. Without a [`BodyPlan`] the clients send
//! their short word lists, drawn as before (a plan changes nothing for scenarios without one).
//!
//! Bodies never hold `[` or `]`: the observer follows a message by the `[[id]]` tag the client
//! appends, and a body must not forge or split one. Nor do they hold characters XML 1.0 cannot
//! carry (C0 controls other than tab, line feed and carriage return): no client could send them.

use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;

/// Which characters a body is drawn from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyChars {
    /// Letters, digits, space and punctuation that XML carries as they are.
    #[default]
    Ascii,
    /// What XML must escape or normalises (`<&>"'`, carriage return, tab, line feed) among
    /// letters and spaces.
    Xml,
    /// Non-ASCII: accented letters, CJK, right-to-left script, combining marks, emoji (with
    /// zero-width joiners and outside the Basic Multilingual Plane).
    Unicode,
    /// All of the above.
    Mixed,
}

/// Printable ASCII that XML carries unescaped (no `<&>"'`, no brackets).
const ASCII: &str =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-_()/+=*#%@~";
/// XML's special characters, with letters and spaces around them.
const XML: [&str; 11] = [
    "<", "&", ">", "\"", "'", "\r", "\n", "\t", " ", "x", "&amp;",
];
/// Non-ASCII pieces, 2 to 11 bytes each.
const UNICODE: [&str; 12] = [
    "é",
    "ß",
    "ü",
    "中",
    "文",
    "ש",
    "Ω",
    "😀",
    "🚀",
    "👩\u{200d}💻",
    "e\u{301}",
    "\u{a0}",
];

impl BodyChars {
    /// The most wire bytes one byte of such a body can become in an XMPP stanza: `&` is
    /// written `&amp;` and a carriage return `&#13;` (5 bytes for 1); the others are written
    /// as they are.
    pub fn escape_factor_max(self) -> usize {
        match self {
            BodyChars::Ascii | BodyChars::Unicode => 1,
            BodyChars::Xml | BodyChars::Mixed => 5,
        }
    }

    /// One piece of text of this set.
    fn piece(self, rng: &mut ChaCha8Rng) -> &'static str {
        let set = match self {
            BodyChars::Mixed => {
                [BodyChars::Ascii, BodyChars::Xml, BodyChars::Unicode][rng.random_range(0..3)]
            }
            other => other,
        };
        match set {
            BodyChars::Xml => XML[rng.random_range(0..XML.len())],
            BodyChars::Unicode => UNICODE[rng.random_range(0..UNICODE.len())],
            _ => {
                let i = rng.random_range(0..ASCII.len());
                &ASCII[i..=i]
            }
        }
    }
}

/// A workload's bodies: sizes in bytes of UTF-8 (drawn uniformly from `min..=max`; equal for a
/// fixed size) and their characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPlan {
    /// Smallest body, in bytes.
    pub min_bytes: usize,
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// Characters.
    pub chars: BodyChars,
}

impl BodyPlan {
    /// A body of the plan: exactly the drawn number of bytes (a multi-byte piece that would
    /// not fit is replaced by ASCII letters).
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> String {
        let len = rng.random_range(self.min_bytes..=self.max_bytes.max(self.min_bytes));
        let mut out = String::with_capacity(len);
        // Each piece adds at least one byte: the loop ends within `len` turns.
        while out.len() < len {
            let piece = self.chars.piece(rng);
            if out.len() + piece.len() <= len {
                out.push_str(piece);
            } else {
                out.push('a');
            }
        }
        out
    }
}

/// FNV-1a of a body: what the sender and each receiver record, so that the observer can tell
/// a body that arrived altered from one that arrived byte for byte.
pub fn body_digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn bodies_have_the_drawn_size_and_only_their_characters() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for chars in [
            BodyChars::Ascii,
            BodyChars::Xml,
            BodyChars::Unicode,
            BodyChars::Mixed,
        ] {
            let plan = BodyPlan {
                min_bytes: 1,
                max_bytes: 3_000,
                chars,
            };
            for _ in 0..50 {
                let b = plan.draw(&mut rng);
                assert!((1..=3_000).contains(&b.len()), "{chars:?}: {}", b.len());
                assert!(!b.contains('[') && !b.contains(']'), "{chars:?}");
                let bad = |c: char| c < ' ' && !matches!(c, '\t' | '\n' | '\r');
                assert!(!b.chars().any(bad), "{chars:?}");
            }
            let fixed = BodyPlan {
                min_bytes: 40_000,
                max_bytes: 40_000,
                chars,
            };
            assert_eq!(fixed.draw(&mut rng).len(), 40_000, "{chars:?}");
        }
        let mixed = BodyPlan {
            min_bytes: 2_000,
            max_bytes: 2_000,
            chars: BodyChars::Mixed,
        }
        .draw(&mut rng);
        assert!(mixed.contains('&') && mixed.contains('😀') && mixed.contains('Q'));
    }

    #[test]
    fn the_digest_tells_bodies_apart() {
        assert_eq!(body_digest("a\r\nb"), body_digest("a\r\nb"));
        assert_ne!(body_digest("a\r\nb"), body_digest("a\nb"));
        assert_ne!(body_digest(""), body_digest(" "));
    }
}
