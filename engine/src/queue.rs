//! Queueing tasks and waiting for them: the one door through which clients,
//! jobs (`queue-task`) and the scheduler put tasks in the store.
//!
//! [`Queue::queue`] resolves the job (unknown jobs are an error), checks the
//! args, derives the overlap key (static, or from the job's `overlap-key`
//! export), applies the options' defaults from the job's metadata and the
//! caps on task trees, admits the tasks within the tenant's quotas,
//! inserts, and wakes the workers. The scheduler's ticks come in through
//! [`Queue::write_ticks`]. [`Queue::wait`] waits for a task to finish
//! without polling: endings on any node wake their waiters
//! ([`Signals::finished`]). [`Queue::revoke`] revokes a task wherever it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::clock::Clock;
use crate::job::Overlap;
use crate::registry::Registry;
use crate::runtime::{BoxFuture, ChildQueue, ChildRequest, Runtime, check_args};
use crate::signals::Signals;
use crate::store::{
    HELD_RUN_AT, Inserted, Millis, NewTask, Pending, Retried, RevokeScope, RevokedMany, ScheduleTick, Store,
    StoreError, TaskFilter, TaskRecord, TaskState, TickWrite, Tokens,
};
use crate::task::{QueueError, QueueOptions, TaskId};
use crate::tenant::{AdmitError, Tenants};
use crate::wire::{Event, EventKind};
use crate::workflow::Step;

mod held;
mod workflow;
use held::Prepared;

/// Caps on what jobs may queue, against fork bombs.
#[derive(Debug, Clone, Copy)]
pub struct TreeCaps {
    /// Deepest a task tree may grow: a task queued from outside has depth
    /// 0, its children 1... Default 16.
    pub max_depth: u32,
    /// Most tasks one task (one attempt) may queue. Default 1,000.
    pub max_children: u32,
    /// Most tasks in one tree (a task queued from outside, and every task
    /// queued from it, from them...), counted on its root. Default 10,000:
    /// with the depth and children caps alone, a tree could hold 1000^16.
    pub max_tree: u64,
}

impl TreeCaps {
    /// How many tasks a task queued from outside (`root`) may queue itself,
    /// and what it is told past that, exactly as the queue enforces it
    /// (`wasmjob run` applies the same).
    pub fn for_root(&self, root: &str) -> (u64, QueueError) {
        let tree = self.max_tree.saturating_sub(1);
        if u64::from(self.max_children) <= tree {
            (u64::from(self.max_children), children_cap(self.max_children))
        } else {
            (tree, tree_cap(root, self.max_tree))
        }
    }
}

/// Past the per-task children cap.
fn children_cap(max: u32) -> QueueError {
    QueueError::QuotaExceeded(format!("a task may queue at most {max} children"))
}

/// Past the tree cap.
fn tree_cap(root: &str, max: u64) -> QueueError {
    QueueError::QuotaExceeded(format!("the tree of task {root} may hold at most {max} tasks"))
}

impl Default for TreeCaps {
    fn default() -> Self {
        Self { max_depth: 16, max_children: 1000, max_tree: 10_000 }
    }
}

/// How often a waiter re-reads its task even if not woken: the fallback for
/// a notification of its ending that was lost. Default 2 s.
const WAIT_RECHECK: Duration = Duration::from_secs(2);

/// How long a revoke of a running task waits for the task to stop before
/// answering `revoking`. Default 5 s: the node running it is told at once,
/// or at its next heartbeat ([`crate::worker::HEARTBEAT`]).
pub const REVOKE_WAIT: Duration = Duration::from_secs(5);

/// What a revoke request found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Revoked {
    /// The task is in this state now (`revoked`, or the state it had already
    /// ended in).
    Ended(TaskState),
    /// The task is running, and the node running it has been asked to stop
    /// it; it will end `revoked` (or in the state its run reaches first).
    Revoking,
}

/// The task that queues another, for `from_task` and the tree caps.
#[derive(Debug, Clone)]
pub struct Parent {
    pub id: TaskId,
    pub root: TaskId,
    pub depth: u32,
    /// The attempt that queues: its children wait for it to succeed.
    pub attempt: u32,
    /// Its queue: its children's unless they name one.
    pub queue: String,
}

