//! An Engine API proxy in front of a real Geth that tampers with Geth's answers on demand,
//! in ways Geth cannot be made to behave itself:
//!
//! - newPayload answered INVALID ([`InvalidatingProxy::invalidate`]): Geth has seen and
//!   executed the block (it holds it), the consensus layer is told it is invalid. The
//!   proxy remembers which blocks it rejected ([`InvalidatingProxy::rejected`]).
//! - newPayload answered SYNCING ([`InvalidatingProxy::answer_syncing`]): Geth has
//!   executed the block, the consensus layer is told Geth cannot tell yet, as a Geth
//!   catching up would say. The proxy remembers the blocks it said that of
//!   ([`InvalidatingProxy::syncing`]).
//! - newPayload answered ACCEPTED for the block after one whose state Geth lost
//!   ([`InvalidatingProxy::lose_state_of`]), as Geth answers after a crash that kept a
//!   block but not its state, until a forkchoiceUpdated makes that block head (which makes
//!   Geth execute it again). Like a Geth that has just started, the proxy drops (and
//!   answers VALID) a forkchoiceUpdated naming that block until Geth has answered VALID to
//!   an update naming a block below it. The proxy remembers the ACCEPTED answers
//!   ([`InvalidatingProxy::accepted`]).
//! - forkchoiceUpdated answers withheld ([`InvalidatingProxy::hold_forkchoice`]) for the
//!   updates that make a new block head: Geth has acted on the update (the block is head),
//!   the consensus layer never hears back, as when a link drops after the request went
//!   through. The proxy remembers the heads it withheld answers for
//!   ([`InvalidatingProxy::held`]).
//! - newPayload answers held back ([`InvalidatingProxy::hold_new_payload`]): Geth has
//!   executed the block, the consensus layer waits for the answer until the test lets it
//!   go, as on a Geth slow to execute. The proxy remembers the blocks it held the answers
//!   of ([`InvalidatingProxy::held_payloads`]).
//! - forkchoiceUpdated answered with the JSON-RPC error Geth gives while its beacon syncer
//!   starts a new sync cycle ([`InvalidatingProxy::answer_reorging`]): code -32000,
//!   "beacon syncer reorging" (`eth/downloader/skeleton.go`), after Geth saw the update.
//!
//! Everything else passes through untouched, after Geth has seen the request. The proxy
//! also remembers the head every forkchoiceUpdated named
//! ([`InvalidatingProxy::forkchoice_heads`]).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use alloy_primitives::B256;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::sync::watch;

/// What the proxy is told to do, and what it did.
#[derive(Debug)]
struct Tamper {
    /// How many of the next newPayload answers are made INVALID.
    remaining: AtomicU64,
    /// The blocks answered INVALID (height and hash), in order.
    rejected: Mutex<Vec<(u64, B256)>>,
    /// How many of the next newPayload answers are made SYNCING.
    syncing: AtomicU64,
    /// Only those for this block height (0: any).
    syncing_at: AtomicU64,
    /// The blocks answered SYNCING (height and hash), once per answer, in order.
    answered_syncing: Mutex<Vec<(u64, B256)>>,
    /// The block whose state Geth is to have lost.
    lost_state: Mutex<Option<LostState>>,
    /// The blocks answered ACCEPTED (height and hash), once per answer, in order.
    answered_accepted: Mutex<Vec<(u64, B256)>>,
    /// The height of every block Geth was given (newPayload), by hash.
    heights: Mutex<HashMap<B256, u64>>,
    /// True while forkchoiceUpdated answers are withheld.
    hold: watch::Sender<bool>,
    /// The blocks Geth was given (newPayload) while answers are withheld: the new heads.
    fresh: Mutex<HashSet<B256>>,
    /// The head of every forkchoiceUpdated whose answer was withheld, in order.
    held: Mutex<Vec<B256>>,
    /// How many of the next forkchoiceUpdated answers are made "beacon syncer reorging".
    reorging: AtomicU64,
    /// True while newPayload answers are held back.
    hold_payloads: watch::Sender<bool>,
    /// The blocks (height and hash) whose newPayload answer was held back, in order.
    held_payloads: Mutex<Vec<(u64, B256)>>,
    /// The head every forkchoiceUpdated named, in order.
    forkchoice_heads: Mutex<Vec<B256>>,
}

/// A block Geth holds without its state, as the proxy plays it.
#[derive(Debug)]
struct LostState {
    /// Its height.
    number: u64,
    /// Its hash, once Geth was given it.
    seen: Option<B256>,
    /// Whether Geth has answered VALID to a forkchoiceUpdated naming a block below the lost
    /// one (as its own head after the crash is): until then it counts itself not synced.
    /// Updates naming the blocks above, which the consensus layer sent before the crash,
    /// do not count.
    synced: bool,
}

