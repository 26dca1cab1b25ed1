//! A fresh PostgreSQL database per test, through `psql` (the server the tests
//! use: `REDRIVE_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres;
//! `scripts/ensure-postgres.sh` starts one).
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn admin_url() -> String {
    std::env::var("REDRIVE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// `psql URL -Atc SQL`: the output rows, or a panic naming how to start PostgreSQL.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap_or_else(|e| panic!("psql not found ({e}): install PostgreSQL's client, or run scripts/ensure-postgres.sh"));
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}\n(is PostgreSQL running? scripts/ensure-postgres.sh starts one; REDRIVE_TEST_POSTGRES_URL names another)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database created for one test and dropped (with its connections) after it.
pub struct FreshDatabase {
    pub name: String,
    pub url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl FreshDatabase {
    pub fn new(tag: &str) -> FreshDatabase {
        let name = format!("redrive_cli_{tag}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let admin = admin_url();
        psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').map(|(base, _)| base).expect("the admin URL names a database");
        FreshDatabase { url: format!("{base}/{name}"), name }
    }

    /// `psql` on this database.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }

    /// Refuses new connections and ends the open ones: the database is down for
    /// redrive, the server stays up for other tests.
    pub fn go_down(&self) {
        psql(&admin_url(), &format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", self.name));
        psql(&admin_url(), &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}'", self.name));
    }

    pub fn come_back(&self) {
        psql(&admin_url(), &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name));
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let admin = admin_url();
        let _ =
            Command::new("psql").args([admin.as_str(), "-Atqc", &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name)]).output();
        let _ =
            Command::new("psql").args([admin.as_str(), "-Atqc", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)]).output();
    }
}
