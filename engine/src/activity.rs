//! Activity: what happened per minute, tenant and job (tasks started, with
//! how long each waited once due; tasks succeeded, failed, retried and
//! revoked; fuel and wall time), the figures the console charts.
//!
//! Each node counts what its workers do in memory and writes its rows of
//! the minutes that changed at every heartbeat ([`Activity::flush`]),
//! whole: a node writes only its own rows (keyed by its id and a random
//! incarnation, so that a restarted node starts rows of its own instead of
//! overwriting its predecessor's), no two nodes contend for a row, and
//! readers add the nodes up ([`summarize`]). A node that dies loses what it
//! counted since its last flush, a heartbeat's worth at most. The store
//! keeps rows for [`KEPT`]; the heartbeat prunes older ones.
//!
//! The counts are what the workers saw: an attempt ends as its worker
//! decided (a retry the store turns into a revoke, because one was asked
//! meanwhile, counts as retried; an ending refused for a lost lease still
//! counts), and what no worker does is not counted (tasks expired before
//! they started, queued tasks revoked, a dead node's attempts, which start
//! and never end here).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{ActivityRow, Millis, Store, StoreError, TaskState};
use crate::wire::{Activity as Answer, ActivityCounts, JobActivity, MinuteActivity, TenantActivity};

/// The upper bounds (ms) of the buckets of the wait histogram; one more
/// bucket holds longer waits. A percentile is given as the bound of its
/// bucket.
pub const WAIT_BUCKETS_MS: [u64; 17] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 3_600_000];
/// Buckets of the wait histogram: [`WAIT_BUCKETS_MS`] and the longer waits.
const BUCKETS: usize = WAIT_BUCKETS_MS.len() + 1;
/// A minute, in ms: rows count per minute.
pub const MINUTE: Millis = 60_000;
/// How long the store keeps activity rows. Default 1 day.
pub const KEPT: Millis = 24 * 60 * MINUTE;
/// The longest window `GET /v1/activity` answers: [`KEPT`], in minutes.
pub const MAX_MINUTES: u32 = (KEPT / MINUTE) as u32;

/// One minute's counts of one job on this node.
#[derive(Debug, Clone, Default)]
struct Counts {
    started: u64,
    succeeded: u64,
    failed: u64,
    retried: u64,
    revoked: u64,
    fuel: u64,
    wall_time_us: u64,
    waits: [u64; BUCKETS],
    /// Changed since it was last written.
    dirty: bool,
}

/// Minutes of one job, by minute start.
type Minutes = HashMap<Millis, Counts>;

/// This node's counts, by tenant and job.
pub struct Activity {
    node: String,
    counts: Mutex<HashMap<String, HashMap<String, Minutes>>>,
}

impl Activity {
    /// Counts for node `node`, as a new incarnation of it.
    pub fn new(node: &str) -> Self {
        let incarnation = (crate::retry::jitter() * f64::from(u32::MAX)) as u32;
        Self { node: format!("{node}/{incarnation:08x}"), counts: Mutex::default() }
    }

    /// A task of `tenant`'s `job` due at `due_at` started at `at`.
    pub fn started(&self, tenant: &str, job: &str, due_at: Millis, at: Millis) {
        let waited = u64::try_from(at.saturating_sub(due_at)).unwrap_or(0);
        let bucket = WAIT_BUCKETS_MS.iter().position(|&bound| waited <= bound).unwrap_or(WAIT_BUCKETS_MS.len());
        self.update(tenant, job, at, |c| {
            c.started = c.started.saturating_add(1);
            c.waits[bucket] = c.waits[bucket].saturating_add(1);
        });
    }

    /// An attempt of a task of `tenant`'s `job` ended at `at` leaving its
    /// task in `state`, having used `fuel` and `wall_time_us`.
    pub fn ended(&self, tenant: &str, job: &str, state: TaskState, fuel: u64, wall_time_us: u64, at: Millis) {
        self.update(tenant, job, at, |c| {
            let counter = match state {
                TaskState::Success => &mut c.succeeded,
                TaskState::Retry => &mut c.retried,
                TaskState::Revoked => &mut c.revoked,
                _ => &mut c.failed,
            };
            *counter = counter.saturating_add(1);
            c.fuel = c.fuel.saturating_add(fuel);
            c.wall_time_us = c.wall_time_us.saturating_add(wall_time_us);
        });
    }

    fn update(&self, tenant: &str, job: &str, at: Millis, change: impl FnOnce(&mut Counts)) {
        let minute = at.saturating_sub(at.rem_euclid(MINUTE));
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by reference: a key is allocated once per tenant and job.
        if !counts.contains_key(tenant) {
            counts.insert(tenant.to_owned(), HashMap::new());
        }
        let jobs = counts.get_mut(tenant).expect("inserted above");
        if !jobs.contains_key(job) {
            jobs.insert(job.to_owned(), HashMap::new());
        }
        let counts = jobs.get_mut(job).expect("inserted above").entry(minute).or_default();
        change(counts);
        counts.dirty = true;
    }

