//! The ABCI application: what each CometBFT call does to this validator's Geth.
//!
//! | ABCI call | on Geth | on our store |
//! |---|---|---|
//! | `Info` | — | reports the stored head: the last block we committed |
//! | `InitChain` | reads block 0, which must be the one the network's genesis names | records the chain; app hash = the EL genesis hash |
//! | `PrepareProposal` (proposer) | forkchoiceUpdated with attributes, getPayload | — |
//! | `ProcessProposal` (everyone) | newPayload: VALID accepts, anything else rejects | — |
//! | `FinalizeBlock` | starts newPayload, which goes on until VALID | — (app hash = the EL block hash) |
//! | `Commit` | waits for the VALID, then forkchoiceUpdated: head, safe and finalized (for a backlog of old blocks, as block sync gives, all three only at every 64th block, and at the last block once CometBFT pauses) | stores the block first |
//! | `ListSnapshots`, `LoadSnapshotChunk` (state sync, serving) | — | the EL block at a multiple of 64, and block 0 |
//! | `OfferSnapshot`, `ApplySnapshotChunk` (state sync, joining) | forkchoiceUpdated to the snapshot's block: Geth syncs from its peers | the block becomes our head |
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
//!   `Commit`": we store the block and move Geth's head only in `Commit`, or, for a block
//!   Commit stored and held back while block sync caught up, in `settle`. (Two other
//!   writes: one takes a stored block out again, one that Commit stored while block sync
//!   caught up and that Geth then calls INVALID; and a node joining by state sync stores
//!   the snapshot's block as its start, `app/snapshots.rs`.)
//!
//! A decided block that this Geth finds INVALID means this validator disagrees with the
//! network: the app answers with an exception, and CometBFT halts.

mod proposals;
mod snapshots;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use alloy_primitives::{B256, FixedBytes};
use anyhow::{Context, anyhow, bail};
use common::{BlockTag, ElChain, EngineClient, Head, PayloadStatus, payload::ExecutableBlock};
use single_node::{
    fault::{Fault, retry},
    round::{self, Building, ReplayError},
    store::{self, Reconciled, Store},
};
use tendermint_proto::v0_38::abci::{
    ExecTxResult, RequestFinalizeBlock, RequestInitChain, ResponseCheckTx, ResponseCommit, ResponseEcho,
    ResponseException, ResponseFinalizeBlock, ResponseFlush, ResponseInfo, ResponseInitChain,
    ResponseVerifyVoteExtension, request, response, response_verify_vote_extension,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::{BuildAhead, Config},
    proposal::{self, Reject},
    server::{Status, lock},
};

/// A decided block waiting for `Commit`.
#[derive(Debug, Clone)]
struct Pending {
    height: i64,
    block: ExecutableBlock,
    /// The block's time (BFT time, from the validators' votes), if it has a valid one.
    time: Option<SystemTime>,
    /// When FinalizeBlock came, by this node's clock.
    decided: SystemTime,
}

/// A decided block's import, running beside CometBFT (`FinalizeBlock` starts it).
#[derive(Debug)]
struct Import {
    block: Arc<ExecutableBlock>,
    /// The head it was decided on.
    parent: Head,
    /// `None` while it runs; then its outcome, for every call that waits for it.
    outcome: watch::Receiver<Option<Imported>>,
}

/// How an import ended.
#[derive(Debug, Clone)]
enum Imported {
    Valid,
    /// Geth calls the decided block INVALID.
    Invalid(String),
    /// Anything else that stopped it: shutting down, a Geth that answers nonsense.
    Failed(String),
}

/// Geth's verdict on a block the network decided: this node disagrees with the network.
#[derive(Debug, thiserror::Error)]
#[error("Geth calls block {number} INVALID, which the network decided: {status}")]
struct DecidedInvalid {
    number: u64,
    status: PayloadStatus,
}

/// A block committed this long after its time is old: one of a backlog, if Commits come
/// back to back ([`head_moves_now`]); a younger one is made head at once.
const CATCH_UP_AGE: Duration = Duration::from_secs(5);

