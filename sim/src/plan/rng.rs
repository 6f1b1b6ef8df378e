//! Seeded randomness: one `u64` seed, one ChaCha RNG per component, derived by name.
//!
//! Deriving by name (SHA-256 of the seed and the name) means adding a component never shifts
//! another component's stream, so unrelated changes do not perturb a reproduced failure.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng as _;
use sha2::{Digest as _, Sha256};

/// Hands out independent RNGs derived from the run seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngFactory {
    seed: u64,
}

impl RngFactory {
    /// A factory for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The RNG for the component called `name` (e.g. `jabber/user00042`).
    pub fn named(&self, name: &str) -> ChaCha8Rng {
        ChaCha8Rng::from_seed(self.derive(name))
    }

    /// A `u64` sub-seed for `name`, for libraries that take one (turmoil).
    pub fn sub_seed(&self, name: &str) -> u64 {
        let b = self.derive(name);
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    fn derive(&self, name: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"hmsim-rng-v1\0");
        h.update(self.seed.to_le_bytes());
        h.update(name.as_bytes());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt as _;

    #[test]
    fn same_name_same_stream_other_name_other_stream() {
        let f = RngFactory::new(7);
        let a: u64 = f.named("a").random();
        assert_eq!(a, f.named("a").random::<u64>());
        assert_ne!(a, f.named("b").random::<u64>());
        assert_ne!(a, RngFactory::new(8).named("a").random::<u64>());
    }
}
