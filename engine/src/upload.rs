//! Uploads compile in the background: `POST /v1/jobs` checks what it can
//! without compiling ([`crate::runtime::Runtime::precheck`]), stores the
//! component and answers at once; the compile runs in the runtime's bounded
//! pool (at most `CompileLimits::concurrent` at once, each in a child
//! process under its CPU, wall-clock and memory limits) and its ending, the
//! job registered or the reason it was refused, is written to the store's
//! `uploads`, so that every node answers `GET /v1/uploads/{id}` alike.
//!
//! A caller may wait for the ending (`?wait=`); the compile does not depend
//! on the caller staying: one who hangs up leaves it running.
//!
//! While an upload waits for its compile and compiles, its node writes the
//! row again every [`REFRESH`]; a node that dies mid-compile leaves it
//! `compiling`, and one not written for [`STALE_AFTER`] is reported as
//! rejected (its held tasks fail); uploading the component again compiles
//! it again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

use crate::clock::Clock;
use crate::queue::Queue;
use crate::registry::{RegisterError, Registry};
use crate::runtime::{JobComponent, Runtime, content_hash};
use crate::signals::Signals;
use crate::store::{Millis, Store, StoreError, UploadRow, UploadState, to_millis};
use crate::wire::{Event, EventKind};

/// Uploads a node takes in that have not finished compiling, at most: each
/// holds its component in memory until its compile (two at once) takes it,
/// so at most this many times the engine's `max_component_bytes` (128 MiB
/// by default) wait in memory. Past it, an upload is refused with `503
/// busy`. Default 32.
pub const MAX_COMPILING: usize = 32;

/// How often the node compiling an upload writes its row again, to show
/// that it is alive. Default 15 s.
pub const REFRESH: Duration = Duration::from_secs(15);

/// How long an upload may stay `compiling` without being written again
/// before it is reported as interrupted (its node died): four refreshes.
/// Default 1 min.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// An upload taken in: its row, and its ending once the compile is done.
pub struct Started {
    pub upload: UploadRow,
    pub ending: oneshot::Receiver<Result<JobComponent, RegisterError>>,
}

/// Uploads of components, compiled in the background.
pub struct Uploads {
    registry: Arc<Registry>,
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Settles the tasks held for an upload once it ends.
    queue: Arc<Queue>,
    /// Where its events go.
    signals: Arc<Signals>,
    /// A permit per upload taken in and not yet compiled, of `max_compiling`.
    compiling: Arc<Semaphore>,
    max_compiling: usize,
}

impl Uploads {
    /// Uploads taking in at most `max_compiling` at once (by default
    /// [`MAX_COMPILING`]).
    pub fn new(
        registry: Arc<Registry>,
        runtime: Arc<Runtime>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        queue: Arc<Queue>,
        signals: Arc<Signals>,
        max_compiling: usize,
    ) -> Self {
        Self {
            registry,
            runtime,
            store,
            clock,
            queue,
            signals,
            max_compiling,
            compiling: Arc::new(Semaphore::new(max_compiling)),
        }
    }