/// CometBFT pauses when no Commit comes for this long. Block sync's Commits come a few
/// milliseconds apart, consensus's a block time apart (a second by default), so a Commit
/// in step with the network always comes after a pause, whatever this node's clock says.
pub const CATCH_UP_PAUSE: Duration = Duration::from_millis(250);

/// The application. One value serves all four ABCI connections.
#[derive(Debug)]
pub struct App {
    engine: EngineClient,
    /// Shared with the blocking thread that writes to it (Commit).
    store: Arc<Store>,
    /// Our chain: Geth's block 0, read at startup, where the store was checked against it,
    /// and the chain id, fork id, genesis forks and blob schedule of `--genesis`, which the
    /// start checks found Geth to have (of the forks at block 0, Prague and Osaka by name; of
    /// the blob parameters, those of its current, next and last fork).
    chain: ElChain,
    config: Config,
    status: Arc<Status>,
    cancel: CancellationToken,
    /// The stored head (our last commit), or `None` before `InitChain`.
    head: Mutex<Option<Head>>,
    /// The newest block Commit stored without making it Geth's head (an old block, while
    /// block sync catches up), until a move of the head passes it ([`App::settle`]).
    held_back: watch::Sender<Option<Head>>,
    /// When the app started: before its first Commit, a pause is counted from here.
    started: Instant,
    /// Held by Commit and [`App::settle`] while they move Geth's head, so that `settle`
    /// never moves it back below a block Commit made head.
    moving: tokio::sync::Mutex<()>,
    /// Set by `FinalizeBlock`, taken by `Commit`.
    pending: Mutex<Option<Pending>>,
    /// The decided block's import, started by `FinalizeBlock`: the next FinalizeBlock, a
    /// proposal, and a Commit that moves Geth's head wait for it.
    importing: Mutex<Option<Import>>,
    /// The next block's build, started at Commit (`--build-ahead`).
    ahead: Ahead,
    /// The state-sync snapshot CometBFT offered and we accepted, until its chunk comes.
    offered: Mutex<Option<snapshots::Offered>>,
}

impl App {
    /// An app on `store`, whose chain is `chain` (Geth's block 0 and the like); call
    /// [`App::reconcile`] before serving CometBFT, and run [`crate::ahead::run`] with the
    /// returned inbox beside it.
    pub fn new(
        engine: EngineClient,
        store: Store,
        chain: ElChain,
        config: Config,
        status: Arc<Status>,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Self, Inbox)> {
        let head = store.head()?;
        let (ahead, inbox) = Ahead::new(config.build_ahead);
        let store = Arc::new(store);
        let app = Self {
            engine,
            store,
            chain,
            config,
            status,
            cancel,
            head: Mutex::new(head),
            held_back: watch::Sender::new(None),
            started: Instant::now(),
            moving: tokio::sync::Mutex::default(),
            pending: Mutex::default(),
            importing: Mutex::default(),
            ahead,
            offered: Mutex::default(),
        };
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
        *lock(&self.head)
    }

