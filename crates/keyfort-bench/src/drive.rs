//! The load loop: a fixed number of keep-alive connections, each driven by one task that
//! sends the next prepared request as soon as the previous answer is read (a closed loop at
//! fixed concurrency), for a fixed time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;

use crate::client::{Connection, ExchangeError, Target};
use crate::latency::Latencies;
use crate::report::{ErrorCounts, ErrorKind};

/// One request, prepared (and signed) before anything is timed.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub method: Method,
    pub path: String,
    pub content_type: Option<&'static str>,
    pub authorization: Option<String>,
    pub body: Bytes,
}

impl Prepared {
    pub fn post(path: &str, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            method: Method::POST,
            path: path.to_owned(),
            content_type: Some(content_type),
            authorization: None,
            body: body.into(),
        }
    }

    pub fn to_request(&self, host: &str) -> hyper::Request<Full<Bytes>> {
        let mut builder = hyper::Request::builder().method(self.method.clone()).uri(&self.path).header("host", host);
        if let Some(ct) = self.content_type {
            builder = builder.header("content-type", ct);
        }
        if let Some(auth) = &self.authorization {
            builder = builder.header("authorization", auth);
        }
        builder.body(Full::new(self.body.clone())).expect("a prepared request is well formed")
    }
}

/// The requests of one phase, handed out in order. Requests that must not be sent twice
/// (a `jti`) are used once; reusable ones are cycled.
pub struct RequestSet {
    requests: Vec<Prepared>,
    next: AtomicUsize,
    cycle: bool,
    ran_out: AtomicBool,
}

impl RequestSet {
    /// Each request sent at most once.
    pub fn once(requests: Vec<Prepared>) -> Self {
        Self { requests, next: AtomicUsize::new(0), cycle: false, ran_out: AtomicBool::new(false) }
    }

    /// Requests that may be repeated, cycled through.
    pub fn cycled(requests: Vec<Prepared>) -> Self {
        Self { requests, next: AtomicUsize::new(0), cycle: true, ran_out: AtomicBool::new(false) }
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn take(&self) -> Option<&Prepared> {
        if self.requests.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let found = if self.cycle { self.requests.get(i % self.requests.len()) } else { self.requests.get(i) };
        if found.is_none() {
            self.ran_out.store(true, Ordering::Relaxed);
        }
        found
    }

    /// Whether a request was asked for after the last one was handed out.
    pub fn ran_out(&self) -> bool {
        self.ran_out.load(Ordering::Relaxed)
    }

    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(if self.cycle { usize::MAX } else { self.requests.len() })
    }
}

/// What counts as a success.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub status: u16,
    /// Bytes the body must contain, when the status alone does not tell.
    pub body_contains: Option<&'static str>,
}

impl Expect {
    pub fn status(status: u16) -> Self {
        Self { status, body_contains: None }
    }

    /// `None` for a success, else the kind of error.
    pub fn check(&self, status: u16, body: &[u8]) -> Option<ErrorKind> {
        if status != self.status {
            return Some(ErrorKind::Status(status));
        }
        match self.body_contains {
            Some(needle) if !body.windows(needle.len()).any(|w| w == needle.as_bytes()) => Some(ErrorKind::Body),
            _ => None,
        }
    }
}

/// What one phase measured.
#[derive(Debug, Default)]
pub struct PhaseOutcome {
    pub latencies: Latencies,
    /// Answers completed inside the phase's time, successful or not.
    pub requests: u64,
    pub ok: u64,
    pub errors: ErrorCounts,
    pub reconnects: u64,
    /// Seconds from the start to the end of the phase (its duration, or until the last
    /// task stopped when the requests ran out first).
    pub elapsed_s: f64,
    pub ran_out: bool,
}

