//! The client subcommands: `upload`, `jobs`, `queue`, `status`, `wait`,
//! `tasks`, `revoke`, `logs`, `tenant`, `token` and `secret`, against a
//! server's API.
//! Tables for people by default; `--json` for scripts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};

use super::args::{parse_duration, parse_time, task_args};
use super::client::{Client, ServerArgs, with_progress};
use crate::store::{TaskState, UploadState};
use crate::task::QueueOptions;
use crate::tenant::QuotaOverrides;
use crate::wire::{
    Attempt, Event, JobList, JobRevoked, NewTenant, NewToken, Notice, QueueRequest, Queued, SecretList, SecretValue,
    Task, TaskDetail, TaskPage, TaskStateChange, Tenant, TenantChange, TenantList, Token, TokenScope, Tree,
    TreeRevoked, TreeTask, Upload, UploadAnswer,
};

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The job component (.wasm).
    component: PathBuf,
    /// Wait until the engine has compiled it (a Python or JavaScript job
    /// takes seconds), showing its progress. A rejected component exits with 3, as
    /// `run` does, whether refused at once or by its compile.
    /// Without it, a component still compiling after 2 s is left compiling.
    #[arg(long)]
    wait: bool,
    /// The name of the job the component holds: tasks of that name may be
    /// queued while it compiles, and wait for it. A component whose job has
    /// another name is rejected.
    #[arg(long)]
    name: Option<String>,
}

/// How long `upload` lets the server wait for the compile before it
/// answers that the upload is compiling. Default 2 s.
const UPLOAD_WAIT: &str = "2s";
/// How often `upload --wait` asks where the upload is. Default 500 ms.
const UPLOAD_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The job's name.
    job: String,
    /// The task's args, a JSON object.
    #[arg(long)]
    args: Option<String>,
    /// One arg as key=value (repeatable).
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    arg: Vec<String>,
    /// Do not start before this delay, such as 10s.
    #[arg(long, value_parser = parse_duration)]
    delay: Option<Duration>,
    /// Unique by args for this long, such as 1h: a same request within it
    /// answers the first task's id.
    #[arg(long, value_parser = parse_duration)]
    unique_for: Option<Duration>,
    /// Do not start before this time (RFC 3339, such as 2026-12-01T09:00:00Z).
    #[arg(long, conflicts_with = "delay", value_parser = parse_time)]
    run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Revoke the task if it has not started this long after it could.
    #[arg(long, value_parser = parse_duration)]
    expiry: Option<Duration>,
    /// Higher runs first.
    #[arg(long)]
    priority: Option<i32>,
    /// Overrides the job's maximum number of retries.
    #[arg(long)]
    max_retries: Option<u32>,
    /// The named queue it goes to. Default `default`.
    #[arg(long)]
    queue: Option<String>,
    /// Wait for the task to end and print it.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task's id.
    id: String,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The task's id (or, with `--job`, the job's name).
    target: String,
    /// Also revoke every task in the task's tree (queued from it, from them...).
    #[arg(long, conflicts_with = "job")]
    tree: bool,
    /// Revoke every task of the job named TARGET that has not ended.
    #[arg(long)]
    job: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The task's id.
    id: String,
    /// Give up after this long.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only tasks of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only tasks in this state (queued, started, retry, success, failure, revoked).
    #[arg(long)]
    state: Option<String>,
    /// How many (newest first).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// The `next` cursor of a previous page.
    #[arg(long)]
    before: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only events of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only events of this task.
    #[arg(long)]
    task: Option<String>,
}

/// How long `watch` waits before it reconnects a stream that ended.
/// Default 1 s.
const RECONNECT: Duration = Duration::from_secs(1);

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (admin), with quota overrides as JSON.
    Create {
        name: String,
        #[arg(long)]
        quotas: Option<String>,
    },
    /// Change a tenant's quotas (admin): `--quotas` as JSON (`null` puts
    /// one back to its default), and/or its egress allow-list.
    Set {
        name: String,
        #[arg(long)]
        quotas: Option<String>,
        /// Replace the allow-list of hosts its jobs may send HTTP requests
        /// to: `[scheme://]host[:port]`, `*.example.com` for subdomains
        /// (repeatable).
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_host: Vec<String>,
        /// Empty the allow-list: its jobs reach no host.
        #[arg(long, conflicts_with = "allow_host")]
        deny_egress: bool,
    },
    /// List tenants and their quotas (admin).
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a tenant (admin); its secret is shown once.
    Create {
        tenant: String,
        /// `read` or `write`.
        #[arg(long, default_value = "write")]
        scope: String,
    },
    /// Revoke a token (admin), effective at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret of the tenant; its value is read from stdin (one line,
    /// or everything piped), or given with --value.
    Set {
        name: String,
        /// The value (it then shows in the shell's history and `ps`).
        #[arg(long)]
        value: Option<String>,
    },
    /// List the tenant's secrets: names only, values are never served.
    List,
    /// Delete a secret.
    Delete { name: String },
}

