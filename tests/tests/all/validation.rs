//! Components the engine must refuse, each with a message that names why.

use wasmjob::runtime::LoadError;

use crate::support::RUNTIME;

async fn refuse(bytes: &[u8]) -> LoadError {
    match RUNTIME.load(bytes).await {
        Ok(job) => panic!("accepted as {}", job.metadata().name),
        Err(e) => e,
    }
}

#[tokio::test]
async fn random_bytes_are_not_wasm() {
    let e = refuse(b"\x7fELF random bytes that are not wasm").await;
    assert!(matches!(e, LoadError::NotWasm), "{e}");
    assert!(e.to_string().contains("not a WebAssembly binary"));
}

#[tokio::test]
async fn a_core_module_is_not_a_component() {
    // The smallest valid core module: magic and version 1.
    let e = refuse(b"\0asm\x01\0\0\0").await;
    assert!(matches!(e, LoadError::CoreModule), "{e}");
    assert!(e.to_string().contains("core WebAssembly module, not a component"));
}

#[tokio::test]
async fn a_truncated_component_is_invalid() {
    let bytes = std::fs::read(wasmjob::examples::ADDITION).unwrap();
    let e = refuse(&bytes[..bytes.len() / 2]).await;
    assert!(matches!(e, LoadError::Invalid(_)), "{e}");
}

#[tokio::test]
async fn a_component_missing_an_export_is_not_a_job() {
    let bytes = std::fs::read(wasmjob::examples::NOT_A_JOB).unwrap();
    let e = refuse(&bytes).await;
    assert!(matches!(e, LoadError::NotAJob(_)), "{e}");
    let message = e.to_string();
    let names_an_export =
        ["metadata", "call", "overlap-key", "is-due"].iter().any(|x| message.contains(&format!("`{x}`")));
    assert!(names_an_export, "the message should name the missing export: {message}");
}

#[tokio::test]
async fn a_component_with_a_forbidden_import_is_refused() {
    let bytes = std::fs::read(wasmjob::examples::FORBIDDEN_IMPORT).unwrap();
    let e = refuse(&bytes).await;
    assert!(matches!(e, LoadError::UnsupportedImport(_)), "{e}");
    assert!(e.to_string().contains("evil:net/raw-socket"), "the message should name the import: {e}");
}

#[tokio::test]
async fn a_loop_in_metadata_is_stopped_and_reported() {
    let bytes = std::fs::read(wasmjob::examples::METADATA_LOOP).unwrap();
    let e = refuse(&bytes).await;
    assert!(matches!(e, LoadError::MetadataFailed(_)), "{e}");
    crate::support::assert_engine_still_works().await;
}

#[tokio::test]
async fn an_oversized_component_is_refused() {
    let bytes = vec![0u8; RUNTIME.limits().max_component_bytes + 1];
    assert!(matches!(refuse(&bytes).await, LoadError::TooLarge { .. }));
}

#[tokio::test]
async fn the_same_bytes_loaded_twice_at_once_compile_once() {
    let runtime = wasmjob::runtime::Runtime::new(wasmjob::runtime::RuntimeConfig {
        max_instances: 10,
        ..wasmjob::runtime::RuntimeConfig::default()
    })
    .unwrap();
    let bytes = std::fs::read(wasmjob::examples::FIB).unwrap();
    // Polled together: the second finds the first's compile in flight.
    let (a, b) = tokio::join!(runtime.load(&bytes), runtime.load(&bytes));
    assert_eq!(a.unwrap().hash(), b.unwrap().hash());
    assert_eq!(runtime.compiled(), 1, "one compile for both loads");
    // Once it is over, a new load compiles again (this runtime has no cache).
    runtime.load(&bytes).await.unwrap();
    assert_eq!(runtime.compiled(), 2);
    // A refusal is shared too, and refuses both.
    let broken = b"\0asm\x0d\x00\x01\x00garbage".to_vec();
    let (a, b) = tokio::join!(runtime.load(&broken), runtime.load(&broken));
    assert!(matches!((a, b), (Err(LoadError::Invalid(_)), Err(LoadError::Invalid(_)))));
}
