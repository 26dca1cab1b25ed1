//! `redrive server --spread`: asking the process that holds a shard to
//! redrive one dead-letter entry of it (`POST
//! /v1/pipelines/{name}/dlq-entries/{id}/redrive` at the holder's announced
//! URL). A redrive run goes through its entries on one process and has each one
//! resubmitted by its shard's holder, so every entry is moved by the engine
//! driving its execution, exactly once (the take and the resubmission are one
//! fenced transition there).
//!
//! Under `auth:` the processes call each other with a bearer token this
//! process makes for itself (`operate` scope, valid [`PEER_TOKEN_HOURS`] hours,
//! replaced halfway through and revoked at shutdown); only its SHA-256 is
//! stored, like every token's.

use redrive_api::auth::AuthConfig;
use redrive_api::switch::FORWARDED_HEADER;
use redrive_core::shard::ShardId;
use redrive_core::time::Timestamp;
use redrive_engine::EngineError;
use redrive_engine::redrive::{EntryRedrive, PeerFuture, PeerRedrive, SkipReason};
use redrive_store::{AnyStore, Store};
use redrive_wire as w;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long a peer token is valid.
pub const PEER_TOKEN_HOURS: u64 = 2;
/// How long one call may take (a holder answers once the resubmission is committed).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from another process (an answer is a few hundred bytes;
/// an error carries a message).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest pause between two tries while a shard has no reachable holder.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// A token this process calls the others with.
struct PeerToken {
    name: String,
    value: String,
    made_at: Timestamp,
}

/// The process's side of the calls to the other processes.
pub(crate) struct Peers {
    store: Arc<AnyStore>,
    client: reqwest::Client,
    me: String,
    /// How long a call keeps trying while its shard has no reachable holder:
    /// past a take-over (the lapse of the dead holder's lease, and the next
    /// holder's taking it, with room to spare: two leases and two heartbeats).
    patience: Duration,
    /// `Some` under `auth:`.
    token: Option<RwLock<Option<PeerToken>>>,
    /// A call was refused as unauthenticated (the token was revoked): the
    /// next heartbeat makes a new one.
    token_refused: std::sync::atomic::AtomicBool,
}

impl Peers {
    /// `lease`: how long a stalled holder keeps its shards.
    pub(crate) fn new(store: Arc<AnyStore>, auth: Option<&AuthConfig>, lease: Duration) -> Arc<Peers> {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS settings builds");
        let patience = 2 * lease + 2 * store.heartbeat();
        let token = auth.map(|_| RwLock::new(None));
        Arc::new(Peers { store, client, me: redrive_store::member_id(), patience, token, token_refused: Default::default() })
    }

    /// The redrive of one entry at its shard's holder.
    pub(crate) fn redrive(self: &Arc<Self>) -> PeerRedrive {
        let peers = self.clone();
        Arc::new(move |call: EntryRedrive| -> PeerFuture {
            let peers = peers.clone();
            Box::pin(async move { peers.ask(call).await })
        })
    }

