//! Tasks of a job still compiling: queueing one is allowed, and the task
//! waits until the job is ready.
//!
//! An upload may declare the name of the job it holds (`POST
//! /v1/jobs?name=`); until it is compiled, a request to queue a task of
//! that name, which this node does not know yet, is *held*: written as a
//! task `queued` with reason `compiling` and never due
//! ([`crate::store::HELD_RUN_AT`]), pinned to the upload's version, with
//! the request's options kept aside. When the upload ends, the node that
//! compiled it settles every task held for it ([`Queue::settle`]): with
//! the job's metadata at hand, each gets its defaults (priority, retries,
//! expiry, overlap key) and becomes due, or fails with reason `rejected`
//! when the upload was. Only options and args bounds that need no job are
//! checked when the task is held; the rest when it is settled.

use std::sync::Arc;

use super::{Queue, QueueFailure};
use crate::job::Overlap;
use crate::runtime::JobComponent;
use crate::store::{HELD_RUN_AT, HeldTask, NewTask, Settle, StoreError, UploadState};
use crate::task::{QueueError, QueueOptions};

/// Held tasks settled per write when an upload ends. Default 1,000.
const SETTLE_BATCH: usize = 1000;

/// A task to write: of a job this node has, or held for an upload.
pub(crate) enum Prepared {
    Task(NewTask),
    /// The task, and its request's options as JSON.
    Held(NewTask, String),
}

impl Queue {
    /// [`Queue::prepare`], or, for a job this node does not know that an
    /// upload still compiling declares, the task held for that upload.
    pub(crate) async fn prepare_or_hold(
        &self,
        tenant: &str,
        job: &str,
        args: &str,
        options: &QueueOptions,
        parent: Option<&super::Parent>,
    ) -> Result<Prepared, QueueFailure> {
        match self.prepare(tenant, job, args, options, parent).await {
            Err(QueueFailure::Rejected(QueueError::UnknownJob(shown))) => {
                match self.hold(tenant, job, args, options, parent).await? {
                    Some(held) => Ok(held),
                    None => Err(QueueError::UnknownJob(shown).into()),
                }
            }
            prepared => prepared.map(Prepared::Task),
        }
    }

    async fn hold(
        &self,
        tenant: &str,
        job: &str,
        args: &str,
        options: &QueueOptions,
        parent: Option<&super::Parent>,
    ) -> Result<Option<Prepared>, QueueFailure> {
        if crate::job::validate_name(job).is_err() {
            return Ok(None);
        }
        let name = job.to_ascii_lowercase();
        let now = self.clock.now_millis();
        // A job the store has whose version this node still compiles, or
        // an upload still compiling that declares the name.
        let version = match self.registry.pending(tenant, &name) {
            Some(version) => version,
            None => match crate::upload::declaring(&*self.store, tenant, &name, now).await? {
                Some(upload) => upload.id,
                None => return Ok(None),
            },
        };
        let depth = self.check_request(args, parent)?;
        // The bounds that need no job; the job's default expiry comes later.
        options.times(now, None)?;
        if options.unique_for.is_some() {
            return Err(QueueError::invalid_option(
                "unique_for",
                format!("job `{name}` is still compiling: queue unique tasks of it once it is ready"),
            )
            .into());
        }
        let task = NewTask {
            tenant: tenant.to_owned(),
            job: name,
            version,
            args: args.to_owned(),
            priority: options.priority.unwrap_or(0),
            run_at: HELD_RUN_AT,
            expires_at: None,
            max_retries: options.max_retries.unwrap_or(0),
            overlap_key: None,
            from_task: parent.map(|p| p.id.clone()),
            root_task: parent.map(|p| p.root.clone()),
            depth,
            queued_at: now,
            unique: None,
            pending: None,
            queue: super::queue_of(options, parent),
        };
        let options = serde_json::to_string(options).expect("options serialize");
        Ok(Some(Prepared::Held(task, options)))
    }

    /// Writes a held task; if its version is ready here already (its
    /// settling may have run before this write), settles it now.
    pub(crate) async fn insert_held(&self, task: NewTask, options: String) -> Result<String, StoreError> {
        let (tenant, version) = (task.tenant.clone(), task.version.clone());
        let id = self.store.insert_held(task, options).await?;
        if self.registry.loaded(&version) {
            self.settle(&tenant, &version).await?;
        }
        Ok(id)
    }

