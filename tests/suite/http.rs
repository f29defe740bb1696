//! The HTTP adapter against the real binary: every endpoint and status of docs/HTTP.md, ids
//! shared with RESP, and concurrent clients racing on the same ids.

use crate::common;
use crate::http_support;

use std::collections::HashMap;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{FOREIGN_KEY, Proto, Server, expect_err, expect_key, expect_ok};
use http_support::{agent, encode_all, get, lock_key, post, request};
use redis::Value;

#[test]
fn lock_answers_with_the_key_alone() {
    let server = Server::start(&[]);
    let agent = agent();
    let response = get(&agent, &server, "/lock?id=my_process");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(common::is_key(&response.text()), "{response:?}");
    assert_eq!(response.body.len(), 32, "no newline after the key");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));
    get(&agent, &server, "/lock?id=my_process").expect(409, "locked", "second lock");
    assert_eq!(
        get(&agent, &server, "/lock?id=my_process").header("retry-after"),
        None,
        "no Retry-After without a lease"
    );
}

#[test]
fn each_grant_carries_a_larger_fencing_token() {
    let server = Server::start(&[]);
    let agent = agent();
    let mut last = 0u64;
    for id in ["fence-a", "fence-b", "fence-c"] {
        let response = get(&agent, &server, &format!("/lock?id={id}"));
        assert_eq!(response.status, 200, "{response:?}");
        let fence: u64 = response
            .header("x-fencing-token")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{id}: no numeric X-Fencing-Token in {response:?}"));
        assert!(fence > last, "{id}: fence {fence} after {last}");
        last = fence;
    }
    let refused = get(&agent, &server, "/lock?id=fence-a");
    assert_eq!(refused.header("x-fencing-token"), None, "{refused:?}");
}

#[test]
fn ttl_is_a_lease() {
    let server = Server::start(&[]);
    let agent = agent();
    let first = lock_key(&agent, &server, "leased&ttl=300");
    get(&agent, &server, "/lock?id=leased").expect(409, "locked", "within the lease");
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let response = get(&agent, &server, "/lock?id=leased");
        if response.status == 200 {
            break response.text();
        }
        response.expect(409, "locked", "until the lease runs out");
        assert!(Instant::now() < deadline, "the lease never ran out");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(first, second);
    get(&agent, &server, &format!("/complete?id=leased&key={first}")).expect(
        403,
        "wrong key",
        "the expired key is void",
    );
}

#[test]
fn unlock_rows() {
    let server = Server::start(&[]);
    let agent = agent();
    get(
        &agent,
        &server,
        &format!("/unlock?id=never&key={FOREIGN_KEY}"),
    )
    .expect(404, "not locked", "unknown id");
    let key = lock_key(&agent, &server, "job");
    let wrong = get(
        &agent,
        &server,
        &format!("/unlock?id=job&key={FOREIGN_KEY}"),
    );
    wrong.expect(403, "wrong key", "unlock with another key");
    let malformed = get(&agent, &server, "/unlock?id=job&key=not-a-key");
    malformed.expect(403, "wrong key", "unlock with a malformed key");
    get(&agent, &server, &format!("/unlock?id=job&key={key}")).expect(200, "unlocked", "unlock");
    get(&agent, &server, &format!("/unlock?id=job&key={key}")).expect(
        404,
        "not locked",
        "unlock twice",
    );
    // Free again: a new lock gets a new key, and the old key is void.
    let again = lock_key(&agent, &server, "job");
    assert_ne!(again, key);
    get(&agent, &server, &format!("/unlock?id=job&key={key}")).expect(
        403,
        "wrong key",
        "old key after relock",
    );
    get(&agent, &server, &format!("/complete?id=job&key={again}")).expect(200, "complete", "");
    get(&agent, &server, &format!("/unlock?id=job&key={again}")).expect(
        409,
        "complete",
        "unlock a completed id",
    );
}

