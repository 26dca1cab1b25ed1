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
//! - Scratch directory: `$TMPDIR/redrive-attempt-<id>` (mode 0700, `<id>` names
//!   the engine's pid and start time plus a uuid), removed when the attempt ends,
//!   however it ends (a cancelled attempt's is removed by a cleanup thread;
//!   a crashed engine's by [`super::remove_stale_attempt_dirs`] at the next start).
//! - Environment: not the engine's (it may hold credentials: database URLs,
//!   cloud keys): only [`INHERITED_ENV`] from it (`PATH`, `HOME`, locale, time
//!   zone, `TMPDIR`, user name), plus the action's `env` and `secretEnv` (values
//!   from [`super::secrets::Secrets`], scrubbed from everything read back), plus (winning over all)
//!   `REDRIVE_ERROR_FILE`, `REDRIVE_OUTPUT_FILE`, `REDRIVE_INPUT_FILE` (paths in
//!   the scratch directory; the error and output files are not pre-created),
//!   `REDRIVE_IDEMPOTENCY_KEY`, `REDRIVE_ATTEMPT`, `REDRIVE_SERIES`,
//!   `REDRIVE_EXECUTION_ID`, `REDRIVE_STAGE`, `REDRIVE_ACTION`,
//!   `REDRIVE_ATTEMPT_ID` (an opaque marker the engine tracks the attempt's
//!   processes by) and `REDRIVE_INPUT` (the input JSON; omitted when longer than
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
//!   command's whole group (and its cgroup, when it has one). In normal
//!   operation redrive kills (and reaps) the watchdog when the attempt ends.
//!   Should the watchdog fail to start, the attempt runs without it (logged as a
//!   warning).
//! - The attempt ends when its command (the process redrive started) exits or
//!   times out, not when its pipes close. Then everything it started is
//!   SIGKILLed: first its process group, then every process tracked as the
//!   attempt's, including those that left the group with `setsid` or a double
//!   fork (a cgroup v2 when usable, and an environment-marker scan of `/proc`;
//!   the engine is a child subreaper so orphans can be reaped; see the
//!   `tracking` module). Only then are the pipes drained (at most
//!   1 s more) and the files read. The same happens when the attempt
//!   future is dropped.
//! - `$REDRIVE_OUTPUT_FILE` and `$REDRIVE_ERROR_FILE` are read only if they are
//!   regular files (`lstat`, then `open` with `O_NONBLOCK | O_NOFOLLOW`, then
//!   `fstat`), at most their size limit, on a blocking thread: a FIFO, a
//!   directory, a device, a symlink (to `/dev/zero` or anywhere) is refused,
//!   never waited on.
//!
//! # Classification
//!
//! | what happened | outcome |
//! |---|---|
//! | exit 0 | success; output = `$REDRIVE_OUTPUT_FILE` parsed as JSON if it exists (missing or empty file: no output) |
//! | exit 0, output file over [`limits::MAX_OUTPUT_FILE_BYTES`] or nested deeper than [`limits::MAX_JSON_DEPTH`] | `Engine.LIMIT_EXCEEDED` "the output of action S/A ($REDRIVE_OUTPUT_FILE) is N bytes / nested N levels deep; the maximum is ..." |
//! | exit 0, output file not valid JSON, or not a regular file (FIFO, directory, symlink, device) | `Action.FAILED`, saying which |
//! | non-zero exit, `$REDRIVE_ERROR_FILE` holds `{"errorType", "message", "retryAfterSeconds"}` (all optional) | that type (invalid type: `Action.FAILED`, saying why), message and retry hint (capped at the policy maximum delay); without `errorType`, as below with the file's message and hint |
//! | non-zero exit, error file unusable (not JSON, not an object, over [`limits::MAX_ERROR_FILE_BYTES`] or too deep, not a regular file) | as below, the message saying why the file was ignored |
//! | non-zero exit listed in `exitCodes` | that type |
//! | other non-zero exit | `Action.FAILED` |
//! | killed by a signal (not by our timeout) | `Job.INTERNAL_ERROR` "killed by signal N (SIGxxx)" |
//! | ran past `timeoutSeconds` | `Step.TIMEOUT` "timed out after Ns" (everything it started is SIGKILLed) |
//! | could not be started | `Action.FAILED` "failed to start ARGV0: ..." — "not found in PATH", "PATH does not exist", "PATH is a directory", "PATH is not executable (permission denied)", "PATH exists, but its interpreter ... was not found", else the OS error |
//! | missing working directory, empty argv | `Action.FAILED` |
//! | engine-side trouble (scratch directory, waiting on the child) | `Step.SERVICE_FAULT` |
//!
//! Default failure message: `exit code N: <last non-empty stderr lines>` (at most
//! 5 lines and [`limits::MAX_STDERR_EXCERPT_BYTES`], joined with ` | `; stdout's
//! lines when stderr is empty). Every message is cut to
//! [`FAILURE_MESSAGE_MAX_BYTES`].

