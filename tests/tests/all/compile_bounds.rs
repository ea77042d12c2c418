//! Compiling is bounded: a component shaped to make the compiler take
//! minutes or gigabytes is refused, naming the limit it hit, the compile
//! runs in a child process the engine kills, and the engine goes on
//! compiling and running other jobs.

use std::time::{Duration, Instant};

use wasmjob::runtime::{CompileLimits, LoadError, Runtime, RuntimeConfig};

use crate::support::assert_engine_still_works;

/// A component with one never-called function whose `locals` locals are
/// all live across a loop of `statements` additions: register allocation
/// grows much faster than its size. `bomb(8000, 120_000)` (1.2 MB) takes
/// about a minute of CPU to compile here, so any limit of a few seconds
/// stops it on any machine; `bomb(20_000, 200_000)` needs gigabytes.
fn bomb(locals: usize, statements: usize) -> Vec<u8> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut body = String::with_capacity(statements * 48);
    for _ in 0..statements {
        let (a, b, c) = (1 + next(locals), 1 + next(locals), 1 + next(locals));
        body.push_str(&format!("local.get {a} local.get {b} i64.add local.set {c} "));
    }
    let wat = format!(
        "(component (core module (func (param i32) (result i64) (local {}) \
         (loop $l {body} local.get 0 br_if $l) local.get 1)))",
        vec!["i64"; locals].join(" ")
    );
    wat::parse_str(wat).expect("the bomb is valid text")
}

/// A runtime that compiles in the engine's own child process under `limits`.
fn runtime(limits: CompileLimits) -> Runtime {
    Runtime::new(RuntimeConfig {
        compiler: Some(env!("CARGO_BIN_EXE_wasmjob-under-test").into()),
        compile: limits,
        max_instances: 10,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_compile_over_its_cpu_time_is_refused_naming_the_limit() {
    let runtime = runtime(CompileLimits { cpu: Duration::from_secs(1), ..CompileLimits::default() });
    let started = Instant::now();
    let refused = runtime.load(&bomb(8000, 120_000)).await.err().expect("the bomb compiled");
    assert!(matches!(&refused, LoadError::CompileLimit(m) if m.contains("`cpu`")), "{refused}");
    eprintln!("refused after {:?}: {refused}", started.elapsed());
    assert_engine_still_works().await;
    runtime.load(&std::fs::read(wasmjob::examples::ADDITION).unwrap()).await.expect("a sound job is refused");
}

#[tokio::test]
async fn a_compile_over_its_wall_time_is_killed() {
    let limits = CompileLimits { wall: Duration::from_millis(300), ..CompileLimits::default() };
    let runtime = runtime(limits);
    let started = Instant::now();
    let refused = runtime.load(&bomb(8000, 120_000)).await.err().expect("the bomb compiled");
    assert!(matches!(&refused, LoadError::CompileLimit(m) if m.contains("`wall`")), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(10), "the compile was not killed at its wall limit");
}

#[tokio::test]
async fn a_compile_over_its_memory_is_refused_naming_the_limit() {
    let runtime = runtime(CompileLimits { memory_bytes: 512 << 20, ..CompileLimits::default() });
    let refused = runtime.load(&bomb(20_000, 200_000)).await.err().expect("the bomb compiled");
    assert!(matches!(&refused, LoadError::CompileLimit(m) if m.contains("`memory_bytes`")), "{refused}");
    runtime.load(&std::fs::read(wasmjob::examples::ADDITION).unwrap()).await.expect("a sound job is refused");
}

#[tokio::test]
async fn a_function_too_large_is_refused_before_compiling() {
    let runtime = runtime(CompileLimits { max_function_bytes: 64 << 10, ..CompileLimits::default() });
    let refused = runtime.load(&bomb(100, 20_000)).await.err().expect("the bomb compiled");
    assert!(matches!(&refused, LoadError::TooComplex(m) if m.contains("max_function_bytes")), "{refused}");
}

#[tokio::test]
async fn a_compile_stops_when_the_engine_stops() {
    let runtime = std::sync::Arc::new(runtime(CompileLimits::default()));
    let compiling = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.load(&bomb(8000, 120_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    runtime.stop_compiling();
    let refused = compiling.await.unwrap().err().expect("the bomb compiled");
    assert!(matches!(refused, LoadError::ShuttingDown), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
