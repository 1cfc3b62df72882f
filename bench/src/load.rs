//! The load: accounts funded by a benchmark genesis, transfers signed before the clock
//! starts, sent in JSON-RPC batches, and inclusion read from the blocks themselves.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, U256};
use alloy_signer::SignerSync;
use bytes::Bytes as HttpBytes;
pub(crate) use common::harness::{Accounts, WrittenGenesis as BenchGenesis, funded_genesis as bench_genesis};
use common::rpc::RpcClient;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Accounts the benchmark genesis funds.
pub(crate) const ACCOUNTS: usize = 1_000;

/// Transactions per JSON-RPC batch.
const BATCH: usize = 200;

/// Transfers in flight (sent, not yet in a block) at most: below Geth's pool of 5,120
/// executable transactions, so the pool stays full without refusing any.
pub(crate) const MAX_PENDING: u64 = 4_000;

/// The max fee every transfer offers, 40,000 gwei: far above any base fee a run reaches
/// (full blocks raise it by 12.5% a block; 40 full blocks make 1 gwei 111 gwei), so blocks
/// fill to their gas limit for both drivers; and under Geth's default `--rpc.txfeecap` of
/// 1 ETH per transaction (21,000 gas × 40,000 gwei = 0.84 ETH).
const MAX_FEE: u128 = 40_000_000_000_000;

/// A signed transfer, with the index of the account that sent it.
#[derive(Debug, Clone)]
pub(crate) struct Transfer {
    /// Which account.
    pub(crate) account: usize,
    /// The signed transaction.
    pub(crate) raw: Bytes,
}

/// `per_account` transfers from each account, nonces from `first_nonce`, signed now and
/// ordered nonce by nonce across the accounts, so a batch spreads over many senders.
pub(crate) fn presign(accounts: &Accounts, first_nonce: u64, per_account: u64) -> Vec<Transfer> {
    let to = Address::repeat_byte(0x5e);
    let mut transfers = Vec::with_capacity(accounts.len() * per_account as usize);
    for nonce in first_nonce..first_nonce + per_account {
        for (account, signer) in accounts.signers().iter().enumerate() {
            let tx = TxEip1559 {
                chain_id: 1337,
                nonce,
                gas_limit: 21_000,
                max_fee_per_gas: MAX_FEE,
                max_priority_fee_per_gas: 1_000_000_000,
                to: to.into(),
                value: U256::from(1),
                ..Default::default()
            };
            let signature = signer.sign_hash_sync(&tx.signature_hash()).expect("local signing does not fail");
            let raw = TxEnvelope::from(tx.into_signed(signature)).encoded_2718().into();
            transfers.push(Transfer { account, raw });
        }
    }
    transfers
}

/// Sends transfers in batches, to the Geth at `urls[account % urls.len()]`: at `rate`
/// transactions a second, or flat out if `None`, keeping at most [`MAX_PENDING`] sent but
/// not included (`included` is kept up to date by a [`Tracker`]).
#[derive(Debug)]
pub(crate) struct Load {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<u64>,
}

impl Load {
    /// Starts sending.
    pub(crate) fn start(
        urls: Vec<String>,
        transfers: Vec<Transfer>,
        included: Arc<AtomicU64>,
        rate: Option<f64>,
    ) -> Self {
        Self::start_within(urls, transfers, included, rate, MAX_PENDING)
    }

    /// [`Load::start`], with at most `max_pending` sent but not included, in place of
    /// [`MAX_PENDING`].
    pub(crate) fn start_within(
        urls: Vec<String>,
        transfers: Vec<Transfer>,
        included: Arc<AtomicU64>,
        rate: Option<f64>,
        max_pending: u64,
    ) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let client: Client<_, Full<HttpBytes>> = Client::builder(TokioExecutor::new()).build_http();
            let start_included = included.load(Ordering::Relaxed);
            let started = Instant::now();
            let mut sent = 0_u64;
            let batch_size = rate.map_or(BATCH, |r| (r / 20.0).clamp(1.0, BATCH as f64) as usize);
            for batch in transfers.chunks(batch_size) {
                if let Some(rate) = rate {
                    let due = Duration::from_secs_f64(sent as f64 / rate);
                    if !single_node::clock::sleep_or_cancel(due.saturating_sub(started.elapsed()), &token).await {
                        return sent;
                    }
                }
                while sent.saturating_sub(included.load(Ordering::Relaxed) - start_included) > max_pending {
                    if !single_node::clock::sleep_or_cancel(Duration::from_millis(5), &token).await {
                        return sent;
                    }
                }
                if token.is_cancelled() {
                    return sent;
                }
                for (i, url) in urls.iter().enumerate() {
                    let part: Vec<&Bytes> =
                        batch.iter().filter(|t| t.account % urls.len() == i).map(|t| &t.raw).collect();
                    if !part.is_empty() {
                        send_batch(&client, url, &part).await;
                    }
                }
                sent += batch.len() as u64;
            }
            sent
        });
        Self { stop, task }
    }

    /// Stops sending; how many were sent.
    pub(crate) async fn stop(self) -> u64 {
        self.stop.cancel();
        self.task.await.unwrap_or(0)
    }
}

