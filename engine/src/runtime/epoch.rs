//! The epoch ticker behind wall-clock deadlines.
//!
//! One thread increments the engine's epoch every [`EPOCH_TICK`]. Each store
//! checks its deadline when the epoch moves (see `Runtime::new_store`): before
//! the deadline it yields to the async executor, so a spinning guest cannot
//! hold a worker thread; past it, it traps with `Interrupt`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::EngineWeak;

/// How often the epoch advances: the precision of deadlines and the longest a
/// guest runs without yielding. Default 2 ms.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Stops the ticker thread when dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: EngineWeak) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasmjob-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .expect("cannot spawn the epoch ticker thread")
        };
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
