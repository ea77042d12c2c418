//! Compiling components, bounded: what an upload costs the node is capped
//! however the component is shaped.
//!
//! Wasmtime's security policy leaves denial of service during compilation
//! to the embedder: some function shapes make Cranelift use gigabytes or
//! minutes. So the engine compiles in a child process (the `wasmjob` binary
//! itself, its hidden `compile` command) under [`CompileLimits`]: an address
//! space limit and a CPU-time limit set by the child on itself before it
//! reads the component, and a wall-clock timeout after which the parent
//! kills it. The serving process's memory does not grow with what it
//! compiles, a compile whose client gave up is killed, and so is every
//! compile when the node stops. At most [`CompileLimits::concurrent`]
//! compiles run at once. Before any of that, [`check_structure`] refuses
//! obvious bombs at once by reading the binary's sections.
//!
//! The child builds an engine with the same settings as the parent's (what
//! shapes compiled code travels in a [`CompileSpec`]) and writes the
//! serialized compile to its stdout; wasmtime refuses to load an artifact
//! made with incompatible settings, so a mismatch is an error, never wrong
//! code.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::LoadError;

/// Limits of one compile. Every field says its default and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileLimits {
    /// Address space of the compiling process. Default 3 GiB: Python and
    /// JavaScript components (tens of MB of wasm) compile in well under
    /// that; the hostile shapes seen grow past 5 GiB.
    pub memory_bytes: u64,
    /// CPU time of one compile. Default 120 s: a Python component takes
    /// 25-35 s here.
    pub cpu: Duration,
    /// Wall-clock time of one compile, from when it starts (the wait for a
    /// compile slot is not counted). Default 180 s.
    pub wall: Duration,
    /// Compiles at once on this node. Default 2.
    pub concurrent: usize,
    /// Most functions in a component (all its core modules). Default 200,000.
    pub max_functions: u64,
    /// Largest function body. Default 8 MiB: the largest functions of
    /// interpreters compiled to wasm are a few hundred KiB.
    pub max_function_bytes: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 3 << 30,
            cpu: Duration::from_secs(120),
            wall: Duration::from_secs(180),
            concurrent: 2,
            max_functions: 200_000,
            max_function_bytes: 8 << 20,
        }
    }
}

/// What the child needs to compile exactly as the parent's engine would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompileSpec {
    pub consume_fuel: bool,
    pub max_wasm_stack: usize,
    pub max_memory_bytes: u64,
    pub limits: CompileLimits,
}

/// Refuses components whose shape alone is out of bounds, before compiling:
/// too many functions, or a function body too large.
pub fn check_structure(bytes: &[u8], limits: &CompileLimits) -> Result<(), LoadError> {
    let mut functions: u64 = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        // Malformed binaries are the validator's to describe, when compiling.
        let Ok(payload) = payload else { return Ok(()) };
        if let wasmparser::Payload::CodeSectionEntry(body) = payload {
            functions += 1;
            if functions > limits.max_functions {
                return Err(LoadError::TooComplex(format!(
                    "more than {} functions (the compile limit `max_functions`)",
                    limits.max_functions
                )));
            }
            let size = body.range().len() as u64;
            if size > limits.max_function_bytes {
                return Err(LoadError::TooComplex(format!(
                    "a function body of {size} bytes; the compile limit `max_function_bytes` is {}",
                    limits.max_function_bytes
                )));
            }
        }
    }
    Ok(())
}

