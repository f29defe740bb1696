//! Where each setting comes from: a flag, then a `TOKEN_SERVER_*` environment variable, then
//! the `--config` TOML file, then the default.
//!
//! Every long flag `--some-name` is also the environment variable `TOKEN_SERVER_SOME_NAME`
//! (unless the flag names its own, as `--requirepass` does with `TOKEN_SERVER_PASSWORD`) and
//! the file key `some-name`. clap resolves flag over environment over default; then the
//! file's values are added as flags, but only for the settings that neither a flag nor the
//! environment set, so the order holds. Each file value and each environment value is first
//! checked on its own, so that an error names the key or the variable it came from.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use super::Config;

/// Flags that are only ever flags: never read from the environment or the file.
const FLAG_ONLY: [&str; 3] = ["check-config", "help", "version"];

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// This environment variable.
    Env(String),
    /// The `--config` file.
    File,
    /// The built-in default (or unset).
    Default,
}

/// Settings as parsed, with where each came from.
#[derive(Debug)]
pub struct Loaded {
    /// The settings.
    pub config: Config,
    /// The final matches: the raw text of each value, for `--check-config`.
    pub matches: clap::ArgMatches,
    /// `(long name, source)` for every setting, in `--help` order.
    pub sources: Vec<(String, Source)>,
    /// `TOKEN_SERVER_*` variables in the environment that name no setting (a typo, or a
    /// setting of another version): ignored, and worth a warning.
    pub unknown_env: Vec<String>,
}

/// The environment variable for the flag `--long`.
pub fn env_name(long: &str) -> String {
    format!(
        "TOKEN_SERVER_{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

/// The command line parser: [`Config`]'s flags, each with its environment variable.
pub fn command() -> clap::Command {
    Config::command().mut_args(|arg| match arg.get_long() {
        Some(long) if arg.get_env().is_none() && !FLAG_ONLY.contains(&long) => {
            let name = env_name(long);
            arg.env(name)
        }
        _ => arg,
    })
}

fn invalid(msg: String) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{msg}\n"))
}

/// The first line of a clap error, without clap's `error: ` prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("invalid value");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Parses `args` (the first is the program name) over the environment and the file.
pub fn load<I, T>(args: I) -> Result<Loaded, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = command();
    check_environment(&cmd)?;
    let first = cmd.clone().try_get_matches_from(&args)?;
    let mut from_file = BTreeSet::new();
    let mut merged = args.clone();
    if let Some(path) = first.get_one::<std::path::PathBuf>("config") {
        let file_args = file_arguments(&cmd, path, &first, &mut from_file)?;
        merged = Vec::with_capacity(args.len() + file_args.len());
        merged.extend(args.first().cloned());
        merged.extend(file_args.into_iter().map(OsString::from));
        merged.extend(args.into_iter().skip(1));
    }
    let matches = cmd.clone().try_get_matches_from(merged)?;
    let config = Config::from_arg_matches(&matches)?;
    let config = super::security::finish(config)?;
    let sources = cmd
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            if FLAG_ONLY.contains(&long) {
                return None;
            }
            let source = match matches.value_source(arg.get_id().as_str()) {
                Some(ValueSource::CommandLine) if from_file.contains(long) => Source::File,
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env(
                    arg.get_env()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ => Source::Default,
            };
            Some((long.to_string(), source))
        })
        .collect();
    let known: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let unknown_env = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("TOKEN_SERVER_") && !known.contains(name))
        .collect();
    Ok(Loaded {
        config,
        matches,
        sources,
        unknown_env,
    })
}

/// Checks each `TOKEN_SERVER_*` variable that names a setting on its own, so that a bad one
/// is reported by its name.
fn check_environment(cmd: &clap::Command) -> Result<(), clap::Error> {
    for arg in cmd.get_arguments() {
        let Some(name) = arg.get_env() else { continue };
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let name = name.to_string_lossy();
        if value.to_str().is_none() {
            return Err(invalid(format!(
                "environment variable {name}: the value is not UTF-8"
            )));
        }
        let one = clap::Command::new("token-server")
            .no_binary_name(true)
            .arg(arg.clone());
        if let Err(e) = one.try_get_matches_from(Vec::<OsString>::new()) {
            return Err(invalid(format!(
                "environment variable {name}: {}",
                first_line(&e)
            )));
        }
    }
    Ok(())
}

