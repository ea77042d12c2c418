//! The `wasmjob` command, built here so that the tests can run the engine as a
//! separate process (and kill it) through `CARGO_BIN_EXE_wasmjob-under-test`.

fn main() -> std::process::ExitCode {
    wasmjob::cli::run_from_args()
}
