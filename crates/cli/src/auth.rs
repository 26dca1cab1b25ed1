//! `redrive token create|list|revoke` and `redrive audit`.
//!
//! Two ways to reach the tokens: through a running server's API (`--server`,
//! with an admin token in `--token` / `REDRIVE_TOKEN`), or with `--db` straight
//! on the store when no server holds it — how the first admin token is made
//! (a SQLite file is locked by the server that runs on it, so `--db` refuses
//! then; use the API).

use crate::present::Table;
use crate::remote::{Remote, block, connect, print_json, report};
use crate::{OutputFormat, exit};
use redrive_store::{AnyStore, AuditFilter, Store, StoreLocation, StoreOptions};
use redrive_wire as w;

/// Most audit records `redrive audit` fetches unless told otherwise.
const DEFAULT_AUDIT_ITEMS: usize = 50;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token and print it (once: only its SHA-256 is stored).
    Create(CreateArgs),
    /// List the tokens: name, scope, name limits, creation and expiry (never their values).
    List(Where),
    /// Revoke a token: requests carrying it are refused from now on.
    Revoke {
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        at: Where,
    },
}

/// Where the tokens are: a server (default) or a store (`--db`).
#[derive(clap::Args)]
pub struct Where {
    #[command(flatten)]
    pub remote: Remote,
    /// Use this store directly instead of a server (no server may be running
    /// on it): how the first admin token is created.
    #[arg(long, value_name = "PATH|URL")]
    pub db: Option<StoreLocation>,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The token's name (shown in the audit log): A-Z a-z 0-9 . @ - _.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// read (lists, gets, state, metrics) < operate (start, stop, retry-stage,
    /// DLQ redrive) < admin (pipelines, queues, purges, tokens, audit).
    #[arg(long, value_name = "SCOPE", value_parser = ["read", "operate", "admin"])]
    scope: String,
    /// Limit the token to these pipelines (`payments-*` for a prefix; comma-separated).
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pipelines: Option<Vec<String>>,
    /// Limit the token to these dead-letter queues (`payments-*` for a prefix; comma-separated).
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    queues: Option<Vec<String>>,
    /// The token stops working after this long (`30d`, `12h`); default: never.
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    #[command(flatten)]
    at: Where,
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    at: Where,
    /// Show at most N records, newest first.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_AUDIT_ITEMS, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..=1000), usize::from))]
    max_items: usize,
}

pub fn token(cmd: TokenCommand) -> u8 {
    match cmd {
        TokenCommand::Create(args) => create(args),
        TokenCommand::List(at) => list(at),
        TokenCommand::Revoke { name, at } => revoke(&name, at),
    }
}

/// Runs `f` on the store at `db` (opened, and locked, for the duration).
fn on_store<T>(db: &StoreLocation, f: impl AsyncFnOnce(&AnyStore) -> Result<T, String>) -> Result<T, String> {
    block(async {
        let store = AnyStore::open(db, StoreOptions::default())
            .await
            .map_err(|e| format!("opening {db}: {e} (if a server runs on it, use --server and --token instead)"))?;
        f(&store).await
    })
}

fn fail(message: String) -> u8 {
    eprintln!("error: {message}");
    exit::INVALID_INPUT
}

fn create(args: CreateArgs) -> u8 {
    let req = w::CreateTokenRequest {
        name: args.name,
        scope: args.scope,
        pipelines: args.pipelines,
        queues: args.queues,
        expires_in: args.expires,
    };
    let created = match &args.at.db {
        Some(db) => on_store(db, async |store| {
            let (token, record) = redrive_api::auth::admin::new_token(&req, redrive_engine::Clock::now(&redrive_engine::SystemClock))?;
            let info = redrive_api::auth::admin::token_info(&record);
            store.create_token(record).await.map_err(|e| e.to_string())?;
            Ok(w::CreatedToken { token, info })
        }),
        None => match remote(&args.at.remote, async |c| c.create_token(&req).await) {
            Ok(c) => Ok(c),
            Err(code) => return code,
        },
    };
    match created {
        Ok(c) if args.at.remote.output == OutputFormat::Json => {
            print_json(&c);
            exit::SUCCEEDED
        }
        Ok(c) => {
            println!("{}", c.token);
            eprintln!(
                "token {} ({}) created; it is shown only now: keep it secret, send it as Authorization: Bearer",
                c.info.name,
                describe(&c.info)
            );
            exit::SUCCEEDED
        }
        Err(e) => fail(e),
    }
}