use super::scratch::{FileRead, Scratch, read_action_file};
use super::secrets::Resolved;
use super::tracking::{MARKER_VAR, Tracker};
use super::{AttemptContext, AttemptOutcome, ReportedError, fmt_secs, limits, new_attempt_id, output_name, parse_output};
use redrive_core::definition::CommandSpec;
use redrive_core::exception::{ExceptionType, FAILURE_MESSAGE_MAX_BYTES, Failure, truncate_utf8};
use redrive_core::limits::{LimitError, Unit};
use rustix::process::{Pid, Signal};
use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

/// How long to keep draining stdout/stderr once every process of the attempt is
/// gone (only a process that escaped all tracking can hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
const MAX_EXCERPT_LINES: usize = 5;

fn failed(t: ExceptionType, message: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome::Failed(Failure::new(t, truncate_utf8(message.into(), FAILURE_MESSAGE_MAX_BYTES)))
}

/// Runs one attempt of a command action. Never panics; see the module docs.
/// Its `secretEnv` values are looked up first (one missing fails the attempt
/// with `Engine.SECRET_MISSING`, nothing run), and scrubbed from everything read
/// back from the process.
pub async fn run_command(spec: &CommandSpec, ctx: &AttemptContext) -> AttemptOutcome {
    let secrets = match ctx.secrets.resolve(&spec.secret_env).await {
        Ok(s) => s,
        Err(missing) => return AttemptOutcome::Failed(missing),
    };
    let outcome = run_with_secrets(spec, ctx, &secrets).await;
    secrets.scrub_outcome(outcome)
}

