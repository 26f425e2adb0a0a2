//! Loopback load benchmark: `cargo bench --bench load` (release build).
//!
//! Starts Keyfort in this process against an offline sandbox directory, pre-signs every
//! request while nothing is timed, then drives each scenario at a fixed concurrency for a
//! fixed time over real TLS and reports throughput and latency percentiles:
//! - `register`: signed (PS256) registration requests with an SSA, JSON answer, durable write;
//! - `token pkjwt`: client_credentials with a PS256 private_key_jwt assertion (jti recorded);
//! - `token mtls`: client_credentials with tls_client_auth, certificate-bound token.
//!
//! Environment: BENCH_SECONDS (10), BENCH_CONCURRENCY (16); BENCH_STORAGE_URL (a
//! `postgres://` URL; default: an SQLite file) and BENCH_NODES (1 or 2: two nodes on that
//! one database, each request sent to the next node in turn). Every node runs in this one
//! process, sharing its cores with the load generator: the figures compare configurations
//! on one machine, they are not a capacity.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyfort::cli::tpp::{self, RegisterOptions};
use keyfort::sandbox::Sandbox;
use serde_json::json;

struct Outcome {
    name: &'static str,
    ok: usize,
    failed: usize,
    seconds: f64,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// `path` on each of `servers`.
fn on_each(servers: &[String], path: &str) -> Vec<String> {
    servers.iter().map(|s| format!("{s}{path}")).collect()
}

/// Sends `bodies` (each used once) from `concurrency` workers for `seconds`, to each of
/// `urls` in turn.
async fn drive(
    name: &'static str,
    client: reqwest::Client,
    urls: Vec<String>,
    content_type: &'static str,
    bodies: Vec<String>,
    concurrency: usize,
    seconds: u64,
) -> Outcome {
    let bodies = Arc::new(bodies);
    let urls = Arc::new(urls);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, urls, bodies, next) = (client.clone(), urls.clone(), bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let url = &urls[i % urls.len()];
                let t = Instant::now();
                let response = client.post(url).header("content-type", content_type).body(body.clone()).send().await;
                let good = match response {
                    Ok(r) => {
                        let success = r.status().is_success();
                        let _ = r.bytes().await;
                        success
                    }
                    Err(_) => false,
                };
                latencies.push(t.elapsed());
                if good {
                    ok += 1
                } else {
                    failed += 1
                }
            }
            (ok, failed, latencies)
        }));
    }
    let mut outcome = Outcome { name, ok: 0, failed: 0, seconds: 0.0, latencies: Vec::new() };
    for w in workers {
        let (ok, failed, latencies) = w.await.unwrap();
        outcome.ok += ok;
        outcome.failed += failed;
        outcome.latencies.extend(latencies);
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    if next.load(Ordering::Relaxed) >= bodies.len() {
        eprintln!("warning: {name} ran out of pre-signed bodies before the time was up");
    }
    outcome
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let storage = std::env::var("BENCH_STORAGE_URL").ok();
    let nodes: usize = std::env::var("BENCH_NODES").ok().and_then(|s| s.parse().ok()).unwrap_or(1).clamp(1, 2);
    assert!(nodes == 1 || storage.is_some(), "BENCH_NODES=2 needs BENCH_STORAGE_URL (a postgres:// database)");
    runtime.block_on(run(seconds, concurrency, storage, nodes));
}

