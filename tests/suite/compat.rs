//! Redis compatibility: connection commands, introspection and the exact
//! wording of generic errors.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Exec, FOREIGN_KEY, Proto, Server, bulk, encode_command, expect_err, expect_key, expect_ok,
    raw_key, show, value_text,
};
use redis::Value;

fn text(v: &Value) -> String {
    value_text(v).unwrap_or_else(|| panic!("expected a string reply, got {v:?}"))
}

/// Normalises a HELLO reply (RESP3 map or RESP2 flat array) into pairs.
fn hello_fields(v: &Value) -> HashMap<String, Value> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs.clone(),
        Value::Array(items) => {
            assert!(items.len() % 2 == 0, "odd-length HELLO array: {v:?}");
            items
                .chunks(2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect()
        }
        other => panic!("unexpected HELLO reply {other:?}"),
    };
    pairs.into_iter().map(|(k, v)| (text(&k), v)).collect()
}

fn check_hello_fields(fields: &HashMap<String, Value>, proto: i64) {
    for name in [
        "server", "version", "proto", "id", "mode", "role", "modules",
    ] {
        assert!(
            fields.contains_key(name),
            "HELLO lacks `{name}`: {fields:?}"
        );
    }
    assert_eq!(fields["proto"], Value::Int(proto), "HELLO proto field");
    assert!(
        matches!(fields["id"], Value::Int(_)),
        "HELLO id must be an integer: {:?}",
        fields["id"]
    );
    for name in ["server", "version", "mode", "role"] {
        assert!(
            value_text(&fields[name]).is_some_and(|s| !s.is_empty()),
            "HELLO `{name}` must be a non-empty string: {:?}",
            fields[name]
        );
    }
    assert!(
        matches!(fields["modules"], Value::Array(_) | Value::Set(_)),
        "HELLO modules must be an array: {:?}",
        fields["modules"]
    );
}

// ---- HELLO ----------------------------------------------------------------

#[test]
fn hello_3_returns_map() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    let reply = con.run(&["HELLO", "3"]).expect("HELLO 3");
    assert!(
        matches!(reply, Value::Map(_)),
        "HELLO 3 must reply with a map: {reply:?}"
    );
    check_hello_fields(&hello_fields(&reply), 3);
    // The connection keeps working after the switch.
    expect_key(con.run(&["LOCK", "after-hello"]), "LOCK after HELLO 3");
}

#[test]
fn hello_3_raw_is_resp3_map() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"HELLO", b"3"]));
    let reply = raw.read_reply();
    assert!(
        reply.starts_with(b"%"),
        "HELLO 3 must be a RESP3 map: {}",
        show(&reply)
    );
    // Simple replies look the same in RESP3.
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "PING after HELLO 3");
}

#[test]
fn hello_2_returns_flat_array() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp3);
    let reply = con.run(&["HELLO", "2"]).expect("HELLO 2");
    match &reply {
        Value::Array(items) => assert!(items.len() >= 14, "HELLO 2 too short: {reply:?}"),
        other => panic!("HELLO 2 must reply with a flat array, got {other:?}"),
    }
    check_hello_fields(&hello_fields(&reply), 2);

    let mut raw = server.raw();
    raw.send(b"HELLO 2\r\n");
    let bytes = raw.read_reply();
    assert!(bytes.starts_with(b"*"), "HELLO 2 raw: {}", show(&bytes));
}

#[test]
fn hello_over_resp3_client_reports_proto_3() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp3);
    let reply = con.run(&["HELLO", "3"]).expect("HELLO 3");
    check_hello_fields(&hello_fields(&reply), 3);
    // HELLO's id is the connection's CLIENT ID.
    let id = con.run(&["CLIENT", "ID"]).expect("CLIENT ID");
    assert_eq!(hello_fields(&reply)["id"], id, "HELLO id vs CLIENT ID");
}

