//! `CLIENT SETNAME | GETNAME | SETINFO | ID | INFO | HELP`.

use bytes::Bytes;

use crate::command::admin::{Session, unknown_subcommand};
use crate::context::ServerContext;
use crate::protocol::{Args, Protocol, Reply};

/// Redis's reply to a name with spaces or special characters.
pub const BAD_NAME: Reply =
    Reply::error("ERR Client names cannot contain spaces, newlines or special characters.");

/// Whether `name` is a valid client name: printable ASCII without spaces (Redis's rule).
pub fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// `CLIENT HELP`, in Redis's layout.
const HELP: [&str; 13] = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Print this help.",
];

/// `CLIENT MAINT_NOTIFICATIONS ...`, sent on connect by redis-py and ioredis: this server
/// has no maintenance notifications to send, and says so (those clients carry on quietly).
const NO_MAINT_NOTIFICATIONS: Reply = Reply::error(
    "ERR CLIENT MAINT_NOTIFICATIONS is not supported: this server sends no maintenance \
     notifications",
);

/// # Format
/// ```text
/// CLIENT SETNAME name | GETNAME | SETINFO LIB-NAME|LIB-VER value | ID | INFO | HELP
/// ```
pub fn client(args: &Args<'_>, s: &mut Session, _ctx: &ServerContext) -> Reply {
    let sub = args.get(1).unwrap_or_default();
    let n = args.len();
    let is = |name: &str| sub.eq_ignore_ascii_case(name.as_bytes());
    if is("SETNAME") && n == 3 {
        let name = args.get(2).unwrap_or_default();
        if !valid_name(name) {
            return BAD_NAME;
        }
        s.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
        Reply::Ok
    } else if is("GETNAME") && n == 2 {
        s.name.clone().map_or(Reply::Null, Reply::Bulk)
    } else if is("SETINFO") && n == 4 {
        let attr = args.get(2).unwrap_or_default();
        let value = args.get(3).unwrap_or_default();
        if !valid_name(value) && !value.is_empty() {
            return Reply::error(
                "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.",
            );
        }
        let value = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
        if attr.eq_ignore_ascii_case(b"LIB-NAME") {
            s.lib_name = value;
        } else if attr.eq_ignore_ascii_case(b"LIB-VER") {
            s.lib_ver = value;
        } else {
            return Reply::Error(
                format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(attr)
                )
                .into(),
            );
        }
        Reply::Ok
    } else if is("ID") && n == 2 {
        Reply::Integer(s.id as i64)
    } else if is("INFO") && n == 2 {
        Reply::Verbatim(info_line(s))
    } else if is("HELP") && n == 2 {
        Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect())
    } else if is("MAINT_NOTIFICATIONS") {
        NO_MAINT_NOTIFICATIONS
    } else if is("SETNAME") || is("GETNAME") || is("SETINFO") || is("ID") || is("INFO") {
        Reply::Error(
            format!(
                "ERR wrong number of arguments for 'client|{}' command",
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            )
            .into(),
        )
    } else {
        unknown_subcommand(sub, "CLIENT")
    }
}

/// One line describing the connection, in the format of Redis's `CLIENT INFO`.
pub fn info_line(s: &Session) -> String {
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    format!(
        "id={} addr={} laddr={} fd=-1 name={} age={} idle=0 flags=N db=0 sub=0 psub=0 ssub=0 \
         multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 \
         omem=0 tot-mem=0 events=r cmd=client|info user=default redir=-1 resp={} lib-name={} \
         lib-ver={}\n",
        s.id,
        s.peer,
        s.local,
        text(&s.name),
        s.created.elapsed().as_secs(),
        if s.protocol == Protocol::Resp3 { 3 } else { 2 },
        text(&s.lib_name),
        text(&s.lib_ver),
    )
}