    /// Takes in `tenant`'s component `bytes` (a tenant may have at most
    /// `max_jobs` jobs): refuses at once what can be refused without
    /// compiling, stores the rest and compiles it in the background. A
    /// version this node has compiled already is registered at once.
    ///
    /// An upload that `declares` the name of its job (lower case) is
    /// rejected if its job has another; until it ends, tasks of that name
    /// may be queued and wait for it ([`crate::queue`]'s held tasks).
    pub async fn start(
        &self,
        tenant: &str,
        bytes: Vec<u8>,
        max_jobs: usize,
        declares: Option<String>,
    ) -> Result<Started, RegisterError> {
        self.runtime.precheck(&bytes)?;
        let id = content_hash(&bytes);
        let now = self.clock.now_millis();
        let mut upload = UploadRow {
            tenant: tenant.to_owned(),
            id: id.clone(),
            state: UploadState::Compiling,
            name: declares.clone(),
            reason: None,
            size: bytes.len() as u64,
            created_at: now,
            updated_at: now,
        };
        let (tell, ending) = oneshot::channel();
        if self.registry.loaded(&id) {
            // Loaded here means stored: it was registered or read from the store.
            let registered = self.registry.register_stored(tenant, &bytes, max_jobs, declares.as_deref()).await;
            self.record(&mut upload, &registered).await?;
            self.signals.events.emit_all([uploaded(&upload), ended(&upload)]);
            self.queue.settle(tenant, &id).await?;
            let _ = tell.send(registered);
            return Ok(Started { upload, ending });
        }
        let Ok(permit) = self.compiling.clone().try_acquire_owned() else {
            return Err(RegisterError::Busy(self.max_compiling));
        };
        // Stored first: the bytes outlive this node, and a retry of the
        // upload through any node finds them.
        self.store.put_component(&id, bytes.clone()).await?;
        self.store.put_upload(upload.clone()).await?;
        self.signals.events.emit_all([uploaded(&upload)]);
        let (registry, store, clock, queue, signals) =
            (self.registry.clone(), self.store.clone(), self.clock.clone(), self.queue.clone(), self.signals.clone());
        let (tenant, mut row) = (tenant.to_owned(), upload.clone());
        tokio::spawn(async move {
            let registered = {
                let registering = registry.register_stored(&tenant, &bytes, max_jobs, declares.as_deref());
                let mut registering = std::pin::pin!(registering);
                let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
                loop {
                    tokio::select! {
                        registered = &mut registering => break registered,
                        _ = refresh.tick() => {
                            let alive = UploadRow { updated_at: clock.now_millis(), ..row.clone() };
                            if let Err(e) = store.put_upload(alive).await {
                                tracing::warn!(%tenant, upload = %id, error = %e, "cannot refresh a compiling upload");
                            }
                        }
                    }
                }
            };
            drop((bytes, permit));
            row.updated_at = clock.now_millis();
            fill(&mut row, &registered);
            let event = ended(&row);
            if let Err(e) = store.put_upload(row).await {
                tracing::error!(%tenant, upload = %id, error = %e, "cannot record how an upload ended");
            } else {
                signals.events.emit_all([event]);
                if let Err(e) = queue.settle(&tenant, &id).await {
                    tracing::error!(%tenant, upload = %id, error = %e, "cannot settle the tasks held for an upload");
                }
            }
            let _ = tell.send(registered);
        });
        Ok(Started { upload, ending })
    }

    /// `tenant`'s upload `id`, with a `compiling` one whose node must have
    /// died reported as rejected.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<UploadRow>, StoreError> {
        let upload = self.store.upload(tenant, id).await?;
        Ok(upload.map(|u| self.judged(u)))
    }

    /// `tenant`'s uploads that are not ready (compiling, or rejected within
    /// `within`), newest first.
    pub async fn pending(&self, tenant: &str, within: Duration) -> Result<Vec<UploadRow>, StoreError> {
        let since = self.clock.now_millis().saturating_sub(to_millis(within));
        let uploads = self.store.uploads(tenant, since).await?;
        Ok(uploads.into_iter().map(|u| self.judged(u)).filter(|u| u.state != UploadState::Ready).collect())
    }

    /// `tenant`'s newest upload still compiling that declares job `name`.
    pub async fn declaring(&self, tenant: &str, name: &str) -> Result<Option<UploadRow>, StoreError> {
        declaring(&*self.store, tenant, name, self.clock.now_millis()).await
    }

    async fn record(
        &self,
        upload: &mut UploadRow,
        registered: &Result<JobComponent, RegisterError>,
    ) -> Result<(), StoreError> {
        upload.updated_at = self.clock.now_millis();
        fill(upload, registered);
        self.store.put_upload(upload.clone()).await
    }

    fn judged(&self, upload: UploadRow) -> UploadRow {
        judge(upload, self.clock.now_millis())
    }
}

