//! `GET /metrics`: every figure of the server in the OpenMetrics text format (which Prometheus
//! scrapes natively), encoded with `prometheus-client`.
//!
//! The figures live in shard-owned atomics ([`crate::context::ShardStats`]) and in the HTTP
//! adapter's shared atomics; a scrape reads them through a [`Collector`] and never touches a
//! shard's table or waits for a shard. Counters of one label combination that is still zero
//! (a command never called, a status never answered) are left out, to keep the page short.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::context::ServerContext;
use crate::metrics::commands::{Outcome, ROWS, row_name};
use crate::metrics::histogram::Snapshot;
use crate::metrics::http::{ENDPOINTS, STATUSES, status_label};

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one series.
type Labels = Vec<(&'static str, String)>;

/// The page, rendered now.
pub fn render(ctx: &Arc<ServerContext>) -> String {
    let mut registry = Registry::with_prefix("token_server");
    registry.register_collector(Box::new(ServerCollector(ctx.clone())));
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail, and the collector only fails if writing does.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Reads the server's atomics at scrape time.
#[derive(Debug)]
struct ServerCollector(Arc<ServerContext>);

fn shard_labels(shard: usize) -> Labels {
    vec![("shard", shard.to_string())]
}

/// Writes one family of series of `kind` (counter or gauge).
fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in series {
        if labels.is_empty() {
            sample(&mut metric, kind, value)?;
        } else {
            sample(&mut metric.encode_family(&labels)?, kind, value)?;
        }
    }
    Ok(())
}

/// Writes one sample of a counter or a gauge.
fn sample(m: &mut MetricEncoder<'_>, kind: MetricType, value: u64) -> fmt::Result {
    match kind {
        MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&value, None),
        _ => m.encode_gauge(&value),
    }
}

/// Writes one family of histograms in seconds.
fn histograms(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, Snapshot)>,
) -> fmt::Result {
    let mut metric =
        enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, snap) in series {
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                snap.sum_seconds(),
                snap.count(),
                &snap.prometheus_buckets(),
                None,
            )?;
    }
    Ok(())
}

/// One series per shard, read from `field` of its stats.
fn per_shard<'a>(
    ctx: &'a ServerContext,
    field: impl Fn(&'a crate::context::ShardStats) -> &'a AtomicU64 + 'a,
) -> impl Iterator<Item = (Labels, u64)> + 'a {
    ctx.figures
        .shards
        .iter()
        .enumerate()
        .map(move |(i, s)| (shard_labels(i), field(s).load(Ordering::Relaxed)))
}

