//! The TLS listener: accepts TCP, completes the TLS handshake with a deadline, and serves
//! HTTP/1.1 or HTTP/2 on the connection. Each request carries a [`ConnectionInfo`] so that
//! handlers can see the peer and its client certificate without global state.
//!
//! An anonymous peer must not be able to hold the server's connections or descriptors:
//! every connection has a deadline for its first request and an idle deadline between
//! requests (HTTP/1.1 keep-alive and HTTP/2 alike, with HTTP/2 pings to find dead peers),
//! one address may hold only so many connections, and the whole server only so many. What
//! is shed is counted and logged.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// How long in-flight requests get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// After a connection is asked to close (idle, shutdown), how long it may take to do so
/// before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Descriptors kept free for the database, key fetches, logs and the metrics listener
/// when the connection cap is derived from the process's descriptor limit.
const RESERVED_DESCRIPTORS: u64 = 128;

/// The limits that keep a connection from holding resources it does not use.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// From TCP accept to a completed TLS handshake.
    pub handshake_timeout: Duration,
    /// From the completed handshake to the first request's headers.
    pub first_request_timeout: Duration,
    /// Between the end of one request and the start of the next (keep-alive).
    pub idle_timeout: Duration,
    /// From the first byte of a request's headers to the last (slowloris).
    pub header_read_timeout: Duration,
    /// Connections served at once by the whole listener.
    pub max_connections: usize,
    /// Connections one peer address may hold at once.
    pub max_connections_per_ip: usize,
    /// Addresses exempt from the per-address cap: proxies and load balancers, behind which
    /// every client shares one address.
    pub per_ip_exempt: Vec<ipnet::IpNet>,
    /// The largest request head (request line and headers) accepted, in bytes.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_ip: 512,
            per_ip_exempt: Vec::new(),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The client certificate chain from the TLS handshake (end-entity first), if any. The
    /// handshake proved possession of its key; trust is decided per request.
    pub client_chain: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
}

/// Serves `router` over TLS on `listener` with default limits until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve_with(listener, tls, router, ConnectionLimits::default(), Arc::new(Metrics::default()), shutdown).await
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then drains.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limits = Arc::new(limits);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerAddress::default());
    let shedding = Arc::new(ShedLog::default());
    let (closing, _) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off rather than spin.
                    shedding.record(&metrics, "accept_failed", &e.to_string());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shedding.record(&metrics, "server_full", &format!("{} connections open", limits.max_connections));
            continue;
        };
        let ip = peer.ip().to_canonical();
        let exempt = limits.per_ip_exempt.iter().any(|net| net.contains(&ip));
        let address_slot = if exempt {
            None
        } else {
            match per_ip.acquire(ip, limits.max_connections_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    shedding.record(
                        &metrics,
                        "per_address_limit",
                        &format!("{ip} holds {} connections", limits.max_connections_per_ip),
                    );
                    continue;
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            acceptor: acceptor.clone(),
            router: router.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            shedding: shedding.clone(),
            closing: closing.subscribe(),
        };
        tokio::spawn(async move {
            let _slots = (slot, address_slot);
            connection.serve(tcp, peer).await;
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection holds a slot until it ends: all slots back means all have drained.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("some connections were still open after the drain timeout");
    }
}

/// One accepted connection and what it needs to serve and police itself.
struct Connection {
    acceptor: TlsAcceptor,
    router: Router,
    limits: Arc<ConnectionLimits>,
    metrics: Arc<Metrics>,
    shedding: Arc<ShedLog>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    async fn serve(mut self, tcp: tokio::net::TcpStream, peer: SocketAddr) {
        let stream = match tokio::time::timeout(self.limits.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.shedding.record(&self.metrics, "handshake_timeout", &peer.to_string());
                return;
            }
        };
        let client_chain = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| Arc::new(certs.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>()));
        let info = ConnectionInfo { peer, client_chain };
        let activity = Arc::new(Activity::new());
        let tracked = activity.clone();
        let service =
            self.router.clone().map_request(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(info.clone());
                request.extensions_mut().insert(RequestInFlight::start(&tracked));
                request
            });
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            // The edge answers a head over `max_header_bytes` with a JSON 431; hyper's own
            // buffer is a hard stop well above it, so nothing unbounded is ever held.
            .max_buf_size((self.limits.max_header_bytes * 4).max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.limits.max_header_bytes * 4).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(self.limits.idle_timeout.min(Duration::from_secs(30))))
            .keep_alive_timeout(Duration::from_secs(10));
        let connection =
            builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        tokio::pin!(connection);
        let mut asked_to_close: Option<Instant> = None;
        loop {
            let deadline = match asked_to_close {
                Some(since) => since + CLOSE_GRACE,
                None => activity.idle_deadline(&self.limits),
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = self.closing.changed(), if asked_to_close.is_none() => {
                    if changed.is_err() || *self.closing.borrow() {
                        connection.as_mut().graceful_shutdown();
                        asked_to_close = Some(Instant::now());
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    if asked_to_close.is_some() {
                        tracing::debug!(%peer, "connection did not close in time; dropped");
                        return;
                    }
                    if activity.is_idle(&self.limits) {
                        let reason = if activity.served() { "idle_timeout" } else { "first_request_timeout" };
                        self.shedding.record(&self.metrics, reason, &peer.to_string());
                        connection.as_mut().graceful_shutdown();
                        asked_to_close = Some(Instant::now());
                    }
                }
            }
        }
    }
}

