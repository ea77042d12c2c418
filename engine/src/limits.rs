//! Limits a tenant sets on its own queues and jobs, cluster-wide: kept in
//! the store and applied by every claim, on every node, as they are at
//! that claim (no node caches them).
//!
//! - A queue's [`QueueLimits`]: `max_running` (its tasks started at once;
//!   0 pauses the queue) and `priority` (the due tasks of a queue of higher
//!   priority are claimed before those of a lower one; 0 by default).
//! - A job's [`JobLimits`]: `max_concurrency` (its tasks started at once,
//!   pulsar's `max_concurrency`) and `rate` (its tasks started per period: a
//!   bucket of `tasks` tokens, refilled at `tasks` per `per_ms`; each start
//!   takes one, so a burst of at most `tasks` and then the rate).
//!
//! The tenant's own `max_running` bounds all of them together. A tenant with
//! none of these (and every tenant claimed by a node serving every queue)
//! goes through the plain claim, in the order of its tasks. The others go
//! through the grouped claim: their waiting tasks are walked by queue and
//! job (`tasks_groups`, an index of both stores), each group's due head
//! taken up to the room its limits leave, then [`pick`] orders all heads
//! (queue priority, task priority, due time, id) and takes them while
//! every limit has room. A limited job's tasks waiting behind its limit
//! therefore cost a claim one look per group, not one per task.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use utoipa::ToSchema;

use crate::store::Millis;

/// The largest `max_running`, `max_concurrency` and `rate.tasks`: a
/// million.
pub const MAX_LIMIT: u32 = 1_000_000;

/// The longest `rate.per_ms`: 366 days, as a task's longest delay.
pub const MAX_PERIOD_MS: u64 = 366 * 24 * 60 * 60 * 1000;

/// The most groups (queue, job) with waiting tasks one claim walks for a
/// tenant with limits and every queue: the next claim goes on from where
/// it stopped, wrapping around, so that a tenant with tasks in many queues
/// costs each claim a bounded walk and every group gets its turn. Also
/// the most groups (queue, job, priority) a claim of a node serving some
/// queues walks per tenant to learn when their next task is due: past
/// them, the earliest it saw (the worker polls in any case, so a tenant
/// with more groups can only make its own delayed tasks start late, by
/// [`crate::worker::POLL_FALLBACK`] at most). 256.
pub const MAX_WALK: usize = 256;

/// The most queues and the most jobs a tenant may set limits on (each).
pub const MAX_LIMITED: usize = 1_000;

/// A queue's limits (the body of `PUT /v1/limits/queues/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueLimits {
    /// Most of the queue's tasks started at once, across every node; 0
    /// pauses the queue. None: only the tenant's `max_running` bounds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub max_running: Option<u32>,
    /// The queue's due tasks are claimed before those of the tenant's
    /// queues of a lower priority. Default 0 (also every queue's without
    /// limits).
    #[serde(default)]
    pub priority: i32,
}

/// A job's limits (the body of `PUT /v1/limits/jobs/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobLimits {
    /// Most of the job's tasks started at once, across every node; 0 holds
    /// them all. None: no bound but the tenant's and the queue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub max_concurrency: Option<u32>,
    /// Most of the job's tasks started per period, across every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// Tasks started per period: `tasks` at once after a quiet period, then
/// `tasks` per `per_ms`, evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// At least 1, at most 1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub tasks: u32,
    /// The period in ms: at least 1, at most 366 days.
    #[schema(minimum = 1, maximum = 31_622_400_000_u64)]
    pub per_ms: u64,
}

/// Limits out of their bounds, or too many of them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("`{field}` must be at most {MAX_LIMIT}, not {value}")]
    TooLarge { field: &'static str, value: u64 },
    #[error("`rate.tasks` must be at least 1")]
    NoTasks,
    #[error("`rate.per_ms` must be between 1 and {MAX_PERIOD_MS} (366 days), not {0}")]
    Period(u64),
    #[error("at most {MAX_LIMITED} {0} may have limits")]
    TooMany(&'static str),
}

impl QueueLimits {
    pub fn check(&self) -> Result<(), LimitError> {
        bounded("max_running", self.max_running)
    }
}

impl JobLimits {
    pub fn check(&self) -> Result<(), LimitError> {
        bounded("max_concurrency", self.max_concurrency)?;
        if let Some(rate) = self.rate {
            rate.check()?;
        }
        Ok(())
    }
}

impl Rate {
    pub fn check(&self) -> Result<(), LimitError> {
        if self.tasks == 0 {
            return Err(LimitError::NoTasks);
        }
        bounded("rate.tasks", Some(self.tasks))?;
        if !(1..=MAX_PERIOD_MS).contains(&self.per_ms) {
            return Err(LimitError::Period(self.per_ms));
        }
        Ok(())
    }

    /// The tokens in a bucket that held `tokens` at `refilled_at`, at `now`
    /// (a clock behind `refilled_at`, another node's, adds none).
    pub fn tokens(&self, tokens: f64, refilled_at: Millis, now: Millis) -> f64 {
        let elapsed = now.saturating_sub(refilled_at).max(0) as f64;
        (tokens + elapsed * f64::from(self.tasks) / self.per_ms as f64).min(f64::from(self.tasks))
    }

    /// The whole tokens of `tokens` (a hair short of one counts: the
    /// refill's floating point must not hold a start back a period).
    pub fn whole(tokens: f64) -> u64 {
        (tokens + 1e-9).floor().max(0.0) as u64
    }

    /// When a bucket holding `tokens` at `now` holds one more whole token.
    pub fn next_token_at(&self, tokens: f64, now: Millis) -> Millis {
        let missing = (Self::whole(tokens) + 1) as f64 - tokens;
        let wait = (missing * self.per_ms as f64 / f64::from(self.tasks)).ceil().max(1.0);
        now.saturating_add(wait.min(MAX_PERIOD_MS as f64) as i64)
    }
}

fn bounded(field: &'static str, value: Option<u32>) -> Result<(), LimitError> {
    match value {
        Some(v) if v > MAX_LIMIT => Err(LimitError::TooLarge { field, value: u64::from(v) }),
        _ => Ok(()),
    }
}

/// A due task at the head of its group, as the grouped claim saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub id: i64,
    pub job: String,
    pub queue: String,
    /// Its queue's priority.
    pub rank: i32,
    pub priority: i32,
    pub run_at: Millis,
}

