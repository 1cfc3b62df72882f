//! A node's life: find the stored chain, follow it, and (leader candidates) take the lease
//! and lead until it ends, then follow again.
//!
//! Members and candidates run the same loop. A candidate also tries to take the lease
//! every quarter-lease while it is in step with the store; on promotion it claims the
//! store for its term and hands over to the production loop (`sequencer.rs`).

use std::{sync::Arc, time::Duration};

use common::{EngineClient, Head};
use single_node::{
    clock::Backoff,
    fault::{Fault, Retry, retry},
};
use tokio::{sync::Notify, sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    block_log::{Chain, Store},
    config::Config,
    election::{Election, Lease, LeaseView},
    follower::{FollowError, Follower},
    sequencer::Sequencer,
    server::{Role, Status},
    step_down::StepDown,
};

/// How often a follower reads the store when no notification arrives.
const POLL: Duration = Duration::from_secs(2);

/// How long a halted follower waits before it reads the bad block again.
const HALTED_RETRY: Duration = Duration::from_secs(5);

/// How often a node whose Geth syncs from its peers asks whether it is done.
const SYNC_RETRY: Duration = Duration::from_secs(5);

/// At most one warning per this long about a dependency that stays down.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a try for the lease came to.
#[derive(Debug)]
enum Attempt {
    /// Someone else holds the lease, or a newer term the store.
    Taken,
    /// Redis or PostgreSQL failed; try again later.
    Failed(anyhow::Error),
    /// We led, and stopped for this reason.
    Led(StepDown),
}

/// Where a follower stands after a catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Following {
    /// At the stored head.
    InStep,
    /// Stopped before a stored block it cannot apply.
    Halted,
    /// Geth or PostgreSQL failed; try again after a backoff.
    Retry,
    /// Geth is syncing from its peers, being below where the log begins: ask again every
    /// [`SYNC_RETRY`], whatever blocks are stored meanwhile.
    Syncing,
}

/// Everything a node uses.
#[derive(Debug)]
pub struct Node {
    /// This node's Geth.
    pub engine: Arc<EngineClient>,
    /// The block log.
    pub store: Store,
    /// The lease, for leader candidates; `None` for members.
    pub election: Option<Election>,
    /// The flags.
    pub config: Config,
    /// What the endpoints report.
    pub status: Arc<Status>,
    /// Woken by `NOTIFY blocks`.
    pub wake: Arc<Notify>,
}