/// Why a request queued nothing: an answer for the caller, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueFailure {
    #[error(transparent)]
    Rejected(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The front door of the task queue.
pub struct Queue {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    runtime: Arc<Runtime>,
    clock: Arc<dyn Clock>,
    caps: TreeCaps,
    tenants: Arc<Tenants>,
    signals: Arc<Signals>,
    /// Versions (with their tenant) whose held tasks this node is settling.
    settling: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Queue {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        runtime: Arc<Runtime>,
        clock: Arc<dyn Clock>,
        caps: TreeCaps,
        tenants: Arc<Tenants>,
        signals: Arc<Signals>,
    ) -> Self {
        Self { store, registry, runtime, clock, caps, tenants, signals, settling: Default::default() }
    }

    /// The caps on task trees.
    pub fn caps(&self) -> TreeCaps {
        self.caps
    }

    /// Queues a task of `tenant`'s `job` with `args` (a JSON object). Returns
    /// its id, or [`QueueError::Duplicate`] with the id of the task it would
    /// overlap.
    pub async fn queue(
        &self,
        tenant: &str,
        job: &str,
        args: &str,
        options: &QueueOptions,
        parent: Option<&Parent>,
    ) -> Result<TaskId, QueueFailure> {
        let task = self.prepare_or_hold(tenant, job, args, options, parent).await?;
        let tokens = self.admit(tenant, 1).await?;
        if let Some(parent) = parent
            && let Err(e) = self.admit_children(tenant, parent, 1).await
        {
            self.tenants.claimed(tenant, 1);
            return Err(e);
        }
        let inserted = match task {
            Prepared::Task(task) => self.store.insert_tasks(vec![task], Some(tokens.clone())).await?,
            Prepared::Held(task, options) => match self.take(&tokens).await? {
                true => Some(vec![Inserted::Task(self.insert_held(task, options).await?)]),
                false => None,
            },
        };
        let Some(inserted) = inserted.and_then(|mut i| i.pop()) else {
            // Too few tokens: nothing was queued.
            self.tenants.claimed(tenant, 1);
            if let Some(parent) = parent {
                self.store.shrink_tree(&parent.root, 1).await?;
            }
            return Err(QueueError::QuotaExceeded(tokens.refusal().to_string()).into());
        };
        if matches!(inserted, Inserted::Duplicate(_)) {
            // Nothing was queued: give back what the door and the tree counted.
            self.tenants.claimed(tenant, 1);
            if let Some(parent) = parent {
                self.store.shrink_tree(&parent.root, 1).await?;
            }
        }
        let id = answer(inserted)?;
        // Announced before the workers wake, so that its start comes after.
        self.emit(tenant, EventKind::TaskQueued, &id, &job.to_ascii_lowercase());
        self.signals.queued.notify_one();
        Ok(id)
    }

    /// Emits an event of task `id` of `tenant`'s `job`.
    fn emit(&self, tenant: &str, kind: EventKind, id: &str, job: &str) {
        if self.signals.events.active() {
            self.signals.events.emit(tenant, Event::task(kind, self.clock.now_millis(), id, job));
        }
    }

    /// Queues many tasks of `tenant` in one write; each gets its own answer.
    pub async fn queue_many(
        &self,
        tenant: &str,
        requests: &[(String, String, QueueOptions)],
    ) -> Result<Vec<Result<TaskId, QueueError>>, StoreError> {
        let mut answers: Vec<Option<Result<TaskId, QueueError>>> = Vec::with_capacity(requests.len());
        let mut tasks = Vec::new();
        let mut held = Vec::new();
        // Jobs neither known nor compiling: asked about once per batch.
        let mut unknown = std::collections::HashSet::new();
        for (job, args, options) in requests {
            let prepared = if unknown.contains(job) {
                Err(QueueError::UnknownJob(job.clone()).into())
            } else {
                self.prepare_or_hold(tenant, job, args, options, None).await
            };
            match prepared {
                Ok(Prepared::Task(task)) => {
                    tasks.push(task);
                    answers.push(None);
                }
                Ok(Prepared::Held(task, options)) => {
                    held.push((answers.len(), task, options));
                    answers.push(None);
                }
                Err(QueueFailure::Rejected(e)) => {
                    if matches!(e, QueueError::UnknownJob(_)) {
                        unknown.insert(job.clone());
                    }
                    answers.push(Some(Err(e)));
                }
                Err(QueueFailure::Store(e)) => return Err(e),
            }
        }
        let admitted = (tasks.len() + held.len()) as u64;
        let refused = |answers: Vec<Option<Result<TaskId, QueueError>>>, e: QueueError| {
            answers.into_iter().map(|a| a.unwrap_or_else(|| Err(e.clone()))).collect()
        };
        let tokens = match self.admit(tenant, admitted).await {
            Ok(tokens) => tokens,
            Err(QueueFailure::Rejected(e)) => return Ok(refused(answers, e)),
            Err(QueueFailure::Store(e)) => return Err(e),
        };
        // Held tasks (rare) take the tokens first, apart; otherwise the
        // insert takes them.
        let tokens = if held.is_empty() {
            Some(tokens)
        } else if self.take(&tokens).await? {
            None
        } else {
            self.tenants.claimed(tenant, admitted);
            return Ok(refused(answers, QueueError::QuotaExceeded(tokens.refusal().to_string())));
        };
        for (i, task, options) in held {
            answers[i] = Some(Ok(self.insert_held(task, options).await?));
        }
        let refusal = tokens.as_ref().map(|t| t.refusal());
        let Some(inserted) = self.store.insert_tasks(tasks, tokens).await? else {
            self.tenants.claimed(tenant, admitted);
            let e = QueueError::QuotaExceeded(refusal.expect("only tokens refuse").to_string());
            return Ok(refused(answers, e));
        };
        let duplicates = inserted.iter().filter(|i| matches!(i, Inserted::Duplicate(_))).count();
        self.tenants.claimed(tenant, duplicates as u64);
        let mut inserted = inserted.into_iter();
        let answers: Vec<_> = answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| answer(inserted.next().expect("one answer per insert"))))
            .collect();
        let now = self.clock.now_millis();
        let queued = answers.iter().zip(requests).filter_map(|(answer, (job, ..))| {
            let event = Event::task(EventKind::TaskQueued, now, answer.as_ref().ok()?, &job.to_ascii_lowercase());
            Some((tenant.to_owned(), event))
        });
        self.signals.events.emit_all(queued);
        self.signals.queued.notify_one();
        Ok(answers)
    }

    /// `n` children of `parent`: within the tenant's children rate and its
    /// tree's cap.
    async fn admit_children(&self, tenant: &str, parent: &Parent, n: u64) -> Result<(), QueueFailure> {
        match self.tenants.admit_children(tenant, n).await {
            Ok(()) => {}
            Err(AdmitError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(QueueError::QuotaExceeded(e.to_string()).into()),
        }
        if !self.store.grow_tree(&parent.root, n, self.caps.max_tree).await? {
            return Err(tree_cap(&parent.root, self.caps.max_tree).into());
        }
        Ok(())
    }

    /// Admits `n` tasks of `tenant` within `max_queued`; answers the tokens
    /// their insert takes.
    async fn admit(&self, tenant: &str, n: u64) -> Result<Tokens, QueueFailure> {
        match self.tenants.admit(tenant, n).await {
            Ok(tokens) => Ok(tokens),
            Err(AdmitError::Store(e)) => Err(e.into()),
            Err(e) => Err(QueueError::QuotaExceeded(e.to_string()).into()),
        }
    }

    /// Takes `tokens` alone, for tasks not inserted by [`Store::insert_tasks`].
    async fn take(&self, tokens: &Tokens) -> Result<bool, StoreError> {
        let Tokens { bucket, n, rate, burst, now } = tokens;
        self.store.take_tokens(bucket, *n, *rate, *burst, *now).await
    }

    /// Writes the scheduler's ticks, each with the task it queues (built by
    /// [`Queue::prepare`]), and wakes the workers.
    pub(crate) async fn write_ticks(&self, ticks: Vec<ScheduleTick>) -> Result<Vec<TickWrite>, StoreError> {
        let owners: Vec<(String, String)> = ticks.iter().map(|t| (t.tenant.clone(), t.job.clone())).collect();
        let written = self.store.write_ticks(ticks).await?;
        let now = self.clock.now_millis();
        let queued = written.iter().zip(owners).filter_map(|(write, (tenant, job))| match write {
            TickWrite::Written(Some(Inserted::Task(id))) => {
                Some((tenant, Event::task(EventKind::TaskQueued, now, id, &job)))
            }
            _ => None,
        });
        self.signals.events.emit_all(queued);
        if written.iter().any(|w| matches!(w, TickWrite::Written(Some(Inserted::Task(_))))) {
            self.signals.queued.notify_one();
        }
        Ok(written)
    }

    /// Builds the row of a task, with every default applied.
    pub(crate) async fn prepare(
        &self,
        tenant: &str,
        job: &str,
        args: &str,
        options: &QueueOptions,
        parent: Option<&Parent>,
    ) -> Result<NewTask, QueueFailure> {
        // A name that cannot be a job's is unknown; it is echoed bounded and escaped.
        if crate::job::validate_name(job).is_err() {
            let shown: String = job.chars().take(crate::job::MAX_NAME_LEN).collect();
            return Err(QueueError::UnknownJob(shown.escape_default().to_string()).into());
        }
        let registered = self.registry.get(tenant, job).ok_or_else(|| QueueError::UnknownJob(job.to_owned()))?;
        let component = registered.component;
        let metadata = component.metadata();
        let depth = self.check_request(args, parent)?;
        let overlap_key = match metadata.overlap {
            Overlap::Allow => None,
            Overlap::Forbid => Some(String::new()),
            Overlap::ByArgs => {
                self.runtime.overlap_key(&component, args).await.map_err(|e| QueueError::InvalidArgs(e.to_string()))?
            }
        };
        let now = self.clock.now_millis();
        // Expiry counts from when the task could first start.
        let (run_at, expires_at) = options.times(now, metadata.expiry)?;
        // A child waits for its parent's attempt, its times counted from then.
        let pending = parent.map(|p| Pending {
            parent: p.id.clone(),
            attempt: p.attempt,
            delay: run_at.saturating_sub(now),
            expiry: expires_at.map(|at| at.saturating_sub(run_at)),
        });
        let (run_at, expires_at) = match pending {
            Some(_) => (HELD_RUN_AT, None),
            None => (run_at, expires_at),
        };
        Ok(NewTask {
            tenant: tenant.to_owned(),
            job: metadata.name.clone(),
            version: component.hash().to_owned(),
            args: args.to_owned(),
            priority: options.priority.unwrap_or(0),
            run_at,
            expires_at,
            max_retries: options.max_retries.unwrap_or(metadata.retry.max_retries),
            overlap_key,
            from_task: parent.map(|p| p.id.clone()),
            root_task: parent.map(|p| p.root.clone()),
            depth,
            queued_at: now,
            unique: options.unique_for.map(|period| crate::store::Unique {
                key: unique_key(args),
                until: now.saturating_add(i64::try_from(period.as_millis()).unwrap_or(i64::MAX)),
            }),
            pending,
            queue: queue_of(options, parent),
        })
    }

    /// Puts `tenant`'s failed or revoked task `id` back in line for one more
    /// attempt, by hand (its tenant's `max_queued` and queueing rate apply
    /// as to a new task).
    pub async fn retry(&self, tenant: &str, id: &str) -> Result<Retried, QueueFailure> {
        let tokens = self.admit(tenant, 1).await?;
        if !self.take(&tokens).await? {
            self.tenants.claimed(tenant, 1);
            return Err(QueueError::QuotaExceeded(tokens.refusal().to_string()).into());
        }
        let retried = self.store.retry(id, self.clock.now_millis()).await?;
        if retried == Retried::Queued {
            // Its job, for the event: read only while someone watches, and
            // a failed read loses the event, not the answer.
            if self.signals.events.active()
                && let Ok(Some(task)) = self.store.task(id).await
            {
                self.emit(tenant, EventKind::TaskQueued, id, &task.job);
            }
            self.signals.queued.notify_one();
        } else {
            self.tenants.claimed(tenant, 1);
        }
        Ok(retried)
    }

    /// Checks what a request may be refused for whatever its job: its args'
    /// size, and its depth under `parent`, which it answers.
    fn check_request(&self, args: &str, parent: Option<&Parent>) -> Result<u32, QueueError> {
        check_args(args, self.runtime.limits().max_args_bytes)?;
        let depth = parent.map_or(0, |p| p.depth + 1);
        if depth > self.caps.max_depth {
            return Err(QueueError::DepthExceeded(self.caps.max_depth));
        }
        Ok(depth)
    }

    /// Waits until task `id` reaches a terminal state, or `timeout` passes;
    /// returns the task as it then is (`None` if there is no such task).
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<TaskRecord>, StoreError> {
        let waited = self.wait_registered(id, timeout).await;
        self.signals.forget(id);
        waited
    }

    async fn wait_registered(&self, id: &str, timeout: Duration) -> Result<Option<TaskRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register before reading, so an ending in between still wakes us.
            let woken = self.signals.on_finish(id);
            let task = self.store.task(id).await?;
            match &task {
                Some(t) if !t.state.is_terminal() => {}
                _ => return Ok(task),
            }
            // Endings on any node wake us; the bound on each wait is the
            // fallback for a lost notification.
            let bound = deadline.min(tokio::time::Instant::now() + WAIT_RECHECK);
            if tokio::time::timeout_at(bound, woken).await.is_err() && bound == deadline {
                return self.store.task(id).await;
            }
        }
    }

    /// Revokes a task: one that has not started never will; a running one is
    /// stopped by whichever node runs it, and this waits up to
    /// [`REVOKE_WAIT`] for it to end. `None` if there is no such task.
    pub async fn revoke(&self, id: &str) -> Result<Option<Revoked>, StoreError> {
        // Whose, and whether it waits: a waiting task revoked gives its
        // tenant's `max_queued` place back at once, not at the next recount.
        let before = self.store.task(id).await?;
        let state = self.store.revoke(id, self.clock.now_millis()).await?;
        if let Some(task) = before
            && matches!(task.state, TaskState::Queued | TaskState::Retry)
            && state == Some(TaskState::Revoked)
        {
            self.tenants.claimed(&task.tenant, 1);
            self.signals.events.emit(&task.tenant, revoked(self.clock.now_millis(), id, Some(&task.job)));
        }
        match state {
            None => Ok(None),
            Some(TaskState::Started) => {
                // If it runs here, stop it now; elsewhere the store told its node.
                self.signals.stop(id.to_owned());
                Ok(match self.wait(id, REVOKE_WAIT).await? {
                    Some(task) if task.state.is_terminal() => Some(Revoked::Ended(task.state)),
                    Some(_) => Some(Revoked::Revoking),
                    None => None,
                })
            }
            Some(state) => {
                if state == TaskState::Revoked {
                    self.signals.finished(&[id.to_owned()]);
                }
                Ok(Some(Revoked::Ended(state)))
            }
        }
    }

    /// Revokes every task of `scope` that has not ended: queued ones at
    /// once, running ones where they run. Says which.
    pub async fn revoke_many(&self, scope: RevokeScope) -> Result<RevokedMany, StoreError> {
        let tenant = match &scope {
            RevokeScope::Tree { tenant, .. } | RevokeScope::Job { tenant, .. } => tenant.clone(),
        };
        let job = match &scope {
            RevokeScope::Job { job, .. } => Some(job.clone()),
            RevokeScope::Tree { .. } => None,
        };
        let done = self.store.revoke_many(scope, self.clock.now_millis()).await?;
        let now = self.clock.now_millis();
        let events = done.revoked.iter().map(|id| (tenant.clone(), revoked(now, id, job.as_deref())));
        self.signals.events.emit_all(events);
        // Those revoked at once were waiting: their places are free now.
        self.tenants.claimed(&tenant, done.revoked.len() as u64);
        for id in &done.stopping {
            self.signals.stop(id.clone());
        }
        self.signals.finished(&done.revoked);
        Ok(done)
    }

    /// One task.
    pub async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.store.task(id).await
    }

    /// Tasks matching `filter`, newest first.
    pub async fn list(&self, filter: TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.store.list_tasks(filter).await
    }

    /// A [`ChildQueue`] for a running task: its `queue-task` calls land here.
    pub(crate) fn children_of(self: &Arc<Self>, tenant: String, parent: Parent) -> Arc<Children> {
        Arc::new(Children { queue: self.clone(), tenant, parent, queued: AtomicU32::new(0) })
    }
}