    // ANCHOR: handle
    /// Answers one request. Vote extensions are off (InitChain refuses a genesis that turns
    /// them on), so those calls get neutral answers. The snapshot calls serve state sync
    /// (`app/snapshots.rs`).
    pub async fn handle(self: &Arc<Self>, request: request::Value) -> Option<response::Value> {
        use request::Value as Req;
        use response::Value as Res;
        // The last decided block is in Geth before the next one, and before a proposal is
        // built or checked on it.
        if matches!(request, Req::PrepareProposal(_) | Req::ProcessProposal(_) | Req::FinalizeBlock(_))
            && let Err(error) = self.imported().await
        {
            return fail(error);
        }
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
            Req::ListSnapshots(_) => Res::ListSnapshots(self.list_snapshots()),
            Req::OfferSnapshot(offer) => Res::OfferSnapshot(self.offer_snapshot(offer)),
            Req::LoadSnapshotChunk(load) => Res::LoadSnapshotChunk(self.load_snapshot_chunk(&load)),
            Req::ApplySnapshotChunk(apply) => Res::ApplySnapshotChunk(self.apply_snapshot_chunk(apply).await),
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
    /// genesis hash, so two validators with different EL genesis blocks never agree. The
    /// network's genesis names that block, the chain id, the fork id, the forks at block 0
    /// and the blob schedule (`app_state`): a node on another chain refuses here, saying why,
    /// where CometBFT would refuse block 1 ("wrong Block.Header.AppHash") at every try, or,
    /// for another chain id, fork or blob parameters, the node would part from the network
    /// later.
    async fn init_chain(&self, init: RequestInitChain) -> anyhow::Result<ResponseInitChain> {
        if init.initial_height > 1 {
            bail!(
                "the CometBFT genesis starts at height {}; this app keeps CometBFT height and EL block number equal, so it needs initial_height 1",
                init.initial_height
            );
        }
        let genesis = self.engine.block(BlockTag::Number(0)).await?.context("Geth has no block 0")?;
        match AppState::parse(&init.app_state_bytes)? {
            Some(named) => named.check(ElChain { genesis: genesis.hash, ..self.chain })?,
            None => warn!(
                "the CometBFT genesis names no EL chain (app_state.el_genesis_hash): this node's Geth's block 0 is not checked"
            ),
        }
        if let Some(params) = init.consensus_params.as_ref() {
            proposal::check_max_bytes(params, genesis.gas_limit)?;
        }
        let head = Head::from(&genesis);
        match self.store.head()? {
            None => self.store.init(genesis.hash, head)?,
            // InitChain again (the app's store was kept, CometBFT's was not): fine while
            // it is the same chain; the blocks will be replayed on top of what we have.
            Some(_) => self.store.check_genesis(genesis.hash)?,
        }
        let head = self.store.head()?.context("the store has no head after init")?;
        *lock(&self.head) = Some(head);
        info!(chain = %init.chain_id, genesis = %genesis.hash, "chain initialised");
        Ok(ResponseInitChain { app_hash: genesis.hash.to_vec().into(), ..Default::default() })
    }

    // ANCHOR: finalize
    /// The network decided: execute the block (again, or for the first time when
    /// CometBFT replays or block-syncs it) and answer with its hash as the app hash.
    /// Geth executes it while CometBFT goes on; the next call that needs Geth waits for it
    /// (`imported`). Nothing is persisted here; `Commit` does that.
    async fn finalize_block(self: &Arc<Self>, finalize: RequestFinalizeBlock) -> anyhow::Result<ResponseFinalizeBlock> {
        let decided = SystemTime::now();
        let head = self.head().context("FinalizeBlock before InitChain")?;
        let block = proposal::decode(&finalize.txs)
            .and_then(|block| proposal::extends(&block, &head).map(|()| block))
            .map_err(|reject: Reject| {
                anyhow!("the network decided block {} but it cannot be applied here: {reject}", finalize.height)
            })?;
        self.start_import(&block, head);
        if let Some(commit) = &finalize.decided_last_commit
            && commit.round > 0
        {
            self.status.metrics.round_changes.inc_by(u64::try_from(commit.round).unwrap_or(0));
        }
        let app_hash = block.hash().to_vec().into();
        let results = vec![ExecTxResult::default(); finalize.txs.len()];
        let time = finalize.time.and_then(|t| {
            let since_epoch = Duration::new(u64::try_from(t.seconds).ok()?, u32::try_from(t.nanos).ok()?);
            SystemTime::UNIX_EPOCH.checked_add(since_epoch)
        });
        *lock(&self.pending) = Some(Pending { height: finalize.height, block, time, decided });
        Ok(ResponseFinalizeBlock { tx_results: results, app_hash, ..Default::default() })
    }
    // ANCHOR_END: finalize

    // ANCHOR: start_import
    /// Has Geth execute `block` (on `parent`) beside CometBFT, until [`App::imported`].
    fn start_import(self: &Arc<Self>, block: &ExecutableBlock, parent: Head) {
        let (sender, outcome) = watch::channel(None);
        let block = Arc::new(block.clone());
        let (app, executed) = (self.clone(), block.clone());
        tokio::spawn(async move {
            let imported = match app.execute(&executed).await {
                Ok(()) => Imported::Valid,
                Err(error) if error.is::<DecidedInvalid>() => Imported::Invalid(format!("{error:#}")),
                Err(error) => Imported::Failed(format!("{error:#}")),
            };
            let failed = match &imported {
                Imported::Invalid(error) | Imported::Failed(error) => Some(error.clone()),
                Imported::Valid => None,
            };
            // The outcome first: once the failure is logged, every call sees it.
            sender.send_replace(Some(imported));
            if let Some(error) = failed {
                error!(%error, "the decided block's import failed; the call that waits for it answers with this");
            }
        });
        *lock(&self.importing) = Some(Import { block, parent, outcome });
    }
    // ANCHOR_END: start_import

    // ANCHOR: imported
    /// Waits for the last decided block's import. A failure becomes the answer of the first
    /// ABCI call that waits, and CometBFT halts. A block Commit stored while its import ran
    /// (block sync catching up) and that Geth calls INVALID is taken out of the store
    /// again, so that the store ends up holding only blocks this Geth found VALID; CometBFT,
    /// restarted, gives the block again (and halts again, if Geth still calls it INVALID).
    async fn imported(&self) -> anyhow::Result<()> {
        let Some((block, parent, mut outcome)) =
            lock(&self.importing).as_ref().map(|import| (import.block.clone(), import.parent, import.outcome.clone()))
        else {
            return Ok(());
        };
        let imported = outcome.wait_for(Option::is_some).await.map(|done| done.clone());
        let error = match imported {
            Ok(Some(Imported::Valid)) => None,
            Ok(Some(Imported::Failed(error))) => Some(error),
            Ok(None) | Err(_) => Some("the decided block's import stopped".to_owned()),
            Ok(Some(Imported::Invalid(error))) => {
                // Out of the store before the import is dropped, so that `settle` (below)
                // never finds it stored with no import to wait for.
                self.take_out(block.clone(), parent).await;
                Some(error)
            }
        };
        // Reported, it is done with: the next FinalizeBlock (CometBFT restarted) starts afresh.
        lock(&self.importing).take_if(|import| Arc::ptr_eq(&import.block, &block));
        error.map_or(Ok(()), |error| Err(anyhow!(error)))
    }

    /// Whether the last decided block's import has finished.
    fn import_finished(&self) -> bool {
        lock(&self.importing).as_ref().is_none_or(|import| import.outcome.borrow().is_some())
    }
    // ANCHOR_END: imported

    /// Takes `invalid` out of the store, if Commit stored it (Part 2's `Store::revert`, back
    /// to `parent`), and the app's head with it.
    async fn take_out(&self, invalid: Arc<ExecutableBlock>, parent: Head) {
        let store = self.store.clone();
        let reverted = tokio::task::spawn_blocking(move || {
            if store.head()? == Some(invalid.head()) {
                store.revert(&invalid, parent)?;
            }
            store.head()
        })
        .await
        .context("the store write did not finish")
        .and_then(|head| head);
        match reverted {
            Ok(head) => {
                *lock(&self.head) = head;
                self.status.stored_head(head);
            }
            Err(revert) => warn!(error = %format!("{revert:#}"), "cannot take the INVALID block out of the store"),
        }
    }

    /// newPayload until Geth says VALID. A Geth that is down or lost blocks is waited for
    /// and repaired from our store; a Geth that calls a decided block INVALID is a fatal
    /// disagreement.
    async fn execute(&self, block: &ExecutableBlock) -> anyhow::Result<()> {
        let what = format!("execute block {}", block.number());
        let engine = &self.engine;
        // Most likely a Geth that cannot execute it restarted and lost the parent:
        // `repairing` gives it back and tries again at once, without the retry's backoff.
        self.until_done(&what, || {
            self.repairing(&what, || async move {
                match round::import(engine, block).await? {
                    PayloadStatus::Valid { .. } => Ok(()),
                    status if status.is_pending() => {
                        Err(Fault::Passing(anyhow!("Geth did not execute block {}: {status}", block.number())))
                    }
                    status => {
                        self.status.metrics.engine.count("decided_invalid");
                        Err(Fault::Fatal(DecidedInvalid { number: block.number(), status }.into()))
                    }
                }
            })
        })
        .await
    }

    // ANCHOR: commit
    /// Persists the decided block, then makes it Geth's head, safe and final. BFT
    /// finality is immediate, so the forkchoice state marks the block finalized at once.
    async fn commit(&self) -> anyhow::Result<ResponseCommit> {
        let Pending { height, block, time, decided } =
            lock(&self.pending).take().context("Commit without FinalizeBlock")?;
        let head = block.head();
        let since = self.status.since_last_commit().unwrap_or_else(|| self.started.elapsed());
        let after_pause = since >= self.config.catch_up_pause();
        let moves = head_moves_now(head.number, time, after_pause);
        // A block whose import still runs (block sync is catching up on it) is stored all
        // the same: it was decided, and a restart gives Geth what it lacks.
        if moves || self.import_finished() {
            self.imported().await?;
        }
        self.store_in_background(&block).await?;
        *lock(&self.head) = Some(head);
        if moves {
            let _moving = self.moving.lock().await;
            self.make_head(head).await?;
            self.ahead.committed(Committed { head, decided });
        } else {
            self.held_back.send_replace(Some(head));
        }
        self.status.committed(height, head, block.transaction_count());
        info!(height, hash = %head.hash, txs = block.transaction_count(), "committed");
        Ok(ResponseCommit { retain_height: self.config.retain_height(height) })
    }
    // ANCHOR_END: commit

    /// Makes `head` Geth's head, safe and final (the caller holds `moving`). A Geth that
    /// lost the block since its import (it restarted) answers SYNCING: it gets the stored
    /// blocks it lacks, this one included, and is made head again.
    async fn make_head(&self, head: Head) -> anyhow::Result<()> {
        self.until_done(&format!("finalize block {}", head.number), || async {
            match round::finalize(&self.engine, head.hash).await {
                Err(Fault::Passing(_)) => self.reconcile().await,
                done => done,
            }
        })
        .await?;
        self.held_back.send_if_modified(|held| held.take_if(|held| held.number <= head.number).is_some());
        Ok(())
    }

    // ANCHOR: settle
    /// Makes the block Commit held back Geth's head once CometBFT pauses (no Commit for
    /// [`CATCH_UP_PAUSE`]): block sync has ended, and consensus gives the next block only
    /// when the network decides it, or the node lost its peers. Runs beside the ABCI
    /// server until `cancel`.
    pub async fn settle(self: Arc<Self>, cancel: CancellationToken) {
        let mut held = self.held_back.subscribe();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = held.wait_for(Option::is_some) => {}
            }
            // Each Commit starts the pause again.
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = held.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(self.config.catch_up_pause()) => break,
                }
            }
            let Some(head) = self.held_back.send_replace(None) else { continue };
            if !self.import_valid(head).await {
                continue;
            }
            let _moving = self.moving.lock().await;
            // A Commit since (it moves the head or holds its own block back), the block
            // taken out of the store again (INVALID), or the app stopping.
            if self.head() != Some(head) || cancel.is_cancelled() {
                continue;
            }
            match self.make_head(head).await {
                Ok(()) => info!(number = head.number, "no block came for a while: made the last one Geth's head"),
                Err(error) => warn!(error = %format!("{error:#}"), "cannot make the last block Geth's head"),
            }
        }
    }
    // ANCHOR_END: settle

    /// Waits for `head`'s import if it is the last decided block's: whether Geth found it
    /// VALID. The outcome is left for the ABCI call that waits for it next.
    async fn import_valid(&self, head: Head) -> bool {
        let outcome = lock(&self.importing)
            .as_ref()
            .filter(|import| import.block.head() == head)
            .map(|import| import.outcome.clone());
        let Some(mut outcome) = outcome else { return true };
        matches!(outcome.wait_for(Option::is_some).await.as_deref(), Ok(Some(Imported::Valid)))
    }

    /// Appends `block` to the store ([`store_once`]) on a blocking thread, as Part 2 does:
    /// the commit waits for the disk, which would hold up every other task on this
    /// executor thread.
    async fn store_in_background(&self, block: &ExecutableBlock) -> anyhow::Result<()> {
        let (store, block) = (self.store.clone(), block.clone());
        tokio::task::spawn_blocking(move || store_once(&store, &block))
            .await
            .context("the store write did not finish")?
    }

    // ANCHOR: reconcile
    /// Brings Geth to the stored head (Part 2's [`store::reconcile`]) and sends the
    /// forkchoice state again: before CometBFT connects, and wherever a call finds Geth
    /// has lost blocks. A Geth on another chain is a fatal fault.
    pub async fn reconcile(&self) -> Result<(), Fault> {
        let Some(ours) = self.store.head().map_err(Fault::Fatal)? else { return Ok(()) };
        let reconciled = store::reconcile(&self.engine, &self.store, ours).await.map_err(ReplayError::into_fault)?;
        if let Reconciled::Replayed(replayed) = reconciled {
            self.status.metrics.replayed_blocks.inc_by(replayed);
        }
        round::finalize(&self.engine, ours.hash).await
    }
    // ANCHOR_END: reconcile

    /// Runs `step`; if it fails the way a Geth that lost blocks fails (a passing fault),
    /// brings Geth to the stored head and runs it once more. PrepareProposal and
    /// ProcessProposal repair Geth this way where they meet the fault, so a validator whose
    /// Geth restarted empty votes again at once, without waiting for a FinalizeBlock (and
    /// without relying on Geth syncing from peers it may not have). `/ready` says Geth is
    /// unreachable while the step still fails that way (no answer, or none it can use, as
    /// SYNCING after the repair), and no longer once a step succeeds.
    async fn repairing<T, F, Fut>(&self, what: &str, mut step: F) -> Result<T, Fault>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        let result = async {
            match step().await {
                Err(Fault::Passing(error)) => {
                    info!(error = %format!("{error:#}"), "cannot {what}; bringing Geth to the stored head first");
                    self.reconcile().await?;
                    step().await
                }
                done => done,
            }
        }
        .await;
        match &result {
            Ok(_) => self.status.set_el_reachable(true),
            Err(Fault::Passing(_)) => self.status.set_el_reachable(false),
            Err(Fault::Fatal(_)) => {}
        }
        result
    }

    /// Runs `step` until it succeeds (Part 2's [`retry`]). CometBFT waits for the answer
    /// meanwhile; `/ready` says Geth is unreachable.
    async fn until_done<F, Fut>(&self, what: &str, step: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), Fault>>,
    {
        let status = &self.status;
        let done = retry(&self.cancel, step, |waiting| {
            status.set_el_reachable(false);
            if waiting.worth_logging() {
                warn!(attempts = waiting.attempts, error = %format!("{:#}", waiting.error), "cannot {what} yet; retrying");
            }
        })
        .await
        .map_err(|error| error.context(what.to_owned()))?;
        if done.is_none() {
            bail!("shutting down while trying to {what}");
        }
        self.status.set_el_reachable(true);
        Ok(())
    }
}

