//! A cluster of real processes for the tests: Redis, PostgreSQL, and per node a Geth and a
//! `member-nodes` process, started the way a user starts them (environment variables).

use std::{process::Command, time::Duration};

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rpc_types_engine::{ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3};
use common::{
    BlockTag,
    harness::{Geth, Postgres, Proxy, Redis, RedisSentinels, Service, Toxiproxy, eventually, genesis_path, http_get},
    payload::ExecutableBlock,
};
use serde_json::Value;

/// Generous bounds: the CI machine is small and shared.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(120);

/// The lease the tests run with: short, so failovers are quick.
pub(crate) const LEASE_MS: &str = "1000";

/// A block with the given height, parent and hash, and nothing in it. Its hash is made up,
/// so it is for the store only: `check_hash` refuses it and Geth would too.
pub(crate) fn fake_block(number: u64, parent: B256, hash: B256) -> ExecutableBlock {
    ExecutableBlock {
        execution_payload: ExecutionPayloadV3 {
            payload_inner: ExecutionPayloadV2 {
                payload_inner: ExecutionPayloadV1 {
                    parent_hash: parent,
                    fee_recipient: Address::ZERO,
                    state_root: B256::ZERO,
                    receipts_root: B256::ZERO,
                    logs_bloom: Default::default(),
                    prev_randao: parent,
                    block_number: number,
                    gas_limit: 30_000_000,
                    gas_used: 0,
                    timestamp: number,
                    extra_data: Bytes::new(),
                    base_fee_per_gas: U256::from(7),
                    block_hash: hash,
                    transactions: Vec::new(),
                },
                withdrawals: Vec::new(),
            },
            blob_gas_used: 0,
            excess_blob_gas: 0,
        },
        execution_requests: Vec::new(),
    }
}

/// A node's links to Redis, PostgreSQL and its Geth's Engine API, each through a proxy
/// of its own, to cut, leave half-open or slow.
#[derive(Debug)]
pub(crate) struct Links {
    pub(crate) redis: Proxy,
    pub(crate) postgres: Proxy,
    pub(crate) geth: Proxy,
}

/// A node: its Geth and, while it runs, its `member-nodes` process.
#[derive(Debug)]
pub(crate) struct Node {
    /// `node1`, `node2`, …
    pub(crate) id: String,
    /// `leader` or `member`.
    pub(crate) mode: &'static str,
    /// The process, if started.
    pub(crate) process: Option<Service>,
    /// Its endpoints' address.
    pub(crate) health: String,
    /// Its Geth (dropped after the process).
    pub(crate) geth: Geth,
    /// Its proxied links, in a cluster started with [`Cluster::start_behind_proxies`].
    pub(crate) links: Option<Links>,
    /// An Engine API URL to use instead of its Geth's (a proxy in front of it).
    engine_url: Option<String>,
    /// Environment variables its process gets besides the usual.
    env: Vec<(String, String)>,
}

