//! `keyfort-bench`: load generator for Keyfort, run as its own process. See
//! docs/benchmark.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use keyfort_bench::client::{tls_config, Target};
use keyfort_bench::material::Material;
use keyfort_bench::procfs::Process;
use keyfort_bench::report::{self, RunFile};
use keyfort_bench::run::{measure, RunOptions};
use keyfort_bench::server::LocalKeyfort;
use keyfort_bench::workload::{self, Discovery, Workload};
use keyfort_bench::{crypto, plot};

#[derive(Parser)]
#[command(name = "keyfort-bench", version, about = "Load generator and measuring instruments for Keyfort")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measures workloads against a Keyfort it starts (--keyfort) or one already running (--server).
    Run(Box<RunArgs>),
    /// RSA-2048 PSS and ECDSA P-256 sign and verify, with aws-lc-rs, in operations per second.
    Crypto(CryptoArgs),
    /// Charts of results: throughput against concurrency, and latency percentiles.
    Plot(PlotArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Start this keyfort binary against a fresh sandbox and database, and stop it at the end.
    #[arg(long, conflicts_with_all = ["server", "sandbox", "cacert"])]
    keyfort: Option<PathBuf>,
    /// Work directory for --keyfort (sandbox, database, configuration, server.log);
    /// default: a temporary directory, removed at the end unless --keep.
    #[arg(long, requires = "keyfort")]
    work_dir: Option<PathBuf>,
    /// Keep the work directory of --keyfort.
    #[arg(long)]
    keep: bool,
    /// The log level of the started server.
    #[arg(long, default_value = "warn")]
    log_level: String,

    /// URL of a running Keyfort (loopback only), e.g. https://localhost:9446.
    #[arg(long, requires_all = ["sandbox", "cacert"])]
    server: Option<String>,
    /// The sandbox directory the running server trusts (`keyfort serve --sandbox DIR --dev`).
    #[arg(long)]
    sandbox: Option<PathBuf>,
    /// The CA (or self-signed certificate) that the running server's certificate chains to.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// The sandbox software to act as (default: its first).
    #[arg(long)]
    software_id: Option<String>,
    /// The running server's pid, to read its CPU time and memory from /proc.
    #[arg(long, conflicts_with = "server_pid_file")]
    server_pid: Option<u32>,
    /// A file holding the running server's pid.
    #[arg(long)]
    server_pid_file: Option<PathBuf>,

    /// Workloads, comma separated: register, token-pkjwt, token-tls, get-registration, introspect, consent.
    #[arg(long, short, value_delimiter = ',', default_value = "token-pkjwt")]
    workload: Vec<Workload>,
    /// Concurrencies (connections, one request in flight on each), comma separated.
    #[arg(long, short, value_delimiter = ',', default_value = "16")]
    concurrency: Vec<usize>,
    /// Warm-up seconds on the same connections, not measured.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, short, default_value_t = 10.0)]
    duration: f64,
    /// Seconds before a request counts as timed out.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Clients registered for the token, get-registration and introspect workloads (used in turn).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Signed requests prepared for the warm-up.
    #[arg(long, default_value_t = 3000)]
    warmup_requests: usize,
    /// Signed requests prepared for the measured phase (default: from the warm-up's rate).
    #[arg(long)]
    requests: Option<usize>,
    /// The most signed requests prepared for one phase.
    #[arg(long, default_value_t = 150_000)]
    max_requests: usize,
    /// Also write the reports as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct CryptoArgs {
    /// Seconds per operation.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Threads running each operation at once (1: what one core does).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Png,
    Svg,
}

