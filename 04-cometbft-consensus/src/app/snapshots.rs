//! State sync: how a node joins later than the validators' block stores reach back
//! (`--retain-blocks`). CometBFT's block sync can give it only the blocks its peers still
//! hold, so it starts from a snapshot instead of block 1.
//!
//! The app's state is Geth's chain, and a Geth can fetch that itself, from its peers over
//! devp2p. So a snapshot here is only the EL block at its height (number, hash,
//! timestamp) and the chain (block 0, chain id, fork id, genesis forks, blob schedule), in
//! one chunk, and restoring it is asking this node's Geth to sync to that block.
//! CometBFT's light client first checks the snapshot against the app hash in the
//! validators' signed headers (the EL block hash at that height); the app then checks that
//! the chunk names that very block, so a peer cannot point Geth at another chain, and that
//! its chain (all five) is ours: a Geth of another block 0 or chain id could never sync to
//! it (its peers refuse it), nor could one whose forks differ in one the chain has passed;
//! one that differs in a fork still ahead would part from the chain there, and one that
//! differs in a fork at block 0 or in blob parameters (which devp2p's handshake does not
//! compare) at the first block the two rule sets judge differently.

use std::time::{Duration, Instant};

use alloy_primitives::{B256, keccak256};
use anyhow::Context;
use common::{BlockTag, ElChain, Head};
use serde::{Deserialize, Serialize};
use single_node::{fault::Fault, round};
use tendermint_proto::v0_38::abci::{
    RequestApplySnapshotChunk, RequestLoadSnapshotChunk, RequestOfferSnapshot, ResponseApplySnapshotChunk,
    ResponseListSnapshots, ResponseLoadSnapshotChunk, ResponseOfferSnapshot, Snapshot, response_apply_snapshot_chunk,
    response_offer_snapshot,
};
use tracing::{error, info, warn};

use super::App;
use crate::server::lock;

/// The one snapshot format: a JSON [`Chunk`], in one chunk. (Format 1 was the
/// [`Head`] alone.)
pub(super) const FORMAT: u32 = 2;

/// A snapshot's one chunk.
#[derive(Debug, Serialize, Deserialize)]
struct Chunk {
    /// The chain: block 0, chain id, fork id, forks at block 0 and blob schedule (a chunk of
    /// an older app has not all of them, and is read as naming what it has). A Geth of
    /// another chain would wait for ever to sync (its peers refuse it), or part from the
    /// chain at a fork: the app says so at once instead.
    #[serde(flatten)]
    chain: ElChain,
    /// The EL block at the snapshot's height.
    head: Head,
}

/// Snapshots are offered at heights that are multiples of this: every validator offers
/// the same one, so a joining node finds it at several peers.
pub(super) const EVERY: u64 = 64;

/// How long Geth may take to sync to a snapshot's block for the restore to go on. The
/// validators hold the blocks above a snapshot for at least their window less the 65 blocks
/// a snapshot can be below their head (a minute at one block a second with the smallest
/// window); after a longer sync, block sync could find no peer holding the next block, so
/// the app asks for a newer snapshot, which Geth then reaches in seconds.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(30);

/// A snapshot CometBFT offered and the app accepted, waiting for its chunk.
#[derive(Debug, Clone)]
pub(super) struct Offered {
    snapshot: Snapshot,
    app_hash: B256,
}

impl App {
    // ANCHOR: list_snapshots
    /// The newest snapshot height at least two blocks below our head (CometBFT's light
    /// client verifies the two headers above it), if our store still holds that block.
    pub(super) fn list_snapshots(&self) -> ResponseListSnapshots {
        let snapshots = self.head().and_then(|head| {
            let height = head.number.checked_sub(2)? / EVERY * EVERY;
            let chunk = self.chunk(height)?;
            Some(Snapshot {
                height,
                format: FORMAT,
                chunks: 1,
                hash: keccak256(&chunk).to_vec().into(),
                ..Default::default()
            })
        });
        ResponseListSnapshots { snapshots: snapshots.into_iter().collect() }
    }
    // ANCHOR_END: list_snapshots

    /// The chunk of the snapshot at `height`, as JSON: the stored block's head, and our
    /// chain.
    fn chunk(&self, height: u64) -> Option<Vec<u8>> {
        if height == 0 {
            return None;
        }
        let block = self.store.block(height).ok().flatten()?;
        serde_json::to_vec(&Chunk { chain: self.chain, head: block.head() }).ok()
    }