impl Node {
    // ANCHOR: run
    /// Runs until `cancel` fires; `Err` only for faults no retry can fix.
    pub async fn run(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let Some(chain) = self.chain(cancel).await? else { return Ok(()) };
        let Some(mut follower) = self.attach(&chain, cancel).await? else { return Ok(()) };
        info!(number = follower.head().number, "following the store");
        let mut backoff = Backoff::DEFAULT;
        let mut next_try = Instant::now();
        let mut last_warning = None::<Instant>;
        loop {
            let state = self.follow(&mut follower).await?;
            if state == Following::InStep
                && let Some(election) = &self.election
                && Instant::now() >= next_try
            {
                next_try = Instant::now() + election.timing().renew_every();
                match self.try_lead(election, &mut follower, cancel).await? {
                    Attempt::Taken => {}
                    Attempt::Failed(error) => {
                        if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                            warn!(error = %format!("{error:#}"), "cannot try for the lease");
                            last_warning = Some(Instant::now());
                        }
                    }
                    // Stepped down because this node could not produce: leave the lease to
                    // a standby for a lease length before trying again.
                    Attempt::Led(StepDown::CannotProduce(_) | StepDown::Stalled(_)) => {
                        next_try = Instant::now() + election.timing().lease;
                    }
                    Attempt::Led(_) => {}
                }
            }
            let wait = match state {
                Following::InStep => {
                    backoff.reset();
                    self.election.as_ref().map_or(POLL, |e| e.timing().renew_every())
                }
                Following::Halted => HALTED_RETRY,
                Following::Retry => backoff.next_delay(),
                Following::Syncing => SYNC_RETRY,
            };
            // A new stored block changes nothing for a Geth that is still syncing.
            let woken = state != Following::Syncing;
            tokio::select! {
                () = self.wake.notified(), if woken => {}
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return Ok(()),
            }
        }
    }
    // ANCHOR_END: run

    /// The stored chain. A candidate that finds the store empty initialises it from its
    /// own Geth (genesis, and its head as where the log begins); a member waits for one.
    async fn chain(&self, cancel: &CancellationToken) -> anyhow::Result<Option<Chain>> {
        let step = || async {
            let found = match self.store.chain().await {
                Ok(None) if self.election.is_some() => self.init_chain().await.map(Some),
                other => other,
            };
            match found {
                Ok(Some(chain)) => Ok(chain),
                Ok(None) => {
                    Err(Fault::Passing(anyhow::anyhow!("the store is empty; waiting for a leader to initialise it")))
                }
                Err(error) => Err(Fault::Passing(error.context("cannot read the store yet"))),
            }
        };
        retry(cancel, step, |waiting| {
            if waiting.worth_logging() {
                info!(error = %format!("{:#}", waiting.error), "no chain to follow yet");
            }
        })
        .await
    }

    async fn init_chain(&self) -> anyhow::Result<Chain> {
        let el = self.engine.el_chain().await?;
        let head = Head::from(&self.engine.head().await?);
        let chain = self.store.init(el, head).await?;
        info!(anchor = chain.anchor.number, chain = %chain.el, "the store holds this chain");
        Ok(chain)
    }

    /// A follower on this node's Geth, retried while Geth or PostgreSQL fail, or while
    /// Geth syncs from its peers (the same follower each time: it asks for the same block).
    async fn attach(&self, chain: &Chain, cancel: &CancellationToken) -> anyhow::Result<Option<Follower>> {
        let mut follower = Follower::new(self.engine.clone(), self.store.clone(), self.status.clone(), chain);
        let mut tries = Retry::new(cancel);
        loop {
            let fault = match follower.attach(chain).await {
                Ok(()) => return Ok(Some(follower)),
                Err(FollowError::Engine(fault)) => fault,
                Err(other) => Fault::Passing(other.into()),
            };
            let again = tries
                .failed(fault, |waiting| {
                    if waiting.worth_logging() {
                        warn!(error = %format!("{:#}", waiting.error), "cannot attach to the store yet");
                    }
                })
                .await?;
            if !again {
                return Ok(None);
            }
        }
    }

    /// One catch-up, and what it means for `/ready`.
    async fn follow(&self, follower: &mut Follower) -> anyhow::Result<Following> {
        match follower.catch_up().await {
            Ok(()) => {
                if self.status.set_halted(None) {
                    info!("the stored chain can be applied again");
                }
                Ok(Following::InStep)
            }
            Err(FollowError::Halted(reason)) => {
                if self.status.set_halted(Some(reason.clone())) {
                    error!(%reason, "cannot apply the next stored block; applying neither it nor anything after it");
                }
                Ok(Following::Halted)
            }
            Err(FollowError::Store(error)) => {
                self.status.set_store_reachable(false);
                warn!(error = %format!("{error:#}"), "cannot read the store");
                Ok(Following::Retry)
            }
            Err(FollowError::Engine(Fault::Passing(error))) => {
                self.status.set_el_reachable(false);
                warn!(error = %format!("{error:#}"), "cannot reach Geth");
                Ok(Following::Retry)
            }
            Err(FollowError::Syncing(reason)) => {
                info!(%reason, "waiting for Geth to sync");
                Ok(Following::Syncing)
            }
            Err(FollowError::Engine(Fault::Fatal(error))) => Err(error),
        }
    }

    // ANCHOR: try_lead
    /// Takes the lease if it is free, claims the store for its term, leads until that
    /// ends, and gives the lease back. `Err` only for a fault no retry can fix.
    async fn try_lead(
        &self,
        election: &Election,
        follower: &mut Follower,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Attempt> {
        // The term must be newer than any that ever held the store, even if Redis lost
        // its counter: the store's fence is the floor.
        let floor = match self.store.fence_term().await {
            Ok(floor) => floor,
            Err(error) => return Ok(Attempt::Failed(error)),
        };
        // Our clock must agree with the cluster's before our blocks get timestamps from it.
        if let Err(error) = self.store.check_clock().await {
            return Ok(Attempt::Failed(error));
        }
        let (lease, view) = match election.try_acquire(floor).await {
            Ok(Some(acquired)) => acquired,
            Ok(None) => return Ok(Attempt::Taken),
            Err(error) => return Ok(Attempt::Failed(error)),
        };
        info!(term = lease.term, "took the lease; fencing the store to our term");
        let refused = match self.store.claim(lease.term, &self.config.instance_id).await {
            Ok(true) => None,
            // The fence holds this term or a newer one: another leader has been here.
            Ok(false) => Some(Attempt::Taken),
            Err(error) => Some(Attempt::Failed(error.context("cannot claim the store"))),
        };
        if let Some(attempt) = refused {
            warn!(term = lease.term, ?attempt, "took the lease but cannot claim the store; giving the lease back");
            let _ = election.release(&lease).await;
            return Ok(attempt);
        }
        info!(term = lease.term, "promoted: the lease is ours and the store is fenced to our term");
        self.status.metrics.promotions.inc();
        self.status.set_role(Role::Leading, lease.term);
        let result = self.lead(election, &lease, view, follower, cancel).await;
        self.status.metrics.step_downs.inc();
        self.status.set_role(Role::Following, lease.term);
        let released = election.release(&lease).await.unwrap_or(false);
        let reason = result?;
        info!(term = lease.term, %reason, released, "stepped down");
        self.status.set_stepped_down(&reason);
        Ok(Attempt::Led(reason))
    }
    // ANCHOR_END: try_lead

    // ANCHOR: lead
    /// Runs the production loop beside the lease renewal until either ends it. The
    /// renewal hears of every block the loop makes, and gives the lease up when none comes.
    async fn lead(
        &self,
        election: &Election,
        lease: &Lease,
        view: LeaseView,
        follower: &mut Follower,
        cancel: &CancellationToken,
    ) -> anyhow::Result<StepDown> {
        let (publish, lease_view) = watch::channel(view);
        self.status.watch_lease(lease_view.clone());
        let (made_block, progress) = watch::channel(Instant::now());
        let stop_renewing = CancellationToken::new();
        let renewing = election.keep_renewed(lease, &publish, &stop_renewing, &progress, self.config.stall());
        let leading = async {
            let mut sequencer = Sequencer::new(&self.config, follower, lease_view, lease.term, &made_block);
            let result = sequencer.run(cancel).await;
            stop_renewing.cancel();
            result
        };
        let ((), result) = tokio::join!(renewing, leading);
        result
    }
    // ANCHOR_END: lead
}
