//! The catalog: jobs, tenants and tokens, which every node caches (in the
//! [`Registry`], [`Tenants`] and [`Auth`]) and keeps fresh from the store.
//!
//! The store counts changes per kind of row ([`Generations`]). A node's
//! catalog compares them with what its caches were built from and reloads
//! a kind whose generation moved: at once when notified of a change
//! ([`Signals::catalog`], fired by PostgreSQL's `NOTIFY` from any node), and
//! every [`CHECK`] in any case, so that a missed notification (a dropped
//! listening connection) delays a change by at most [`CHECK`]. A change
//! made through this node is in its caches at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::auth::Auth;
use crate::registry::Registry;
use crate::signals::Signals;
use crate::store::{Generations, Store, StoreError};
use crate::tenant::Tenants;

/// How often the catalog compares its generations with the store's when
/// nothing was notified. Default 250 ms: with [`crate::auth::FRESH`] at 1 s,
/// a few checks may fail or be late before tokens are checked in the store.
pub const CHECK: Duration = Duration::from_millis(250);

/// The caches of the catalog, kept fresh.
pub struct Catalog {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) tenants: Arc<Tenants>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) signals: Arc<Signals>,
}

impl Catalog {
    /// Reloads whatever changed in the store since the caches were built.
    pub async fn refresh(&self) -> Result<Generations, StoreError> {
        let checked = Instant::now();
        let generations = self.store.generations().await?;
        self.registry.refresh(generations.jobs).await?;
        self.tenants.refresh(generations.tenants).await?;
        self.auth.refresh(generations.tokens, checked).await?;
        Ok(generations)
    }

    /// Keeps the caches fresh until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        while !crate::signals::stopping(&shutdown) {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot refresh the catalog");
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = self.signals.catalog.notified() => {}
                _ = tokio::time::sleep(CHECK) => {}
            }
        }
    }
}
