//! The Engine API round as a long-running producer runs it: the same four calls Part 1
//! spells out, with the checks, the build deadline and the retries that every later step
//! needs. Each function returns a [`Fault`] the caller can branch on.

use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use alloy_rpc_types_engine::PayloadId;
use anyhow::anyhow;
use tokio_util::sync::CancellationToken;

use common::{
    engine::EngineClient,
    payload::{self, ExecutableBlock, finalized_at},
    types::{Head, PayloadStatus},
};

use crate::{
    clock::{Backoff, sleep_or_cancel},
    fault::Fault,
};

/// How often newPayload is sent while Geth answers SYNCING or ACCEPTED, before giving up
/// and letting the caller recover.
pub const IMPORT_ATTEMPTS: u32 = 3;

// ANCHOR: build
/// A block Geth is building: forkchoiceUpdated with attributes started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Building {
    /// What getPayload takes.
    pub id: PayloadId,
    /// The block it builds on.
    pub parent: B256,
    /// Its timestamp.
    pub timestamp: u64,
    /// When Geth was asked to start.
    pub started: Instant,
}

/// Makes `parent` head (safe and finalized too) and asks Geth to start building its child
/// with this `timestamp`, in one forkchoiceUpdated.
pub async fn start(
    engine: &EngineClient,
    parent: &Head,
    timestamp: u64,
    fee_recipient: Address,
) -> Result<Building, Fault> {
    let attributes = payload::attributes(parent.hash, timestamp, fee_recipient);
    let started = Instant::now();
    let updated = engine.forkchoice_updated_v3(finalized_at(parent.hash), Some(attributes)).await?;
    match (&updated.payload_status, updated.payload_id) {
        (PayloadStatus::Valid { .. }, Some(id)) => Ok(Building { id, parent: parent.hash, timestamp, started }),
        (PayloadStatus::Invalid { .. }, _) => {
            Err(Fault::Fatal(anyhow!("Geth calls our head {} invalid: {}", parent.hash, updated.payload_status)))
        }
        // VALID without an id: Geth's head is past `parent` ("ignoring beacon update to
        // old head"). SYNCING: it lacks `parent`. Either way, recovery finds out where it is.
        (status, _) => Err(Fault::Passing(anyhow!("Geth did not start a build on {} ({status})", parent.hash))),
    }
}

/// Gives a started build until `build_time` after it began to fill the block with pending
/// transactions, then takes the block. `None` if `cancel` fired first: nothing changed.
pub async fn take(
    engine: &EngineClient,
    building: &Building,
    build_time: Duration,
    cancel: &CancellationToken,
) -> Result<Option<ExecutableBlock>, Fault> {
    let deadline = (building.started + build_time).saturating_duration_since(Instant::now());
    if !sleep_or_cancel(deadline, cancel).await {
        return Ok(None);
    }
    let built = engine.get_payload(building.id, building.timestamp).await.map_err(Fault::from_anyhow)?;
    // Only checked here: a payload whose blob count does not match its blobs bundle is
    // Geth's bug, and fatal. newPayload derives the hashes again from the block.
    payload::built_versioned_hashes(&built).map_err(|e| Fault::Fatal(e.into()))?;
    Ok(Some(ExecutableBlock::from(built)))
}

/// [`start`], then [`take`]: asks Geth to build a child of `parent` with this `timestamp`,
/// gives it `build_time` to fill the block, and takes the block.
pub async fn build(
    engine: &EngineClient,
    parent: &Head,
    timestamp: u64,
    fee_recipient: Address,
    build_time: Duration,
    cancel: &CancellationToken,
) -> Result<Option<ExecutableBlock>, Fault> {
    let building = start(engine, parent, timestamp, fee_recipient).await?;
    take(engine, &building, build_time, cancel).await
}
// ANCHOR_END: build

// ANCHOR: import
/// newPayload, sent again with a capped backoff while Geth answers SYNCING or ACCEPTED.
/// Returns Geth's last verdict: VALID, INVALID, or still pending after [`IMPORT_ATTEMPTS`].
pub async fn import(engine: &EngineClient, block: &ExecutableBlock) -> Result<PayloadStatus, Fault> {
    let mut backoff = Backoff::DEFAULT;
    let mut attempt = 1;
    loop {
        let status = engine.import(block).await.map_err(Fault::from_anyhow)?;
        if !status.is_pending() || attempt == IMPORT_ATTEMPTS {
            return Ok(status);
        }
        tokio::time::sleep(backoff.next_delay()).await;
        attempt += 1;
    }
}

/// What Geth made of a block it executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// VALID: the block may be stored and made head.
    Valid,
    /// INVALID, with Geth's reason: the block must never be head.
    Invalid(String),
}

