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
use serde_json::{Value, json};

use super::args::{parse_duration, task_args};
use super::client::{Client, ServerArgs, with_progress};

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
    /// Revoke the task if it has not started this long after it could.
    #[arg(long, value_parser = parse_duration)]
    expiry: Option<Duration>,
    /// Higher runs first.
    #[arg(long)]
    priority: Option<i32>,
    /// Overrides the job's maximum number of retries.
    #[arg(long)]
    max_retries: Option<u32>,
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

fn print_json(value: &Value) {
    // JSON escapes C0 controls in strings; DEL and C1 controls it leaves raw.
    let json = serde_json::to_string_pretty(value).expect("JSON prints");
    println!("{}", crate::runtime::escape_controls(&json));
}

/// A value as text for a terminal: guest-controlled strings (results,
/// errors, logs, docs) never reach it with raw control characters.
fn text(value: &Value) -> String {
    let text = match value {
        Value::Null => return "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    crate::runtime::escape_controls(&text).into_owned()
}

pub fn upload(server: &ServerArgs, args: UploadArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let bytes = std::fs::read(&args.component).with_context(|| format!("cannot read {}", args.component.display()))?;
    // A job's name needs no escaping in a URL.
    if let Some(name) = &args.name {
        crate::job::validate_name(name).with_context(|| format!("--name `{name}`"))?;
    }
    let mut answer = with_progress(&format!("uploading {} KiB", bytes.len() >> 10), || {
        let name = args.name.as_deref().map(|n| format!("&name={n}")).unwrap_or_default();
        client.post_bytes(&format!("/v1/jobs?wait={UPLOAD_WAIT}{name}"), &bytes, "application/wasm")
    })?;
    if answer["state"] == "compiling" && args.wait {
        let location = text(&answer["location"]);
        answer = with_progress("compiling", || {
            loop {
                match client.get(&location) {
                    Ok(upload) if upload["state"] == "compiling" => std::thread::sleep(UPLOAD_POLL),
                    other => break other,
                }
            }
        })?;
    }
    if server.json {
        print_json(&answer);
    } else if answer["state"] == "compiling" {
        println!("compiling as upload {} (`wasmjob jobs` shows when it is ready)", text(&answer["id"]));
    } else if answer["state"] == "rejected" {
        println!("rejected: {}", text(&answer["reason"]));
    } else {
        let version = if answer["version"].is_null() { &answer["id"] } else { &answer["version"] };
        println!("registered {} version {}", text(&answer["name"]), text(version));
    }
    Ok(if answer["state"] == "rejected" { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

pub fn jobs(server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let answer = Client::new(server)?.get("/v1/jobs")?;
    if server.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    for kind in ["regular", "periodic"] {
        println!("{kind} jobs:");
        for job in answer[kind].as_array().into_iter().flatten() {
            let version = text(&job["version"]);
            println!("  {:<24} {:<14} {}", text(&job["name"]), &version[..version.len().min(12)], text(&job["doc"]));
        }
    }
    let uploads = answer["uploads"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !uploads.is_empty() {
        println!("uploads not ready:");
        for upload in uploads {
            let id = text(&upload["id"]);
            let how = match upload["state"].as_str() {
                Some("compiling") => format!("compiling for {}", text(&upload["compiling_for"])),
                _ => format!("rejected: {}", text(&upload["reason"])),
            };
            println!("  {:<14} {how}", &id[..id.len().min(12)]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn queue(server: &ServerArgs, args: QueueArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let task_args: Value = serde_json::from_str(&task_args(args.args.as_deref(), &args.arg)?)?;
    let millis = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    let options = json!({
        "delay": millis(args.delay),
        "expiry": millis(args.expiry),
        "priority": args.priority,
        "max_retries": args.max_retries,
    });
    let answer = client.post("/v1/tasks", &json!({ "job": args.job, "args": task_args, "options": options }))?;
    let id = text(&answer["id"]);
    if !args.wait {
        if server.json {
            print_json(&answer)
        } else {
            println!("{id}")
        }
        return Ok(ExitCode::SUCCESS);
    }
    wait_and_print(&client, server, &id, Duration::from_secs(300))
}

fn wait_and_print(client: &Client, server: &ServerArgs, id: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let deadline = std::time::Instant::now() + timeout;
    let task = with_progress(&format!("waiting for task {id}"), || -> anyhow::Result<Value> {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now()).min(Duration::from_secs(60));
            let task = client.get(&format!("/v1/tasks/{id}/wait?timeout={}ms", left.as_millis()))?;
            let finished = matches!(task["state"].as_str(), Some("success" | "failure" | "revoked"));
            if finished || left.is_zero() {
                return Ok(task);
            }
        }
    })?;
    print_task(server, &task);
    Ok(if task["state"] == "success" { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_TASK_FAILED) })
}

fn print_task(server: &ServerArgs, task: &Value) {
    if server.json {
        return print_json(task);
    }
    for field in ["id", "job", "state", "reason", "attempt", "result", "error", "fuel", "wall_time_us", "from_task"] {
        println!("{field:<13} {}", text(&task[field]));
    }
    if let Some(children) = task["children"].as_array().filter(|c| !c.is_empty()) {
        println!("{:<13} {}", "children", children.iter().map(text).collect::<Vec<_>>().join(" "));
    }
}

pub fn status(server: &ServerArgs, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let task = Client::new(server)?.get(&format!("/v1/tasks/{}", args.id))?;
    print_task(server, &task);
    Ok(ExitCode::SUCCESS)
}

pub fn retry(server: &ServerArgs, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let answer = Client::new(server)?.post(&format!("/v1/tasks/{}/retry", args.id), &json!({}))?;
    if server.json {
        print_json(&answer);
    } else {
        println!("task {} is {} again", text(&answer["id"]), text(&answer["state"]));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tree(server: &ServerArgs, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let answer = Client::new(server)?.get(&format!("/v1/tasks/{}/tree", args.id))?;
    if server.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let tasks = answer["tasks"].as_array().cloned().unwrap_or_default();
    let mut children: HashMap<String, Vec<&Value>> = HashMap::new();
    for t in &tasks {
        children.entry(text(&t["from_task"])).or_default().push(t);
    }
    // Depth first from the task asked for, each child under its parent.
    let mut stack: Vec<(&Value, usize)> = tasks.iter().filter(|t| t["id"] == answer["id"]).map(|t| (t, 0)).collect();
    while let Some((t, depth)) = stack.pop() {
        let indent = "  ".repeat(depth);
        println!("{indent}{} {} {} ({})", text(&t["id"]), text(&t["job"]), text(&t["state"]), text(&t["reason"]));
        for child in children.get(&text(&t["id"])).into_iter().flatten().rev() {
            stack.push((child, depth + 1));
        }
    }
    if answer["truncated"] == true {
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
    let answer = Client::new(server)?.get(&format!("/v1/tasks?{}", query.join("&")))?;
    if server.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>8}  {:<16} {:<8} {:>7}  {:<18} result/error", "id", "job", "state", "attempt", "reason");
    for t in answer["tasks"].as_array().into_iter().flatten() {
        let outcome = if t["result"].is_null() { text(&t["error"]) } else { text(&t["result"]) };
        println!(
            "{:>8}  {:<16} {:<8} {:>7}  {:<18} {}",
            text(&t["id"]),
            text(&t["job"]),
            text(&t["state"]),
            text(&t["attempt"]),
            text(&t["reason"]),
            outcome.chars().take(60).collect::<String>()
        );
    }
    if !answer["next"].is_null() {
        println!("more: --before {}", text(&answer["next"]));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(server: &ServerArgs, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let (path, many) = match (args.job, args.tree) {
        (true, _) => (format!("/v1/jobs/{}/revoke", args.target), true),
        (false, true) => (format!("/v1/tasks/{}/revoke-tree", args.target), true),
        (false, false) => (format!("/v1/tasks/{}/revoke", args.target), false),
    };
    let answer = client.post(&path, &json!({}))?;
    if server.json {
        print_json(&answer)
    } else if many {
        println!("revoked {}; stopping {} running", text(&answer["revoked"]), text(&answer["stopping"]))
    } else {
        println!("task {} is {}", args.target, text(&answer["state"]))
    }
    Ok(ExitCode::SUCCESS)
}

pub fn logs(server: &ServerArgs, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let answer = Client::new(server)?.get(&format!("/v1/tasks/{}/logs", args.id))?;
    print!("{}", text(&answer));
    Ok(ExitCode::SUCCESS)
}

pub fn tenant(server: &ServerArgs, command: TenantCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let answer = match command {
        TenantCommand::Create { name, quotas } => {
            let quotas: Value = match quotas {
                Some(q) => serde_json::from_str(&q).context("--quotas is not valid JSON")?,
                None => json!({}),
            };
            client.post("/v1/tenants", &json!({ "name": name, "quotas": quotas }))?
        }
        TenantCommand::Set { name, quotas, allow_host, deny_egress } => {
            let mut changes: serde_json::Map<String, Value> = match quotas {
                Some(q) => serde_json::from_str(&q).context("--quotas is not a JSON object")?,
                None => serde_json::Map::new(),
            };
            if deny_egress || !allow_host.is_empty() {
                changes.insert("allowed_hosts".into(), json!(allow_host));
            }
            anyhow::ensure!(!changes.is_empty(), "nothing to change: give --quotas, --allow-host or --deny-egress");
            client.patch(&format!("/v1/tenants/{name}"), &json!({ "quotas": changes }))?
        }
        TenantCommand::List => client.get("/v1/tenants")?,
    };
    if server.json || answer["tenants"].is_null() {
        print_json(&answer);
    } else {
        for t in answer["tenants"].as_array().into_iter().flatten() {
            println!("{:<24} {}", text(&t["name"]), t["quotas"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn token(server: &ServerArgs, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        TokenCommand::Create { tenant, scope } => {
            let answer = client.post(&format!("/v1/tenants/{tenant}/tokens"), &json!({ "scope": scope }))?;
            if server.json {
                print_json(&answer);
            } else {
                println!("token {} for {tenant} ({scope}); shown once:", text(&answer["id"]));
                println!("{}", text(&answer["token"]));
            }
        }
        TokenCommand::Revoke { id } => {
            client.delete(&format!("/v1/tokens/{id}"))?;
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
            client.put(&format!("/v1/secrets/{name}"), &json!({ "value": value }))?;
            println!("secret {name} set");
        }
        SecretCommand::List => {
            let answer = client.get("/v1/secrets")?;
            if server.json {
                print_json(&answer);
            } else {
                for s in answer["secrets"].as_array().into_iter().flatten() {
                    println!("{:<32} set {}", text(&s["name"]), text(&s["updated_at"]));
                }
            }
        }
        SecretCommand::Delete { name } => {
            crate::secret::validate_secret_name(&name)?;
            client.delete(&format!("/v1/secrets/{name}"))?;
            println!("secret {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
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
