//! `[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP to a collector.

use url::Url;

use super::loader::Section;

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (spans are posted to `<endpoint>/v1/traces`);
    /// `None`: no traces.
    pub otlp_endpoint: Option<Url>,
    /// `service.name` of every span.
    pub service_name: String,
    /// The share of traces started here that are exported (0 to 1); a trace started by a
    /// caller follows the caller's `traceparent` decision.
    pub sampling_ratio: f64,
}

pub(super) fn read(mut s: Section<'_>) -> TelemetryConfig {
    let otlp_endpoint =
        s.take_described::<Url>("otlp_endpoint", "an http(s) URL such as \"http://127.0.0.1:4318\"").filter(|url| {
            let ok = matches!(url.scheme(), "http" | "https") && url.host().is_some();
            if !ok {
                s.problem(
                    "otlp_endpoint",
                    format!("\"{url}\" must be an http:// or https:// URL of an OTLP/HTTP collector"),
                );
            }
            ok
        });
    let service_name = s.take::<String>("service_name").unwrap_or_else(|| "keyfort".to_owned());
    if service_name.trim().is_empty() {
        s.problem("service_name", "must not be empty: it names this service in every trace");
    }
    let sampling_ratio = s.take::<f64>("sampling_ratio").unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sampling_ratio) {
        s.problem("sampling_ratio", format!("{sampling_ratio} is not between 0 and 1"));
    }
    TelemetryConfig { otlp_endpoint, service_name, sampling_ratio }
}
