//! The cluster's block log in PostgreSQL: the one source of truth every node replays.
//!
//! The schema (`migrations/`) keeps the log a single chain: one row per height, each row's
//! parent is the row below it. On top of that, every write by a leader runs in a
//! transaction that first checks the leader's term against the fence, under a row lock
//! that a newer leader's claim has to wait for. A leader whose lease ran out is refused,
//! whatever it believes, and nothing it wrote before the claim is lost.
//!
//! New rows are announced with `NOTIFY blocks`; [`listen`] keeps a connection of its own
//! for that, because a pooled connection would drop notifications between queries.

mod listen;
mod migrate;
mod row;

use std::time::Duration;

use alloy_primitives::{B256, FixedBytes};
use anyhow::{Context, anyhow, bail, ensure};
use common::{ElChain, Head, payload::ExecutableBlock, redact::redact};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, error::SqlState};

pub use self::{
    listen::{CHANNEL, listen},
    row::{RowError, StoredRow},
};

/// With `--retain-blocks`, the leader drops the blocks that fell out of the window each
/// time the head reaches a multiple of this.
pub const PRUNE_EVERY: u64 = 64;

/// The most blocks one [`Store::prune`] drops: well within [`CALL_TIMEOUT`].
pub const PRUNE_BATCH: u64 = 10_000;

/// No single database call may take longer than this; a hung server is a failed call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the store says about the chain it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Block 0, chain id, fork id, genesis forks and blob schedule: every node's Geth must be
    /// on it. (A store made before the others were written names block 0 alone, or no
    /// genesis forks or blob schedule.)
    pub el: ElChain,
    /// Where the store begins: the first leader's Geth head, or, once old blocks were
    /// dropped (`--retain-blocks`), the row just below the blocks kept.
    pub anchor: Head,
    /// The newest leader's term.
    pub fence_term: u64,
}

/// Why a leader's write was not stored.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A newer leader has claimed the store.
    #[error("fenced off: the store belongs to term {current}, ours is {ours}")]
    Fenced {
        /// Our term.
        ours: u64,
        /// The fence's term.
        current: u64,
    },
    /// The height is taken, or the block does not extend the stored chain: someone else
    /// stored blocks we have not seen.
    #[error("block {number} does not extend the stored chain: {reason}")]
    Conflict {
        /// Height.
        number: u64,
        /// The constraint that refused it.
        reason: String,
    },
    /// The block's timestamp is further ahead of PostgreSQL's clock than
    /// [`MAX_CLOCK_SKEW`]: our clock runs ahead of the cluster's.
    #[error("block {number} has timestamp {timestamp}, {ahead:.1} s ahead of PostgreSQL's clock")]
    AheadOfClock {
        /// Height.
        number: u64,
        /// Its timestamp.
        timestamp: u64,
        /// How far ahead, in seconds.
        ahead: f64,
    },
    /// The database did not answer or the connection failed: the write may or may not
    /// have committed. Read the height back before acting on it.
    #[error("the store did not confirm block {number}: {source:#}")]
    Unconfirmed {
        /// Height.
        number: u64,
        /// What failed.
        source: anyhow::Error,
    },
}

/// How far a leader's clock may be from PostgreSQL's, and a block's timestamp ahead of it.
/// A block is taken no earlier than its timestamp by the leader's clock, so with clocks
/// in step its timestamp is never ahead of PostgreSQL's when it is stored.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(1);

/// A pool of connections to the log.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    config: tokio_postgres::Config,
    /// Whether blocks and leaders are held to PostgreSQL's clock (not with `--back-to-back`,
    /// whose chain time runs ahead of the clock on purpose).
    clock_bound: bool,
}

