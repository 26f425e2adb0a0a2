//! OpenTelemetry traces over OTLP/HTTP (the JSON encoding of OTLP 1.x), as a `tracing`
//! layer: every span Keyfort opens (a request, a service call) becomes an OTLP span with the
//! span's fields as attributes, exported in batches to `[telemetry] otlp_endpoint`.
//!
//! Spans carry only the fields Keyfort gives them (request id, method, path, route,
//! status, client, software, organisation, action...): never a body, header, token,
//! assertion, SSA or secret, since none of those is ever a span field. A request's span
//! continues the caller's trace when it sends a W3C `traceparent`, and follows the
//! caller's sampling decision; traces started here are sampled by `sampling_ratio`.
//!
//! Export never slows a request: closed spans go into a bounded queue (dropped, and
//! counted, when the collector cannot keep up) that a thread of its own sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::TelemetryConfig;

/// Closed spans waiting for export; beyond this they are dropped.
const QUEUE: usize = 8192;
/// The most spans in one export request.
const BATCH: usize = 512;
/// How long spans may wait before they are sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The span field that carries a caller's W3C `traceparent` (set by the HTTP edge).
pub const TRACEPARENT_FIELD: &str = "traceparent";

/// What the layer keeps in each span's extensions.
struct SpanState {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    sampled: bool,
    name: &'static str,
    start: SystemTime,
    attributes: Vec<(String, Value)>,
}

/// A finished span, ready for the collector.
struct Finished {
    state: SpanState,
    end: SystemTime,
}

enum Message {
    Span(Box<Finished>),
    /// Send everything queued, then acknowledge.
    Flush(SyncSender<()>),
}

/// Collects the fields of a span as OTLP attribute values.
struct Fields<'a> {
    attributes: &'a mut Vec<(String, Value)>,
    traceparent: Option<String>,
}

impl Fields<'_> {
    fn set(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == TRACEPARENT_FIELD {
            self.traceparent = value["stringValue"].as_str().map(str::to_owned);
            return;
        }
        // `id` of the request span is its request id.
        let key = if name == "id" { "request.id".to_owned() } else { name.to_owned() };
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key, value)),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, json!({ "stringValue": value }));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, json!({ "boolValue": value }));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        // OTLP JSON writes 64-bit integers as strings.
        self.set(field, json!({ "intValue": value.to_string() }));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, json!({ "intValue": value.to_string() }));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, json!({ "doubleValue": value }));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, json!({ "stringValue": format!("{value:?}") }));
    }
}

/// Parses a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`).
fn parse_traceparent(text: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = text.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    hex_decode(trace, &mut trace_id)?;
    hex_decode(parent, &mut parent_id)?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id, parent_id, flags & 1 == 1))
}

fn hex_decode(text: &str, out: &mut [u8]) -> Option<()> {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system CSPRNG; a failure would leave zeros, which the next line avoids anyway.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    if bytes.iter().all(|b| *b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

fn unix_nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0).to_string()
}

/// The `tracing` layer that turns spans into OTLP spans.
pub struct OtlpLayer {
    queue: SyncSender<Message>,
    sampling_ratio: f64,
    dropped: Arc<AtomicU64>,
}

