//! Leader election: a lease in Redis, and a term that only grows.
//!
//! A candidate takes the lease (if no key exists, `SET … PX`) and gets a new term with it,
//! in one Lua script, so two candidates can never hold the same term. The holder renews it every
//! quarter of its length; renewal and release check the holder first, so nobody extends
//! or deletes a lease that is not theirs.
//!
//! The lease alone cannot make a paused leader harmless (a process stopped for longer than
//! the lease wakes up believing it leads). Two things do:
//! - the leader counts its lease from when it *sent* the renewal, minus a margin, so by its
//!   own clock it stops before Redis can hand the lease to anyone else;
//! - the term is a fencing token: the block store refuses a write from any term but the
//!   newest (see `block_log.rs`), whatever the writer believes.
//!
//! Terms survive a Redis that lost its data: the acquire script never issues a term at or
//! below `floor`, which the candidate reads from the store's fence first.

use std::time::Duration;

use anyhow::Context;
use common::redact::redact;
use fred::{
    prelude::{Builder, Client, ClientLike, ReconnectPolicy},
    types::{config::Config as RedisConfig, scripts::Script},
};
use single_node::clock::sleep_or_cancel;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::step_down::StepDown;

/// The lease key: its value is `instance-id:term`.
pub const LEASE_KEY: &str = "member-nodes:leader";
/// The term counter.
pub const TERM_KEY: &str = "member-nodes:term";

// ANCHOR: scripts
/// KEYS: lease, term counter. ARGV: instance id, lease ms, lowest term allowed (exclusive).
/// Returns the new term, or nil if someone holds the lease.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local term = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if term <= floor then
  term = floor + 1
  redis.call('SET', KEYS[2], term)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. term, 'PX', ARGV[2])
return term
";

/// KEYS: lease. ARGV: our lease value, lease ms. 1 if renewed, 0 if the lease is not ours.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// KEYS: lease. ARGV: our lease value. 1 if released, 0 if the lease is not ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";
// ANCHOR_END: scripts

// ANCHOR: timing
/// How the lease is timed, from its length alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long Redis keeps the lease without renewal.
    pub lease: Duration,
}

impl LeaseTiming {
    /// Renew (and, for candidates, try to acquire) this often: four tries per lease.
    pub fn renew_every(&self) -> Duration {
        self.lease / 4
    }

    /// How long after *sending* a successful acquire or renew the holder may act. Redis
    /// starts its own countdown later (when the command arrives), and a tenth of the lease
    /// is left for the two clocks running at slightly different rates.
    pub fn valid_for(&self) -> Duration {
        self.lease - self.lease / 10
    }

    /// How long one Redis command may take before we count it as failed.
    pub fn command_timeout(&self) -> Duration {
        self.renew_every().max(Duration::from_millis(50))
    }
}
// ANCHOR_END: timing

/// A lease we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token issued with it.
    pub term: u64,
    /// The value in Redis, `instance-id:term`.
    value: String,
}

/// What the production loop reads before it stores a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseView {
    /// Until when (by our clock) we may act as leader, unless renewed.
    pub valid_until: Instant,
    /// Redis said the lease is someone else's now.
    pub lost: bool,
    /// We gave the lease up after this long without a block.
    pub given_up: Option<Duration>,
}

impl LeaseView {
    /// A fresh lease, valid until `valid_until`.
    pub const fn new(valid_until: Instant) -> Self {
        Self { valid_until, lost: false, given_up: None }
    }

    /// True while we may store and finalize blocks.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.problem(now).is_none()
    }

    // ANCHOR: problem
    /// Why we may not act as leader at `now`, if so: the lease given up, lost, or past the
    /// time our own clock allows.
    pub fn problem(&self, now: Instant) -> Option<StepDown> {
        if let Some(quiet) = self.given_up {
            Some(StepDown::Stalled(quiet))
        } else if self.lost {
            Some(StepDown::LeaseLost)
        } else if now >= self.valid_until {
            Some(StepDown::LeaseExpired)
        } else {
            None
        }
    }
    // ANCHOR_END: problem
}

