//! The integration tests of wasmjob live in `tests/all/`; this crate has no library code.
