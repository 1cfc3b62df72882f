//! The two proposal calls: the proposer builds (`PrepareProposal`), everyone checks
//! (`ProcessProposal`). Neither changes what we committed.

use anyhow::anyhow;
use common::{Head, PayloadStatus, payload::ExecutableBlock};
use single_node::{fault::Fault, round};
use tendermint_proto::{
    google::protobuf::Timestamp,
    v0_38::abci::{
        RequestPrepareProposal, RequestProcessProposal, ResponsePrepareProposal, ResponseProcessProposal,
        response_process_proposal,
    },
};
use tracing::{error, info, warn};

use super::App;
use crate::proposal;

impl App {
    // ANCHOR: prepare
    /// The proposer builds the block: Geth gets `build_time` to fill it from its pool.
    /// On any failure we propose nothing; every validator rejects an empty proposal, and
    /// the next round has another proposer.
    pub(super) async fn prepare_proposal(&self, prepare: RequestPrepareProposal) -> ResponsePrepareProposal {
        let nothing = ResponsePrepareProposal { txs: Vec::new() };
        let Some(head) = self.head() else { return nothing };
        let timestamp = proposal::timestamp(head.timestamp, seconds(prepare.time.as_ref()).unwrap_or(0));
        // Not ahead of the clock: a block is handed over once its timestamp has come
        // (a fresh build fills the block meanwhile).
        let built = match self.take_ahead(&head, timestamp).await {
            Some(block) => Ok(Some(block)),
            None => self.build(&head, timestamp).await,
        };
        let mut block = match built {
            Ok(Some(block)) => block,
            Ok(None) => return nothing,
            Err(fault) => {
                warn!(height = prepare.height, error = %fault, "cannot build a proposal; proposing nothing");
                return nothing;
            }
        };
        if self.config.test_corrupt_proposals {
            corrupt(&mut block);
        }
        // The one size limit: CometBFT's consensus parameter `block.max_bytes`, the same on
        // every validator, less the block's header and commit: `max_tx_bytes`. What does
        // not fit, counted as CometBFT counts it, is never proposed.
        let tx = match proposal::encode(&block) {
            Ok(tx) => tx,
            Err(error) => {
                error!(height = prepare.height, %error, "cannot encode the built block; proposing nothing");
                return nothing;
            }
        };
        let size = proposal::counted_size(&tx);
        if i64::try_from(size).unwrap_or(i64::MAX) > prepare.max_tx_bytes {
            error!(bytes = size, max = prepare.max_tx_bytes, "the built block does not fit in a CometBFT block");
            return nothing;
        }
        self.status.metrics.proposals_built.inc();
        info!(height = prepare.height, hash = %block.hash(), txs = block.transaction_count(), "proposing");
        ResponsePrepareProposal { txs: vec![tx] }
    }
    // ANCHOR_END: prepare

    // ANCHOR: take_ahead
    /// The block built ahead since the last Commit, if it is the block the rule asks for
    /// now: the same parent and the same timestamp; taken once the clock reaches that
    /// timestamp ([`proposal::hold`]). Anything else is dropped.
    async fn take_ahead(&self, head: &Head, timestamp: u64) -> Option<ExecutableBlock> {
        let building = self.ahead.take()?;
        if building.parent != head.hash || building.timestamp != timestamp {
            self.status.metrics.ahead_dropped.inc();
            info!(
                built_for = building.timestamp,
                wanted = timestamp,
                "dropping the block built ahead: the rule gives another parent or timestamp"
            );
            return None;
        }
        let hold = self.config.hold(timestamp);
        if !single_node::clock::sleep_or_cancel(hold, &self.cancel).await {
            return None;
        }
        match round::take(&self.engine, &building, self.config.build_time(), &self.cancel).await {
            Ok(Some(block)) => {
                self.status.metrics.ahead_used.inc();
                Some(block)
            }
            Ok(None) => None,
            Err(fault) => {
                self.status.metrics.ahead_dropped.inc();
                info!(error = %fault, "cannot take the block built ahead; building afresh");
                None
            }
        }
    }
    // ANCHOR_END: take_ahead