/// The build started ahead, shared by the ABCI calls and the task that starts it.
#[derive(Debug)]
pub struct Ahead {
    mode: BuildAhead,
    slot: Mutex<Option<Building>>,
    committed: watch::Sender<Option<Committed>>,
    stop: mpsc::UnboundedSender<Building>,
}

/// A committed block, as the task that builds ahead needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The new head.
    pub head: Head,
    /// When FinalizeBlock brought it, by this node's clock: for a block the network has
    /// just decided, the next block's time (the median of the precommits that decided
    /// it) is at or before this, with the validators' clocks in step.
    pub decided: SystemTime,
}

/// The receiving ends, for [`crate::ahead::run`].
#[derive(Debug)]
pub struct Inbox {
    /// Each Commit's head: the next block's build can start on it.
    pub committed: watch::Receiver<Option<Committed>>,
    /// Builds that will not be used: Geth can stop them.
    pub stop: mpsc::UnboundedReceiver<Building>,
}

impl Ahead {
    /// Nothing built ahead yet.
    pub fn new(mode: BuildAhead) -> (Self, Inbox) {
        let (committed, committed_rx) = watch::channel(None);
        let (stop, stop_rx) = mpsc::unbounded_channel();
        (Self { mode, slot: Mutex::default(), committed, stop }, Inbox { committed: committed_rx, stop: stop_rx })
    }