/// Redis, PostgreSQL and the nodes. Fields drop in order: processes before their servers.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The nodes.
    pub(crate) nodes: Vec<Node>,
    /// The lease.
    pub(crate) redis: Redis,
    /// The block log.
    pub(crate) postgres: Postgres,
    /// In a cluster started with [`Cluster::start_ha`]: Redis's replica and Sentinels,
    /// through which the nodes find the Redis primary.
    pub(crate) sentinels: Option<RedisSentinels>,
    /// Also in a cluster from [`Cluster::start_ha`]: PostgreSQL's synchronous standby; the
    /// nodes then reach whichever of the two takes writes.
    pub(crate) standby: Option<Postgres>,
    /// Extra flags every node gets.
    args: Vec<String>,
    /// The fault proxy, when the nodes' links go through it.
    faults: Option<Toxiproxy>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts Redis, PostgreSQL and one Geth per mode, and a node on each.
    pub(crate) async fn start(modes: &[&'static str], args: &[&str]) -> Self {
        Self::start_with(modes, args, false, false).await
    }

    /// [`Cluster::start`] with no single point of failure: Redis with a replica and three
    /// Sentinels, which the nodes ask where the primary is; PostgreSQL replicated to a
    /// synchronous standby, and the nodes given a URL with both servers that connects only
    /// to the one taking writes.
    pub(crate) async fn start_ha(modes: &[&'static str], args: &[&str]) -> Self {
        Self::start_with(modes, args, false, true).await
    }

    /// [`Cluster::start`], with every node's links to Redis, PostgreSQL and its Geth
    /// through toxiproxy ([`Node::links`]).
    pub(crate) async fn start_behind_proxies(modes: &[&'static str], args: &[&str]) -> Self {
        Self::start_with(modes, args, true, false).await
    }

    async fn start_with(modes: &[&'static str], args: &[&str], proxied: bool, replicated: bool) -> Self {
        let mut cluster = Self::prepare(modes, args, proxied, replicated).await;
        for i in 0..modes.len() {
            cluster.start_node(i);
        }
        cluster
    }

    /// A cluster with Redis, PostgreSQL and the Geths running, and no node's process yet
    /// ([`Cluster::start_node`] starts each).
    pub(crate) async fn prepare(modes: &[&'static str], args: &[&str], proxied: bool, replicated: bool) -> Self {
        // Peered, as `scripts/cluster.sh` runs them: a transaction sent to any node's Geth
        // reaches the leader's.
        let geths = Geth::start_peered_group(modes.len()).await.expect("geths");
        let (redis, postgres) = (Redis::start().await.expect("redis"), Postgres::start().await.expect("postgres"));
        let (sentinels, standby) = if replicated {
            (
                Some(RedisSentinels::start(&redis).await.expect("a Redis replica and Sentinels")),
                Some(Postgres::start_synchronous_standby(&postgres).await.expect("a synchronous standby")),
            )
        } else {
            (None, None)
        };
        let faults = if proxied { Some(Toxiproxy::start().await.expect("toxiproxy")) } else { None };
        let mut nodes = Vec::new();
        for (i, (geth, mode)) in geths.into_iter().zip(modes).enumerate() {
            let id = format!("node{}", i + 1);
            let links = match &faults {
                Some(faults) => Some(Links {
                    redis: faults.proxy(&format!("{id}-redis"), &redis.addr()).await.expect("proxy"),
                    postgres: faults.proxy(&format!("{id}-postgres"), &postgres.addr()).await.expect("proxy"),
                    geth: faults
                        .proxy(&format!("{id}-geth"), geth.auth_url().trim_start_matches("http://"))
                        .await
                        .expect("proxy"),
                }),
                None => None,
            };
            let health = common::harness::free_port().map(|p| format!("127.0.0.1:{p}")).expect("port");
            nodes.push(Node { id, mode, process: None, health, geth, links, engine_url: None, env: Vec::new() });
        }
        let dir = tempfile::tempdir().expect("dir");
        let args = args.iter().map(|s| s.to_string()).collect();
        Self { nodes, redis, postgres, sentinels, standby, args, faults, dir }
    }

    /// The fault proxy, in a cluster from [`Cluster::start_behind_proxies`].
    pub(crate) fn faults(&self) -> &Toxiproxy {
        self.faults.as_ref().expect("a cluster behind proxies")
    }

    /// The lease's Redis: the server's address, or with Sentinels, their URL.
    pub(crate) fn redis_url(&self) -> String {
        self.sentinels.as_ref().map_or_else(|| self.redis.addr(), RedisSentinels::url)
    }

    /// The block log's URL: the server's, or with a standby, one that reaches whichever of
    /// the two takes writes.
    pub(crate) fn postgres_url(&self) -> String {
        match &self.standby {
            Some(standby) => Postgres::read_write_url(&[&self.postgres, standby]),
            None => self.postgres.url(),
        }
    }

    /// Starts (or restarts) node `i`'s process.
    pub(crate) fn start_node(&mut self, i: usize) {
        let node = &self.nodes[i];
        let (engine_url, redis, postgres) = match &node.links {
            Some(links) => (
                format!("http://{}", links.geth.addr()),
                links.redis.addr().to_owned(),
                Postgres::url_at(links.postgres.addr()),
            ),
            None => (node.geth.auth_url(), self.redis_url(), self.postgres_url()),
        };
        let engine_url = node.engine_url.clone().unwrap_or(engine_url);
        let mut command = Command::new(env!("CARGO_BIN_EXE_member-nodes"));
        command
            .args(&self.args)
            .env("INSTANCE_ID", &node.id)
            .env("MODE", node.mode)
            .env("ETH_CLIENT_URL", engine_url)
            .env("JWT_SECRET", node.geth.jwt_path())
            .env("GENESIS", genesis_path())
            .env("REDIS_ADDR", redis)
            .env("POSTGRES_URL", postgres)
            .env("HEALTH_ADDR", &node.health)
            .env("LEASE_MS", LEASE_MS)
            .env("FEE_RECIPIENT", self.fee_recipient(i).to_string())
            .env("RUST_LOG", "info")
            .envs(node.env.iter().map(|(k, v)| (k, v)));
        let log = self.dir.path().join(format!("{}.log", node.id));
        let service = Service::spawn(&node.id, command, &log).expect("member-nodes starts");
        self.nodes[i].process = Some(service);
    }

    /// Node `i`'s fee recipient: each node its own, as each operator has, so two leaders
    /// never build the same block, and a block one of them should not have kept shows as
    /// a fork.
    pub(crate) fn fee_recipient(&self, i: usize) -> Address {
        Address::with_last_byte(u8::try_from(i + 1).expect("few nodes"))
    }

    /// Node `i`'s process.
    pub(crate) fn process(&mut self, i: usize) -> &mut Service {
        self.nodes[i].process.as_mut().expect("node is running")
    }

    /// Everything node `i`'s process has logged.
    pub(crate) fn process_output(&self, i: usize) -> String {
        self.nodes[i].process.as_ref().map(Service::output).unwrap_or_default()
    }

    /// Makes node `i` reach its Geth at `url` from its next start.
    pub(crate) fn set_engine_url(&mut self, i: usize, url: &str) {
        self.nodes[i].engine_url = Some(url.to_owned());
    }

    /// Gives node `i`'s process (from its next start) a wall clock of its own: the offset
    /// in the file this returns, through libfaketime; its timers run on.
    pub(crate) fn fake_clock(&mut self, i: usize) -> std::path::PathBuf {
        let file = self.dir.path().join(format!("{}.clock", self.nodes[i].id));
        self.nodes[i].env = common::harness::faked_clock(&file).expect("libfaketime");
        file
    }

    /// Node `i`'s `/status`, if it answers.
    pub(crate) async fn status(&self, i: usize) -> Option<Value> {
        let (code, body) = http_get(&format!("http://{}/status", self.nodes[i].health)).await?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Node `i`'s `/ready`: status code and body.
    pub(crate) async fn ready(&self, i: usize) -> Option<(u16, String)> {
        http_get(&format!("http://{}/ready", self.nodes[i].health)).await
    }

    /// The node that reports it leads, among those in `among`, once one does; and its term.
    pub(crate) async fn leader(&self, among: &[usize]) -> (usize, u64) {
        eventually("a leader", TIMEOUT, || async {
            for &i in among {
                if let Some(status) = self.status(i).await
                    && status["role"] == "leading"
                {
                    return Some((i, status["term"].as_u64()?));
                }
            }
            None
        })
        .await
    }

    /// In a cluster of two candidates (nodes 0 and 1), makes node `i` the leader: if the
    /// other leads, it is killed until `i` leads, then started again as the standby.
    pub(crate) async fn make_leader(&mut self, i: usize) {
        let (first, _) = self.leader(&[0, 1]).await;
        if first != i {
            self.process(first).kill();
            self.sole_leader(i).await;
            self.start_node(first);
        }
    }

    /// Waits until node `i` leads and no other node says it does; returns its term. A
    /// node that does not answer (killed, paused) does not lead.
    pub(crate) async fn sole_leader(&self, i: usize) -> u64 {
        eventually(&format!("{} to be the only leader", self.nodes[i].id), TIMEOUT, || async {
            let mut term = None;
            for j in 0..self.nodes.len() {
                let status = self.status(j).await;
                let leading = status.as_ref().is_some_and(|s| s["role"] == "leading");
                if j == i {
                    term = status.filter(|_| leading).and_then(|s| s["term"].as_u64());
                } else if leading {
                    return None;
                }
            }
            term
        })
        .await
    }

    /// Waits until node `i` says it leads, checking on every look that no Geth marks a
    /// block the store does not hold ([`Cluster::assert_marks_stored`]); returns its term.
    pub(crate) async fn leads_with_marks_stored(&self, i: usize) -> u64 {
        eventually(&format!("{} to lead", self.nodes[i].id), TIMEOUT, || async {
            self.assert_marks_stored().await;
            let status = self.status(i).await?;
            (status["role"] == "leading").then(|| status["term"].as_u64()).flatten()
        })
        .await
    }

    /// What every node's Geth marks as head, safe and finalized: node, tag, height, hash.
    pub(crate) async fn marks(&self) -> Vec<(usize, BlockTag, u64, B256)> {
        let mut marks = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let engine = node.geth.engine();
            for tag in [BlockTag::Latest, BlockTag::Safe, BlockTag::Finalized] {
                // None: no forkchoice update has marked a block safe or finalized yet.
                if let Some(block) = engine.block(tag).await.expect("eth_getBlockByNumber answers") {
                    marks.push((i, tag, block.number, block.hash));
                }
            }
        }
        marks
    }

    /// Every node's Geth has as head, safe and finalized only blocks the store holds: no
    /// Geth is ever ahead of the store. Read while a fault lasts, not after it healed.
    pub(crate) async fn assert_marks_stored(&self) {
        // Geths first: the store only grows, so a block stored when its Geth marked it is
        // still stored when we read the store.
        let marks = self.marks().await;
        let rows = self.rows().await;
        for (i, tag, number, hash) in marks {
            let stored = rows.get(usize::try_from(number).expect("fits")).map(|r| r.1);
            assert_eq!(
                stored,
                Some(hash),
                "{}'s Geth marks block {number} ({hash}) as {tag:?}, but the store does not hold it",
                self.nodes[i].id
            );
        }
    }

    /// Each block in `marked` (node, tag, height, hash, as [`Cluster::marks`] gives them)
    /// is the one `stored` has at its height; `when` says when it was marked and what
    /// should have held it.
    pub(crate) fn assert_marked_in(
        &self,
        marked: impl IntoIterator<Item = (usize, BlockTag, u64, B256)>,
        stored: &std::collections::BTreeMap<u64, B256>,
        when: &str,
    ) {
        for (i, tag, number, hash) in marked {
            assert_eq!(
                stored.get(&number),
                Some(&hash),
                "{}'s Geth marked block {number} ({hash}) as {tag:?} {when}",
                self.nodes[i].id
            );
        }
    }

    /// Waits until node `i`'s Geth is at height `number` or above.
    pub(crate) async fn head_at_least(&self, i: usize, number: u64) -> common::Block {
        let engine = self.nodes[i].geth.engine();
        eventually(&format!("{} at block {number}", self.nodes[i].id), TIMEOUT, || async {
            engine.head().await.ok().filter(|h| h.number >= number)
        })
        .await
    }

    /// A connection to the block log.
    pub(crate) async fn sql(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.postgres_url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
    }

    /// The store's fence: the newest term that claimed it.
    pub(crate) async fn fence(&self) -> u64 {
        let row = self.sql().await.query_one("SELECT fence_term FROM chain", &[]).await.expect("the fence");
        u64::try_from(row.get::<_, i64>(0)).expect("a term")
    }

    /// When the last block stored under `term` was stored, as seconds since the epoch.
    pub(crate) async fn stored_at(&self, term: u64) -> Option<f64> {
        let term = i64::try_from(term).expect("fits");
        self.sql()
            .await
            .query_one("SELECT EXTRACT(EPOCH FROM max(stored_at))::float8 FROM blocks WHERE term = $1", &[&term])
            .await
            .expect("query")
            .get(0)
    }

    /// The blocks stored before `epoch` (seconds since the epoch): height to hash.
    pub(crate) async fn stored_before(&self, epoch: f64) -> std::collections::BTreeMap<u64, B256> {
        let rows = self
            .sql()
            .await
            .query("SELECT number, hash FROM blocks WHERE stored_at < to_timestamp($1)", &[&epoch])
            .await
            .expect("query");
        rows.iter().map(|r| (u64::try_from(r.get::<_, i64>(0)).expect("height"), B256::from_slice(r.get(1)))).collect()
    }

    /// A timestamp as our logs print it (RFC 3339), as seconds since the epoch.
    pub(crate) async fn epoch_of(&self, timestamp: &str) -> f64 {
        self.sql()
            .await
            .query_one("SELECT EXTRACT(EPOCH FROM $1::text::timestamptz)::float8", &[&timestamp])
            .await
            .expect("a timestamp PostgreSQL reads")
            .get(0)
    }

    /// Every stored block's height and timestamp, in order.
    pub(crate) async fn timestamps(&self) -> Vec<(u64, u64)> {
        let rows =
            self.sql().await.query("SELECT number, timestamp FROM blocks ORDER BY number", &[]).await.expect("query");
        rows.iter()
            .map(|r| {
                (u64::try_from(r.get::<_, i64>(0)).expect("height"), u64::try_from(r.get::<_, i64>(1)).expect("time"))
            })
            .collect()
    }

    /// Every stored row: height, hash, parent hash, term, leader.
    pub(crate) async fn rows(&self) -> Vec<(u64, B256, Option<B256>, u64, String)> {
        let rows = self
            .sql()
            .await
            .query("SELECT number, hash, parent_hash, term, leader FROM blocks ORDER BY number", &[])
            .await
            .expect("query");
        rows.iter()
            .map(|r| {
                let parent: Option<Vec<u8>> = r.get(2);
                (
                    u64::try_from(r.get::<_, i64>(0)).expect("height"),
                    B256::from_slice(r.get(1)),
                    parent.map(|p| B256::from_slice(&p)),
                    u64::try_from(r.get::<_, i64>(3)).expect("term"),
                    r.get(4),
                )
            })
            .collect()
    }

    /// The store holds one chain from block 0 with no gap, and every node's Geth has the
    /// stored block at every height it has reached. Returns the store's height.
    pub(crate) async fn assert_one_chain(&self) -> u64 {
        // Heads first: the store can only be ahead of them, never behind, while the
        // leader goes on producing.
        let mut heads = Vec::new();
        for node in &self.nodes {
            heads.push(node.geth.engine().head().await.expect("head").number);
        }
        let rows = self.rows().await;
        for (i, (number, _, parent, _, _)) in rows.iter().enumerate() {
            assert_eq!(*number, i as u64, "one row per height from 0, no gap");
            if i > 0 {
                assert_eq!(*parent, Some(rows[i - 1].1), "row {number} extends row {}", number - 1);
            }
        }
        for (node, head) in self.nodes.iter().zip(heads) {
            assert!(head < rows.len() as u64, "{} has block {head} beyond the store", node.id);
            let engine = node.geth.engine();
            for (number, hash, ..) in &rows[..=usize::try_from(head).expect("fits")] {
                let block = engine.block(BlockTag::Number(*number)).await.expect("call").expect("block");
                assert_eq!(block.hash, *hash, "{} has the stored block at height {number}", node.id);
            }
        }
        rows.len() as u64 - 1
    }
}

/// Now, as seconds since the epoch (the clock PostgreSQL's `stored_at` is read with).
pub(crate) fn epoch_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

/// Lets `cluster`'s store grow by `more` blocks past where it is now; returns its height.
pub(crate) async fn stored_grows(cluster: &Cluster, more: u64) -> u64 {
    let now = cluster.rows().await.len() as u64 - 1;
    eventually(&format!("{more} more stored blocks"), TIMEOUT, || async {
        let height = cluster.rows().await.len() as u64 - 1;
        (height >= now + more).then_some(height)
    })
    .await
}

/// A steady stream of signed transfers from the funded account, each sent to every Geth
/// in `to` (where a leader may be), one every 100 ms, until stopped.
#[derive(Debug)]
pub(crate) struct Load {
    stop: tokio_util::sync::CancellationToken,
    sent: std::sync::Arc<std::sync::Mutex<Vec<B256>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub(crate) fn start(cluster: &Cluster, to: &[usize]) -> Self {
        let clients: Vec<_> = to.iter().map(|&i| cluster.nodes[i].geth.http()).collect();
        let stop = tokio_util::sync::CancellationToken::new();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (token, log) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let signer = common::harness::dev_signer();
            for nonce in 0.. {
                let to = Address::repeat_byte(0x42);
                let raw = common::harness::signed_transfer(&signer, 1337, nonce, to, U256::from(1));
                log.lock().expect("lock").push(alloy_primitives::keccak256(&raw));
                for client in &clients {
                    let params = serde_json::json!([raw]);
                    let _: Result<B256, _> =
                        client.call("eth_sendRawTransaction", params, Duration::from_secs(5)).await;
                }
                if !single_node::clock::sleep_or_cancel(Duration::from_millis(100), &token).await {
                    break;
                }
            }
        });
        Self { stop, sent, task }
    }

    /// The hashes of everything sent so far.
    pub(crate) fn sent(&self) -> Vec<B256> {
        self.sent.lock().expect("lock").clone()
    }

    /// Stops sending; the hashes of everything sent.
    pub(crate) async fn stop(self) -> Vec<B256> {
        self.stop.cancel();
        let sent = self.sent.clone();
        self.task.await.expect("load task");
        sent.lock().expect("lock").clone()
    }
}

/// The end of a failover under load: stops `load`, waits until every node's Geth has
/// reached `height`, checks that every transfer in `confirmed` (hash, block, as a client
/// saw it `when`) is in the same block now, and that the store and every Geth hold one
/// chain.
pub(crate) async fn assert_nothing_lost(
    cluster: &Cluster,
    load: Load,
    height: u64,
    confirmed: &[(B256, B256)],
    when: &str,
) {
    let sent = load.stop().await;
    for node in 0..cluster.nodes.len() {
        cluster.head_at_least(node, height).await;
    }
    let now = receipts(&cluster.nodes[0].geth, &sent).await;
    for (hash, block) in confirmed {
        assert!(now.contains(&(*hash, *block)), "transfer {hash}, confirmed in {block} {when}, is lost");
    }
    cluster.assert_one_chain().await;
}

/// The transactions among `hashes` that have a receipt on `geth`: hash, block hash.
pub(crate) async fn receipts(geth: &Geth, hashes: &[B256]) -> Vec<(B256, B256)> {
    let mut found = Vec::new();
    for hash in hashes {
        if let Some(receipt) = geth.receipt(*hash).await.expect("eth_getTransactionReceipt answers") {
            assert_eq!(receipt.status.to::<u64>(), 1, "transfer {hash} succeeded");
            found.push((*hash, receipt.block_hash));
        }
    }
    found
}