impl Store {
    /// Connects, checks the server answers, and migrates the schema. An unreachable
    /// server or a bad URL fails here, naming the flag.
    ///
    /// Our transactions take milliseconds. One still open after `lease` belongs to a
    /// leader that was paused mid-write and has lost its lease: PostgreSQL ends that
    /// session, so its row lock cannot hold up the next leader's claim.
    pub async fn connect(url: &str, lease: Duration) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config =
            url.parse().with_context(|| format!("bad --postgres-url {:?}", redact(url)))?;
        config
            .connect_timeout(Duration::from_secs(3))
            .application_name("member-nodes")
            .options(format!("-c idle_in_transaction_session_timeout={}", lease.as_millis()));
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CALL_TIMEOUT))
            .recycle_timeout(Some(CALL_TIMEOUT))
            .build()
            .context("cannot build the PostgreSQL pool")?;
        let store = Self { pool, config, clock_bound: false };
        let migrated = async { migrate::migrate(&mut *store.client().await?).await };
        migrated.await.with_context(|| format!("cannot use PostgreSQL at {} (--postgres-url)", redact(url)))?;
        Ok(store)
    }

    // ANCHOR: durable
    /// Checks that a row PostgreSQL says it committed survives, as it commits our
    /// transactions: the write-ahead rule (a block is final only once stored) rests on it.
    /// `Err` if a crash of PostgreSQL itself could lose it (`synchronous_commit` off), or if
    /// commits do not wait for the synchronous standby a failover would promote.
    /// `Ok(Some(warning))` for what it survives only in part: with `fsync` off, a crash of
    /// PostgreSQL but not of the machine; with no synchronous standby, a crash of the
    /// server but not its loss.
    pub async fn check_durable(&self) -> anyhow::Result<Option<String>> {
        let client = self.client().await?;
        let setting = async |name: &str| -> anyhow::Result<String> {
            Ok(client.query_one(&format!("SHOW {name}"), &[]).await?.get(0))
        };
        let (fsync, commit, standbys) = (
            setting("fsync").await?,
            setting("synchronous_commit").await?,
            setting("synchronous_standby_names").await?,
        );
        if commit == "off" {
            bail!(
                "PostgreSQL acknowledges a commit before its WAL is written (synchronous_commit = off): a crash could \
                 lose a block the leader has already made final in Geth, and the next leader would store another \
                 block at its height. Set synchronous_commit = on"
            );
        }
        if !standbys.trim().is_empty() && commit == "local" {
            bail!(
                "PostgreSQL has synchronous standbys ({standbys}) but commits do not wait for them (synchronous_commit = \
                 local): a failover could lose a block already final. Set synchronous_commit = on or remote_apply"
            );
        }
        let mut warnings = Vec::new();
        if fsync == "off" {
            warnings.push("fsync is off: a committed block survives a crash of PostgreSQL, not of the machine");
        }
        if standbys.trim().is_empty() {
            warnings.push(
                "PostgreSQL has no synchronous standby (synchronous_standby_names is empty): a committed block survives \
                 a crash of the server but not its loss, and a failover to an asynchronous replica can lose blocks \
                 already final",
            );
        }
        Ok((!warnings.is_empty()).then(|| warnings.join("; ")))
    }
    // ANCHOR_END: durable

    /// Holds appended blocks and [`Store::check_clock`] to PostgreSQL's clock, within
    /// [`MAX_CLOCK_SKEW`]: one node's clock, stepped or drifting, cannot put the chain's
    /// time ahead of the cluster's (where the next leader would wait for it to come).
    #[must_use]
    pub const fn held_to_the_clock(mut self) -> Self {
        self.clock_bound = true;
        self
    }

    /// Checks, before a node leads, that its clock is within [`MAX_CLOCK_SKEW`] of
    /// PostgreSQL's (measured across one round trip). Always fine unless
    /// [`Store::held_to_the_clock`].
    pub async fn check_clock(&self) -> anyhow::Result<()> {
        if !self.clock_bound {
            return Ok(());
        }
        let client = self.client().await?;
        let before = single_node::clock::unix_time().as_secs_f64();
        let theirs: f64 = timed(async {
            Ok(client.query_one("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8", &[]).await?.get(0))
        })
        .await?;
        let after = single_node::clock::unix_time().as_secs_f64();
        let off = f64::midpoint(before, after) - theirs;
        // PostgreSQL read its clock somewhere in the round trip: off by more than the bound
        // however long the trip took, or it may be our load, not our clock.
        ensure!(
            off.abs() - (after - before) / 2.0 <= MAX_CLOCK_SKEW.as_secs_f64(),
            "our clock is {:.1} s {} PostgreSQL's, more than the {} s a leader may be off: not leading",
            off.abs(),
            if off > 0.0 { "ahead of" } else { "behind" },
            MAX_CLOCK_SKEW.as_secs()
        );
        Ok(())
    }

    async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| anyhow!("cannot get a PostgreSQL connection: {e}"))
    }

    /// The chain this store holds, or `None` before the first leader initialised it.
    pub async fn chain(&self) -> anyhow::Result<Option<Chain>> {
        timed(async {
            let client = self.client().await?;
            let Some(chain) = client
                .query_opt(
                    "SELECT genesis_hash, fence_term, chain_id, fork_id, genesis_forks, blob_schedule FROM chain",
                    &[],
                )
                .await?
            else {
                return Ok(None);
            };
            let four_bytes = |column: usize, what: &str| {
                let bytes = chain.get::<_, Option<&[u8]>>(column);
                bytes
                    .map(FixedBytes::<4>::try_from)
                    .transpose()
                    .map_err(|_| anyhow!("the stored {what} is not 4 bytes"))
            };
            let el = ElChain {
                genesis: b256(chain.get(0))?,
                chain_id: chain.get::<_, Option<i64>>(2).map(u64::try_from).transpose()?,
                fork_id: four_bytes(3, "fork id")?,
                genesis_forks: four_bytes(4, "genesis forks")?,
                blob_schedule: four_bytes(5, "blob schedule")?,
            };
            Ok(Some(Chain { el, fence_term: u64::try_from(chain.get::<_, i64>(1))?, anchor: anchor(&**client).await? }))
        })
        .await
    }

    /// Where the log begins now: the anchor moves up as a leader drops old blocks
    /// ([`Store::prune`]).
    pub async fn anchor(&self) -> anyhow::Result<Head> {
        timed(async { anchor(&**self.client().await?).await }).await
    }

    /// Records the chain and where the log begins, unless another node did first; returns
    /// what the store holds either way.
    pub async fn init(&self, el: ElChain, anchor: Head) -> anyhow::Result<Chain> {
        timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let chain_id = el.chain_id.map(i64::try_from).transpose()?;
            let fork_id = el.fork_id.as_ref().map(|id| id.as_slice());
            let genesis_forks = el.genesis_forks.as_ref().map(|id| id.as_slice());
            let blob_schedule = el.blob_schedule.as_ref().map(|id| id.as_slice());
            tx.execute(
                "INSERT INTO chain (genesis_hash, chain_id, fork_id, genesis_forks, blob_schedule)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&el.genesis.as_slice(), &chain_id, &fork_id, &genesis_forks, &blob_schedule],
            )
            .await?;
            tx.execute(
                "INSERT INTO blocks (number, hash, term, leader, timestamp, tx_count)
                 VALUES ($1, $2, 0, 'anchor', $3, 0) ON CONFLICT DO NOTHING",
                &[&i64::try_from(anchor.number)?, &anchor.hash.as_slice(), &i64::try_from(anchor.timestamp)?],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.chain().await?.context("the store lost its chain row right after writing it")
    }

    // ANCHOR: claim
    /// Makes `term` the fence, if it is newer than the current one. From the moment this
    /// commits, the store refuses every older leader's writes. False if a leader with a
    /// term as new or newer has claimed it already.
    pub async fn claim(&self, term: u64, holder: &str) -> anyhow::Result<bool> {
        timed(async {
            let client = self.client().await?;
            let term = i64::try_from(term)?;
            let updated = client
                .execute("UPDATE chain SET fence_term = $1, fence_holder = $2 WHERE fence_term < $1", &[&term, &holder])
                .await?;
            Ok(updated == 1)
        })
        .await
    }
    // ANCHOR_END: claim

    /// The fence's term (0 before any leader claimed the store).
    pub async fn fence_term(&self) -> anyhow::Result<u64> {
        Ok(self.chain().await?.map_or(0, |c| c.fence_term))
    }

    // ANCHOR: append
    /// Stores `block` as the next block of the chain, if `term` still holds the fence.
    /// Announces it with `NOTIFY` on commit.
    pub async fn append(&self, block: &ExecutableBlock, term: u64, leader: &str) -> Result<(), AppendError> {
        let number = block.number();
        let unconfirmed = |source: anyhow::Error| AppendError::Unconfirmed { number, source };
        let payload = serde_json::to_value(block).map_err(|e| unconfirmed(e.into()))?;
        // Ok(Some(refusal)): the store said no, and nothing was written. Err: we cannot
        // tell whether the commit happened.
        let refused = timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // FOR SHARE: appends do not wait for each other, but a claim (an UPDATE of this
            // row) waits for this transaction, and this one waits for a claim in progress.
            let row = tx
                .query_one("SELECT fence_term, EXTRACT(EPOCH FROM clock_timestamp())::float8 FROM chain FOR SHARE", &[])
                .await?;
            let (fence, now): (i64, f64) = (row.get(0), row.get(1));
            if u64::try_from(fence)? != term {
                return Ok(Some(AppendError::Fenced { ours: term, current: u64::try_from(fence)? }));
            }
            let ahead = block.timestamp() as f64 - now;
            if self.clock_bound && ahead > MAX_CLOCK_SKEW.as_secs_f64() {
                return Ok(Some(AppendError::AheadOfClock { number, timestamp: block.timestamp(), ahead }));
            }
            let inserted = tx
                .execute(
                    "INSERT INTO blocks (number, hash, parent_hash, term, leader, timestamp, tx_count, payload)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &i64::try_from(number)?,
                        &block.hash().as_slice(),
                        &block.parent_hash().as_slice(),
                        &i64::try_from(term)?,
                        &leader,
                        &i64::try_from(block.timestamp())?,
                        &i32::try_from(block.transaction_count())?,
                        &payload,
                    ],
                )
                .await;
            if let Err(error) = inserted {
                return match error.code() {
                    Some(code) if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::FOREIGN_KEY_VIOLATION => {
                        Ok(Some(AppendError::Conflict { number, reason: error.to_string() }))
                    }
                    _ => Err(error.into()),
                };
            }
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &number.to_string()]).await?;
            tx.commit().await?;
            Ok(None)
        })
        .await;
        match refused {
            Ok(None) => Ok(()),
            Ok(Some(refusal)) => Err(refusal),
            Err(source) => Err(unconfirmed(source)),
        }
    }
    // ANCHOR_END: append

    // ANCHOR: prune
    /// Keeps the newest `retain` blocks of the log and drops the rest, if `term` still
    /// holds the fence: the block below the kept ones becomes the anchor (its payload goes
    /// too; every node's Geth that follows the log has it). At most [`PRUNE_BATCH`] blocks
    /// go in one call, so a window set on a long log is reached over several. Returns the
    /// new anchor's height, or `None` if nothing was dropped.
    pub async fn prune(&self, retain: u64, term: u64) -> anyhow::Result<Option<u64>> {
        timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let fence: i64 = tx.query_one("SELECT fence_term FROM chain FOR SHARE", &[]).await?.get(0);
            let head: Option<i64> = tx.query_one("SELECT max(number) FROM blocks", &[]).await?.get(0);
            let anchor = anchor(&*tx).await?.number;
            let below_window = head.map(u64::try_from).transpose()?.unwrap_or(0).saturating_sub(retain);
            let new_anchor = below_window.min(anchor + PRUNE_BATCH);
            if u64::try_from(fence)? != term || new_anchor <= anchor {
                return Ok(None);
            }
            let new_anchor_sql = i64::try_from(new_anchor)?;
            tx.batch_execute("SET CONSTRAINTS blocks_parent_number_parent_hash_fkey DEFERRED").await?;
            tx.execute("DELETE FROM blocks WHERE number < $1", &[&new_anchor_sql]).await?;
            tx.execute("UPDATE blocks SET parent_hash = NULL, payload = NULL WHERE number = $1", &[&new_anchor_sql])
                .await?;
            tx.commit().await?;
            Ok(Some(new_anchor))
        })
        .await
    }
    // ANCHOR_END: prune

    /// The highest stored block, if any.
    pub async fn head(&self) -> anyhow::Result<Option<Head>> {
        timed(async {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT number, hash, timestamp FROM blocks ORDER BY number DESC LIMIT 1", &[])
                .await?;
            row.as_ref().map(head_from).transpose()
        })
        .await
    }

    /// The stored hash at `number`, if that height is stored.
    pub async fn hash_at(&self, number: u64) -> anyhow::Result<Option<B256>> {
        timed(async {
            let client = self.client().await?;
            let row = client.query_opt("SELECT hash FROM blocks WHERE number = $1", &[&i64::try_from(number)?]).await?;
            row.map(|r| b256(r.get(0))).transpose()
        })
        .await
    }

    /// Up to `limit` stored blocks above `number`, in order, and no more of them than fit
    /// in `max_bytes` of payload as JSON text (but always the first): a batch of full
    /// blocks would otherwise take about a hundred megabytes.
    pub async fn blocks_after(&self, number: u64, limit: u32, max_bytes: u32) -> anyhow::Result<Vec<StoredRow>> {
        timed(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT number, hash, parent_hash, payload, age FROM (
                        SELECT *, sum(octet_length(payload)) OVER (ORDER BY number)
                                      - octet_length(payload) AS before FROM (
                            SELECT number, hash, parent_hash, payload::text AS payload, {AGE} AS age
                            FROM blocks WHERE number > $1 AND payload IS NOT NULL ORDER BY number LIMIT $2
                        ) AS fetched
                     ) AS batch WHERE before < $3 ORDER BY number"
                    ),
                    &[&i64::try_from(number)?, &i64::from(limit), &i64::from(max_bytes.max(1))],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(StoredRow {
                        number: u64::try_from(row.get::<_, i64>(0))?,
                        hash: b256(row.get(1))?,
                        parent_hash: b256(row.get(2))?,
                        payload: row.get(3),
                        age: age(row.get(4)),
                    })
                })
                .collect()
        })
        .await
    }

    /// The newest stored height, and how long ago the block above `applied` was stored
    /// (`None` if there is none yet): how far behind a node at `applied` is.
    pub async fn lag(&self, applied: u64) -> anyhow::Result<(u64, Option<Duration>)> {
        timed(async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    &format!(
                        "SELECT (SELECT max(number) FROM blocks),
                            (SELECT {AGE} FROM blocks WHERE number = $1::bigint + 1)"
                    ),
                    &[&i64::try_from(applied)?],
                )
                .await?;
            let head = row.get::<_, Option<i64>>(0).map(u64::try_from).transpose()?.unwrap_or(0);
            let age = row.get::<_, Option<f64>>(1).map(age);
            Ok((head, age))
        })
        .await
    }

    /// The connection settings, for [`listen`]'s own connection.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// A row's age in seconds, by the database's clock, as SQL. `stored_at` is held between the