/// [`import`] until Geth has executed the block: its verdict. Still SYNCING or ACCEPTED
/// after [`IMPORT_ATTEMPTS`] is a passing fault: recovery finds out where Geth is.
pub async fn execute(engine: &EngineClient, block: &ExecutableBlock) -> Result<Verdict, Fault> {
    match import(engine, block).await? {
        PayloadStatus::Valid { .. } => Ok(Verdict::Valid),
        PayloadStatus::Invalid { validation_error, .. } | PayloadStatus::InvalidBlockHash { validation_error } => {
            Ok(Verdict::Invalid(validation_error))
        }
        status => Err(Fault::Passing(anyhow!("Geth did not execute block {}: {status}", block.number()))),
    }
}

/// forkchoiceUpdated making `hash` head, safe and finalized at once.
pub async fn finalize(engine: &EngineClient, hash: B256) -> Result<(), Fault> {
    let updated = engine.forkchoice_updated_v3(finalized_at(hash), None).await?;
    match updated.payload_status {
        PayloadStatus::Valid { .. } => Ok(()),
        PayloadStatus::Invalid { .. } | PayloadStatus::InvalidBlockHash { .. } => {
            Err(Fault::Fatal(anyhow!("Geth refuses {hash} as head: {}", updated.payload_status)))
        }
        status => Err(Fault::Passing(anyhow!("Geth cannot make {hash} head yet: {status}"))),
    }
}
// ANCHOR_END: import

/// Where a Geth asked to sync to a block stands ([`sync_to`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    /// The block is Geth's head, safe and final.
    Done,
    /// Geth is still getting the chain below it from its peers; what it answered.
    Syncing(String),
}

/// Asks Geth to make `hash` head, safe and final. A Geth that lacks the block fetches it
/// and the chain below it from its peers (devp2p) and answers SYNCING until it has them;
/// while it restarts a sync cycle it answers with an error instead ("beacon syncer
/// reorging"), which is waited out too. INVALID is fatal; an unreachable Geth is passing.
/// Parts 3 and 4 use this for a node that is behind what its consensus layer still holds.
pub async fn sync_to(engine: &EngineClient, hash: B256) -> Result<Sync, Fault> {
    match engine.forkchoice_updated_v3(finalized_at(hash), None).await {
        Ok(updated) => match updated.payload_status {
            PayloadStatus::Valid { .. } => Ok(Sync::Done),
            status @ (PayloadStatus::Invalid { .. } | PayloadStatus::InvalidBlockHash { .. }) => {
                Err(Fault::Fatal(anyhow!("Geth refuses {hash} as head: {status}")))
            }
            status => Ok(Sync::Syncing(status.to_string())),
        },
        Err(error) if error.rpc_kind().is_some() => Ok(Sync::Syncing(error.to_string())),
        Err(error) => Err(Fault::from(error)),
    }
}

// ANCHOR: replay_error
/// Why a stored block could not be given to Geth again.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The block does not extend the block Geth has at the height below it.
    #[error("block {number} has parent {parent}, but Geth's block {} is {expected}", number - 1)]
    NotChild {
        /// The block's height.
        number: u64,
        /// Its parent hash.
        parent: B256,
        /// Geth's hash at `number - 1`.
        expected: B256,
    },
    /// Geth executed the block and rejected it (INVALID). A Geth that still answers SYNCING
    /// or ACCEPTED after its retries is a passing fault ([`ReplayError::Call`]) instead.
    #[error("Geth will not import block {number}: {status}")]
    Rejected {
        /// The block's height.
        number: u64,
        /// Geth's verdict.
        status: PayloadStatus,
    },
    /// The call itself failed; the fault says whether a retry can help.
    #[error(transparent)]
    Call(#[from] Fault),
}

impl ReplayError {
    /// The fault to hand to a loop that treats a stored block Geth will not take as fatal.
    pub fn into_fault(self) -> Fault {
        match self {
            Self::Call(fault) => fault,
            other => Fault::Fatal(other.into()),
        }
    }
}
// ANCHOR_END: replay_error

// ANCHOR: replay
/// Gives Geth a block it does not have, from a store: the block must extend `parent`
/// (Geth's block at the height below) and Geth must find it VALID. The caller finalizes
/// when it has given all it wanted to give.
///
/// A Geth killed while it wrote can come back holding a block without its state: it
/// answers VALID for that block ("already known") and ACCEPTED for the next ("state not
/// available"), for ever. Making the parent head makes Geth execute it again from the
/// newest state it has (once Geth counts itself synced: see [`crate::store::reconcile`]);
/// the parent is a stored block, so it is final.
pub async fn replay(engine: &EngineClient, block: &ExecutableBlock, parent: B256) -> Result<(), ReplayError> {
    if block.parent_hash() != parent {
        return Err(ReplayError::NotChild { number: block.number(), parent: block.parent_hash(), expected: parent });
    }
    let mut status = import(engine, block).await?;
    if matches!(status, PayloadStatus::Accepted) {
        finalize(engine, parent).await?;
        status = import(engine, block).await?;
    }
    match status {
        PayloadStatus::Valid { .. } => Ok(()),
        status if status.is_pending() => {
            Err(Fault::Passing(anyhow!("Geth did not execute block {}: {status}", block.number())).into())
        }
        status => Err(ReplayError::Rejected { number: block.number(), status }),
    }
}
// ANCHOR_END: replay