async fn run_with_secrets(spec: &CommandSpec, ctx: &AttemptContext, secrets: &Resolved) -> AttemptOutcome {
    let Some(argv0) = spec.argv.first() else {
        return failed(ExceptionType::ActionFailed, "command has an empty argv");
    };
    let cwd = match working_dir(spec, ctx).await {
        Ok(d) => d,
        Err(msg) => return failed(ExceptionType::ActionFailed, msg),
    };
    let program = resolve_program(argv0, ctx);
    // Declared before the child and the watchdog, so dropped after them.
    let (mut guard, env) = match prepare(ctx).await {
        Ok(r) => r,
        Err(msg) => return failed(ExceptionType::ServiceFault, msg),
    };
    let mut cmd = build_command(spec, ctx, &program, cwd.as_deref(), env);
    cmd.envs(secrets.env());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = describe_spawn_error(&program, &e).await;
            guard.finish(Wanted::Nothing).await;
            return failed(ExceptionType::ActionFailed, format!("failed to start {argv0}: {why}"));
        }
    };
    let watchdog = guard.started(child.id());
    tracing::debug!(
        execution = %ctx.execution_id, stage = %ctx.stage, action = %ctx.action,
        attempt = ctx.attempt, pid = ?child.id(), program = %program.display(), "command started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_tail(s, stop_rx.clone())));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_tail(s, stop_rx)));
    let ended = wait_for_end(&mut child, ctx.timeout).await;
    // Whatever happened, the attempt is over: nothing it started may survive it
    // (background leftovers, daemons, or the whole tree on timeout). Until the
    // leader is reaped its pid, hence its group id, cannot be reused; after a
    // normal exit the id stays reserved as long as any member of the group remains.
    guard.kill_group();
    if !matches!(ended, Ended::Exited(_)) {
        let _ = child.wait().await; // reap the killed leader
    }
    if let Some(w) = watchdog {
        w.stop().await;
    }
    guard.sweep().await; // also closes pipes an escaped process held
    let out_tail = finish_reader(stdout, &stop_tx).await;
    let err_tail = finish_reader(stderr, &stop_tx).await;

    let status = match ended {
        Ended::Exited(s) => s,
        Ended::TimedOut(t) => {
            guard.finish(Wanted::Nothing).await;
            tracing::debug!(action = %ctx.action, attempt = ctx.attempt, "command timed out");
            return failed(ExceptionType::Timeout, format!("timed out after {}", fmt_secs(t)));
        }
        Ended::WaitFailed(e) => {
            guard.finish(Wanted::Nothing).await;
            return failed(ExceptionType::ServiceFault, format!("lost track of {argv0}: {e}"));
        }
    };
    let file = match guard.finish(Wanted::after(status)).await {
        FileRead::Bytes(b) => FileRead::Bytes(secrets.scrub_bytes(&b)),
        other => other,
    };
    let (out_tail, err_tail) = (out_tail.scrubbed(secrets), err_tail.scrubbed(secrets));
    classify(spec, ctx, status, file, &out_tail, &err_tail)
}

/// What the command is told about its attempt's resources.
struct AttemptEnv {
    error_file: PathBuf,
    output_file: PathBuf,
    input_file: PathBuf,
    marker: String,
    cgroup_procs: Option<CString>,
}

/// Creates the attempt's scratch directory (with its input file) and process
/// tracker, off the runtime. They are in the guard from the start: if this
/// future is dropped, the guard's drop removes them.
async fn prepare(ctx: &AttemptContext) -> Result<(AttemptGuard, AttemptEnv), String> {
    let input = ctx.input_json.clone();
    let made = tokio::task::spawn_blocking(move || {
        let id = new_attempt_id();
        let scratch = Scratch::create(&id, input.as_bytes())?;
        let tracker = Tracker::new(&id);
        let env = AttemptEnv {
            error_file: scratch.error_file(),
            output_file: scratch.output_file(),
            input_file: scratch.input_file(),
            marker: tracker.marker().to_string(),
            cgroup_procs: tracker.join_path(),
        };
        Ok::<_, std::io::Error>((AttemptGuard { pgid: None, tracker: Some(tracker), scratch: Some(scratch) }, env))
    })
    .await;
    match made {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("could not create the attempt's scratch directory: {e}")),
        Err(e) => Err(format!("could not prepare the attempt: {e}")),
    }
}

/// The variables of the engine's environment an action's process sees (when
/// set): what programs need to run at all. Everything else the engine has —
/// `REDRIVE_DB`, `AWS_SECRET_ACCESS_KEY`, tokens — stays out of reach; an action
/// declares what it needs in its `env`.
pub const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

fn build_command(spec: &CommandSpec, ctx: &AttemptContext, program: &Path, cwd: Option<&Path>, env: AttemptEnv) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.args(&spec.argv[1..])
        .envs(&spec.env)
        .env("REDRIVE_ERROR_FILE", env.error_file)
        .env("REDRIVE_OUTPUT_FILE", env.output_file)
        .env("REDRIVE_INPUT_FILE", env.input_file)
        .env("REDRIVE_IDEMPOTENCY_KEY", &ctx.idempotency_key)
        .env("REDRIVE_ATTEMPT", ctx.attempt.to_string())
        .env("REDRIVE_SERIES", ctx.series.to_string())
        .env("REDRIVE_EXECUTION_ID", &ctx.execution_id)
        .env("REDRIVE_STAGE", &ctx.stage)
        .env("REDRIVE_ACTION", &ctx.action)
        .env(MARKER_VAR, env.marker)
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
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    set_pre_exec(&mut cmd, env.cgroup_procs);
    cmd
}

