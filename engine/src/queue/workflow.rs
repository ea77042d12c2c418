//! Starting a workflow ([`crate::workflow`]): every step checked and
//! prepared as a task queued alone would be, then all written at once, or
//! none.
//!
//! What a step may not be, refused before anything is written (422 naming
//! the step as `stages[i][j]`): a task of a job that forbids overlap, or
//! unique by args (a step waiting for its stage would hold the key of a
//! task that may never run); delayed, timed or expiring in a stage after
//! the first (it runs when the stage before it succeeded); holding args
//! under [`PREVIOUS`] in a stage after the first (where the results go).

use super::{Parent, Queue, QueueFailure};
use crate::store::{HELD_RUN_AT, InsertedWorkflow, NewTask};
use crate::task::QueueError;
use crate::wire::{Event, EventKind};
use crate::workflow::{PREVIOUS, Step};

impl Queue {
    /// Starts a workflow of `tenant` whose stages run these steps; answers
    /// its id and its steps' task ids, stage by stage. The tenant's
    /// `max_queued` and queueing rate count every step at once.
    pub async fn start_workflow(&self, tenant: &str, stages: &[Vec<Step>]) -> Result<InsertedWorkflow, QueueFailure> {
        self.start_workflow_of(tenant, stages, None).await
    }

    /// [`Queue::start_workflow`], by a running task's attempt (`parent`):
    /// every step is its child (the tree's caps count them), and the first
    /// stage waits for the attempt to succeed, as a child does.
    pub(crate) async fn start_workflow_of(
        &self,
        tenant: &str,
        stages: &[Vec<Step>],
        parent: Option<&Parent>,
    ) -> Result<InsertedWorkflow, QueueFailure> {
        crate::workflow::check_shape(stages)?;
        let steps: usize = stages.iter().map(Vec::len).sum();
        let mut prepared = Vec::with_capacity(stages.len());
        for (stage, requests) in stages.iter().enumerate() {
            let mut tasks = Vec::with_capacity(requests.len());
            for (position, step) in requests.iter().enumerate() {
                let task = self.prepare_step(tenant, stage, step, parent).await.map_err(|e| match e {
                    QueueFailure::Rejected(e) => located(e, &format!("stages[{stage}][{position}]")).into(),
                    store => store,
                })?;
                tasks.push(task);
            }
            prepared.push(tasks);
        }
        let jobs: Vec<String> = prepared.iter().flatten().map(|t| t.job.clone()).collect();
        let n = steps as u64;
        let tokens = self.admit(tenant, n).await?;
        if let Some(parent) = parent
            && let Err(e) = self.admit_children(tenant, parent, n).await
        {
            self.tenants.claimed(tenant, n);
            return Err(e);
        }
        let refusal = tokens.refusal().to_string();
        let now = self.clock.now_millis();
        let Some(inserted) = self.store.insert_workflow(tenant, prepared, tokens, now).await? else {
            self.tenants.claimed(tenant, n);
            if let Some(parent) = parent {
                self.store.shrink_tree(&parent.root, n).await?;
            }
            return Err(QueueError::QuotaExceeded(refusal).into());
        };
        let queued = inserted
            .stages
            .iter()
            .flatten()
            .zip(&jobs)
            .map(|(id, job)| (tenant.to_owned(), Event::task(EventKind::TaskQueued, now, id, job)));
        self.signals.events.emit_all(queued);
        self.signals.queued.notify_one();
        Ok(inserted)
    }

    /// The task of step `step` of stage `stage`, held if after the first
    /// (for its stage, not for `parent`: only the first stage waits for
    /// the parent's attempt).
    async fn prepare_step(
        &self,
        tenant: &str,
        stage: usize,
        step: &Step,
        parent: Option<&Parent>,
    ) -> Result<NewTask, QueueFailure> {
        let options = &step.options;
        if options.unique_for.is_some() {
            return Err(QueueError::invalid_option("unique_for", "a workflow's steps cannot be unique").into());
        }
        if stage > 0 {
            let timed = [
                ("delay", options.delay.is_some()),
                ("run_at", options.run_at.is_some()),
                ("expiry", options.expiry.is_some()),
            ];
            if let Some((field, _)) = timed.into_iter().find(|(_, set)| *set) {
                let message = "a step after the first stage runs when the stage before it succeeded";
                return Err(QueueError::invalid_option(field, message).into());
            }
            // Sized before it is read (`prepare` checks the rest).
            crate::runtime::check_args(&step.args, self.runtime.limits().max_args_bytes)?;
            let args: serde_json::Value = serde_json::from_str(&step.args).unwrap_or_default();
            if args.get(PREVIOUS).is_some() {
                let message = format!("`{PREVIOUS}` is where a later step gets the results of the stage before it");
                return Err(QueueError::InvalidArgs(message).into());
            }
        }
        // Refused before `prepare` asks the job for an overlap key.
        if let Some(registered) = self.registry.get(tenant, &step.job)
            && registered.component.metadata().overlap != crate::job::Overlap::Allow
        {
            let message = format!("job `{}` forbids overlap: it cannot be a workflow's step", step.job);
            return Err(QueueError::invalid_option("job", message).into());
        }
        let mut task = self.prepare(tenant, &step.job, &step.args, options, parent).await?;
        if stage > 0 {
            task.run_at = HELD_RUN_AT;
            task.expires_at = None;
            task.pending = None;
        }
        Ok(task)
    }
}

/// `e`, saying which step it is of.
fn located(e: QueueError, step: &str) -> QueueError {
    match e {
        QueueError::InvalidOption { field, message } => {
            let field = if field == "job" { format!("{step}.job") } else { format!("{step}.options.{field}") };
            QueueError::InvalidOption { field, message }
        }
        QueueError::InvalidArgs(why) => QueueError::InvalidArgs(format!("{step}: {why}")),
        other => other,
    }
}