#[test]
fn complete_rows() {
    let server = Server::start(&[]);
    let agent = agent();
    get(
        &agent,
        &server,
        &format!("/complete?id=never&key={FOREIGN_KEY}"),
    )
    .expect(404, "not locked", "unknown id");
    let key = lock_key(&agent, &server, "order-7");
    get(
        &agent,
        &server,
        &format!("/complete?id=order-7&key={FOREIGN_KEY}"),
    )
    .expect(403, "wrong key", "complete with another key");
    for attempt in ["first", "retry", "second retry"] {
        get(&agent, &server, &format!("/complete?id=order-7&key={key}"))
            .expect(200, "complete", attempt);
    }
    get(
        &agent,
        &server,
        &format!("/complete?id=order-7&key={FOREIGN_KEY}"),
    )
    .expect(409, "complete", "complete under another key");
    get(&agent, &server, "/lock?id=order-7").expect(409, "complete", "lock a completed id");
}

#[test]
fn error_bodies_never_echo_the_key() {
    let server = Server::start(&[]);
    let agent = agent();
    let key = lock_key(&agent, &server, "secret");
    let long = format!("{key}{key}");
    for target in [
        format!("/unlock?id=other&key={key}"),
        format!("/complete?id=other&key={key}"),
        format!("/unlock?id=secret&key={long}"),
        format!("/complete?id=secret&key={long}"),
        format!("/lock?id=secret&key={long}"),
        format!("/lock?id=secret&key={FOREIGN_KEY}"),
        format!("/unlock?id=&key={key}"),
    ] {
        let response = get(&agent, &server, &target);
        assert_ne!(response.status, 200, "{target}: {response:?}");
        assert!(!response.text().contains(&key), "{target}: {response:?}");
    }
}

#[test]
fn bad_parameters_are_400_with_a_reason() {
    let server = Server::start(&[]);
    let agent = agent();
    let long_id = "x".repeat(513);
    let long_key = "a".repeat(33);
    for (target, reason) in [
        ("/lock".to_string(), "missing id parameter"),
        ("/lock?".to_string(), "missing id parameter"),
        ("/lock?name=x".to_string(), "missing id parameter"),
        ("/lock?id=".to_string(), "the id must not be empty"),
        ("/lock?id".to_string(), "the id must not be empty"),
        (format!("/lock?id={long_id}"), "id too long"),
        (
            "/lock?id=a&id=b".to_string(),
            "the id parameter is given twice",
        ),
        ("/lock?id=%zz".to_string(), "bad percent-encoding in id"),
        ("/lock?id=a%".to_string(), "bad percent-encoding in id"),
        ("/unlock?id=a".to_string(), "missing key parameter"),
        ("/complete?id=a".to_string(), "missing key parameter"),
        ("/unlock?id=a&key=".to_string(), "the key must not be empty"),
        (
            "/complete?id=a&key=".to_string(),
            "the key must not be empty",
        ),
        (format!("/unlock?id=a&key={long_key}"), "key too long"),
        (
            format!("/complete?key={FOREIGN_KEY}"),
            "missing id parameter",
        ),
    ] {
        let response = get(&agent, &server, &target);
        assert_eq!(response.status, 400, "{target}: {response:?}");
        let text = response.text();
        assert!(
            text.starts_with("bad request: ") && text.contains(reason),
            "{target}: expected a reason like {reason:?}, got {text:?}"
        );
        assert!(!text.contains('\n'), "{target}: one line: {text:?}");
    }
    // An id of exactly --max-id-len bytes is fine.
    lock_key(&agent, &server, &"y".repeat(512));
}

#[test]
fn ttl_is_validated() {
    let server = Server::start(&[]);
    let agent = agent();
    for bad in [
        "",
        "0",
        "-5",
        "+5",
        "1.5",
        "10s",
        "abc",
        "1099511627777",
        "%",
    ] {
        let response = get(&agent, &server, &format!("/lock?id=t&ttl={bad}"));
        assert_eq!(response.status, 400, "ttl={bad}: {response:?}");
        assert!(
            response.text().contains("bad ttl"),
            "ttl={bad}: {response:?}"
        );
    }
    lock_key(&agent, &server, "t1&ttl=1");
    lock_key(&agent, &server, "t2&ttl=30000");
    lock_key(&agent, &server, "t3&ttl=1099511627776");
}