    /// Commit stored the block and made it Geth's head: the next block's build can start
    /// on it. (While block sync catches up, Commit makes only every 64th block head, and
    /// nothing is built on the others, nor on the last, which `settle` makes head.)
    pub fn committed(&self, committed: Committed) {
        if self.mode != BuildAhead::Off {
            self.committed.send_replace(Some(committed));
        }
    }

    /// The build started ahead, if any (PrepareProposal takes it).
    pub fn take(&self) -> Option<Building> {
        lock(&self.slot).take()
    }

    /// Someone else proposed: our build ahead, if any, will not be used; Geth stops it.
    pub fn discard(&self) {
        if let Some(building) = self.take() {
            let _ = self.stop.send(building);
        }
    }

    /// A build started ahead, for PrepareProposal to take.
    pub fn keep(&self, building: Building) {
        *lock(&self.slot) = Some(building);
    }
}

/// What the network's CometBFT genesis says of the EL chain, its `app_state`:
/// `{"el_genesis_hash": "0x…", "el_chain_id": N, "el_fork_id": "0x…", "el_genesis_forks":
/// "0x…", "el_blob_schedule": "0x…"}`, the block 0, the chain id, the fork id (of the last
/// fork scheduled, as `eth_config` gives it), the forks at block 0
/// ([`common::ForkSchedule::genesis_forks_id`]) and the forks' blob parameters
/// ([`common::ForkSchedule::blob_schedule_id`]) every node's Geth must have. `scripts/bft.sh`
/// writes it from node0's Geth when it makes a network. Without it (`None`), nothing is
/// checked; without `el_chain_id`, `el_fork_id`, `el_genesis_forks` or `el_blob_schedule` (a
/// network made before they were written), those are not; an `app_state` of any other
/// shape is refused.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AppState {
    el_genesis_hash: B256,
    #[serde(default)]
    el_chain_id: Option<u64>,
    #[serde(default)]
    el_fork_id: Option<FixedBytes<4>>,
    #[serde(default)]
    el_genesis_forks: Option<FixedBytes<4>>,
    #[serde(default)]
    el_blob_schedule: Option<FixedBytes<4>>,
}

