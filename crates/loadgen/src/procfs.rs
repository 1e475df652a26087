//! CPU time and resident memory of a process, from `/proc` (Linux).

use anyhow::Context as _;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`: 100 on every Linux ABI we run).
const USER_HZ: f64 = 100.0;

/// User + system CPU time of `pid` (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// The sum over several processes.
pub fn cpu_ticks_sum(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|p| cpu_ticks(*p)).sum()
}

/// The same for this process.
pub fn cpu_ticks_self() -> anyhow::Result<u64> {
    stat_ticks("/proc/self/stat")
}

pub fn ticks_to_secs(ticks: u64) -> f64 {
    ticks as f64 / USER_HZ
}

fn stat_ticks(path: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of stat(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .with_context(|| format!("{path}: no VmRSS"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// The sum over several processes (shared pages counted in each, as `ps` does).
pub fn rss_kb_sum(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|p| rss_kb(*p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_kb(std::process::id()).unwrap() > 0);
        let a = cpu_ticks_self().unwrap();
        assert!(cpu_ticks(std::process::id()).unwrap() >= a);
    }
}
