//! Unit tests of the connection and server commands.

use std::net::SocketAddr;

use super::*;
use crate::command::test_support::OwnedArgs;
use crate::config::Config;

fn ctx(extra: &[&str]) -> ServerContext {
    let mut args = vec!["token-server"];
    args.extend_from_slice(extra);
    let config = Config::from_args(args).unwrap();
    let addr: SocketAddr = "127.0.0.1:6409".parse().unwrap();
    ServerContext::new(config, addr, 2)
}

fn session(ctx: &ServerContext) -> Session {
    let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    Session::new(ctx, addr, ctx.resp_addr)
}

fn call(kind: CommandKind, parts: &[&[u8]], s: &mut Session, ctx: &ServerContext) -> Reply {
    let args = OwnedArgs::new(parts);
    run(kind, &args.view(), s, ctx).expect("a reply")
}

#[test]
fn hello_switches_protocol_and_reports_the_server() {
    let c = ctx(&[]);
    let mut s = session(&c);
    let r = call(CommandKind::Hello, &[b"HELLO", b"3"], &mut s, &c);
    assert_eq!(s.protocol, Protocol::Resp3);
    let Reply::Map(pairs) = r else {
        panic!("not a map: {r:?}")
    };
    assert!(pairs.contains(&(Reply::bulk("proto"), Reply::Integer(3))));
    assert!(pairs.contains(&(Reply::bulk("id"), Reply::Integer(s.id as i64))));
    let r = call(CommandKind::Hello, &[b"HELLO", b"4"], &mut s, &c);
    assert!(matches!(r, Reply::Error(t) if t.starts_with("NOPROTO")));
    assert_eq!(
        s.protocol,
        Protocol::Resp3,
        "a refused HELLO changes nothing"
    );
}

#[test]
fn auth_gates_and_checks_the_password() {
    let c = ctx(&["--requirepass", "s3cret"]);
    let mut s = session(&c);
    assert!(!s.authenticated);
    let r = call(CommandKind::Auth, &[b"AUTH", b"nope"], &mut s, &c);
    assert!(matches!(r, Reply::Error(t) if t.starts_with("WRONGPASS")));
    let r = call(CommandKind::Hello, &[b"HELLO", b"3"], &mut s, &c);
    assert!(matches!(r, Reply::Error(t) if t.starts_with("NOAUTH")));
    let r = call(
        CommandKind::Hello,
        &[b"HELLO", b"3", b"AUTH", b"default", b"s3cret"],
        &mut s,
        &c,
    );
    assert!(matches!(r, Reply::Map(_)));
    assert!(s.authenticated);
    call(CommandKind::Reset, &[b"RESET"], &mut s, &c);
    assert!(!s.authenticated);
    assert_eq!(
        call(
            CommandKind::Auth,
            &[b"AUTH", b"default", b"s3cret"],
            &mut s,
            &c
        ),
        Reply::Ok
    );
    assert_eq!(s.protocol, Protocol::Resp2);
}

#[test]
fn auth_without_a_password_configured() {
    let c = ctx(&[]);
    let mut s = session(&c);
    let r = call(CommandKind::Auth, &[b"AUTH", b"x"], &mut s, &c);
    assert!(matches!(r, Reply::Error(t) if t.contains("without any password configured")));
}

#[test]
fn client_names() {
    let c = ctx(&[]);
    let mut s = session(&c);
    assert_eq!(
        call(CommandKind::Client, &[b"CLIENT", b"GETNAME"], &mut s, &c),
        Reply::Null
    );
    assert_eq!(
        call(
            CommandKind::Client,
            &[b"client", b"setname", b"w1"],
            &mut s,
            &c
        ),
        Reply::Ok
    );
    assert_eq!(
        call(CommandKind::Client, &[b"CLIENT", b"GETNAME"], &mut s, &c),
        Reply::bulk("w1")
    );
    let r = call(
        CommandKind::Client,
        &[b"CLIENT", b"SETNAME", b"a b"],
        &mut s,
        &c,
    );
    assert!(r.is_error());
    let r = call(CommandKind::Client, &[b"CLIENT", b"KILL"], &mut s, &c);
    assert!(matches!(r, Reply::Error(t) if t.starts_with("ERR unknown subcommand 'KILL'")));
    let Reply::Verbatim(line) = call(CommandKind::Client, &[b"CLIENT", b"INFO"], &mut s, &c) else {
        panic!("CLIENT INFO is text")
    };
    assert!(line.contains(&format!("id={} ", s.id)) && line.contains("name=w1 "));
}