impl AppState {
    /// `None` for a genesis without `app_state` (a network made before it named its EL
    /// chain); an error for one that says something else.
    fn parse(bytes: &[u8]) -> anyhow::Result<Option<Self>> {
        if bytes.is_empty() || bytes == b"null" {
            return Ok(None);
        }
        serde_json::from_slice(bytes).map(Some).context(
            "the CometBFT genesis's app_state must be {\"el_genesis_hash\": \"0x…\", \"el_chain_id\": N, \"el_fork_id\": \"0x…\", \
             \"el_genesis_forks\": \"0x…\", \"el_blob_schedule\": \"0x…\"}, the hash of the EL chain's block 0, its chain id, \
             its last fork id, its forks at block 0 and its blob schedule",
        )
    }

    /// Checks that this node's chain, `ours` (its Geth's block 0, and the chain id, fork id,
    /// forks at block 0 and blob schedule of its `--genesis`, which the start checks found its
    /// Geth to have), is the chain named. Block 0 covers none of the four: a genesis file's
    /// `config` is not in the block, so a Geth initialised from a file that differs there
    /// alone would pass on block 0, and refuse the first transaction signed for the network's
    /// chain (another chain id), or part from the network at the first block the two rule
    /// sets judge differently (another fork, or other blob parameters).
    fn check(&self, ours: ElChain) -> anyhow::Result<()> {
        let named = ElChain {
            genesis: self.el_genesis_hash,
            chain_id: self.el_chain_id,
            fork_id: self.el_fork_id,
            genesis_forks: self.el_genesis_forks,
            blob_schedule: self.el_blob_schedule,
        };
        if !named.admits(&ours) {
            bail!(
                "this node's Geth has {ours}, but the network's genesis names {named} \
                 (app_state in CometBFT's genesis.json): Geth was initialised from another genesis file, \
                 or started on another chain's datadir; initialise it again from the network's, give this app that file \
                 as --genesis, then restart the app and its CometBFT"
            );
        }
        let unnamed = named.unnamed();
        if !unnamed.is_empty() {
            let unnamed = unnamed.join(", ");
            warn!(
                unnamed,
                "the CometBFT genesis's app_state names less than this version writes (the network was made before): \
                 this node's Geth is not checked on what it leaves out"
            );
        }
        Ok(())
    }
}

