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
    if let Some(id_pos) = c.id_pos {
        let arguments = arguments(c.syntax, id_pos).iter().map(Arg::reply).collect();
        fields.push((Reply::bulk("arguments"), Reply::Array(arguments)));
    }
    Reply::Map(fields)
}

/// One argument of a command's syntax, in the shape of Redis's `COMMAND DOCS` (`name`, `type`,
/// `token`, `flags`, nested `arguments`), which redis-cli reads for its hints.
#[derive(Debug, PartialEq, Eq)]
struct Arg {
    name: String,
    /// `key`, `string`, `integer`, `pure-token` or `oneof`.
    kind: &'static str,
    /// The option word before the value (`PX`), or the word itself for a pure token.
    token: Option<String>,
    optional: bool,
    multiple: bool,
    /// The alternatives of a `oneof`.
    children: Vec<Arg>,
}

impl Arg {
    fn reply(&self) -> Reply {
        let mut fields = vec![
            (Reply::bulk("name"), Reply::bulk(&self.name)),
            (Reply::bulk("type"), Reply::bulk(self.kind)),
        ];
        if let Some(token) = &self.token {
            fields.push((Reply::bulk("token"), Reply::bulk(token)));
        }
        let flags: Vec<Reply> = [("optional", self.optional), ("multiple", self.multiple)]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(flag, _)| Reply::Simple(flag))
            .collect();
        if !flags.is_empty() {
            fields.push((Reply::bulk("flags"), Reply::Array(flags)));
        }
        if !self.children.is_empty() {
            let children = self.children.iter().map(Arg::reply).collect();
            fields.push((Reply::bulk("arguments"), Reply::Array(children)));
        }
        Reply::Map(fields)
    }
}

/// The arguments a syntax line such as `id [PX ms | EX s] [WAIT ms] [WITHFENCE]` describes:
/// lowercase words are values (the one at `id_pos` is the key, in Redis's sense), an uppercase
/// word followed by a lowercase one is an option with a value, an uppercase word alone is a
/// pure token, `[...]` is optional, `a | b` is one of, and `[x ...]` repeats the argument
/// before it.
fn arguments(syntax: &str, id_pos: usize) -> Vec<Arg> {
    let words: Vec<&str> = syntax.split_whitespace().collect();
    let mut args: Vec<Arg> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (group, optional) = if let Some(first) = words[i].strip_prefix('[') {
            // An optional group runs to the word that closes it.
            let mut group = vec![first];
            while !group.last().is_some_and(|w| w.ends_with(']')) && i + 1 < words.len() {
                i += 1;
                group.push(words[i]);
            }
            if let Some(last) = group.last_mut() {
                *last = last.trim_end_matches(']');
            }
            (group, true)
        } else if is_value(words[i]) {
            (vec![words[i]], false)
        } else {
            // Required options run to the end (`RENEW id key PX ms | EX s`).
            (words[i..].to_vec(), false)
        };
        i += 1;
        if group.last() == Some(&"...") {
            if let Some(last) = args.last_mut() {
                last.multiple = true;
            }
            continue;
        }
        let mut alternatives: Vec<Arg> = group
            .split(|w| *w == "|")
            .filter(|alt| !alt.is_empty())
            .map(|alt| alternative(alt, args.len() + 1 == id_pos))
            .collect();
        let arg = if alternatives.len() == 1 {
            alternatives.remove(0)
        } else {
            // Named by its tokens where it has them (`px-or-ex`), else by its values.
            let names: Vec<String> = alternatives
                .iter()
                .map(|a| a.token.as_deref().unwrap_or(&a.name).to_ascii_lowercase())
                .collect();
            Arg {
                name: names.join("-or-"),
                kind: "oneof",
                token: None,
                optional: false,
                multiple: false,
                children: alternatives,
            }
        };
        args.push(Arg { optional, ..arg });
        if !optional && !is_value(group[0]) {
            break;
        }
    }
    args
}

/// Whether `word` names a value (lowercase) rather than being a token.
fn is_value(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_lowercase())
}

/// One alternative: `value`, `TOKEN`, or `TOKEN value`.
fn alternative(words: &[&str], is_key: bool) -> Arg {
    let plain = |name: &str, kind, token: Option<&str>| Arg {
        name: name.to_string(),
        kind,
        token: token.map(str::to_string),
        optional: false,
        multiple: false,
        children: Vec::new(),
    };
    match words {
        [value] if is_value(value) => plain(value, if is_key { "key" } else { "string" }, None),
        [token] => plain(&token.to_ascii_lowercase(), "pure-token", Some(token)),
        [token, value, ..] => {
            let kind = if matches!(*value, "ms" | "s" | "count") {
                "integer"
            } else {
                "string"
            };
            plain(value, kind, Some(token))
        }
        [] => plain("", "string", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(syntax: &str) -> Vec<String> {
        fn show(a: &Arg) -> String {
            let mut s = format!("{}:{}", a.name, a.kind);
            if let Some(t) = &a.token {
                s += &format!(" {t}");
            }
            if a.optional {
                s += " ?";
            }
            if a.multiple {
                s += " +";
            }
            if !a.children.is_empty() {
                let inner: Vec<String> = a.children.iter().map(show).collect();
                s += &format!(" ({})", inner.join(", "));
            }
            s
        }
        arguments(syntax, 1).iter().map(show).collect()
    }

    #[test]
    fn lock_lists_every_option() {
        assert_eq!(
            shape("id [PX ms | EX s] [WAIT ms] [FINGERPRINT fp] [KEY key] [WITHFENCE]"),
            [
                "id:key",
                "px-or-ex:oneof ? (ms:integer PX, s:integer EX)",
                "ms:integer WAIT ?",
                "fp:string FINGERPRINT ?",
                "key:string KEY ?",
                "withfence:pure-token WITHFENCE ?",
            ]
        );
    }

    #[test]
    fn values_required_options_and_repeats() {
        assert_eq!(
            shape("id key PX ms | EX s"),
            [
                "id:key",
                "key:string",
                "px-or-ex:oneof (ms:integer PX, s:integer EX)"
            ]
        );
        assert_eq!(shape("id [id ...]"), ["id:key +"]);
        assert_eq!(
            shape("id key [RESULT value]"),
            ["id:key", "key:string", "value:string RESULT ?"]
        );
        assert_eq!(shape("id"), ["id:key"]);
    }
}