    pub(super) fn load_snapshot_chunk(&self, load: &RequestLoadSnapshotChunk) -> ResponseLoadSnapshotChunk {
        let chunk = if load.format == FORMAT && load.chunk == 0 { self.chunk(load.height) } else { None };
        ResponseLoadSnapshotChunk { chunk: chunk.unwrap_or_default().into() }
    }

    /// Takes a snapshot of our format at or above our head (a node that restarts by state
    /// sync may have blocks already); refuses others, so CometBFT tries another.
    pub(super) fn offer_snapshot(&self, offer: RequestOfferSnapshot) -> ResponseOfferSnapshot {
        use response_offer_snapshot::Result as Offer;
        let result = match (offer.snapshot, B256::try_from(offer.app_hash.as_ref())) {
            (Some(snapshot), Ok(app_hash)) if snapshot.format == FORMAT && snapshot.chunks == 1 => match self.head() {
                Some(head) if head.number > snapshot.height => {
                    warn!(height = snapshot.height, head = head.number, "refused a snapshot below our head");
                    Offer::Reject
                }
                _ => {
                    info!(height = snapshot.height, %app_hash, "state sync: taking the snapshot");
                    *lock(&self.offered) = Some(Offered { snapshot, app_hash });
                    Offer::Accept
                }
            },
            (Some(_), _) => Offer::RejectFormat,
            (None, _) => Offer::Reject,
        };
        ResponseOfferSnapshot { result: result.into() }
    }

    /// The connection that was restoring a snapshot closed: its offer is void.
    pub fn forget_snapshot(&self) {
        lock(&self.offered).take();
    }

    // ANCHOR: apply_snapshot_chunk
    /// Checks the chunk names the block CometBFT verified, on our Geth's chain
    /// ([`App::verified_block`]), has Geth sync to it from its peers, and makes it our
    /// head: `Info` then reports it, which is what CometBFT checks before it block-syncs the
    /// blocks above it.
    pub(super) async fn apply_snapshot_chunk(&self, apply: RequestApplySnapshotChunk) -> ResponseApplySnapshotChunk {
        use response_apply_snapshot_chunk::Result as Apply;
        let answer = |result: Apply| ResponseApplySnapshotChunk { result: result.into(), ..Default::default() };
        let Some(offered) = lock(&self.offered).take() else { return answer(Apply::Abort) };
        let Some(head) = self.verified_block(&offered, &apply) else {
            // CometBFT takes nothing more from the peer that sent it, and tries another
            // snapshot.
            return ResponseApplySnapshotChunk { reject_senders: vec![apply.sender], ..answer(Apply::RejectSnapshot) };
        };
        match self.sync_geth_to(head).await {
            Ok(Restored::Now) => answer(Apply::Accept),
            Ok(Restored::TooLate(took)) => {
                info!(
                    block = head.number,
                    secs = took.as_secs(),
                    "state sync: Geth has the snapshot's block, but took long enough that the validators may have dropped the blocks above it; asking for a newer snapshot"
                );
                answer(Apply::RejectSnapshot)
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "state sync: cannot restore the snapshot");
                answer(Apply::Abort)
            }
        }
    }
    // ANCHOR_END: apply_snapshot_chunk

    // ANCHOR: verified_block
    /// The block `apply`'s chunk names, if it is the one CometBFT's light client verified
    /// (the chunk's hash, and the block at the offer's height with the offer's app hash)
    /// and its chain is our Geth's. None, and the reason logged, otherwise.
    fn verified_block(
        &self,
        Offered { snapshot, app_hash }: &Offered,
        apply: &RequestApplySnapshotChunk,
    ) -> Option<Head> {
        let chunk: Option<Chunk> = serde_json::from_slice(&apply.chunk).ok();
        let Some(Chunk { chain, head }) = chunk.filter(|c| {
            keccak256(&apply.chunk).as_slice() == snapshot.hash.as_ref()
                && c.head.number == snapshot.height
                && c.head.hash == *app_hash
        }) else {
            warn!(
                sender = apply.sender,
                height = snapshot.height,
                "a snapshot chunk that does not name the verified block"
            );
            return None;
        };
        // The light client cannot check this one (nor can we: either our Geth or the peer
        // is wrong), so the peer is refused too.
        if !chain.admits(&self.chain) {
            error!(
                sender = apply.sender,
                ours = %self.chain,
                theirs = %chain,
                "state sync: the snapshot's chain is another than ours, which our Geth could not follow; \
                 if every peer's snapshot says so, this node's Geth was initialised from another genesis file \
                 (or its datadir is another chain's): initialise it again from the network's, give this app that file \
                 as --genesis, then restart the app and its CometBFT"
            );
            return None;
        }
        Some(head)
    }
    // ANCHOR_END: verified_block

    /// Asks Geth to make `head` its head until it can, which it does once it has synced
    /// the chain below it from its peers. Done within [`FRESH_FOR`]: records the block,
    /// as Geth has it, as where our store begins. Done later: leaves the store alone, for
    /// a newer snapshot (whose block Geth reaches quickly now) to be restored instead.
    async fn sync_geth_to(&self, head: Head) -> anyhow::Result<Restored> {
        let started = Instant::now();
        let mut said = Instant::now();
        loop {
            match round::sync_to(&self.engine, head.hash).await {
                Ok(round::Sync::Done) => break,
                Ok(round::Sync::Syncing(answer)) if said.elapsed() >= Duration::from_secs(10) => {
                    info!(block = head.number, %answer, "state sync: Geth is syncing from its peers (devp2p)");
                    said = Instant::now();
                }
                Ok(round::Sync::Syncing(_)) => {}
                Err(Fault::Passing(error)) => warn!(error = %format!("{error:#}"), "state sync: cannot reach Geth"),
                Err(Fault::Fatal(error)) => return Err(error),
            }
            if !single_node::clock::sleep_or_cancel(Duration::from_secs(1), &self.cancel).await {
                anyhow::bail!("shutting down while Geth syncs");
            }
        }
        if started.elapsed() > FRESH_FOR {
            return Ok(Restored::TooLate(started.elapsed()));
        }
        let block =
            self.engine.block(BlockTag::Number(head.number)).await?.context("Geth lost the block it synced to")?;
        anyhow::ensure!(block.hash == head.hash, "Geth's block {} is not the snapshot's", head.number);
        let head = Head::from(&block);
        match self.store.head()? {
            None => self.store.init(self.chain.genesis, head)?,
            Some(_) => self.store.adopt(head)?,
        }
        *lock(&self.head) = Some(head);
        self.status.stored_head(Some(head));
        info!(block = head.number, hash = %head.hash, secs = started.elapsed().as_secs(), "state sync: Geth has the snapshot's block; block sync goes on from the next");
        Ok(Restored::Now)
    }
}

