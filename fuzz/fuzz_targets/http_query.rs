//! Any query string, for every endpoint, through the HTTP parameter parser: no panic, and an
//! accepted id is never empty nor over the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_server::command::CommandLimits;
use token_server::http::query::command;
use token_server::http::status::Endpoint;

fuzz_target!(|data: &[u8]| {
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
