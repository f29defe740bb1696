//! The `token-server` binary: parse settings, set up logging, run the server until a signal
//! or `SHUTDOWN`, then stop within `--shutdown-timeout` and exit 0.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use token_server::config::{LogFormat, load, show};
use token_server::context::ServerContext;

/// Has glibc map every block of 128 KiB or more (table chunks, large index segments) on its
/// own and unmap it when freed. By default glibc raises that threshold each time such a block
/// is freed, after which large blocks come from its heaps and stay resident when freed: a
/// burst of ids that expired would keep its memory for the life of the process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_large_blocks_back() {
    // SAFETY: mallopt only changes a malloc setting; it has no preconditions on memory or
    // pointers, and it runs first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_large_blocks_back() {}

/// Extra time past `--shutdown-timeout` before a stuck shutdown is cut short.
const WATCHDOG_SLACK: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    give_large_blocks_back();
    let loaded = match load::load(std::env::args_os()) {
        Ok(l) => l,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            // One line: the first line of clap's message.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first}");
            return ExitCode::from(2);
        }
    };
    if loaded.config.check_config {
        print!("{}", show::render(&loaded));
        for variable in &loaded.unknown_env {
            eprintln!("warning: {variable} names no setting and is ignored");
        }
        return match check_dir(&loaded.config.dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("{msg}");
                ExitCode::from(2)
            }
        };
    }
    let config = loaded.config;
    init_logging(config.log_level, config.log_format);
    for variable in &loaded.unknown_env {
        tracing::warn!(
            variable = %variable,
            "ignored an environment variable that names no setting (settings are \
             TOKEN_SERVER_ and the long flag name, as in --help)"
        );
    }
    let running = match token_server::server::start(config) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = running.ctx.clone();
    watch_signals(ctx.clone());
    start_watchdog(ctx.clone());
    let result = running.wait();
    wait_for_http(&ctx);
    match result {
        Ok(()) => {
            let elapsed_ms = ctx.lifecycle.elapsed().map_or(0, |d| d.as_millis() as u64);
            tracing::info!(elapsed_ms, "stopped: logs synced");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stdout at `level`, as text (coloured on a terminal) or as one JSON object per line.
fn init_logging(level: tracing::Level, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// `--check-config` also checks that the data directory is usable: a directory if it exists.
fn check_dir(dir: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("--dir {} is not a directory", dir.display())),
        // It is created at start-up.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("--dir {}: {e}", dir.display())),
    }
}

/// SIGTERM or SIGINT starts a shutdown; a second one exits at once (status 1), as Redis does.
fn watch_signals(ctx: Arc<ServerContext>) {
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle signals; SIGTERM ends at once");
            return;
        }
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let name = if signal == signal_hook::consts::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            if !ctx.lifecycle.request_shutdown(name) {
                tracing::warn!(signal = name, "second signal during shutdown: exiting now");
                std::process::exit(1);
            }
        }
    });
}

/// Ends a shutdown (by signal or SHUTDOWN) that overruns `--shutdown-timeout` by more than
/// [`WATCHDOG_SLACK`], e.g. on a hung disk.
fn start_watchdog(ctx: Arc<ServerContext>) {
    std::thread::spawn(move || {
        while !ctx.lifecycle.is_stopping() {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(
            Duration::from_secs(u64::from(ctx.config.shutdown_timeout)) + WATCHDOG_SLACK,
        );
        tracing::error!("the shutdown did not finish in time: exiting now");
        std::process::exit(1);
    });
}

/// After the shards have stopped: lets the HTTP connections finish the requests they are
/// serving (they close once answered), until the shutdown deadline.
fn wait_for_http(ctx: &ServerContext) {
    let deadline = ctx
        .lifecycle
        .deadline()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
    while ctx.figures.http.clients.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}