/// In the child, before `exec`: die with the engine (`PR_SET_PDEATHSIG`), and
/// move into the attempt's cgroup if it has one.
fn set_pre_exec(cmd: &mut tokio::process::Command, cgroup_procs: Option<CString>) {
    let parent = rustix::process::getpid(); // read before the fork
    // The store's engine locks: the child drops its copies first, so that it
    // never holds the database locked past the engine's death, however long it
    // takes to reach exec (joining a cgroup can block).
    let lock_fds = redrive_store::sqlite::inherited_lock_fds();
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls; it allocates nothing (the path was built
    // before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for fd in &lock_fds {
                libc::close(*fd);
            }
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died between fork and prctl: then nobody is
            // left to signal us, so die now as the parent's death demands.
            if rustix::process::getppid() != Some(parent) {
                libc::_exit(137);
            }
            if let Some(path) = &cgroup_procs {
                join_cgroup(path);
            }
            Ok(())
        });
    }
}

/// Writes "0" (this process) to a `cgroup.procs` file. A failure is noticed by
/// the parent ([`Tracker::started`]), which then tracks by marker instead.
fn join_cgroup(procs: &CStr) {
    use rustix::fs::{Mode, OFlags};
    if let Ok(fd) = rustix::fs::open(procs, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
        let _ = rustix::io::write(&fd, b"0");
    }
}

/// Says why `program` could not be started, in the terms of what is wrong with it.
async fn describe_spawn_error(program: &Path, e: &std::io::Error) -> String {
    use std::io::ErrorKind::{NotFound, PermissionDenied};
    if !program.as_os_str().as_encoded_bytes().contains(&b'/') {
        return if e.kind() == NotFound { "not found in PATH".to_string() } else { e.to_string() };
    }
    let shown = program.display();
    match (e.kind(), tokio::fs::metadata(program).await) {
        (NotFound, Err(_)) => format!("{shown} does not exist"),
        (NotFound, Ok(_)) => format!("{shown} exists, but its interpreter (#! line or ELF loader) was not found"),
        (PermissionDenied, Ok(m)) if m.is_dir() => format!("{shown} is a directory"),
        (PermissionDenied, Ok(m)) if m.permissions().mode() & 0o111 == 0 => format!("{shown} is not executable (permission denied)"),
        _ => e.to_string(),
    }
}

enum Ended {
    Exited(ExitStatus),
    TimedOut(Duration),
    WaitFailed(std::io::Error),
}

async fn wait_for_end(child: &mut tokio::process::Child, timeout: Option<Duration>) -> Ended {
    let r = match timeout {
        Some(t) => match tokio::time::timeout(t, child.wait()).await {
            Ok(r) => r,
            Err(_) => return Ended::TimedOut(t),
        },
        None => child.wait().await,
    };
    match r {
        Ok(s) => Ended::Exited(s),
        Err(e) => Ended::WaitFailed(e),
    }
}

/// Everything an attempt holds outside the runtime: its process group, its
/// tracked processes and its scratch directory. Dropped before [`Self::finish`]
/// (the attempt's future was cancelled), it kills the group at once and sweeps
/// the processes and removes the directory on a thread of its own (not a
/// runtime thread: the sweep blocks; not tokio's blocking pool: a runtime
/// shutting down drops queued work).
struct AttemptGuard {
    pgid: Option<i32>,
    tracker: Option<Tracker>,
    scratch: Option<Scratch>,
}

impl AttemptGuard {
    /// Records the started command and starts its watchdog.
    fn started(&mut self, pid: Option<u32>) -> Option<Watchdog> {
        let pid = pid.map(|p| p as i32)?;
        self.pgid = Some(pid);
        let tracker = self.tracker.as_mut()?;
        tracker.started(pid);
        spawn_watchdog(pid, tracker.kill_path())
    }

