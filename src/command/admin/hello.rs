//! `HELLO [protover [AUTH username password] [SETNAME clientname]]`.

use crate::command::admin::{Session, auth, client};
use crate::context::ServerContext;
use crate::protocol::{Args, Protocol, Reply};

/// The Redis version this server answers as, so clients that gate features on it work.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// # Format
/// ```text
/// HELLO [protover [AUTH username password] [SETNAME clientname]]
/// ```
/// Switches the connection to RESP2 or RESP3 and replies with a map describing the server.
pub fn hello(args: &Args<'_>, s: &mut Session, ctx: &ServerContext) -> Reply {
    let mut protocol = s.protocol;
    if let Some(ver) = args.get(1) {
        protocol = match std::str::from_utf8(ver)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
            None => {
                return Reply::error("ERR Protocol version is not an integer or out of range");
            }
        };
    }
    let mut name = None;
    let mut authed = false;
    let mut i = 2;
    while let Some(opt) = args.get(i) {
        if opt.eq_ignore_ascii_case(b"AUTH") && args.len() > i + 2 {
            let user = args.get(i + 1);
            let pass = args.get(i + 2).unwrap_or_default();
            if !auth::check(user, pass, ctx) {
                return auth::WRONGPASS;
            }
            authed = true;
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && args.len() > i + 1 {
            let n = args.get(i + 1).unwrap_or_default();
            if !client::valid_name(n) {
                return client::BAD_NAME;
            }
            name = Some(n);
            i += 2;
        } else {
            return Reply::Error(
                format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(opt)
                )
                .into(),
            );
        }
    }
    if !s.authenticated && !authed {
        return Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        );
    }
    s.authenticated = true;
    if let Some(n) = name {
        s.name = (!n.is_empty()).then(|| bytes::Bytes::copy_from_slice(n));
    }
    s.protocol = protocol;
    let proto_num = if protocol == Protocol::Resp3 { 3 } else { 2 };
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (Reply::bulk("version"), Reply::bulk(REDIS_COMPAT_VERSION)),
        (
            Reply::bulk("token_server_version"),
            Reply::bulk(env!("CARGO_PKG_VERSION")),
        ),
        (Reply::bulk("proto"), Reply::Integer(proto_num)),
        (Reply::bulk("id"), Reply::Integer(s.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ])
}
