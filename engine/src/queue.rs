//! Queueing tasks and waiting for them: the one door through which clients,
//! jobs (`queue-task`) and the scheduler put tasks in the store.
//!
//! [`Queue::queue`] resolves the job (unknown jobs are an error), checks the
//! args, derives the overlap key (static, or from the job's `overlap-key`
//! export), applies the options' defaults from the job's metadata and the
//! caps on task trees, inserts, and wakes the workers. [`Queue::wait`] waits
//! for a task to finish without polling: completions wake their waiters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::clock::Clock;
use crate::job::Overlap;
use crate::registry::Registry;
use crate::runtime::{BoxFuture, ChildQueue, ChildRequest, Runtime, check_args};
use crate::store::{Inserted, NewTask, Store, StoreError, TaskRecord, TaskState, to_millis};
use crate::task::{QueueError, QueueOptions, TaskId};
use crate::tenant::Tenants;

/// Caps on what jobs may queue, against fork bombs.
#[derive(Debug, Clone, Copy)]
pub struct TreeCaps {
    /// Deepest a task tree may grow: a task queued from outside has depth
    /// 0, its children 1... Default 16.
    pub max_depth: u32,
    /// Most tasks one task (one attempt) may queue. Default 1,000.
    pub max_children: u32,
}

impl Default for TreeCaps {
    fn default() -> Self {
        Self { max_depth: 16, max_children: 1000 }
    }
}

/// How often a waiter re-reads its task even if not woken: the fallback for
/// tasks that another process finishes. Default 250 ms.
const WAIT_RECHECK: Duration = Duration::from_millis(250);

/// The task that queues another, for `from_task` and the tree caps.
#[derive(Debug, Clone)]
pub struct Parent {
    pub id: TaskId,
    pub root: TaskId,
    pub depth: u32,
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
    pub(crate) tenants: Arc<Tenants>,
    /// This node's task counters.
    pub metrics: crate::metrics::Metrics,
    /// Wakes the workers when tasks are queued.
    pub(crate) wake: Arc<Notify>,
    waiters: Waiters,
    /// Stops running tasks that are revoked.
    running: Mutex<HashMap<TaskId, oneshot::Sender<()>>>,
}