#[test]
fn hello_4_is_noproto() {
    let server = Server::start(&["--shards", "2"]);
    for proto in Proto::ALL {
        let mut con = server.connection(proto);
        let err = expect_err(con.run(&["HELLO", "4"]), "NOPROTO", &[], "HELLO 4");
        assert!(err.detail().is_some_and(|d| !d.is_empty()));
        // The connection survives with its protocol unchanged.
        expect_key(
            con.run(&["LOCK", &format!("{proto:?}")]),
            "LOCK after HELLO 4",
        );
    }
    let mut raw = server.raw();
    raw.send(b"HELLO 4\r\n");
    let reply = raw.read_reply();
    assert!(reply.starts_with(b"-NOPROTO "), "{}", show(&reply));
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "PING after HELLO 4");
}

// ---- PING / ECHO / SELECT / QUIT / RESET ----------------------------------

#[test]
fn ping_and_echo() {
    let server = Server::start(&["--shards", "2"]);
    for proto in Proto::ALL {
        let mut con = server.connection(proto);
        assert_eq!(
            con.run(&["PING"]).unwrap(),
            Value::SimpleString("PONG".into())
        );
        assert_eq!(
            con.run(&["ping", "hello world"]).unwrap(),
            Value::BulkString(b"hello world".to_vec())
        );
        assert_eq!(
            con.run(&["ECHO", "x"]).unwrap(),
            Value::BulkString(b"x".to_vec())
        );
        assert_eq!(
            con.exec(&[b"echo", b"bin\0\r\n\xff"]).unwrap(),
            Value::BulkString(b"bin\0\r\n\xff".to_vec())
        );
        assert_eq!(
            con.run(&["ECHO", ""]).unwrap(),
            Value::BulkString(Vec::new())
        );
    }
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "PING");
    raw.send(&encode_command(&[b"PING", b"msg"]));
    raw.expect_bytes(&bulk(b"msg"), "PING msg");
    raw.send(&encode_command(&[b"ECHO", b"x"]));
    raw.expect_bytes(&bulk(b"x"), "ECHO x");
}

#[test]
fn select() {
    let server = Server::start(&["--shards", "2"]);
    for proto in Proto::ALL {
        let mut con = server.connection(proto);
        expect_ok(con.run(&["SELECT", "0"]), "SELECT 0");
        let err = con
            .run(&["SELECT", "1"])
            .expect_err("SELECT 1 must be an error");
        assert!(err.code().is_some(), "SELECT 1: {err:?}");
        // Still on the working database.
        expect_key(
            con.run(&["LOCK", &format!("{proto:?}")]),
            "LOCK after SELECT",
        );
    }
}

#[test]
fn quit_replies_ok_then_closes() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(b"QUIT\r\n");
    let rest = raw.read_until_closed(Duration::from_secs(10));
    assert_eq!(show(&rest), show(b"+OK\r\n"));

    let mut raw = server.raw();
    raw.send(&encode_command(&[b"quit"]));
    let rest = raw.read_until_closed(Duration::from_secs(10));
    assert_eq!(show(&rest), show(b"+OK\r\n"));

    // Commands pipelined before QUIT are answered; nothing after it is.
    let mut raw = server.raw();
    raw.send(b"PING\r\nLOCK quit-id\r\nQUIT\r\nLOCK never\r\n");
    raw.expect_bytes(b"+PONG\r\n", "PING before QUIT");
    raw_key(&raw.read_reply());
    let rest = raw.read_until_closed(Duration::from_secs(10));
    assert_eq!(show(&rest), show(b"+OK\r\n"));

    let mut con = server.connection(Proto::Resp2);
    expect_err(con.run(&["LOCK", "quit-id"]), "LOCKED", &[], "LOCK quit-id");
    expect_key(
        con.run(&["LOCK", "never"]),
        "LOCK of the id sent after QUIT",
    );
}

#[test]
fn reset_replies_reset() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(b"RESET\r\n");
    raw.expect_bytes(b"+RESET\r\n", "RESET");
    raw.send(&encode_command(&[b"reset"]));
    raw.expect_bytes(b"+RESET\r\n", "reset (multibulk)");
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "PING after RESET");

    let mut con = server.connection(Proto::Resp3);
    assert_eq!(
        con.run(&["RESET"]).unwrap(),
        Value::SimpleString("RESET".into())
    );
}

