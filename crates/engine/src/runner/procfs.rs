//! The few `/proc` facts the runners need: a process's parent, group, state and
//! start time, its environment, its cgroup; and this engine's identity.
//!
//! All reads are small and bounded. They are still blocking syscalls: callers on
//! the async runtime only read single files of processes they own; whole-table
//! scans run on blocking threads.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    /// Clock ticks since boot: with the pid, identifies a process across pid reuse.
    pub start_ticks: u64,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Parses a `stat` line: `pid (comm) S ppid pgrp session ... starttime ...`.
/// `comm` may hold spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_stat(line: &str) -> Option<ProcStat> {
    let (head, rest) = line.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); starttime is field 22.
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// `None` when the process does not exist (or cannot be read).
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process visible in `/proc` right now (those that vanish mid-scan are skipped).
pub(crate) fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(stat).collect()
}

/// Environments larger than this are read only this far (Linux caps argv and
/// environment together at a quarter of the stack limit, 2 MiB by default).
const MAX_ENVIRON_BYTES: u64 = 4 * 1024 * 1024;

/// Whether `entry` (`NAME=value`) is one of the process's environment strings,
/// as they were at its last `exec`. `false` when unreadable (gone, a zombie,
/// another user's process).
pub(crate) fn environ_contains(pid: i32, entry: &[u8]) -> bool {
    let Ok(f) = std::fs::File::open(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut buf = Vec::new();
    if f.take(MAX_ENVIRON_BYTES).read_to_end(&mut buf).is_err() {
        return false;
    }
    buf.split(|b| *b == 0).any(|e| e == entry)
}

/// The process's cgroup v2 path (the `0::` line of `/proc/<pid>/cgroup`, without
/// the ` (deleted)` suffix of a removed cgroup). Zombies keep theirs.
pub(crate) fn cgroup_v2_path(pid: impl std::fmt::Display) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(path.strip_suffix(" (deleted)").unwrap_or(path).to_string())
}

/// This engine process as `<pid>-<start ticks>`: unique on the machine for the
/// life of the process, and tells a dead engine's leftovers from a live one's.
pub(crate) fn engine_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let pid = std::process::id() as i32;
        let start = stat(pid).map(|s| s.start_ticks).unwrap_or(0);
        format!("{pid}-{start}")
    })
}

/// Whether the engine named `<pid>-<start ticks>` (see [`engine_id`]) still runs.
/// Unparseable ids count as alive, and so does everything without a `/proc` to
/// look in: nothing is ever removed on a guess.
pub(crate) fn engine_alive(id: &str) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        return true;
    }
    let Some((pid, start)) = id.split_once('-') else {
        return true;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else {
        return true;
    };
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return false;
    }
    stat(pid).is_none_or(|s| s.start_ticks == start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.pid, s.state, s.ppid, s.pgid, s.start_ticks), (4242, 'S', 1, 4242, 987654));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_engine_is_alive_and_a_made_up_one_is_not() {
        assert!(engine_alive(engine_id()));
        let (pid, start) = engine_id().split_once('-').unwrap();
        let other_start: u64 = start.parse::<u64>().unwrap() + 1;
        assert!(!engine_alive(&format!("{pid}-{other_start}")));
        assert!(engine_alive("not-an-id"));
    }
}
