//! Prometheus metrics, served on their own listener (`[metrics] listen`) so they are never
//! exposed on the public TLS port. A small registry of labelled counters and latency
//! histograms; no global state: one `Metrics` is built with the application and passed to
//! what records.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

type Key = (&'static str, Vec<(&'static str, String)>);

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
    histograms: Mutex<BTreeMap<Key, Histogram>>,
}

const HELP: &[(&str, &str, &str)] = &[
    ("keyfort_registrations_total", "counter", "Registration attempts by outcome and OAuth error code."),
    ("keyfort_token_requests_total", "counter", "Token requests by outcome and OAuth error code."),
    ("keyfort_consent_requests_total", "counter", "Consent API requests by consent type, outcome and error code."),
    ("keyfort_http_requests_total", "counter", "HTTP requests by route, method and status."),
    ("keyfort_http_request_duration_seconds", "histogram", "HTTP request latency by route and method."),
    ("keyfort_jwks_fetches_total", "counter", "JWKS fetches (directory and software keys) by result."),
    ("keyfort_jwks_cache_lookups_total", "counter", "JWKS cache lookups by result (hit or miss)."),
    ("keyfort_crl_fetches_total", "counter", "CRL loads by result."),
    ("keyfort_connections_shed_total", "counter", "Connections closed or refused to protect the server, by reason."),
];

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    (name, labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
}

impl Metrics {
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner()).entry(key(name, labels)).or_default() += 1;
    }

    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        let mut histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let h = histograms.entry(key(name, labels)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Records the outcome of a request that ends in an OAuth error code or success.
    pub fn outcome(&self, name: &'static str, error: Option<&str>) {
        match error {
            None => self.inc(name, &[("outcome", "success"), ("error", "")]),
            Some(code) => self.inc(name, &[("outcome", "refused"), ("error", code)]),
        }
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), value) in counters.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{n}{} {value}", render_labels(labels, None));
            }
            for ((n, labels), h) in histograms.iter().filter(|((n, _), _)| n == name) {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ =
                        writeln!(out, "{n}_bucket{} {}", render_labels(labels, Some(&bound.to_string())), h.counts[i]);
                }
                let _ = writeln!(out, "{n}_bucket{} {}", render_labels(labels, Some("+Inf")), h.count);
                let _ = writeln!(out, "{n}_sum{} {}", render_labels(labels, None), h.sum);
                let _ = writeln!(out, "{n}_count{} {}", render_labels(labels, None), h.count);
            }
        }
        out
    }
}

fn render_labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.outcome("keyfort_registrations_total", Some("invalid_redirect_uri"));
        m.outcome("keyfort_registrations_total", None);
        m.observe("keyfort_http_request_duration_seconds", &[("route", "/register")], 0.003);
        let text = m.render();
        assert!(
            text.contains("keyfort_registrations_total{outcome=\"refused\",error=\"invalid_redirect_uri\"} 1"),
            "{text}"
        );
        assert!(text.contains("keyfort_http_request_duration_seconds_bucket{route=\"/register\",le=\"0.005\"} 1"));
        assert!(text.contains("keyfort_http_request_duration_seconds_bucket{route=\"/register\",le=\"0.0025\"} 0"));
        assert!(text.contains("keyfort_http_request_duration_seconds_count{route=\"/register\"} 1"));
    }
}

/// Gauges read when Prometheus scrapes, rather than counted as things happen: the process
/// (from `/proc`), the build, the database pool and the signing keys' ages.
pub struct Gauges {
    pub pool: crate::storage::PoolStatus,
    /// `(alg, kid, seconds signing)`; no age for a key from a file.
    pub signing_keys: Vec<(String, String, Option<i64>)>,
}

fn gauge(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> String {
    render_labels(&pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect::<Vec<_>>(), None)
}

/// What `/proc/self` says of this process; `None` off Linux or when `/proc` is not mounted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: split after it.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // Fields 3.. of proc(5), so index = field number - 3.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as u64;
        let boot_time: u64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        });
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page,
            open_fds,
            max_fds,
            start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
        })
    }
}

impl Gauges {
    /// The Prometheus text of these gauges, the process's and the build's.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(p) = ProcessStats::read() {
            let one = |v: f64| vec![(String::new(), v)];
            gauge(
                &mut out,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, in seconds.",
                &one(p.cpu_seconds),
            );
            gauge(
                &mut out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size, in bytes.",
                &one(p.resident_bytes as f64),
            );
            gauge(
                &mut out,
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size, in bytes.",
                &one(p.virtual_bytes as f64),
            );
            gauge(
                &mut out,
                "process_open_fds",
                "gauge",
                "Open file descriptors (connections among them).",
                &one(p.open_fds as f64),
            );
            if let Some(max) = p.max_fds {
                gauge(&mut out, "process_max_fds", "gauge", "The limit of open file descriptors.", &one(max as f64));
            }
            gauge(
                &mut out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process, in Unix seconds.",
                &one(p.start_time_seconds),
            );
        }
        gauge(
            &mut out,
            "keyfort_build_info",
            "gauge",
            "The running version (always 1).",
            &[(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)],
        );
        let pool = self.pool;
        gauge(
            &mut out,
            "keyfort_db_pool_connections",
            "gauge",
            "Database connections by state.",
            &[
                (labels(&[("state", "idle")]), f64::from(pool.idle)),
                (labels(&[("state", "in_use")]), f64::from(pool.open.saturating_sub(pool.idle))),
            ],
        );
        gauge(
            &mut out,
            "keyfort_db_pool_max_connections",
            "gauge",
            "The most connections the pool opens.",
            &[(String::new(), f64::from(pool.max))],
        );
        let ages: Vec<(String, f64)> = self
            .signing_keys
            .iter()
            .filter_map(|(alg, kid, age)| age.map(|a| (labels(&[("alg", alg), ("kid", kid)]), a as f64)))
            .collect();
        gauge(
            &mut out,
            "keyfort_signing_key_age_seconds",
            "gauge",
            "How long the key signing now has signed, per algorithm (rotate with keyfort keys rotate).",
            &ages,
        );
        out
    }
}

#[cfg(test)]
mod gauge_tests {
    use super::*;

    #[test]
    fn process_stats_come_from_proc() {
        let stats = ProcessStats::read().expect("/proc is mounted on Linux");
        assert!(stats.resident_bytes > 1_000_000 && stats.virtual_bytes >= stats.resident_bytes, "{stats:?}");
        assert!(stats.open_fds >= 3, "{stats:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0 && stats.start_time_seconds > now - 86_400.0 * 30.0, "{stats:?}");
        let text = Gauges {
            pool: crate::storage::PoolStatus { open: 3, idle: 1, max: 4 },
            signing_keys: vec![("PS256".into(), "k1".into(), Some(42)), ("ES256".into(), "file".into(), None)],
        }
        .render();
        for line in [
            "keyfort_db_pool_connections{state=\"in_use\"} 2",
            "keyfort_db_pool_max_connections 4",
            "keyfort_signing_key_age_seconds{alg=\"PS256\",kid=\"k1\"} 42",
            "keyfort_build_info{version=\"",
            "process_open_fds ",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("kid=\"file\""), "no age for a key from a file");
    }
}