    /// A fresh build on `head`, given `--build-time-ms` or until the clock reaches its
    /// timestamp, whichever is longer, repairing Geth first if it lost blocks.
    async fn build(&self, head: &Head, timestamp: u64) -> Result<Option<ExecutableBlock>, Fault> {
        self.repairing("build a proposal", || {
            let build_time = self.config.build_time().max(self.config.hold(timestamp));
            round::build(&self.engine, head, timestamp, self.config.fee_recipient, build_time, &self.cancel)
        })
        .await
    }

    // ANCHOR: process
    /// Every validator checks the proposal and executes it on its own Geth; the answer is
    /// its prevote. Only VALID accepts: INVALID is a bad block; SYNCING, ACCEPTED or no
    /// answer means this Geth cannot vouch for it, and we accept only what we checked. The
    /// block can still commit once more than two thirds of the voting power prevote for it
    /// (CometBFT then precommits it without asking us again), and this node imports it from
    /// `FinalizeBlock` on.
    pub(super) async fn process_proposal(&self, process: RequestProcessProposal) -> ResponseProcessProposal {
        // A proposal arrived: a build we started ahead was not taken by our own
        // PrepareProposal, so someone else proposed, and Geth can stop it.
        self.ahead.discard();
        let verdict = match self.head() {
            None => Err("no chain yet".to_owned()),
            Some(head) => self.verify(&process.txs, &head, seconds(process.time.as_ref())).await,
        };
        let status = match verdict {
            Ok(block) => {
                self.status.metrics.proposals_accepted.inc();
                info!(height = process.height, hash = %block.hash(), "accepting the proposal: Geth says VALID");
                response_process_proposal::ProposalStatus::Accept
            }
            Err(reason) => {
                self.status.metrics.proposals_rejected.inc();
                warn!(height = process.height, %reason, "rejecting the proposal");
                response_process_proposal::ProposalStatus::Reject
            }
        };
        ResponseProcessProposal { status: status.into() }
    }

    async fn verify(&self, txs: &[bytes::Bytes], head: &Head, time: Option<i64>) -> Result<ExecutableBlock, String> {
        let block = proposal::check(txs, head, time).map_err(|e| e.to_string())?;
        // SYNCING or ACCEPTED: Geth lacks the parent (it lost blocks), so it is repaired
        // from our store and asked again; a correct Geth then gives the verdict every
        // correct validator gives.
        let verdict = self
            .repairing("execute the proposal", || async {
                match round::import(&self.engine, &block).await? {
                    status if status.is_pending() => Err(Fault::Passing(anyhow!("Geth answers {status}"))),
                    status => Ok(status),
                }
            })
            .await;
        match verdict {
            Ok(PayloadStatus::Valid { .. }) => Ok(block),
            Ok(status) => Err(format!("Geth answers {status}")),
            Err(fault) => Err(format!("cannot ask Geth: {fault}")),
        }
    }
    // ANCHOR_END: process
}

/// Whole seconds of a protobuf timestamp.
fn seconds(time: Option<&Timestamp>) -> Option<i64> {
    time.map(|t| t.seconds)
}

// ANCHOR: corrupt
/// The test-only faulty proposer (`--test-corrupt-proposals`): changes the state root and
/// recomputes the block hash, so the block passes every check a validator can make
/// without executing it, and only newPayload finds it INVALID.
fn corrupt(block: &mut ExecutableBlock) {
    let inner = &mut block.execution_payload.payload_inner.payload_inner;
    inner.state_root = alloy_primitives::B256::repeat_byte(0xbd);
    if let Ok(hash) = block.computed_hash() {
        block.execution_payload.payload_inner.payload_inner.block_hash = hash;
    }
    warn!(hash = %block.hash(), "--test-corrupt-proposals: proposing a block with a wrong state root");
}
// ANCHOR_END: corrupt
