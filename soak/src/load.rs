//! The clients: one per funded account, each sending a transfer at a time to a node picked
//! at random, over the JSON-RPC a wallet such as `cast` uses (`eth_sendRawTransaction`,
//! then `eth_getTransactionReceipt` until a receipt comes), with a wallet's default fees
//! (`eth_maxPriorityFeePerGas`, twice the latest base fee on top). A transaction without a
//! receipt for a while is sent again, unchanged, to another node. And a sampler per node,
//! asking for its latest block twice a second.

use std::{sync::Arc, time::Duration};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use common::rpc::RpcClient;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    faults::Rng,
    history::{Head, Recorder, Seen, Tx, now},
};

/// The genesis's chain id.
const CHAIN_ID: u64 = 1337;

/// How long one call may take.
const CALL: Duration = Duration::from_secs(5);

/// How often a client asks for its receipt.
const POLL: Duration = Duration::from_millis(500);

/// How long a client waits for a receipt before sending the transaction again elsewhere.
const RESEND: Duration = Duration::from_secs(15);

/// How often each node's head is sampled.
const SAMPLE: Duration = Duration::from_millis(500);

/// The running clients and samplers.
#[derive(Debug)]
pub(crate) struct Load {
    /// Stops new transactions; clients finish the one they have.
    sending: CancellationToken,
    /// Stops everything.
    all: CancellationToken,
    samplers: Vec<tokio::task::JoinHandle<()>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts a client per signer and a sampler per node URL.
    pub(crate) fn start(
        signers: &[PrivateKeySigner],
        urls: &[String],
        recorder: &Recorder,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let nodes: Vec<Arc<RpcClient>> =
            urls.iter().map(|u| RpcClient::new(u, None).map(Arc::new)).collect::<anyhow::Result<_>>()?;
        let (sending, all) = (CancellationToken::new(), CancellationToken::new());
        let samplers = (nodes.iter().enumerate())
            .map(|(i, node)| tokio::spawn(sample(i, node.clone(), recorder.clone(), all.clone())))
            .collect();
        let mut clients = Vec::new();
        for (account, signer) in signers.iter().enumerate() {
            let client = Client {
                account,
                signer: signer.clone(),
                nodes: nodes.clone(),
                recorder: recorder.clone(),
                rng: Rng::new(seed ^ (account as u64 + 1).wrapping_mul(0x9e37_79b9)),
            };
            clients.push(tokio::spawn(client.run(sending.clone(), all.clone())));
        }
        Ok(Self { sending, all, samplers, clients })
    }

    /// Stops sending, gives the transactions in flight up to `drain` to be confirmed, then
    /// stops the clients and the samplers.
    pub(crate) async fn finish(self, drain: Duration) {
        self.sending.cancel();
        let deadline = tokio::time::Instant::now() + drain;
        while tokio::time::Instant::now() < deadline && self.clients.iter().any(|t| !t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.all.cancel();
        for task in self.clients.into_iter().chain(self.samplers) {
            let _ = task.await;
        }
    }
}

/// Samples node `node`'s latest block until `stop`.
async fn sample(node: usize, rpc: Arc<RpcClient>, recorder: Recorder, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let block: Option<Value> = rpc.call("eth_getBlockByNumber", json!(["latest", false]), CALL).await.ok();
        // When the answer came: the block existed by then, whenever it was asked for.
        if let Some(head) = block.as_ref().and_then(|b| head_of(node, now(), b)) {
            recorder.with(|h| h.heads.push(head));
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(SAMPLE) => {}
        }
    }
}

fn head_of(node: usize, at: f64, block: &Value) -> Option<Head> {
    let number = quantity(&block["number"])?;
    let timestamp = quantity(&block["timestamp"])?;
    let hash = block["hash"].as_str()?.parse().ok()?;
    Some(Head { at, node, number, hash, timestamp })
}

fn quantity(value: &Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.trim_start_matches("0x"), 16).ok()
}

/// One account's client.
struct Client {
    account: usize,
    signer: PrivateKeySigner,
    nodes: Vec<Arc<RpcClient>>,
    recorder: Recorder,
    rng: Rng,
}

impl Client {
    async fn run(mut self, sending: CancellationToken, all: CancellationToken) {
        let to = Address::from_slice(&keccak256(b"soak sink")[..20]);
        let mut nonce = 0;
        while !sending.is_cancelled() {
            let node = self.rng.below(self.nodes.len());
            let Some(raw) = self.sign(node, nonce, to).await else {
                // The node did not answer for fees: try another after a moment.
                tokio::time::sleep(POLL).await;
                continue;
            };
            let hash = keccak256(&raw);
            let index = self.recorder.with(|h| {
                h.txs.push(Tx { hash, account: self.account, nonce, sends: Vec::new(), confirmed: None });
                h.txs.len() - 1
            });
            if self.follow(index, hash, &raw, node, &all).await {
                nonce += 1;
            }
        }
    }

    /// A transfer with the fees a wallet would offer, from node `node`'s answers.
    async fn sign(&self, node: usize, nonce: u64, to: Address) -> Option<Bytes> {
        let rpc = &self.nodes[node];
        let tip: U256 = rpc.call("eth_maxPriorityFeePerGas", json!([]), CALL).await.ok()?;
        let latest: Value = rpc.call("eth_getBlockByNumber", json!(["latest", false]), CALL).await.ok()?;
        let base = quantity(&latest["baseFeePerGas"])?;
        let tip = u128::try_from(tip).ok()?;
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 2 * u128::from(base) + tip,
            max_priority_fee_per_gas: tip,
            to: to.into(),
            value: U256::from(1),
            ..Default::default()
        };
        let signature = self.signer.sign_hash_sync(&tx.signature_hash()).ok()?;
        Some(TxEnvelope::from(tx.into_signed(signature)).encoded_2718().into())
    }

    /// Sends the transaction and waits for its receipt, sending it again elsewhere when
    /// none comes; true once a receipt was shown, false if stopped first.
    async fn follow(
        &mut self,
        index: usize,
        hash: B256,
        raw: &Bytes,
        mut node: usize,
        all: &CancellationToken,
    ) -> bool {
        loop {
            self.recorder.with(|h| h.txs[index].sends.push((now(), node)));
            // An error (a node down, "already known", "nonce too low" for one already in a
            // block) changes nothing: the receipt says what happened.
            let _: Result<B256, _> = self.nodes[node].call("eth_sendRawTransaction", json!([raw]), CALL).await;
            let resend_at = tokio::time::Instant::now() + RESEND;
            while tokio::time::Instant::now() < resend_at {
                if all.is_cancelled() {
                    return false;
                }
                let receipt: Option<Value> =
                    self.nodes[node].call("eth_getTransactionReceipt", json!([hash]), CALL).await.unwrap_or(None);
                if let Some(seen) = receipt.as_ref().and_then(|r| seen(node, r)) {
                    self.recorder.with(|h| h.txs[index].confirmed = Some(seen));
                    return true;
                }
                tokio::time::sleep(POLL).await;
            }
            node = (node + 1 + self.rng.below(self.nodes.len() - 1)) % self.nodes.len();
        }
    }
}

fn seen(node: usize, receipt: &Value) -> Option<Seen> {
    Some(Seen {
        at: now(),
        node,
        number: quantity(&receipt["blockNumber"])?,
        block: receipt["blockHash"].as_str()?.parse().ok()?,
    })
}
