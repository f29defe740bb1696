//! Lock keys: 128 random bits, shown to clients as 32 hex characters.

/// A 128-bit lock key.
pub type KeyBytes = [u8; 16];

/// A key as 32 lowercase hex characters.
pub fn hex_key(key: &KeyBytes) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in key.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    out
}

/// Parses a key from its 32-character hex form (either case). `None` if malformed: such a key
/// can never match a lock.
pub fn parse_key(text: &[u8]) -> Option<KeyBytes> {
    if text.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        key[i] = (hi * 16 + lo) as u8;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hex_round_trip() {
        let key: KeyBytes = *b"\x00\x01\x7f\x80\xff0123456789a";
        let hex = hex_key(&key);
        assert_eq!(parse_key(&hex), Some(key));
        assert_eq!(parse_key(&hex.to_ascii_uppercase()), Some(key));
        assert_eq!(parse_key(b"zz"), None);
        assert_eq!(parse_key(&[b'g'; 32]), None);
    }
}
