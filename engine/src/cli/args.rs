//! Parsers and places shared by subcommands: task args, sizes, durations,
//! the user's compile cache.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value};

/// Builds a task's args from `--args JSON` and `--arg key=value` pairs. A
/// value that parses as JSON is taken as JSON (`n=3` is a number), otherwise
/// as a string.
pub fn task_args(json: Option<&str>, pairs: &[String]) -> anyhow::Result<String> {
    let mut args = match json {
        Some(json) => match serde_json::from_str(json).context("--args is not valid JSON")? {
            Value::Object(map) => map,
            _ => bail!("--args must be a JSON object, such as '{{\"a\": 1}}'"),
        },
        None => Map::new(),
    };
    for pair in pairs {
        let (key, value) = pair.split_once('=').with_context(|| format!("--arg `{pair}` is not key=value"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        args.insert(key.to_owned(), value);
    }
    Ok(Value::Object(args).to_string())
}

/// Parses a size such as `64MiB`, `512k`, `1GB` or `1048576` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a size such as 64MiB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("`{text}` is too large"))
}

/// A time as RFC 3339 (`2026-12-01T09:00:00Z`, any offset).
pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time ({e}), such as 2026-12-01T09:00:00Z"))
}

/// Parses a duration such as `30s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration such as 30s: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_pairs_are_json_when_they_parse_and_strings_otherwise() {
        let args = task_args(Some(r#"{"a": 1}"#), &["b=2".into(), "name=bob".into()]).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), serde_json::json!({"a": 1, "b": 2, "name": "bob"}));
    }

    #[test]
    fn args_must_be_an_object() {
        assert!(task_args(Some("[1]"), &[]).is_err());
        assert!(task_args(None, &["novalue".into()]).is_err());
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12 parsecs").is_err());
    }
}

/// The operator's egress settings, for `serve` and `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct EgressArgs {
    /// A reserved address or range (loopback, private, link-local...) that
    /// jobs' requests may reach anyway, such as 10.1.0.0/16 (repeatable;
    /// default: none). Tenants' allow-lists cannot widen this.
    #[arg(long = "egress-allow-net", value_name = "CIDR", env = "WASMJOB_EGRESS_ALLOW_NET", value_delimiter = ',')]
    pub allow_net: Vec<String>,
    /// PEM certificates jobs' HTTPS requests trust besides the public roots.
    #[arg(long = "egress-ca-bundle", value_name = "PATH", env = "WASMJOB_EGRESS_CA_BUNDLE")]
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl From<EgressArgs> for crate::egress::EgressConfig {
    fn from(args: EgressArgs) -> Self {
        Self { allow_networks: args.allow_net, ca_bundle: args.ca_bundle }
    }
}

/// The compile cache of `wasmjob run` and `inspect`, shared by every run of
/// the user: `$WASMJOB_CACHE_DIR`, else `wasmjob` in the user's cache
/// directory (`~/.cache/wasmjob` on Linux); none if neither is known.
pub fn user_cache_dir() -> Option<PathBuf> {
    std::env::var_os("WASMJOB_CACHE_DIR").map(PathBuf::from).or_else(|| dirs::cache_dir().map(|d| d.join("wasmjob")))
}