/// Returns once the lease `view` publishes has a [`LeaseView::problem`]: that problem.
pub async fn lease_gone(mut view: watch::Receiver<LeaseView>) -> StepDown {
    loop {
        let (problem, until) = {
            let now = view.borrow();
            (now.problem(Instant::now()), now.valid_until)
        };
        if let Some(problem) = problem {
            return problem;
        }
        tokio::select! {
            Ok(()) = view.changed() => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

/// The Redis side of leader election.
#[derive(Debug)]
pub struct Election {
    client: Client,
    instance_id: String,
    timing: LeaseTiming,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl Election {
    /// Connects to Redis. An unreachable Redis fails here, naming the flag; once connected,
    /// the client reconnects by itself every 250 ms for as long as it takes.
    pub async fn connect(url: &str, instance_id: &str, timing: LeaseTiming) -> anyhow::Result<Self> {
        let shown = redact(url);
        let config = RedisConfig::from_url(url).with_context(|| format!("bad --redis-addr {shown:?}"))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                // A command whose connection dropped is not sent again: a replayed acquire
                // could take a lease whose reply we never see. Failing is safe; it expires.
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = timing.command_timeout())
            .set_policy(ReconnectPolicy::new_constant(0, 250))
            .build()
            .context("cannot configure the Redis client")?;
        client.init().await.with_context(|| format!("cannot reach Redis at {shown} (--redis-addr)"))?;
        Ok(Self {
            client,
            instance_id: instance_id.to_owned(),
            timing,
            acquire: Script::from_lua(ACQUIRE),
            renew: Script::from_lua(RENEW),
            release: Script::from_lua(RELEASE),
        })
    }

    /// The lease timing.
    pub const fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// Takes the lease if nobody holds it, with a term above `floor`. Returns the lease and
    /// what the production loop may rely on.
    pub async fn try_acquire(&self, floor: u64) -> anyhow::Result<Option<(Lease, LeaseView)>> {
        let sent = Instant::now();
        let lease_ms = self.timing.lease.as_millis().to_string();
        let term: Option<u64> = self
            .acquire
            .evalsha_with_reload(
                &self.client,
                vec![LEASE_KEY, TERM_KEY],
                vec![self.instance_id.clone(), lease_ms, floor.to_string()],
            )
            .await
            .context("Redis: acquire")?;
        Ok(term.map(|term| {
            let lease = Lease { term, value: format!("{}:{term}", self.instance_id) };
            (lease, LeaseView::new(sent + self.timing.valid_for()))
        }))
    }

    /// Extends `lease`; `Ok(false)` if it is not ours any more.
    pub async fn renew(&self, lease: &Lease) -> anyhow::Result<bool> {
        let lease_ms = self.timing.lease.as_millis().to_string();
        let renewed: i64 = self
            .renew
            .evalsha_with_reload(&self.client, vec![LEASE_KEY], vec![lease.value.clone(), lease_ms])
            .await
            .context("Redis: renew")?;
        Ok(renewed == 1)
    }

    /// Gives `lease` up so a standby need not wait for it to expire.
    pub async fn release(&self, lease: &Lease) -> anyhow::Result<bool> {
        let released: i64 = self
            .release
            .evalsha_with_reload(&self.client, vec![LEASE_KEY], vec![lease.value.clone()])
            .await
            .context("Redis: release")?;
        Ok(released == 1)
    }

    // ANCHOR: keep_renewed
    /// Renews `lease` every quarter of its length until `stop` fires, publishing how long
    /// we may act on `view`. A failed renewal changes nothing: the view runs out by itself.
    /// A refused one (the lease is someone else's) marks the view lost at once.
    ///
    /// A lease is renewed only for a leader that produces: once the last block
    /// (`progress`) is older than `stall`, the renewal stops, gives the lease up so a
    /// standby can take it at once, and marks the view given up. The production loop may
    /// be waiting on a call to a Geth that hangs; the lease does not wait with it.
    pub async fn keep_renewed(
        &self,
        lease: &Lease,
        view: &watch::Sender<LeaseView>,
        stop: &CancellationToken,
        progress: &watch::Receiver<Instant>,
        stall: Duration,
    ) {
        while sleep_or_cancel(self.timing.renew_every(), stop).await {
            let quiet = progress.borrow().elapsed();
            if quiet > stall {
                view.send_modify(|v| v.given_up = Some(quiet));
                let released = self.release(lease).await.unwrap_or(false);
                warn!(
                    term = lease.term,
                    quiet_ms = quiet.as_millis(),
                    released,
                    "no block for too long; gave the lease up"
                );
                return;
            }
            let sent = Instant::now();
            match self.renew(lease).await {
                Ok(true) => view.send_modify(|v| v.valid_until = sent + self.timing.valid_for()),
                Ok(false) => {
                    view.send_modify(|v| v.lost = true);
                    return;
                }
                Err(error) => warn!(error = %format!("{error:#}"), term = lease.term, "cannot renew the lease"),
            }
        }
    }
    // ANCHOR_END: keep_renewed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_stops_before_redis_can_expire_its_lease() {
        let timing = LeaseTiming { lease: Duration::from_millis(2000) };
        assert_eq!(timing.renew_every(), Duration::from_millis(500));
        assert_eq!(timing.valid_for(), Duration::from_millis(1800));
        assert!(timing.valid_for() < timing.lease);
        // Three renewals may fail in a row before the view runs out.
        assert!(timing.renew_every() * 3 < timing.valid_for());
    }

    #[test]
    fn a_view_is_valid_until_its_deadline_unless_lost() {
        let now = Instant::now();
        let view = LeaseView::new(now + Duration::from_millis(10));
        assert!(view.is_valid(now));
        assert!(!view.is_valid(now + Duration::from_millis(10)));
        assert!(!LeaseView { lost: true, ..view }.is_valid(now));
        assert!(!LeaseView { given_up: Some(Duration::from_secs(3)), ..view }.is_valid(now));
    }
}
