//! Starting the server: bind, build the shards and their mesh, spawn the threads.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::{Poll, Waker};
use tracing::info;

use std::path::Path;
use std::sync::atomic::Ordering;

use tracing::warn;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::context::ServerContext;
use crate::keys::KeyGenerator;
use crate::log::writer::encode_snapshot;
use crate::log::{
    DirLock, FENCE_STEP, FenceReservation, Floor, FsStorage, LOG_FILE, LiveRecord, REWRITE_FILE,
    ShardLog, Storage, lock_dir, parse_shard_dir, read_floor, recover, shard_dir, write_floor,
};
use crate::net::handshake::Handshakers;
use crate::net::{acceptor, tls};
use crate::shard::event_loop::{Shard, WAKER_TOKEN};
use crate::shard::mesh::{self, Inbox};
use crate::table::LockTable;
use crate::types::shard_of_slot;

/// A started server.
pub struct Running {
    /// The bound RESP address.
    pub resp_addr: SocketAddr,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// The bound RESP-over-TLS address, with `--tls-port`.
    pub tls_addr: Option<SocketAddr>,
    /// The bound HTTPS address, with `--tls-http-port`.
    pub tls_http_addr: Option<SocketAddr>,
    /// The shared context.
    pub ctx: Arc<ServerContext>,
    /// How outside threads reach each shard.
    pub inboxes: Vec<Inbox>,
    shard_threads: Vec<JoinHandle<io::Result<()>>>,
    /// The acceptor and the HTTP server: they end with the process.
    _edge_threads: Vec<JoinHandle<io::Result<()>>>,
    /// Held for the life of the server: no second server may use the same directory.
    _dir_lock: DirLock,
}

