//! `wasmjob workflow`: start a workflow (a chain, a group, a chord, or
//! stages of a tenant's jobs) and follow it as a whole.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;

use super::EXIT_TASK_FAILED;
use super::args::parse_duration;
use super::client::{Client, ServerArgs};
use super::remote::{or_dash, print_json, shown};
use crate::wire::{Workflow, WorkflowRequest, WorkflowStarted};
use crate::workflow::WorkflowState;

/// How often `--wait` reads the workflow again. Default 200 ms.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Start a workflow: the body of `POST /v1/workflows`, inline (such as
    /// '{"chain": [{"job": "a"}, {"job": "b"}]}'), from a file, or `-` for stdin.
    Start {
        workflow: String,
        /// Wait until every step has ended, then show it (exit 1 if it failed).
        #[arg(long)]
        wait: bool,
        /// With `--wait`: give up after this long.
        #[arg(long, value_parser = parse_duration, default_value = "5m")]
        timeout: Duration,
    },
    /// Show a workflow: its state and every step's.
    Show { id: String },
}

pub fn workflow(server: &ServerArgs, command: WorkflowCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let (id, wait) = match command {
        WorkflowCommand::Start { workflow, wait, timeout } => {
            let request: WorkflowRequest = serde_json::from_str(&body(&workflow)?).map_err(|e| {
                anyhow::anyhow!("not a workflow ({e}): give {{\"chain\": [...]}}, {{\"group\": [...]}}, {{\"chord\": {{\"group\": [...], \"callback\": {{...}}}}}} or {{\"stages\": [[...]]}}")
            })?;
            let started: WorkflowStarted = client.post("/v1/workflows", &request)?;
            if !wait {
                if server.json {
                    print_json(&started);
                } else {
                    println!("workflow {} started: {}", started.id, stage_ids(&started.stages));
                }
                return Ok(ExitCode::SUCCESS);
            }
            (started.id, Some(timeout))
        }
        WorkflowCommand::Show { id } => (id, None),
    };
    if crate::task::parse_id(&id).is_none() {
        anyhow::bail!("`{}` is not a workflow id", shown(&id));
    }
    let path = format!("/v1/workflows/{id}");
    let mut answer: Workflow = client.get(&path)?;
    if let Some(timeout) = wait {
        let deadline = Instant::now() + timeout;
        // Until every step has ended: a failed workflow's later stages are
        // revoked by the next heartbeat, its running steps run on.
        let settled = |w: &Workflow| w.stages.iter().flatten().all(|step| step.state.is_terminal());
        while !settled(&answer) && Instant::now() < deadline {
            std::thread::sleep(POLL);
            answer = client.get(&path)?;
        }
    }
    if server.json {
        print_json(&answer);
    } else {
        print_workflow(&answer);
    }
    Ok(match answer.state {
        WorkflowState::Failure => ExitCode::from(EXIT_TASK_FAILED),
        _ => ExitCode::SUCCESS,
    })
}

/// The body given: inline JSON, a file's, or stdin's (`-`).
fn body(given: &str) -> anyhow::Result<String> {
    use std::io::Read;
    if given.trim_start().starts_with('{') {
        return Ok(given.to_owned());
    }
    if given == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(given).map_err(|e| anyhow::anyhow!("cannot read {given}: {e}"))
}

/// Stages as `a → b, c → d`.
fn stage_ids(stages: &[Vec<String>]) -> String {
    stages.iter().map(|stage| stage.join(", ")).collect::<Vec<_>>().join(" → ")
}

fn print_workflow(w: &Workflow) {
    let state = serde_json::to_value(w.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    println!("workflow {} {state}", w.id);
    if let Some(reason) = &w.reason {
        println!("reason: {}", shown(reason));
    }
    if let Some(result) = &w.result {
        println!("result: {}", shown(&result.to_string()));
    }
    for (i, stage) in w.stages.iter().enumerate() {
        println!("stage {}:", i + 1);
        for step in stage {
            let result = step.result.as_ref().map(|r| format!(" → {}", shown(&r.to_string()))).unwrap_or_default();
            println!(
                "  {} {} {} ({}){result}",
                step.id,
                shown(&step.job),
                step.state.as_str(),
                or_dash(step.reason.as_ref())
            );
        }
    }
}
