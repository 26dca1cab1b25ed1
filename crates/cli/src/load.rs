//! Reading definition files and reporting their problems.

use crate::{OutputFormat, exit};
use redrive_core::definition::{Pipeline, Problem, parse_pipeline, source};
use std::path::{Path, PathBuf};

/// Largest definition file accepted.
pub const MAX_DEFINITION_FILE_BYTES: u64 = 1024 * 1024;

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

pub fn load_file(path: &Path) -> Result<LoadedFile, LoadError> {
    let meta = std::fs::metadata(path).map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
    if meta.len() > MAX_DEFINITION_FILE_BYTES {
        return Err(LoadError::Io(format!(
            "{}: {} bytes is over the {} byte limit for a definition",
            path.display(),
            meta.len(),
            MAX_DEFINITION_FILE_BYTES
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
    let node = source::parse_document(&text).map_err(|e| {
        LoadError::Invalid(vec![Problem {
            path: "$".into(),
            line: Some(e.line),
            field: String::new(),
            value: None,
            message: e.message.clone(),
            allowed: None,
        }])
    })?;
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
            if output == OutputFormat::Json {
                let v = serde_json::json!({"file": file.display().to_string(), "valid": false, "problems": problems});
                println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            } else {
                eprintln!(
                    "error: {} is invalid ({} problem{}):",
                    file.display(),
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                );
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
