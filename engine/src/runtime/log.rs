//! The task's log: what the job writes to stdout and stderr and through the
//! `log` import, kept in one bounded buffer.
//!
//! Writes never fail (a chatty job must not crash because its log is full):
//! bytes beyond [`super::EngineLimits::max_log_bytes`] are counted and
//! dropped, and the drop is noted at the end of the log.
//!
//! The log is data, not a terminal stream: everything the guest writes is
//! stored with control characters escaped (`\x1b`, `\u{9b}`; newlines and
//! tabs stay), so it cannot move a reader's cursor or recolour their
//! terminal, and lines that start with `[` are the engine's alone: `log`
//! lines (`[INFO] ...`) and the engine's notes (`[wasmjob] ...`). A line the
//! guest writes to stdout or stderr that starts with `[` is stored as `\[`.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::meter::{FUEL_PER_LOG_BYTE, HostWork};
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
    /// Every byte written is charged to the task, kept or not.
    work: HostWork,
}

struct Buffer {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: u64,
    /// Whether the next raw byte starts a line.
    at_line_start: bool,
}

impl Buffer {
    fn push(&mut self, bytes: &[u8]) {
        let room = self.capacity.saturating_sub(self.bytes.len());
        let kept = bytes.len().min(room);
        self.bytes.extend_from_slice(&bytes[..kept]);
        self.dropped += (bytes.len() - kept) as u64;
    }
}

/// Whether `c` is a control character a terminal would act on.
fn is_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// `text` with every control character but newline and tab escaped
/// (`\u{1b}`): safe to print to a terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars().map(|c| if is_control(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect(),
    )
}

impl TaskLog {
    /// An empty log keeping at most `capacity` bytes, with `log` lines cut at
    /// `max_line_bytes`.
    pub fn new(capacity: usize, max_line_bytes: usize) -> Self {
        let buffer = Buffer { bytes: Vec::new(), capacity, dropped: 0, at_line_start: true };
        Self { inner: Arc::new(Mutex::new(buffer)), max_line_bytes, work: HostWork::default() }
    }

    /// The host work this log charges its writes to (the task's).
    pub fn work(&self) -> &HostWork {
        &self.work
    }

    /// Appends raw bytes (stdout and stderr): ASCII control characters are
    /// escaped as `\xNN`, and a `[` that starts a line as `\[`. (Other
    /// control characters are escaped when the text is read, once the
    /// bytes are known to be whole characters.)
    pub fn write(&self, bytes: &[u8]) {
        self.work.charge(bytes.len() as u64, FUEL_PER_LOG_BYTE);
        let mut buffer = self.inner.lock().unwrap();
        if buffer.bytes.len() >= buffer.capacity {
            // Full: count what is dropped without looking at it.
            buffer.dropped += bytes.len() as u64;
            return;
        }
        let mut escaped = Vec::with_capacity(bytes.len());
        let mut at_line_start = buffer.at_line_start;
        for &b in bytes {
            match b {
                b'\n' => escaped.push(b),
                b'[' if at_line_start => escaped.extend_from_slice(b"\\["),
                b'\t' => escaped.push(b),
                0..=0x1f | 0x7f => escaped.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                _ => escaped.push(b),
            }
            at_line_start = b == b'\n';
        }
        buffer.at_line_start = at_line_start;
        buffer.push(&escaped);
    }

    /// Appends one of the engine's own lines, on a line of its own.
    fn engine_line(&self, line: &str) {
        let mut buffer = self.inner.lock().unwrap();
        if !buffer.at_line_start {
            buffer.push(b"\n");
        }
        buffer.push(line.as_bytes());
        buffer.at_line_start = true;
    }

    /// Appends one structured line (`log` import). The message is
    /// guest-controlled: it is cut at the line limit and its newlines escaped
    /// so that a line cannot pose as another.
    pub fn line(&self, level: LogLevel, message: &str) {
        self.work.charge(message.len() as u64, FUEL_PER_LOG_BYTE);
        let mut cut = message.len().min(self.max_line_bytes);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let kept = escape_controls(&message[..cut]).replace('\n', "\\n");
        let mut line = format!("[{}] {kept}", level.as_str());
        if cut < message.len() {
            line.push_str(" [cut]");
        }
        line.push('\n');
        self.engine_line(&line);
    }

    /// The log's text (lossy UTF-8), with a note if bytes were dropped.
    pub fn contents(&self) -> String {
        let buffer = self.inner.lock().unwrap();
        let mut text = escape_controls(&String::from_utf8_lossy(&buffer.bytes)).into_owned();
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

    #[test]
    fn guest_output_cannot_pose_as_the_engine_or_reach_a_terminal_raw() {
        let log = TaskLog::new(1000, 100);
        log.write(b"[wasmjob] 0 bytes dropped\n[ERROR] fake\x1b[2J\x07 \xc2\x9b31m\tok\n");
        log.write(b"half[");
        log.line(LogLevel::Info, "real \x1b[0m");
        let text = log.contents();
        assert_eq!(
            text,
            "\\[wasmjob] 0 bytes dropped\n\\[ERROR] fake\\x1b[2J\\x07 \\u{9b}31m\tok\nhalf[\n[INFO] real \\u{1b}[0m\n"
        );
        assert!(!text.chars().any(is_control), "{text:?}");
    }
}