// ---- CLIENT ---------------------------------------------------------------

#[test]
fn client_subcommands() {
    let server = Server::start(&["--shards", "2"]);
    for proto in Proto::ALL {
        let mut con = server.connection(proto);
        assert_eq!(
            con.run(&["CLIENT", "GETNAME"]).unwrap(),
            Value::Nil,
            "GETNAME before SETNAME"
        );
        expect_ok(con.run(&["CLIENT", "SETNAME", "worker-7"]), "SETNAME");
        assert_eq!(
            con.run(&["CLIENT", "GETNAME"]).unwrap(),
            Value::BulkString(b"worker-7".to_vec())
        );
        expect_ok(
            con.run(&["client", "setname", "renamed"]),
            "lowercase setname",
        );
        assert_eq!(
            con.run(&["client", "getname"]).unwrap(),
            Value::BulkString(b"renamed".to_vec())
        );
        expect_ok(
            con.run(&["CLIENT", "SETINFO", "lib-name", "x"]),
            "SETINFO lib-name",
        );
        expect_ok(
            con.run(&["CLIENT", "SETINFO", "lib-ver", "1.2.3"]),
            "SETINFO lib-ver",
        );

        let id = match con.run(&["CLIENT", "ID"]).unwrap() {
            Value::Int(id) => id,
            other => panic!("CLIENT ID must be an integer, got {other:?}"),
        };
        assert_eq!(
            con.run(&["CLIENT", "ID"]).unwrap(),
            Value::Int(id),
            "CLIENT ID is stable on a connection"
        );

        let info = con.run(&["CLIENT", "INFO"]).unwrap();
        assert!(
            matches!(info, Value::BulkString(_) | Value::VerbatimString { .. }),
            "CLIENT INFO must be a string: {info:?}"
        );
        assert!(text(&info).contains("id="), "CLIENT INFO: {info:?}");
    }
}

#[test]
fn client_ids_differ_between_connections() {
    let server = Server::start(&["--shards", "2"]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut con = server.connection(Proto::Resp2);
        match con.run(&["CLIENT", "ID"]).unwrap() {
            Value::Int(id) => ids.push(id),
            other => panic!("CLIENT ID: {other:?}"),
        }
    }
    let mut dedup = ids.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), ids.len(), "CLIENT IDs repeat: {ids:?}");
}

// ---- COMMAND --------------------------------------------------------------

fn command_name(entry: &Value) -> String {
    match entry {
        Value::Array(items) if !items.is_empty() => text(&items[0]),
        other => panic!("command entry must be a non-empty array, got {other:?}"),
    }
}

#[test]
fn command_introspection() {
    let server = Server::start(&["--shards", "2"]);
    for proto in Proto::ALL {
        let mut con = server.connection(proto);
        let count = match con.run(&["COMMAND", "COUNT"]).unwrap() {
            Value::Int(n) => n,
            other => panic!("COMMAND COUNT must be an integer, got {other:?}"),
        };
        assert!(count >= 3, "COMMAND COUNT = {count}");

        match con.run(&["COMMAND", "INFO", "lock"]).unwrap() {
            Value::Array(entries) => {
                assert_eq!(entries.len(), 1, "COMMAND INFO lock: {entries:?}");
                assert_eq!(command_name(&entries[0]), "lock");
            }
            other => panic!("COMMAND INFO lock must be an array, got {other:?}"),
        }

        let docs = con.run(&["COMMAND", "DOCS"]);
        match docs {
            Ok(Value::Array(_) | Value::Map(_)) => {}
            other => panic!("COMMAND DOCS must return a map/array, got {other:?}"),
        }
        // LOCK's documentation names every option, with its token, as Redis's does.
        let lock_docs = format!("{:?}", con.run(&["COMMAND", "DOCS", "lock"]).unwrap());
        for token in [
            "PX",
            "EX",
            "WAIT",
            "FINGERPRINT",
            "KEY",
            "WITHFENCE",
            "optional",
        ] {
            assert!(
                lock_docs.contains(&format!("{token:?}"))
                    || lock_docs.contains(&format!("\"{token}\"")),
                "COMMAND DOCS lock lacks {token}: {lock_docs}"
            );
        }

        match con.run(&["COMMAND"]).unwrap() {
            Value::Array(entries) => {
                assert!(!entries.is_empty(), "COMMAND returned no commands");
                let names: Vec<String> = entries.iter().map(command_name).collect();
                for name in ["lock", "unlock", "complete"] {
                    assert!(
                        names.iter().any(|n| n == name),
                        "COMMAND lacks `{name}`: {names:?}"
                    );
                }
                assert_eq!(
                    entries.len() as i64,
                    count,
                    "COMMAND length vs COMMAND COUNT"
                );
            }
            other => panic!("COMMAND must return an array, got {other:?}"),
        }
    }
}