/// Reads a TOML settings file into `--key=value` arguments, for the settings that `first`
/// (flags and environment) left at their defaults. Unknown keys, values of the wrong type
/// and values the flag would refuse are errors that name the key.
fn file_arguments(
    cmd: &clap::Command,
    path: &Path,
    first: &clap::ArgMatches,
    from_file: &mut BTreeSet<String>,
) -> Result<Vec<String>, clap::Error> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read config file {file}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| invalid(format!("config file {file}: {e}")))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !FLAG_ONLY.contains(&key.as_str()));
        let Some(arg) = arg else {
            return Err(invalid(format!(
                "config file {file}: unknown key '{key}' (keys are the long flag names, as in --help)"
            )));
        };
        if key == "config" {
            return Err(invalid(format!(
                "config file {file}: key 'config' cannot be set from a file"
            )));
        }
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let text = match (value, is_switch) {
            (toml::Value::Boolean(b), true) => b.then(String::new),
            (_, true) => {
                return Err(invalid(format!(
                    "config file {file}: key '{key}' must be true or false"
                )));
            }
            (toml::Value::String(s), false) => Some(s),
            (toml::Value::Integer(i), false) => Some(i.to_string()),
            (toml::Value::Float(f), false) => Some(f.to_string()),
            (toml::Value::Boolean(b), false) => Some(if b { "yes" } else { "no" }.to_string()),
            (other, false) => {
                return Err(invalid(format!(
                    "config file {file}: key '{key}' has an unsupported value {other}"
                )));
            }
        };
        let flag = match &text {
            Some(v) if !is_switch => format!("--{key}={v}"),
            _ => format!("--{key}"),
        };
        // Checked on its own (a lone flag given on the command line, so no environment
        // variable is consulted), so that the error names the key.
        let one = clap::Command::new("token-server")
            .no_binary_name(true)
            .arg(arg.clone());
        if text.is_some()
            && let Err(e) = one.try_get_matches_from([flag.as_str()])
        {
            return Err(invalid(format!(
                "config file {file}: key '{key}': {}",
                first_line(&e)
            )));
        }
        let id = arg.get_id().as_str();
        let set_above = matches!(
            first.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if set_above || text.is_none() {
            continue;
        }
        from_file.insert(key.clone());
        out.push(flag);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ts-load-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, text).unwrap();
        file
    }

    fn error_of(text: &str, name: &str) -> String {
        let file = write(name, text);
        let f = file.to_str().unwrap();
        let err = load(["token-server", "--config", f])
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
        err
    }

    #[test]
    fn file_errors_name_the_key() {
        let e = error_of("port = \"x\"\n", "bad-port");
        assert!(e.contains("key 'port'") && e.contains("'x'"), "{e}");
        let e = error_of("colour = 1\n", "unknown");
        assert!(e.contains("unknown key 'colour'"), "{e}");
        let e = error_of("repair-log = \"yes\"\n", "switch");
        assert!(e.contains("key 'repair-log' must be true or false"), "{e}");
        let e = error_of("chaos-rate = 2.0\n", "rate");
        assert!(e.contains("key 'chaos-rate'"), "{e}");
        let e = error_of("check-config = true\n", "check");
        assert!(e.contains("unknown key 'check-config'"), "{e}");
        let e = error_of("port = [1]\n", "array");
        assert!(e.contains("key 'port' has an unsupported value"), "{e}");
    }

    #[test]
    fn file_values_fill_only_what_flags_left() {
        let file = write(
            "fill",
            "port = 7000\nrepair-log = true\nchaos-rate = 0.5\nlog-format = \"json\"\n",
        );
        let f = file.to_str().unwrap();
        let l = load(["token-server", "--config", f, "--port", "7001"]).unwrap();
        assert_eq!(l.config.port, 7001);
        assert!(l.config.repair_log);
        assert_eq!(l.config.chaos_rate, 0.5);
        assert_eq!(l.config.log_format, crate::config::LogFormat::Json);
        let source = |k: &str| {
            l.sources
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, s)| s.clone())
        };
        assert_eq!(source("port"), Some(Source::Flag));
        assert_eq!(source("repair-log"), Some(Source::File));
        assert_eq!(source("bind"), Some(Source::Default));
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
    }

    #[test]
    fn every_setting_has_an_environment_variable() {
        let cmd = command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if FLAG_ONLY.contains(&long) {
                assert!(arg.get_env().is_none(), "{long}");
            } else {
                assert!(
                    arg.get_env().is_some(),
                    "{long} has no environment variable"
                );
            }
        }
        assert_eq!(env_name("http-port"), "TOKEN_SERVER_HTTP_PORT");
    }
}