impl Queue {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        runtime: Arc<Runtime>,
        clock: Arc<dyn Clock>,
        caps: TreeCaps,
        tenants: Arc<Tenants>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            registry,
            runtime,
            clock,
            caps,
            tenants,
            metrics: Default::default(),
            wake,
            waiters: Waiters::default(),
            running: Mutex::default(),
        }
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
        let task = self.prepare(tenant, job, args, options, parent).await?;
        self.admit(tenant, 1)?;
        let inserted = self.store.insert_tasks(vec![task]).await?.pop().expect("one insert, one answer");
        if matches!(inserted, Inserted::Duplicate(_)) {
            // Nothing was queued: give back what the door counted.
            self.tenants.claimed(tenant, 1);
        }
        let id = answer(inserted)?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Queues many tasks of `tenant` in one write; each gets its own answer.
    pub async fn queue_many(
        &self,
        tenant: &str,
        requests: &[(String, String, QueueOptions)],
    ) -> Result<Vec<Result<TaskId, QueueError>>, StoreError> {
        let mut answers: Vec<Option<Result<TaskId, QueueError>>> = Vec::with_capacity(requests.len());
        let mut tasks = Vec::new();
        for (job, args, options) in requests {
            match self.prepare(tenant, job, args, options, None).await {
                Ok(task) => {
                    tasks.push(task);
                    answers.push(None);
                }
                Err(QueueFailure::Rejected(e)) => answers.push(Some(Err(e))),
                Err(QueueFailure::Store(e)) => return Err(e),
            }
        }
        if let Err(e) = self.admit(tenant, tasks.len() as u64) {
            return Ok(answers.into_iter().map(|a| a.unwrap_or_else(|| Err(e.clone()))).collect());
        }
        let inserted = self.store.insert_tasks(tasks).await?;
        let duplicates = inserted.iter().filter(|i| matches!(i, Inserted::Duplicate(_))).count();
        self.tenants.claimed(tenant, duplicates as u64);
        let mut inserted = inserted.into_iter();
        self.wake.notify_one();
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| answer(inserted.next().expect("one answer per insert"))))
            .collect())
    }

    fn admit(&self, tenant: &str, n: u64) -> Result<(), QueueError> {
        self.tenants.admit(tenant, n).map_err(|e| QueueError::QuotaExceeded(e.to_string()))
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
        let registered = self.registry.get(tenant, job).ok_or_else(|| QueueError::UnknownJob(job.to_owned()))?;
        let component = registered.component;
        let metadata = component.metadata();
        check_args(args, self.runtime.limits().max_args_bytes)?;
        let depth = parent.map_or(0, |p| p.depth + 1);
        if depth > self.caps.max_depth {
            return Err(QueueError::DepthExceeded(self.caps.max_depth).into());
        }
        let overlap_key = match metadata.overlap {
            Overlap::Allow => None,
            Overlap::Forbid => Some(String::new()),
            Overlap::ByArgs => {
                self.runtime.overlap_key(&component, args).await.map_err(|e| QueueError::InvalidArgs(e.to_string()))?
            }
        };
        let now = self.clock.now_millis();
        let expiry = options.expiry.or(metadata.expiry);
        let run_at = now + options.delay.map_or(0, to_millis);
        Ok(NewTask {
            tenant: tenant.to_owned(),
            job: metadata.name.clone(),
            version: component.hash().to_owned(),
            args: args.to_owned(),
            priority: options.priority.unwrap_or(0),
            run_at,
            // Expiry counts from when the task could first start.
            expires_at: expiry.map(|e| run_at + to_millis(e)),
            max_retries: options.max_retries.unwrap_or(metadata.retry.max_retries),
            overlap_key,
            from_task: parent.map(|p| p.id.clone()),
            root_task: parent.map(|p| p.root.clone()),
            depth,
            queued_at: now,
        })
    }

    /// Waits until task `id` reaches a terminal state, or `timeout` passes;
    /// returns the task as it then is (`None` if there is no such task).
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<TaskRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register before reading, so a completion in between still wakes us.
            let woken = self.waiters.register(id);
            let task = self.store.task(id).await?;
            match &task {
                Some(t) if !t.state.is_terminal() => {}
                _ => return Ok(task),
            }
            // Completions in this process wake us at once; the bound on each
            // wait also catches tasks finished by another process.
            let bound = deadline.min(tokio::time::Instant::now() + WAIT_RECHECK);
            if tokio::time::timeout_at(bound, woken).await.is_err() && bound == deadline {
                return self.store.task(id).await;
            }
        }
    }

    /// Wakes whoever waits for these tasks.
    pub(crate) fn finished(&self, ids: &[TaskId]) {
        self.waiters.wake(ids);
    }

    /// Wakes every waiter (after transitions the store did not itemise).
    pub(crate) fn finished_some(&self) {
        self.waiters.wake_all();
    }

    /// Revokes a task: one that has not started never will, and a running
    /// one is stopped (on this node) and ends `revoked`. Returns the task's
    /// state afterwards (`started` while a running task is being stopped).
    pub async fn revoke(&self, id: &str) -> Result<Option<TaskState>, StoreError> {
        let state = self.store.revoke(id, self.clock.now_millis()).await?;
        if state == Some(TaskState::Started)
            && let Some(stop) = self.running.lock().unwrap().remove(id)
        {
            let _ = stop.send(());
        }
        self.waiters.wake(&[id.to_owned()]);
        Ok(state)
    }

    /// Registers a task as running here; the receiver fires if it is revoked.
    pub(crate) fn running(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.running.lock().unwrap().insert(id.to_owned(), tx);
        rx
    }

    /// Forgets a task that stopped running here.
    pub(crate) fn stopped(&self, id: &str) {
        self.running.lock().unwrap().remove(id);
    }

    /// A [`ChildQueue`] for a running task: its `queue-task` calls land here.
    pub(crate) fn children_of(self: &Arc<Self>, tenant: String, parent: Parent) -> Arc<dyn ChildQueue> {
        Arc::new(Children { queue: self.clone(), tenant, parent, queued: AtomicU32::new(0) })
    }
}

/// What an insert means to the caller.
fn answer(inserted: Inserted) -> Result<TaskId, QueueError> {
    match inserted {
        Inserted::Task(id) => Ok(id),
        Inserted::Duplicate(id) => Err(QueueError::Duplicate(id)),
    }
}

/// One-shot wake-ups by task id.
#[derive(Default)]
struct Waiters(Mutex<HashMap<TaskId, Vec<oneshot::Sender<()>>>>);

impl Waiters {
    fn register(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.0.lock().unwrap();
        let list = waiters.entry(id.to_owned()).or_default();
        list.retain(|w| !w.is_closed());
        list.push(tx);
        rx
    }

    fn wake(&self, ids: &[TaskId]) {
        let mut waiters = self.0.lock().unwrap();
        if waiters.is_empty() {
            return;
        }
        for id in ids {
            for waiter in waiters.remove(id).into_iter().flatten() {
                let _ = waiter.send(());
            }
        }
    }

    fn wake_all(&self) {
        for (_, list) in self.0.lock().unwrap().drain() {
            for waiter in list {
                let _ = waiter.send(());
            }
        }
    }
}

/// Where a running task's `queue-task` calls go, with its children cap.
struct Children {
    queue: Arc<Queue>,
    /// A job's children stay in its tenant.
    tenant: String,
    parent: Parent,
    queued: AtomicU32,
}

impl ChildQueue for Children {
    fn queue_child(&self, child: ChildRequest) -> BoxFuture<'_, anyhow::Result<Result<TaskId, QueueError>>> {
        Box::pin(async move {
            let max = self.queue.caps.max_children;
            if self.queued.fetch_add(1, Ordering::Relaxed) >= max {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Ok(Err(QueueError::QuotaExceeded(format!("a task may queue at most {max} children"))));
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
}