/// Calls the server; an error is reported and becomes the exit code.
fn remote<T>(r: &Remote, f: impl AsyncFnOnce(&crate::client::Client) -> crate::client::Result<T>) -> Result<T, u8> {
    let client = connect(r)?;
    block(f(&client)).map_err(|e| report(&e, r.output))
}

fn describe(t: &w::TokenInfo) -> String {
    let list = |l: &Option<Vec<String>>| l.as_ref().map_or_else(|| "all".to_string(), |l| l.join(","));
    format!("scope {}; pipelines {}; queues {}", t.scope, list(&t.pipelines), list(&t.queues))
}

fn list(at: Where) -> u8 {
    let tokens = match &at.db {
        Some(db) => on_store(db, async |store| {
            let records = store.list_tokens().await.map_err(|e| e.to_string())?;
            Ok(w::TokenList { tokens: records.iter().map(redrive_api::auth::admin::token_info).collect() })
        }),
        None => match remote(&at.remote, async |c| c.list_tokens().await) {
            Ok(t) => Ok(t),
            Err(code) => return code,
        },
    };
    let tokens = match tokens {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if at.remote.output == OutputFormat::Json {
        print_json(&tokens);
        return exit::SUCCEEDED;
    }
    let mut table = Table::new(&["NAME", "SCOPE", "PIPELINES", "QUEUES", "CREATED", "EXPIRES"]);
    for t in &tokens.tokens {
        let list = |l: &Option<Vec<String>>| l.as_ref().map_or_else(|| "*".to_string(), |l| l.join(","));
        table.row(vec![
            t.name.clone(),
            t.scope.clone(),
            list(&t.pipelines),
            list(&t.queues),
            t.created_at.clone(),
            t.expires_at.clone().unwrap_or_else(|| "never".into()),
        ]);
    }
    if table.is_empty() {
        println!("no tokens");
    } else {
        println!("{}", table.render());
    }
    exit::SUCCEEDED
}

fn revoke(name: &str, at: Where) -> u8 {
    let revoked = match &at.db {
        Some(db) => on_store(db, async |store| store.revoke_token(name).await.map_err(|e| e.to_string())),
        None => match remote(&at.remote, async |c| c.revoke_token(name).await) {
            Ok(()) => Ok(true),
            Err(code) => return code,
        },
    };
    match revoked {
        Ok(true) => {
            eprintln!("token {name} revoked");
            exit::SUCCEEDED
        }
        Ok(false) => fail(format!("no token named {name}")),
        Err(e) => fail(e),
    }
}

pub fn audit(args: AuditArgs) -> u8 {
    let entries = match &args.at.db {
        Some(db) => on_store(db, async |store| {
            let rows = store.list_audit(AuditFilter { before_seq: None, limit: args.max_items }).await.map_err(|e| e.to_string())?;
            Ok(w::AuditList { entries: rows.iter().map(redrive_api::auth::admin::audit_entry).collect(), next_token: None })
        }),
        None => match remote(&args.at.remote, async |c| c.list_audit(None, args.max_items).await) {
            Ok(l) => Ok(l),
            Err(code) => return code,
        },
    };
    let list = match entries {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if args.at.remote.output == OutputFormat::Json {
        print_json(&list);
        return exit::SUCCEEDED;
    }
    let mut table = Table::new(&["SEQ", "AT", "PRINCIPAL", "ACTION", "TARGET", "STATUS"]);
    for e in &list.entries {
        table.row(vec![
            e.seq.to_string(),
            e.at.clone(),
            e.principal.clone(),
            e.action.clone(),
            e.target.clone().unwrap_or_default(),
            e.status.to_string(),
        ]);
    }
    if table.is_empty() {
        println!("no audit records");
    } else {
        println!("{}", table.render());
    }
    exit::SUCCEEDED
}