#[test]
fn help_unknown_paths_and_methods() {
    let server = Server::start(&[]);
    let agent = agent();
    let help = get(&agent, &server, "/");
    assert_eq!(help.status, 200, "{help:?}");
    assert_eq!(
        help.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    for endpoint in ["/lock?id=", "/unlock?id=", "/complete?id="] {
        assert!(
            help.text().contains(endpoint),
            "help lists {endpoint}: {help:?}"
        );
    }
    assert_eq!(request(&agent, &server, "HEAD", "/").status, 200);

    for target in [
        "/nope",
        "/lock/",
        "/LOCK?id=a",
        "/lock/x?id=a",
        "//lock?id=a",
        "/favicon.ico",
    ] {
        request(&agent, &server, "GET", target).expect(404, "not found", target);
        request(&agent, &server, "POST", target).expect(404, "not found", target);
    }

    for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"] {
        for target in ["/lock?id=m", "/unlock?id=m&key=k", "/complete?id=m&key=k"] {
            let response = request(&agent, &server, method, target);
            assert_eq!(response.status, 405, "{method} {target}: {response:?}");
            assert_eq!(
                response.header("allow"),
                Some("GET, POST"),
                "{method} {target}"
            );
        }
    }
    for method in ["POST", "PUT", "DELETE"] {
        let response = request(&agent, &server, method, "/");
        assert_eq!(response.status, 405, "{method} /: {response:?}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
    // None of the refused methods took the lock.
    lock_key(&agent, &server, "m");
}

#[test]
fn post_with_the_same_query_is_accepted() {
    let server = Server::start(&[]);
    let agent = agent();
    let response = request(&agent, &server, "POST", "/lock?id=posted");
    assert_eq!(response.status, 200, "{response:?}");
    let key = response.text();
    assert!(common::is_key(&key));
    request(&agent, &server, "POST", "/lock?id=posted").expect(409, "locked", "post twice");
    request(
        &agent,
        &server,
        "POST",
        &format!("/complete?id=posted&key={key}"),
    )
    .expect(200, "complete", "post complete");
    // A small body is read and ignored.
    let url = format!("http://{}/unlock?id=posted&key={key}", server.http_addr);
    let mut with_body = agent
        .post(&url)
        .send("id=ignored&key=ignored")
        .expect("post with a body");
    assert_eq!(with_body.status().as_u16(), 409);
    assert_eq!(with_body.body_mut().read_to_string().unwrap(), "complete");
}

/// The stored result of `id`, read over RESP.
fn stored_result(server: &Server, id: &str) -> Option<Vec<u8>> {
    let mut con = server.connection(Proto::Resp2);
    let fields: Vec<Value> = redis::cmd("STATUS")
        .arg(id)
        .query(&mut con)
        .expect("STATUS");
    let at = fields
        .iter()
        .position(|v| common::value_text(v).as_deref() == Some("result"))
        .expect("a result field");
    match &fields[at + 1] {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::Nil => None,
        other => panic!("result: {other:?}"),
    }
}

#[test]
fn complete_takes_a_large_result_in_a_post_body() {
    let server = Server::start(&[]);
    let agent = agent();
    // 60 KiB of every byte value, as plain text (any bytes) and form-encoded.
    let result: Vec<u8> = (0..60 * 1024).map(|i| (i % 251) as u8).collect();
    let key = lock_key(&agent, &server, "posted-plain");
    post(
        &agent,
        &server,
        &format!("/complete?id=posted-plain&key={key}"),
        "text/plain",
        &result,
    )
    .expect(200, "complete", "a 60 KiB result as text/plain");
    assert_eq!(stored_result(&server, "posted-plain"), Some(result.clone()));

    let key = lock_key(&agent, &server, "posted-form");
    let form = format!(
        "id=posted-form&key={key}&result={}",
        encode_all(&result).replace("%20", "+")
    );
    post(
        &agent,
        &server,
        "/complete",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    )
    .expect(
        200,
        "complete",
        "a 60 KiB result form-encoded, every parameter in the body",
    );
    assert_eq!(stored_result(&server, "posted-form"), Some(result.clone()));
    // A retry with the same key is the same success; the first result stays.
    post(
        &agent,
        &server,
        &format!("/complete?id=posted-form&key={key}"),
        "text/plain",
        b"another",
    )
    .expect(200, "complete", "retried");
    assert_eq!(stored_result(&server, "posted-form"), Some(result));

    // Misuse: the result twice, one over --max-result-size, another media type, a body past
    // what the limit can take. None of them completes the id.
    let key = lock_key(&agent, &server, "posted-bad");
    let target = format!("/complete?id=posted-bad&key={key}");
    post(
        &agent,
        &server,
        &format!("{target}&result=a"),
        "text/plain",
        b"b",
    )
    .expect(
        400,
        "bad request: the result parameter is given twice",
        "twice",
    );
    post(
        &agent,
        &server,
        &target,
        "text/plain",
        &vec![b'r'; 64 * 1024 + 1],
    )
    .expect(400, "bad request: result too large", "over the limit");
    let json = post(&agent, &server, &target, "application/json", b"{}");
    assert_eq!(json.status, 415, "{json:?}");
    let huge = post(
        &agent,
        &server,
        &target,
        "text/plain",
        &vec![b'r'; 400 * 1024],
    );
    assert_eq!(huge.status, 413, "{huge:?}");
    post(&agent, &server, &target, "", b"").expect(200, "complete", "no body: no result");
    assert_eq!(stored_result(&server, "posted-bad"), None);
}

#[test]
fn ids_are_percent_decoded_bytes_shared_with_resp() {
    let server = Server::start(&[]);
    let agent = agent();
    let mut resp = server.connection(Proto::Resp2);
    let ids: [&[u8]; 7] = [
        b"\x00",
        b"nul\x00inside",
        b"\r\n",
        b"line\r\nbreak",
        "caf\u{e9} \u{1f512}".as_bytes(),
        b"\xff\xfe raw bytes",
        b"a+b",
    ];
    for id in ids {
        let key = lock_key(&agent, &server, &encode_all(id));
        // The same bytes over RESP name the same, now locked, activity.
        expect_err(
            redis::cmd("LOCK").arg(id).query::<Value>(&mut resp),
            "LOCKED",
            &[&key],
            &format!("RESP LOCK {id:?}"),
        );
        expect_ok(
            redis::cmd("COMPLETE").arg(id).arg(&key).query(&mut resp),
            &format!("RESP COMPLETE {id:?}"),
        );
        get(&agent, &server, &format!("/lock?id={}", encode_all(id))).expect(
            409,
            "complete",
            &format!("{id:?} completed over RESP"),
        );
    }
    // Form encoding: `+` is a space and a plus sign is `%2B`, so `x+y` and `x%2By` are two ids;
    // lower- and upper-case escapes are the same byte.
    let space = lock_key(&agent, &server, "x+y");
    expect_err(
        redis::cmd("LOCK").arg("x y").query::<Value>(&mut resp),
        "LOCKED",
        &[&space],
        "x+y is x y",
    );
    get(&agent, &server, "/lock?id=x%20y").expect(409, "locked", "x%20y is x y too");
    let plus = lock_key(&agent, &server, "x%2By");
    expect_ok(
        redis::cmd("COMPLETE")
            .arg("x+y")
            .arg(&plus)
            .query(&mut resp),
        "x%2By is x+y, another id",
    );
    expect_ok(
        redis::cmd("UNLOCK").arg("x y").arg(&space).query(&mut resp),
        "x y is still held under its own key",
    );
    lock_key(&agent, &server, "%c3%a9");
    get(&agent, &server, "/lock?id=%C3%A9").expect(409, "locked", "escapes ignore case");
}

#[test]
fn state_is_shared_with_resp_both_ways() {
    let server = Server::start(&[]);
    let agent = agent();
    let mut resp = server.connection(Proto::Resp3);

    // Lock over HTTP, complete over RESP with the same key.
    let key = lock_key(&agent, &server, "http-then-resp");
    expect_ok(
        redis::cmd("COMPLETE")
            .arg(b"http-then-resp")
            .arg(&key)
            .query(&mut resp),
        "COMPLETE over RESP",
    );
    get(&agent, &server, "/lock?id=http-then-resp").expect(409, "complete", "after RESP");
    get(
        &agent,
        &server,
        &format!("/complete?id=http-then-resp&key={key}"),
    )
    .expect(200, "complete", "retry over HTTP");

    // Lock over RESP, unlock then complete over HTTP.
    let key = expect_key(
        redis::cmd("LOCK").arg("resp-then-http").query(&mut resp),
        "LOCK over RESP",
    );
    get(&agent, &server, "/lock?id=resp-then-http").expect(409, "locked", "held over RESP");
    get(
        &agent,
        &server,
        &format!("/unlock?id=resp-then-http&key={key}"),
    )
    .expect(200, "unlocked", "unlock over HTTP");
    let key = expect_key(
        redis::cmd("LOCK").arg("resp-then-http").query(&mut resp),
        "LOCK again over RESP",
    );
    get(
        &agent,
        &server,
        &format!("/complete?id=resp-then-http&key={key}"),
    )
    .expect(200, "complete", "complete over HTTP");
    expect_err(
        redis::cmd("LOCK")
            .arg("resp-then-http")
            .query::<Value>(&mut resp),
        "COMPLETED",
        &[&key],
        "LOCK after HTTP complete",
    );
}

#[test]
fn concurrent_clients_race_with_one_winner_per_id() {
    const CLIENTS: usize = 32;
    const IDS: usize = 40;
    let server = Server::start(&[]);
    let barrier = Barrier::new(CLIENTS);
    let wins: Mutex<HashMap<usize, Vec<String>>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (server, barrier, wins) = (&server, &barrier, &wins);
            scope.spawn(move || {
                let agent = agent();
                barrier.wait();
                for n in 0..IDS {
                    // Each client walks the ids from a different place.
                    let id = (n + client) % IDS;
                    let response = get(&agent, server, &format!("/lock?id=race-{id}"));
                    match response.status {
                        200 => wins
                            .lock()
                            .unwrap()
                            .entry(id)
                            .or_default()
                            .push(response.text()),
                        409 => assert_eq!(response.text(), "locked", "race-{id}"),
                        _ => panic!("race-{id}: {response:?}"),
                    }
                }
            });
        }
    });
    let wins = wins.into_inner().unwrap();
    let agent = agent();
    for id in 0..IDS {
        let keys = wins.get(&id).cloned().unwrap_or_default();
        assert_eq!(keys.len(), 1, "race-{id}: exactly one winner, got {keys:?}");
        get(
            &agent,
            &server,
            &format!("/complete?id=race-{id}&key={}", keys[0]),
        )
        .expect(200, "complete", "the winner's key holds the lock");
    }
}

