//! Metering host work: host calls whose cost grows with an argument charge
//! the task fuel in proportion, so a task cannot buy seconds of host CPU
//! for a few instructions.
//!
//! The host side of a call adds to the task's [`HostWork`]; the sandbox
//! compares it with the task's remaining fuel at every epoch tick and when
//! the call ends (see `Runtime::sandboxed`): a task whose host work
//! outgrows what its own work left ends `fuel-exhausted`, and the fuel it
//! reports consumed includes the host work. The rates are documented in
//! `wit/job.wit`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::SeedableRng as _;

/// Fuel per byte a task writes to stdout or stderr, or logs. Default 4.
pub const FUEL_PER_LOG_BYTE: u64 = 4;
/// Fuel per byte of args a task queues (`queue-task`). Default 4.
pub const FUEL_PER_ARGS_BYTE: u64 = 4;
/// Fuel per byte of `get-random-bytes` (WASI draws a `u32` per byte).
/// Default 64: about what a draw costs the host, in the time a spinning
/// guest burns that much fuel (1e9 fuel is about 70 ms here).
pub const FUEL_PER_RANDOM_BYTE: u64 = 64;
/// Fuel per `get-random-u64` call (one draw per call): the call itself is
/// the host's cost, about a microsecond. Default 16,384.
pub const FUEL_PER_RANDOM_CALL: u64 = 16_384;
/// Most bytes one `get-random-bytes` call may ask for. Default 1 MiB.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Fuel a task's host work has cost so far. Clones count into the same
/// total.
#[derive(Clone, Default, Debug)]
pub struct HostWork(Arc<AtomicU64>);

impl HostWork {
    /// Adds `units` of work at `rate` fuel each.
    pub fn charge(&self, units: u64, rate: u64) {
        self.0.fetch_add(units.saturating_mul(rate), Ordering::Relaxed);
    }

    /// The fuel charged so far.
    pub fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A generator that charges every draw to the task: WASI's secure one
/// (ChaCha12) or its insecure one (the fast `SmallRng`), as wasmtime's own
/// defaults, both seeded from the system's generator.
pub struct MeteredRng<R> {
    inner: R,
    work: HostWork,
}

impl MeteredRng<rand::rngs::StdRng> {
    /// For `wasi:random/random`.
    pub fn secure(work: HostWork) -> Self {
        Self { inner: rand::rngs::StdRng::from_rng(&mut rand::rng()), work }
    }
}

impl MeteredRng<rand::rngs::SmallRng> {
    /// For `wasi:random/insecure`.
    pub fn insecure(work: HostWork) -> Self {
        Self { inner: rand::rngs::SmallRng::from_rng(&mut rand::rng()), work }
    }
}

impl<R: rand::Rng> rand::TryRng for MeteredRng<R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.work.charge(1, FUEL_PER_RANDOM_BYTE);
        self.inner.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.work.charge(1, FUEL_PER_RANDOM_CALL);

        self.inner.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.work.charge(dst.len() as u64, FUEL_PER_RANDOM_BYTE);
        self.inner.try_fill_bytes(dst)
    }
}

impl rand::TryCryptoRng for MeteredRng<rand::rngs::StdRng> {}