async fn run(seconds: u64, concurrency: usize, storage: Option<String>, nodes: usize) {
    let dir = std::env::temp_dir().join(format!("keyfort-bench-{}", keyfort::cli::now()));
    let keystore = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut sandbox = Sandbox::init(&dir.join("sb"), &format!("http://{}", keystore.local_addr().unwrap())).unwrap();
    let software = sandbox
        .add_software(
            "Bench TPP",
            None,
            None,
            None,
            &["AISP".into(), "PISP".into()],
            &["https://tpp.example/cb".into()],
        )
        .unwrap();
    let files = sandbox.files(&software.software_id).unwrap();
    let router = sandbox.keystore_router();
    tokio::spawn(async move { axum::serve(keystore, router).await });

    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let mut config = keyfort::cli::demo::sandbox_config(&sandbox, port, &dir.join("data")).unwrap();
    // Comparable with the peer: registrations without a client certificate, and a
    // private_key_jwt client without certificate-bound tokens (so FAPI enforcement is off).
    config.dcr.one_registration_per_software = false;
    config.dcr.require_transport_certificate = false;
    config.dcr.policy.fapi = false;
    if let Some(url) = &storage {
        config.storage = keyfort::config::StorageConfig::for_url(url);
    }
    let storage_name = if config.storage.is_postgres() { "PostgreSQL" } else { "SQLite (WAL, synchronous=FULL)" };
    // Every node has the first node's issuer (public_url), as nodes behind one proxy do.
    let mut servers = Vec::new();
    for n in 0..nodes {
        let mut node = config.clone();
        if n > 0 {
            node.server.listen = "127.0.0.1:0".parse().unwrap();
        }
        let app = keyfort::Application::build(node).await.unwrap();
        servers.push(format!("https://localhost:{}", app.port()));
        tokio::spawn(app.run_until(std::future::pending()));
    }
    let server = servers[0].clone();
    let cacert = dir.join("data/dev-tls/cert.pem");

    let options = RegisterOptions::for_sandbox_software(&server, &files, &cacert);
    let key = keyfort::signing::load_pem_key(&files.signing_key, None, &files.kid).unwrap();
    let ssa = std::fs::read_to_string(&files.ssa).unwrap();
    let plain = keyfort::cli::https_client(Some(&cacert), None).unwrap();
    let mtls = keyfort::cli::https_client(Some(&cacert), Some((&files.transport_cert, &files.transport_key))).unwrap();

    eprintln!("pre-signing requests (not timed)...");
    let n_reg = 30_000usize.min(4000 * seconds as usize);
    let registrations: Vec<String> = (0..n_reg)
        .map(|_| {
            let mut claims = tpp::request_claims(&options, &server, ssa.trim()).unwrap();
            claims["tls_client_certificate_bound_access_tokens"] = json!(false);
            key.sign_jwt(&claims, "JWT")
        })
        .collect();

    // One private_key_jwt client without bound tokens, one tls_client_auth client.
    let mut claims = tpp::request_claims(&options, &server, ssa.trim()).unwrap();
    claims["tls_client_certificate_bound_access_tokens"] = json!(false);
    let reply: serde_json::Value = plain
        .post(format!("{server}/register"))
        .header("content-type", "application/jose")
        .body(key.sign_jwt(&claims, "JWT"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pkjwt_client = reply["client_id"].as_str().expect("registered").to_owned();
    let tls_options = RegisterOptions { auth_method: "tls_client_auth".into(), ..options.clone() };
    let (exchange, tls_registration) = tpp::register(&tls_options).await.unwrap();
    let tls_client = tls_registration.unwrap_or_else(|| panic!("{}", exchange.response)).client_id;

    let token_endpoint = format!("{server}/oauth2/token");
    let n_tok = 60_000usize.min(6000 * seconds as usize);
    let assertions: Vec<String> = (0..n_tok)
        .map(|_| {
            let now = keyfort::cli::now();
            let assertion = key.sign_jwt(
                &json!({"iss": pkjwt_client, "sub": pkjwt_client, "aud": token_endpoint, "iat": now, "exp": now + 300,
                        "jti": keyfort_core::secret::random_b64url(16)}),
                "JWT",
            );
            format!(
                "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
            )
        })
        .collect();
    let mtls_bodies: Vec<String> =
        (0..200_000).map(|_| format!("grant_type=client_credentials&client_id={tls_client}")).collect();

    let mut outcomes = Vec::new();
    outcomes.push(
        drive(
            "register (JWS PS256 + SSA)",
            plain.clone(),
            on_each(&servers, "/register"),
            "application/jose",
            registrations,
            concurrency,
            seconds,
        )
        .await,
    );
    outcomes.push(
        drive(
            "token private_key_jwt",
            plain.clone(),
            on_each(&servers, "/oauth2/token"),
            "application/x-www-form-urlencoded",
            assertions,
            concurrency,
            seconds,
        )
        .await,
    );
    outcomes.push(
        drive(
            "token tls_client_auth (mTLS, bound)",
            mtls,
            on_each(&servers, "/oauth2/token"),
            "application/x-www-form-urlencoded",
            mtls_bodies,
            concurrency,
            seconds,
        )
        .await,
    );

    println!(
        "\nKeyfort loopback benchmark (in-process): {nodes} node(s) on {storage_name}, concurrency {concurrency}, \
         {seconds} s per scenario, TLS 1.3\n"
    );
    println!("| scenario | req/s | p50 ms | p90 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|---|");
    for mut o in outcomes {
        o.latencies.sort();
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            o.name,
            o.ok as f64 / o.seconds,
            percentile(&o.latencies, 0.5),
            percentile(&o.latencies, 0.9),
            percentile(&o.latencies, 0.99),
            o.failed
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