    /// SIGKILLs the command's process group (ESRCH, already gone, is fine).
    fn kill_group(&self) {
        if let Some(pgid) = self.pgid.and_then(Pid::from_raw).filter(|p| p.as_raw_nonzero().get() > 1) {
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
    }

    /// Kills and reaps every remaining process of the attempt, off the runtime.
    async fn sweep(&mut self) {
        self.kill_group();
        self.pgid = None;
        if let Some(t) = self.tracker.take() {
            let _ = tokio::task::spawn_blocking(move || t.sweep()).await;
        }
    }

    /// Sweeps, reads the file the exit status calls for, removes the scratch directory.
    async fn finish(mut self, wanted: Wanted) -> FileRead {
        self.sweep().await;
        let Some(scratch) = self.scratch.take() else {
            return FileRead::Missing;
        };
        let read = tokio::task::spawn_blocking(move || {
            let read = wanted.read(&scratch);
            scratch.remove();
            read
        });
        read.await.unwrap_or_else(|e| FileRead::Failed(std::io::Error::other(e)))
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        self.kill_group();
        let (tracker, scratch) = (self.tracker.take(), self.scratch.take());
        if tracker.is_none() && scratch.is_none() {
            return;
        }
        let cleanup = move || {
            if let Some(t) = tracker {
                t.sweep();
            }
            if let Some(s) = scratch {
                s.remove();
            }
        };
        if let Err(e) = std::thread::Builder::new().name("redrive-attempt-cleanup".into()).spawn(cleanup) {
            tracing::warn!("no thread to clean up a cancelled attempt ({e}); its leftovers go at the next start");
        }
    }
}

/// Which of the action's files the exit status makes relevant.
#[derive(Clone, Copy)]
enum Wanted {
    Nothing,
    Output,
    Error,
}

impl Wanted {
    fn after(status: ExitStatus) -> Wanted {
        match status.code() {
            Some(0) => Wanted::Output,
            Some(_) => Wanted::Error,
            None => Wanted::Nothing,
        }
    }

