//! Command actions: run an argv, classify its exit (PRODUCT.md §3).
//!
//! # How an attempt runs
//!
//! - The argv is executed directly, never through a shell. A relative `argv[0]`
//!   containing `/` resolves against [`AttemptContext::base_dir`] (else the
//!   engine's current directory); a bare name is looked up in `PATH`.
//! - Working directory: `workingDirectory` (relative: against `base_dir`), else
//!   `base_dir`, else the engine's current directory. A missing one fails the
//!   attempt with `Action.FAILED` before anything is spawned.
//! - Environment: the engine's, plus the action's `env`, plus (winning over both)
//!   `REDRIVE_ERROR_FILE`, `REDRIVE_OUTPUT_FILE`, `REDRIVE_INPUT_FILE` (paths in a
//!   fresh temporary directory per attempt; the error and output files are not
//!   pre-created), `REDRIVE_IDEMPOTENCY_KEY`, `REDRIVE_ATTEMPT`, `REDRIVE_SERIES`,
//!   `REDRIVE_EXECUTION_ID`, `REDRIVE_STAGE`, `REDRIVE_ACTION` and `REDRIVE_INPUT`
//!   (the input JSON; omitted when longer than
//!   [`limits::MAX_INPUT_ENV_BYTES`], read `REDRIVE_INPUT_FILE` then).
//! - stdin is `/dev/null`; stdout and stderr are drained concurrently and only
//!   their last [`limits::MAX_CAPTURED_STREAM_BYTES`] are kept.
//! - The child leads its own process group, and asks the kernel to SIGKILL it if
//!   its parent dies (`PR_SET_PDEATHSIG`), so a `kill -9` of redrive does not leave
//!   it running. Note: the kernel's "parent" is the *thread* that spawned it; the
//!   engine must call this from long-lived runtime worker threads (no
//!   `block_in_place` / short-lived blocking threads).
//! - `PR_SET_PDEATHSIG` covers only the direct child, and real commands are often
//!   scripts whose work runs in grandchildren. So each attempt also gets a
//!   watchdog: a tiny `/bin/sh` in its own process group, blocked reading a pipe
//!   whose only write end redrive holds. If redrive dies in any way, the kernel
//!   closes that end, the watchdog's `read` sees EOF and it SIGKILLs the
//!   command's whole group. In normal operation redrive kills (and reaps) the
//!   watchdog when the attempt ends. Should the watchdog fail to start, the
//!   attempt runs without it (logged as a warning).
//! - The attempt owns its process group: when the command exits, times out, or
//!   the attempt future is dropped, every process still in the group is
//!   SIGKILLed. Background processes a command leaves behind do not outlive its
//!   attempt (a process that escapes the group with `setsid` is on its own).
//!
//! # Classification
//!
//! | what happened | outcome |
//! |---|---|
//! | exit 0 | success; output = `$REDRIVE_OUTPUT_FILE` parsed as JSON if it exists (empty file: no output; over 1 MiB or invalid JSON: `Action.FAILED`) |
//! | non-zero exit, `$REDRIVE_ERROR_FILE` holds `{"errorType", "message", "retryAfterSeconds"}` (all optional) | that type (invalid type: `Action.FAILED`, saying why), message and retry hint; without `errorType`, as below with the file's message and hint |
//! | non-zero exit listed in `exitCodes` | that type |
//! | other non-zero exit | `Action.FAILED` |
//! | killed by a signal (not by our timeout) | `Job.INTERNAL_ERROR` "killed by signal N (SIGxxx)" |
//! | ran past `timeoutSeconds` | `Step.TIMEOUT` "timed out after Ns" (the whole group is SIGKILLed) |
//! | could not be started (not found, not executable) | `Action.FAILED` "failed to start ARGV0: error" |
//! | missing working directory, empty argv | `Action.FAILED` |
//! | engine-side trouble (temporary directory, waiting on the child) | `Step.SERVICE_FAULT` |
//!
//! Default failure message: `exit code N: <last non-empty stderr lines>` (at most
//! 5 lines and [`limits::MAX_STDERR_EXCERPT_BYTES`], joined with ` | `; stdout's
//! lines when stderr is empty). Every message is cut to
//! [`FAILURE_MESSAGE_MAX_BYTES`].

