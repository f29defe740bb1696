//! Numbers in arguments, one way for RESP and HTTP alike: decimal digits only (no sign, no
//! `+`, no spaces), and leases and waits capped at [`MAX_LEASE_MS`].

/// The longest accepted lease or wait, in milliseconds: 2^40 (about 34 years).
pub const MAX_LEASE_MS: u64 = 1 << 40;

/// A whole number written as decimal digits only; `None` if anything else, or over `u64`.
pub fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Milliseconds from 1 to [`MAX_LEASE_MS`]: a lease.
pub fn parse_lease_ms(text: &[u8]) -> Option<u64> {
    parse_u64(text).filter(|ms| (1..=MAX_LEASE_MS).contains(ms))
}

/// Milliseconds from 0 to [`MAX_LEASE_MS`]: a wait (0 is no wait).
pub fn parse_wait(text: &[u8]) -> Option<u64> {
    parse_u64(text).filter(|&ms| ms <= MAX_LEASE_MS)
}

/// A lease given as `PX ms` or `EX s`, in milliseconds; `None` if the unit is neither, the
/// value is not digits, or the lease is 0 or over [`MAX_LEASE_MS`].
pub fn parse_lease(unit: &[u8], value: &[u8]) -> Option<u64> {
    let n = parse_u64(value)?;
    let ms = if unit.eq_ignore_ascii_case(b"PX") {
        n
    } else if unit.eq_ignore_ascii_case(b"EX") {
        n.checked_mul(1000)?
    } else {
        return None;
    };
    (1..=MAX_LEASE_MS).contains(&ms).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_only() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b" 1",
            b"1 ",
            b"1.5",
            b"0x10",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_u64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn leases_and_waits_are_capped() {
        assert_eq!(parse_lease(b"px", b"1"), Some(1));
        assert_eq!(parse_lease(b"EX", b"2"), Some(2000));
        assert_eq!(parse_lease(b"PX", b"0"), None);
        assert_eq!(parse_lease(b"PX", b"+5"), None);
        assert_eq!(parse_lease(b"PX", b"1099511627776"), Some(MAX_LEASE_MS));
        assert_eq!(parse_lease(b"PX", b"1099511627777"), None);
        assert_eq!(parse_lease(b"EX", b"1099511628"), None);
        assert_eq!(parse_lease(b"XX", b"5"), None);
        assert_eq!(parse_lease_ms(b"1099511627776"), Some(MAX_LEASE_MS));
        assert_eq!(parse_lease_ms(b"0"), None);
        assert_eq!(parse_wait(b"0"), Some(0));
        assert_eq!(parse_wait(b"1099511627777"), None);
    }
}
