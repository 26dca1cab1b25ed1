//! An attempt's scratch directory (`$TMPDIR/redrive-attempt-<id>`, mode 0700):
//! `input.json`, and the places for `error.json` and `output.json`. It is
//! removed when the attempt ends however it ends; directories of engines that
//! are no longer running are removed by [`remove_stale_scratch_dirs`].
//!
//! The action owns the directory while it runs and may leave anything there: the
//! files are read without trusting them ([`read_action_file`]). Everything here
//! blocks: call it on a blocking thread.

use super::{ATTEMPT_DIR_PREFIX, owner_engine, procfs};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub(crate) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates the directory for attempt `id` and writes `input.json`.
    pub fn create(id: &str, input_json: &[u8]) -> std::io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("{ATTEMPT_DIR_PREFIX}{id}"));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let scratch = Scratch { dir };
        if let Err(e) = std::fs::write(scratch.input_file(), input_json) {
            scratch.remove();
            return Err(e);
        }
        Ok(scratch)
    }

    pub fn error_file(&self) -> PathBuf {
        self.dir.join("error.json")
    }

    pub fn output_file(&self) -> PathBuf {
        self.dir.join("output.json")
    }

    pub fn input_file(&self) -> PathBuf {
        self.dir.join("input.json")
    }

    /// Removes the directory and whatever the action left in it (symlinks are
    /// removed, never followed). Failures are logged.
    pub fn remove(self) {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %self.dir.display(), "could not remove an attempt's scratch directory: {e}"),
        }
    }
}

/// What reading `$REDRIVE_OUTPUT_FILE` or `$REDRIVE_ERROR_FILE` gave.
#[derive(Debug)]
pub(crate) enum FileRead {
    /// Not there (never written, or deleted).
    Missing,
    Bytes(Vec<u8>),
    /// Over the limit: its size in bytes.
    TooBig(u64),
    /// Not a regular file: what it is ("a FIFO", "a directory", ...).
    NotRegular(&'static str),
    Failed(std::io::Error),
}

/// Reads an action's file, at most `max_bytes`, without ever blocking on it or
/// opening anything but a regular file: `lstat` first (a FIFO, device, socket,
/// directory or symlink is refused unopened), then `open` with `O_NONBLOCK |
/// O_NOFOLLOW | O_NOCTTY`, then `fstat` on the descriptor (the path may have been
/// swapped meanwhile), then a bounded read.
pub(crate) fn read_action_file(path: &Path, max_bytes: u64) -> FileRead {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) => return FileRead::Failed(e),
        Ok(m) if !m.is_file() => return FileRead::NotRegular(kind(&m)),
        Ok(_) => {}
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY).open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return FileRead::NotRegular("a symbolic link"),
        Err(e) => return FileRead::Failed(e),
    };
    match file.metadata() {
        Err(e) => return FileRead::Failed(e),
        Ok(m) if !m.is_file() => return FileRead::NotRegular(kind(&m)),
        Ok(m) if m.size() > max_bytes => return FileRead::TooBig(m.size()),
        Ok(_) => {}
    }
    let mut buf = Vec::new();
    // `take` guards against a file that grew after the size check.
    if let Err(e) = file.take(max_bytes + 1).read_to_end(&mut buf) {
        return FileRead::Failed(e);
    }
    if buf.len() as u64 > max_bytes {
        return FileRead::TooBig(buf.len() as u64);
    }
    FileRead::Bytes(buf)
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Removes the scratch directories (in `$TMPDIR`, owned by this user) of
/// engines that are no longer running; returns how many. A directory whose
/// engine runs (this one included) is never touched.
pub(crate) fn remove_stale_scratch_dirs() -> std::io::Result<usize> {
    let uid = rustix::process::geteuid().as_raw();
    let mut removed = 0;
    for entry in std::fs::read_dir(std::env::temp_dir())?.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(owner_engine) else {
            continue;
        };
        let mine = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !mine || procfs::engine_alive(owner) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %entry.path().display(), "could not remove a stale attempt directory: {e}"),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        assert!(matches!(read_action_file(&f, 10), FileRead::Missing));
        std::fs::write(&f, b"12345").unwrap();
        assert!(matches!(read_action_file(&f, 10), FileRead::Bytes(b) if b == b"12345"));
        assert!(matches!(read_action_file(&f, 4), FileRead::TooBig(5)));
        assert!(matches!(read_action_file(dir.path(), 10), FileRead::NotRegular("a directory")));
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(read_action_file(&link, 10), FileRead::NotRegular("a symbolic link")));
        let fifo = dir.path().join("p");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        assert!(matches!(read_action_file(&fifo, 10), FileRead::NotRegular("a FIFO")));
    }
}
