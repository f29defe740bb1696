//! Protected mode: who may connect at all, decided once per connection at accept time.
//!
//! Like Redis, a server with `--protected-mode yes` (the default) and no password accepts
//! clients only over loopback. Anyone else gets an explanation and is disconnected before a
//! byte of theirs is read, over RESP ([`DENIED`]) and HTTP alike. With a password set, or
//! `--protected-mode no`, everyone may connect and authentication decides the rest.
//! A server bound only to loopback never sees another client, so the rule costs it nothing.
//!
//! Passwords are compared by [`crate::types::password_matches`], for AUTH, HELLO and HTTP alike.

use std::net::IpAddr;

use crate::config::Config;

/// The RESP reply to a refused client: Redis's explanation, with this server's remedies.
pub const DENIED: &[u8] = b"-DENIED token-server is running in protected mode because \
protected mode is enabled and no password is set for the default user. In this mode \
connections are only accepted from the loopback interface. If you want to connect from \
external computers you may adopt one of the following solutions: 1) Set up a password with \
--requirepass-file, TOKEN_SERVER_PASSWORD or --requirepass and restart the server; clients \
then authenticate with AUTH. 2) If you started the server manually just for testing, \
restart it with the '--protected-mode no' option, however MAKE SURE the server is not \
publicly accessible from the internet if you do so. NOTE: You only need to do one of the \
above things in order for the server to start accepting connections from the outside.\r\n";

/// Whether a client at `peer` must be refused under protected mode.
pub fn refuses(config: &Config, peer: IpAddr) -> bool {
    protects(config) && !is_loopback(peer)
}

/// Whether protected mode is in force: on, and no password set.
pub fn protects(config: &Config) -> bool {
    config.security.protected_mode && config.requirepass.is_none()
}

/// Loopback, including IPv4 loopback written as an IPv6-mapped address (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::from_args(std::iter::once("token-server").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn only_loopback_without_a_password() {
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let c = config(&[]);
        assert!(refuses(&c, remote));
        assert!(!refuses(&c, local) && !refuses(&c, mapped) && !refuses(&c, v6));
        assert!(refuses(&c, "::ffff:192.0.2.7".parse().unwrap()));
        assert!(!refuses(&config(&["--requirepass", "pw"]), remote));
        assert!(!refuses(&config(&["--protected-mode", "no"]), remote));
    }

    #[test]
    fn the_explanation_is_one_resp_error_line() {
        assert!(DENIED.starts_with(b"-DENIED "));
        assert!(DENIED.ends_with(b"\r\n"));
        assert_eq!(DENIED.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(DENIED.iter().filter(|&&b| b == b'\r').count(), 1);
    }
}