/// epoch and now first: a row whose time was edited to `-infinity` or into the future
/// (PostgreSQL accepts both) reads as very old or as new, never as an error or a panic.
const AGE: &str =
    "EXTRACT(EPOCH FROM clock_timestamp() - LEAST(GREATEST(stored_at, 'epoch'), clock_timestamp()))::float8";

/// [`AGE`]'s seconds as a duration.
fn age(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// Runs a database call under [`CALL_TIMEOUT`].
async fn timed<T>(call: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| anyhow!("PostgreSQL did not answer within {CALL_TIMEOUT:?}"))?
}

fn b256(bytes: &[u8]) -> anyhow::Result<B256> {
    B256::try_from(bytes).map_err(|_| anyhow!("a stored hash has {} bytes, not 32", bytes.len()))
}

/// The anchor row, on any client or transaction.
async fn anchor(client: &impl tokio_postgres::GenericClient) -> anyhow::Result<Head> {
    let row = client
        .query_one("SELECT number, hash, timestamp FROM blocks WHERE parent_hash IS NULL", &[])
        .await
        .context("the store has a chain but no anchor block")?;
    head_from(&row)
}

fn head_from(row: &tokio_postgres::Row) -> anyhow::Result<Head> {
    Ok(Head {
        number: u64::try_from(row.get::<_, i64>(0))?,
        hash: b256(row.get(1))?,
        timestamp: u64::try_from(row.get::<_, i64>(2))?,
    })
}
