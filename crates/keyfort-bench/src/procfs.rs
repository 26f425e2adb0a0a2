//! CPU time and memory of a process, and the whole machine's CPU, from Linux `/proc`.
//!
//! The server is measured from outside, by its pid, so that the figures include everything
//! the process does (TLS, database, background tasks) and nothing the load generator does.

use std::path::Path;

use anyhow::Context;

/// CPU time a process has used, in clock ticks, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessTicks {
    pub user: u64,
    pub system: u64,
}

impl ProcessTicks {
    pub fn total(&self) -> u64 {
        self.user + self.system
    }
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// hold spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> anyhow::Result<ProcessTicks> {
    let rest = text.rsplit_once(')').map(|(_, rest)| rest).context("no ')' after the command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (field 14) and stime (field 15) are at 11, 12.
    let field = |i: usize, name: &str| -> anyhow::Result<u64> {
        fields
            .get(i)
            .with_context(|| format!("no {name} field"))?
            .parse()
            .with_context(|| format!("{name} is not a number"))
    };
    Ok(ProcessTicks { user: field(11, "utime")?, system: field(12, "stime")? })
}

/// Resident memory of a process, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Resident now (`VmRSS`).
    pub rss_kib: Option<u64>,
    /// The most it has ever been resident (`VmHWM`, the "high water mark").
    pub peak_rss_kib: Option<u64>,
}

pub fn parse_status(text: &str) -> ProcessMemory {
    let kib = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    ProcessMemory { rss_kib: kib("VmRSS"), peak_rss_kib: kib("VmHWM") }
}

/// The machine's CPU time, in clock ticks summed over every core, from the first line of
/// `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    pub busy: u64,
    pub total: u64,
    /// Time the hypervisor gave to other guests: high steal makes any figure unreliable.
    pub steal: u64,
}

pub fn parse_proc_stat(text: &str) -> anyhow::Result<MachineTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu ")).context("no aggregate \"cpu\" line")?;
    let values: Vec<u64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    if values.len() < 4 {
        anyhow::bail!("the \"cpu\" line has {} fields, expected at least 4", values.len());
    }
    let at = |i: usize| values.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    // already counted in user and nice, so it is left out of the sum.
    let total: u64 = values.iter().take(8).sum();
    let idle = at(3) + at(4);
    Ok(MachineTicks { busy: total - idle, total, steal: at(7) })
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> anyhow::Result<[f64; 3]> {
    let mut parts = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || -> anyhow::Result<f64> { parts.next().context("too few fields")?.context("not a number") };
    Ok([next()?, next()?, next()?])
}

/// Clock ticks per second (`USER_HZ`), the unit of `/proc/*/stat`.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// One process, watched through `/proc/<pid>` (or `/proc/self`).
#[derive(Debug, Clone)]
pub struct Process {
    pid: u32,
    dir: std::path::PathBuf,
}

impl Process {
    pub fn pid(pid: u32) -> anyhow::Result<Self> {
        let dir = Path::new("/proc").join(pid.to_string());
        if !dir.join("stat").exists() {
            anyhow::bail!("no process {pid} (no {})", dir.join("stat").display());
        }
        Ok(Self { pid, dir })
    }

    pub fn current() -> Self {
        Self { pid: std::process::id(), dir: "/proc/self".into() }
    }

    pub fn pid_number(&self) -> u32 {
        self.pid
    }

    /// The pid in a pid file (one number, as `echo $! > FILE` writes it).
    pub fn from_pid_file(path: &Path) -> anyhow::Result<Self> {
        let text = read(path)?;
        let pid = text.trim().parse().with_context(|| format!("{} does not hold a pid", path.display()))?;
        Self::pid(pid)
    }

    /// The command name (`/proc/<pid>/comm`), to catch a pid file that names a wrapper
    /// shell instead of the server.
    pub fn name(&self) -> anyhow::Result<String> {
        Ok(read(&self.dir.join("comm"))?.trim().to_owned())
    }

    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        Ok(parse_stat(&read(&self.dir.join("stat"))?)?.total() as f64 / ticks_per_second())
    }

    pub fn memory(&self) -> anyhow::Result<ProcessMemory> {
        Ok(parse_status(&read(&self.dir.join("status"))?))
    }
}

/// The whole machine's CPU ticks now.
pub fn machine() -> anyhow::Result<MachineTicks> {
    parse_proc_stat(&read(Path::new("/proc/stat"))?)
}

pub fn loadavg() -> anyhow::Result<[f64; 3]> {
    parse_loadavg(&read(Path::new("/proc/loadavg"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A name with spaces and a ')' of its own must not shift the fields.
        let text = "4242 (tokio-rt (x) worker) S 1 4242 4242 0 -1 4194560 2291 0 0 0 1234 567 0 0 20 0 \
                    9 0 12345 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let ticks = parse_stat(text).unwrap();
        assert_eq!(ticks, ProcessTicks { user: 1234, system: 567 });
        assert_eq!(ticks.total(), 1801);
        assert!(parse_stat("4242 (x) S 1 2").is_err(), "too few fields");
        assert!(parse_stat("no parenthesis here").is_err());
    }

    #[test]
    fn status_gives_current_and_peak_resident_memory() {
        let text = "Name:\tkeyfort\nVmPeak:\t  900000 kB\nVmHWM:\t   65432 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(parse_status(text), ProcessMemory { rss_kib: Some(51200), peak_rss_kib: Some(65432) });
        assert_eq!(parse_status("Name:\tkthreadd\n"), ProcessMemory::default(), "kernel threads have no Vm lines");
    }

    #[test]
    fn proc_stat_separates_busy_idle_and_steal() {
        let text = "cpu  100 5 50 800 20 3 2 7 40 0\ncpu0 50 2 25 400 10 1 1 3 20 0\nintr 1 2 3\n";
        let m = parse_proc_stat(text).unwrap();
        // total excludes guest (40) which user already counts; idle is idle + iowait.
        assert_eq!(m.total, 100 + 5 + 50 + 800 + 20 + 3 + 2 + 7);
        assert_eq!(m.busy, m.total - 820);
        assert_eq!(m.steal, 7);
        assert!(parse_proc_stat("cpu0 1 2 3 4\n").is_err(), "only per-core lines");
    }

    #[test]
    fn loadavg_reads_three_numbers() {
        assert_eq!(parse_loadavg("0.52 1.25 2.00 3/456 7890\n").unwrap(), [0.52, 1.25, 2.0]);
        assert!(parse_loadavg("0.5 x").is_err());
    }

    #[test]
    fn this_process_can_be_measured() {
        let me = Process::current();
        let before = me.cpu_seconds().unwrap();
        // Burn a little CPU so the counter moves by at least one tick.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(me.cpu_seconds().unwrap() > before);
        assert!(me.memory().unwrap().peak_rss_kib.unwrap() > 0);
        assert!(!me.name().unwrap().is_empty());
        assert!(Process::pid(u32::MAX).is_err());
        let m = machine().unwrap();
        assert!(m.total >= m.busy && m.total > 0);
    }
}
