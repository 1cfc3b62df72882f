//! Test harness: a fresh, real Geth per test (feature `harness`).
//!
//! [`Geth::start`] makes a temp datadir, runs `geth init` with the project's
//! `genesis.json`, writes a random JWT secret, starts Geth on free loopback ports with the
//! same flags as `scripts/devnet.sh`, and waits until the Engine API answers. Dropping the
//! value kills the process and deletes the datadir, also when the test panics (and then
//! prints the end of Geth's log, which is usually the explanation).
//!
//! The machine is small and shared: at most [`max_concurrent`] Geths run at once per test
//! binary; further `start` calls wait for a slot.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, U64, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{auth::JwtSecret, engine::EngineClient, fork::ForkSchedule, rpc::RpcClient};

// ANCHOR: flags
/// The Geth flags every run of this project uses, besides datadir, addresses and ports.
/// `scripts/devnet.sh` and `docker-compose.yml` pass the same ones (a test checks they do).
///
/// `--state.scheme=hash --gcmode=archive` makes Geth write every block's state to its
/// database as it imports the block. In the default path scheme up to 128 blocks of state
/// live only in memory: after a SIGKILL Geth rewinds, deletes the blocks above, and can
/// switch itself to snap sync, which never finishes on a chain without peers.
pub const GETH_FLAGS: &[&str] = &[
    "--syncmode=full",
    "--state.scheme=hash",
    "--gcmode=archive",
    "--nodiscover",
    "--maxpeers=0",
    "--http",
    "--http.api=eth,net,web3,txpool",
];

/// Natively both ports listen on loopback only. (In Docker they listen on the container's
/// interface, and the compose file publishes them on the host's loopback instead.)
pub const GETH_LOOPBACK_FLAGS: &[&str] = &["--authrpc.addr=127.0.0.1", "--http.addr=127.0.0.1"];
// ANCHOR_END: flags

/// How long Geth may take to open its Engine API port. Generous: CI machines are busy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// Geth processes allowed at once in one test binary, from `GETH_TEST_SLOTS` (default 2).
pub fn max_concurrent() -> usize {
    std::env::var("GETH_TEST_SLOTS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(2)
}

static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(max_concurrent())));

/// The repository root (where `genesis.json` and `.tools/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("common/ sits in the workspace root").to_owned()
}

/// The project's `genesis.json`.
pub fn genesis_path() -> PathBuf {
    workspace_root().join("genesis.json")
}

/// The Geth binary: `$GETH_BIN`, else the one `scripts/setup.sh` installs in `.tools/bin`.
/// A missing binary is a set-up failure, never a reason to skip a test.
pub fn geth_binary() -> anyhow::Result<PathBuf> {
    let path =
        std::env::var_os("GETH_BIN").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".tools/bin/geth"));
    if !path.is_file() {
        bail!(
            "Geth not found at {}: run `scripts/setup.sh` (installs the pinned Geth), or set GETH_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// The funded developer key of `genesis.json` (Foundry/Anvil/Hardhat account 0; public).
pub const DEV_PRIVATE_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// A signer for [`DEV_PRIVATE_KEY`], address 0xf39F…2266.
pub fn dev_signer() -> PrivateKeySigner {
    DEV_PRIVATE_KEY.parse().expect("the developer key is a valid secp256k1 key")
}

/// An EIP-1559 transfer of `value` wei to `to`, signed and encoded for `eth_sendRawTransaction`.
pub fn signed_transfer(signer: &PrivateKeySigner, chain_id: u64, nonce: u64, to: Address, value: U256) -> Bytes {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: to.into(),
        value,
        ..Default::default()
    };
    let signature = signer.sign_hash_sync(&tx.signature_hash()).expect("local signing does not fail");
    TxEnvelope::from(tx.into_signed(signature)).encoded_2718().into()
}

/// A blob transaction carrying `data` in as many blobs as it needs, with an EIP-7594
/// (cell proof) sidecar as Osaka requires, signed and encoded in network form for
/// `eth_sendRawTransaction`. Returns the encoding and the blobs' versioned hashes.
pub fn signed_blob_transaction(
    signer: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    data: &[u8],
) -> anyhow::Result<(Bytes, Vec<B256>)> {
    use alloy_consensus::{EthereumTxEnvelope, TxEip4844, TxEip4844Variant, TxEip4844WithSidecar};
    use alloy_eips::eip4844::builder::{SidecarBuilder, SimpleCoder};

    let sidecar = SidecarBuilder::<SimpleCoder>::from_slice(data).build_7594().context("cannot build blob sidecar")?;
    let hashes: Vec<B256> = sidecar.versioned_hashes().collect();
    let tx = TxEip4844 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        max_fee_per_blob_gas: 1_000_000_000,
        to: Address::repeat_byte(0xb1),
        blob_versioned_hashes: hashes.clone(),
        ..Default::default()
    };
    let tx = TxEip4844Variant::TxEip4844WithSidecar(TxEip4844WithSidecar::from_tx_and_sidecar(tx, sidecar));
    let signature = signer.sign_hash_sync(&tx.signature_hash()).context("signing")?;
    let envelope = EthereumTxEnvelope::Eip4844(tx.into_signed(signature));
    Ok((envelope.encoded_2718().into(), hashes))
}