// ---- INFO / DBSIZE / CONFIG -----------------------------------------------

fn info(con: &mut redis::Connection, section: Option<&str>) -> String {
    let reply = match section {
        Some(s) => con.run(&["INFO", s]),
        None => con.run(&["INFO"]),
    };
    text(&reply.expect("INFO"))
}

fn info_field(info: &str, name: &str) -> Option<i64> {
    info.lines().find_map(|line| {
        let (k, v) = line.trim_end_matches('\r').split_once(':')?;
        (k == name).then(|| v.trim().parse().expect("numeric INFO field"))
    })
}

fn dbsize(con: &mut redis::Connection) -> i64 {
    match con.run(&["DBSIZE"]).unwrap() {
        Value::Int(n) => n,
        other => panic!("DBSIZE must be an integer, got {other:?}"),
    }
}

#[test]
fn info_sections_and_lock_counts() {
    let server = Server::start(&["--shards", "4"]);
    let mut con = server.connection(Proto::Resp2);

    let all = info(&mut con, None);
    for section in ["# Server", "# Clients", "# Stats", "# Locks"] {
        assert!(
            all.lines().any(|l| l.trim_end() == section),
            "INFO lacks `{section}`:\n{all}"
        );
    }
    assert_eq!(info_field(&all, "locked"), Some(0), "{all}");
    assert_eq!(info_field(&all, "completed"), Some(0), "{all}");
    assert_eq!(dbsize(&mut con), 0);

    // 10 locked, then 3 completed and 2 unlocked: 5 locked, 3 completed.
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.push(expect_key(con.run(&["LOCK", &format!("info-{i}")]), "LOCK"));
    }
    let locks = info(&mut con, Some("locks"));
    assert_eq!(info_field(&locks, "locked"), Some(10), "{locks}");
    assert_eq!(info_field(&locks, "completed"), Some(0), "{locks}");
    assert_eq!(dbsize(&mut con), 10);

    for (i, key) in keys.iter().enumerate() {
        let id = format!("info-{i}");
        match i {
            0..3 => expect_ok(con.run(&["COMPLETE", &id, key]), "COMPLETE"),
            3..5 => expect_ok(con.run(&["UNLOCK", &id, key]), "UNLOCK"),
            _ => {}
        }
    }
    // Failed commands change nothing.
    let _ = con.run(&["UNLOCK", "info-5", FOREIGN_KEY]);
    let _ = con.run(&["COMPLETE", "never-seen", FOREIGN_KEY]);
    let _ = con.run(&["LOCK", "info-0"]);

    let all = info(&mut con, None);
    assert_eq!(info_field(&all, "locked"), Some(5), "{all}");
    assert_eq!(info_field(&all, "completed"), Some(3), "{all}");
    assert_eq!(dbsize(&mut con), 8, "DBSIZE = locked + completed");

    // Another connection sees the same totals.
    let mut other = server.connection(Proto::Resp3);
    let locks = info(&mut other, Some("locks"));
    assert_eq!(info_field(&locks, "locked"), Some(5), "{locks}");
    assert_eq!(info_field(&locks, "completed"), Some(3), "{locks}");
    assert_eq!(dbsize(&mut other), 8);
}