use super::{AttemptContext, AttemptOutcome, ReportedError, fmt_secs, limits};
use redrive_core::definition::CommandSpec;
use redrive_core::exception::{ExceptionType, FAILURE_MESSAGE_MAX_BYTES, Failure, truncate_utf8};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

/// How long to keep draining stdout/stderr after the process group is gone
/// (only a process that escaped the group can hold the pipes open that long).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
const MAX_EXCERPT_LINES: usize = 5;

fn failed(t: ExceptionType, message: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome::Failed(Failure::new(t, truncate_utf8(message.into(), FAILURE_MESSAGE_MAX_BYTES)))
}

/// Runs one attempt of a command action. Never panics; see the module docs.
pub async fn run_command(spec: &CommandSpec, ctx: &AttemptContext) -> AttemptOutcome {
    let Some(argv0) = spec.argv.first() else {
        return failed(ExceptionType::ActionFailed, "command has an empty argv");
    };

    let cwd = match working_dir(spec, ctx).await {
        Ok(d) => d,
        Err(msg) => return failed(ExceptionType::ActionFailed, msg),
    };
    let program = resolve_program(argv0, ctx);

    let tmp = match tempfile::Builder::new().prefix("redrive-attempt-").tempdir() {
        Ok(t) => t,
        Err(e) => {
            return failed(ExceptionType::ServiceFault, format!("could not create the attempt's temporary directory: {e}"));
        }
    };
    let error_file = tmp.path().join("error.json");
    let output_file = tmp.path().join("output.json");
    let input_file = tmp.path().join("input.json");
    if let Err(e) = tokio::fs::write(&input_file, ctx.input_json.as_bytes()).await {
        return failed(ExceptionType::ServiceFault, format!("could not write the attempt's input file {}: {e}", input_file.display()));
    }

    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&spec.argv[1..])
        .envs(&spec.env)
        .env("REDRIVE_ERROR_FILE", &error_file)
        .env("REDRIVE_OUTPUT_FILE", &output_file)
        .env("REDRIVE_INPUT_FILE", &input_file)
        .env("REDRIVE_IDEMPOTENCY_KEY", &ctx.idempotency_key)
        .env("REDRIVE_ATTEMPT", ctx.attempt.to_string())
        .env("REDRIVE_SERIES", ctx.series.to_string())
        .env("REDRIVE_EXECUTION_ID", &ctx.execution_id)
        .env("REDRIVE_STAGE", &ctx.stage)
        .env("REDRIVE_ACTION", &ctx.action)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if ctx.input_json.len() <= limits::MAX_INPUT_ENV_BYTES {
        cmd.env("REDRIVE_INPUT", &ctx.input_json);
    } else {
        cmd.env_remove("REDRIVE_INPUT");
    }
    if let Some(d) = &cwd {
        cmd.current_dir(d);
    }
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (our pid is read before the fork).
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody is
            // left to signal us, so die now as the parent's death demands.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }

    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return failed(ExceptionType::ActionFailed, format!("failed to start {argv0}: {e}"));
        }
    };
    let pid = child.id().map(|p| p as i32);
    let mut guard = GroupGuard { pgid: pid };
    let watchdog = pid.and_then(spawn_watchdog);
    tracing::debug!(
        execution = %ctx.execution_id, stage = %ctx.stage, action = %ctx.action,
        attempt = ctx.attempt, pid = ?pid, program = %program.display(), "command started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_tail(s, stop_rx.clone())));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_tail(s, stop_rx)));

    let ended = match ctx.timeout {
        Some(t) => match tokio::time::timeout(t, child.wait()).await {
            Ok(r) => Ended::from(r),
            Err(_) => Ended::TimedOut(t),
        },
        None => Ended::from(child.wait().await),
    };
    // Whatever happened, the attempt is over: nothing of its group may survive
    // it (background leftovers, or the whole tree on timeout). Until the leader
    // is reaped its pid, hence its group id, cannot be reused; after a normal
    // exit the id stays reserved as long as any member of the group remains.
    guard.kill();
    if !matches!(ended, Ended::Exited(_)) {
        let _ = child.wait().await; // reap the killed leader
    }
    guard.disarm();
    if let Some(mut w) = watchdog {
        let _ = w.child.kill().await; // SIGKILL and reap; only then close the pipe
        drop(w.pipe);
    }

    let out_tail = finish_reader(stdout, &stop_tx).await;
    let err_tail = finish_reader(stderr, &stop_tx).await;

    let status = match ended {
        Ended::Exited(s) => s,
        Ended::TimedOut(t) => {
            tracing::debug!(action = %ctx.action, attempt = ctx.attempt, "command timed out");
            return failed(ExceptionType::Timeout, format!("timed out after {}", fmt_secs(t)));
        }
        Ended::WaitFailed(e) => {
            return failed(ExceptionType::ServiceFault, format!("lost track of {argv0}: {e}"));
        }
    };

    let outcome = classify(spec, status, &output_file, &error_file, &out_tail, &err_tail);
    drop(tmp);
    outcome
}

