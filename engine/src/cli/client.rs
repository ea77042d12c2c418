//! The HTTP client behind the client subcommands: where the server is and
//! which token to use, from flags, environment variables or a config file
//! (`$XDG_CONFIG_HOME/wasmjob/config.json` or `~/.config/wasmjob/config.json`:
//! `{"url": "...", "token": "..."}`), in that order.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;
use ureq::Agent;

/// How to reach the server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's URL (default: the config file's, else http://127.0.0.1:8080).
    #[arg(long, env = "WASMJOB_URL", global = true)]
    url: Option<String>,
    /// The bearer token (default: the config file's).
    #[arg(long, env = "WASMJOB_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(serde::Deserialize, Default)]
struct ConfigFile {
    url: Option<String>,
    token: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("wasmjob").join("config.json"))
}

/// A client of one server, as one caller.
pub struct Client {
    agent: Agent,
    url: String,
    token: Option<String>,
}

impl Client {
    pub fn new(args: &ServerArgs) -> anyhow::Result<Self> {
        let file: ConfigFile = match config_path().filter(|p| p.exists()) {
            Some(path) => serde_json::from_str(&std::fs::read_to_string(&path)?)
                .with_context(|| format!("{} is not valid JSON", path.display()))?,
            None => ConfigFile::default(),
        };
        let url = args.url.clone().or(file.url).unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let token = args.token.clone().or(file.token);
        let config = Agent::config_builder()
            .http_status_as_error(false)
            // Long enough for the longest wait the server holds.
            .timeout_global(Some(Duration::from_secs(90)))
            .build();
        Ok(Self { agent: Agent::new_with_config(config), url: url.trim_end_matches('/').to_owned(), token })
    }

    fn auth(&self) -> anyhow::Result<String> {
        match &self.token {
            Some(token) => Ok(format!("Bearer {token}")),
            None => bail!("no token: pass --token, set WASMJOB_TOKEN, or put one in the config file"),
        }
    }

    /// The body of a successful answer (JSON, or a JSON string for text);
    /// an error answer becomes an error with its code and message.
    fn answer(&self, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> anyhow::Result<Value> {
        let mut response = response.with_context(|| format!("cannot reach the server at {}", self.url))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let error = &body["error"];
            bail!(
                "HTTP {status} {}: {}",
                error["code"].as_str().unwrap_or("error"),
                error["message"].as_str().unwrap_or(&body.to_string())
            );
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.agent.get(format!("{}{path}", self.url)).header("Authorization", self.auth()?).call();
        self.answer(response)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response =
            self.agent.post(format!("{}{path}", self.url)).header("Authorization", self.auth()?).send_json(body);
        self.answer(response)
    }

    pub fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response =
            self.agent.patch(format!("{}{path}", self.url)).header("Authorization", self.auth()?).send_json(body);
        self.answer(response)
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response =
            self.agent.put(format!("{}{path}", self.url)).header("Authorization", self.auth()?).send_json(body);
        self.answer(response)
    }

    pub fn post_bytes(&self, path: &str, bytes: &[u8], content_type: &str) -> anyhow::Result<Value> {
        let response = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Authorization", self.auth()?)
            .header("Content-Type", content_type)
            .send(bytes);
        self.answer(response)
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.agent.delete(format!("{}{path}", self.url)).header("Authorization", self.auth()?).call();
        self.answer(response)
    }
}

/// Shows progress on stderr while `work` runs, if stderr is a terminal.
pub fn with_progress<T>(label: &str, work: impl FnOnce() -> T) -> T {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinner = {
        let (done, label) = (done.clone(), label.to_owned());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                eprint!("\r{} {label} ({:.1}s)", frames[i % 4], start.elapsed().as_secs_f64());
                let _ = std::io::stderr().flush();
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            eprint!("\r\x1b[2K");
        })
    };
    let result = work();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = spinner.join();
    result
}
