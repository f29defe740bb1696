//! Outside tools (`redis-cli`, `python3` and its modules, ...): found on `PATH`, or the test
//! skips loudly (fails with `TOKEN_SERVER_REQUIRE_TOOLS=1`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------
// External tools
// ---------------------------------------------------------------------------

/// Locates an external program on `PATH`.
///
/// When it is missing the calling test should skip: this prints a loud
/// notice and returns `None`. With `TOKEN_SERVER_REQUIRE_TOOLS=1` a missing
/// tool fails the test instead.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    if let Some(path) = find_in_path(name) {
        return Some(path);
    }
    if std::env::var("TOKEN_SERVER_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("required tool `{name}` not found on PATH (TOKEN_SERVER_REQUIRE_TOOLS=1)");
    }
    // Written straight to the stderr handle rather than with `eprintln!`, so
    // the notice shows up even though the test harness captures the output
    // of passing tests.
    let _ = writeln!(
        io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPING TEST: `{name}` not found on PATH.\n\
         !!! Install it (Debian: apt-get install redis-tools) or set\n\
         !!! TOKEN_SERVER_REQUIRE_TOOLS=1 to turn this skip into a failure.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

/// Locates an optional program on `PATH`, without the skip notice of [`require_tool`].
pub fn find_tool(name: &str) -> Option<PathBuf> {
    find_in_path(name)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `tool`, if it is on `PATH` and `tool probe...` succeeds (its library is installed, say).
/// Otherwise the calling test skips loudly, saying `missing` and how to `install` it, or fails
/// with `TOKEN_SERVER_REQUIRE_TOOLS=1`, like [`require_tool`].
pub fn require_tool_that(
    tool: &str,
    probe: &[&str],
    missing: &str,
    install: &str,
) -> Option<PathBuf> {
    let path = require_tool(tool)?;
    let works = Command::new(&path)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(path);
    }
    if std::env::var("TOKEN_SERVER_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{missing} (TOKEN_SERVER_REQUIRE_TOOLS=1)");
    }
    let _ = writeln!(
        io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPING TEST: {missing}.\n\
         !!! Install it ({install}) or set\n\
         !!! TOKEN_SERVER_REQUIRE_TOOLS=1 to turn this skip into a failure.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

/// `python3`, if it is on `PATH` and can import `module` (e.g. `redis` for redis-py).
/// Like [`require_tool`], a missing one skips loudly, or fails with
/// `TOKEN_SERVER_REQUIRE_TOOLS=1`.
pub fn require_python_module(module: &str) -> Option<PathBuf> {
    require_tool_that(
        "python3",
        &["-c", &format!("import {module}")],
        &format!("python module `{module}` is not installed"),
        &format!("pip install {module}"),
    )
}
