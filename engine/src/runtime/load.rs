//! Accepting a component: validate, compile once, pre-link, read metadata.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::compiler::{check_structure, compile_isolated};
use super::sandbox::TaskState;
use super::{Outcome, Runtime};
use crate::contract::{Answer, Export, JobPre};
use crate::job::{JobMetadata, MetadataError};

/// A validated, compiled and pre-linked job: each task pays only for
/// instantiation. Cheap to clone.
#[derive(Clone)]
pub struct JobComponent {
    hash: Arc<str>,
    metadata: Arc<JobMetadata>,
    pub(crate) pre: JobPre<TaskState>,
}

impl JobComponent {
    /// The SHA-256 of the component's bytes, in hex: its version.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// What the job declared, as checked by the engine.
    pub fn metadata(&self) -> &JobMetadata {
        &self.metadata
    }

    /// The version of the `wasmjob:job` contract the component exports:
    /// "0.2.0" or "0.1.0".
    pub fn contract(&self) -> &'static str {
        self.pre.contract()
    }
}

/// Why a component was refused. Each message names what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("the component is {bytes} bytes; the limit is {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("not a WebAssembly binary (it does not start with `\\0asm`)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build the job for `wasm32-wasip2` \
         (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("invalid component: {0}")]
    Invalid(String),
    /// Its shape alone is out of bounds ([`super::compiler::check_structure`]).
    #[error("the component is too complex to compile: {0}")]
    TooComplex(String),
    /// Compiling it hit a limit of [`super::CompileLimits`].
    #[error("the component was refused: {0}")]
    CompileLimit(String),
    /// The compiler itself failed (not the component's fault).
    #[error("the compiler failed: {0}")]
    Compiler(String),
    /// The node is stopping: compiles are cancelled.
    #[error("the engine is shutting down; try again")]
    ShuttingDown,
    #[error("the component imports what the engine does not provide: {0}")]
    UnsupportedImport(String),
    #[error("the component does not implement the `wasmjob:job/job` world: {0}")]
    NotAJob(String),
    #[error("the component's `metadata` export failed: {}", .0.describe())]
    MetadataFailed(Outcome),
    #[error("invalid metadata: {0}")]
    InvalidMetadata(#[from] MetadataError),
}

/// The version field of a component binary (layer 1) and of a core module.
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// A component's version: the SHA-256 of its bytes, in hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Runtime {
    /// What can be said of `bytes` without compiling them, in a linear read:
    /// its size, that it is a component binary, and that its shape is within
    /// the compile limits ([`super::compiler::check_structure`]).
    pub fn precheck(&self, bytes: &[u8]) -> Result<(), LoadError> {
        if bytes.len() > self.limits.max_component_bytes {
            return Err(LoadError::TooLarge { bytes: bytes.len(), limit: self.limits.max_component_bytes });
        }
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(LoadError::NotWasm);
        }
        if bytes[4..8] == CORE_MODULE_VERSION {
            return Err(LoadError::CoreModule);
        }
        if bytes[4..8] != COMPONENT_VERSION {
            return Err(LoadError::Invalid(format!("unsupported binary version {:02x?}", &bytes[4..8])));
        }
        check_structure(bytes, &self.compile.limits)
    }

    /// Validates `bytes` as a job component, compiles it (or loads the cached
    /// compile) and reads its metadata in the sandbox.
    pub async fn load(&self, bytes: &[u8]) -> Result<JobComponent, LoadError> {
        self.precheck(bytes)?;
        let hash = content_hash(bytes);
        let component = self.compile(bytes, &hash).await?;
        let instance_pre =
            self.linker.instantiate_pre(&component).map_err(|e| LoadError::UnsupportedImport(format!("{e:#}")))?;
        let pre = JobPre::new(instance_pre).map_err(LoadError::NotAJob)?;
        let metadata = match self.control_call(&pre, Export::Metadata).await {
            Ok(Answer::Metadata(metadata)) => (*metadata)?,
            Ok(_) => unreachable!("`metadata` answers with metadata"),
            Err(outcome) => return Err(LoadError::MetadataFailed(outcome)),
        };
        Ok(JobComponent { hash: hash.into(), metadata: Arc::new(metadata), pre })
    }

    /// How many components this runtime compiled (loads from the cache and
    /// loads that shared another's compile not counted).
    pub fn compiled(&self) -> u64 {
        self.compiled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The compile of `bytes`: from the cache, from a compile of the same
    /// bytes in flight, or compiled now.
    async fn compile(&self, bytes: &[u8], hash: &str) -> Result<Component, LoadError> {
        if let Some(component) = self.cache.as_ref().and_then(|c| c.load(&self.engine, hash)) {
            return Ok(component);
        }
        let shared = self.in_flight.lock().unwrap().entry(hash.to_owned()).or_default().clone();
        // If the caller compiling goes away, a waiting one takes over.
        let result = shared.get_or_init(|| self.compile_fresh(bytes, hash)).await.clone();
        let mut in_flight = self.in_flight.lock().unwrap();
        if in_flight.get(hash).is_some_and(|cell| Arc::ptr_eq(cell, &shared)) {
            in_flight.remove(hash);
        }
        result
    }

    async fn compile_fresh(&self, bytes: &[u8], hash: &str) -> Result<Component, LoadError> {
        check_structure(bytes, &self.compile.limits)?;
        let mut stopping = self.stopping.subscribe();
        if *stopping.borrow() {
            return Err(LoadError::ShuttingDown);
        }
        let compiling = async {
            let _slot = self.compiles.acquire().await.map_err(|_| LoadError::ShuttingDown)?;
            self.compile_now(bytes).await
        };
        let component = tokio::select! {
            component = compiling => component?,
            // Dropping the compile kills its child process.
            _ = stopping.wait_for(|stop| *stop) => return Err(LoadError::ShuttingDown),
        };
        self.compiled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(cache) = &self.cache {
            cache.store(hash, &component);
        }
        Ok(component)
    }

    /// Compiles in the compiler's child process, or in this process when
    /// there is none.
    async fn compile_now(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        let Some(program) = &self.compiler else {
            let engine = self.engine.clone();
            let owned = bytes.to_vec();
            // Compiling is CPU-bound: keep it off the async workers.
            return tokio::task::spawn_blocking(move || Component::new(&engine, owned))
                .await
                .map_err(|e| LoadError::Compiler(format!("the compiler crashed: {e}")))?
                .map_err(|e| LoadError::Invalid(format!("{e:#}")));
        };
        let artifact = compile_isolated(program, &self.compile, bytes).await?;
        // SAFETY: the artifact is `Engine::precompile_component` output of our
        // own binary, compiled from these bytes with this engine's settings;
        // wasmtime checks that the settings match before loading it.
        unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| LoadError::Compiler(format!("cannot load the compiled component: {e:#}")))
    }
}