    /// Under `auth:`, makes this process's token if it has none or it is past
    /// half its life (revoking the one it replaces). Called every heartbeat.
    /// `writer`: a store this process may write through (a held shard's).
    pub(crate) async fn refresh_token(&self, writer: &AnyStore, now: Timestamp) -> anyhow::Result<()> {
        let Some(slot) = &self.token else { return Ok(()) };
        let half_life_ms = PEER_TOKEN_HOURS * 3_600_000 / 2;
        let fresh = slot.read().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|t| t.made_at.plus_ms(half_life_ms) > now);
        let refused = self.token_refused.swap(false, std::sync::atomic::Ordering::SeqCst);
        if fresh && !refused {
            return Ok(());
        }
        let name = format!("peer-{}", redrive_api::auth::token::generate().map_err(anyhow::Error::msg)?[4..16].to_owned());
        let req = w::CreateTokenRequest {
            name: name.clone(),
            scope: "operate".into(),
            pipelines: None,
            queues: None,
            expires_in: Some(format!("{PEER_TOKEN_HOURS}h")),
        };
        let (value, record) = redrive_api::auth::admin::new_token(&req, now).map_err(anyhow::Error::msg)?;
        writer.create_token(record).await?;
        let old = slot.write().unwrap_or_else(|e| e.into_inner()).replace(PeerToken { name, value, made_at: now });
        if let Some(old) = old {
            // Calls already sent with it are checked on arrival; a late one is retried.
            writer.revoke_token(&old.name).await?;
        }
        Ok(())
    }

    /// Revokes this process's token (at shutdown).
    pub(crate) async fn revoke_token(&self, writer: &AnyStore) {
        let Some(slot) = &self.token else { return };
        let old = slot.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(old) = old
            && let Err(e) = writer.revoke_token(&old.name).await
        {
            tracing::warn!(error = %e, token = old.name, "this process's peer token could not be revoked; it expires by itself");
        }
    }

    /// Asks the holder of `call`'s shard, trying again (a new holder, after a
    /// takeover) while none answers, for at most [`Peers::patience`].
    async fn ask(&self, call: EntryRedrive) -> Result<String, EngineError> {
        let shard = ShardId::of(&call.source_name);
        let deadline = tokio::time::Instant::now() + self.patience;
        let mut delay = Duration::from_millis(50);
        // When a try whose outcome is unknown (sent, no answer) was sent.
        let mut unknown_since: Option<Timestamp> = None;
        loop {
            let sent_at = redrive_engine::Clock::now(&redrive_engine::SystemClock);
            match (self.try_once(shard, &call).await, unknown_since) {
                (Attempt::Answered(Ok(execution_id)), _) => return Ok(execution_id),
                (Attempt::Answered(Err(SkipReason::NotQueued(state))), Some(since)) => {
                    return self.after_lost_answer(&call, state, since).await;
                }
                (Attempt::Answered(Err(reason)), _) => return Err(EngineError::NotRedriven(reason)),
                (Attempt::Refused(why), _) => {
                    return Err(EngineError::Conflict(format!("the holder of shard {shard} refused entry {}: {why}", call.entry_id)));
                }
                (Attempt::NotTaken(why), _) => {
                    tracing::debug!(shard = shard.index(), entry = call.entry_id, "no holder of shard {shard} took the call: {why}");
                }
                (Attempt::Unknown(why), _) => {
                    tracing::debug!(
                        shard = shard.index(),
                        entry = call.entry_id,
                        "the call to shard {shard}'s holder went unanswered: {why}"
                    );
                    unknown_since.get_or_insert(sent_at);
                }
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(EngineError::NotRedriven(SkipReason::OtherShard(shard.index())));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// A try after one that went unanswered found the entry out of its queue:
    /// if it went out to an execution since that try was sent, that was the
    /// unanswered try's doing (unless another run took the same entry in that
    /// window) and it counts as redriven; otherwise it is a skip.
    async fn after_lost_answer(&self, call: &EntryRedrive, state: &'static str, since: Timestamp) -> Result<String, EngineError> {
        let entry = self.store.get_dlq_entry(&call.entry_id).await?;
        let redriven = redrive_core::dlq::DlqEntryState::Redriven.as_str();
        match entry.filter(|e| e.redriven_at.is_some_and(|at| at >= since)).and_then(|e| e.redriven_to) {
            Some(execution_id) if state == redriven => Ok(execution_id),
            _ => Err(EngineError::NotRedriven(SkipReason::NotQueued(state))),
        }
    }

    async fn try_once(&self, shard: ShardId, call: &EntryRedrive) -> Attempt {
        let owners = match self.store.shard_owners().await {
            Ok(owners) => owners,
            Err(e) => return Attempt::NotTaken(format!("the shards' leases could not be read: {e}")),
        };
        let Some(base) = owners.into_iter().find(|o| o.shard == shard).and_then(|o| o.url) else {
            return Attempt::NotTaken("no process holds it".into());
        };
        let Ok(mut url) = reqwest::Url::parse(&base) else { return Attempt::NotTaken(format!("its holder announced {base:?}")) };
        url.path_segments_mut()
            .map(|mut p| {
                p.pop_if_empty().extend(["v1", "pipelines", &call.source_name, "dlq-entries", &call.entry_id, "redrive"]);
            })
            .ok();
        let body = w::EntryRedriveRequest {
            mode: Some(redrive_api::dlq::redrive_mode(call.mode)),
            force: Some(call.force),
            queue_prefix: call.scope_prefix.clone(),
            input_patch: call.input_patch.clone(),
        };
        // Marked forwarded: a process that no longer holds the shard answers 503.
        let mut request = self.client.post(url).header(FORWARDED_HEADER, &self.me).json(&body);
        if let Some(slot) = &self.token
            && let Some(t) = slot.read().unwrap_or_else(|e| e.into_inner()).as_ref()
        {
            request = request.bearer_auth(&t.value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            // Not connected: never sent. Otherwise it may have been taken.
            Err(e) if e.is_connect() => return Attempt::NotTaken(e.to_string()),
            Err(e) => return Attempt::Unknown(e.to_string()),
        };
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // Revoked (or just replaced): a new one is made at the next heartbeat.
            self.token_refused.store(true, std::sync::atomic::Ordering::SeqCst);
            return Attempt::NotTaken(format!("HTTP {status}: this process's peer token was refused"));
        }
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            // Moving, or degraded: answered without taking it; try again.
            return Attempt::NotTaken(format!("HTTP {status}"));
        }
        let body = match read_capped(response).await {
            Ok(body) => body,
            Err(why) => return Attempt::Unknown(format!("its answer could not be read: {why}")),
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let message = serde_json::from_slice::<w::ErrorResponse>(&body).map_or_else(|_| text.into_owned(), |e| e.error.message);
            return Attempt::Refused(format!("HTTP {status}: {message}"));
        }
        match serde_json::from_slice::<w::EntryRedriveResponse>(&body) {
            Ok(answer) => Attempt::Answered(outcome(answer)),
            Err(e) => Attempt::Unknown(format!("its answer could not be read: {e}")),
        }
    }
}

/// An answer's body, at most [`MAX_ANSWER_BYTES`] whatever it claims.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("it is over {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One call's result.
enum Attempt {
    Answered(Result<String, SkipReason>),
    /// Nobody took the call (no holder, moving, not connected, token
    /// refused): try again.
    NotTaken(String),
    /// Sent, and no answer came (a timeout, a broken connection, an answer
    /// that could not be read): it may have been taken; try again.
    Unknown(String),
    /// The holder refused the request itself (a 4xx): not retried.
    Refused(String),
}

fn outcome(answer: w::EntryRedriveResponse) -> Result<String, SkipReason> {
    match (answer.outcome, answer.execution_id, answer.skipped) {
        (w::EntryOutcomeKind::Redriven, Some(execution_id), _) => Ok(execution_id),
        (_, _, Some(skip)) => Err(redrive_api::dlq::skip_from_wire(skip).unwrap_or_else(SkipReason::Refused)),
        _ => Err(SkipReason::Refused("the holder's answer named neither an execution nor a reason".into())),
    }
}
