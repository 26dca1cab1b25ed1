//! Tracking every process an attempt starts, including those that leave its
//! process group (`setsid`, daemons), so that none outlives the attempt.
//!
//! # Mechanism
//!
//! - **Marker.** Every attempt's environment holds
//!   `REDRIVE_ATTEMPT_ID=<engine pid>-<engine start ticks>-<uuid>`; descendants
//!   inherit it across `fork`, `exec` and `setsid`.
//! - **cgroup v2, when usable.** If this process's cgroup v2 directory (from
//!   `/proc/self/cgroup` and `/proc/self/mountinfo`) accepts a child cgroup with a
//!   `cgroup.kill` file (Linux ≥ 5.14, write access: root or a delegated
//!   subtree), each attempt gets `<own cgroup>/redrive-attempt-<id>` and the
//!   command moves itself into it before `exec`. No process can leave a cgroup
//!   without write access elsewhere, and `cgroup.kill` SIGKILLs the whole subtree
//!   atomically (no fork race). If the command did not land in its cgroup, the
//!   attempt falls back to the marker scan. Once the cgroup is empty, one marker
//!   scan follows anyway: a root process can move itself to another cgroup, not
//!   out of its environment.
//! - **Marker scan (always; all there is without a usable cgroup).** At the
//!   end of the attempt every process in
//!   `/proc` whose environment holds the exact marker string is SIGKILLed through
//!   a pidfd opened *before* re-checking the marker (a recycled pid is never
//!   hit), and the scan repeats until none is left (catching processes forked
//!   meanwhile). Limits: only processes whose environment we can read (same user,
//!   or root) and that kept the marker — one that execs with a cleared
//!   environment (`env -i`) or overwrites its environment block escapes.
//! - **Subreaper.** The engine marks itself a child subreaper
//!   (`PR_SET_CHILD_SUBREAPER`), so orphaned descendants of attempts re-parent to
//!   it instead of to pid 1, and their zombies can be reaped. Reaping never uses
//!   `waitpid(-1)`: only specific pids known to belong to the attempt (in its
//!   cgroup; or seen with its marker, or in its process group) and never the
//!   attempt's leader, which `tokio::process` owns and reaps. Zombies of other
//!   children of the engine are left alone. (Gap without a cgroup: a process
//!   that left the attempt's group and exited on its own before the final scan
//!   cannot be attributed any more; its zombie stays until the engine exits.)
//! - **Crashes.** Each attempt's watchdog (see the `command` module) also writes
//!   the attempt's `cgroup.kill` when redrive dies; cgroup directories of dead
//!   engines are removed by [`super::remove_stale_attempt_dirs`]. Without a
//!   cgroup, processes that escaped the group survive a crash of the engine.
//!
//! The sweep ([`Tracker::sweep`]) blocks (a `/proc` scan, short waits for
//! processes to die): run it on a blocking thread.

use super::procfs::{self, ProcStat};
use super::{ATTEMPT_DIR_PREFIX, owner_engine};
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};
use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Name of the environment variable that marks an attempt's processes.
pub(crate) const MARKER_VAR: &str = "REDRIVE_ATTEMPT_ID";
/// How long a sweep waits for killed processes to die and be reaped.
const SWEEP_WAIT: Duration = Duration::from_secs(5);
/// Longest pause between two looks at what is left.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(50);

/// Makes this process a child subreaper, once. Failure is logged, not fatal:
/// orphans then go to pid 1 (killed all the same, reaped by it).
pub(crate) fn ensure_subreaper() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
            tracing::warn!("could not become a child subreaper ({e}); orphaned command processes are reaped by pid 1");
        }
    });
}

/// Where this process's cgroup v2 lives: the directory, and its path as
/// `/proc/<pid>/cgroup` spells it.
struct CgroupBase {
    dir: PathBuf,
    rel: String,
}

fn cgroup_base() -> Option<&'static CgroupBase> {
    static BASE: OnceLock<Option<CgroupBase>> = OnceLock::new();
    BASE.get_or_init(|| {
        let own = procfs::cgroup_v2_path("self")?;
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().find_map(|l| base_from_mountinfo(l, &own))
    })
    .as_ref()
}

