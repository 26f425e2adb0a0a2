//! Logging through `tracing`: human-readable by default, JSON when configured. Request
//! bodies and headers are never logged, so secrets and assertions cannot reach a log line;
//! values that came from outside are escaped by [`escaping`], so they cannot forge one.

mod escaping;

pub use escaping::{EscapedFields, EscapedJson};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// Installs the global subscriber: the log (`RUST_LOG` overrides the configured level) and,
/// with `[telemetry] otlp_endpoint`, OpenTelemetry traces. Returns the trace exporter's
/// handle, to flush it when the server stops.
pub fn init(config: &LogConfig, telemetry: &TelemetryConfig) -> Option<crate::otlp::OtlpHandle> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let log = tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi);
    let log = match config.format {
        LogFormat::Json => log.json().with_writer(EscapedJson(std::io::stdout)).boxed(),
        LogFormat::Text => log.fmt_fields(EscapedFields).boxed(),
    };
    // Traces have their own filter: every INFO span (each request, each service call) is
    // traced whatever the log level, and the log's level does not depend on tracing.
    let (traces, handle) = match crate::otlp::layer(telemetry) {
        Some((layer, handle)) => (Some(layer.with_filter(tracing::level_filters::LevelFilter::INFO)), Some(handle)),
        None => (None, None),
    };
    let _ = tracing_subscriber::registry().with(log.with_filter(filter)).with(traces).try_init();
    handle
}

/// Who a request turned out to be about, learnt by the services as they go (the client once
/// authenticated, the software and organisation once a software statement is verified),
/// for the lines written about the request: the access log, a refusal's log line and its
/// audit line. Kept per request in a task-local, so services record it without knowing
/// HTTP, and nothing outside a request sees another request's values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestSubject {
    pub client_id: Option<String>,
    pub software_id: Option<String>,
    pub org_id: Option<String>,
}

tokio::task_local! {
    static SUBJECT: std::sync::Mutex<RequestSubject>;
}

/// Runs `future` (one request) with an empty [`RequestSubject`] that [`note_client`] and
/// [`note_software`] fill in and [`subject`] reads.
pub async fn with_request_subject<F: std::future::Future>(future: F) -> F::Output {
    SUBJECT.scope(std::sync::Mutex::new(RequestSubject::default()), future).await
}

fn update(change: impl FnOnce(&mut RequestSubject)) {
    let _ = SUBJECT.try_with(|subject| change(&mut subject.lock().unwrap_or_else(|p| p.into_inner())));
}

/// Records the client a request is about (registered, authenticated or managed).
pub fn note_client(client_id: &str) {
    update(|s| s.client_id = Some(client_id.to_owned()));
}

/// Records the software and organisation a request is about, from a verified software
/// statement or a registered client. Unverified claims are never recorded: an audit line
/// must not name an organisation on an attacker's word.
pub fn note_software(software_id: Option<&str>, org_id: Option<&str>) {
    update(|s| {
        if software_id.is_some() {
            s.software_id = software_id.map(str::to_owned);
        }
        if org_id.is_some() {
            s.org_id = org_id.map(str::to_owned);
        }
    });
}

/// What is known so far of the current request's subject (empty outside a request).
pub fn subject() -> RequestSubject {
    SUBJECT.try_with(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_subject_is_filled_in_and_seen_only_inside_its_request() {
        assert_eq!(subject(), RequestSubject::default(), "nothing outside a request");
        note_client("ignored outside a request");
        let inside = with_request_subject(async {
            note_software(Some("sw"), Some("org"));
            note_client("c1");
            note_software(None, None);
            subject()
        })
        .await;
        assert_eq!(
            inside,
            RequestSubject { client_id: Some("c1".into()), software_id: Some("sw".into()), org_id: Some("org".into()) }
        );
        assert_eq!(subject(), RequestSubject::default());
    }
}
