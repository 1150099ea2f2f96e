//! A task's log: what its command wrote to stdout and stderr, one file per
//! task (`<task dir>/output.log`), written by the task's init (the shim).
//!
//! Each line of the file is `<stream> <unix seconds>.<nanoseconds> <text>`,
//! `stream` being `stdout` or `stderr`. Each stream keeps its order; across
//! streams, lines are in the order the init read them from the two pipes
//! (lines written to both at the same instant may interleave either way,
//! as with Docker). A line longer than [`MAX_LINE`] bytes is split.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;

use super::RuntimeError;

/// The name of the log file in a task's directory.
pub const LOG_FILE: &str = "output.log";

/// A line longer than this (in bytes) is written as several lines.
pub const MAX_LINE: usize = 16 * 1024;

/// How often [`LogFollower`] looks for new lines at the end of the file.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// The path of the log of the task whose directory is `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as in the log file.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line a task wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The stream it was written to.
    pub stream: Stream,
    /// When the task's init read it.
    pub time: SystemTime,
    /// The text, without the newline (invalid UTF-8 replaced).
    pub text: String,
}

/// Formats one log record (with its trailing newline).
pub(crate) fn format_record(stream: Stream, time: SystemTime, text: &[u8]) -> Vec<u8> {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut record = format!(
        "{} {}.{:09} ",
        stream.as_str(),
        since.as_secs(),
        since.subsec_nanos()
    )
    .into_bytes();
    record.extend_from_slice(text);
    record.push(b'\n');
    record
}

/// Parses one record (without its newline); `None` for a line that is not
/// one (never written by the runtime).
fn parse_record(line: &[u8]) -> Option<LogLine> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let stamp = std::str::from_utf8(parts.next()?).ok()?;
    let (secs, nanos) = stamp.split_once('.')?;
    let time = UNIX_EPOCH + Duration::new(secs.parse().ok()?, nanos.parse().ok()?);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    Some(LogLine { stream, time, text })
}

/// Splits a stream of bytes into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds `data` and returns the complete lines it finishes (without newlines).
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        loop {
            match self.pending.iter().position(|&b| b == b'\n') {
                Some(end) if end <= MAX_LINE => {
                    lines.push(self.pending[..end].to_vec());
                    self.pending.drain(..=end);
                }
                _ if self.pending.len() > MAX_LINE => {
                    lines.push(self.pending.drain(..MAX_LINE).collect());
                }
                _ => return lines,
            }
        }
    }

    /// The unfinished last line, if any (at end of stream).
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Reads every line a task has written so far, in order.
/// A task that has not written anything yet (no log file) has no lines.
pub async fn read_logs(dir: &Path) -> Result<Vec<LogLine>, RuntimeError> {
    let path = log_path(dir);
    let data = match tokio::fs::read(&path).await {
        Ok(data) => data,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RuntimeError::Logs { path, source }),
    };
    Ok(data
        .split(|&b| b == b'\n')
        .filter_map(parse_record)
        .collect())
}

/// Follows a task's log like `tail -f`: yields every line from the start of
/// the file, then each new line as it is written. It never ends by itself;
/// drop it (or stop calling [`LogFollower::next_line`]) to stop following.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    buf: Vec<u8>,
    ready: std::collections::VecDeque<LogLine>,
}

impl LogFollower {
    /// Follows the log of the task whose directory is `dir`; the file need
    /// not exist yet.
    pub fn new(dir: &Path) -> Self {
        LogFollower {
            path: log_path(dir),
            file: None,
            buf: Vec::new(),
            ready: Default::default(),
        }
    }

    /// The next line, waiting for it to be written. Cancel-safe: a line
    /// already read from the file is kept for the next call.
    pub async fn next_line(&mut self) -> Result<LogLine, RuntimeError> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(line);
            }
            let file = match &mut self.file {
                Some(file) => file,
                None => match tokio::fs::File::open(&self.path).await {
                    Ok(file) => self.file.insert(file),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        tokio::time::sleep(FOLLOW_POLL).await;
                        continue;
                    }
                    Err(source) => {
                        let path = self.path.clone();
                        return Err(RuntimeError::Logs { path, source });
                    }
                },
            };
            let mut chunk = [0u8; 8192];
            let n = file
                .read(&mut chunk)
                .await
                .map_err(|source| RuntimeError::Logs {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
            self.buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let record: Vec<u8> = self.buf.drain(..=end).collect();
                if let Some(line) = parse_record(&record[..end]) {
                    self.ready.push_back(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 42);
        let record = format_record(Stream::Stderr, time, b"hello world");
        assert_eq!(record, b"stderr 1700000000.000000042 hello world\n");
        let line = parse_record(&record[..record.len() - 1]).unwrap();
        assert_eq!(
            line,
            LogLine {
                stream: Stream::Stderr,
                time,
                text: "hello world".into()
            }
        );
        assert_eq!(parse_record(b"stdout 1.000000000 ").unwrap().text, "");
        assert_eq!(parse_record(b"garbage"), None);
    }

    #[test]
    fn splitter_yields_complete_lines_and_splits_long_ones() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nb"), vec![b"a".to_vec()]);
        assert_eq!(s.push(b"c\n\nd"), vec![b"bc".to_vec(), b"".to_vec()]);
        assert_eq!(s.finish(), Some(b"d".to_vec()));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE));
        assert_eq!(s.finish().unwrap().len(), 10);
    }
}