/// The room each limit leaves in one claim (a name absent: no limit).
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    pub jobs: std::collections::HashMap<String, u64>,
    pub queues: std::collections::HashMap<String, u64>,
}

impl Rooms {
    /// How many of group (`queue`, `job`) one claim of `want` may take.
    pub fn of(&self, queue: &str, job: &str, want: u64) -> u64 {
        want.min(self.jobs.get(job).copied().unwrap_or(u64::MAX))
            .min(self.queues.get(queue).copied().unwrap_or(u64::MAX))
    }

    fn take(&mut self, head: &Head) -> bool {
        if self.of(&head.queue, &head.job, 1) == 0 {
            return false;
        }
        for room in [self.jobs.get_mut(&head.job), self.queues.get_mut(&head.queue)].into_iter().flatten() {
            *room -= 1;
        }
        true
    }
}

/// Takes up to `want` of `heads`, in claim order (queue priority, task
/// priority, due time, id), each while its job and queue have room; answers
/// those taken and those left.
pub(crate) fn pick(mut heads: Vec<Head>, rooms: &mut Rooms, want: u64) -> (Vec<Head>, Vec<Head>) {
    heads.sort_by(|a, b| (b.rank, b.priority).cmp(&(a.rank, a.priority)).then((a.run_at, a.id).cmp(&(b.run_at, b.id))));
    let (mut picked, mut left) = (Vec::new(), Vec::new());
    for head in heads {
        if (picked.len() as u64) < want && rooms.take(&head) {
            picked.push(head);
        } else {
            left.push(head);
        }
    }
    (picked, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: i64, job: &str, queue: &str, rank: i32) -> Head {
        Head { id, job: job.into(), queue: queue.into(), rank, priority: 0, run_at: id }
    }

    #[test]
    fn a_queue_of_higher_priority_goes_first_and_every_limit_holds() {
        let heads = vec![
            head(1, "a", "low", 0),
            head(2, "a", "low", 0),
            head(3, "b", "high", 5),
            head(4, "b", "high", 5),
            head(5, "c", "high", 5),
        ];
        let mut rooms = Rooms::default();
        rooms.jobs.insert("b".into(), 1);
        rooms.queues.insert("low".into(), 1);
        let (picked, left) = pick(heads, &mut rooms, 10);
        let ids = |heads: Vec<Head>| heads.iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!((ids(picked), ids(left)), (vec![3, 5, 1], vec![4, 2]));
        assert_eq!((rooms.jobs["b"], rooms.queues["low"]), (0, 0));
    }

    #[test]
    fn a_claim_takes_no_more_than_it_wants() {
        let heads = (1..=5).map(|i| head(i, "a", "q", 0)).collect();
        assert_eq!(pick(heads, &mut Rooms::default(), 2).0.len(), 2);
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let rate = Rate { tasks: 3, per_ms: 1_000 };
        assert_eq!(Rate::whole(rate.tokens(0.0, 0, 333)), 0);
        assert_eq!(Rate::whole(rate.tokens(0.0, 0, 334)), 1);
        assert_eq!(Rate::whole(rate.tokens(0.0, 0, 1_000)), 3);
        assert_eq!(rate.tokens(0.0, 0, i64::MAX), 3.0);
        // A clock behind the last refill adds nothing, and wraps nothing.
        assert_eq!(rate.tokens(1.0, i64::MAX, i64::MIN), 1.0);
        assert_eq!(rate.next_token_at(0.0, 0), 334);
        assert_eq!(rate.next_token_at(1.5, 0), 167);
        let slow = Rate { tasks: 1, per_ms: MAX_PERIOD_MS };
        assert_eq!(slow.next_token_at(0.0, i64::MAX), i64::MAX);
    }

    #[test]
    fn limits_out_of_bounds_are_refused() {
        let rate = |tasks, per_ms| JobLimits { max_concurrency: None, rate: Some(Rate { tasks, per_ms }) };
        assert_eq!(rate(0, 1).check(), Err(LimitError::NoTasks));
        assert_eq!(rate(1, 0).check(), Err(LimitError::Period(0)));
        assert_eq!(rate(1, MAX_PERIOD_MS + 1).check(), Err(LimitError::Period(MAX_PERIOD_MS + 1)));
        assert!(rate(MAX_LIMIT + 1, 1).check().is_err());
        assert!(rate(MAX_LIMIT, MAX_PERIOD_MS).check().is_ok());
        let queue = QueueLimits { max_running: Some(u32::MAX), priority: i32::MIN };
        assert!(matches!(queue.check(), Err(LimitError::TooLarge { field: "max_running", .. })));
    }
}
