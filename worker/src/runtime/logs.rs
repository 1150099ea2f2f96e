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

/// The path of rotated file `n` (1 = the newest) of the log at `path`.
fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// A log file rotated as Docker's `json-file` driver rotates: once it would
/// grow past `max_size`, `output.log` becomes `output.log.1` (older files
/// move up by one, the oldest beyond `max_file` is deleted) and a new
/// `output.log` starts.
pub(crate) struct RotatingLog {
    path: PathBuf,
    options: super::image::LogOptions,
    file: Option<std::fs::File>,
    size: u64,
}

impl RotatingLog {
    /// Opens (appends to) the log at `path`.
    pub(crate) fn open(path: PathBuf, options: super::image::LogOptions) -> Self {
        let mut log = RotatingLog {
            path,
            options,
            file: None,
            size: 0,
        };
        log.reopen();
        log
    }

    fn reopen(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        self.file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&self.path)
            .ok();
        self.size = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
    }

    fn rotate(&mut self) {
        self.file = None;
        let keep = self.options.max_file.max(1);
        if keep == 1 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(rotated_path(&self.path, keep - 1));
            for n in (1..keep - 1).rev() {
                let _ =
                    std::fs::rename(rotated_path(&self.path, n), rotated_path(&self.path, n + 1));
            }
            let _ = std::fs::rename(&self.path, rotated_path(&self.path, 1));
        }
        self.reopen();
    }

    /// Appends one record, rotating first if it would not fit.
    pub(crate) fn write(&mut self, record: &[u8]) {
        use std::io::Write;
        let max = self.options.max_size;
        if max > 0 && self.size > 0 && self.size + record.len() as u64 > max {
            self.rotate();
        }
        if let Some(file) = &mut self.file
            && file.write_all(record).is_ok()
        {
            self.size += record.len() as u64;
        }
    }
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

/// Reads every line a task has written so far and still kept (rotated
/// files first, oldest first), in order. A task that has not written
/// anything yet (no log file) has no lines.
pub async fn read_logs(dir: &Path) -> Result<Vec<LogLine>, RuntimeError> {
    let live = log_path(dir);
    let mut rotated = Vec::new();
    for n in 1.. {
        let path = rotated_path(&live, n);
        if tokio::fs::metadata(&path).await.is_err() {
            break;
        }
        rotated.push(path);
    }
    let mut lines = Vec::new();
    for path in rotated.into_iter().rev().chain([live]) {
        let data = match tokio::fs::read(&path).await {
            Ok(data) => data,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(RuntimeError::Logs { path, source }),
        };
        lines.extend(data.split(|&b| b == b'\n').filter_map(parse_record));
    }
    Ok(lines)
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
    /// Bytes at the start of the first file opened that are not yielded.
    skip: u64,
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
            skip: 0,
        }
    }

    /// Follows only what is written after now (the live file's current
    /// end); for a caller that read the earlier lines with [`read_logs`].
    pub fn from_end(dir: &Path) -> Self {
        let path = log_path(dir);
        let skip = std::fs::metadata(&path).map_or(0, |m| m.len());
        LogFollower {
            path,
            file: None,
            buf: Vec::new(),
            ready: Default::default(),
            skip,
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
                    Ok(mut file) => {
                        if self.skip > 0 {
                            use tokio::io::AsyncSeekExt;
                            let _ = file.seek(std::io::SeekFrom::Start(self.skip)).await;
                            self.skip = 0;
                        }
                        self.file.insert(file)
                    }
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
                // Rotated: the path now names a new file; finish the old
                // one (read to its end above) and go on with the new one.
                let rotated = match (file.metadata().await, tokio::fs::metadata(&self.path).await) {
                    (Ok(open), Ok(named)) => {
                        use std::os::unix::fs::MetadataExt;
                        open.ino() != named.ino()
                    }
                    _ => false,
                };
                if rotated {
                    self.file = None;
                    self.buf.clear();
                    self.skip = 0;
                    continue;
                }
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

    #[tokio::test]
    async fn logs_rotate_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::runtime::image::LogOptions {
            max_size: 100,
            max_file: 3,
        };
        let mut log = RotatingLog::open(log_path(dir.path()), options);
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 0);
        for i in 0..20 {
            log.write(&format_record(
                Stream::Stdout,
                time,
                format!("line {i:02}").as_bytes(),
            ));
        }
        // Each record is 38 bytes: two per file, three files kept.
        assert!(log_path(dir.path()).exists());
        assert!(rotated_path(&log_path(dir.path()), 2).exists());
        assert!(!rotated_path(&log_path(dir.path()), 3).exists());
        for n in 0..3u32 {
            let path = if n == 0 {
                log_path(dir.path())
            } else {
                rotated_path(&log_path(dir.path()), n)
            };
            assert!(
                std::fs::metadata(&path).unwrap().len() <= 100,
                "{}",
                path.display()
            );
        }
        let texts: Vec<String> = read_logs(dir.path())
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(
            texts,
            (14..20).map(|i| format!("line {i:02}")).collect::<Vec<_>>()
        );
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