/// The queue a task goes to: the one its request names, else its
/// parent's (a job's children stay in its queue, on the nodes set apart for
/// it), else [`crate::task::DEFAULT_QUEUE`].
pub(crate) fn queue_of(options: &QueueOptions, parent: Option<&Parent>) -> String {
    match (&options.queue, parent) {
        (Some(queue), _) => queue.clone(),
        (None, Some(parent)) => parent.queue.clone(),
        (None, None) => crate::task::DEFAULT_QUEUE.to_owned(),
    }
}

/// What an insert means to the caller.
fn answer(inserted: Inserted) -> Result<TaskId, QueueError> {
    match inserted {
        Inserted::Task(id) => Ok(id),
        Inserted::Duplicate(id) => Err(QueueError::Duplicate(id)),
    }
}

/// Where a running task's `queue-task` calls go, with its children cap.
pub(crate) struct Children {
    queue: Arc<Queue>,
    /// A job's children stay in its tenant.
    tenant: String,
    parent: Parent,
    queued: AtomicU32,
}

impl Children {
    /// Whether the attempt has queued children (which wait for its end).
    pub(crate) fn any(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > 0
    }
}

impl ChildQueue for Children {
    fn queue_child(&self, child: ChildRequest) -> BoxFuture<'_, anyhow::Result<Result<TaskId, QueueError>>> {
        Box::pin(async move {
            let max = self.queue.caps.max_children;
            if self.queued.fetch_add(1, Ordering::Relaxed) >= max {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Ok(Err(children_cap(max)));
            }
            match self.queue.queue(&self.tenant, &child.job, &child.args, &child.options, Some(&self.parent)).await {
                Ok(id) => Ok(Ok(id)),
                Err(QueueFailure::Rejected(e)) => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    Ok(Err(e))
                }
                Err(QueueFailure::Store(e)) => Err(e.into()),
            }
        })
    }

    fn start_workflow(&self, stages: Vec<Vec<Step>>) -> BoxFuture<'_, anyhow::Result<Result<String, QueueError>>> {
        Box::pin(async move {
            // Every step is a child: the cap counts them all (a workflow
            // too big for the cap is refused before it is counted).
            let max = self.queue.caps.max_children;
            let steps: usize = stages.iter().map(Vec::len).sum();
            let n = u32::try_from(steps).unwrap_or(u32::MAX);
            if self.queued.fetch_add(n, Ordering::Relaxed).saturating_add(n) > max {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                return Ok(Err(children_cap(max)));
            }
            match self.queue.start_workflow_of(&self.tenant, &stages, Some(&self.parent)).await {
                Ok(started) => Ok(Ok(started.id)),
                Err(QueueFailure::Rejected(e)) => {
                    self.queued.fetch_sub(n, Ordering::Relaxed);
                    Ok(Err(e))
                }
                Err(QueueFailure::Store(e)) => Err(e.into()),
            }
        })
    }
}

/// The event of task `id` (of `job`, if known) revoked before it started.
fn revoked(at: Millis, id: &str, job: Option<&str>) -> Event {
    Event {
        task: Some(id.to_owned()),
        job: job.map(str::to_owned),
        ..Event::job(EventKind::TaskRevoked, at, None, None)
    }
    .reason("revoked")
}

/// The key of a unique task: the SHA-256 of its args as canonical JSON
/// (keys sorted, no spacing), so that the same args written otherwise are
/// the same; args that are not JSON (refused before this) as they are.
fn unique_key(args: &str) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::from_str::<serde_json::Value>(args).map_or_else(|_| args.to_owned(), |v| v.to_string());
    hex::encode(Sha256::digest(canonical.as_bytes()))
}