/// Sends `transfers` to the Geth at `url` in batches, and returns once every batch was
/// answered. Refusals are logged as the load logs them.
pub(crate) async fn send_all(url: &str, transfers: &[Transfer]) {
    let client: Client<_, Full<HttpBytes>> = Client::builder(TokioExecutor::new()).build_http();
    for batch in transfers.chunks(BATCH) {
        send_batch(&client, url, &batch.iter().map(|t| &t.raw).collect::<Vec<_>>()).await;
    }
}

/// One JSON-RPC batch of `eth_sendRawTransaction`. Errors are ignored: inclusion is what
/// counts, and it is read from the blocks.
async fn send_batch(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<HttpBytes>>,
    url: &str,
    raws: &[&Bytes],
) {
    let body: Vec<Value> = raws
        .iter()
        .enumerate()
        .map(|(id, raw)| json!({"jsonrpc": "2.0", "id": id, "method": "eth_sendRawTransaction", "params": [raw]}))
        .collect();
    let Ok(request) = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(HttpBytes::from(serde_json::to_vec(&body).unwrap_or_default())))
    else {
        return;
    };
    let Ok(response) = client.request(request).await else { return };
    let Ok(body) = response.into_body().collect().await else { return };
    let answers: Vec<Value> = serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
    for answer in answers {
        if let Some(message) = answer["error"]["message"].as_str() {
            log_once(message);
        }
    }
}

/// Logs each distinct refusal once (the text, with any hash or number in it, varies).
fn log_once(message: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let kind: String = message.chars().take_while(|c| !c.is_ascii_digit()).collect();
    let mut seen = SEEN.lock().expect("lock");
    if !seen.contains(&kind) {
        tracing::warn!(%message, "Geth refused a transfer");
        seen.push(kind);
    }
}

/// A block as the tracker saw it arrive.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) struct BlockSeen {
    /// Height.
    pub(crate) number: u64,
    /// Transactions in it.
    pub(crate) txs: u64,
    /// When the tracker saw it, in seconds since the tracker started.
    pub(crate) seen: f64,
    /// Its timestamp.
    pub(crate) timestamp: u64,
}

/// Watches a Geth's chain and records every new block.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// Transactions included since the tracker started.
    pub(crate) included: Arc<AtomicU64>,
    blocks: Arc<Mutex<Vec<BlockSeen>>>,
    started: Instant,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    /// Starts watching the JSON-RPC port at `url` from its current head.
    pub(crate) async fn start(url: &str) -> anyhow::Result<Self> {
        let rpc = RpcClient::new(url, None)?;
        let head: alloy_primitives::U64 = rpc.call("eth_blockNumber", json!([]), Duration::from_secs(5)).await?;
        let (included, blocks) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (stop, started) = (CancellationToken::new(), Instant::now());
        let task = tokio::spawn({
            let (included, blocks, stop) = (included.clone(), blocks.clone(), stop.clone());
            async move {
                let mut next = head.to::<u64>() + 1;
                while single_node::clock::sleep_or_cancel(Duration::from_millis(10), &stop).await {
                    loop {
                        let block: Result<Option<Value>, _> = rpc
                            .call("eth_getBlockByNumber", json!([format!("{next:#x}"), false]), Duration::from_secs(5))
                            .await;
                        let Ok(Some(block)) = block else { break };
                        let txs = block["transactions"].as_array().map_or(0, Vec::len) as u64;
                        let timestamp = u64::from_str_radix(
                            block["timestamp"].as_str().unwrap_or("0x0").trim_start_matches("0x"),
                            16,
                        )
                        .unwrap_or(0);
                        included.fetch_add(txs, Ordering::Relaxed);
                        let seen = BlockSeen { number: next, txs, seen: started.elapsed().as_secs_f64(), timestamp };
                        blocks.lock().expect("lock").push(seen);
                        next += 1;
                    }
                }
            }
        });
        Ok(Self { included, blocks, started, stop, task })
    }

    /// Seconds since the tracker started.
    pub(crate) fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Stops watching.
    pub(crate) async fn stop(self) -> Vec<BlockSeen> {
        self.stop.cancel();
        let blocks = self.blocks.clone();
        let _ = self.task.await;
        blocks.lock().expect("lock").clone()
    }
}

/// Transactions per second over the blocks seen in `[from, to)` seconds.
pub(crate) fn throughput(blocks: &[BlockSeen], from: f64, to: f64) -> f64 {
    let txs: u64 = blocks.iter().filter(|b| b.seen >= from && b.seen < to).map(|b| b.txs).sum();
    txs as f64 / (to - from)
}
