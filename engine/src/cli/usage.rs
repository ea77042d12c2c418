//! This process's resource use, as the benchmarks report it (Linux's
//! `/proc/self`).

use anyhow::Context as _;

/// `/proc/self/stat` counts CPU time in these per second (Linux's `USER_HZ`).
const CLOCK_TICKS: f64 = 100.0;

/// This process's user + system CPU time so far, in seconds, from
/// `/proc/self/stat` (fields 14 and 15, after the parenthesised name).
pub fn cpu_time() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("cannot read /proc/self/stat")?;
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (Some(user), Some(system)) = (field(14), field(15)) else {
        anyhow::bail!("cannot parse /proc/self/stat");
    };
    Ok((user + system) as f64 / CLOCK_TICKS)
}

/// The process's peak resident memory (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM")
}

/// The process's resident memory now (`VmRSS`), in MiB.
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS")
}

/// A `/proc/self/status` figure given in kB, in MiB.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
