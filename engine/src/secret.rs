//! A tenant's named secrets (API keys, tokens), and what one task may read
//! of them.
//!
//! Secrets are write-only: the API and the CLI set and delete them and list
//! their names, and no endpoint, log line, metric or error message carries a
//! value. A job declares the names it reads in its metadata; a task gets the
//! values of those names only, read from the store when it starts (so a
//! secret set or changed is seen by the next task, on every node).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::job::{MetadataError, validate_name};

/// Most secrets one tenant may hold. Default 100.
pub const MAX_SECRETS: usize = 100;
/// Largest secret value. Default 64 KiB.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// Most secret names one job may declare. Default 64.
pub const MAX_DECLARED: usize = 64;

/// Why a secret cannot be set, or a job's declaration is refused. Never
/// holds a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("invalid secret name: {0}")]
    InvalidName(String),
    #[error("the secret's value is {bytes} bytes; the limit is {MAX_VALUE_BYTES}")]
    TooLarge { bytes: usize },
    #[error("a tenant holds at most {MAX_SECRETS} secrets")]
    TooMany,
    #[error("a secret's value cannot hold a NUL character")]
    NulByte,
    #[error("a job declares at most {MAX_DECLARED} secrets")]
    TooManyDeclared,
}

/// Checks a secret's name: the rules of a job name (1 to 128 ASCII letters,
/// digits, `-`, `_` and `.`), case kept.
pub fn validate_secret_name(name: &str) -> Result<(), SecretError> {
    validate_name(name).map_err(|e| {
        SecretError::InvalidName(match e {
            MetadataError::InvalidName(shown) => format!("`{shown}` may only hold letters, digits, `-`, `_` and `.`"),
            other => other.to_string().replace("job's name", "name"),
        })
    })
}

/// Checks a value before it is stored: at most [`MAX_VALUE_BYTES`], no NUL.
pub fn validate_value(value: &str) -> Result<(), SecretError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(SecretError::TooLarge { bytes: value.len() });
    }
    // PostgreSQL's text cannot hold one; both stores refuse it alike.
    if value.contains('\0') {
        return Err(SecretError::NulByte);
    }
    Ok(())
}

/// Checks the names a job declares: each valid, at most [`MAX_DECLARED`],
/// duplicates dropped.
pub fn validate_declared(names: Vec<String>) -> Result<Vec<String>, SecretError> {
    if names.len() > MAX_DECLARED {
        return Err(SecretError::TooManyDeclared);
    }
    let mut declared: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        validate_secret_name(&name)?;
        if !declared.contains(&name) {
            declared.push(name);
        }
    }
    Ok(declared)
}

/// Why a task could not read a secret: the guest sees this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("the job does not declare the secret `{0}`")]
    Undeclared(String),
    #[error("the tenant has no secret `{0}`")]
    Missing(String),
}

/// The secrets one task may read: the values of the names its job declares.
#[derive(Clone, Default)]
pub struct Secrets {
    declared: Arc<[String]>,
    values: HashMap<String, String>,
}

impl Secrets {
    /// What a job declaring `declared` reads of `values` (any others are
    /// dropped here, so that no undeclared value reaches the sandbox).
    pub fn new(declared: &[String], mut values: HashMap<String, String>) -> Self {
        // Most jobs declare none: their tasks (the hot path) allocate nothing here.
        if declared.is_empty() {
            return Self::default();
        }
        values.retain(|name, _| declared.contains(name));
        Self { declared: declared.into(), values }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Result<&str, Unreadable> {
        if !self.declared.iter().any(|d| d == name) {
            return Err(Unreadable::Undeclared(name.to_owned()));
        }
        self.values.get(name).map(String::as_str).ok_or_else(|| Unreadable::Missing(name.to_owned()))
    }
}

/// Names only: a value is never printed.
impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets").field("declared", &self.declared).field("set", &self.values.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_reads_only_the_secrets_its_job_declares() {
        let values = HashMap::from([("token".to_owned(), "s3cret".to_owned()), ("other".to_owned(), "x".to_owned())]);
        let secrets = Secrets::new(&["token".to_owned(), "unset".to_owned()], values);
        assert_eq!(secrets.get("token"), Ok("s3cret"));
        assert_eq!(secrets.get("other"), Err(Unreadable::Undeclared("other".into())));
        assert_eq!(secrets.get("unset"), Err(Unreadable::Missing("unset".into())));
        assert!(!format!("{secrets:?}").contains("s3cret"));
    }

    #[test]
    fn names_values_and_declarations_are_bounded() {
        assert!(validate_secret_name("API_TOKEN.v2-x").is_ok());
        assert!(matches!(validate_secret_name(""), Err(SecretError::InvalidName(_))));
        assert!(matches!(validate_secret_name("a b"), Err(SecretError::InvalidName(_))));
        assert!(matches!(validate_secret_name(&"a".repeat(129)), Err(SecretError::InvalidName(_))));
        assert!(validate_value(&"v".repeat(MAX_VALUE_BYTES)).is_ok());
        assert_eq!(validate_value("a\0b"), Err(SecretError::NulByte));
        assert_eq!(
            validate_value(&"v".repeat(MAX_VALUE_BYTES + 1)),
            Err(SecretError::TooLarge { bytes: MAX_VALUE_BYTES + 1 })
        );
        let names: Vec<String> = (0..=MAX_DECLARED).map(|i| format!("s{i}")).collect();
        assert_eq!(validate_declared(names), Err(SecretError::TooManyDeclared));
        assert_eq!(validate_declared(vec!["a".into(), "a".into()]), Ok(vec!["a".to_owned()]));
    }
}
