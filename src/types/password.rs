//! The one password comparison, for AUTH, HELLO and HTTP alike.

use subtle::ConstantTimeEq;

/// Whether `given` is the password `expected`. Both are hashed (SHA-256) and the digests
/// compared in constant time, so the time taken says nothing about the password, not even its
/// length (Redis compares the same way).
pub fn password_matches(expected: &[u8], given: &[u8]) -> bool {
    let expected = ring::digest::digest(&ring::digest::SHA256, expected);
    let given = ring::digest::digest(&ring::digest::SHA256, given);
    expected.as_ref().ct_eq(given.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_passwords_only() {
        assert!(password_matches(b"pw", b"pw"));
        assert!(password_matches(b"", b""));
        for other in [&b""[..], b"p", b"pw ", b"PW", b"pwpw"] {
            assert!(!password_matches(b"pw", other), "{other:?}");
        }
    }
}
