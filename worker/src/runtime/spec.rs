//! What to run ([`TaskSpec`]) and how it ended ([`TaskExit`]).

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use super::RuntimeError;
use super::image::ImageTask;

/// The longest hostname the kernel accepts (`HOST_NAME_MAX`).
pub const HOSTNAME_MAX: usize = 64;

/// The `PATH` a task gets unless its env sets one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything a runtime needs to run one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSpec {
    /// The task's id, used in errors and logs.
    pub task_id: String,
    /// The task's hostname, a unique task name such as
    /// `demoservice.1.<task id>`; clamped with [`clamp_hostname`].
    pub hostname: String,
    /// The network namespace file to run in (the netdriver's sandbox,
    /// `RUN/netns/<task id, 12 chars>`).
    pub netns: PathBuf,
    /// `host`: the command and its arguments, from the node's filesystem (a
    /// command without `/` is looked up in the task's `PATH`). Image tasks:
    /// the arguments given after the image (they replace the image's `Cmd`).
    pub args: Vec<String>,
    /// `K=V` entries, on top of the defaults `PATH`, `HOSTNAME` and `HOME=/root`.
    pub env: Vec<String>,
    /// The contents of the task's own `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// The contents of the task's own `/etc/hosts`.
    pub hosts: String,
    /// The per-task directory the runtime owns: the files bind-mounted into
    /// the task, its log and its pid file. Created if missing.
    pub dir: PathBuf,
    /// Docker's `--stop-signal` (empty: the image's, else SIGTERM).
    pub stop_signal: String,
    /// The image and Docker's run options; `None` for the `host` runtime.
    pub image: Option<ImageTask>,
    /// Files bind-mounted read-only into the task: its secrets and configs (sources on the
    /// task's tmpfs, see `agent::secrets`).
    pub files: Vec<TaskFile>,
}

/// One file the runtime binds read-only into a task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFile {
    /// The file on the node (on a tmpfs: it may hold a secret).
    pub source: PathBuf,
    /// The absolute path inside the task.
    pub target: String,
}

/// The name, in a `host` task's directory, of the list of [`TaskFile`]s its init binds
/// (NUL-separated source and target pairs; paths only, never contents).
pub const FILES_LIST: &str = "files.list";

