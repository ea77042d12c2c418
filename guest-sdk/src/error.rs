//! The error a job returns, and whether it is worth retrying.

use std::fmt;

/// A failed task. [`Error::retryable`] asks the engine to retry the task
/// (per the job's retry policy); [`Error::fatal`] fails it for good.
///
/// Any `std::error::Error` converts into a retryable error with `?`, since
/// most errors a job meets at run time (I/O, a busy dependency) are transient;
/// use [`Error::fatal`] for the ones that are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Retryable,
    Fatal,
}

impl Error {
    /// A transient failure: the engine retries the task.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Retryable, message: message.into() }
    }

    /// A permanent failure: the task fails without retry.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Fatal, message: message.into() }
    }

    /// Whether the engine will retry the task.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The message given to the engine.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Self::retryable(error.to_string())
    }
}