/// The exporter's handle, to flush at shutdown.
#[derive(Clone)]
pub struct OtlpHandle {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl OtlpHandle {
    /// Sends every queued span, waiting at most `timeout`: called when the server stops,
    /// so the spans of its last requests are not lost.
    pub fn flush(&self, timeout: Duration) {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Builds the layer and starts its exporter thread.
pub fn layer(config: &TelemetryConfig) -> Option<(OtlpLayer, OtlpHandle)> {
    let endpoint = config.otlp_endpoint.as_ref()?;
    let url = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
    let (queue, incoming) = std::sync::mpsc::sync_channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let service_name = config.service_name.clone();
    let exporter = Exporter { url, service_name, incoming };
    if let Err(e) = std::thread::Builder::new().name("otlp-exporter".into()).spawn(move || exporter.run()) {
        eprintln!("warning: OpenTelemetry traces are off: the exporter thread cannot start ({e})");
        return None;
    }
    let handle = OtlpHandle { queue: queue.clone(), dropped: dropped.clone() };
    Some((OtlpLayer { queue, sampling_ratio: config.sampling_ratio, dropped }, handle))
}

impl OtlpLayer {
    /// Whether a trace started here is sampled: by its id, so every node agrees.
    fn sample(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        (u64::from_be_bytes(low) as f64 / u64::MAX as f64) < self.sampling_ratio
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut attributes = Vec::new();
        let mut fields = Fields { attributes: &mut attributes, traceparent: None };
        attrs.record(&mut fields);
        let traceparent = fields.traceparent.take();
        let parent = span
            .parent()
            .and_then(|parent| parent.extensions().get::<SpanState>().map(|p| (p.trace_id, p.span_id, p.sampled)));
        let (trace_id, parent_span_id, sampled) = match (parent, traceparent.as_deref().and_then(parse_traceparent)) {
            (Some((trace, parent, sampled)), _) => (trace, Some(parent), sampled),
            (None, Some((trace, parent, sampled))) => (trace, Some(parent), sampled),
            (None, None) => {
                let trace = random::<16>();
                (trace, None, self.sample(&trace))
            }
        };
        span.extensions_mut().insert(SpanState {
            trace_id,
            span_id: random::<8>(),
            parent_span_id,
            sampled,
            name: attrs.metadata().name(),
            start: SystemTime::now(),
            attributes,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(state) = extensions.get_mut::<SpanState>() {
            let mut fields = Fields { attributes: &mut state.attributes, traceparent: None };
            values.record(&mut fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(state) = span.extensions_mut().remove::<SpanState>() else { return };
        if !state.sampled {
            return;
        }
        let finished = Message::Span(Box::new(Finished { state, end: SystemTime::now() }));
        if let Err(TrySendError::Full(_)) = self.queue.try_send(finished) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An HTTP client for the collector, trusting the system's roots (as the directory
/// fetcher does).
fn client() -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).build().map_err(|e| e.to_string())
}

/// Sends batches of finished spans to the collector, on a thread of its own with a small
/// runtime, so a slow collector never holds a request.
struct Exporter {
    url: String,
    service_name: String,
    incoming: Receiver<Message>,
}

impl Exporter {
    fn run(self) {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        let client = match client() {
            Ok(client) => client,
            Err(e) => {
                eprintln!("warning: OpenTelemetry traces are off: {e}");
                return;
            }
        };
        let failures = Mutex::new(None::<String>);
        let mut batch: Vec<Finished> = Vec::new();
        loop {
            let (flush, ack) = match self.incoming.recv_timeout(FLUSH_EVERY) {
                Ok(Message::Span(span)) => {
                    batch.push(*span);
                    (batch.len() >= BATCH, None)
                }
                Ok(Message::Flush(ack)) => (true, Some(ack)),
                Err(RecvTimeoutError::Timeout) => (!batch.is_empty(), None),
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if flush && !batch.is_empty() {
                let body = self.body(&batch);
                batch.clear();
                let sent = runtime.block_on(async {
                    let response = client
                        .post(&self.url)
                        .header("content-type", "application/json")
                        .timeout(Duration::from_secs(10))
                        .body(body.to_string())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if response.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("HTTP {}", response.status()))
                    }
                });
                // A failing collector is reported when it starts failing, not per batch.
                let mut last = failures.lock().unwrap_or_else(|p| p.into_inner());
                match sent {
                    Ok(()) => *last = None,
                    Err(why) if last.as_deref() != Some(why.as_str()) => {
                        tracing::warn!(collector = %self.url, error = %why, "exporting traces failed; spans are dropped until it works");
                        *last = Some(why);
                    }
                    Err(_) => {}
                }
            }
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    }

    /// An `ExportTraceServiceRequest` in OTLP's JSON encoding.
    fn body(&self, batch: &[Finished]) -> Value {
        let spans: Vec<Value> = batch
            .iter()
            .map(|f| {
                let s = &f.state;
                let attributes: Vec<Value> =
                    s.attributes.iter().map(|(key, value)| json!({ "key": key, "value": value })).collect();
                json!({
                    "traceId": hex(&s.trace_id),
                    "spanId": hex(&s.span_id),
                    "parentSpanId": s.parent_span_id.map(|p| hex(&p)).unwrap_or_default(),
                    "name": s.name,
                    // SERVER for a request, INTERNAL for a service call.
                    "kind": if s.parent_span_id.is_none() || s.name == "request" { 2 } else { 1 },
                    "startTimeUnixNano": unix_nanos(s.start),
                    "endTimeUnixNano": unix_nanos(f.end),
                    "attributes": attributes,
                })
            })
            .collect();
        json!({
            "resourceSpans": [{
                "resource": { "attributes": [
                    { "key": "service.name", "value": { "stringValue": self.service_name } },
                    { "key": "service.version", "value": { "stringValue": env!("CARGO_PKG_VERSION") } },
                ]},
                "scopeSpans": [{ "scope": { "name": "keyfort", "version": env!("CARGO_PKG_VERSION") }, "spans": spans }],
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_parsed_and_bad_ones_ignored() {
        let (trace, parent, sampled) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex(&trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&parent), "00f067aa0ba902b7");
        assert!(sampled);
        assert!(!parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap().2);
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sampling_follows_the_ratio_by_trace_id() {
        let config =
            |ratio| TelemetryConfig { otlp_endpoint: None, service_name: "keyfort".into(), sampling_ratio: ratio };
        let (queue, _rx) = std::sync::mpsc::sync_channel(1);
        let layer = |ratio| OtlpLayer {
            queue: queue.clone(),
            sampling_ratio: config(ratio).sampling_ratio,
            dropped: Arc::default(),
        };
        let ids: Vec<[u8; 16]> = (0..1000).map(|_| random::<16>()).collect();
        assert!(ids.iter().all(|id| layer(1.0).sample(id)));
        assert!(!ids.iter().any(|id| layer(0.0).sample(id)));
        let half = ids.iter().filter(|id| layer(0.5).sample(id)).count();
        assert!((350..650).contains(&half), "{half}");
    }
}
