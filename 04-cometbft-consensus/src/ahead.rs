//! Optimistic payload builds: the next block's build starts as soon as a block is
//! committed, so the proposer's Geth has the whole commit wait (`timeout_commit`) to fill
//! it, instead of the few hundred milliseconds PrepareProposal can spare.
//!
//! The rules of a proposal do not change. The block is built for the timestamp the rule
//! will most likely give (the parent's plus one, or the second in which this one was
//! decided: the next block's BFT time is the median time of the precommits that decided
//! it); at PrepareProposal, a block built ahead is used only if its parent and timestamp
//! are exactly what the rule gives there, and dropped otherwise, for a fresh build. Every
//! validator then checks it like any other proposal.
//!
//! This module is the task that starts the builds; the build waits for PrepareProposal in
//! the app's [`Ahead`](crate::app::Ahead).

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use common::{Head, rpc::RpcClient};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{
    app::{App, Committed, Inbox},
    config::BuildAhead,
    proposal,
};

/// The timestamp a block built ahead on `parent` gets: what [`proposal::timestamp`] gives
/// for a block time in the second FinalizeBlock brought `parent` (`decided`). The next
/// block's time is the weighted median of the precommit times in `parent`'s commit.
/// FinalizeBlock comes only once precommits with more than two thirds of the voting power
/// are in, more than half the weight of any commit, so with the validators' clocks in step
/// the median is at or before `decided`, and the guess is wrong only if a second ticked
/// over in between. The clock after Commit is later still: in a saturated network it was
/// a second late for a third of the proposals.
pub fn predicted_timestamp(parent: &Head, decided: SystemTime) -> u64 {
    let decided = decided.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    proposal::timestamp(parent.timestamp, i64::try_from(decided).unwrap_or(i64::MAX))
}

// ANCHOR: run
/// Starts the next block's build after each commit (on the validators the mode says), and
/// stops builds that will not be used, until `cancel` fires. `cometbft` is this
/// validator's CometBFT RPC (`--cometbft-rpc`).
pub async fn run(app: Arc<App>, mut inbox: Inbox, cometbft: RpcClient, cancel: CancellationToken) {
    let cometbft = CometRpc::new(cometbft);
    loop {
        tokio::select! {
            changed = inbox.committed.changed() => if changed.is_err() { return },
            Some(building) = inbox.stop.recv() => {
                // getPayload ends Geth's build loop for it; the block is not wanted.
                let _ = app.engine().get_payload(building.id, building.timestamp).await;
                continue;
            }
            () = cancel.cancelled() => return,
        }
        let Some(Committed { head, decided }) = *inbox.committed.borrow_and_update() else { continue };
        let proposes = match app.config().build_ahead {
            BuildAhead::Off => false,
            BuildAhead::All => true,
            BuildAhead::Proposer => match cometbft.proposes(head.number + 1, &cancel).await {
                Ok(proposes) => proposes,
                Err(error) => {
                    debug!(error = %format!("{error:#}"), "cannot tell who proposes next; not building ahead");
                    false
                }
            },
        };
        if !proposes {
            continue;
        }
        let timestamp = predicted_timestamp(&head, decided);
        match single_node::round::start(app.engine(), &head, timestamp, app.config().fee_recipient).await {
            // Only if nothing was committed meanwhile: a build for an old head is useless.
            Ok(building) if inbox.committed.borrow().is_some_and(|now| now.head == head) => {
                info!(number = head.number + 1, timestamp, "building the next block ahead");
                app.ahead().keep(building);
            }
            Ok(_) => {}
            Err(fault) => info!(error = %fault, "cannot start building ahead; the proposer will build when asked"),
        }
    }
}
// ANCHOR_END: run

/// Just enough of CometBFT's RPC to know whether this node proposes at a height.
#[derive(Debug)]
struct CometRpc {
    rpc: RpcClient,
    own_address: tokio::sync::OnceCell<String>,
}

#[derive(Debug, Deserialize)]
struct Status {
    validator_info: ValidatorInfo,
}

#[derive(Debug, Deserialize)]
struct ValidatorInfo {
    address: String,
}

#[derive(Debug, Deserialize)]
struct ConsensusState {
    round_state: RoundState,
}

#[derive(Debug, Deserialize)]
struct RoundState {
    #[serde(rename = "height/round/step")]
    height_round_step: String,
    proposer: ValidatorInfo,
}

/// How long CometBFT may take to move to the next height after our Commit.
const NEXT_HEIGHT_WAIT: Duration = Duration::from_secs(2);

impl CometRpc {
    fn new(rpc: RpcClient) -> Self {
        Self { rpc, own_address: tokio::sync::OnceCell::new() }
    }

    /// Whether this node proposes round 0 of `height`, once CometBFT is at that height.
    async fn proposes(&self, height: u64, cancel: &CancellationToken) -> anyhow::Result<bool> {
        let rpc = &self.rpc;
        let timeout = Duration::from_secs(2);
        let own = self
            .own_address
            .get_or_try_init(|| async {
                let status: Status = rpc.call("status", json!({}), timeout).await?;
                anyhow::Ok(status.validator_info.address)
            })
            .await?;
        let deadline = tokio::time::Instant::now() + NEXT_HEIGHT_WAIT;
        while tokio::time::Instant::now() < deadline {
            let state: ConsensusState = rpc.call("consensus_state", json!({}), timeout).await?;
            let at: u64 = state.round_state.height_round_step.split('/').next().unwrap_or("0").parse()?;
            if at >= height {
                return Ok(at == height && state.round_state.proposer.address == *own);
            }
            if !single_node::clock::sleep_or_cancel(Duration::from_millis(10), cancel).await {
                break;
            }
        }
        Ok(false)
    }
}