/// Encodes `files` as [`FILES_LIST`] holds them.
pub fn encode_files(files: &[TaskFile]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for f in files {
        out.extend_from_slice(f.source.as_os_str().as_bytes());
        out.push(0);
        out.extend_from_slice(f.target.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes [`encode_files`]' bytes.
pub fn decode_files(bytes: &[u8]) -> Vec<TaskFile> {
    use std::os::unix::ffi::OsStrExt;
    let mut parts = bytes.split(|b| *b == 0);
    let mut files = Vec::new();
    while let (Some(source), Some(target)) = (parts.next(), parts.next()) {
        if source.is_empty() {
            break;
        }
        files.push(TaskFile {
            source: PathBuf::from(std::ffi::OsStr::from_bytes(source)),
            target: String::from_utf8_lossy(target).into_owned(),
        });
    }
    files
}

impl TaskSpec {
    /// Checks what the kernel would otherwise reject late and obscurely.
    pub(crate) fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |reason: String| RuntimeError::InvalidSpec {
            task_id: self.task_id.clone(),
            reason,
        };
        if self.image.is_none() && (self.args.is_empty() || self.args[0].is_empty()) {
            return Err(invalid("no command to run: args is empty".into()));
        }
        if let Some(arg) = self.args.iter().find(|a| a.contains('\0')) {
            return Err(invalid(format!("argument {arg:?} contains a NUL byte")));
        }
        if self.hostname.is_empty() {
            return Err(invalid("the hostname is empty".into()));
        }
        for f in &self.files {
            let bad = !f.target.starts_with('/')
                || f.target == "/"
                || f.target.contains('\0')
                || f.target.split('/').any(|c| c == "." || c == "..");
            if bad {
                return Err(invalid(format!(
                    "file target {:?} must be an absolute path without '.' or '..'",
                    f.target
                )));
            }
        }
        for entry in &self.env {
            match entry.split_once('=') {
                Some((key, _)) if !key.is_empty() && !entry.contains('\0') => {}
                _ => {
                    return Err(invalid(format!(
                        "env entry {entry:?} is not of the form KEY=VALUE"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The signal that stops the task: `--stop-signal`, else the image's
    /// `StopSignal`; `None` for the default (SIGTERM).
    pub fn stop_signal(&self) -> Result<Option<nix::sys::signal::Signal>, RuntimeError> {
        let text = match (&self.stop_signal, &self.image) {
            (s, _) if !s.is_empty() => s.as_str(),
            (_, Some(image)) if !image.image.config.stop_signal.is_empty() => {
                image.image.config.stop_signal.as_str()
            }
            _ => return Ok(None),
        };
        super::task_runtime::parse_signal(text)
            .map(Some)
            .ok_or_else(|| RuntimeError::InvalidSpec {
                task_id: self.task_id.clone(),
                reason: format!("invalid stop signal {text:?}"),
            })
    }

    /// The task's environment: the defaults, then `env` (a later entry
    /// replaces an earlier one with the same key, keeping its position).
    pub(crate) fn environment(&self, hostname: &str) -> Vec<(String, String)> {
        let defaults = [
            format!("PATH={DEFAULT_PATH}"),
            format!("HOSTNAME={hostname}"),
            "HOME=/root".to_string(),
        ];
        merge_env(defaults.iter().chain(&self.env).map(String::as_str))
    }
}

/// Merges `K=V` entries in order: a repeated key replaces the earlier value
/// in place. Entries without `=` are skipped.
pub(crate) fn merge_env<'a>(entries: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for entry in entries {
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => env.push((key.to_string(), value.to_string())),
        }
    }
    env
}

/// Fits a task name into [`HOSTNAME_MAX`] bytes. A name that fits is kept;
/// a longer one keeps its last dot-separated part (the unique task id, at
/// most 25 characters) and as much of the front as fits, so two tasks of a
/// long-named service still get different hostnames.
pub fn clamp_hostname(name: &str) -> String {
    if name.len() <= HOSTNAME_MAX {
        return name.to_string();
    }
    let (head, tail) = match name.rsplit_once('.') {
        Some((head, tail)) if !tail.is_empty() => (head, truncate(tail, 25)),
        _ => return truncate(name, HOSTNAME_MAX).to_string(),
    };
    let head = truncate(head, HOSTNAME_MAX - 1 - tail.len()).trim_end_matches(['.', '-']);
    if head.is_empty() {
        tail.to_string()
    } else {
        format!("{head}.{tail}")
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskExit {
    /// The command exited with this code.
    Exited(i32),
    /// The command was killed by this signal number.
    Signaled(i32),
    /// The kernel's OOM killer killed the task (its memory limit was reached).
    OomKilled,
}

impl TaskExit {
    /// Whether the task exited with code 0.
    pub fn success(self) -> bool {
        self == TaskExit::Exited(0)
    }

    /// The exit code as a shell (and `docker ps`) reports it: the code, or
    /// 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        match self {
            TaskExit::Exited(code) => code,
            TaskExit::Signaled(signal) => 128 + signal,
            TaskExit::OomKilled => 137,
        }
    }
}

impl From<ExitStatus> for TaskExit {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => TaskExit::Exited(code),
            (None, Some(signal)) => TaskExit::Signaled(signal),
            // Stopped or continued: not reported by `wait` without WUNTRACED.
            (None, None) => TaskExit::Exited(status.into_raw()),
        }
    }
}

impl fmt::Display for TaskExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TaskExit::Exited(code) => write!(f, "exit code {code}"),
            TaskExit::OomKilled => write!(f, "OOM killed"),
            TaskExit::Signaled(signal) => match nix::sys::signal::Signal::try_from(signal) {
                Ok(name) => write!(f, "killed by signal {signal} ({name})"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec {
            task_id: "t1".into(),
            hostname: "web.1.t1".into(),
            netns: "/run/mini/netns/t1".into(),
            args: vec!["sleep".into(), "1".into()],
            env: vec!["FOO=bar".into(), "HOME=/srv".into(), "FOO=baz=qux".into()],
            resolv_conf: String::new(),
            hosts: String::new(),
            dir: "/tmp/t1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn environment_is_defaults_then_spec_with_later_keys_winning() {
        let env = spec().environment("web.1.t1");
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("PATH", DEFAULT_PATH),
                ("HOSTNAME", "web.1.t1"),
                ("HOME", "/srv"),
                ("FOO", "baz=qux"),
            ]
        );
    }

    #[test]
    fn validate_rejects_empty_args_and_malformed_env() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.args.clear();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("args is empty")
        );
        let mut s = spec();
        s.env.push("NOEQUALS".into());
        assert!(s.validate().unwrap_err().to_string().contains("KEY=VALUE"));
        let mut s = spec();
        s.env.push("=v".into());
        assert!(s.validate().is_err());
    }

    #[test]
    fn short_hostnames_are_kept() {
        assert_eq!(clamp_hostname("demoservice.1.abc"), "demoservice.1.abc");
        let exactly = "a".repeat(HOSTNAME_MAX);
        assert_eq!(clamp_hostname(&exactly), exactly);
    }

    #[test]
    fn long_hostnames_keep_the_task_id() {
        let id = "x2v8m3k1l0p9q8r7s6t5u4w3y";
        let name = format!("{}.1.{id}", "averyveryverylongservicename".repeat(3));
        let clamped = clamp_hostname(&name);
        assert!(clamped.len() <= HOSTNAME_MAX, "{clamped}");
        assert!(clamped.ends_with(&format!(".{id}")), "{clamped}");
        assert!(clamped.starts_with("averyvery"), "{clamped}");
        let no_dots = "é".repeat(40);
        let clamped = clamp_hostname(&no_dots);
        assert!(clamped.len() <= HOSTNAME_MAX && no_dots.starts_with(&clamped));
    }

    #[test]
    fn exits_read_like_docker() {
        assert_eq!(TaskExit::Exited(3).to_string(), "exit code 3");
        assert_eq!(
            TaskExit::Signaled(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(TaskExit::Signaled(15).exit_code(), 143);
        assert!(TaskExit::Exited(0).success() && !TaskExit::Exited(1).success());
    }
}
