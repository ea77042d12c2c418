//! The HTTP client behind the client subcommands: where the server is and
//! which token to use, from flags, environment variables or a config file
//! (`$XDG_CONFIG_HOME/wasmjob/config.json` or `~/.config/wasmjob/config.json`:
//! `{"url": "...", "token": "..."}`), in that order.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::Agent;

use crate::wire::ErrorBody;

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

/// How long a stream's connection may take. Default 10 s.
const STREAM_CONNECT: Duration = Duration::from_secs(10);

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

    /// The text of a successful answer; an error answer becomes an error
    /// with its code and message.
    fn text(&self, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> anyhow::Result<String> {
        let mut response = response.with_context(|| format!("cannot reach the server at {}", self.url))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        if status >= 400 {
            return Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(ErrorBody { error }) => anyhow!("HTTP {status} {}: {}", error.code, error.message),
                Err(_) => anyhow!("HTTP {status}: {text}"),
            });
        }
        Ok(text)
    }

    /// The body of a successful answer as a `T` of [`crate::wire`] (`()`
    /// for an answer without a body).
    fn answer<T: DeserializeOwned>(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let text = self.text(response)?;
        let json = if text.is_empty() { "null" } else { text.as_str() };
        serde_json::from_str(json).with_context(|| format!("an answer this client does not understand: {text}"))
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.agent.get(format!("{}{path}", self.url)).header("Authorization", self.auth()?).call();
        self.answer(response)
    }

    /// A text answer (a task's log).
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self.agent.get(format!("{}{path}", self.url)).header("Authorization", self.auth()?).call();
        self.text(response)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        let response =
            self.agent.post(format!("{}{path}", self.url)).header("Authorization", self.auth()?).send_json(body);
        self.answer(response)
    }

    pub fn patch<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        let response =
            self.agent.patch(format!("{}{path}", self.url)).header("Authorization", self.auth()?).send_json(body);
        self.answer(response)
    }

    pub fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        let response =
            self.agent.put(format!("{}{path}", self.url)).header("Authorization", self.auth()?).send_json(body);
        self.answer(response)
    }

    pub fn post_bytes<T: DeserializeOwned>(&self, path: &str, bytes: &[u8], content_type: &str) -> anyhow::Result<T> {
        let response = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Authorization", self.auth()?)
            .header("Content-Type", content_type)
            .send(bytes);
        self.answer(response)
    }

    /// The event stream at `path` (Server-Sent Events), resuming after
    /// event `last`: its lines, as they come. No timeout but the
    /// connect's: the server sends a comment every few seconds.
    pub fn stream(&self, path: &str, last: Option<&str>) -> anyhow::Result<impl std::io::BufRead + use<>> {
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(STREAM_CONNECT))
            .build()
            .new_agent();
        let mut request = agent
            .get(format!("{}{path}", self.url))
            .header("Authorization", self.auth()?)
            .header("Accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        let response = request.call().with_context(|| format!("cannot reach the server at {}", self.url))?;
        if response.status().as_u16() >= 400 {
            self.text(Ok(response))?;
            bail!("the server refused the stream");
        }
        Ok(std::io::BufReader::new(response.into_body().into_reader()))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
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