/// The cgroup v2 directory of cgroup `own`, if `line` is the cgroup2 mount holding it.
fn base_from_mountinfo(line: &str, own: &str) -> Option<CgroupBase> {
    let (mount, fs) = line.split_once(" - ")?;
    if fs.split_whitespace().next()? != "cgroup2" {
        return None;
    }
    let fields: Vec<&str> = mount.split_whitespace().collect();
    let (root, point) = (*fields.get(3)?, *fields.get(4)?);
    if point.contains('\\') {
        return None; // an escaped mount point: not worth decoding
    }
    let inside = if root == "/" { own } else { own.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/'))? };
    Some(CgroupBase { dir: Path::new(point).join(inside.trim_start_matches('/')), rel: own.to_string() })
}

/// An attempt's own cgroup.
struct AttemptCgroup {
    dir: PathBuf,
    /// As `/proc/<pid>/cgroup` spells it.
    rel: String,
    /// False once the command is known not to have joined it.
    in_use: bool,
}

impl AttemptCgroup {
    fn create(id: &str) -> Option<AttemptCgroup> {
        let base = cgroup_base()?;
        let name = format!("{ATTEMPT_DIR_PREFIX}{id}");
        let dir = base.dir.join(&name);
        if let Err(e) = std::fs::create_dir(&dir) {
            log_mechanism_once(&format!("cgroup v2 not writable here ({}: {e})", base.dir.display()));
            return None;
        }
        if !dir.join("cgroup.kill").exists() {
            let _ = std::fs::remove_dir(&dir);
            log_mechanism_once("cgroup v2 has no cgroup.kill (Linux < 5.14)");
            return None;
        }
        log_mechanism_once("");
        let rel = format!("{}/{name}", base.rel.trim_end_matches('/'));
        Some(AttemptCgroup { dir, rel, in_use: true })
    }

    fn contains(&self, pid: i32) -> bool {
        procfs::cgroup_v2_path(pid).is_some_and(|p| self.holds(&p))
    }

    /// Whether cgroup path `p` is this cgroup or below it.
    fn holds(&self, p: &str) -> bool {
        p == self.rel || p.strip_prefix(self.rel.as_str()).is_some_and(|rest| rest.starts_with('/'))
    }

    fn kill_all(&self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
    }

    /// Whether any live process remains in the cgroup or below it.
    fn populated(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.events")).map(|e| e.lines().any(|l| l == "populated 1")).unwrap_or(false)
    }
}

fn log_mechanism_once(cgroup_problem: &str) {
    static LOGGED: OnceLock<()> = OnceLock::new();
    LOGGED.get_or_init(|| {
        if cgroup_problem.is_empty() {
            tracing::info!("command attempts are tracked with cgroup v2 (cgroup.kill)");
        } else {
            tracing::info!("command attempts are tracked by their {MARKER_VAR} environment marker: {cgroup_problem}");
        }
    });
}

/// The processes of one attempt: how to find them, kill them and reap them.
pub(crate) struct Tracker {
    marker: String,
    cgroup: Option<AttemptCgroup>,
    /// The command's process (and group) id, once started: owned by tokio.
    leader: Option<i32>,
}

impl Tracker {
    /// A tracker for attempt `id` (creates its cgroup when possible: blocking).
    pub fn new(id: &str) -> Tracker {
        ensure_subreaper();
        Tracker { marker: id.to_string(), cgroup: AttemptCgroup::create(id), leader: None }
    }

    /// A tracker that uses only the environment marker.
    #[cfg(test)]
    fn marker_only(id: &str) -> Tracker {
        ensure_subreaper();
        Tracker { marker: id.to_string(), cgroup: None, leader: None }
    }

    /// The value of [`MARKER_VAR`] for the command.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// The `cgroup.procs` file the command writes itself into before `exec`.
    pub fn join_path(&self) -> Option<CString> {
        let cg = self.cgroup.as_ref()?;
        CString::new(cg.dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).ok()
    }

    /// The `cgroup.kill` file, for the watchdog.
    pub fn kill_path(&self) -> Option<PathBuf> {
        self.cgroup.as_ref().filter(|c| c.in_use).map(|c| c.dir.join("cgroup.kill"))
    }

    /// Records the started command; if it is not in the attempt's cgroup (it
    /// could not join, or already moved elsewhere), this attempt falls back to
    /// the marker scan. Reads one small `/proc` file.
    pub fn started(&mut self, leader: i32) {
        self.leader = Some(leader);
        let Some(cg) = self.cgroup.as_mut() else {
            return;
        };
        let now_in = procfs::cgroup_v2_path(leader);
        if now_in.as_deref().is_some_and(|p| cg.holds(p)) {
            return;
        }
        cg.in_use = false;
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(pid = leader, cgroup = %cg.dir.display(), now_in = ?now_in, "a command is not in its attempt's cgroup; such attempts are tracked by their environment marker");
        }
    }

    /// Kills every process of the attempt, reaps those that became our
    /// children, waits (at most [`SWEEP_WAIT`]) until none is left, and removes
    /// the attempt's cgroup. Blocking.
    pub fn sweep(self) {
        if self.leader.is_some() {
            self.kill_and_reap();
        }
        if let Some(cg) = &self.cgroup {
            remove_cgroup_tree(&cg.dir);
        }
    }

    /// The cgroup first (atomic, complete for whatever stayed in it), then the
    /// marker: it catches what left the cgroup (root may) or was never in it.
    fn kill_and_reap(&self) {
        let deadline = Instant::now() + SWEEP_WAIT;
        let mut seen = HashSet::new(); // (pid, start ticks): immune to pid reuse
        if let Some(cg) = self.cgroup.as_ref().filter(|c| c.in_use) {
            self.settle(Some(cg), &mut seen, deadline);
        }
        self.settle(None, &mut seen, deadline);
    }

    /// Kill rounds until nothing of the attempt is left (by `cgroup`, else by
    /// marker) or the deadline passes.
    fn settle(&self, cgroup: Option<&AttemptCgroup>, seen: &mut HashSet<(i32, u64)>, deadline: Instant) {
        let mut pause = Duration::from_millis(1);
        loop {
            let left = self.kill_round(cgroup, seen);
            if left == 0 {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(attempt = %self.marker, left, "processes of the attempt did not die within {SWEEP_WAIT:?}");
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_POLL_PAUSE);
        }
    }

    /// One look: kill what lives, reap our zombies; returns how many processes
    /// of the attempt are still there (the leader's zombie, tokio's, excepted).
    fn kill_round(&self, cgroup: Option<&AttemptCgroup>, seen: &mut HashSet<(i32, u64)>) -> usize {
        let me = std::process::id() as i32;
        if let Some(cg) = cgroup {
            cg.kill_all();
        }
        let mut left = usize::from(cgroup.is_some_and(AttemptCgroup::populated));
        for p in procfs::all_processes().into_iter().filter(|p| p.pid != me) {
            let member = match cgroup {
                Some(cg) => p.is_zombie() && cg.contains(p.pid),
                None => self.marked(&p, seen),
            };
            if !member || (p.is_zombie() && Some(p.pid) == self.leader) {
                continue;
            }
            if cgroup.is_none() && !p.is_zombie() {
                self.kill_marked(p.pid);
            }
            if !(p.is_zombie() && p.ppid == me && reap(p.pid)) {
                left += 1;
            }
        }
        left
    }

    /// Marker mode: whether `p` belongs to the attempt. A live process must carry
    /// the marker (it is then remembered); a zombie, whose environment is gone,
    /// must have been seen alive or be in the attempt's process group.
    fn marked(&self, p: &ProcStat, seen: &mut HashSet<(i32, u64)>) -> bool {
        if p.is_zombie() {
            return seen.contains(&(p.pid, p.start_ticks)) || Some(p.pgid) == self.leader;
        }
        let found = procfs::environ_contains(p.pid, self.marker_entry().as_bytes());
        if found {
            seen.insert((p.pid, p.start_ticks));
        }
        found
    }

    fn marker_entry(&self) -> String {
        format!("{MARKER_VAR}={}", self.marker)
    }

    /// SIGKILLs `pid` if it still carries the marker once pinned by a pidfd.
    fn kill_marked(&self, pid: i32) {
        let Some(p) = Pid::from_raw(pid) else {
            return;
        };
        match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
            Ok(fd) => {
                if procfs::environ_contains(pid, self.marker_entry().as_bytes()) {
                    let _ = rustix::process::pidfd_send_signal(&fd, Signal::KILL);
                }
            }
            // No pidfds (Linux < 5.3): a plain kill, racing pid reuse.
            Err(rustix::io::Errno::NOSYS) => {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
            Err(_) => {}
        }
    }
}