#[derive(Args)]
struct PlotArgs {
    /// A results file with a "runs" array (`run --json`, or bench/side-by-side.py's results.json).
    results: PathBuf,
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "png")]
    format: FormatArg,
    /// The concurrency of the latency charts (the nearest one measured is used).
    #[arg(long, default_value_t = 64)]
    latency_concurrency: usize,
    /// A TrueType font for the text (default: DejaVu Sans or Liberation Sans from the system).
    #[arg(long)]
    font: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Crypto(args) => crypto_command(args),
        Command::Plot(args) => plot_command(args),
    };
    if let Err(e) = result {
        eprintln!("keyfort-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)?).with_context(|| format!("writing {}", path.display()))
}

fn crypto_command(args: CryptoArgs) -> anyhow::Result<()> {
    let results = crypto::run(args.seconds, args.threads)?;
    print!("{}", crypto::table(&results));
    if let Some(path) = args.json {
        write_json(&path, &results)?;
    }
    Ok(())
}

fn plot_command(args: PlotArgs) -> anyhow::Result<()> {
    let runs = plot::load(&args.results)?;
    let format = match args.format {
        FormatArg::Png => plot::Format::Png,
        FormatArg::Svg => plot::Format::Svg,
    };
    plot::register_font(args.font.as_deref())?;
    for path in plot::plot(&runs, &args.out, format, args.latency_concurrency)? {
        println!("{}", path.display());
    }
    Ok(())
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("--{what} {s}: not a number of seconds"))
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.keyfort.is_none() && args.server.is_none() {
        anyhow::bail!(
            "give --keyfort BIN (start a server) or --server URL --sandbox DIR --cacert PEM (use a running one)"
        );
    }
    if args.concurrency.contains(&0) {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let options = |concurrency| -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            concurrency,
            warmup: seconds(args.warmup, "warmup")?,
            duration: seconds(args.duration, "duration")?,
            timeout: seconds(args.timeout, "timeout")?,
            warmup_requests: args.warmup_requests,
            requests: args.requests,
            max_requests: args.max_requests,
        })
    };
    // Bad durations are refused before a server is started.
    options(1)?;
    // Two worker threads are enough to keep hundreds of connections busy; more would take
    // CPU from the server on a small machine.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    let (work_dir, temporary) = match (&args.keyfort, &args.work_dir) {
        (Some(_), Some(dir)) => (Some(dir.clone()), false),
        (Some(_), None) => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
            (Some(std::env::temp_dir().join(format!("keyfort-bench-{}-{nanos}", std::process::id()))), true)
        }
        _ => (None, false),
    };

    let result = runtime.block_on(async {
        let mut local = None;
        let (url, sandbox, cacert, server_process) = match &args.keyfort {
            Some(bin) => {
                let dir = work_dir.as_deref().expect("a work directory with --keyfort");
                eprintln!("keyfort-bench: starting {} (work directory {})", bin.display(), dir.display());
                let mut server = LocalKeyfort::start(bin, dir, &args.log_level)?;
                server.wait_ready(Duration::from_secs(60)).await?;
                let process = Process::pid(server.pid())?;
                let info = (server.url.clone(), server.sandbox.clone(), server.cacert.clone(), Some(process));
                local = Some(server);
                info
            }
            None => {
                let process = match (&args.server_pid, &args.server_pid_file) {
                    (Some(pid), _) => Some(Process::pid(*pid)?),
                    (None, Some(file)) => Some(Process::from_pid_file(file)?),
                    (None, None) => None,
                };
                (
                    args.server.clone().expect("--server"),
                    args.sandbox.clone().expect("--sandbox"),
                    args.cacert.clone().expect("--cacert"),
                    process,
                )
            }
        };
        match &server_process {
            None => eprintln!("keyfort-bench: no --server-pid: the server's CPU and memory are not measured"),
            Some(process) => {
                let name = process.name().unwrap_or_default();
                if !name.starts_with("keyfort") {
                    eprintln!(
                        "keyfort-bench: warning: pid {} is \"{name}\", not keyfort: its CPU and memory are not the server's",
                        process.pid_number()
                    );
                }
            }
        }
        let material = Arc::new(Material::load(&sandbox, args.software_id.as_deref())?);
        let tls = tls_config(&cacert, Some((&material.transport_cert, &material.transport_key)))?;
        let target = Target::new(&url, tls)?;
        let discovery = Discovery::fetch(&target).await?;
        let mut reports = Vec::new();
        for &w in &args.workload {
            eprintln!("keyfort-bench: setting up {w} ({} clients)", if w == Workload::Register { 0 } else { args.clients });
            let plan = workload::plan(w, &target, material.clone(), &discovery, args.clients).await?;
            for &c in &args.concurrency {
                eprintln!(
                    "keyfort-bench: {w} at concurrency {c}: {:.1} s warm-up, {:.1} s measured",
                    args.warmup, args.duration
                );
                let report = measure(&target, &plan, server_process.as_ref(), &options(c)?).await?;
                if report.exhausted {
                    eprintln!(
                        "keyfort-bench: warning: {w} at concurrency {c} used all {} prepared requests before the time was up; \
                         give a larger --requests",
                        report.prepared_requests
                    );
                }
                eprint!("{}", report::table(std::slice::from_ref(&report)).lines().nth(2).unwrap_or_default());
                eprintln!();
                reports.push(report);
            }
        }
        if let Some(mut server) = local {
            server.stop();
        }
        Ok::<_, anyhow::Error>(reports)
    });
    if temporary && !args.keep {
        if let Some(dir) = &work_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let reports = result?;
    println!("\n{}", report::table(&reports));
    if let Some(path) = &args.json {
        let file = RunFile { tool: "keyfort-bench".into(), version: env!("CARGO_PKG_VERSION").into(), runs: reports };
        write_json(path, &file)?;
        eprintln!("keyfort-bench: wrote {}", path.display());
    }
    Ok(())
}
