//! The task's log: what the job writes to stdout and stderr and through the
//! `log` import, kept in one bounded buffer.
//!
//! Writes never fail (a chatty job must not crash because its log is full):
//! bytes beyond [`super::EngineLimits::max_log_bytes`] are counted and
//! dropped, and the drop is noted at the end of the log.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Severity of a `log` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

/// A bounded, shareable log buffer. Clones write to the same buffer.
#[derive(Clone)]
pub struct TaskLog {
    inner: Arc<Mutex<Buffer>>,
    max_line_bytes: usize,
}

struct Buffer {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: u64,
}

impl TaskLog {
    /// An empty log keeping at most `capacity` bytes, with `log` lines cut at
    /// `max_line_bytes`.
    pub fn new(capacity: usize, max_line_bytes: usize) -> Self {
        Self { inner: Arc::new(Mutex::new(Buffer { bytes: Vec::new(), capacity, dropped: 0 })), max_line_bytes }
    }

    /// Appends raw bytes (stdout and stderr).
    pub fn write(&self, bytes: &[u8]) {
        let mut buffer = self.inner.lock().unwrap();
        let room = buffer.capacity.saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += (bytes.len() - kept) as u64;
    }

    /// Appends one structured line (`log` import). The message is
    /// guest-controlled: it is cut at the line limit and its newlines escaped
    /// so that a line cannot pose as another.
    pub fn line(&self, level: LogLevel, message: &str) {
        let mut cut = message.len().min(self.max_line_bytes);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut line = format!("[{}] {}", level.as_str(), message[..cut].replace('\n', "\\n"));
        if cut < message.len() {
            line.push_str(" [cut]");
        }
        line.push('\n');
        self.write(line.as_bytes());
    }

    /// The log's text (lossy UTF-8), with a note if bytes were dropped.
    pub fn contents(&self) -> String {
        let buffer = self.inner.lock().unwrap();
        let mut text = String::from_utf8_lossy(&buffer.bytes).into_owned();
        if buffer.dropped > 0 {
            text.push_str(&format!(
                "\n[wasmjob] {} bytes of log dropped: the log is limited to {} bytes\n",
                buffer.dropped, buffer.capacity
            ));
        }
        text
    }
}

impl IsTerminal for TaskLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TaskLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// The largest write a guest is permitted at once; writes never block.
const WRITE_PERMIT: usize = 64 << 10;

#[async_trait::async_trait]
impl Pollable for TaskLog {
    async fn ready(&mut self) {}
}

impl OutputStream for TaskLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        TaskLog::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for TaskLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        TaskLog::write(&self, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keeps_its_bound_and_notes_the_drop() {
        let log = TaskLog::new(10, 100);
        log.write(b"0123456789abcdef");
        let text = log.contents();
        assert!(text.starts_with("0123456789\n"), "{text}");
        assert!(text.contains("6 bytes of log dropped"), "{text}");
    }

    #[test]
    fn log_lines_are_cut_and_cannot_forge_lines() {
        let log = TaskLog::new(1000, 8);
        log.line(LogLevel::Warn, "a\nb");
        log.line(LogLevel::Info, "0123456789");
        assert_eq!(log.contents(), "[WARN] a\\nb\n[INFO] 01234567 [cut]\n");
    }
}
