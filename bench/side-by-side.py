#!/usr/bin/env python3
"""Keyfort and a peer identity server, benchmarked alternately on the same machine.

    bench/side-by-side.py --peer /work/shared/peers/node-oidc-provider [--out DIR]
        [--concurrency "1 16 64 256"] [--repeats 3] [--duration 10] [--warmup 3]
        [--workloads token-pkjwt,register] [--no-build] [--keyfort-only] [--peer-offline]

For every repeat, workload and concurrency it runs Keyfort (release build, driven by
keyfort-bench, a fresh server and database each run) and the peer (driven by its own scripts:
mtls_bench.py for the token over mutual TLS, bench.py for registration), in alternating
order, each only once the machine is idle. It writes into the output directory:
  results.json  every run, normalised (server, workload, concurrency, throughput_rps,
                latency_ms, ...), with the raw output of each run under runs/
  summary.md    medians and ranges per workload and concurrency
  plots/        keyfort-bench plot results.json (throughput and latency charts)

The peer folder is copied into the output directory (a shared copy may be read-only) and its
npm packages installed there with `npm ci` (`--peer-offline`: only from the npm cache). If
Node, its packages or the peer's tools (wrk, curl, openssl) cannot be had, the script says
so and runs the Keyfort side alone. Nothing is sent anywhere but 127.0.0.1.
"""
import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")
PEER_WORKLOAD = {"token-pkjwt": "mtls_bench.py", "register": "bench.py"}


def log(msg):
    print(f"[side-by-side] {msg}", file=sys.stderr, flush=True)


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


def busy_cores(window=1.0):
    b0, t0 = machine_ticks()
    time.sleep(window)
    b1, t1 = machine_ticks()
    return (b1 - b0) / max(t1 - t0, 1) * os.cpu_count()


def wait_idle(threshold, max_wait):
    """Waits until the machine's busy CPU, over a second of /proc/stat, is below `threshold`
    cores (other builds, tests). The load average is recorded too, but not waited on: it
    lags by minutes."""
    start = time.time()
    while True:
        busy = busy_cores()
        waited = time.time() - start
        record = dict(idle_busy_cores=round(busy, 2), idle_waited_s=round(waited, 1),
                      loadavg_before=[float(x) for x in open("/proc/loadavg").read().split()[:3]])
        if busy < threshold:
            return dict(record, idle_reached=True)
        if waited > max_wait:
            log(f"machine still busy ({busy:.2f} cores) after {max_wait} s; running anyway (recorded in the results)")
            return dict(record, idle_reached=False)
        time.sleep(2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")


def build(args):
    if args.no_build:
        return
    log("building keyfort and keyfort-bench (release)")
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "keyfort", "-p", "keyfort-bench"],
                   cwd=REPO, check=True)


# --------------------------------------------------------------------------- peer set-up

def prepare_peer(args, out):
    """Copies the peer and installs what it needs. Returns (workdir, node, {workload: reason or None})."""
    unavailable = {w: None for w in args.workloads}

    def refuse(reason, workloads=None):
        for w in workloads or args.workloads:
            if unavailable.get(w) is None:
                unavailable[w] = reason

    if args.keyfort_only:
        refuse("--keyfort-only")
        return None, None, unavailable
    src = os.path.abspath(args.peer)
    needed = ["server.mjs", "prep.mjs", "bench.py", "mtls_bench.py", "rotate.lua", "package.json", "package-lock.json"]
    missing = [f for f in needed if not os.path.exists(os.path.join(src, f))]
    if missing:
        refuse(f"the peer folder {src} lacks {', '.join(missing)}")
        return None, None, unavailable
    node = os.environ.get("NODE_BIN") or shutil.which("node")
    if not node:
        refuse("Node.js is not installed (no `node` on PATH and no NODE_BIN); install Node 22 to run the peer")
        return None, None, unavailable
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    work = os.path.join(out, "peer")
    if not os.path.exists(work):
        shutil.copytree(src, work, ignore=shutil.ignore_patterns("node_modules", "run", ".node22"))
        for root, dirs, files in os.walk(work):
            for name in dirs + files:
                p = os.path.join(root, name)
                os.chmod(p, os.stat(p).st_mode | 0o200)
        os.chmod(work, os.stat(work).st_mode | 0o200)
        if os.path.isdir(os.path.join(src, "node_modules")):
            os.symlink(os.path.join(src, "node_modules"), os.path.join(work, "node_modules"))
    if not os.path.isdir(os.path.join(work, "node_modules", "oidc-provider")):
        npm = shutil.which("npm")
        if not npm:
            refuse(f"the peer's npm packages are not installed and there is no npm to install them (node {node_version})")
            return work, node, unavailable
        cmd = [npm, "ci", "--no-audit", "--no-fund"] + (["--offline"] if args.peer_offline else [])
        log(f"installing the peer's npm packages: {' '.join(cmd)}")
        r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-5:])
            refuse(f"the peer's npm packages are missing and `{' '.join(cmd[1:])}` failed "
                   f"({'only the npm cache was allowed' if args.peer_offline else 'no registry?'}): {tail}")
            return work, node, unavailable
    for tool, workloads in (("curl", ["token-pkjwt"]), ("openssl", ["token-pkjwt"]), ("wrk", ["register"])):
        if shutil.which(tool):
            continue
        if tool == "wrk" and os.geteuid() == 0 and not args.peer_offline and shutil.which("apt-get"):
            # As the peer's own bench.sh does.
            log("installing wrk with apt-get, as the peer's bench.sh does")
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True)
            if shutil.which("wrk"):
                continue
        refuse(f"`{tool}` is not installed (the peer's driver needs it)", [w for w in workloads if w in unavailable])
    return work, node, unavailable


