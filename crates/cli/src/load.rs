//! Reading definition files and reporting their problems, and the one bounded
//! reader for every file the CLI reads (definitions, the server's config).

use crate::{OutputFormat, exit};
use redrive_core::definition::{Pipeline, Problem, parse_pipeline, source, total_problems};
use redrive_core::limits::MAX_DEFINITION_BYTES;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A validated definition with what the store needs to keep.
pub struct LoadedFile {
    pub pipeline: Pipeline,
    /// Canonical JSON of the document.
    pub definition_json: String,
    /// Absolute directory of the file: relative paths in the definition resolve here.
    pub source_dir: PathBuf,
}

pub enum LoadError {
    /// The file could not be read.
    Io(String),
    /// The definition has problems.
    Invalid(Vec<Problem>),
}

/// Reads a regular file of at most `max_bytes` of UTF-8, in bounded memory and
/// without blocking: a FIFO, a device (`/dev/zero`), a directory, a file over the
/// limit, a missing or unreadable path is refused at once. `what` names what the
/// file should hold, with its article ("a definition"); the error names the path,
/// what it is instead, and the limit.
pub fn read_bounded(path: &Path, what: &str, max_bytes: usize) -> Result<String, String> {
    let refuse = |problem: String| format!("{}: {problem}; {what} must be a regular file of at most {max_bytes} bytes", path.display());
    // Look before opening (opening some devices has effects), then check the
    // opened file itself: the path may have changed in between. O_NONBLOCK keeps
    // the open of a FIFO from waiting for a writer; on the regular file that is
    // then read it changes nothing, so it stays set.
    regular_file(&std::fs::metadata(path).map_err(|e| refuse(format!("cannot read it: {e}")))?).map_err(refuse)?;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| refuse(format!("cannot open it: {e}")))?;
    let meta = file.metadata().map_err(|e| refuse(format!("cannot read it: {e}")))?;
    regular_file(&meta).map_err(refuse)?;
    let mut bytes = Vec::with_capacity(meta.len().min(max_bytes as u64) as usize + 1);
    file.take(max_bytes as u64 + 1).read_to_end(&mut bytes).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if bytes.len() > max_bytes {
        return Err(refuse(format!("is {} bytes long", meta.len().max(bytes.len() as u64))));
    }
    String::from_utf8(bytes).map_err(|e| refuse(format!("is not UTF-8 text ({e})")))
}

/// `Err(what the file is instead)` unless it is a regular file.
fn regular_file(meta: &Metadata) -> Result<(), String> {
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    };
    Err(format!("is {kind}, not a regular file"))
}

pub fn load_file(path: &Path) -> Result<LoadedFile, LoadError> {
    let text = read_bounded(path, "a definition", MAX_DEFINITION_BYTES).map_err(LoadError::Io)?;
    let node = source::parse_document(&text).map_err(|e| LoadError::Invalid(vec![Problem::from_source(&e)]))?;
    let pipeline = parse_pipeline(&node).map_err(LoadError::Invalid)?;
    let abs = std::fs::canonicalize(path).map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
    let source_dir = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    Ok(LoadedFile { pipeline, definition_json: node.to_json().to_string(), source_dir })
}

/// `file:line: path: message (got value; allowed: ...)`.
pub fn format_problem(file: &Path, p: &Problem) -> String {
    let mut s = format!("{}", file.display());
    if let Some(line) = p.line {
        s.push_str(&format!(":{line}"));
    }
    s.push_str(&format!(": {}: {}", p.path, p.message));
    match (&p.value, &p.allowed) {
        (Some(v), Some(a)) => s.push_str(&format!(" (got {v}; allowed: {a})")),
        (Some(v), None) => s.push_str(&format!(" (got {v})")),
        (None, Some(a)) => s.push_str(&format!(" (allowed: {a})")),
        (None, None) => {}
    }
    s
}

/// Prints a load error to stderr (text) or stdout (json) and returns the exit code.
pub fn report_load_error(file: &Path, err: &LoadError, output: OutputFormat) -> u8 {
    match err {
        LoadError::Io(msg) => {
            eprintln!("error: {msg}");
            exit::INVALID_INPUT
        }
        LoadError::Invalid(problems) => {
            let total = total_problems(problems);
            if output == OutputFormat::Json {
                let v =
                    serde_json::json!({"file": file.display().to_string(), "valid": false, "problemCount": total, "problems": problems});
                println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            } else {
                eprintln!("error: {} is invalid ({total} problem{}):", file.display(), plural(total));
                for p in problems {
                    eprintln!("  {}", format_problem(file, p));
                }
            }
            exit::INVALID_INPUT
        }
    }
}

pub fn validate(files: &[PathBuf], output: OutputFormat) -> u8 {
    let mut code = exit::SUCCEEDED;
    for file in files {
        match load_file(file) {
            Ok(l) => {
                let actions: usize = l.pipeline.stages.iter().map(|s| s.actions.len()).sum();
                if output == OutputFormat::Json {
                    let v = serde_json::json!({"file": file.display().to_string(), "valid": true, "pipeline": l.pipeline.name.as_str(), "stages": l.pipeline.stages.len(), "actions": actions});
                    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
                } else {
                    println!(
                        "{}: valid (pipeline {}, {} stage{}, {} action{})",
                        file.display(),
                        l.pipeline.name,
                        l.pipeline.stages.len(),
                        plural(l.pipeline.stages.len()),
                        actions,
                        plural(actions)
                    );
                }
            }
            Err(e) => code = report_load_error(file, &e, output),
        }
    }
    code
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
