//! A server with `auth:` through the real binary: the first admin token is made
//! with `--db` before the server starts; the server may then listen on a
//! non-loopback address; the CLI sends `--token` / `REDRIVE_TOKEN`; tokens are
//! created, listed and revoked through the API; the audit log names who did
//! what; no token value reaches the database file.

mod common;
use common::*;

fn cli_as(server: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = bin();
    cmd.args(args).env("REDRIVE_SERVER", server).env_remove("REDRIVE_TOKEN");
    if let Some(t) = token {
        cmd.env("REDRIVE_TOKEN", t);
    }
    finish(cmd.output().expect("spawn redrive"))
}

fn db_bytes(sb: &Sandbox) -> Vec<u8> {
    let mut bytes = std::fs::read(sb.db()).unwrap();
    if let Ok(wal) = std::fs::read(format!("{}-wal", sb.db().display())) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn tokens_gate_every_request_and_calls_are_audited() {
    let sb = Sandbox::new();
    let config = sb.write("server.yaml", "auth: {}\n");
    let db = sb.db().display().to_string();
    let admin = finish(bin().args(["token", "create", "--db", &db, "--name", "admin", "--scope", "admin"]).output().unwrap()).ok();
    let admin_token = admin.stdout.trim().to_string();
    assert!(admin_token.starts_with("rdv_") && admin_token.len() == 68, "{admin_token}");
    assert!(admin.stderr.contains("shown only now"), "{}", admin.stderr);

    // With auth: configured, a non-loopback address is accepted.
    let server = start_server(server_command(&sb, "0.0.0.0:0").arg("--config").arg(&config));
    let url = server.url.clone();
    assert!(server.banner.contains("credentials required: bearer tokens and 0 AWS access keys"), "{}", server.banner);

    let refused = cli_as(&url, None, &["pipeline", "list"]).code(2);
    assert!(refused.stderr.contains("UnauthorizedException"), "{}", refused.stderr);
    cli_as(&url, Some("rdv_not-a-token"), &["pipeline", "list"]).code(2);
    cli_as(&url, Some(&admin_token), &["pipeline", "list"]).ok();
    let flag =
        finish(bin().args(["pipeline", "list", "--server", &url, "--token", &admin_token]).env_remove("REDRIVE_TOKEN").output().unwrap());
    assert_eq!(flag.code, 0, "--token works like REDRIVE_TOKEN: {}", flag.stderr);

    // A second token, through the API; the store is locked by the server, so --db refuses.
    let locked = finish(bin().args(["token", "create", "--db", &db, "--name", "x", "--scope", "read"]).output().unwrap()).code(2);
    assert!(locked.stderr.contains("--server"), "{}", locked.stderr);
    let ci = cli_as(
        &url,
        Some(&admin_token),
        &["token", "create", "--name", "ci", "--scope", "read", "--pipelines", "payments-*", "--expires", "30d"],
    )
    .ok();
    let ci_token = ci.stdout.trim().to_string();
    let listed = cli_as(&url, Some(&admin_token), &["token", "list", "--output", "json"]).ok();
    let listing = listed.json();
    let names: Vec<&str> = listing["tokens"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "ci"]);
    assert!(!listed.stdout.contains(&ci_token) && !listed.stdout.contains(&admin_token), "no token value is listed");

    let definition = sb.write("p.yaml", "name: payments-a\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n");
    let denied = cli_as(&url, Some(&ci_token), &["pipeline", "create", "-f", definition.to_str().unwrap()]).code(2);
    assert!(
        denied.stderr.contains("AccessDeniedException") && denied.stderr.contains("ci has scope read; this needs admin"),
        "{}",
        denied.stderr
    );
    cli_as(&url, Some(&admin_token), &["pipeline", "create", "-f", definition.to_str().unwrap()]).ok();
    cli_as(&url, Some(&ci_token), &["pipeline", "get", "payments-a"]).ok();

    // The nightly job's least privilege: redrive (and follow) payments-* queues, nothing else.
    let nightly =
        cli_as(&url, Some(&admin_token), &["token", "create", "--name", "nightly", "--scope", "operate", "--queues", "payments-*"]).ok();
    let nightly = nightly.stdout.trim().to_string();
    let swept = cli_as(&url, Some(&nightly), &["dlq", "redrive", "--prefix", "payments-"]).ok();
    assert!(swept.stdout.contains("SUCCEEDED"), "{}", swept.stdout);
    let wider = cli_as(&url, Some(&nightly), &["dlq", "redrive", "--prefix", "pay"]).code(2);
    assert!(wider.stderr.contains("nightly is limited to queues payments-*"), "{}", wider.stderr);
    cli_as(&url, Some(&admin_token), &["token", "revoke", "nightly"]).ok();

    cli_as(&url, Some(&admin_token), &["token", "revoke", "ci"]).ok();
    cli_as(&url, Some(&ci_token), &["pipeline", "get", "payments-a"]).code(2);

    let audit = cli_as(&url, Some(&admin_token), &["audit", "--output", "json"]).ok().json();
    let seen: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["principal"].as_str().unwrap().into(), e["action"].as_str().unwrap().into(), e["target"].as_str().unwrap_or("").into()))
        .collect();
    let want = |p: &str, a: &str, t: &str| (p.to_string(), a.to_string(), t.to_string());
    assert_eq!(
        seen,
        [
            want("admin", "DELETE /v1/tokens/{name}", "ci"),
            want("admin", "DELETE /v1/tokens/{name}", "nightly"),
            want("nightly", "POST /v1/dlq/redrive", "payments-*"),
            want("admin", "POST /v1/tokens", "nightly"),
            want("admin", "POST /v1/pipelines", "payments-a"),
            want("admin", "POST /v1/tokens", "ci"),
        ]
    );
    let text = cli_as(&url, Some(&admin_token), &["audit"]).ok();
    assert!(text.stdout.contains("DELETE /v1/tokens/{name}"), "{}", text.stdout);

    drop(server);
    let bytes = db_bytes(&sb);
    assert!(contains(&bytes, "payments-a"), "the database file was read");
    assert!(!contains(&bytes, &admin_token) && !contains(&bytes, &ci_token), "no token value is stored");
}

#[test]
fn without_auth_a_non_loopback_address_is_refused_with_the_way_out() {
    let sb = Sandbox::new();
    let out = finish(server_command(&sb, "0.0.0.0:0").output().unwrap()).code(2);
    assert!(out.stderr.contains("auth:") && out.stderr.contains("redrive token create"), "{}", out.stderr);
}
