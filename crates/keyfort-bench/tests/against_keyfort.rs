//! Runs the `keyfort-bench` binary for about a second per workload against a Keyfort it
//! starts (the workspace's debug build) on loopback ports, and checks its JSON report. It
//! needs nothing outside this machine, so it always runs. Timings are not asserted: only
//! that every workload did work and nothing failed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's `keyfort` binary, next to this test's own target directory; built if
/// it is not there yet (`cargo test -p keyfort-bench` alone does not build it).
fn keyfort_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test> → target/<profile>/keyfort
    let profile_dir = exe.parent().and_then(Path::parent).expect("a target directory");
    let bin = profile_dir.join("keyfort");
    if !bin.exists() {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "keyfort", "--bin", "keyfort"])
            .args(release.then_some("--release"))
            .env("CARGO_TARGET_DIR", profile_dir.parent().expect("the target directory"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building keyfort failed");
    }
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

#[test]
fn every_workload_runs_against_a_real_keyfort_without_errors() {
    let keyfort = keyfort_binary();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_keyfort-bench"))
        .args(["run", "--keyfort"])
        .arg(&keyfort)
        .args(["--work-dir"])
        .arg(dir.path().join("work"))
        .args(["--workload", "register,token-pkjwt,token-tls,get-registration,introspect,consent"])
        .args(["--concurrency", "4", "--warmup", "0.5", "--duration", "1", "--clients", "2"])
        .args(["--warmup-requests", "300", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let log = std::fs::read_to_string(dir.path().join("work/server.log")).unwrap_or_default();
        panic!("keyfort-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{log}");
    }
    assert!(stdout.contains("| workload | conc | req/s |"), "the table is printed:\n{stdout}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["workload"].as_str().unwrap()).collect();
    assert_eq!(names, ["register", "token-pkjwt", "token-tls", "get-registration", "introspect", "consent"]);
    for run in runs {
        let name = run["workload"].as_str().unwrap();
        assert!(run["throughput_rps"].as_f64().unwrap() > 0.0, "{name}: no throughput: {run}");
        assert!(run["ok"].as_u64().unwrap() > 0, "{name}: {run}");
        assert_eq!(run["errors"], serde_json::json!({}), "{name}: errors: {run}");
        assert_eq!(run["ok"], run["requests"], "{name}: every answer a success");
        assert_eq!(run["exhausted"], false, "{name}: the prepared requests lasted");
        assert_eq!(run["concurrency"], 4);
        assert!(run["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{name}: {run}");
        assert!(run["latency_ms"]["p99"].as_f64() >= run["latency_ms"]["p50"].as_f64(), "{name}");
        let server = &run["server_usage"];
        assert!(server["pid"].as_u64().unwrap() > 0, "{name}: the server's pid: {run}");
        assert!(server["cpu_s"].as_f64().unwrap() > 0.0, "{name}: the server did work: {run}");
        assert!(server["peak_rss_mib"].as_f64().unwrap() > 1.0, "{name}: {run}");
        assert!(run["target"].as_str().unwrap().starts_with("https://localhost:"), "loopback only");
    }
    // No secret reaches the output: registration access tokens and assertions are never printed.
    assert!(!stderr.contains("eyJ") && !stdout.contains("eyJ"), "a JWT was printed:\n{stderr}");
}