enum Ended {
    Exited(ExitStatus),
    TimedOut(Duration),
    WaitFailed(std::io::Error),
}

impl From<std::io::Result<ExitStatus>> for Ended {
    fn from(r: std::io::Result<ExitStatus>) -> Self {
        match r {
            Ok(s) => Ended::Exited(s),
            Err(e) => Ended::WaitFailed(e),
        }
    }
}

/// SIGKILLs the child's process group when killed explicitly or dropped armed
/// (the attempt future was cancelled).
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.pgid.filter(|p| *p > 1) {
            // SAFETY: plain syscall; ESRCH (group already gone) is fine.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The watchdog script: wait for EOF on stdin (redrive gone), then kill the
/// command's group (`$1`). redrive never writes to the pipe.
const WATCHDOG_SCRIPT: &str = "read line; kill -KILL -\"$1\" 2>/dev/null";

struct Watchdog {
    child: tokio::process::Child,
    /// The pipe's only write end; closing it (redrive's death) wakes the watchdog.
    pipe: OwnedFd,
}

fn spawn_watchdog(pgid: i32) -> Option<Watchdog> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two fresh descriptors, which we own from here on.
    // O_CLOEXEC keeps the write end out of every other exec'd child.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(pgid, "command watchdog not started (pipe: {e}); a crash of redrive could leave the command's children running");
        return None;
    }
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let spawned = tokio::process::Command::new("/bin/sh")
        .args(["-c", WATCHDOG_SCRIPT, "redrive-watchdog", &pgid.to_string()])
        .stdin(Stdio::from(read_end))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear()
        .current_dir("/")
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    match spawned {
        Ok(child) => Some(Watchdog { child, pipe: write_end }),
        Err(e) => {
            tracing::warn!(
                pgid,
                "command watchdog not started (/bin/sh: {e}); a crash of redrive could leave the command's children running"
            );
            None
        }
    }
}