/// An exception response: CometBFT halts on it, which is the point for a fault no retry
/// can fix. The reason is logged here and shown by CometBFT.
fn fail(error: anyhow::Error) -> Option<response::Value> {
    error!(error = %format!("{error:#}"), "cannot go on");
    exception(format!("{error:#}"))
}

// ANCHOR: head_moves_now
/// Whether Commit makes block `number` Geth's head now: yes, unless the block is one of a
/// backlog ([`CATCH_UP_AGE`] old or more, and committed less than [`CATCH_UP_PAUSE`] after
/// the last), which moves it only at every [`store::REPLAY_HEAD_EVERY`]th block, as a
/// replay does. [`App::settle`] moves it to the last block held back once CometBFT pauses.
fn head_moves_now(number: u64, time: Option<SystemTime>, after_pause: bool) -> bool {
    let age = time.and_then(|time| SystemTime::now().duration_since(time).ok());
    let backlog = !after_pause && age.is_some_and(|age| age >= CATCH_UP_AGE);
    !backlog || number.is_multiple_of(store::REPLAY_HEAD_EVERY)
}
// ANCHOR_END: head_moves_now

/// Appends `block` to `store`. A block stored already as the head is left as it is: a
/// CometBFT restarted while we waited for Geth gives the block again, and both Commits
/// come here. Any other failed write is an error: Commit must not answer for a block it
/// did not store.
fn store_once(store: &Store, block: &ExecutableBlock) -> anyhow::Result<()> {
    store.append(block).or_else(|error| match store.head()? {
        Some(head) if head == block.head() => Ok(()),
        _ => Err(error),
    })
}

/// A `ResponseException` carrying `error`.
pub fn exception(error: String) -> Option<response::Value> {
    Some(response::Value::Exception(ResponseException { error }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposal::tests::{HEAD, child};

    #[test]
    fn a_decided_block_is_stored_once_and_a_write_the_store_refuses_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("store.redb")).expect("open");
        store.init(B256::repeat_byte(9), HEAD).expect("init");
        let block = child(HEAD.timestamp + 1);
        store_once(&store, &block).expect("the decided block is stored");
        store_once(&store, &block).expect("a second Commit of the stored head (a restarted CometBFT) passes");
        // Another block at the same height does not extend the stored head: the store
        // refuses it, and so must Commit.
        let other = child(HEAD.timestamp + 2);
        let error = store_once(&store, &other).expect_err("a block the store refused was answered as stored");
        assert!(error.to_string().contains("does not extend"), "{error:#}");
        assert_eq!(store.head().expect("read"), Some(block.head()));
    }
}