#[test]
fn info_locks_returns_only_that_section() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    for section in ["locks", "LOCKS", "Locks"] {
        let locks = info(&mut con, Some(section));
        assert!(
            locks.lines().any(|l| l.trim_end() == "# Locks"),
            "INFO {section}:\n{locks}"
        );
        for other in ["# Server", "# Clients", "# Stats"] {
            assert!(
                !locks.contains(other),
                "INFO {section} contains `{other}`:\n{locks}"
            );
        }
        let headers = locks.lines().filter(|l| l.starts_with('#')).count();
        assert_eq!(headers, 1, "INFO {section}:\n{locks}");
        assert!(info_field(&locks, "locked").is_some(), "{locks}");
        assert!(info_field(&locks, "completed").is_some(), "{locks}");
    }
}

#[test]
fn config_get_save_and_appendonly() {
    let server = Server::start(&["--shards", "2", "--max-waiters", "77"]);
    let mut con = server.connection(Proto::Resp2);
    for name in [
        "save",
        "appendonly",
        "default-lease",
        "completed-retention",
        "max-waiters",
        "max-result-size",
        "slowlog-log-slower-than",
        "slowlog-max-len",
    ] {
        match con.run(&["CONFIG", "GET", name]).unwrap() {
            Value::Array(items) => {
                assert_eq!(items.len(), 2, "CONFIG GET {name}: {items:?}");
                assert_eq!(text(&items[0]), name);
                assert!(value_text(&items[1]).is_some(), "{items:?}");
            }
            other => panic!("CONFIG GET {name} must be an array, got {other:?}"),
        }
    }
    match con.run(&["CONFIG", "GET", "max-waiters"]).unwrap() {
        Value::Array(items) => assert_eq!(value_text(&items[1]).as_deref(), Some("77")),
        other => panic!("{other:?}"),
    }
}

// ---- generic errors -------------------------------------------------------

#[test]
fn unknown_command_error_text() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"foo", b"a", b"b"]));
    raw.expect_bytes(
        b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
        "unknown command with two args",
    );
    raw.send(b"foo a b\r\n");
    raw.expect_bytes(
        b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
        "inline unknown command",
    );
    raw.send(&encode_command(&[b"foo"]));
    raw.expect_bytes(
        b"-ERR unknown command 'foo', with args beginning with: \r\n",
        "unknown command without args",
    );
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "connection usable afterwards");

    let mut con = server.connection(Proto::Resp3);
    let err = expect_err(con.run(&["foo", "a", "b"]), "ERR", &[], "unknown command");
    assert_eq!(
        err.detail().map(str::trim_end),
        Some("unknown command 'foo', with args beginning with: 'a' 'b'")
    );
}

#[test]
fn wrong_arity_error_text() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    let cases: Vec<(Vec<&[u8]>, &str)> = vec![
        (vec![b"LOCK"], "lock"),
        (vec![b"lock"], "lock"),
        (vec![b"UNLOCK"], "unlock"),
        (vec![b"UNLOCK", b"id"], "unlock"),
        (vec![b"UNLOCK", b"id", b"k", b"extra"], "unlock"),
        (vec![b"COMPLETE"], "complete"),
        (vec![b"COMPLETE", b"id"], "complete"),
    ];
    for (args, name) in &cases {
        raw.send(&encode_command(args));
        let expected = format!("-ERR wrong number of arguments for '{name}' command\r\n");
        raw.expect_bytes(expected.as_bytes(), &format!("{args:?}"));
    }
    // Nothing was locked by the malformed calls.
    let mut con = server.connection(Proto::Resp2);
    expect_key(con.run(&["LOCK", "id"]), "LOCK id");
    let err = expect_err(con.run(&["UNLOCK", "id"]), "ERR", &[], "UNLOCK id");
    assert_eq!(
        err.detail(),
        Some("wrong number of arguments for 'unlock' command")
    );
}