    /// Writes the rows that changed since the last flush, and forgets the
    /// minutes that ended before `now`'s previous minute once written
    /// (later counts of such a minute, rare, start it afresh and overwrite
    /// it: a heartbeat is far shorter than a minute), and those older than
    /// [`KEPT`] even unwritten (the store would prune them): while the
    /// store cannot be written, memory stays bounded.
    pub async fn flush(&self, store: &dyn Store, now: Millis) -> Result<(), StoreError> {
        let rows = self.dirty_rows();
        if rows.is_empty() {
            return Ok(());
        }
        let written = store.record_activity(rows.clone()).await;
        let recent = now.saturating_sub(now.rem_euclid(MINUTE)).saturating_sub(MINUTE);
        let kept = now.saturating_sub(KEPT);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if written.is_err() {
            // Written again at the next flush.
            for row in &rows {
                if let Some(c) = counts.get_mut(&row.tenant).and_then(|j| j.get_mut(&row.job)?.get_mut(&row.minute)) {
                    c.dirty = true;
                }
            }
        }
        for jobs in counts.values_mut() {
            for minutes in jobs.values_mut() {
                minutes.retain(|&minute, c| (c.dirty && minute >= kept) || minute >= recent);
            }
            jobs.retain(|_, minutes| !minutes.is_empty());
        }
        counts.retain(|_, jobs| !jobs.is_empty());
        written
    }

    /// The rows changed since they were last taken, marked clean.
    fn dirty_rows(&self) -> Vec<ActivityRow> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = Vec::new();
        for (tenant, jobs) in counts.iter_mut() {
            for (job, minutes) in jobs.iter_mut() {
                for (&minute, c) in minutes.iter_mut().filter(|(_, c)| c.dirty) {
                    c.dirty = false;
                    rows.push(ActivityRow {
                        tenant: tenant.clone(),
                        minute,
                        job: job.clone(),
                        node: self.node.clone(),
                        started: c.started,
                        succeeded: c.succeeded,
                        failed: c.failed,
                        retried: c.retried,
                        revoked: c.revoked,
                        fuel: c.fuel,
                        wall_time_us: c.wall_time_us,
                        waits: c.waits.to_vec(),
                    });
                }
            }
        }
        rows
    }
}

/// The window of `minutes` minutes that ends with `now`'s minute: the
/// first minute's start.
pub fn since(now: Millis, minutes: u32) -> Millis {
    let minutes = i64::from(minutes.clamp(1, MAX_MINUTES));
    now.saturating_sub(now.rem_euclid(MINUTE)).saturating_sub((minutes - 1) * MINUTE)
}

/// Every node's `rows` added up over the window of `minutes` minutes that
/// ends with `now`'s minute: per minute (every minute, idle ones too), per
/// job and per tenant.
pub fn summarize(rows: &[ActivityRow], now: Millis, minutes: u32) -> Answer {
    let from = since(now, minutes);
    let n = usize::try_from(minutes.clamp(1, MAX_MINUTES)).unwrap_or(1);
    let mut per_minute: Vec<(ActivityCounts, [u64; BUCKETS])> = vec![Default::default(); n];
    let mut jobs: HashMap<(&str, &str), ActivityCounts> = HashMap::new();
    let mut tenants: HashMap<&str, ActivityCounts> = HashMap::new();
    for row in rows {
        let Some(i) =
            row.minute.checked_sub(from).and_then(|after| usize::try_from(after / MINUTE).ok()).filter(|&i| i < n)
        else {
            continue;
        };
        let (counts, waits) = &mut per_minute[i];
        add(counts, row);
        for (total, &w) in waits.iter_mut().zip(&row.waits) {
            *total = total.saturating_add(w);
        }
        add(jobs.entry((&row.tenant, &row.job)).or_default(), row);
        add(tenants.entry(&row.tenant).or_default(), row);
    }
    let minutes = per_minute
        .into_iter()
        .enumerate()
        .map(|(i, (counts, waits))| MinuteActivity {
            at: from.saturating_add(i as i64 * MINUTE),
            wait_p50_ms: percentile(&waits, 50),
            wait_p99_ms: percentile(&waits, 99),
            counts,
        })
        .collect();
    let mut jobs: Vec<JobActivity> = jobs
        .into_iter()
        .map(|((tenant, job), counts)| JobActivity { tenant: tenant.into(), job: job.into(), counts })
        .collect();
    jobs.sort_by(|a, b| {
        b.counts.failed.cmp(&a.counts.failed).then_with(|| (&a.tenant, &a.job).cmp(&(&b.tenant, &b.job)))
    });
    let mut tenants: Vec<TenantActivity> =
        tenants.into_iter().map(|(tenant, counts)| TenantActivity { tenant: tenant.into(), counts }).collect();
    tenants.sort_by(|a, b| b.counts.fuel.cmp(&a.counts.fuel).then_with(|| a.tenant.cmp(&b.tenant)));
    Answer { since: from, minute_ms: MINUTE, minutes, jobs, tenants }
}