# --------------------------------------------------------------------------- runs

def run_keyfort(args, workload, conc, raw_path):
    bench = os.path.join(target_dir(), "release", "keyfort-bench")
    keyfort = os.path.join(target_dir(), "release", "keyfort")
    cmd = [bench, "run", "--keyfort", keyfort, "--workload", workload, "--concurrency", str(conc),
           "--warmup", str(args.warmup), "--duration", str(args.duration), "--json", raw_path]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return dict(failed=True, reason=(r.stderr or r.stdout).strip()[-2000:])
    run = json.load(open(raw_path))["runs"][0]
    run.update(server="keyfort", driver="keyfort-bench (hyper, keep-alive, TLS 1.3)", transport="mTLS")
    if run.get("server_usage"):
        run["server_cpu_cores"] = run["server_usage"]["cpu_cores"]
        run["server_peak_rss_mib"] = run["server_usage"]["peak_rss_mib"]
    run["error_total"] = sum(run.get("errors", {}).values())
    if run.get("exhausted"):
        run["invalid"] = "keyfort-bench ran out of pre-signed requests before the time was up"
    return run


def run_peer(args, peer_dir, node, workload, conc, raw_path, last_rps):
    run_dir = os.path.join(args.out, "peer-run")
    env = dict(os.environ, RUN_DIR=run_dir, NODE_BIN=node, CONC=str(conc))
    if workload == "token-pkjwt":
        # mtls_bench.py sends a fixed number of requests; size it for about --duration seconds.
        rate = last_rps.get((workload, conc)) or (300 if conc == 1 else 1000)
        count = max(500, int(rate * args.duration))
        env.update(PORT=str(free_port()), COUNT=str(count), WARM=str(max(200, int(rate * args.warmup))), MTLS="1")
        r = subprocess.run([sys.executable, "mtls_bench.py"], cwd=peer_dir, env=env, capture_output=True, text=True)
        with open(raw_path, "w") as f:
            f.write(r.stdout + "\n--- stderr ---\n" + r.stderr)
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if r.returncode != 0 or not lines:
            return dict(failed=True, reason=(r.stderr or r.stdout).strip()[-2000:])
        m = json.loads(lines[-1])
        ok_rps = m["ok"] / m["wall_s"] if m["wall_s"] else 0.0
        return dict(server="node-oidc-provider", workload=workload, concurrency=conc,
                    driver="curl -Z (mtls_bench.py)", transport="mTLS",
                    duration_s=m["wall_s"], requests=m["requests"], ok=m["ok"], throughput_rps=round(ok_rps, 2),
                    warmup_rps=m.get("warm_rps"),
                    latency_ms=dict(mean=m["mean"], p50=m["p50"], p90=m["p90"], p99=m["p99"], p999=None, max=None),
                    error_total=m["requests"] - m["ok"], server_cpu_cores=m.get("server_cores"),
                    server_peak_rss_mib=None, client_cpu_cores=m.get("curl_cores"))
    env.update(PORT=str(free_port()), TESTS="reg", REPEAT="1", DURATION=str(int(round(args.duration))),
               WARMUP=str(int(round(args.warmup))))
    r = subprocess.run([sys.executable, "bench.py"], cwd=peer_dir, env=env, capture_output=True, text=True)
    with open(raw_path, "w") as f:
        f.write(r.stdout + "\n--- stderr ---\n" + r.stderr)
    path = next((l.split("results: ", 1)[1].strip() for l in r.stdout.splitlines() if l.startswith("results: ")), None)
    if r.returncode != 0 or not path:
        return dict(failed=True, reason=(r.stderr or r.stdout).strip()[-2000:])
    res = json.load(open(path))["results"][0]
    d = res["duration_s"] or 1e-9
    lat = res["lat_ms"]
    return dict(server="node-oidc-provider", workload=workload, concurrency=conc,
                driver="wrk (bench.py)", transport="plain HTTP (bench.py has no TLS)",
                duration_s=d, requests=res["requests"], ok=res["ok"], throughput_rps=round(res["ok"] / d, 2),
                warmup_rps=res.get("warmup_rps"),
                latency_ms=dict(mean=lat["mean"], p50=lat["p50"], p90=lat["p90"], p99=lat["p99"], p999=lat["p999"],
                                max=lat["max"]),
                error_total=res["unexpected_status"] + res["socket_errors"],
                server_cpu_cores=round(res["server_cpu_s"] / d, 2), server_peak_rss_mib=res.get("server_rss_mb"),
                client_cpu_cores=round(res["wrk_cpu_s"] / d, 2), wrapped=res.get("wrapped"),
                invalid=("the peer's driver ran out of pre-signed bodies and sent them again (wrapped: replayed jti "
                         "answered 400), so its server did less work per request" if res.get("wrapped") else None))


