//! `wasmjob compile SPEC`: the engine's compiler child process (hidden).
//! It reads a component on stdin and writes its compile on stdout, within
//! the limits in SPEC ([`crate::runtime::compiler`]).

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The compile spec, as JSON.
    spec: String,
}

pub fn compile(args: CompileArgs) -> ExitCode {
    crate::runtime::compiler::compile_child(&args.spec)
}