fn add(total: &mut ActivityCounts, row: &ActivityRow) {
    let sum = |a: &mut u64, b: u64| *a = a.saturating_add(b);
    sum(&mut total.started, row.started);
    sum(&mut total.succeeded, row.succeeded);
    sum(&mut total.failed, row.failed);
    sum(&mut total.retried, row.retried);
    sum(&mut total.revoked, row.revoked);
    sum(&mut total.fuel, row.fuel);
    sum(&mut total.wall_time_us, row.wall_time_us);
}

/// The bound of the bucket holding the `p`th percentile of `waits` (none
/// without any); past the last bound, the last bound.
fn percentile(waits: &[u64; BUCKETS], p: u64) -> Option<u64> {
    let total: u64 = waits.iter().fold(0u64, |a, &w| a.saturating_add(w));
    if total == 0 {
        return None;
    }
    // The smallest rank at or above p% of the total (at least 1).
    let rank = (u128::from(total) * u128::from(p)).div_ceil(100).max(1);
    let mut seen = 0u128;
    for (i, &w) in waits.iter().enumerate() {
        seen += u128::from(w);
        if seen >= rank {
            return Some(WAIT_BUCKETS_MS.get(i).copied().unwrap_or(WAIT_BUCKETS_MS[WAIT_BUCKETS_MS.len() - 1]));
        }
    }
    WAIT_BUCKETS_MS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, minute: Millis, started: u64, waits: Vec<u64>) -> ActivityRow {
        ActivityRow {
            tenant: "acme".into(),
            job: "add".into(),
            node: node.into(),
            minute,
            started,
            succeeded: started,
            fuel: 10 * started,
            waits,
            ..ActivityRow::default()
        }
    }

    #[test]
    fn a_node_counts_per_minute_and_writes_only_what_changed() {
        let activity = Activity::new("n1");
        activity.started("acme", "add", 1_000, 1_003);
        activity.ended("acme", "add", TaskState::Success, 7, 100, 1_010);
        activity.ended("acme", "add", TaskState::Retry, 3, 50, MINUTE + 5);
        let rows = activity.dirty_rows();
        assert_eq!(rows.len(), 2);
        let first = rows.iter().find(|r| r.minute == 0).unwrap();
        assert_eq!((first.started, first.succeeded, first.fuel, first.wall_time_us), (1, 1, 7, 100));
        // Waited 3 ms: the bucket of at most 5.
        assert_eq!(first.waits[2], 1);
        assert!(first.node.starts_with("n1/"));
        let second = rows.iter().find(|r| r.minute == MINUTE).unwrap();
        assert_eq!((second.retried, second.fuel), (1, 3));
        assert!(activity.dirty_rows().is_empty(), "taken rows are clean until they change again");
    }

    #[test]
    fn a_summary_adds_up_nodes_and_keeps_every_minute_of_the_window() {
        let now = 10 * MINUTE + 30_000;
        let mut waits = vec![0; BUCKETS];
        waits[0] = 98;
        waits[10] = 2;
        let rows = vec![
            row("a", 10 * MINUTE, 100, waits.clone()),
            row("b", 10 * MINUTE, 100, waits),
            row("a", 8 * MINUTE, 5, vec![0; BUCKETS]),
            // Before the window: left out.
            row("a", 2 * MINUTE, 1_000, vec![0; BUCKETS]),
        ];
        let answer = summarize(&rows, now, 3);
        assert_eq!(answer.since, 8 * MINUTE);
        assert_eq!(answer.minutes.len(), 3);
        assert_eq!(answer.minutes[0].counts.succeeded, 5);
        assert_eq!(answer.minutes[1].counts.succeeded, 0);
        assert_eq!(answer.minutes[1].wait_p50_ms, None);
        assert_eq!(answer.minutes[2].counts.started, 200);
        assert_eq!(answer.minutes[2].wait_p50_ms, Some(1));
        assert_eq!(answer.minutes[2].wait_p99_ms, Some(2_000));
        assert_eq!(answer.tenants.len(), 1);
        assert_eq!(answer.tenants[0].counts.fuel, 2_050);
        assert_eq!(answer.jobs[0].counts.succeeded, 205);
    }

    #[test]
    fn huge_waits_and_windows_are_bounded() {
        let activity = Activity::new("n");
        activity.started("t", "j", Millis::MIN, Millis::MAX);
        activity.started("t", "j", Millis::MAX, Millis::MIN);
        let rows = activity.dirty_rows();
        let answer = summarize(&rows, Millis::MAX / 2, u32::MAX);
        assert_eq!(answer.minutes.len(), MAX_MINUTES as usize);
        let mut waits = [0; BUCKETS];
        waits[BUCKETS - 1] = u64::MAX;
        assert_eq!(percentile(&waits, 99), Some(3_600_000));
    }
}
