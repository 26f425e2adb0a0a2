//! The signature operations every request pays for, alone: RSA-2048 PSS (PS256) and ECDSA
//! P-256 (ES256) with aws-lc-rs, the backend Keyfort uses. They bound what any server on
//! this machine can do: a `private_key_jwt` token request costs at least one PS256 verify
//! and one signature for the access token; a registration, two verifies and no signature.

use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CryptoResult {
    pub operation: String,
    pub threads: usize,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    /// `ops_per_s` divided by the threads: what one core does.
    pub ops_per_s_per_thread: f64,
}

/// A signing input the size of a client assertion's header and claims.
fn message() -> Vec<u8> {
    (0..600u32).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789-_."[(i % 39) as usize]).collect()
}

type Op = Box<dyn Fn() + Send + Sync>;

fn operations() -> anyhow::Result<Vec<(&'static str, Op)>> {
    let rsa = std::sync::Arc::new(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| anyhow::anyhow!("{e}"))?);
    let rsa_public = rsa.public_key().as_ref().to_vec();
    let ec = std::sync::Arc::new(
        EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let ec_public = ec.public_key().as_ref().to_vec();
    let msg = message();
    let rng = SystemRandom::new();
    let mut rsa_sig = vec![0; rsa.public_modulus_len()];
    rsa.sign(&signature::RSA_PSS_SHA256, &rng, &msg, &mut rsa_sig).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ec_sig = ec.sign(&rng, &msg).map_err(|e| anyhow::anyhow!("{e}"))?.as_ref().to_vec();

    let (m1, m2, m3, m4) = (msg.clone(), msg.clone(), msg.clone(), msg);
    let rsa_sign: Op = Box::new(move || {
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(&signature::RSA_PSS_SHA256, &SystemRandom::new(), &m1, &mut sig).expect("RSA signing works");
        std::hint::black_box(sig);
    });
    let rsa_verify: Op = Box::new(move || {
        UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, &rsa_public)
            .verify(&m2, &rsa_sig)
            .expect("the RSA signature verifies");
    });
    let ec_sign: Op = Box::new(move || {
        std::hint::black_box(ec.sign(&SystemRandom::new(), &m3).expect("ECDSA signing works"));
    });
    let ec_verify: Op = Box::new(move || {
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &ec_public)
            .verify(&m4, &ec_sig)
            .expect("the ECDSA signature verifies");
    });
    Ok(vec![
        ("RSA-2048 PSS sign (PS256)", rsa_sign),
        ("RSA-2048 PSS verify (PS256)", rsa_verify),
        ("ECDSA P-256 sign (ES256)", ec_sign),
        ("ECDSA P-256 verify (ES256)", ec_verify),
    ])
}

/// Runs each operation in a loop on `threads` threads for `seconds`.
pub fn run(seconds: f64, threads: usize) -> anyhow::Result<Vec<CryptoResult>> {
    let threads = threads.max(1);
    let mut results = Vec::new();
    for (name, op) in operations()? {
        // A short untimed run first, so that lazy initialisation is not measured.
        for _ in 0..20 {
            op();
        }
        let limit = Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let ops: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let op = &op;
                    scope.spawn(move || {
                        let mut n = 0u64;
                        while start.elapsed() < limit {
                            // Check the clock every few operations only.
                            for _ in 0..8 {
                                op();
                            }
                            n += 8;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a crypto thread panicked")).sum()
        });
        let elapsed = start.elapsed().as_secs_f64();
        let ops_per_s = ops as f64 / elapsed;
        results.push(CryptoResult {
            operation: name.into(),
            threads,
            ops,
            seconds: (elapsed * 1000.0).round() / 1000.0,
            ops_per_s: ops_per_s.round(),
            ops_per_s_per_thread: (ops_per_s / threads as f64).round(),
        });
    }
    Ok(results)
}

pub fn table(results: &[CryptoResult]) -> String {
    let mut out = String::from(
        "| operation | threads | ops/s | ops/s per thread | mean µs per op per thread |\n|---|---|---|---|---|\n",
    );
    for r in results {
        let micros = if r.ops_per_s_per_thread > 0.0 { 1e6 / r.ops_per_s_per_thread } else { 0.0 };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.1} |\n",
            r.operation, r.threads, r.ops_per_s, r.ops_per_s_per_thread, micros
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_runs_and_is_counted() {
        let results = run(0.05, 1).unwrap();
        assert_eq!(results.len(), 4);
        for r in &results {
            assert!(r.ops >= 8 && r.ops_per_s > 0.0, "{r:?}");
        }
        let table = table(&results);
        assert!(table.contains("| RSA-2048 PSS verify (PS256) | 1 |"), "{table}");
    }
}
