//! The `wasmjob` binary; the command line lives in `wasmjob::cli`.

fn main() -> std::process::ExitCode {
    wasmjob::cli::run_from_args()
}
