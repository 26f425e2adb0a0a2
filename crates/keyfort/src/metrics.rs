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