#[test]
fn command_replies_follow_the_spec_table() {
    let c = ctx(&[]);
    let mut s = session(&c);
    assert_eq!(
        call(CommandKind::Command, &[b"COMMAND", b"COUNT"], &mut s, &c),
        Reply::Integer(COMMANDS_LEN)
    );
    let Reply::Array(items) = call(
        CommandKind::Command,
        &[b"COMMAND", b"INFO", b"lock", b"nosuch"],
        &mut s,
        &c,
    ) else {
        panic!("COMMAND INFO is an array")
    };
    assert_eq!(items.len(), 2);
    assert_eq!(items[1], Reply::Null);
    let Reply::Array(fields) = &items[0] else {
        panic!("entry is an array")
    };
    assert_eq!(fields[0], Reply::bulk("lock"));
    assert_eq!(fields[1], Reply::Integer(-2));
    assert_eq!(fields[3], Reply::Integer(1), "the id is the first key");
}

const COMMANDS_LEN: i64 = crate::command::COMMANDS.len() as i64;

#[test]
fn info_sections_and_config_get() {
    let c = ctx(&["--appendfsync", "everysec"]);
    let mut s = session(&c);
    let Reply::Verbatim(text) = call(CommandKind::Info, &[b"INFO"], &mut s, &c) else {
        panic!("INFO is text")
    };
    for section in [
        "# Server",
        "# Clients",
        "# Stats",
        "# Locks",
        "locked:0",
        "completed:0",
    ] {
        assert!(text.contains(section), "{section} missing from {text}");
    }
    let Reply::Verbatim(text) = call(CommandKind::Info, &[b"INFO", b"LOCKS"], &mut s, &c) else {
        panic!("INFO is text")
    };
    assert!(text.starts_with("# Locks") && !text.contains("# Server"));
    let r = call(
        CommandKind::Config,
        &[b"CONFIG", b"GET", b"appendfsync"],
        &mut s,
        &c,
    );
    assert_eq!(
        r,
        Reply::Map(vec![(Reply::bulk("appendfsync"), Reply::bulk("everysec"))])
    );
    let c = ctx(&["--requirepass", "pw"]);
    let r = call(CommandKind::Config, &[b"CONFIG", b"GET", b"*"], &mut s, &c);
    let mut text = Vec::new();
    r.encode(Protocol::Resp2, &mut text);
    assert!(
        !String::from_utf8_lossy(&text).contains("pw\r"),
        "password leaked"
    );
}

#[test]
fn select_and_quit() {
    let c = ctx(&[]);
    let mut s = session(&c);
    assert_eq!(
        call(CommandKind::Select, &[b"SELECT", b"0"], &mut s, &c),
        Reply::Ok
    );
    assert!(call(CommandKind::Select, &[b"SELECT", b"1"], &mut s, &c).is_error());
    assert_eq!(call(CommandKind::Quit, &[b"QUIT"], &mut s, &c), Reply::Ok);
    assert!(s.close_after_reply);
}

#[test]
fn auth_penalties_start_after_three_failures_and_double_to_two_seconds() {
    use crate::command::admin::auth_penalty_ms;
    let schedule: Vec<u64> = (1..=10).map(auth_penalty_ms).collect();
    assert_eq!(schedule, [0, 0, 0, 100, 200, 400, 800, 1600, 2000, 2000]);
    assert_eq!(auth_penalty_ms(u32::MAX), 2000);
}
