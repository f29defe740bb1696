//! Lock keys: 128 bits from a cryptographically secure generator.
//!
//! Each shard owns one [`KeyGenerator`], seeded from the operating system at start-up
//! (ChaCha-based `StdRng`), so generating a key never takes a lock or a system call. Keys are
//! unguessable: they are the only proof of holding a lock.

use rand::rngs::{StdRng, SysRng};
use rand::{Rng, SeedableRng};

use crate::types::KeyBytes;

/// A source of fresh keys. The table's commands take one so tests can supply their own.
pub trait KeySource {
    /// A fresh key.
    fn next_key(&mut self) -> KeyBytes;
}

/// The production key source: a CSPRNG seeded from the OS.
#[derive(Debug)]
pub struct KeyGenerator(StdRng);

impl KeyGenerator {
    /// A generator seeded from the operating system's entropy source.
    pub fn from_os() -> std::io::Result<Self> {
        StdRng::try_from_rng(&mut SysRng)
            .map(KeyGenerator)
            .map_err(|e| std::io::Error::other(format!("cannot seed the key generator: {e}")))
    }
}

impl KeySource for KeyGenerator {
    fn next_key(&mut self) -> KeyBytes {
        let mut key = [0u8; 16];
        self.0.fill_bytes(&mut key);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ() {
        let mut g = KeyGenerator::from_os().unwrap();
        let a = g.next_key();
        let b = g.next_key();
        assert_ne!(a, b);
        let mut h = KeyGenerator::from_os().unwrap();
        assert_ne!(a, h.next_key(), "two generators must not share a seed");
    }
}