/// The fields of a receipt the tests look at.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// 1 for success, 0 for a revert.
    pub status: U64,
    /// The block that included the transaction.
    pub block_number: U64,
    /// Its hash.
    pub block_hash: B256,
}

/// A running Geth with its own datadir, ports and JWT secret.
#[derive(Debug)]
pub struct Geth {
    child: Option<Child>,
    dir: tempfile::TempDir,
    auth_port: u16,
    http_port: u16,
    jwt: JwtSecret,
    _slot: OwnedSemaphorePermit,
}

impl Geth {
    // ANCHOR: start
    /// Starts a fresh Geth on the project's genesis and waits for its Engine API.
    pub async fn start() -> anyhow::Result<Self> {
        let slot = SLOTS.clone().acquire_owned().await.context("Geth slot semaphore closed")?;
        let binary = geth_binary()?;
        let dir = tempfile::Builder::new().prefix("geth-test-").tempdir().context("cannot make a temp datadir")?;
        run_init(&binary, dir.path())?;
        let jwt = JwtSecret::new(rand_bytes());
        std::fs::write(dir.path().join("jwt.hex"), jwt.to_hex()).context("cannot write the JWT secret")?;
        let (auth_port, http_port) = (free_port()?, free_port()?);
        let mut geth = Self { child: None, dir, auth_port, http_port, jwt, _slot: slot };
        geth.spawn()?;
        geth.wait_ready().await?;
        Ok(geth)
    }
    // ANCHOR_END: start