/// Compiles `bytes` in a child process (`program compile SPEC`) under
/// `spec.limits`; returns the serialized compile. Dropping the future kills
/// the child.
pub async fn compile_isolated(program: &PathBuf, spec: &CompileSpec, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    let limits = spec.limits;
    let spec_json = serde_json::to_string(spec).expect("a compile spec serializes");
    let mut child = tokio::process::Command::new(program)
        .arg("compile")
        .arg(spec_json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its stderr carries the reason it refused a component, not logs.
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LoadError::Compiler(format!("cannot start the compiler {}: {e}", program.display())))?;
    let mut stdin = child.stdin.take().expect("piped");
    // The compile comes into this process: bounded, so the child's
    // address space limit bounds this one too.
    let mut stdout = child.stdout.take().expect("piped").take(limits.memory_bytes);
    let mut stderr = child.stderr.take().expect("piped");
    let input = bytes.to_vec();
    let run = async move {
        let feed = async move {
            // A child that dies early closes its stdin: its status says why.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let mut artifact = Vec::new();
        let mut message = Vec::new();
        // The first 64 KiB of stderr are kept; the rest is read and dropped,
        // so that a talkative child never blocks on a full pipe.
        let errors = async {
            let _ = (&mut stderr).take(64 << 10).read_to_end(&mut message).await;
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        };
        let (_, read, _) = tokio::join!(feed, stdout.read_to_end(&mut artifact), errors);
        read.map_err(|e| LoadError::Compiler(format!("cannot read the compiler's output: {e}")))?;
        let status =
            child.wait().await.map_err(|e| LoadError::Compiler(format!("cannot wait for the compiler: {e}")))?;
        Ok::<_, LoadError>((status, artifact, String::from_utf8_lossy(&message).into_owned()))
    };
    let (status, artifact, message) = match tokio::time::timeout(limits.wall, run).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(LoadError::CompileLimit(format!(
                "compiling took longer than {} s (the compile limit `wall`)",
                limits.wall.as_secs()
            )));
        }
    };
    if status.success() {
        return Ok(artifact);
    }
    Err(failure(status, message.trim(), &limits))
}

/// Why a compile's child process failed, in the words of the limit it hit.
fn failure(status: std::process::ExitStatus, message: &str, limits: &CompileLimits) -> LoadError {
    use std::os::unix::process::ExitStatusExt as _;
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    if status.code() == Some(EXIT_INVALID) {
        return LoadError::Invalid(message.to_owned());
    }
    let out_of_memory = message.contains("memory allocation") || message.contains("out of memory");
    match status.signal() {
        Some(SIGXCPU | SIGKILL) if !out_of_memory => LoadError::CompileLimit(format!(
            "compiling used more than {} s of CPU (the compile limit `cpu`)",
            limits.cpu.as_secs()
        )),
        _ if out_of_memory || status.signal().is_some() => LoadError::CompileLimit(format!(
            "compiling needed more than {} MiB of memory (the compile limit `memory_bytes`)",
            limits.memory_bytes >> 20
        )),
        _ => LoadError::Compiler(format!("the compiler failed ({status}): {message}")),
    }
}

/// The child's exit code for a component the compiler refused.
const EXIT_INVALID: i32 = 65;

/// The child's side: limits itself, reads a component on stdin, writes its
/// serialized compile on stdout. Exit codes: 0 compiled, 65 the component is
/// invalid (the reason on stderr), others: the compiler failed.
pub fn compile_child(spec_json: &str) -> std::process::ExitCode {
    let fail = |code: u8, message: String| {
        let _ = writeln!(std::io::stderr(), "{message}");
        std::process::ExitCode::from(code)
    };
    let spec: CompileSpec = match serde_json::from_str(spec_json) {
        Ok(spec) => spec,
        Err(e) => return fail(2, format!("invalid compile spec: {e}")),
    };
    let limits = spec.limits;
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, limits.memory_bytes, limits.memory_bytes) {
        return fail(1, format!("cannot limit the compiler's memory: {e}"));
    }
    let cpu = limits.cpu.as_secs().max(1);
    // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::CPU, cpu, cpu + 1) {
        return fail(1, format!("cannot limit the compiler's CPU time: {e}"));
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        return fail(1, format!("cannot read the component: {e}"));
    }
    let engine = match super::engine_for_compiling(&spec) {
        Ok(engine) => engine,
        Err(e) => return fail(1, format!("cannot build the compiling engine: {e:#}")),
    };
    match engine.precompile_component(&bytes) {
        Ok(artifact) => match std::io::stdout().write_all(&artifact) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(1, format!("cannot write the compile: {e}")),
        },
        Err(e) => fail(EXIT_INVALID as u8, format!("{e:#}")),
    }
}