/// Reaps `pid` if it is an exited child of ours; whether it was reaped.
fn reap(pid: i32) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return false;
    };
    matches!(rustix::process::waitpid(Some(p), WaitOptions::NOHANG), Ok(Some(_)))
}

/// Removes a cgroup and any cgroups below it (leaves first). Their processes
/// must be gone; a busy one is left in place and logged.
fn remove_cgroup_tree(dir: &Path) -> bool {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(cgroup = %dir.display(), "could not remove an attempt's cgroup: {e}");
            false
        }
    }
}

/// Kills and removes the attempt cgroups of engines that are no longer running
/// (left by a crash); returns how many were removed. Blocking.
pub(crate) fn remove_stale_cgroups() -> usize {
    let Some(base) = cgroup_base() else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(&base.dir) else {
        return 0;
    };
    let stale: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().and_then(owner_engine).is_some_and(|owner| !procfs::engine_alive(owner)))
        .map(|e| e.path())
        .collect();
    stale.iter().filter(|dir| kill_and_remove_cgroup(dir)).count()
}

fn kill_and_remove_cgroup(dir: &Path) -> bool {
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let deadline = Instant::now() + SWEEP_WAIT;
    let populated = || std::fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|e| e.lines().any(|l| l == "populated 1"));
    while populated() && Instant::now() < deadline {
        std::thread::sleep(MAX_POLL_PAUSE);
    }
    remove_cgroup_tree(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    #[test]
    fn cgroup_base_from_mountinfo() {
        let line = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let b = base_from_mountinfo(line, "/a/b").unwrap();
        assert_eq!((b.dir, b.rel.as_str()), (PathBuf::from("/sys/fs/cgroup/unified/a/b"), "/a/b"));
        let nested = "50 31 0:38 /a /mnt/cg rw - cgroup2 cgroup2 rw";
        assert_eq!(base_from_mountinfo(nested, "/a/b").unwrap().dir, PathBuf::from("/mnt/cg/b"));
        assert!(base_from_mountinfo(nested, "/ab").is_none());
        assert!(base_from_mountinfo("36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices", "/").is_none());
    }

    fn marker() -> String {
        format!("{}-{}", procfs::engine_id(), uuid::Uuid::new_v4().simple())
    }

    /// Runs `script` as an attempt leader carrying `marker`, waits for it (as
    /// tokio would) and returns the pid it printed.
    fn leader_leaving(marker: &str, script: &str) -> (i32, i32) {
        let child =
            Command::new("sh").args(["-c", script]).env(MARKER_VAR, marker).stdout(Stdio::piped()).process_group(0).spawn().unwrap();
        let leader = child.id() as i32;
        let out = child.wait_with_output().unwrap();
        let pid = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
        (leader, pid)
    }

    fn exists(pid: i32) -> bool {
        procfs::stat(pid).is_some()
    }

    #[track_caller]
    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn marker_scan_kills_and_reaps_an_escaped_process() {
        let marker = marker();
        let mut t = Tracker::marker_only(&marker);
        // The escapee leaves the group and the session, and outlives its parent:
        // it is re-parented to us (the subreaper).
        let (leader, escaped) = leader_leaving(&marker, "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $!");
        wait_until("the escapee is re-parented to us", || procfs::stat(escaped).is_some_and(|s| s.ppid == std::process::id() as i32));
        t.leader = Some(leader);
        t.sweep();
        assert!(!exists(escaped), "{escaped} survived (or was left a zombie): {:?}", procfs::stat(escaped));
    }

    #[test]
    fn marker_scan_reaps_zombies_left_in_the_group() {
        let marker = marker();
        let mut t = Tracker::marker_only(&marker);
        // A double fork: the grandchild exits on its own after its parent, as
        // our zombie, with its environment gone; its group gives it away.
        let (leader, orphan) = leader_leaving(&marker, "(sleep 0.2 >/dev/null & echo $!)");
        wait_until("the orphan is a zombie", || procfs::stat(orphan).is_some_and(|s| s.is_zombie()));
        t.leader = Some(leader);
        t.sweep();
        assert!(!exists(orphan), "{orphan} was not reaped");
    }

    #[test]
    fn marker_scan_spares_processes_without_the_marker() {
        let marker = marker();
        let mut other = Command::new("sleep").arg("30").env(MARKER_VAR, "someone-else").spawn().unwrap();
        let mut t = Tracker::marker_only(&marker);
        t.leader = Some(other.id() as i32 + 1_000_000); // no such group
        t.sweep();
        assert!(other.try_wait().unwrap().is_none(), "an unrelated process was killed");
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