/// How a snapshot's restore ended.
enum Restored {
    /// Geth has the block, and the store begins there.
    Now,
    /// Geth has the block, after this long: a newer snapshot should be restored instead.
    TooLate(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of an app from before the chain id was written names block 0 alone: it is
    /// read so, and checked on block 0 (the format did not change, so each version reads the
    /// other's chunks; an older app ignores the fields it does not know). One from before a
    /// later field is read and checked likewise, on what it names.
    #[test]
    fn a_chunk_naming_block_0_alone_is_read_and_checked_on_it() {
        let genesis = B256::repeat_byte(5);
        let head = Head { number: 64, hash: B256::repeat_byte(6), timestamp: 64 };
        let old = serde_json::json!({ "genesis": genesis, "head": head }).to_string();
        let chunk: Chunk = serde_json::from_str(&old).expect("an older chunk reads");
        let alone = ElChain { genesis, chain_id: None, fork_id: None, genesis_forks: None, blob_schedule: None };
        assert_eq!((chunk.chain, chunk.head), (alone, head));
        let ours = ElChain {
            genesis,
            chain_id: Some(1337),
            fork_id: Some([1, 2, 3, 4].into()),
            genesis_forks: Some([9; 4].into()),
            blob_schedule: Some([8; 4].into()),
        };
        assert!(chunk.chain.admits(&ours), "checked on block 0 alone");
        let new = serde_json::to_value(Chunk { chain: ours, head }).expect("json");
        assert_eq!(new["chain_id"], 1337, "the chain's fields sit beside head, as in format 2: {new}");
        assert_eq!(new["fork_id"], "0x01020304");
        assert_eq!(new["genesis_forks"], "0x09090909");
        assert_eq!(new["blob_schedule"], "0x08080808");
    }
}