impl Running {
    /// Stops the server as SIGTERM does (see [`crate::lifecycle`]).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.ctx.clone())
    }

    /// Waits for the shard threads to stop; returns the first error any of them stopped with.
    pub fn wait(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.shard_threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a server thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Stops a running server from another thread (a signal handler, a test).
#[derive(Clone, Debug)]
pub struct ShutdownHandle(Arc<ServerContext>);

impl ShutdownHandle {
    /// Starts a shutdown: no new connections, in-flight commands finish, logs are synced, and
    /// the shard threads stop ([`Running::wait`] returns).
    pub fn shutdown(&self) {
        self.0
            .lifecycle
            .request_shutdown("shutdown requested in-process");
    }
}

/// Binds the listeners and starts the shard threads, the acceptor and the HTTP server.
pub fn start(config: Config) -> io::Result<Running> {
    start_with_storage(config, Arc::new(FsStorage))
}

/// [`start`], with the logs on `storage` (tests inject faults through it).
pub fn start_with_storage(mut config: Config, storage: Arc<dyn Storage>) -> io::Result<Running> {
    fit_maxclients(&mut config);
    let shards = config.shard_count();
    let dir_lock = lock_dir(&config.dir)?;
    let recovered = recover_shards(&config, &storage, shards)?;
    let listener = bind(&config, config.port)?;
    let resp_addr = listener.local_addr()?;
    let http_listener = bind(&config, config.http_port)?;
    let http_addr = http_listener.local_addr()?;
    let tls = bind_tls(&config)?;
    let tls_addr = tls.resp.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let tls_http_addr = tls.http.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let mut ctx = ServerContext::new(config, resp_addr, shards);
    ctx.http_addr = http_addr;
    ctx.fences
        .issued
        .store(recovered.max_fence, Ordering::Relaxed);
    let _ = ctx.fences.reservation.set(FenceReservation::new(
        storage.clone(),
        &ctx.config.dir,
        recovered.epoch,
        recovered.reserved,
    ));
    let ctx = Arc::new(ctx);

    let mut polls = Vec::with_capacity(shards);
    let mut wakers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?));
        polls.push(poll);
    }
    let (endpoints, inboxes) = mesh::build(wakers);
    let mut resp_listeners = vec![listener.try_clone()?];
    if let Some((l, _)) = &tls.resp {
        resp_listeners.push(l.try_clone()?);
    }
    let shard_inboxes = inboxes.clone();
    ctx.lifecycle.attach(
        move || {
            for inbox in &shard_inboxes {
                let _ = inbox.send(mesh::External::Shutdown);
            }
        },
        resp_listeners,
    );

    let mut threads = Vec::with_capacity(shards);
    let mut edge_threads = Vec::with_capacity(2);
    let shard_state = recovered.tables.into_iter().zip(recovered.logs);
    for ((poll, endpoint), (table, log)) in polls.into_iter().zip(endpoints).zip(shard_state) {
        let keys = KeyGenerator::from_os()?;
        let shard = Shard::new(poll, endpoint, ctx.clone(), SystemClock, keys, table, log);
        let name = format!("shard-{}", threads.len());
        threads.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || shard.run())?,
        );
    }
    // Connections are dealt to the shards round-robin, plain and TLS alike.
    let deal: acceptor::Deal = {
        let inboxes = inboxes.clone();
        let next = std::sync::atomic::AtomicUsize::new(0);
        Arc::new(move |accepted| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            inboxes
                .get(n % inboxes.len().max(1))
                .is_some_and(|inbox| inbox.send(mesh::External::Connection(accepted)).is_ok())
        })
    };
    {
        let deal = deal.clone();
        let ctx = acceptor::AcceptorCtx::of(&ctx);
        edge_threads.push(std::thread::Builder::new().name("acceptor".into()).spawn(
            move || {
                acceptor::run(listener, deal, ctx, None);
                Ok(())
            },
        )?);
    }
    if let Some((listener, config)) = tls.resp {
        let ctx = acceptor::AcceptorCtx::of(&ctx);
        // A quarter of a core per shard is room for bursts of thousands of handshakes a second.
        let handshakers = Handshakers::spawn(shards.div_ceil(4), deal.clone(), ctx.clone())?;
        edge_threads.push(
            std::thread::Builder::new()
                .name("tls-acceptor".into())
                .spawn(move || {
                    acceptor::run(listener, deal, ctx, Some((config, handshakers)));
                    Ok(())
                })?,
        );
    }
    edge_threads.push(crate::http::spawn(
        http_listener,
        tls.http,
        inboxes.clone(),
        &ctx,
    )?);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        shards,
        resp = %resp_addr,
        http = %http_addr,
        dir = %ctx.config.dir.display(),
        appendfsync = ctx.config.appendfsync.as_str(),
        recovered_ids = recovered.live,
        recovered_records = recovered.records,
        recovery_ms = recovered.elapsed_ms,
        "token-server started"
    );
    if ctx.config.chaos_rate > 0.0 {
        warn!(
            chaos_rate = ctx.config.chaos_rate,
            "CHAOS MODE (learning mode): this server fails {:.1}% of write requests ON PURPOSE, \
             refusing half (-TRYAGAIN, HTTP 503) and dropping the reply of the other half after \
             running them. Never use it in production.",
            ctx.config.chaos_rate * 100.0
        );
    }
    // HTTP first: the RESP line tells watchers that the whole server is up.
    info!("listening http={http_addr}");
    if let Some(addr) = tls_http_addr {
        info!("listening https={addr}");
    }
    if let Some(addr) = tls_addr {
        info!("listening tls={addr}");
    }
    if ctx.config.security.protected_mode
        && ctx.config.requirepass.is_none()
        && !crate::net::access::is_loopback(ctx.config.bind)
    {
        warn!(
            bind = %ctx.config.bind,
            "protected mode: no password is set, so only loopback clients are accepted; \
             set --requirepass-file (or TOKEN_SERVER_PASSWORD) or --protected-mode no"
        );
    }
    info!("listening resp={resp_addr}");
    Ok(Running {
        resp_addr,
        http_addr,
        tls_addr,
        tls_http_addr,
        ctx,
        inboxes,
        shard_threads: threads,
        _edge_threads: edge_threads,
        _dir_lock: dir_lock,
    })
}

