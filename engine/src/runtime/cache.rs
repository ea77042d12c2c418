//! On-disk cache of compiled components, so that a restart does not recompile.
//!
//! Entries are keyed by the component's content hash and by the engine's
//! compatibility hash (wasmtime version and every setting that affects code),
//! so a changed engine never loads stale code. Only the engine writes here:
//! each entry is its own serialized compile followed by the SHA-256 of those
//! bytes, written to a temporary file and renamed into place, and an entry
//! whose digest does not match (torn write, corruption) is discarded and
//! recompiled rather than loaded.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const DIGEST_LEN: usize = 32;

/// A directory of compiled artifacts.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// Opens (creating it if needed) the cache for `engine` under `root`.
    pub(crate) fn open(root: &Path, engine: &Engine) -> std::io::Result<Self> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self { dir })
    }

    fn path(&self, content_hash: &str) -> PathBuf {
        self.dir.join(format!("{content_hash}.cwasm"))
    }

    /// The cached compile of `content_hash`, if there is a sound one.
    pub(crate) fn load(&self, engine: &Engine, content_hash: &str) -> Option<Component> {
        let path = self.path(content_hash);
        let bytes = std::fs::read(&path).ok()?;
        let (artifact, digest) = bytes.split_at_checked(bytes.len().checked_sub(DIGEST_LEN)?)?;
        if Sha256::digest(artifact).as_slice() != digest {
            tracing::warn!(path = %path.display(), "discarding a corrupt compiled artifact");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // SAFETY: the bytes are our own `Component::serialize` output (see
        // the module docs), checked against the digest written with them.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding an unusable compiled artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the compile of `content_hash`. Failures only cost a recompile.
    pub(crate) fn store(&self, content_hash: &str, component: &Component) {
        let result = (|| -> anyhow::Result<()> {
            let mut bytes = component.serialize()?;
            let digest = Sha256::digest(&bytes);
            bytes.extend_from_slice(&digest);
            let path = self.path(content_hash);
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot cache a compiled component");
        }
    }
}