pub(super) fn print_json(value: &impl Serialize) {
    // JSON escapes C0 controls in strings; DEL and C1 controls it leaves raw.
    let json = serde_json::to_string_pretty(value).expect("JSON prints");
    println!("{}", crate::runtime::escape_controls(&json));
}

/// Text for a terminal: guest-controlled strings (results, errors, logs,
/// docs) never reach it with raw control characters.
pub(super) fn shown(text: &str) -> String {
    crate::runtime::escape_controls(text).into_owned()
}

/// An optional value for a terminal: `-` for none.
pub(super) fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".into(), |v| shown(&v.to_string()))
}

/// A JSON value for a terminal: a string without its quotes.
fn json_shown(value: &Value) -> String {
    match value {
        Value::String(s) => shown(s),
        other => shown(&other.to_string()),
    }
}

pub fn upload(server: &ServerArgs, args: UploadArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let bytes = std::fs::read(&args.component).with_context(|| format!("cannot read {}", args.component.display()))?;
    // A job's name needs no escaping in a URL.
    if let Some(name) = &args.name {
        crate::job::validate_name(name).with_context(|| format!("--name `{name}`"))?;
    }
    let mut answer: UploadAnswer = with_progress(&format!("uploading {} KiB", bytes.len() >> 10), || {
        let name = args.name.as_deref().map(|n| format!("&name={n}")).unwrap_or_default();
        client.post_bytes(&format!("/v1/jobs?wait={UPLOAD_WAIT}{name}"), &bytes, "application/wasm")
    })?;
    if let UploadAnswer::Pending(upload) = &answer
        && upload.state == UploadState::Compiling
        && args.wait
    {
        let location = upload.location.clone();
        answer = with_progress("compiling", || {
            loop {
                match client.get::<Upload>(&location) {
                    Ok(upload) if upload.state == UploadState::Compiling => std::thread::sleep(UPLOAD_POLL),
                    other => break other.map(UploadAnswer::Pending),
                }
            }
        })?;
    }
    let rejected = matches!(&answer, UploadAnswer::Pending(u) if u.state == UploadState::Rejected);
    if server.json {
        print_json(&answer);
    } else {
        match &answer {
            UploadAnswer::Registered(job) => println!("registered {} version {}", shown(&job.name), job.version),
            UploadAnswer::Pending(u) => match u.state {
                UploadState::Compiling => {
                    println!("compiling as upload {} (`wasmjob jobs` shows when it is ready)", u.id)
                }
                UploadState::Rejected => println!("rejected: {}", or_dash(u.reason.as_ref())),
                UploadState::Ready => println!("registered {} version {}", or_dash(u.name.as_ref()), u.id),
            },
        }
    }
    Ok(if rejected { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

pub fn jobs(server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let answer: JobList = Client::new(server)?.get("/v1/jobs")?;
    if server.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    for (kind, jobs) in [("regular", &answer.regular), ("periodic", &answer.periodic)] {
        println!("{kind} jobs:");
        for job in jobs {
            let version = &job.version[..job.version.len().min(12)];
            println!("  {:<24} {:<14} {}", shown(&job.name), version, shown(&job.doc));
        }
    }
    if !answer.uploads.is_empty() {
        println!("uploads not ready:");
        for upload in &answer.uploads {
            let how = match upload.state {
                UploadState::Compiling => format!("compiling for {}", or_dash(upload.compiling_for.as_ref())),
                _ => format!("rejected: {}", or_dash(upload.reason.as_ref())),
            };
            println!("  {:<14} {how}", &upload.id[..upload.id.len().min(12)]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn queue(server: &ServerArgs, args: QueueArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let task_args: Value = serde_json::from_str(&task_args(args.args.as_deref(), &args.arg)?)?;
    let options = QueueOptions {
        delay: args.delay,
        run_at: args.run_at,
        unique_for: args.unique_for,
        expiry: args.expiry,
        priority: args.priority,
        max_retries: args.max_retries,
        queue: args.queue,
    };
    let request = QueueRequest { job: args.job, args: task_args, options };
    let answer: Queued = client.post("/v1/tasks", &request)?;
    if !args.wait {
        if server.json {
            print_json(&answer)
        } else {
            println!("{}", answer.id)
        }
        return Ok(ExitCode::SUCCESS);
    }
    wait_and_print(&client, server, &answer.id, Duration::from_secs(300))
}

fn wait_and_print(client: &Client, server: &ServerArgs, id: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let deadline = std::time::Instant::now() + timeout;
    let task = with_progress(&format!("waiting for task {id}"), || -> anyhow::Result<Task> {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now()).min(Duration::from_secs(60));
            let task: Task = client.get(&format!("/v1/tasks/{id}/wait?timeout={}ms", left.as_millis()))?;
            if task.state.is_terminal() || left.is_zero() {
                return Ok(task);
            }
        }
    })?;
    print_task(server, &task, &[], &[]);
    Ok(if task.state == TaskState::Success { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_TASK_FAILED) })
}

fn print_task(server: &ServerArgs, task: &Task, children: &[String], attempts: &[Attempt]) {
    if server.json {
        return print_json(&TaskDetail {
            task: task.clone(),
            children: children.to_vec(),
            attempts: attempts.to_vec(),
        });
    }
    let fields = [
        ("id", shown(&task.id)),
        ("job", shown(&task.job)),
        ("state", task.state.as_str().to_owned()),
        ("reason", or_dash(task.reason.as_ref())),
        ("attempt", task.attempt.to_string()),
        ("result", task.result.as_ref().map_or_else(|| "-".into(), json_shown)),
        ("error", or_dash(task.error.as_ref())),
        ("fuel", or_dash(task.fuel)),
        ("wall_time_us", or_dash(task.wall_time_us)),
        ("from_task", or_dash(task.from_task.as_ref())),
    ];
    for (field, value) in fields {
        println!("{field:<13} {value}");
    }
    if let Some(progress) = &task.progress {
        println!("{:<13} {:.0}% {}", "progress", progress.fraction * 100.0, shown(&progress.message));
    }
    if !children.is_empty() {
        println!("{:<13} {}", "children", children.join(" "));
    }
    // The earlier attempts, when there were some.
    if attempts.len() > 1 {
        for a in attempts {
            println!(
                "{:<13} {} {} {} {}",
                format!("attempt {}", a.attempt),
                a.state.as_str(),
                or_dash(a.reason.as_ref()),
                or_dash(a.node.as_ref()),
                shown(a.error.as_deref().unwrap_or(""))
            );
        }
    }
}

pub fn status(server: &ServerArgs, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let detail: TaskDetail = Client::new(server)?.get(&format!("/v1/tasks/{}", args.id))?;
    print_task(server, &detail.task, &detail.children, &detail.attempts);
    Ok(ExitCode::SUCCESS)
}

pub fn retry(server: &ServerArgs, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let answer: TaskStateChange = Client::new(server)?.post(&format!("/v1/tasks/{}/retry", args.id), &json!({}))?;
    if server.json {
        print_json(&answer);
    } else {
        println!("task {} is {} again", answer.id, answer.state);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tree(server: &ServerArgs, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let answer: Tree = Client::new(server)?.get(&format!("/v1/tasks/{}/tree", args.id))?;
    if server.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let mut children: HashMap<&str, Vec<&TreeTask>> = HashMap::new();
    for t in &answer.tasks {
        children.entry(t.from_task.as_deref().unwrap_or_default()).or_default().push(t);
    }
    // Depth first from the task asked for, each child under its parent.
    let mut stack: Vec<(&TreeTask, usize)> =
        answer.tasks.iter().filter(|t| t.id == answer.id).map(|t| (t, 0)).collect();
    while let Some((t, depth)) = stack.pop() {
        let indent = "  ".repeat(depth);
        let (job, state, reason) = (shown(&t.job), t.state.as_str(), or_dash(t.reason.as_ref()));
        println!("{indent}{} {job} {state} ({reason})", t.id);
        for child in children.get(t.id.as_str()).into_iter().flatten().rev() {
            stack.push((child, depth + 1));
        }
    }
    if answer.truncated {
        println!("(more tasks not shown)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn wait(server: &ServerArgs, args: WaitArgs) -> anyhow::Result<ExitCode> {
    wait_and_print(&Client::new(server)?, server, &args.id, args.timeout)
}

pub fn tasks(server: &ServerArgs, args: TasksArgs) -> anyhow::Result<ExitCode> {
    let mut query = vec![format!("limit={}", args.limit)];
    query.extend(args.job.map(|j| format!("job={j}")));
    query.extend(args.state.map(|s| format!("state={s}")));
    query.extend(args.before.map(|b| format!("before={b}")));
    let answer: TaskPage = Client::new(server)?.get(&format!("/v1/tasks?{}", query.join("&")))?;
    if server.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>8}  {:<16} {:<8} {:>7}  {:<18} result/error", "id", "job", "state", "attempt", "reason");
    for t in &answer.tasks {
        let outcome = match &t.result {
            Some(result) => json_shown(result),
            None => or_dash(t.error.as_ref()),
        };
        println!(
            "{:>8}  {:<16} {:<8} {:>7}  {:<18} {}",
            t.id,
            shown(&t.job),
            t.state.as_str(),
            t.attempt,
            or_dash(t.reason.as_ref()),
            outcome.chars().take(60).collect::<String>()
        );
    }
    if let Some(next) = &answer.next {
        println!("more: --before {next}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(server: &ServerArgs, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    // A job's or a tree's tasks: how many were revoked, and are stopping.
    fn many<T: serde::de::DeserializeOwned + Serialize>(
        client: &Client,
        server: &ServerArgs,
        path: &str,
        counts: fn(&T) -> (usize, usize),
    ) -> anyhow::Result<ExitCode> {
        let answer: T = client.post(path, &json!({}))?;
        if server.json {
            print_json(&answer);
        } else {
            let (revoked, stopping) = counts(&answer);
            println!("revoked {revoked}; stopping {stopping} running");
        }
        Ok(ExitCode::SUCCESS)
    }
    match (args.job, args.tree) {
        (true, _) => {
            many(&client, server, &format!("/v1/jobs/{}/revoke", args.target), |a: &JobRevoked| (a.revoked, a.stopping))
        }
        (false, true) => many(&client, server, &format!("/v1/tasks/{}/revoke-tree", args.target), |a: &TreeRevoked| {
            (a.revoked, a.stopping)
        }),
        (false, false) => {
            let answer: TaskStateChange = client.post(&format!("/v1/tasks/{}/revoke", args.target), &json!({}))?;
            if server.json {
                print_json(&answer);
            } else {
                println!("task {} is {}", args.target, answer.state);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn logs(server: &ServerArgs, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let log = Client::new(server)?.get_text(&format!("/v1/tasks/{}/logs", args.id))?;
    print!("{}", shown(&log));
    Ok(ExitCode::SUCCESS)
}

pub fn tenant(server: &ServerArgs, command: TenantCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let changed: Tenant = match command {
        TenantCommand::Create { name, quotas } => {
            let quotas = match quotas {
                Some(q) => serde_json::from_str(&q).context("--quotas is not a JSON object")?,
                None => QuotaOverrides::new(),
            };
            client.post("/v1/tenants", &NewTenant { name, quotas })?
        }
        TenantCommand::Set { name, quotas, allow_host, deny_egress } => {
            let mut quotas: QuotaOverrides = match quotas {
                Some(q) => serde_json::from_str(&q).context("--quotas is not a JSON object")?,
                None => QuotaOverrides::new(),
            };
            if deny_egress || !allow_host.is_empty() {
                quotas.insert("allowed_hosts".into(), json!(allow_host));
            }
            anyhow::ensure!(!quotas.is_empty(), "nothing to change: give --quotas, --allow-host or --deny-egress");
            client.patch(&format!("/v1/tenants/{name}"), &TenantChange { quotas })?
        }
        TenantCommand::List => {
            let answer: TenantList = client.get("/v1/tenants")?;
            if server.json {
                print_json(&answer);
            } else {
                for t in &answer.tenants {
                    println!("{:<24} {}", t.name, serde_json::to_string(&t.quotas)?);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_json(&changed);
    Ok(ExitCode::SUCCESS)
}

pub fn token(server: &ServerArgs, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        TokenCommand::Create { tenant, scope } => {
            let scope: TokenScope = serde_json::from_value(json!(scope))
                .map_err(|_| anyhow::anyhow!("--scope must be `read` or `write`, not `{scope}`"))?;
            let answer: Token = client.post(&format!("/v1/tenants/{tenant}/tokens"), &NewToken { scope })?;
            if server.json {
                print_json(&answer);
            } else {
                let scope = serde_json::to_value(scope)?;
                println!("token {} for {tenant} ({}); shown once:", answer.id, json_shown(&scope));
                println!("{}", answer.token);
            }
        }
        TokenCommand::Revoke { id } => {
            client.delete::<()>(&format!("/v1/tokens/{id}"))?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn secret(server: &ServerArgs, command: SecretCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        SecretCommand::Set { name, value } => {
            // Checked here too, so that a name is never read as a path.
            crate::secret::validate_secret_name(&name)?;
            let value = match value {
                Some(value) => value,
                None => read_value()?,
            };
            anyhow::ensure!(!value.is_empty(), "the value is empty: nothing was set");
            client.put::<()>(&format!("/v1/secrets/{name}"), &SecretValue { value })?;
            println!("secret {name} set");
        }
        SecretCommand::List => {
            let answer: SecretList = client.get("/v1/secrets")?;
            if server.json {
                print_json(&answer);
            } else {
                for s in &answer.secrets {
                    println!("{:<32} set {}", s.name, or_dash(s.updated_at.map(|at| at.to_rfc3339())));
                }
            }
        }
        SecretCommand::Delete { name } => {
            crate::secret::validate_secret_name(&name)?;
            client.delete::<()>(&format!("/v1/secrets/{name}"))?;
            println!("secret {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the tenant's events as they happen, until interrupted; a stream
/// that ends is resumed from its last event.
pub fn watch(server: &ServerArgs, args: WatchArgs) -> anyhow::Result<ExitCode> {
    use std::io::BufRead;
    let client = Client::new(server)?;
    let mut last: Option<String> = None;
    let mut first = true;
    loop {
        let lines = match client.stream("/v1/events", last.as_deref()) {
            Ok(lines) => lines,
            // Refused (a revoked token, a read-only one...): trying again
            // would not help.
            Err(e) if first || e.to_string().starts_with("HTTP 4") => return Err(e),
            Err(e) => {
                eprintln!("cannot reconnect ({e:#}); trying again");
                std::thread::sleep(RECONNECT);
                continue;
            }
        };
        if first {
            eprintln!("watching (Ctrl-C stops)");
        }
        first = false;
        let (mut id, mut kind) = (None, None);
        for line in lines.lines() {
            let Ok(line) = line else { break };
            if let Some(value) = line.strip_prefix("id:") {
                id = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("event:") {
                kind = Some(value.trim().to_owned());
            } else if let Some(data) = line.strip_prefix("data:") {
                let kind = kind.take().unwrap_or_default();
                if let Some(id) = id.take() {
                    last = Some(id);
                }
                show_event(server, &args, &kind, data.trim());
            }
        }
        eprintln!("the stream ended; resuming");
        std::thread::sleep(RECONNECT);
    }
}

/// One message of the stream, as `watch` prints it.
fn show_event(server: &ServerArgs, args: &WatchArgs, kind: &str, data: &str) {
    let Ok(event) = serde_json::from_str::<Event>(data) else {
        // A notice (`lost`, `reset`), or a type this client does not know.
        let message = serde_json::from_str::<Notice>(data).map(|n| n.message).unwrap_or_else(|_| data.to_owned());
        return eprintln!("-- {kind}: {}", shown(&message));
    };
    let job = args.job.as_ref().is_none_or(|j| event.job.as_deref() == Some(&j.to_ascii_lowercase()));
    let task = args.task.as_ref().is_none_or(|t| event.task.as_deref() == Some(t));
    if !(job && task) {
        return;
    }
    if server.json {
        return print_json_line(&event);
    }
    let at = chrono::DateTime::from_timestamp_millis(event.at).map(|t| t.format("%H:%M:%S%.3f").to_string());
    println!(
        "{} {:<15} {:>8} {:<16} {} {}",
        or_dash(at),
        kind,
        or_dash(event.task.as_ref()),
        or_dash(event.job.as_ref()),
        event.attempt.map(|a| format!("attempt {a}")).unwrap_or_default(),
        or_dash(event.reason.as_ref().or(event.version.as_ref())),
    );
}

/// One JSON value on one line, for scripts that read line by line.
fn print_json_line(value: &impl Serialize) {
    let json = serde_json::to_string(value).expect("JSON prints");
    println!("{}", crate::runtime::escape_controls(&json));
}

/// A secret's value from stdin: one line typed without echo at a
/// terminal, all of a pipe (without its final newline).
fn read_value() -> anyhow::Result<String> {
    use std::io::{IsTerminal, Read};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(rpassword::prompt_password("value (not shown): ")?);
    }
    let mut value = String::new();
    stdin.lock().read_to_string(&mut value)?;
    let trimmed = value.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&value);
    Ok(trimmed.to_owned())
}
