//! Bearer tokens: who is calling, for which tenant, allowed to do what.
//!
//! A token is `wj_<id>_<secret>`; the store keeps only its SHA-256, and
//! this node keeps the live ones in memory, so checking a request costs a
//! hash and a map lookup, and revoking a token takes effect at once. An
//! admin token manages tenants and tokens; it comes from the config, or is
//! created at first start and printed once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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

/// The live tokens.
pub struct Auth {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    by_hash: RwLock<HashMap<String, Principal>>,
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
    /// Loads the live tokens. With `admin_token`, makes sure that token is a
    /// live admin token; without one, creates an admin token if there is
    /// none and returns it (to be shown once).
    pub async fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        admin_token: Option<&str>,
    ) -> Result<(Self, Option<NewToken>), StoreError> {
        let auth = Self { store, clock, by_hash: RwLock::default() };
        for row in auth.store.tokens().await? {
            if row.revoked_at.is_some() {
                continue;
            }
            let Some(scope) = Scope::parse(&row.scope) else { continue };
            let principal = Principal { token_id: row.id, tenant: row.tenant, scope };
            auth.by_hash.write().unwrap().insert(row.hash, principal);
        }
        let has_admin = auth.by_hash.read().unwrap().values().any(|p| p.scope == Scope::Admin);
        let created = match admin_token {
            Some(token) if auth.authenticate(token).is_none() => {
                auth.store_token(token_id(token).unwrap_or("admin-config").to_owned(), token, None, Scope::Admin)
                    .await?;
                None
            }
            Some(_) => None,
            None if !has_admin => Some(auth.create(None, Scope::Admin).await?),
            None => None,
        };
        Ok((auth, created))
    }

    /// Who `token` is, if it is live.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        self.by_hash.read().unwrap().get(&hash(token)).cloned()
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

/// The id part of a `wj_<id>_<secret>` token.
fn token_id(token: &str) -> Option<&str> {
    token.strip_prefix("wj_")?.split('_').next()
}