async fn working_dir(spec: &CommandSpec, ctx: &AttemptContext) -> Result<Option<PathBuf>, String> {
    let dir = match (&spec.working_directory, &ctx.base_dir) {
        (Some(w), Some(base)) if Path::new(w).is_relative() => base.join(w),
        (Some(w), _) => PathBuf::from(w),
        (None, Some(base)) => base.clone(),
        (None, None) => return Ok(None),
    };
    match tokio::fs::metadata(&dir).await {
        Ok(m) if m.is_dir() => Ok(Some(dir)),
        Ok(_) => Err(format!("working directory {} is not a directory", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!("working directory {} does not exist", dir.display())),
        Err(e) => Err(format!("working directory {} is not usable: {e}", dir.display())),
    }
}

/// A relative program path with a `/` (e.g. `./build.sh`, `bin/tool`) resolves
/// against the pipeline's directory, not the child's working directory (which
/// std leaves platform-defined). Bare names are left to the `PATH` lookup.
fn resolve_program(argv0: &str, ctx: &AttemptContext) -> PathBuf {
    let p = Path::new(argv0);
    if p.is_absolute() || !argv0.contains('/') {
        return p.to_path_buf();
    }
    match &ctx.base_dir {
        Some(base) => base.join(p),
        None => std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// The last `MAX_CAPTURED_STREAM_BYTES` of a stream, read until EOF or `stop`.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        const MAX: usize = limits::MAX_CAPTURED_STREAM_BYTES;
        self.total += chunk.len() as u64;
        if chunk.len() >= MAX {
            self.buf.clear();
            self.buf.extend_from_slice(&chunk[chunk.len() - MAX..]);
            return;
        }
        self.buf.extend_from_slice(chunk);
        // Compact lazily: at most 2×MAX is ever held.
        if self.buf.len() > 2 * MAX {
            let excess = self.buf.len() - MAX;
            self.buf.drain(..excess);
        }
    }

    fn bytes(&self) -> &[u8] {
        let n = self.buf.len();
        &self.buf[n.saturating_sub(limits::MAX_CAPTURED_STREAM_BYTES)..]
    }
}

async fn read_tail<R: AsyncRead + Unpin>(mut r: R, mut stop: watch::Receiver<bool>) -> Tail {
    let mut tail = Tail::default();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = r.read(&mut chunk) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => tail.push(&chunk[..n]),
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    tail
}

async fn finish_reader(h: Option<tokio::task::JoinHandle<Tail>>, stop: &watch::Sender<bool>) -> Tail {
    let Some(mut h) = h else {
        return Tail::default();
    };
    match tokio::time::timeout(DRAIN_GRACE, &mut h).await {
        Ok(r) => r.unwrap_or_default(),
        Err(_) => {
            let _ = stop.send(true);
            h.await.unwrap_or_default()
        }
    }
}

fn classify(
    spec: &CommandSpec,
    status: ExitStatus,
    output_file: &Path,
    error_file: &Path,
    out_tail: &Tail,
    err_tail: &Tail,
) -> AttemptOutcome {
    let excerpt = {
        let e = excerpt(err_tail.bytes());
        if e.is_empty() { excerpt(out_tail.bytes()) } else { e }
    };
    let with_excerpt = |head: String| {
        if excerpt.is_empty() { head } else { format!("{head}: {excerpt}") }
    };

    let code = match status.code() {
        Some(c) => c,
        None => {
            let sig = status.signal().unwrap_or(0);
            let head = match signal_name(sig) {
                Some(name) => format!("killed by signal {sig} ({name})"),
                None => format!("killed by signal {sig}"),
            };
            return failed(ExceptionType::JobInternalError, with_excerpt(head));
        }
    };

    if code == 0 {
        return match read_bounded(output_file, limits::MAX_OUTPUT_FILE_BYTES) {
            Ok(None) => AttemptOutcome::Succeeded { output: None },
            Ok(Some(bytes)) if bytes.iter().all(u8::is_ascii_whitespace) => AttemptOutcome::Succeeded { output: None },
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(v) => AttemptOutcome::Succeeded { output: Some(v) },
                Err(e) => failed(ExceptionType::ActionFailed, format!("exit code 0 but $REDRIVE_OUTPUT_FILE is not valid JSON: {e}")),
            },
            Err(BoundedReadError::TooBig(n)) => failed(
                ExceptionType::ActionFailed,
                format!("exit code 0 but $REDRIVE_OUTPUT_FILE is {n} bytes, over the limit of {} bytes", limits::MAX_OUTPUT_FILE_BYTES),
            ),
            Err(BoundedReadError::Io(e)) => {
                failed(ExceptionType::ActionFailed, format!("exit code 0 but $REDRIVE_OUTPUT_FILE could not be read: {e}"))
            }
        };
    }

    let default_message = with_excerpt(format!("exit code {code}"));
    let by_exit_code = || spec.exit_codes.get(&code).cloned().unwrap_or(ExceptionType::ActionFailed);

    let reported = match read_bounded(error_file, limits::MAX_ERROR_FILE_BYTES) {
        Ok(None) => None,
        Ok(Some(bytes)) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => match ReportedError::from_json(&v) {
                Some(r) => Some(Ok(r)),
                None => Some(Err("$REDRIVE_ERROR_FILE is not a JSON object".to_string())),
            },
            Err(e) => Some(Err(format!("$REDRIVE_ERROR_FILE is not valid JSON: {e}"))),
        },
        Err(BoundedReadError::TooBig(n)) => {
            Some(Err(format!("$REDRIVE_ERROR_FILE ignored: {n} bytes, over the limit of {} bytes", limits::MAX_ERROR_FILE_BYTES)))
        }
        Err(BoundedReadError::Io(e)) => Some(Err(format!("$REDRIVE_ERROR_FILE could not be read: {e}"))),
    };

    match reported {
        None => failed(by_exit_code(), default_message),
        Some(Err(problem)) => failed(by_exit_code(), format!("{default_message} ({problem})")),
        Some(Ok(r)) => {
            let message = r.message.unwrap_or(default_message);
            let (t, message) = match r.error_type {
                None => (by_exit_code(), message),
                Some(Ok(t)) => (t, message),
                Some(Err(bad)) => (ExceptionType::ActionFailed, format!("{message} ($REDRIVE_ERROR_FILE: {bad})")),
            };
            AttemptOutcome::Failed(Failure::new(t, truncate_utf8(message, FAILURE_MESSAGE_MAX_BYTES)).with_retry_after_ms(r.retry_after_ms))
        }
    }
}