impl Collector for ServerCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let ctx = &*self.0;
        let c = &ctx.config;
        {
            let mut info =
                enc.encode_descriptor("build", "The server's version.", None, MetricType::Info)?;
            info.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        }
        let gauge = MetricType::Gauge;
        let counter = MetricType::Counter;
        family(
            &mut enc,
            "uptime",
            "Seconds since start.",
            Some(&Unit::Seconds),
            gauge,
            [(vec![], ctx.started.elapsed().as_secs())],
        )?;
        family(
            &mut enc,
            "shards",
            "Shard threads.",
            None,
            gauge,
            [(vec![], ctx.figures.shards.len() as u64)],
        )?;
        family(
            &mut enc,
            "up_ready",
            "1 when ready: no shard's log is failed and no shutdown is under way.",
            None,
            gauge,
            [(vec![], u64::from(ctx.is_ready()))],
        )?;

        // Commands.
        let mut calls = Vec::new();
        let mut latency = Vec::new();
        for row in 0..ROWS {
            let mut snap = Snapshot::default();
            for s in &ctx.figures.shards {
                if let Some(h) = s.commands.latency(row) {
                    snap.add(h);
                }
            }
            for outcome in Outcome::ALL {
                let n: u64 = ctx
                    .figures
                    .shards
                    .iter()
                    .map(|s| s.commands.calls(row, outcome))
                    .sum();
                if n > 0 {
                    let labels = vec![
                        ("command", row_name(row).to_string()),
                        ("outcome", outcome.as_str().to_string()),
                    ];
                    calls.push((labels, n));
                }
            }
            if snap.count() > 0 {
                latency.push((vec![("command", row_name(row).to_string())], snap));
            }
        }
        family(
            &mut enc,
            "commands",
            "Commands run, by command and outcome (counted by the shard that ran them).",
            None,
            counter,
            calls,
        )?;
        histograms(
            &mut enc,
            "command_duration",
            "Execution time of commands on their shard (parse and apply; not network, not log sync).",
            latency,
        )?;

        // Connections.
        let h = &ctx.figures.http;
        let proto = |p: &str| vec![("protocol", p.to_string())];
        family(
            &mut enc,
            "connected_clients",
            "Client connections open now.",
            None,
            gauge,
            [
                (
                    proto("resp"),
                    ctx.figures.clients.connected.load(Ordering::Relaxed) as u64,
                ),
                (proto("http"), h.clients.load(Ordering::Relaxed) as u64),
            ],
        )?;
        family(
            &mut enc,
            "connections_received",
            "Client connections accepted since start.",
            None,
            counter,
            [
                (
                    proto("resp"),
                    ctx.figures.clients.received.load(Ordering::Relaxed),
                ),
                (
                    proto("http"),
                    h.connections_received.load(Ordering::Relaxed),
                ),
            ],
        )?;
        family(
            &mut enc,
            "rejected_connections",
            "Connections refused because of --maxclients.",
            None,
            counter,
            [
                (
                    proto("resp"),
                    ctx.figures.clients.rejected.load(Ordering::Relaxed),
                ),
                (
                    proto("http"),
                    h.rejected_connections.load(Ordering::Relaxed),
                ),
            ],
        )?;
        family(
            &mut enc,
            "auth_failures",
            "Failed authentications: wrong passwords and unknown users, RESP and HTTP.",
            None,
            counter,
            [(
                Vec::new(),
                ctx.figures.clients.auth_failures.load(Ordering::Relaxed),
            )],
        )?;
        let mut requests = Vec::new();
        let mut http_latency = Vec::new();
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for s in 0..STATUSES.len() {
                let n = h.requests(e, s);
                if n > 0 {
                    requests.push((
                        vec![
                            ("endpoint", endpoint.to_string()),
                            ("status", status_label(s)),
                        ],
                        n,
                    ));
                }
            }
            if let Some(snap) = h.latency(e).map(|l| l.snapshot()).filter(|s| s.count() > 0) {
                http_latency.push((vec![("endpoint", endpoint.to_string())], snap));
            }
        }
        family(
            &mut enc,
            "http_requests",
            "HTTP requests answered, by endpoint and status.",
            None,
            counter,
            requests,
        )?;
        histograms(
            &mut enc,
            "http_request_duration",
            "Time to answer an HTTP request, by endpoint.",
            http_latency,
        )?;

        // The lock table.
        family(
            &mut enc,
            "locked_ids",
            "Locked ids.",
            None,
            gauge,
            per_shard(ctx, |s| &s.locked),
        )?;
        family(
            &mut enc,
            "completed_ids",
            "Completed ids.",
            None,
            gauge,
            per_shard(ctx, |s| &s.completed),
        )?;
        family(
            &mut enc,
            "waiters",
            "Queued LOCK ... WAIT requests.",
            None,
            gauge,
            per_shard(ctx, |s| &s.waiters),
        )?;
        family(
            &mut enc,
            "expired_leases",
            "Leases that ran out.",
            None,
            counter,
            per_shard(ctx, |s| &s.expired),
        )?;
        family(
            &mut enc,
            "reaped_completions",
            "Completed ids removed by --completed-retention.",
            None,
            counter,
            per_shard(ctx, |s| &s.reaped),
        )?;
        family(
            &mut enc,
            "fingerprint_mismatches",
            "LOCKs refused for a different fingerprint.",
            None,
            counter,
            per_shard(ctx, |s| &s.mismatches),
        )?;
        family(
            &mut enc,
            "last_fence",
            "The last fencing token handed out.",
            None,
            gauge,
            [(vec![], ctx.fences.issued.load(Ordering::Relaxed))],
        )?;

        family(
            &mut enc,
            "table_memory",
            "Bytes each shard's lock table has allocated for entries, index and fingerprints/results.",
            Some(&Unit::Bytes),
            gauge,
            per_shard(ctx, |s| &s.table_memory),
        )?;
        if let Some(rss) = crate::metrics::process::resident() {
            family(
                &mut enc,
                "resident_memory",
                "Resident set size of the process (VmRSS).",
                Some(&Unit::Bytes),
                gauge,
                [(vec![], rss.now)],
            )?;
        }

        // The log.
        family(
            &mut enc,
            "log",
            "Bytes in each shard's log file.",
            Some(&Unit::Bytes),
            gauge,
            per_shard(ctx, |s| &s.log_bytes),
        )?;
        family(
            &mut enc,
            "log_rewrites",
            "Completed log rewrites.",
            None,
            counter,
            per_shard(ctx, |s| &s.log_rewrites),
        )?;
        family(
            &mut enc,
            "log_errors",
            "Failed log writes or syncs.",
            None,
            counter,
            per_shard(ctx, |s| &s.log_errors),
        )?;
        family(
            &mut enc,
            "log_failed",
            "1 while a shard's log cannot be written (its writes get -IOERR).",
            None,
            gauge,
            per_shard(ctx, |s| &s.log_failed),
        )?;
        histograms(
            &mut enc,
            "fsync_duration",
            "Time to sync a shard's log (fdatasync), per sync.",
            ctx.figures
                .shards
                .iter()
                .enumerate()
                .map(|(i, s)| (shard_labels(i), s.fsync.snapshot())),
        )?;

        // Between shards.
        family(
            &mut enc,
            "forwarded_commands",
            "Lock commands a shard sent to the shard owning their id.",
            None,
            counter,
            per_shard(ctx, |s| &s.forwarded),
        )?;
        family(
            &mut enc,
            "cross_shard_messages_sent",
            "Messages (requests and replies) a shard sent to other shards.",
            None,
            counter,
            per_shard(ctx, |s| &s.messages_sent),
        )?;
        family(
            &mut enc,
            "cross_shard_messages_received",
            "Messages a shard received from other shards.",
            None,
            counter,
            per_shard(ctx, |s| &s.messages_received),
        )?;

        // Learning mode and the slow log.
        family(
            &mut enc,
            "chaos_rate_ppm",
            "--chaos-rate in parts per million (0: off).",
            None,
            gauge,
            [(vec![], (c.chaos_rate * 1e6).round() as u64)],
        )?;
        let chaos = ctx.figures.shards.iter().enumerate().flat_map(|(i, s)| {
            [("refused", &s.chaos_refused), ("dropped", &s.chaos_dropped)].map(|(action, cell)| {
                let mut l = shard_labels(i);
                l.push(("action", action.to_string()));
                (l, cell.load(Ordering::Relaxed))
            })
        });
        family(
            &mut enc,
            "chaos",
            "Requests chaos mode refused (before running) or dropped (after running).",
            None,
            counter,
            chaos,
        )?;
        let slow: usize = ctx.figures.shards.iter().map(|s| s.slowlog.len()).sum();
        family(
            &mut enc,
            "slowlog_length",
            "Entries in the slow log.",
            None,
            gauge,
            [(vec![], slow as u64)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::commands::Outcome;
    use std::time::Duration;

    #[test]
    fn the_page_has_every_family_and_ends_with_eof() {
        let config = Config::from_args(["token-server"]).unwrap();
        let ctx = Arc::new(ServerContext::new(
            config,
            "127.0.0.1:6409".parse().unwrap(),
            2,
        ));
        let lock = crate::types::CommandKind::Lock.index();
        ctx.figures.shards[1]
            .commands
            .record(lock, Outcome::Ok, Duration::from_micros(3));
        ctx.figures.shards[0]
            .fsync
            .record_owned(Duration::from_micros(700));
        ctx.figures.http.record(0, 200, Duration::from_micros(50));
        let page = render(&ctx);
        for needle in [
            "# TYPE token_server_commands counter",
            "token_server_commands_total{command=\"lock\",outcome=\"ok\"} 1",
            "token_server_command_duration_seconds_bucket{le=\"0.000004\",command=\"lock\"} 1",
            "token_server_up_ready 1",
            "token_server_connected_clients{protocol=\"resp\"} 0",
            "token_server_http_requests_total{endpoint=\"lock\",status=\"200\"} 1",
            "token_server_fsync_duration_seconds_count{shard=\"0\"} 1",
            "token_server_locked_ids{shard=\"1\"} 0",
            "token_server_cross_shard_messages_sent_total{shard=\"0\"} 0",
            "token_server_build_info{version=",
        ] {
            assert!(page.contains(needle), "missing {needle} in\n{page}");
        }
        assert!(page.ends_with("# EOF\n"));
    }
}
