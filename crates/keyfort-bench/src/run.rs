//! One measured run: connect, warm up, prepare the measured requests, measure, and read
//! the server's and this process's CPU and memory around the measured phase.

use std::sync::Arc;
use std::time::Duration;

use crate::client::Target;
use crate::drive::{connect_all, drive, RequestSet};
use crate::procfs::{self, Process};
use crate::report::{ClientUsage, MachineUsage, Report, ServerUsage};
use crate::workload::Plan;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    /// Signed requests prepared for the warm-up (it ends early if they run out).
    pub warmup_requests: usize,
    /// Signed requests prepared for the measured phase; by default sized from the warm-up's rate.
    pub requests: Option<usize>,
    /// The most signed requests ever prepared for one phase (memory).
    pub max_requests: usize,
}

/// How many signed requests the measured phase needs: the warm-up's rate for the whole
/// duration, with room for the rate to rise after the warm-up (it has doubled once caches
/// were warm: the warm-up's rate includes the cold start).
pub fn measured_requests(warmup_rps: f64, duration: Duration, max: usize) -> usize {
    let needed = (warmup_rps.max(100.0) * duration.as_secs_f64() * 2.5).ceil() as usize + 1000;
    needed.min(max)
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub async fn measure(
    target: &Target,
    plan: &Plan,
    server: Option<&Process>,
    options: &RunOptions,
) -> anyhow::Result<Report> {
    let signed = plan.workload.is_signed();
    let expect = plan.expect;
    // Warm-up requests are made before connecting: an idle new connection may be closed by
    // the server's first-request timeout while they are signed.
    let warm_set =
        Arc::new(plan.requests(if signed && !options.warmup.is_zero() { options.warmup_requests } else { 0 }));
    let mut connections = connect_all(target, options.concurrency).await?;
    let mut warmup_rps = 0.0;
    if !options.warmup.is_zero() {
        let (kept, warm) = drive(target, connections, warm_set, expect, options.warmup, options.timeout).await;
        connections = kept;
        if warm.elapsed_s > 0.0 {
            warmup_rps = warm.ok as f64 / warm.elapsed_s;
        }
        if warm.ok == 0 {
            anyhow::bail!(
                "{}: no request succeeded during the warm-up (errors: {:?})",
                plan.workload,
                warm.errors.labelled()
            );
        }
    }
    let set: Arc<RequestSet> = Arc::new(plan.requests(if signed {
        options.requests.unwrap_or_else(|| measured_requests(warmup_rps, options.duration, options.max_requests))
    } else {
        0
    }));
    // Replace connections closed while the measured requests were signed, and any lost in
    // the warm-up, so that the measured phase starts with exactly `concurrency` of them.
    let mut fresh = Vec::with_capacity(options.concurrency);
    for c in connections.into_iter().filter(|c| !c.is_closed()) {
        fresh.push(c);
    }
    let missing = options.concurrency - fresh.len().min(options.concurrency);
    fresh.extend(connect_all(target, missing).await?);
    let connections = fresh;

    let me = Process::current();
    let loadavg_before = procfs::loadavg().unwrap_or_default();
    let server_cpu_0 = server.map(Process::cpu_seconds).transpose()?;
    let own_cpu_0 = me.cpu_seconds()?;
    let machine_0 = procfs::machine()?;
    let started_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();

    let (_, outcome) = drive(target, connections, set.clone(), expect, options.duration, options.timeout).await;

    let server_cpu_1 = server.map(Process::cpu_seconds).transpose()?;
    let own_cpu_1 = me.cpu_seconds()?;
    let machine_1 = procfs::machine()?;
    let ticks = procfs::ticks_per_second();
    let elapsed = outcome.elapsed_s.max(1e-9);

    let server_usage = match (server, server_cpu_0, server_cpu_1) {
        (Some(process), Some(a), Some(b)) => {
            let memory = process.memory().unwrap_or_default();
            Some(ServerUsage {
                pid: process.pid_number(),
                cpu_s: round2(b - a),
                cpu_cores: round2((b - a) / elapsed),
                peak_rss_mib: mib(memory.peak_rss_kib),
                rss_mib: mib(memory.rss_kib),
            })
        }
        _ => None,
    };
    let own_cpu = own_cpu_1 - own_cpu_0;
    let busy_s = (machine_1.busy - machine_0.busy) as f64 / ticks;
    let server_cpu = server_usage.as_ref().map_or(0.0, |s| s.cpu_s);
    Ok(Report {
        server: "keyfort".into(),
        workload: plan.workload.name().into(),
        target: target.base_url.to_string().trim_end_matches('/').to_owned(),
        concurrency: options.concurrency,
        warmup_s: options.warmup.as_secs_f64(),
        duration_s: round2(outcome.elapsed_s),
        requests: outcome.requests,
        ok: outcome.ok,
        throughput_rps: round2(outcome.ok as f64 / elapsed),
        warmup_rps: round2(warmup_rps),
        latency_ms: outcome.latencies.summary(),
        percentiles: outcome.latencies.curve(),
        errors: outcome.errors.labelled(),
        reconnects: outcome.reconnects,
        prepared_requests: set.len(),
        exhausted: signed && outcome.ran_out,
        server_usage,
        client_usage: ClientUsage { cpu_s: round2(own_cpu), cpu_cores: round2(own_cpu / elapsed) },
        machine: MachineUsage {
            cores: std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1),
            busy_s: round2(busy_s),
            total_s: round2((machine_1.total - machine_0.total) as f64 / ticks),
            steal_s: round2((machine_1.steal - machine_0.steal) as f64 / ticks),
            other_cpu_s: round2(busy_s - server_cpu - own_cpu),
            loadavg_before,
        },
        started_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measured_set_covers_the_warmup_rate_with_room() {
        let d = Duration::from_secs(10);
        assert_eq!(measured_requests(1000.0, d, 1_000_000), 26_000);
        assert_eq!(measured_requests(10.0, d, 1_000_000), 3_500, "a floor of 100/s");
        assert_eq!(measured_requests(50_000.0, d, 150_000), 150_000, "capped");
    }
}