/// File descriptors the server needs besides its clients' (listeners, logs, polls, wakers, the
/// fence floor), plus this many per shard.
const RESERVED_FDS: u64 = 64;
const FDS_PER_SHARD: u64 = 8;

/// Makes room for `--maxclients` RESP and as many HTTP connections under `RLIMIT_NOFILE`, as
/// Redis does: raises the soft limit up to the hard one, and if that is still too low, lowers
/// `maxclients` to what fits and says so, rather than failing to accept later.
fn fit_maxclients(config: &mut Config) {
    let reserved = RESERVED_FDS + FDS_PER_SHARD * config.shard_count() as u64;
    let wanted = 2 * u64::from(config.maxclients) + reserved;
    let Some((soft, hard)) = nofile_limit() else {
        return;
    };
    if soft >= wanted {
        return;
    }
    let target = wanted.min(hard);
    let have = if set_nofile_limit(target, hard) {
        target
    } else {
        soft
    };
    if have >= wanted {
        info!(
            from = soft,
            to = have,
            "raised the open files limit for --maxclients"
        );
        return;
    }
    let fit = u32::try_from(have.saturating_sub(reserved) / 2)
        .unwrap_or(u32::MAX)
        .max(1);
    warn!(
        open_files_limit = have,
        requested = config.maxclients,
        maxclients = fit,
        "the open files limit is too low for --maxclients: serving at most {fit} clients per \
         protocol; raise the limit (ulimit -n, LimitNOFILE=) to serve more"
    );
    config.maxclients = fit;
}

/// The soft and hard `RLIMIT_NOFILE`.
fn nofile_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given a pointer to, which is a live,
    // properly aligned local of the right type.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some((limit.rlim_cur, limit.rlim_max))
}

/// Sets the soft `RLIMIT_NOFILE` to `soft` (keeping `hard`); whether it worked.
fn set_nofile_limit(soft: u64, hard: u64) -> bool {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct it is given a pointer to, a live local.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 }
}

/// What start-up recovery hands to the shards.
struct RecoveredShards {
    tables: Vec<LockTable>,
    logs: Vec<ShardLog>,
    max_fence: u64,
    /// This run's epoch.
    epoch: u64,
    /// Fences reserved in the floor file.
    reserved: u64,
    /// Ids held (locked or completed) after replay.
    live: usize,
    /// Log records replayed.
    records: u64,
    /// Time spent reading the logs.
    elapsed_ms: u64,
}