#[test]
fn config_get_reports_the_bound_http_port() {
    let server = Server::start(&[]);
    let mut resp = server.connection(Proto::Resp2);
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("http-port")
        .query(&mut resp)
        .expect("CONFIG GET http-port");
    assert_eq!(
        reply,
        vec!["http-port".to_string(), server.http_addr.port().to_string()]
    );
}

/// Ids with spaces, plus signs and other reserved characters, encoded by the query builders
/// users have (requests' `params=`, `urllib.parse.urlencode`, and Node's `URLSearchParams` where
/// Node is installed), name the same ids as over RESP: `order 1` and `order+1` never collide.
#[test]
fn query_builders_name_the_same_ids_as_resp() {
    const IDS: [&str; 6] = [
        "order 1",
        "order+1",
        "a&b=c",
        "caf\u{e9} \u{20ac}",
        "100%",
        "x%2By",
    ];
    let Some(python) = common::require_python_module("requests") else {
        return;
    };
    let server = Server::start(&[]);
    let base = format!("http://{}", server.http_addr);
    let mut resp = server.connection(Proto::Resp2);
    let ids_json = serde_json::to_string(&IDS).expect("JSON");

    // Lock with requests' params= (form encoding), then complete each id over RESP.
    let script = r#"
import json, sys, requests
base, ids = sys.argv[1], json.loads(sys.argv[2])
keys = []
for i in ids:
    r = requests.get(base + "/lock", params={"id": i})
    assert r.status_code == 200, (i, r.status_code, r.text)
    keys.append(r.text)
print(json.dumps(keys))
"#;
    let keys = run_json(&python, &["-c", script, &base, &ids_json]);
    assert_eq!(keys.len(), IDS.len(), "every id locked: {keys:?}");
    for (id, key) in IDS.iter().zip(&keys) {
        expect_err(
            redis::cmd("LOCK").arg(*id).query::<Value>(&mut resp),
            "LOCKED",
            &[key],
            &format!("{id:?} locked by requests"),
        );
        expect_ok(
            redis::cmd("COMPLETE").arg(*id).arg(key).query(&mut resp),
            &format!("{id:?} completed over RESP with the key from HTTP"),
        );
    }

    // Lock over RESP, then complete with urllib.parse.urlencode.
    let resp_keys: Vec<String> = IDS
        .iter()
        .map(|id| {
            let id = format!("u-{id}");
            expect_key(redis::cmd("LOCK").arg(&id).query(&mut resp), &id)
        })
        .collect();
    let script = r#"
import json, sys, urllib.parse, urllib.request
base, ids, keys = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = []
for i, k in zip(ids, keys):
    q = urllib.parse.urlencode({"id": "u-" + i, "key": k})
    with urllib.request.urlopen(base + "/complete?" + q) as r:
        out.append(r.read().decode())
print(json.dumps(out))
"#;
    let answers = run_json(
        &python,
        &[
            "-c",
            script,
            &base,
            &ids_json,
            &serde_json::to_string(&resp_keys).expect("JSON"),
        ],
    );
    assert!(answers.iter().all(|a| a == "complete"), "{answers:?}");
    for id in IDS {
        expect_err(
            redis::cmd("LOCK")
                .arg(format!("u-{id}"))
                .query::<Value>(&mut resp),
            "COMPLETED",
            &[],
            &format!("u-{id:?} completed over HTTP"),
        );
    }

    // Node's URLSearchParams, where the machine has Node.
    let Some(node) = common::find_tool("node") else {
        eprintln!("node not found: URLSearchParams is not checked on this machine");
        return;
    };
    let script = r#"
const [base, ids] = [process.argv[1], JSON.parse(process.argv[2])];
(async () => {
  const keys = [];
  for (const id of ids) {
    const r = await fetch(base + "/lock?" + new URLSearchParams({ id: "n-" + id }));
    if (r.status !== 200) throw new Error(id + ": " + r.status);
    keys.push(await r.text());
  }
  console.log(JSON.stringify(keys));
})().catch((e) => { console.error(e); process.exit(1); });
"#;
    let keys = run_json(&node, &["-e", script, &base, &ids_json]);
    for (id, key) in IDS.iter().zip(&keys) {
        expect_ok(
            redis::cmd("UNLOCK")
                .arg(format!("n-{id}"))
                .arg(key)
                .query(&mut resp),
            &format!("n-{id:?} locked by URLSearchParams, unlocked over RESP"),
        );
    }
}

/// Runs `program` with `args` and reads its stdout as a JSON array of strings.
fn run_json(program: &std::path::Path, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: not a JSON list of strings ({e}): {}",
            program.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