    /// The datadir (kept across [`Geth::restart`]).
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The Engine API URL.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.auth_port)
    }

    /// The public JSON-RPC URL (transactions, receipts).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The JWT secret file Geth reads.
    pub fn jwt_path(&self) -> PathBuf {
        self.dir.path().join("jwt.hex")
    }

    /// The JWT secret.
    pub fn jwt(&self) -> JwtSecret {
        self.jwt.clone()
    }

    /// Geth's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("geth.log")
    }

    /// An Engine API client for this node.
    pub fn engine(&self) -> EngineClient {
        let forks = ForkSchedule::from_genesis_file(&genesis_path()).expect("project genesis.json parses");
        EngineClient::new(&self.auth_url(), self.jwt(), forks).expect("loopback URL is valid")
    }

    /// A client for the public JSON-RPC port.
    pub fn http(&self) -> RpcClient {
        RpcClient::new(&self.http_url(), None).expect("loopback URL is valid")
    }

    /// Sends a signed transaction to the public port; returns its hash.
    pub async fn send_raw_transaction(&self, raw: &Bytes) -> anyhow::Result<B256> {
        Ok(self.http().call("eth_sendRawTransaction", json!([raw]), Duration::from_secs(10)).await?)
    }

    /// The receipt of a transaction, once it is in a block.
    pub async fn receipt(&self, hash: B256) -> anyhow::Result<Option<Receipt>> {
        Ok(self.http().call("eth_getTransactionReceipt", json!([hash]), Duration::from_secs(10)).await?)
    }

    /// An account's balance at the head.
    pub async fn balance(&self, address: Address) -> anyhow::Result<U256> {
        Ok(self.http().call("eth_getBalance", json!([address, "latest"]), Duration::from_secs(10)).await?)
    }

    /// Kills Geth with SIGKILL, as a crash would. The datadir stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Geth again on the same datadir and ports, and waits for its Engine API.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_ready().await
    }

    /// Kills Geth, deletes its chain (as a lost disk would), initialises it again from
    /// genesis, and starts it on the same ports and JWT.
    pub async fn wipe_and_restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        std::fs::remove_dir_all(self.datadir()).context("cannot delete the datadir")?;
        run_init(&geth_binary()?, self.dir.path())?;
        self.spawn()?;
        self.wait_ready().await
    }

    /// The last `bytes` of Geth's log.
    pub fn log_tail(&self, bytes: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut command = Command::new(geth_binary()?);
        command
            .arg("--datadir")
            .arg(self.datadir())
            .args(GETH_FLAGS)
            .args(GETH_LOOPBACK_FLAGS)
            .arg(format!("--authrpc.port={}", self.auth_port))
            .arg(format!("--authrpc.jwtsecret={}", self.jwt_path().display()))
            .arg(format!("--http.port={}", self.http_port))
            // Tests run several nodes: no fixed P2P port, no IPC socket in a shared place.
            .args(["--port=0", "--ipcdisable", "--verbosity=3"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut command);
        self.child = Some(command.spawn().context("cannot start geth")?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let engine = self.engine();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("geth exited during start-up ({status}); its log ends with:\n{}", self.log_tail(4000));
            }
            if engine.chain_id().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("geth's Engine API did not answer within {STARTUP_TIMEOUT:?}; log:\n{}", self.log_tail(4000));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Geth {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- end of geth log ({}) ---\n{}", self.log_path().display(), self.log_tail(3000));
        }
    }
}

/// Polls `check` every 200 ms until it returns `Some`, and returns that value. Panics with
/// `what` if `timeout` passes first. Tests wait for conditions, never for fixed times.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A process under test (a sequencer, a leader, a member): its output goes to a log file,
/// and it is killed on drop. On a panicking test the end of its log is printed.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `command` with its stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        die_with_parent(&mut command);
        let child = command.spawn().with_context(|| format!("cannot start {name}"))?;
        Ok(Self { name: name.to_owned(), child, log: log.to_owned() })
    }

    /// Sends a signal (`libc::SIGTERM`, `SIGSTOP`, `SIGCONT`, …).
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// SIGKILL, as a crash would, and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Everything the process has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let output = self.output();
            let tail: String = output.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("--- end of {} output ({}) ---\n{tail}", self.name, self.log.display());
        }
    }
}

fn run_init(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .arg("init")
        .arg("--state.scheme=hash")
        .arg("--datadir")
        .arg(dir.join("data"))
        .arg(genesis_path())
        .output()
        .context("cannot run geth init")?;
    if !output.status.success() {
        bail!("geth init failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// A port that was free a moment ago. Another process could take it before Geth binds it;
/// on this loopback-only machine that is rare, and start-up then fails loudly.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn rand_bytes() -> [u8; 32] {
    B256::random().0
}

/// Asks Linux to SIGKILL the child when the test process dies, so a test killed by a
/// timeout never leaves a Geth behind. Linux ties this to the spawning *thread*: spawn from
/// the test's own thread or a runtime worker, not from a short-lived blocking-pool thread.
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    #[allow(unsafe_code)]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
