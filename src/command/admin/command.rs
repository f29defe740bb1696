//! `COMMAND [COUNT | INFO name... | DOCS name...]`, answered from the spec table.

use crate::command::admin::unknown_subcommand;
use crate::command::{COMMANDS, CommandSpec, lookup};
use crate::protocol::{Args, Reply};

/// `COMMAND HELP`, in Redis's layout.
const HELP: [&str; 11] = [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "HELP",
    "    Print this help.",
];

/// # Format
/// ```text
/// COMMAND [COUNT | INFO [name ...] | DOCS [name ...] | HELP]
/// ```
pub fn command(args: &Args<'_>) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::Array(COMMANDS.iter().map(info).collect());
    };
    if sub.eq_ignore_ascii_case(b"COUNT") && args.len() == 2 {
        Reply::Integer(COMMANDS.len() as i64)
    } else if sub.eq_ignore_ascii_case(b"INFO") {
        if args.len() == 2 {
            return Reply::Array(COMMANDS.iter().map(info).collect());
        }
        Reply::Array(
            args.iter_from(2)
                .map(|name| lookup(name).map_or(Reply::Null, info))
                .collect(),
        )
    } else if sub.eq_ignore_ascii_case(b"HELP") && args.len() == 2 {
        Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect())
    } else if sub.eq_ignore_ascii_case(b"DOCS") {
        let specs: Vec<&CommandSpec> = if args.len() == 2 {
            COMMANDS.iter().collect()
        } else {
            args.iter_from(2).filter_map(lookup).collect()
        };
        Reply::Map(
            specs
                .into_iter()
                .map(|c| (Reply::bulk(c.name), docs(c)))
                .collect(),
        )
    } else {
        unknown_subcommand(sub, "COMMAND")
    }
}

/// One command's `COMMAND INFO` entry, in Redis 7's ten-field layout.
fn info(c: &CommandSpec) -> Reply {
    let key = i64::try_from(c.id_pos.unwrap_or(0)).unwrap_or(0);
    Reply::Array(vec![
        Reply::bulk(c.name),
        Reply::Integer(i64::from(c.arity)),
        Reply::Set(c.flags.iter().map(|f| Reply::Simple(f)).collect()),
        Reply::Integer(key),
        Reply::Integer(key),
        Reply::Integer(i64::from(c.id_pos.is_some())),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// One command's `COMMAND DOCS` entry.
fn docs(c: &CommandSpec) -> Reply {
    let mut fields = vec![
        (Reply::bulk("summary"), Reply::bulk(c.summary)),
        (Reply::bulk("since"), Reply::bulk("0.1.0")),
        (Reply::bulk("group"), Reply::bulk(c.group)),
    ];
    if c.id_pos.is_some() {
        let arguments = c
            .syntax
            .split_whitespace()
            .take_while(|w| !w.starts_with('['))
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            .enumerate()
            .map(|(i, name)| {
                let kind = if i + 1 == c.id_pos.unwrap_or(0) {
                    "key"
                } else {
                    "string"
                };
                Reply::Map(vec![
                    (Reply::bulk("name"), Reply::bulk(name)),
                    (Reply::bulk("type"), Reply::bulk(kind)),
                ])
            })
            .collect();
        fields.push((Reply::bulk("arguments"), Reply::Array(arguments)));
    }
    Reply::Map(fields)
}
