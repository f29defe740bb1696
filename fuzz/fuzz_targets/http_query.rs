//! Any query string, for every endpoint, through the HTTP parameter parser: no panic, and an
//! accepted id is never empty nor over the limit. The same bytes as an `Authorization` header
//! value: the bearer check never panics and accepts exactly `Bearer <password>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_server::command::CommandLimits;
use token_server::http::gate::bearer_matches;
use token_server::http::query::command;
use token_server::http::status::Endpoint;

fuzz_target!(|data: &[u8]| {
    let expected = data.split_at_checked(7).is_some_and(|(scheme, token)| {
        scheme.eq_ignore_ascii_case(b"bearer ") && token.trim_ascii() == b"pw"
    });
    assert_eq!(bearer_matches(data, b"pw"), expected);
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let limits = CommandLimits::default();
    for endpoint in [
        Endpoint::Lock,
        Endpoint::Unlock,
        Endpoint::Complete,
        Endpoint::Renew,
        Endpoint::Status,
    ] {
        if let Ok(cmd) = command(endpoint, Some(query), &limits) {
            assert!(!cmd.id().is_empty() && cmd.id().len() <= limits.max_id_len);
        }
    }
});