/// Runs `set` over `connections` (one task each) for `duration`. Only answers that
/// complete within `duration` count, so requests in flight at the end are left out, as wrk
/// does. Successful answers' latencies are recorded; errors are counted by kind. A failed
/// connection is replaced, and the replacement counted.
pub async fn drive(
    target: &Target,
    connections: Vec<Connection>,
    set: Arc<RequestSet>,
    expect: Expect,
    duration: Duration,
    timeout: Duration,
) -> (Vec<Connection>, PhaseOutcome) {
    let start = Instant::now();
    let end = start + duration;
    let host: Arc<str> = target.host_header().into();
    let mut tasks = Vec::with_capacity(connections.len());
    for connection in connections {
        let (set, host, target) = (set.clone(), host.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcome = PhaseOutcome::default();
            let mut connection = Some(connection);
            let mut last = start;
            while Instant::now() < end {
                let mut conn = match connection.take() {
                    Some(c) => c,
                    None => match target.connect().await {
                        Ok(c) => {
                            outcome.reconnects += 1;
                            c
                        }
                        Err(_) => {
                            if Instant::now() < end {
                                outcome.errors.add(ErrorKind::Connect);
                            }
                            // Do not spin on a server that refuses connections.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let Some(prepared) = set.take() else {
                    connection = Some(conn);
                    break;
                };
                let sent = Instant::now();
                let answer = conn.send(prepared.to_request(&host), timeout).await;
                let done = Instant::now();
                let keep = answer.is_ok();
                if done <= end {
                    last = done;
                    match answer {
                        Ok((status, body)) => {
                            outcome.requests += 1;
                            match expect.check(status, &body) {
                                None => {
                                    outcome.ok += 1;
                                    outcome.latencies.record(done - sent);
                                }
                                Some(kind) => outcome.errors.add(kind),
                            }
                        }
                        Err(ExchangeError::Timeout) => outcome.errors.add(ErrorKind::Timeout),
                        Err(ExchangeError::Connection(_)) => outcome.errors.add(ErrorKind::Connection),
                    }
                }
                if keep {
                    connection = Some(conn);
                }
            }
            outcome.elapsed_s = (last.min(end) - start).as_secs_f64();
            (connection, outcome)
        }));
    }
    let mut total = PhaseOutcome::default();
    let mut kept = Vec::new();
    let mut last_s: f64 = 0.0;
    for task in tasks {
        let Ok((connection, outcome)) = task.await else { continue };
        kept.extend(connection);
        total.latencies.merge(&outcome.latencies);
        total.requests += outcome.requests;
        total.ok += outcome.ok;
        total.errors.merge(&outcome.errors);
        total.reconnects += outcome.reconnects;
        last_s = last_s.max(outcome.elapsed_s);
    }
    total.ran_out = set.ran_out();
    total.elapsed_s = if total.ran_out { last_s } else { duration.as_secs_f64() };
    (kept, total)
}

/// Opens `n` connections at once.
pub async fn connect_all(target: &Target, n: usize) -> anyhow::Result<Vec<Connection>> {
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let target = target.clone();
        tasks.push(tokio::spawn(async move { target.connect().await }));
    }
    let mut connections = Vec::with_capacity(n);
    for task in tasks {
        connections.push(task.await??);
    }
    Ok(connections)
}

/// `n` requests made by `make` (each call signs a fresh one), spread over every core:
/// signing is done before timing, so it may use the whole machine.
pub fn prepare_parallel(n: usize, make: &(dyn Fn() -> Prepared + Sync)) -> Vec<Prepared> {
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).min(n.max(1));
    let per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = per.min(n.saturating_sub(t * per));
                scope.spawn(move || (0..count).map(|_| make()).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a signing thread panicked")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(i: usize) -> Prepared {
        Prepared::post(&format!("/{i}"), "text/plain", "x")
    }

    #[test]
    fn a_once_set_hands_out_each_request_once_then_reports_running_out() {
        let set = RequestSet::once((0..3).map(req).collect());
        let paths: Vec<String> = std::iter::from_fn(|| set.take().map(|p| p.path.clone())).collect();
        assert_eq!(paths, ["/0", "/1", "/2"]);
        assert!(set.ran_out());
        assert_eq!(set.used(), 3);
    }

    #[test]
    fn a_cycled_set_never_runs_out() {
        let set = RequestSet::cycled((0..2).map(req).collect());
        let paths: Vec<String> = (0..5).map(|_| set.take().unwrap().path.clone()).collect();
        assert_eq!(paths, ["/0", "/1", "/0", "/1", "/0"]);
        assert!(!set.ran_out());
        assert!(RequestSet::cycled(vec![]).take().is_none());
    }

    #[test]
    fn expectations_classify_answers() {
        let e = Expect { status: 200, body_contains: Some("\"active\":true") };
        assert_eq!(e.check(200, br#"{"active":true,"scope":"accounts"}"#), None);
        assert_eq!(e.check(200, br#"{"active":false}"#), Some(ErrorKind::Body));
        assert_eq!(e.check(401, b""), Some(ErrorKind::Status(401)));
        assert_eq!(Expect::status(201).check(201, b""), None);
    }

    #[test]
    fn parallel_preparation_makes_exactly_n() {
        let counter = AtomicUsize::new(0);
        let make = || req(counter.fetch_add(1, Ordering::Relaxed));
        for n in [0, 1, 7, 100] {
            counter.store(0, Ordering::Relaxed);
            let made = prepare_parallel(n, &make);
            assert_eq!(made.len(), n);
            let mut paths: Vec<_> = made.iter().map(|p| p.path.clone()).collect();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), n, "every request made once");
        }
    }

    #[test]
    fn requests_carry_their_headers() {
        let mut p = Prepared::post("/oauth2/token", "application/x-www-form-urlencoded", "a=b");
        p.authorization = Some("Bearer x".into());
        let r = p.to_request("localhost:9446");
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri().path(), "/oauth2/token");
        assert_eq!(r.headers()["host"], "localhost:9446");
        assert_eq!(r.headers()["content-type"], "application/x-www-form-urlencoded");
        assert_eq!(r.headers()["authorization"], "Bearer x");
    }
}