/// `tenant`'s newest upload still compiling at `now` that declares job
/// `name` (lower case).
pub(crate) async fn declaring(
    store: &dyn Store,
    tenant: &str,
    name: &str,
    now: Millis,
) -> Result<Option<UploadRow>, StoreError> {
    let uploads = store.uploads(tenant, now.saturating_sub(to_millis(STALE_AFTER))).await?;
    Ok(uploads
        .into_iter()
        .map(|u| judge(u, now))
        .find(|u| u.state == UploadState::Compiling && u.name.as_deref() == Some(name)))
}

/// `upload` as seen at `now`: still `compiling` [`STALE_AFTER`] after its
/// last write, its node must have died, and it is rejected.
pub(crate) fn judge(upload: UploadRow, now: Millis) -> UploadRow {
    judge_after(upload, now, STALE_AFTER)
}

fn judge_after(mut upload: UploadRow, now: Millis, stale: Duration) -> UploadRow {
    if upload.state == UploadState::Compiling && now.saturating_sub(upload.updated_at) > to_millis(stale) {
        upload.state = UploadState::Rejected;
        upload.reason = Some("its compile was interrupted (the node compiling it stopped): upload it again".into());
    }
    upload
}

/// An upload's row as its compile ended.
fn fill(row: &mut UploadRow, registered: &Result<JobComponent, RegisterError>) {
    match registered {
        Ok(component) => {
            row.state = UploadState::Ready;
            row.name = Some(component.metadata().name.clone());
            row.reason = None;
        }
        Err(e) => {
            row.state = UploadState::Rejected;
            row.reason = Some(e.to_string());
        }
    }
}

/// The event of `upload` taken in, for its tenant.
fn uploaded(upload: &UploadRow) -> (String, Event) {
    let event = Event::job(EventKind::JobUploaded, upload.updated_at, upload.name.as_deref(), Some(&upload.id));
    (upload.tenant.clone(), event)
}

/// The event of `upload`'s compile ended, ready or rejected, for its tenant.
fn ended(upload: &UploadRow) -> (String, Event) {
    let (kind, name, version) = (EventKind::JobCompiled, upload.name.as_deref(), Some(upload.id.as_str()));
    let event = match (upload.state, &upload.reason) {
        (UploadState::Rejected, reason) => {
            Event::job(EventKind::JobRejected, upload.updated_at, name, version).reason(reason.as_deref().unwrap_or(""))
        }
        _ => Event::job(kind, upload.updated_at, name, version),
    };
    (upload.tenant.clone(), event)
}

/// How long ago an upload was taken in, for display.
pub fn age(upload: &UploadRow, now: Millis) -> Duration {
    Duration::from_millis(u64::try_from(now.saturating_sub(upload.created_at)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiling(updated_at: Millis) -> UploadRow {
        UploadRow {
            tenant: "t".into(),
            id: "h".into(),
            state: UploadState::Compiling,
            name: None,
            reason: None,
            size: 1,
            created_at: updated_at,
            updated_at,
        }
    }

    #[test]
    fn an_upload_compiling_past_its_limit_is_judged_interrupted() {
        let stale = Duration::from_secs(240);
        let fresh = judge_after(compiling(1_000), 1_000 + 240_000, stale);
        assert_eq!(fresh.state, UploadState::Compiling);
        let interrupted = judge_after(compiling(1_000), 1_000 + 240_001, stale);
        assert_eq!(interrupted.state, UploadState::Rejected);
        assert!(interrupted.reason.unwrap().contains("upload it again"));
        // Times at the type's bounds neither overflow nor judge wrongly.
        assert_eq!(judge(compiling(Millis::MIN), Millis::MAX).state, UploadState::Rejected);
        assert_eq!(judge(compiling(Millis::MAX), Millis::MIN).state, UploadState::Compiling);
    }

    #[test]
    fn an_ended_upload_is_never_judged_again() {
        let mut ready = compiling(0);
        ready.state = UploadState::Ready;
        assert_eq!(judge_after(ready, Millis::MAX, Duration::ZERO).state, UploadState::Ready);
    }
}
