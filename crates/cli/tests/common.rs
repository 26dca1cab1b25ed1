//! Helpers for end-to-end tests that drive the real `redrive` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redrive"))
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn db(&self) -> PathBuf {
        self.path("redrive.db")
    }

    /// `redrive run FILE --db DB --output json`, returning (exit code, parsed summary, stderr).
    pub fn run_json(&self, file: &Path) -> (i32, serde_json::Value, String) {
        let out = bin().arg("run").arg(file).arg("--db").arg(self.db()).args(["--output", "json"]).output().expect("spawn redrive");
        parse(out)
    }

    pub fn resume_json(&self) -> (i32, serde_json::Value, String) {
        let out = bin().args(["run", "--resume", "--db"]).arg(self.db()).args(["--output", "json"]).output().expect("spawn redrive");
        parse(out)
    }
}

pub fn parse(out: Output) -> (i32, serde_json::Value, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// Attempts of one action from a run summary.
pub fn attempts<'a>(summary: &'a serde_json::Value, stage: &str, action: &str) -> Vec<&'a serde_json::Value> {
    summary["attempts"].as_array().expect("attempts").iter().filter(|a| a["stage"] == stage && a["action"] == action).collect()
}

pub fn ms(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}