    fn read(self, scratch: &Scratch) -> FileRead {
        match self {
            Wanted::Nothing => FileRead::Missing,
            Wanted::Output => read_action_file(&scratch.output_file(), limits::MAX_OUTPUT_FILE_BYTES),
            Wanted::Error => read_action_file(&scratch.error_file(), limits::MAX_ERROR_FILE_BYTES),
        }
    }
}

/// The watchdog script: wait for EOF on stdin (redrive gone), then kill the
/// command's group (`$1`) and, if there is one, its cgroup (`$2` is its
/// `cgroup.kill`). redrive never writes to the pipe.
const WATCHDOG_SCRIPT: &str = "read line; kill -KILL -\"$1\" 2>/dev/null; [ -z \"$2\" ] || echo 1 > \"$2\"";

struct Watchdog {
    child: tokio::process::Child,
    /// The pipe's only write end; closing it (redrive's death) wakes the watchdog.
    pipe: OwnedFd,
}

impl Watchdog {
    /// SIGKILLs and reaps the watchdog; only then closes the pipe.
    async fn stop(mut self) {
        let _ = self.child.kill().await;
        drop(self.pipe);
    }
}

fn spawn_watchdog(pgid: i32, cgroup_kill: Option<PathBuf>) -> Option<Watchdog> {
    // O_CLOEXEC keeps the write end out of every other exec'd child.
    let (read_end, write_end) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(pgid, "command watchdog not started (pipe: {e}); a crash of redrive could leave the command's children running");
            return None;
        }
    };
    let spawned = tokio::process::Command::new("/bin/sh")
        .args(["-c", WATCHDOG_SCRIPT, "redrive-watchdog", &pgid.to_string()])
        .arg(cgroup_kill.unwrap_or_default())
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
    let joined = match &ctx.base_dir {
        Some(base) => base.join(p),
        None => std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()),
    };
    // Drop the `.` of `./tool` (for messages); a relative path keeps its `./`,
    // which keeps it out of the `PATH` lookup.
    if joined.is_absolute() { joined.components().collect() } else { joined }
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

    /// The tail with the secrets' values scrubbed (see [`Resolved::scrub_tail`]).
    fn scrubbed(self, secrets: &Resolved) -> Tail {
        let cut = self.total > self.bytes().len() as u64;
        Tail { buf: secrets.scrub_tail(self.bytes(), cut), total: self.total }
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
    ctx: &AttemptContext,
    status: ExitStatus,
    file: FileRead,
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
        return output_outcome(ctx, file);
    }

    let default_message = with_excerpt(format!("exit code {code}"));
    let by_exit_code = || spec.exit_codes.get(&code).cloned().unwrap_or(ExceptionType::ActionFailed);
    match reported_error(file) {
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

/// Exit 0: the output is `$REDRIVE_OUTPUT_FILE` as JSON, if there is one.
fn output_outcome(ctx: &AttemptContext, file: FileRead) -> AttemptOutcome {
    const MAX: u64 = limits::MAX_OUTPUT_FILE_BYTES;
    let what = || output_name(ctx, "$REDRIVE_OUTPUT_FILE");
    let bytes = match file {
        FileRead::Missing => return AttemptOutcome::Succeeded { output: None },
        FileRead::Bytes(b) if b.iter().all(u8::is_ascii_whitespace) => return AttemptOutcome::Succeeded { output: None },
        FileRead::Bytes(b) => b,
        FileRead::TooBig(n) => {
            let e = LimitError { what: what(), value: usize::try_from(n).unwrap_or(usize::MAX), max: MAX as usize, unit: Unit::Bytes };
            return AttemptOutcome::Failed(Failure::limit_exceeded(&e));
        }
        FileRead::NotRegular(kind) => {
            return failed(ExceptionType::ActionFailed, format!("exit code 0 but $REDRIVE_OUTPUT_FILE is {kind}, not a regular file"));
        }
        FileRead::Failed(e) => {
            return failed(ExceptionType::ActionFailed, format!("exit code 0 but $REDRIVE_OUTPUT_FILE could not be read: {e}"));
        }
    };
    match parse_output(what, &bytes, MAX as usize) {
        Ok(Ok(v)) => AttemptOutcome::Succeeded { output: Some(v) },
        Ok(Err(e)) => failed(ExceptionType::ActionFailed, format!("exit code 0 but $REDRIVE_OUTPUT_FILE is not valid JSON: {e}")),
        Err(limit) => AttemptOutcome::Failed(Failure::limit_exceeded(&limit)),
    }
}

/// Non-zero exit: what `$REDRIVE_ERROR_FILE` reports, if there is one
/// (`Some(Err(problem))`: present but unusable, and why).
fn reported_error(file: FileRead) -> Option<Result<ReportedError, String>> {
    const MAX: u64 = limits::MAX_ERROR_FILE_BYTES;
    let bytes = match file {
        FileRead::Missing => return None,
        FileRead::Bytes(b) => b,
        FileRead::TooBig(n) => return Some(Err(format!("$REDRIVE_ERROR_FILE ignored: {n} bytes, over the limit of {MAX} bytes"))),
        FileRead::NotRegular(kind) => return Some(Err(format!("$REDRIVE_ERROR_FILE ignored: it is {kind}, not a regular file"))),
        FileRead::Failed(e) => return Some(Err(format!("$REDRIVE_ERROR_FILE could not be read: {e}"))),
    };
    Some(match parse_output(|| "$REDRIVE_ERROR_FILE".to_string(), &bytes, MAX as usize) {
        Ok(Ok(v)) => ReportedError::from_json(&v).ok_or_else(|| "$REDRIVE_ERROR_FILE is not a JSON object".to_string()),
        Ok(Err(e)) => Err(format!("$REDRIVE_ERROR_FILE is not valid JSON: {e}")),
        Err(limit) => Err(format!("{limit}: ignored")),
    })
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