#[test]
fn many_connections_at_once() {
    let server = Server::start(&["--shards", "2"]);
    let mut conns: Vec<redis::Connection> =
        (0..100).map(|_| server.connection(Proto::Resp2)).collect();
    for (i, con) in conns.iter_mut().enumerate() {
        expect_key(con.run(&["LOCK", &format!("conn-{i}")]), "LOCK");
    }
    let mut check = server.connection(Proto::Resp2);
    assert_eq!(dbsize(&mut check), 100);
}

/// redis-py's `pipeline()` is MULTI ... EXEC by default: with ids of one slot it locks and
/// completes, sync and with `redis.asyncio`; `transaction=False` pipelines span slots; a
/// transaction across slots raises and leaves nothing locked.
#[test]
fn redis_py_pipelines_with_and_without_transactions() {
    let Some(python) = common::require_python_module("redis") else {
        return;
    };
    let server = Server::start(&["--shards", "4"]);
    let script = r#"
import asyncio, json, sys, redis, redis.asyncio
port, proto = int(sys.argv[1]), int(sys.argv[2])
n = f"resp{proto}"
r = redis.Redis(port=port, protocol=proto)
out = {}

p = r.pipeline()
p.execute_command("LOCK", f"{{tx-{n}}}.a", "PX", 60000)
p.execute_command("LOCK", f"{{tx-{n}}}.b")
keys = p.execute()
p = r.pipeline()
p.execute_command("COMPLETE", f"{{tx-{n}}}.a", keys[0])
p.execute_command("COMPLETE", f"{{tx-{n}}}.b", keys[1])
out["completed"] = p.execute()
out["status"] = repr(r.execute_command("STATUS", f"{{tx-{n}}}.b"))

p = r.pipeline(transaction=False)
for i in range(10):
    p.execute_command("LOCK", f"plain-{n}-{i}")
out["plain"] = [len(k) for k in p.execute()]

p = r.pipeline()
p.execute_command("LOCK", f"cross-{n}-a")
p.execute_command("LOCK", f"cross-{n}-b")
try:
    p.execute()
    out["cross"] = "no error"
except redis.ResponseError as e:
    out["cross"] = str(e)
out["cross_state"] = [repr(r.execute_command("STATUS", f"cross-{n}-{x}")) for x in "ab"]

async def main():
    a = redis.asyncio.Redis(port=port, protocol=proto)
    async with a.pipeline() as p:
        p.execute_command("LOCK", f"{{async-{n}}}.a")
        p.execute_command("LOCK", f"{{async-{n}}}.b")
        keys = await p.execute()
    out["async"] = [len(k) for k in keys]
    await a.aclose()
asyncio.run(main())

print(json.dumps(out, default=lambda v: v.decode() if isinstance(v, bytes) else repr(v)))
"#;
    for proto in ["2", "3"] {
        let out = std::process::Command::new(&python)
            .args(["-c", script, &server.port().to_string(), proto])
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "redis-py (RESP{proto}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["completed"], serde_json::json!(["OK", "OK"]), "{v}");
        assert!(v["status"].to_string().contains("completed"), "{v}");
        assert_eq!(v["plain"], serde_json::json!(vec![32; 10]), "{v}");
        let cross = v["cross"].as_str().unwrap_or_default();
        assert!(cross.contains("hash to the same slot"), "{v}");
        assert!(!v["cross_state"].to_string().contains("locked"), "{v}");
        assert_eq!(v["async"], serde_json::json!([32, 32]), "{v}");
    }
}

