//! What one run measured, as a table for people and JSON for the side-by-side script and
//! the plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::latency::{LatencySummary, PercentilePoint};

/// Why a request did not count as a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// An answer with another status than the workload expects.
    Status(u16),
    /// The expected status, but a body that says the work was not done (an inactive token).
    Body,
    /// No answer within the request timeout.
    Timeout,
    /// The connection failed while sending or receiving.
    Connection,
    /// A new connection could not be opened after one failed.
    Connect,
}

impl ErrorKind {
    /// The key in [`Report::errors`].
    pub fn label(self) -> String {
        match self {
            ErrorKind::Status(code) => format!("status_{code}"),
            ErrorKind::Body => "unexpected_body".into(),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Connection => "connection".into(),
            ErrorKind::Connect => "connect".into(),
        }
    }
}

/// Counts of errors by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts(BTreeMap<ErrorKind, u64>);

impl ErrorCounts {
    pub fn add(&mut self, kind: ErrorKind) {
        *self.0.entry(kind).or_default() += 1;
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for (kind, n) in &other.0 {
            *self.0.entry(*kind).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn labelled(&self) -> BTreeMap<String, u64> {
        self.0.iter().map(|(kind, n)| (kind.label(), *n)).collect()
    }
}

/// CPU and memory of the server process during the measured phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    pub pid: u32,
    pub cpu_s: f64,
    /// `cpu_s` over the measured time: 1.0 is one core kept busy.
    pub cpu_cores: f64,
    /// The process's peak resident memory since it started (`VmHWM`).
    pub peak_rss_mib: Option<f64>,
    /// Resident memory at the end of the measured phase (`VmRSS`).
    pub rss_mib: Option<f64>,
}

/// CPU of the load generator itself during the measured phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientUsage {
    pub cpu_s: f64,
    pub cpu_cores: f64,
}

/// The whole machine during the measured phase, to tell whether something else ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineUsage {
    pub cores: usize,
    pub busy_s: f64,
    pub total_s: f64,
    pub steal_s: f64,
    /// Busy time that was neither the server's nor the load generator's: other processes.
    pub other_cpu_s: f64,
    pub loadavg_before: [f64; 3],
}

/// One workload at one concurrency against one server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `keyfort`, or the peer's name in side-by-side results.
    pub server: String,
    pub workload: String,
    pub target: String,
    pub concurrency: usize,
    pub warmup_s: f64,
    /// The measured time: the configured duration, or less when the pre-signed requests ran out.
    pub duration_s: f64,
    /// Answers received in the measured time, successful or not.
    pub requests: u64,
    /// Answers with the expected status (and body).
    pub ok: u64,
    /// Successful answers per second.
    pub throughput_rps: f64,
    pub warmup_rps: f64,
    pub latency_ms: LatencySummary,
    pub percentiles: Vec<PercentilePoint>,
    /// Errors by kind (`status_400`, `timeout`, `connection`, `connect`, `unexpected_body`).
    pub errors: BTreeMap<String, u64>,
    /// Connections opened again during the measured phase, after the server closed one.
    pub reconnects: u64,
    /// Pre-signed requests prepared for the measured phase.
    pub prepared_requests: usize,
    /// True when the measured phase used up its pre-signed requests before its time was up.
    pub exhausted: bool,
    pub server_usage: Option<ServerUsage>,
    pub client_usage: ClientUsage,
    pub machine: MachineUsage,
    /// Seconds since the Unix epoch at the start of the measured phase.
    pub started_at: u64,
}

impl Report {
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The JSON a `run` writes: every report of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunFile {
    pub tool: String,
    pub version: String,
    pub runs: Vec<Report>,
}

fn opt_mib(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into())
}

