//! The ABCI application: what each CometBFT call does to this validator's Geth.
//!
//! | ABCI call | on Geth | on our store |
//! |---|---|---|
//! | `Info` | — | reports the stored head: the last block we committed |
//! | `InitChain` | reads block 0 | records the chain; app hash = the EL genesis hash |
//! | `PrepareProposal` (proposer) | forkchoiceUpdated with attributes, getPayload | — |
//! | `ProcessProposal` (everyone) | newPayload: VALID accepts, anything else rejects | — |
//! | `FinalizeBlock` | newPayload until VALID | — (app hash = the EL block hash) |
//! | `Commit` | forkchoiceUpdated: head, safe and finalized | stores the block first |
//!
//! What CometBFT requires of an app (`spec/abci/abci++_app_requirements.md`), and how
//! this one meets it:
//! - `ProcessProposal` is a deterministic function of the last committed state and the
//!   block (Requirements 4 and 5), and accepts what a correct proposer made (3): it
//!   accepts exactly the blocks Geth finds VALID on our head. The one exception is a Geth
//!   that cannot answer; the chapter explains why we then reject.
//! - `PrepareProposal` and `ProcessProposal` do not change the committed state (9):
//!   newPayload stores a block in Geth without making it head.
//! - `FinalizeBlock` "MUST NOT persist" the new state; "persisting MUST be done during
//!   `Commit`": we store the block and move Geth's head only in `Commit`.
//!
//! A decided block that this Geth finds INVALID means this validator disagrees with the
//! network: the app answers with an exception, and CometBFT halts.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use common::{
    BlockTag, EngineClient, Fault, Head, PayloadStatus,
    clock::{Backoff, sleep_or_cancel},
    payload::ExecutableBlock,
    round,
    store::{self, Store},
};
use tendermint_proto::{
    google::protobuf::Timestamp,
    v0_38::abci::{
        ExecTxResult, RequestFinalizeBlock, RequestInitChain, RequestPrepareProposal, RequestProcessProposal,
        ResponseCheckTx, ResponseCommit, ResponseEcho, ResponseFinalizeBlock, ResponseFlush, ResponseInfo,
        ResponseInitChain, ResponseOfferSnapshot, ResponsePrepareProposal, ResponseProcessProposal,
        ResponseVerifyVoteExtension, request, response, response_offer_snapshot, response_process_proposal,
        response_verify_vote_extension,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    abci::exception,
    ahead::{self, Ahead},
    config::Config,
    proposal::{self, Reject},
    server::Status,
};

/// A decided block waiting for `Commit`.
#[derive(Debug, Clone)]
struct Pending {
    height: i64,
    block: ExecutableBlock,
}

/// The application. One value serves all four ABCI connections.
#[derive(Debug)]
pub struct App {
    engine: EngineClient,
    store: Store,
    config: Config,
    status: Arc<Status>,
    cancel: CancellationToken,
    /// The stored head (our last commit), or `None` before `InitChain`.
    head: Mutex<Option<Head>>,
    /// Set by `FinalizeBlock`, taken by `Commit`.
    pending: Mutex<Option<Pending>>,
    /// The next block's build, started at Commit (`--build-ahead`).
    ahead: Ahead,
}

impl App {
    /// An app on `store`; call [`App::reconcile`] before serving CometBFT, and run
    /// [`crate::ahead::run`] with the returned inbox beside it.
    pub fn new(
        engine: EngineClient,
        store: Store,
        config: Config,
        status: Arc<Status>,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Self, ahead::Inbox)> {
        let head = store.head()?;
        let (ahead, inbox) = Ahead::new(config.build_ahead);
        let app =
            Self { engine, store, config, status, cancel, head: Mutex::new(head), pending: Mutex::new(None), ahead };
        Ok((app, inbox))
    }

    /// This validator's Geth.
    pub const fn engine(&self) -> &EngineClient {
        &self.engine
    }

    /// The flags.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The build started ahead.
    pub const fn ahead(&self) -> &Ahead {
        &self.ahead
    }

    fn head(&self) -> Option<Head> {
        *self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ANCHOR: handle
    /// Answers one request. Vote extensions are off (CometBFT's default consensus params)
    /// and we serve no state-sync snapshots, so those calls get neutral answers.
    pub async fn handle(&self, request: request::Value) -> Option<response::Value> {
        use request::Value as Req;
        use response::Value as Res;
        Some(match request {
            Req::Echo(echo) => Res::Echo(ResponseEcho { message: echo.message }),
            Req::Flush(_) => Res::Flush(ResponseFlush {}),
            Req::Info(_) => Res::Info(self.info()),
            Req::InitChain(init) => return self.init_chain(init).await.map_or_else(fail, |r| Some(Res::InitChain(r))),
            Req::PrepareProposal(prepare) => Res::PrepareProposal(self.prepare_proposal(prepare).await),
            Req::ProcessProposal(process) => Res::ProcessProposal(self.process_proposal(process).await),
            Req::FinalizeBlock(finalize) => {
                return self.finalize_block(finalize).await.map_or_else(fail, |r| Some(Res::FinalizeBlock(r)));
            }
            Req::Commit(_) => return self.commit().await.map_or_else(fail, |r| Some(Res::Commit(r))),
            Req::CheckTx(_) => Res::CheckTx(ResponseCheckTx {
                code: 1,
                log: "this chain takes transactions at a validator's Geth (eth_sendRawTransaction), not in CometBFT's mempool".into(),
                ..Default::default()
            }),
            Req::Query(_) => Res::Query(Default::default()),
            Req::ExtendVote(_) => Res::ExtendVote(Default::default()),
            Req::VerifyVoteExtension(_) => Res::VerifyVoteExtension(ResponseVerifyVoteExtension {
                status: response_verify_vote_extension::VerifyStatus::Accept.into(),
            }),
            Req::ListSnapshots(_) => Res::ListSnapshots(Default::default()),
            Req::OfferSnapshot(_) => Res::OfferSnapshot(ResponseOfferSnapshot {
                result: response_offer_snapshot::Result::Reject.into(),
            }),
            Req::LoadSnapshotChunk(_) => Res::LoadSnapshotChunk(Default::default()),
            Req::ApplySnapshotChunk(_) => Res::ApplySnapshotChunk(Default::default()),
        })
    }
    // ANCHOR_END: handle

    // ANCHOR: info
    /// The last block we committed, as CometBFT's handshake needs it: its height (the EL
    /// block number) and the app hash (the EL block hash). CometBFT replays every block
    /// above it through `FinalizeBlock` and `Commit`, and so into Geth.
    fn info(&self) -> ResponseInfo {
        let (height, app_hash) = match self.head() {
            Some(head) => (i64::try_from(head.number).unwrap_or(i64::MAX), head.hash.to_vec().into()),
            None => (0, Default::default()),
        };
        ResponseInfo {
            data: "cometbft-consensus".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            app_version: 0,
            last_block_height: height,
            last_block_app_hash: app_hash,
        }
    }
    // ANCHOR_END: info

    /// The chain begins: CometBFT height 0 is EL block 0. Our app hash starts as the EL
    /// genesis hash, so two validators with different EL genesis blocks never agree.
    async fn init_chain(&self, init: RequestInitChain) -> anyhow::Result<ResponseInitChain> {
        if init.initial_height > 1 {
            bail!(
                "the CometBFT genesis starts at height {}; this app keeps CometBFT height and EL block number equal, so it needs initial_height 1",
                init.initial_height
            );
        }
        let genesis = self.engine.block(BlockTag::Number(0)).await?.context("Geth has no block 0")?;
        let head = Head::from(&genesis);
        match self.store.head()? {
            None => self.store.init(genesis.hash, head)?,
            // InitChain again (the app's store was kept, CometBFT's was not): fine while
            // it is the same chain; the blocks will be replayed on top of what we have.
            Some(_) => self.store.check_genesis(genesis.hash)?,
        }
        let head = self.store.head()?.context("the store has no head after init")?;
        *self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(head);
        info!(chain = %init.chain_id, genesis = %genesis.hash, "chain initialised");
        Ok(ResponseInitChain { app_hash: genesis.hash.to_vec().into(), ..Default::default() })
    }

    // ANCHOR: prepare
    /// The proposer builds the block: Geth gets `build_time` to fill it from its pool.
    /// On any failure we propose nothing; every validator rejects an empty proposal, and
    /// the next round has another proposer.
    async fn prepare_proposal(&self, prepare: RequestPrepareProposal) -> ResponsePrepareProposal {
        let nothing = ResponsePrepareProposal { txs: Vec::new() };
        let Some(head) = self.head() else { return nothing };
        let timestamp = proposal::timestamp(head.timestamp, seconds(prepare.time.as_ref()).unwrap_or(0));
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
        // every validator. What does not fit is never proposed (CometBFT would refuse it
        // before any validator's ProcessProposal saw it).
        let tx = proposal::encode(&block);
        if i64::try_from(tx.len()).unwrap_or(i64::MAX) > prepare.max_tx_bytes {
            error!(bytes = tx.len(), max = prepare.max_tx_bytes, "the built block does not fit in a CometBFT block");
            return nothing;
        }
        self.status.metrics.proposals_built.inc();
        info!(height = prepare.height, hash = %block.hash(), txs = block.transaction_count(), "proposing");
        ResponsePrepareProposal { txs: vec![tx] }
    }
    // ANCHOR_END: prepare

    // ANCHOR: take_ahead
    /// The block built ahead since the last Commit, if it is the block the rule asks for
    /// now: the same parent and the same timestamp. Anything else is dropped.
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

    /// A fresh build on `head`, given `--build-time-ms`, repairing Geth first if it lost
    /// blocks.
    async fn build(&self, head: &Head, timestamp: u64) -> Result<Option<ExecutableBlock>, Fault> {
        self.repairing("build a proposal", || {
            round::build(
                &self.engine,
                head,
                timestamp,
                self.config.fee_recipient,
                self.config.build_time(),
                &self.cancel,
            )
        })
        .await
    }

    // ANCHOR: process
    /// Every validator checks the proposal and executes it on its own Geth before voting.
    /// Only VALID accepts: INVALID is a bad block; SYNCING, ACCEPTED or no answer means
    /// this Geth cannot vouch for it, and a validator votes only for what it checked. The
    /// block still commits if two thirds of the voting power accept it, and this node then
    /// imports it in `FinalizeBlock`.
    async fn process_proposal(&self, process: RequestProcessProposal) -> ResponseProcessProposal {
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

    // ANCHOR: finalize
    /// The network decided: execute the block (again, or for the first time when
    /// CometBFT replays or block-syncs it) and answer with its hash as the app hash.
    /// Nothing is persisted here; `Commit` does that.
    async fn finalize_block(&self, finalize: RequestFinalizeBlock) -> anyhow::Result<ResponseFinalizeBlock> {
        let head = self.head().context("FinalizeBlock before InitChain")?;
        let block = proposal::decode(&finalize.txs)
            .and_then(|block| proposal::extends(&block, &head).map(|()| block))
            .map_err(|reject: Reject| {
                anyhow!("the network decided block {} but it cannot be applied here: {reject}", finalize.height)
            })?;
        self.execute(&block).await?;
        if let Some(commit) = &finalize.decided_last_commit
            && commit.round > 0
        {
            self.status.metrics.round_changes.inc_by(u64::try_from(commit.round).unwrap_or(0));
        }
        let app_hash = block.hash().to_vec().into();
        let results = vec![ExecTxResult::default(); finalize.txs.len()];
        *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Pending { height: finalize.height, block });
        Ok(ResponseFinalizeBlock { tx_results: results, app_hash, ..Default::default() })
    }
    // ANCHOR_END: finalize

    /// newPayload until Geth says VALID. A Geth that is down or lost blocks is waited for
    /// and repaired from our store; a Geth that calls a decided block INVALID is a fatal
    /// disagreement.
    async fn execute(&self, block: &ExecutableBlock) -> anyhow::Result<()> {
        self.until_done(&format!("execute block {}", block.number()), || async {
            match round::import(&self.engine, block).await? {
                PayloadStatus::Valid { .. } => Ok(()),
                status if status.is_pending() => {
                    // Most likely Geth restarted and lost the parent: give it back.
                    self.reconcile().await?;
                    Err(Fault::Passing(anyhow!("Geth did not execute block {}: {status}", block.number())))
                }
                status => Err(Fault::Fatal(anyhow!(
                    "Geth calls block {} INVALID, which the network decided: {status}",
                    block.number()
                ))),
            }
        })
        .await
    }

    // ANCHOR: commit
    /// Persists the decided block, then makes it Geth's head, safe and final. BFT
    /// finality is immediate, so the forkchoice state marks the block finalized at once.
    async fn commit(&self) -> anyhow::Result<ResponseCommit> {
        let Pending { height, block } = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .context("Commit without FinalizeBlock")?;
        self.store.append(&block)?;
        let head = block.head();
        *self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(head);
        // A Geth that lost the block since FinalizeBlock (it restarted) answers SYNCING: it
        // gets the stored blocks it lacks, this one included, and is made head again.
        self.until_done(&format!("finalize block {}", head.number), || async {
            match round::finalize(&self.engine, head.hash).await {
                Err(Fault::Passing(_)) => self.reconcile().await,
                done => done,
            }
        })
        .await?;
        self.status.committed(height, head, block.transaction_count());
        info!(height, hash = %head.hash, txs = block.transaction_count(), "committed");
        self.ahead.committed(head);
        Ok(ResponseCommit { retain_height: 0 })
    }
    // ANCHOR_END: commit

    // ANCHOR: reconcile
    /// Brings Geth to the stored head before CometBFT connects, and whenever Geth seems
    /// to have lost blocks: a Geth behind the store gets the stored blocks it lacks; a
    /// Geth at or ahead of it gets the forkchoice state again. A Geth on another chain is
    /// a fatal fault.
    pub async fn reconcile(&self) -> Result<(), Fault> {
        let Some(ours) = self.store.head().map_err(Fault::Fatal)? else { return Ok(()) };
        let geth = self.engine.head().await?;
        if geth.number < ours.number {
            info!(geth = geth.number, ours = ours.number, "Geth is behind the store; replaying");
            let replayed = store::replay_into(&self.engine, &self.store, &geth, ours.number).await?;
            self.status.metrics.replayed_blocks.inc_by(replayed);
        } else {
            let at_ours = self.engine.block(BlockTag::Number(ours.number)).await?;
            if at_ours.map(|b| b.hash) != Some(ours.hash) {
                return Err(Fault::Fatal(anyhow!(
                    "Geth's chain differs from the stored one at height {}: wipe Geth's datadir and let the app replay",
                    ours.number
                )));
            }
        }
        round::finalize(&self.engine, ours.hash).await
    }
    // ANCHOR_END: reconcile

    /// Runs `step`; if it fails the way a Geth that lost blocks fails (a passing fault),
    /// brings Geth to the stored head and runs it once more. PrepareProposal and
    /// ProcessProposal repair Geth this way where they meet the fault, so a validator whose
    /// Geth restarted empty votes again at once, without waiting for a FinalizeBlock (and
    /// without relying on Geth syncing from peers it may not have).
    async fn repairing<T, F, Fut>(&self, what: &str, mut step: F) -> Result<T, Fault>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        match step().await {
            Err(Fault::Passing(error)) => {
                info!(error = %format!("{error:#}"), "cannot {what}; bringing Geth to the stored head first");
                self.reconcile().await?;
                step().await
            }
            done => done,
        }
    }

    /// Runs `step` until it succeeds, waiting out passing faults with a capped backoff.
    /// CometBFT waits for the answer meanwhile; `/ready` says Geth is unreachable.
    async fn until_done<F, Fut>(&self, what: &str, mut step: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), Fault>>,
    {
        let mut backoff = Backoff::DEFAULT;
        let started = Instant::now();
        let mut warned = None::<Instant>;
        loop {
            match step().await {
                Ok(()) => {
                    self.status.set_el_down(false);
                    return Ok(());
                }
                Err(Fault::Fatal(error)) => return Err(error.context(what.to_owned())),
                Err(Fault::Passing(error)) => {
                    self.status.set_el_down(true);
                    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        warn!(waited_secs = started.elapsed().as_secs(), error = %format!("{error:#}"), "cannot {what} yet; retrying");
                        warned = Some(Instant::now());
                    }
                }
            }
            if !sleep_or_cancel(backoff.next_delay(), &self.cancel).await {
                bail!("shutting down while trying to {what}");
            }
        }
    }
}

/// An exception response: CometBFT halts on it, which is the point for a fault no retry
/// can fix. The reason is logged here and shown by CometBFT.
fn fail(error: anyhow::Error) -> Option<response::Value> {
    error!(error = %format!("{error:#}"), "cannot go on");
    exception(format!("{error:#}"))
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