/// `CLIENT HELP`, `CONFIG HELP` and `COMMAND HELP` answer help text as `SLOWLOG HELP` does,
/// and the `CLIENT MAINT_NOTIFICATIONS` that redis-py and ioredis send on connect gets an
/// error that says what it is, not an unknown subcommand.
#[test]
fn help_subcommands_and_maint_notifications() {
    let server = Server::start(&[]);
    let mut con = server.connection(Proto::Resp2);
    for name in ["CLIENT", "CONFIG", "COMMAND", "SLOWLOG"] {
        let help: Vec<String> = redis::cmd(name)
            .arg("HELP")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("{name} HELP: {e}"));
        assert!(
            help[0].starts_with(&format!("{name} <subcommand>")),
            "{name}: {help:?}"
        );
        assert!(help.iter().any(|l| l == "HELP"), "{name}: {help:?}");
    }
    let err = expect_err(
        redis::cmd("CLIENT")
            .arg(&[
                "MAINT_NOTIFICATIONS",
                "ON",
                "moving-endpoint-type",
                "internal-ip",
            ])
            .query::<Value>(&mut con),
        "ERR",
        &[],
        "CLIENT MAINT_NOTIFICATIONS",
    );
    assert!(
        err.to_string().contains("no maintenance notifications"),
        "{err}"
    );
    let ok: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(ok, "PONG");
}

/// A batch of TRYLOCKs with a held id inside never throws: redis-py's default `pipeline()`
/// (a transaction, so ids share a hash tag) and one without a transaction, and the `redis`
/// crate's pipe, each hand back every other key, and the held id's answer says it is held.
#[test]
fn trylock_batches_hand_back_every_other_key() {
    let server = Server::start(&["--shards", "4"]);
    let mut con = server.connection(Proto::Resp2);
    expect_key(
        redis::cmd("LOCK")
            .arg("{b}.3")
            .arg("PX")
            .arg(60_000)
            .query(&mut con),
        "hold {b}.3",
    );
    expect_key(
        redis::cmd("LOCK").arg("crate-3").query(&mut con),
        "hold crate-3",
    );
    let mut pipe = redis::pipe();
    for i in 0..6 {
        pipe.cmd("TRYLOCK")
            .arg(format!("crate-{i}"))
            .arg("PX")
            .arg(30_000);
    }
    let replies: Vec<Value> = pipe.query(&mut con).expect("no error for a held id");
    for (i, reply) in replies.iter().enumerate() {
        let Value::Array(parts) = reply else {
            panic!("{i}: {reply:?}")
        };
        if i == 3 {
            assert_eq!(parts[0], Value::Nil, "{parts:?}");
            assert_eq!(text(&parts[1]), "locked");
            assert_eq!(parts[2], Value::Int(-1), "no lease");
        } else {
            assert!(common::is_key(&text(&parts[0])), "{parts:?}");
            assert!(matches!(parts[1], Value::Int(f) if f > 0), "{parts:?}");
        }
    }

    let Some(python) = common::require_python_module("redis") else {
        return;
    };
    let script = r#"
import json, sys, redis
r = redis.Redis(port=int(sys.argv[1]))
out = {}
p = r.pipeline()
for i in range(6):
    p.execute_command("TRYLOCK", f"{{b}}.{i}", "PX", 30000)
out["tx"] = [[x.decode() if isinstance(x, bytes) else x for x in reply] for reply in p.execute()]
p = r.pipeline(transaction=False)
for i in range(6):
    p.execute_command("TRYLOCK", f"{{b}}.{i}")
out["plain"] = [[x.decode() if isinstance(x, bytes) else x for x in reply] for reply in p.execute()]
print(json.dumps(out))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, &server.port().to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "redis-py raised: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for (i, reply) in v["tx"].as_array().expect("tx").iter().enumerate() {
        if i == 3 {
            assert_eq!(reply[0], serde_json::Value::Null, "{v}");
            assert_eq!(reply[1], "locked", "{v}");
            assert!(reply[2].as_i64().is_some_and(|ttl| ttl > 0), "{v}");
        } else {
            assert_eq!(reply[0].as_str().map(str::len), Some(32), "{v}");
        }
    }
    // The same ids again: every one is held now, and the batch still does not throw.
    for reply in v["plain"].as_array().expect("plain") {
        assert_eq!(reply[1], "locked", "{v}");
    }
}
