//! Bearer tokens: who is calling, for which tenant, allowed to do what.
//!
//! A token is `wj_<id>_<secret>`; the store keeps only its SHA-256. An
//! admin token manages tenants and tokens; it comes from the config, or is
//! created at first start and printed once.
//!
//! Freshness: this node caches the live tokens, so checking a request
//! usually costs a hash and a map lookup. The cache is trusted only while
//! the catalog ([`crate::catalog`]) has confirmed it against the store's
//! token generation within [`FRESH`]; otherwise, and for every token the
//! cache does not know, the token is looked up in the store. So a token
//! created on any node works at once everywhere, and a token revoked on any
//! node is refused everywhere within [`FRESH`] (at once where it was
//! revoked, and as soon as the notification arrives elsewhere).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::store::{Store, StoreError, TokenRow};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read the tenant's jobs and tasks.
    Read,
    /// Also upload and delete jobs, queue and revoke tasks.
    Write,
    /// Manage tenants and tokens (and nothing of any tenant's).
    Admin,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    /// Parses `read`, `write` or `admin`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Read, Self::Write, Self::Admin].into_iter().find(|s| s.as_str() == text)
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    /// `None` for the admin.
    pub tenant: Option<String>,
    pub scope: Scope,
}

/// A token just created: the only time its secret is seen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewToken {
    pub id: String,
    pub token: String,
}

/// How long a confirmation of the token cache holds: past it, every
/// request is checked against the store. Default 1 s.
pub const FRESH: Duration = Duration::from_secs(1);

/// The live tokens.
pub struct Auth {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    by_hash: RwLock<HashMap<String, Principal>>,
    /// The store's token generation the cache was built from.
    generation: Mutex<Option<i64>>,
    /// When the cache was last known to match the store.
    confirmed: Mutex<Option<Instant>>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is unavailable");
    hex::encode(buf)
}

impl Auth {
    /// Loads the live tokens.
    pub async fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let auth = Self {
            store,
            clock,
            by_hash: RwLock::default(),
            generation: Mutex::new(None),
            confirmed: Mutex::new(None),
        };
        let checked = Instant::now();
        let generation = auth.store.generations().await?.tokens;
        auth.refresh(generation, checked).await?;
        Ok(auth)
    }

    /// With `admin_token`, makes sure that token is a live admin token;
    /// without one, creates an admin token if there is none and returns it
    /// (to be shown once).
    pub async fn ensure_admin(&self, admin_token: Option<&str>) -> Result<Option<NewToken>, StoreError> {
        let has_admin = self.by_hash.read().unwrap().values().any(|p| p.scope == Scope::Admin);
        Ok(match admin_token {
            Some(token) if self.authenticate(token).await?.is_none() => {
                let id = token_id(token).unwrap_or("admin-config").to_owned();
                if let Err(e) = self.store_token(id, token, None, Scope::Admin).await {
                    // Nodes starting together race to store the same token:
                    // losing that race is fine.
                    if self.authenticate(token).await?.is_none() {
                        return Err(e);
                    }
                }
                None
            }
            Some(_) => None,
            None if !has_admin => Some(self.create(None, Scope::Admin).await?),
            None => None,
        })
    }

    /// Rebuilds the cache if the store's token generation is no longer
    /// `generation`'s, and records that it matched the store as of
    /// `checked` (when `generation` was read).
    pub async fn refresh(&self, generation: i64, checked: Instant) -> Result<(), StoreError> {
        if *self.generation.lock().unwrap() != Some(generation) {
            let mut live = HashMap::new();
            for row in self.store.tokens().await? {
                if let Some(principal) = principal(&row) {
                    live.insert(row.hash, principal);
                }
            }
            *self.by_hash.write().unwrap() = live;
            *self.generation.lock().unwrap() = Some(generation);
        }
        let mut confirmed = self.confirmed.lock().unwrap();
        if confirmed.is_none_or(|c| c < checked) {
            *confirmed = Some(checked);
        }
        Ok(())
    }

    fn fresh(&self) -> bool {
        self.confirmed.lock().unwrap().is_some_and(|c| c.elapsed() < FRESH)
    }

    /// Who `token` is, if it is live: from the cache while it is fresh,
    /// from the store otherwise.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let hash = hash(token);
        if self.fresh()
            && let Some(principal) = self.by_hash.read().unwrap().get(&hash)
        {
            return Ok(Some(principal.clone()));
        }
        let generation = *self.generation.lock().unwrap();
        let found = self.store.token(&hash).await?.and_then(|row| principal(&row));
        let mut cache = self.by_hash.write().unwrap();
        match &found {
            // Cached only if no refresh ran meanwhile: a refresh that saw
            // the token revoked must not be undone by this older read.
            Some(principal) if *self.generation.lock().unwrap() == generation => {
                cache.insert(hash, principal.clone());
            }
            Some(_) => {}
            None => {
                cache.remove(&hash);
            }
        }
        Ok(found)
    }

    /// Creates a token for `tenant` (`None`: admin) with `scope`.
    pub async fn create(&self, tenant: Option<&str>, scope: Scope) -> Result<NewToken, StoreError> {
        let id = random_hex(4);
        let token = format!("wj_{id}_{}", random_hex(16));
        self.store_token(id.clone(), &token, tenant, scope).await?;
        Ok(NewToken { id, token })
    }

    async fn store_token(&self, id: String, token: &str, tenant: Option<&str>, scope: Scope) -> Result<(), StoreError> {
        let row = TokenRow {
            id: id.clone(),
            hash: hash(token),
            tenant: tenant.map(str::to_owned),
            scope: scope.as_str().into(),
            created_at: self.clock.now_millis(),
            revoked_at: None,
        };
        self.store.put_token(row.clone()).await?;
        let principal = Principal { token_id: id, tenant: row.tenant, scope };
        self.by_hash.write().unwrap().insert(row.hash, principal);
        Ok(())
    }

    /// Revokes token `id`, at once. Whether it was live.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let revoked = self.store.revoke_token(id, self.clock.now_millis()).await?;
        self.by_hash.write().unwrap().retain(|_, p| p.token_id != id);
        Ok(revoked)
    }
}

/// Who a stored token stands for, if it is live.
fn principal(row: &TokenRow) -> Option<Principal> {
    if row.revoked_at.is_some() {
        return None;
    }
    let scope = Scope::parse(&row.scope)?;
    Some(Principal { token_id: row.id.clone(), tenant: row.tenant.clone(), scope })
}

/// The id part of a `wj_<id>_<secret>` token.
fn token_id(token: &str) -> Option<&str> {
    token.strip_prefix("wj_")?.split('_').next()
}