# --------------------------------------------------------------------------- summary

def med_range(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summary(results):
    meta = results["meta"]
    runs = [r for r in results["runs"] if not r.get("failed") and not r.get("invalid")]
    out = [f"# Keyfort and {meta['peer_name']}, side by side", ""]
    out.append(f"{meta['started']} on {meta['machine']}; {meta['repeats']} interleaved repeats, "
               f"{meta['warmup_s']} s warm-up + {meta['duration_s']} s measured; medians with (lowest–highest).")
    out.append(f"Keyfort {meta['keyfort_commit']}; peer: {meta['peer_status']}.")
    out.append("")
    for w in meta["workloads"]:
        out.append(f"## {w}")
        out.append("")
        reason = meta["peer_unavailable"].get(w)
        if reason:
            out.append(f"**Peer not run: {reason}**")
            out.append("")
        out.append("| conc | Keyfort req/s | peer req/s | Keyfort ÷ peer | Keyfort p50 / p99 ms | peer p50 / p99 ms "
                   "| Keyfort server CPU (cores) | peer server CPU (cores) | errors Keyfort / peer |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for c in meta["concurrency"]:
            k = [r for r in runs if r["server"] == "keyfort" and r["workload"] == w and r["concurrency"] == c]
            p = [r for r in runs if r["server"] != "keyfort" and r["workload"] == w and r["concurrency"] == c]
            km, pm = median_or_none([r["throughput_rps"] for r in k]), median_or_none([r["throughput_rps"] for r in p])
            ratio = f"{km / pm:.2f}" if km and pm else "-"
            lat = lambda rs: (f"{med_range([r['latency_ms']['p50'] for r in rs], '{:.1f}')} / "
                              f"{med_range([r['latency_ms']['p99'] for r in rs], '{:.1f}')}") if rs else "-"
            errs = lambda rs: str(sum(r.get("error_total", 0) for r in rs)) if rs else "-"
            out.append(f"| {c} | {med_range([r['throughput_rps'] for r in k])} | {med_range([r['throughput_rps'] for r in p])} "
                       f"| {ratio} | {lat(k)} | {lat(p)} | {med_range([r.get('server_cpu_cores') for r in k], '{:.2f}')} "
                       f"| {med_range([r.get('server_cpu_cores') for r in p], '{:.2f}')} | {errs(k)} / {errs(p)} |")
        out.append("")
        drivers = sorted({f"{r['server']}: {r['driver']}, {r['transport']}" for r in runs if r["workload"] == w})
        if drivers:
            out.append("Drivers: " + "; ".join(drivers) + ".")
            out.append("")
    failed = [r for r in results["runs"] if r.get("failed")]
    if failed:
        out.append("## Failed runs")
        out.append("")
        for r in failed:
            first = (r.get("reason") or "").strip().splitlines()[-1:] or [""]
            out.append(f"- {r['server']} {r['workload']} c={r['concurrency']} repeat {r['repeat']}: {first[0]}")
        out.append("")
    invalid = [r for r in results["runs"] if r.get("invalid") and not r.get("failed")]
    if invalid:
        out.append("## Runs left out of the medians")
        out.append("")
        for r in invalid:
            out.append(f"- {r['server']} {r['workload']} c={r['concurrency']} repeat {r['repeat']}: {r['invalid']}")
        out.append("")
    busy = [r for r in results["runs"] if r.get("idle_reached") is False]
    if busy:
        out.append(f"{len(busy)} run(s) started before the machine was idle (see idle_busy_cores in results.json).")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", required=True, help="the peer's folder (its README, bench.py, mtls_bench.py, ...)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "out", time.strftime("%Y%m%dT%H%M%S")))
    ap.add_argument("--concurrency", default="1 16 64 256", help='space or comma separated (default "1 16 64 256")')
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--workloads", default="token-pkjwt,register")
    ap.add_argument("--idle-busy", type=float, default=0.25, help="busy cores below which the machine counts as idle")
    ap.add_argument("--idle-max-wait", type=float, default=180.0, help="seconds to wait for idle before running anyway")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    ap.add_argument("--keyfort-only", action="store_true")
    ap.add_argument("--peer-offline", action="store_true", help="install the peer's packages from the npm cache only")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.replace(",", " ").split()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in args.workloads:
        if w not in PEER_WORKLOAD:
            sys.exit(f"--workloads: {w} has no peer counterpart; use token-pkjwt and/or register")
    args.out = os.path.abspath(args.out)
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)

    build(args)
    for b in ("keyfort", "keyfort-bench"):
        if not os.access(os.path.join(target_dir(), "release", b), os.X_OK):
            sys.exit(f"{os.path.join(target_dir(), 'release', b)} is missing: build it (cargo build --release -p {b})")
    peer_dir, node, unavailable = prepare_peer(args, args.out)
    for w, reason in unavailable.items():
        if reason:
            log(f"PEER NOT RUN for {w}: {reason}")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    ran_any_peer = any(r is None for r in unavailable.values())
    results = dict(meta=dict(
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), machine=f"{os.cpu_count()} cores, {cpu}, {platform.release()}",
        keyfort_commit=commit or "?", peer_name="node-oidc-provider", peer_dir=os.path.abspath(args.peer),
        node=node_version, peer_status=("run" if ran_any_peer else "not run") + (f" (Node {node_version})" if node_version else ""),
        peer_unavailable={w: r for w, r in unavailable.items() if r}, concurrency=args.concurrency,
        repeats=args.repeats, duration_s=args.duration, warmup_s=args.warmup, workloads=args.workloads,
        idle_busy_threshold=args.idle_busy), runs=[])

    last_rps = {}
    step = 0
    for rep in range(args.repeats):
        for w in args.workloads:
            for c in args.concurrency:
                order = ["keyfort", "peer"] if (rep + step) % 2 == 0 else ["peer", "keyfort"]
                step += 1
                for who in order:
                    if who == "peer" and unavailable.get(w):
                        continue
                    idle = wait_idle(args.idle_busy, args.idle_max_wait)
                    raw = os.path.join(args.out, "runs", f"{who}-{w}-c{c}-r{rep}.{'json' if who == 'keyfort' else 'txt'}")
                    log(f"repeat {rep + 1}/{args.repeats}: {who} {w} c={c} (busy before: {idle['idle_busy_cores']} cores)")
                    if who == "keyfort":
                        r = run_keyfort(args, w, c, raw)
                    else:
                        r = run_peer(args, peer_dir, node, w, c, raw, last_rps)
                        if not r.get("failed") and not r.get("invalid"):
                            last_rps[(w, c)] = r["throughput_rps"]
                    r.update(idle, repeat=rep, raw=os.path.relpath(raw, args.out))
                    r.setdefault("server", "keyfort" if who == "keyfort" else "node-oidc-provider")
                    r.setdefault("workload", w)
                    r.setdefault("concurrency", c)
                    if r.get("failed"):
                        log(f"  FAILED: {r['reason'].splitlines()[-1] if r['reason'] else '?'}")
                    else:
                        log(f"  {r['throughput_rps']:.1f} req/s, p50 {r['latency_ms']['p50']} ms, "
                            f"p99 {r['latency_ms']['p99']} ms, errors {r.get('error_total', 0)}"
                            + (f"; LEFT OUT: {r['invalid']}" if r.get("invalid") else ""))
                    results["runs"].append(r)
                    with open(os.path.join(args.out, "results.json"), "w") as f:
                        json.dump(results, f, indent=1)

    text = summary(results)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    if not args.no_plot:
        r = subprocess.run([os.path.join(target_dir(), "release", "keyfort-bench"), "plot",
                            os.path.join(args.out, "results.json"), "--out", os.path.join(args.out, "plots")],
                           capture_output=True, text=True)
        log("plots: " + (r.stdout.strip().replace("\n", ", ") if r.returncode == 0 else f"failed: {r.stderr.strip()}"))
    log(f"results in {args.out}")


if __name__ == "__main__":
    main()