/// Replays the logs under `--dir` into one table per shard, then rewrites every shard's log
/// from its table and removes the logs of shards beyond the current count.
///
/// The rewrite at every start keeps one invariant that makes compaction safe: a shard's log
/// only ever holds records of ids that shard owns. Without it, after a restart with another
/// shard count, a compaction could drop the record that freed an id while an older record
/// of the same id still sat in another shard's log, and the id would come back at the next
/// start. A crash during these rewrites is harmless: each rewritten log holds the same state
/// at the new epoch, and the old logs are removed only once all are rewritten.
fn recover_shards(
    config: &Config,
    storage: &Arc<dyn Storage>,
    shards: usize,
) -> io::Result<RecoveredShards> {
    let floor = read_floor(&**storage, &config.dir)?;
    let mut recovered = recover(&**storage, &config.dir, config.repair_log)
        .map_err(|e| io::Error::other(e.to_string()))?;
    // Whatever repair cut from the logs, epochs and fences continue above the floor, and the
    // floor moves above this run's first fences before any is handed out.
    recovered.epoch = recovered.epoch.max(floor.epoch.saturating_add(1));
    recovered.max_fence = recovered.max_fence.max(floor.fence);
    let reserved = recovered.max_fence.saturating_add(FENCE_STEP);
    write_floor(
        &**storage,
        &config.dir,
        Floor {
            epoch: recovered.epoch,
            fence: reserved,
        },
    )?;
    let report = &recovered.report;
    for (path, bytes) in &report.torn_tails {
        warn!(file = %path.display(), bytes, "dropped a torn record at the end of a log");
    }
    for (path, offset, bytes) in &report.repaired {
        warn!(file = %path.display(), offset, bytes, "repaired a damaged log: cut it there");
    }
    // Each live id goes to the shard that owns its hash slot now, whatever shard count wrote it.
    let now = SystemClock.now_ms();
    let mut tables: Vec<LockTable> = (0..shards)
        .map(|_| LockTable::new(config.policy()))
        .collect();
    let mut live = 0usize;
    for LiveRecord { hash_slot, record } in recovered.live {
        if let Some(table) = tables.get_mut(shard_of_slot(hash_slot, shards)) {
            live += usize::from(table.restore(record, now));
        }
    }
    let mut logs = Vec::with_capacity(shards);
    for (shard, table) in tables.iter().enumerate() {
        let mut log = ShardLog::open(storage.clone(), &config.dir, shard, recovered.epoch)?;
        let snapshot = encode_snapshot(
            table.entries().map(|e| e.as_record().to_record()),
            shard,
            shards,
            recovered.epoch,
            recovered.max_fence,
        );
        log.begin_rewrite(snapshot)?;
        loop {
            match log.poll_rewrite() {
                Some(Ok(_)) => break,
                Some(Err(e)) => return Err(e),
                None => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        logs.push(log);
    }
    remove_stale_logs(&**storage, &config.dir, shards)?;
    info!(
        files = report.files,
        records = report.records,
        bytes = report.bytes,
        live,
        epoch = recovered.epoch,
        max_fence = recovered.max_fence,
        elapsed_ms = (report.elapsed.as_secs_f64() * 1000.0) as u64,
        "recovered"
    );
    Ok(RecoveredShards {
        tables,
        logs,
        max_fence: recovered.max_fence,
        epoch: recovered.epoch,
        reserved,
        live,
        records: report.records,
        elapsed_ms: (report.elapsed.as_secs_f64() * 1000.0) as u64,
    })
}

/// Removes the logs of shard directories numbered `shards` and above: their ids now live in
/// the rewritten logs of the current shards.
fn remove_stale_logs(storage: &dyn Storage, dir: &Path, shards: usize) -> io::Result<()> {
    if !storage.exists(dir)? {
        return Ok(());
    }
    for name in storage.list_dir(dir)? {
        let Some(n) = name.to_str().and_then(parse_shard_dir) else {
            continue;
        };
        if n < shards {
            continue;
        }
        let sdir = shard_dir(dir, n);
        for file in [LOG_FILE, REWRITE_FILE] {
            let path = sdir.join(file);
            if storage.exists(&path)? {
                storage.remove_file(&path)?;
            }
        }
        storage.sync_dir(&sdir)?;
        info!(dir = %sdir.display(), "removed the log of a shard beyond --shards");
    }
    Ok(())
}

/// The TLS listeners `--tls-port` and `--tls-http-port` ask for, each with its settings.
struct TlsListeners {
    resp: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    http: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

/// Loads the certificates and binds the TLS listeners, if any are asked for.
fn bind_tls(config: &Config) -> io::Result<TlsListeners> {
    let security = &config.security;
    let resp = match security.tls_port {
        Some(port) => Some((bind(config, port)?, tls::server_config(security, &[])?)),
        None => None,
    };
    let http = match security.tls_http_port {
        Some(port) => Some((
            bind(config, port)?,
            tls::server_config(security, &[b"http/1.1"])?,
        )),
        None => None,
    };
    Ok(TlsListeners { resp, http })
}

/// Binds a listener on the configured address and `port`, naming both in the error.
fn bind(config: &Config, port: u16) -> io::Result<TcpListener> {
    TcpListener::bind((config.bind, port)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}:{port}: {e}", config.bind),
        )
    })
}