enum BoundedReadError {
    TooBig(u64),
    Io(std::io::Error),
}

/// Reads a whole file if it exists and is at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, BoundedReadError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BoundedReadError::Io(e)),
    };
    let len = f.metadata().map_err(BoundedReadError::Io)?.len();
    if len > max {
        return Err(BoundedReadError::TooBig(len));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // `take` guards against a file that grew after the size check.
    f.take(max + 1).read_to_end(&mut buf).map_err(BoundedReadError::Io)?;
    if buf.len() as u64 > max {
        return Err(BoundedReadError::TooBig(buf.len() as u64));
    }
    Ok(Some(buf))
}

/// The last non-empty lines of captured output: at most `MAX_EXCERPT_LINES`
/// lines and `MAX_STDERR_EXCERPT_BYTES`, joined with ` | `.
fn excerpt(bytes: &[u8]) -> String {
    let max = limits::MAX_STDERR_EXCERPT_BYTES;
    let text = String::from_utf8_lossy(bytes);
    let mut picked: Vec<String> = Vec::new();
    let mut len = 0;
    for line in text.lines().rev().map(str::trim).filter(|l| !l.is_empty()) {
        if picked.len() == MAX_EXCERPT_LINES {
            break;
        }
        let sep = if picked.is_empty() { 0 } else { 3 };
        if len + sep + line.len() > max {
            if picked.is_empty() {
                picked.push(truncate_utf8(line.to_string(), max));
            }
            break;
        }
        len += sep + line.len();
        picked.push(line.to_string());
    }
    picked.reverse();
    picked.join(" | ")
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::default();
        for i in 0..100u32 {
            t.push(&[(i % 251) as u8; 4096]);
        }
        assert_eq!(t.bytes().len(), limits::MAX_CAPTURED_STREAM_BYTES);
        assert_eq!(*t.bytes().last().unwrap(), 99);
        assert!(t.buf.len() <= 2 * limits::MAX_CAPTURED_STREAM_BYTES);
        assert_eq!(t.total, 100 * 4096);
        t.push(&vec![7u8; 3 * limits::MAX_CAPTURED_STREAM_BYTES]);
        assert!(t.bytes().iter().all(|b| *b == 7));
    }

    #[test]
    fn excerpt_takes_last_non_empty_lines() {
        assert_eq!(excerpt(b"a\n\nb\n  \nc\n\n"), "a | b | c");
        assert_eq!(excerpt(b"1\n2\n3\n4\n5\n6\n7\n"), "3 | 4 | 5 | 6 | 7");
        let long = format!("first\n{}\n", "x".repeat(2000));
        let e = excerpt(long.as_bytes());
        assert!(e.len() <= limits::MAX_STDERR_EXCERPT_BYTES && e.starts_with("xxx"), "{e}");
        assert_eq!(excerpt(b""), "");
    }
}