/// When a connection last did something, and whether a request is running on it.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` at which the last request ended.
    last_ended_ms: AtomicU64,
    in_flight: AtomicUsize,
    served: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_ended_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
        }
    }

    fn served(&self) -> bool {
        self.served.load(Ordering::Acquire)
    }

    /// When the connection becomes idle for too long, if nothing happens until then. While
    /// a request runs there is no idle deadline (the request's own timeouts apply), so the
    /// next check is one idle period away.
    fn idle_deadline(&self, limits: &ConnectionLimits) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + limits.idle_timeout;
        }
        if !self.served() {
            return self.opened + limits.first_request_timeout;
        }
        self.opened + Duration::from_millis(self.last_ended_ms.load(Ordering::Acquire)) + limits.idle_timeout
    }

    fn is_idle(&self, limits: &ConnectionLimits) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && Instant::now() >= self.idle_deadline(limits)
    }
}

/// Marks a request as running on its connection from the moment its head is parsed until
/// the request (and its extensions) are dropped: after the response is written.
#[derive(Clone)]
struct RequestInFlight {
    _guard: Arc<InFlightGuard>,
}

struct InFlightGuard(Arc<Activity>);

impl RequestInFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.served.store(true, Ordering::Release);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self { _guard: Arc::new(InFlightGuard(activity.clone())) }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        let elapsed = u64::try_from(activity.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.last_ended_ms.store(elapsed, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections per peer address.
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn acquire(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot { owner: self.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                // The map holds only addresses with open connections: it cannot grow
                // beyond the connection cap.
                open.remove(&self.ip);
            }
        }
    }
}

/// Counts shed connections in `keyfort_connections_shed_total{reason}` and logs them, at
/// most once a second per reason so that a flood cannot flood the log too.
#[derive(Default)]
struct ShedLog {
    last_logged: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl ShedLog {
    fn record(&self, metrics: &Metrics, reason: &'static str, detail: &str) {
        metrics.inc("keyfort_connections_shed_total", &[("reason", reason)]);
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        let entry = last.entry(reason).or_insert((Instant::now() - Duration::from_secs(2), 0));
        entry.1 += 1;
        if entry.0.elapsed() >= Duration::from_secs(1) {
            tracing::warn!(reason, count = entry.1, example = %detail, "connections shed");
            *entry = (Instant::now(), 0);
        }
    }
}

/// Raises the soft limit on open descriptors to the hard limit, so that the connection cap,
/// not the default of 1024, decides how many peers are served; returns the new soft limit.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum;
    if limit.current != hard {
        limit.current = hard;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "could not raise the open-file limit to its hard limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The connection cap that fits the descriptor limit: each connection takes one descriptor.
pub fn connections_that_fit(configured: usize, descriptor_limit: Option<u64>) -> usize {
    match descriptor_limit {
        Some(limit) => {
            configured.min(usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX)).max(1)
        }
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_cap_and_slots_come_back() {
        let table = Arc::new(PerAddress::default());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let first = table.acquire(ip, 2).unwrap();
        let _second = table.acquire(ip, 2).unwrap();
        assert!(table.acquire(ip, 2).is_none());
        assert!(table.acquire("192.0.2.8".parse().unwrap(), 2).is_some(), "another address has its own cap");
        drop(first);
        assert!(table.acquire(ip, 2).is_some());
    }

    #[test]
    fn the_table_forgets_addresses_without_connections() {
        let table = Arc::new(PerAddress::default());
        for n in 0..100u8 {
            drop(table.acquire(IpAddr::from([10, 0, 0, n]), 1).unwrap());
        }
        assert!(table.open.lock().unwrap().is_empty());
    }

    #[test]
    fn the_connection_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(connections_that_fit(4096, Some(1024)), 1024 - RESERVED_DESCRIPTORS as usize);
        assert_eq!(connections_that_fit(4096, Some(1_048_576)), 4096);
        assert_eq!(connections_that_fit(4096, None), 4096);
    }
}