    /// Settles the tasks held for `tenant`'s version `version` once it has
    /// ended: due with their job's defaults once this node has compiled it,
    /// failed with reason `rejected` if its upload was rejected (or judged
    /// interrupted) or the engine refuses it. Never compiles: while this
    /// node has not compiled a version that is ready, it starts compiling
    /// it in the background, and the tasks stay held until a later call
    /// (the heartbeat's, [`Queue::settle_orphans`]). One settling per
    /// version at a time on a node; a call meanwhile does nothing.
    pub async fn settle(&self, tenant: &str, version: &str) -> Result<(), StoreError> {
        let key = (tenant.to_owned(), version.to_owned());
        if !self.settling.lock().unwrap().insert(key.clone()) {
            return Ok(());
        }
        let settled = self.settle_once(tenant, version).await;
        self.settling.lock().unwrap().remove(&key);
        settled
    }

    /// Settles, in the background, the tasks held for each of `held`
    /// (tenant and version) that can be settled: those whose settling was
    /// lost (the node that compiled the upload died first), or that were
    /// held here for a version another node compiled.
    pub(crate) fn settle_orphans(self: &Arc<Self>, held: Vec<(String, String)>) {
        for (tenant, version) in held {
            let queue = self.clone();
            tokio::spawn(async move {
                if let Err(e) = queue.settle(&tenant, &version).await {
                    tracing::warn!(%tenant, %version, error = %e, "cannot settle held tasks yet");
                }
            });
        }
    }

    async fn settle_once(&self, tenant: &str, version: &str) -> Result<(), StoreError> {
        let upload = self.store.upload(tenant, version).await?;
        let upload = upload.map(|u| crate::upload::judge(u, self.clock.now_millis()));
        let component = match (upload, self.registry.loaded_version(version)) {
            (Some(u), _) if u.state == UploadState::Rejected => {
                Err(format!("its job's upload was rejected: {}", u.reason.unwrap_or_default()))
            }
            // The same bytes may be loaded here for another upload: this
            // one may still be refused (its name, its tenant's quota).
            (Some(u), _) if u.state == UploadState::Compiling => return Ok(()),
            (_, Some(component)) => Ok(component),
            _ if self.registry.refused(version) => Err("the engine refuses its job's version".to_owned()),
            // Ready elsewhere (or registered without an upload): ready
            // here once compiled here.
            _ => {
                self.registry.preload(version);
                return Ok(());
            }
        };
        loop {
            let held = self.store.held_tasks(tenant, version, SETTLE_BATCH).await?;
            let mut settled = Vec::with_capacity(held.len());
            for task in &held {
                settled.push((task.id.clone(), self.settled(task, component.as_ref()).await));
            }
            let now = self.clock.now_millis();
            let ended = self.store.settle_held(settled, now).await?;
            self.tenants.claimed(tenant, ended.len() as u64);
            self.signals.finished(&ended);
            self.signals.queued.notify_one();
            if held.len() < SETTLE_BATCH {
                return Ok(());
            }
        }
    }

    /// How one held task is settled with its job (or why it has none).
    async fn settled(&self, task: &HeldTask, component: Result<&JobComponent, &String>) -> Settle {
        let component = match component {
            Ok(component) => component,
            Err(why) => return Settle::Fail { reason: "rejected".into(), error: why.clone() },
        };
        let invalid = |e: QueueError| Settle::Fail { reason: "invalid_args".into(), error: e.to_string() };
        let options: QueueOptions = match serde_json::from_str(&task.options) {
            Ok(options) => options,
            Err(e) => return invalid(QueueError::InvalidArgs(format!("its options cannot be read: {e}"))),
        };
        let metadata = component.metadata();
        if metadata.name != task.job {
            let error = format!("the upload holds job `{}`, not `{}`", metadata.name, task.job);
            return Settle::Fail { reason: "rejected".into(), error };
        }
        let overlap_key = match metadata.overlap {
            Overlap::Allow => None,
            Overlap::Forbid => Some(String::new()),
            Overlap::ByArgs => match self.runtime.overlap_key(component, &task.args).await {
                Ok(key) => key,
                Err(e) => return invalid(QueueError::InvalidArgs(e.to_string())),
            },
        };
        // The delay counts from the request; the expiry from when the task
        // may first run, which is not before now.
        let (run_at, _) = match options.times(task.queued_at, None) {
            Ok(times) => times,
            Err(e) => return invalid(e),
        };
        let from = run_at.max(self.clock.now_millis());
        let expires_at =
            match (QueueOptions { delay: None, run_at: None, ..options.clone() }).times(from, metadata.expiry) {
                Ok((_, expires_at)) => expires_at,
                Err(e) => return invalid(e),
            };
        Settle::Due {
            priority: options.priority.unwrap_or(0),
            run_at,
            expires_at,
            max_retries: options.max_retries.unwrap_or(metadata.retry.max_retries),
            overlap_key,
        }
    }
}
