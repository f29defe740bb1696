//! `--check-config`: the effective settings as a TOML file, each with where it came from.
//!
//! The output is itself a valid config file. The password is never printed: its line is a
//! comment saying only whether one is set. Settings without a value (no default) are shown as
//! comments too.

use std::fmt::Write;

use clap::ArgAction;

use super::load::{Loaded, Source, command};

/// The effective settings of `loaded`, as TOML.
pub fn render(loaded: &Loaded) -> String {
    let mut out = String::from(
        "# token-server: effective settings (flags > TOKEN_SERVER_* environment > config file > defaults)\n",
    );
    let cmd = command();
    for (long, source) in &loaded.sources {
        let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(long)) else {
            continue;
        };
        let from = match source {
            Source::Flag => "flag".to_string(),
            Source::Env(name) => format!("environment {name}"),
            Source::File => "config file".to_string(),
            Source::Default => "default".to_string(),
        };
        let raw: Vec<String> = loaded
            .matches
            .get_raw(arg.get_id().as_str())
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = if long == "requirepass" {
            let set = if loaded.config.requirepass.is_some() {
                "set, not shown"
            } else {
                "not set"
            };
            writeln!(out, "# requirepass = ({set})")
        } else if long == "config" {
            // A file cannot name another file: shown, but as a comment.
            match raw.last() {
                Some(path) => writeln!(out, "# config = {}  # {from}", toml_value(path, false)),
                None => writeln!(out, "# config = (not set)"),
            }
        } else if long == "shards" && raw.is_empty() {
            writeln!(
                out,
                "# shards = (not set: one per core, {} here)",
                loaded.config.shard_count()
            )
        } else if let Some(value) = raw.last() {
            let switch = matches!(arg.get_action(), ArgAction::SetTrue);
            writeln!(out, "{long} = {}  # {from}", toml_value(value, switch))
        } else {
            writeln!(out, "# {long} = (not set)")
        };
    }
    out
}

/// A raw value as TOML: a boolean for a switch, a bare number when it is one, else a string.
fn toml_value(raw: &str, switch: bool) -> String {
    if switch {
        return (raw == "true").to_string();
    }
    let numeric = !raw.is_empty()
        && raw
            .trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && raw.parse::<f64>().is_ok();
    if numeric {
        raw.to_string()
    } else {
        toml::Value::String(raw.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load;

    #[test]
    fn prints_a_valid_file_without_the_password() {
        let loaded = load([
            "token-server",
            "--port",
            "7000",
            "--requirepass",
            "hunter2",
            "--repair-log",
            "--chaos-rate",
            "0.25",
        ])
        .unwrap();
        let text = render(&loaded);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("# requirepass = (set, not shown)"), "{text}");
        assert!(text.contains("port = 7000  # flag"), "{text}");
        assert!(text.contains("bind = \"127.0.0.1\"  # default"), "{text}");
        assert!(text.contains("repair-log = true  # flag"), "{text}");
        assert!(text.contains("chaos-rate = 0.25  # flag"), "{text}");
        let table: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(table.get("port").and_then(|v| v.as_integer()), Some(7000));
        assert!(!table.contains_key("check-config"));
    }
}