/// The proxy; clones share it.
#[derive(Debug, Clone)]
pub struct InvalidatingProxy {
    url: String,
    tamper: Arc<Tamper>,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

impl InvalidatingProxy {
    /// Starts the proxy in front of `target` (Geth's Engine API URL); it passes everything
    /// through until told otherwise.
    pub async fn start(target: String) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the proxy")?;
        let url = format!("http://{}", listener.local_addr()?);
        let tamper = Arc::new(Tamper {
            remaining: AtomicU64::new(0),
            rejected: Mutex::default(),
            syncing: AtomicU64::new(0),
            syncing_at: AtomicU64::new(0),
            answered_syncing: Mutex::default(),
            lost_state: Mutex::default(),
            answered_accepted: Mutex::default(),
            heights: Mutex::default(),
            hold: watch::channel(false).0,
            fresh: Mutex::default(),
            held: Mutex::default(),
            reorging: AtomicU64::new(0),
            hold_payloads: watch::channel(false).0,
            held_payloads: Mutex::default(),
            forkchoice_heads: Mutex::default(),
        });
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let shared = tamper.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, target, tamper) = (client.clone(), target.clone(), shared.clone());
                let service = hyper::service::service_fn(move |request| {
                    forward(client.clone(), target.clone(), tamper.clone(), request)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Ok(Self { url, tamper })
    }

    /// The URL to give the consensus layer instead of Geth's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers the next `n` newPayload calls with INVALID (`u64::MAX`: all of them, until
    /// called again with 0).
    pub fn invalidate(&self, n: u64) {
        self.tamper.remaining.store(n, Ordering::SeqCst);
    }

    /// The blocks answered INVALID so far, in order: height and hash of each. Geth itself
    /// found each VALID, and holds it.
    pub fn rejected(&self) -> Vec<(u64, B256)> {
        self.tamper.rejected.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Answers the next `n` newPayload calls with SYNCING (after Geth has executed each).
    pub fn answer_syncing(&self, n: u64) {
        self.answer_syncing_at(0, n);
    }

    /// [`answer_syncing`](Self::answer_syncing) for the newPayload calls of block `number`
    /// only (0: any block).
    pub fn answer_syncing_at(&self, number: u64, n: u64) {
        self.tamper.syncing_at.store(number, Ordering::SeqCst);
        self.tamper.syncing.store(n, Ordering::SeqCst);
    }

    /// The blocks answered SYNCING so far, once per answer, in order: height and hash.
    pub fn syncing(&self) -> Vec<(u64, B256)> {
        self.tamper.answered_syncing.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Plays a Geth that has just started again holding block `number` without its state:
    /// newPayload of block `number + 1` goes to Geth, but is answered ACCEPTED ("state not
    /// available"), until a forkchoiceUpdated makes block `number` head. And as Geth does
    /// with an update naming a block its index holds above its head before it counts itself
    /// synced ("Ignoring beacon update to old head while syncing"), a forkchoiceUpdated
    /// naming block `number` is answered VALID and not passed on, until Geth has answered
    /// VALID to an update naming a block below it (its own head, say; not a block it lacks).
    pub fn lose_state_of(&self, number: u64) {
        let lost = LostState { number, seen: None, synced: false };
        *self.tamper.lost_state.lock().unwrap_or_else(PoisonError::into_inner) = Some(lost);
    }

    /// The blocks answered ACCEPTED so far, once per answer, in order: height and hash.
    pub fn accepted(&self) -> Vec<(u64, B256)> {
        self.tamper.answered_accepted.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// While `on`, a forkchoiceUpdated that makes head a block Geth was given (newPayload)
    /// since then still goes to Geth, which acts on it (the block is head), but its answer
    /// is held back until this is called again with `false` (by then the caller has timed
    /// out). Updates to blocks Geth had before pass as usual: the consensus layer is frozen
    /// at the moment right after it made a new block head.
    pub fn hold_forkchoice(&self, on: bool) {
        self.tamper.fresh.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.tamper.hold.send_replace(on);
    }

    /// The head of every forkchoiceUpdated whose answer was held back so far, in order.
    pub fn held(&self) -> Vec<B256> {
        self.tamper.held.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// While `on`, every newPayload still goes to Geth, which executes the block, but its
    /// answer is held back until this is called again with `false`.
    pub fn hold_new_payload(&self, on: bool) {
        self.tamper.hold_payloads.send_replace(on);
    }

    /// The blocks whose newPayload answer was held back so far, in order: height and hash.
    pub fn held_payloads(&self) -> Vec<(u64, B256)> {
        self.tamper.held_payloads.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The head every forkchoiceUpdated named so far, in order, whatever Geth answered.
    pub fn forkchoice_heads(&self) -> Vec<B256> {
        self.tamper.forkchoice_heads.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Answers the next `n` forkchoiceUpdated calls (after Geth has acted on each) with the
    /// error a Geth syncing from its peers gives while it starts a new sync cycle: code
    /// -32000, "beacon syncer reorging".
    pub fn answer_reorging(&self, n: u64) {
        self.tamper.reorging.store(n, Ordering::SeqCst);
    }
}

/// Sends `request` to `target`, and returns Geth's answer; or, as `tamper` says, INVALID,
/// SYNCING or ACCEPTED in place of a newPayload answer, a newPayload answer held back, or
/// a forkchoiceUpdated answer held back or made an error.
async fn forward(
    client: HttpClient,
    target: String,
    tamper: Arc<Tamper>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let method = request["method"].as_str().unwrap_or_default();
    let head: Option<B256> = request["params"][0]["headBlockHash"].as_str().and_then(|h| h.parse().ok());
    let forkchoice = method.starts_with("engine_forkchoiceUpdated");
    if forkchoice {
        tamper.forkchoice_heads.lock().unwrap_or_else(PoisonError::into_inner).extend(head);
    }
    if forkchoice
        && let Some(lost) = tamper.lost_state.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
        && !lost.synced
        && head.is_some()
        && head == lost.seen
    {
        // What a Geth not yet synced answers to an update it ignores.
        let result = serde_json::json!({
            "payloadStatus": {"status": "VALID", "latestValidHash": head, "validationError": null},
            "payloadId": null,
        });
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
        let mut response = hyper::Response::new(Full::new(Bytes::from(answer.to_string())));
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, "application/json".parse()?);
        return Ok(response);
    }
    let mut outgoing = hyper::Request::post(target.as_str());
    for name in [hyper::header::AUTHORIZATION, hyper::header::CONTENT_TYPE] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let response = client.request(outgoing.body(Full::new(body.clone()))?).await?;
    let (mut parts, answer) = response.into_parts();
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    let mut answer = answer.collect().await?.to_bytes();
    let take = |n: u64| (n > 0).then(|| if n == u64::MAX { n } else { n - 1 });
    if forkchoice && tamper.reorging.fetch_update(Ordering::SeqCst, Ordering::SeqCst, take).is_ok() {
        let error = serde_json::json!({"code": -32000, "message": "beacon syncer reorging"});
        answer = serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "error": error}).to_string().into();
    }
    let forkchoice_valid = forkchoice
        && serde_json::from_slice::<serde_json::Value>(&answer)
            .is_ok_and(|answer| answer["result"]["payloadStatus"]["status"] == "VALID");
    let payload = &request["params"][0];
    let block = payload["blockNumber"]
        .as_str()
        .and_then(|n| u64::from_str_radix(n.trim_start_matches("0x"), 16).ok())
        .zip(payload["blockHash"].as_str().and_then(|h| h.parse::<B256>().ok()));
    let mut replace = |status: &str, error: Option<&str>, seen: &Mutex<Vec<(u64, B256)>>| {
        seen.lock().unwrap_or_else(PoisonError::into_inner).extend(block);
        let result = serde_json::json!({"status": status, "latestValidHash": null, "validationError": error});
        answer = serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "result": result}).to_string().into();
    };
    if method == "engine_newPayloadV4" && *tamper.hold_payloads.borrow() {
        tamper.held_payloads.lock().unwrap_or_else(PoisonError::into_inner).extend(block);
        let mut hold = tamper.hold_payloads.subscribe();
        let _ = hold.wait_for(|on| !*on).await;
    }
    if method == "engine_newPayloadV4" {
        tamper
            .heights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(block.map(|(number, hash)| (hash, number)));
        if tamper.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, take).is_ok() {
            replace("INVALID", Some("proxy says: invalid for the test"), &tamper.rejected);
        } else if [0, block.map_or(0, |(number, _)| number)].contains(&tamper.syncing_at.load(Ordering::SeqCst))
            && tamper.syncing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, take).is_ok()
        {
            replace("SYNCING", None, &tamper.answered_syncing);
        }
    }
    {
        let mut lost = tamper.lost_state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(LostState { number, seen, synced }) = lost.as_mut() {
            // A head Geth was never given through the proxy is block 0.
            let below = head.is_some_and(|head| {
                tamper.heights.lock().unwrap_or_else(PoisonError::into_inner).get(&head).copied().unwrap_or(0) < *number
            });
            *synced |= forkchoice_valid && below;
            match block {
                Some((at, hash)) if method == "engine_newPayloadV4" && at == *number => *seen = Some(hash),
                Some((at, _)) if method == "engine_newPayloadV4" && at == *number + 1 => {
                    replace("ACCEPTED", None, &tamper.answered_accepted);
                }
                _ if forkchoice && head.is_some_and(|h| *seen == Some(h)) => *lost = None,
                _ => {}
            }
        }
    }
    if !*tamper.hold.borrow() {
        return Ok(hyper::Response::from_parts(parts, Full::new(answer)));
    }
    if method == "engine_newPayloadV4"
        && let Some(hash) = request["params"][0]["blockHash"].as_str().and_then(|h| h.parse().ok())
    {
        tamper.fresh.lock().unwrap_or_else(PoisonError::into_inner).insert(hash);
    }
    if forkchoice
        && let Some(head) =
            head.filter(|head| tamper.fresh.lock().unwrap_or_else(PoisonError::into_inner).contains(head))
    {
        tamper.held.lock().unwrap_or_else(PoisonError::into_inner).push(head);
        let mut hold = tamper.hold.subscribe();
        let _ = hold.wait_for(|on| !*on).await;
    }
    Ok(hyper::Response::from_parts(parts, Full::new(answer)))
}