/// A markdown table, one line per report.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    out.push_str(
        "| workload | conc | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | server CPU (cores) | server peak RSS MiB | bench CPU (cores) | other CPU (cores) |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        let l = &r.latency_ms;
        let errors = if r.errors.is_empty() {
            "0".to_owned()
        } else {
            r.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
        };
        let (cpu, peak) = match &r.server_usage {
            Some(s) => (format!("{:.2}", s.cpu_cores), opt_mib(s.peak_rss_mib)),
            None => ("-".into(), "-".into()),
        };
        let other = if r.duration_s > 0.0 { r.machine.other_cpu_s.max(0.0) / r.duration_s } else { 0.0 };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1}{} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.2} | {:.2} |",
            r.workload,
            r.concurrency,
            r.throughput_rps,
            if r.exhausted { " (ran out of requests)" } else { "" },
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            errors,
            cpu,
            peak,
            r.client_usage.cpu_cores,
            other,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Latencies;

    fn sample() -> Report {
        let mut latencies = Latencies::new();
        for i in 1..=100 {
            latencies.record(std::time::Duration::from_micros(i * 100));
        }
        let mut errors = ErrorCounts::default();
        errors.add(ErrorKind::Status(400));
        errors.add(ErrorKind::Status(400));
        errors.add(ErrorKind::Timeout);
        Report {
            server: "keyfort".into(),
            workload: "token-pkjwt".into(),
            target: "https://localhost:1".into(),
            concurrency: 16,
            duration_s: 10.0,
            requests: 1003,
            ok: 1000,
            throughput_rps: 100.0,
            latency_ms: LatencySummary { mean: 5.0, p50: 5.0, p90: 9.0, p99: 9.9, p999: 9.99, max: 10.0 },
            percentiles: latencies.curve(),
            errors: errors.labelled(),
            server_usage: Some(ServerUsage {
                pid: 7,
                cpu_s: 15.0,
                cpu_cores: 1.5,
                peak_rss_mib: Some(80.4),
                rss_mib: Some(70.0),
            }),
            machine: MachineUsage { other_cpu_s: 2.0, ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let mut a = ErrorCounts::default();
        a.add(ErrorKind::Status(503));
        a.add(ErrorKind::Connection);
        let mut b = ErrorCounts::default();
        b.add(ErrorKind::Status(503));
        b.add(ErrorKind::Connect);
        b.add(ErrorKind::Body);
        a.merge(&b);
        assert_eq!(a.total(), 5);
        let labelled = a.labelled();
        assert_eq!(labelled["status_503"], 2);
        assert_eq!(labelled["connection"], 1);
        assert_eq!(labelled["connect"], 1);
        assert_eq!(labelled["unexpected_body"], 1);
    }

    #[test]
    fn the_table_shows_throughput_latency_errors_and_cpu() {
        let table = table(&[sample()]);
        let row = table.lines().nth(2).unwrap();
        assert!(row.starts_with("| token-pkjwt | 16 | 100.0 | 5.00 |"), "{row}");
        assert!(row.contains("| 9.90 | 9.99 | 10.00 |"), "p99, p99.9, max: {row}");
        assert!(row.contains("status_400: 2, timeout: 1"), "{row}");
        assert!(row.contains("| 1.50 | 80 |"), "server cores and peak RSS: {row}");
        assert!(row.ends_with("| 0.00 | 0.20 |"), "bench and other cores: {row}");
        let mut exhausted = sample();
        exhausted.exhausted = true;
        exhausted.server_usage = None;
        let row = super::table(&[exhausted]).lines().nth(2).unwrap().to_owned();
        assert!(row.contains("100.0 (ran out of requests)") && row.contains("| - | - |"), "{row}");
    }

    #[test]
    fn reports_survive_json() {
        let file = RunFile { tool: "keyfort-bench".into(), version: "0".into(), runs: vec![sample()] };
        let text = serde_json::to_string(&file).unwrap();
        let back: RunFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.runs[0], file.runs[0]);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["runs"][0]["latency_ms"]["p50"], 5.0);
        assert_eq!(value["runs"][0]["errors"]["status_400"], 2);
        assert_eq!(back.runs[0].error_total(), 3);
    }
}
