//! The Engine API, one Rust method per wire method and version.
//!
//! Method names sit beside their timeouts (the spec's values, from
//! execution-apis `src/engine/common.md`). The getPayload version is picked from the
//! payload's timestamp by [`ForkSchedule`], nowhere else.

use std::time::Duration;

use alloy_primitives::{B256, Bytes};
use alloy_rpc_types_engine::{ExecutionPayloadV3, ForkchoiceState, PayloadAttributes, PayloadId};

use crate::{
    auth::JwtSecret,
    error::EngineError,
    fork::{ElChain, ElForks, ForkSchedule, GetPayloadVersion},
    payload::{ExecutableBlock, parent_beacon_block_root},
    rpc::RpcClient,
    types::{Block, BlockTag, BuiltPayload, ForkchoiceUpdated, PayloadStatus},
};

// ANCHOR: methods
/// Cancun+ forkchoice update (used through Osaka); attributes must carry withdrawals and
/// the parent beacon block root.
pub const FORKCHOICE_UPDATED_V3: &str = "engine_forkchoiceUpdatedV3";
/// Spec timeout for forkchoiceUpdated.
pub const FORKCHOICE_UPDATED_TIMEOUT: Duration = Duration::from_secs(8);

/// Prague getPayload: envelope with execution requests, blobs bundle V1.
pub const GET_PAYLOAD_V4: &str = "engine_getPayloadV4";
/// Osaka getPayload: as V4 with a blobs bundle V2 (cell proofs).
pub const GET_PAYLOAD_V5: &str = "engine_getPayloadV5";
/// Spec timeout for getPayload.
pub const GET_PAYLOAD_TIMEOUT: Duration = Duration::from_secs(1);

/// Prague/Osaka newPayload: payload, blob versioned hashes, parent beacon root, requests.
pub const NEW_PAYLOAD_V4: &str = "engine_newPayloadV4";
/// Spec timeout for newPayload.
pub const NEW_PAYLOAD_TIMEOUT: Duration = Duration::from_secs(8);

/// Lists the methods each side supports.
pub const EXCHANGE_CAPABILITIES: &str = "engine_exchangeCapabilities";
/// Spec timeout for exchangeCapabilities.
pub const EXCHANGE_CAPABILITIES_TIMEOUT: Duration = Duration::from_secs(1);

/// The chain id; Geth serves `eth_` reads on the auth port too.
pub const ETH_CHAIN_ID: &str = "eth_chainId";
/// A block header by number or tag.
pub const ETH_GET_BLOCK_BY_NUMBER: &str = "eth_getBlockByNumber";
/// The EL's fork schedule (EIP-7910).
pub const ETH_CONFIG: &str = "eth_config";
/// Timeout for plain `eth_` reads.
pub const ETH_READ_TIMEOUT: Duration = Duration::from_secs(5);
// ANCHOR_END: methods

/// The params of a method that takes none: `[]`.
const NO_PARAMS: [(); 0] = [];

/// The Engine API methods this project calls; checked against the EL at start.
pub const REQUIRED_CAPABILITIES: [&str; 4] = [FORKCHOICE_UPDATED_V3, GET_PAYLOAD_V4, GET_PAYLOAD_V5, NEW_PAYLOAD_V4];

/// An authenticated Engine API client for one execution client.
#[derive(Debug)]
pub struct EngineClient {
    rpc: RpcClient,
    forks: ForkSchedule,
}

impl EngineClient {
    /// A client for the auth RPC at `url` of a chain with the given fork schedule.
    pub fn new(url: &str, jwt: JwtSecret, forks: ForkSchedule) -> anyhow::Result<Self> {
        Ok(Self { rpc: RpcClient::new(url, Some(jwt))?, forks })
    }

    /// Reports every Engine API call (method, duration, error) to `observer`.
    pub fn with_observer(mut self, observer: crate::rpc::CallObserver) -> Self {
        self.rpc.set_observer(observer);
        self
    }

    /// The auth RPC URL.
    pub fn url(&self) -> &str {
        self.rpc.url()
    }

    /// The chain's fork schedule, as read from genesis.
    pub const fn forks(&self) -> &ForkSchedule {
        &self.forks
    }

    /// `engine_forkchoiceUpdatedV3`: moves head/safe/finalized and, with `attributes`,
    /// starts building a block on the new head.
    pub async fn forkchoice_updated_v3(
        &self,
        state: ForkchoiceState,
        attributes: Option<PayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EngineError> {
        self.rpc.call(FORKCHOICE_UPDATED_V3, (state, attributes), FORKCHOICE_UPDATED_TIMEOUT).await
    }

    /// `engine_getPayloadV4` (Prague).
    pub async fn get_payload_v4(&self, id: PayloadId) -> Result<BuiltPayload, EngineError> {
        self.rpc.call(GET_PAYLOAD_V4, [id], GET_PAYLOAD_TIMEOUT).await
    }

    /// `engine_getPayloadV5` (Osaka).
    pub async fn get_payload_v5(&self, id: PayloadId) -> Result<BuiltPayload, EngineError> {
        self.rpc.call(GET_PAYLOAD_V5, [id], GET_PAYLOAD_TIMEOUT).await
    }

    // ANCHOR: get_payload
    /// getPayload in the version that serves a payload built for `timestamp`.
    pub async fn get_payload(&self, id: PayloadId, timestamp: u64) -> anyhow::Result<BuiltPayload> {
        Ok(match self.forks.get_payload_version(timestamp)? {
            GetPayloadVersion::V4 => self.get_payload_v4(id).await?,
            GetPayloadVersion::V5 => self.get_payload_v5(id).await?,
        })
    }
    // ANCHOR_END: get_payload

    /// `engine_newPayloadV4`: asks the EL to execute and validate `payload`.
    ///
    /// `versioned_hashes` must list the blob versioned hashes of the payload's blob
    /// transactions in order ([`crate::payload::versioned_hashes`]); `execution_requests`
    /// are the ones getPayload returned (an empty list, never null).
    pub async fn new_payload_v4(
        &self,
        payload: &ExecutionPayloadV3,
        versioned_hashes: &[B256],
        parent_beacon_block_root: B256,
        execution_requests: &[Bytes],
    ) -> Result<PayloadStatus, EngineError> {
        let params = (payload, versioned_hashes, parent_beacon_block_root, execution_requests);
        self.rpc.call(NEW_PAYLOAD_V4, params, NEW_PAYLOAD_TIMEOUT).await
    }

    /// newPayloadV4 for a block built with [`crate::payload::attributes`]: the versioned
    /// hashes and the beacon root are derived from the block itself.
    pub async fn import(&self, block: &ExecutableBlock) -> anyhow::Result<PayloadStatus> {
        let hashes = block.versioned_hashes()?;
        let payload = &block.execution_payload;
        Ok(self.new_payload_v4(payload, &hashes, parent_beacon_block_root(payload), &block.execution_requests).await?)
    }

    /// `engine_exchangeCapabilities`: tells the EL what we call, returns what it serves.
    pub async fn exchange_capabilities(&self, ours: &[&str]) -> Result<Vec<String>, EngineError> {
        self.rpc.call(EXCHANGE_CAPABILITIES, [ours], EXCHANGE_CAPABILITIES_TIMEOUT).await
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, EngineError> {
        let id: alloy_primitives::U64 = self.rpc.call(ETH_CHAIN_ID, NO_PARAMS, ETH_READ_TIMEOUT).await?;
        Ok(id.to())
    }

    /// `eth_config`: the EL's forks.
    pub async fn config(&self) -> Result<ElForks, EngineError> {
        self.rpc.call(ETH_CONFIG, NO_PARAMS, ETH_READ_TIMEOUT).await
    }

    /// This node's chain: Geth's block 0, and the chain id, fork id, forks at block 0 and
    /// blob schedule of the genesis file, which [`crate::startup::check_execution_client`]
    /// finds Geth to have (the fork id, the blob parameters of three of its forks, and
    /// Prague and Osaka at block 0, only if Geth serves `eth_config`).
    pub async fn el_chain(&self) -> Result<ElChain, EngineError> {
        let block0 = self.block(BlockTag::Number(0)).await?.ok_or(EngineError::Decode {
            method: ETH_GET_BLOCK_BY_NUMBER,
            reason: "the execution client has no block 0".into(),
        })?;
        Ok(ElChain {
            genesis: block0.hash,
            chain_id: Some(self.forks.chain_id),
            fork_id: Some(self.forks.fork_id(block0.hash, block0.timestamp)),
            genesis_forks: Some(self.forks.genesis_forks_id()),
            blob_schedule: Some(self.forks.blob_schedule_id()),
        })
    }

    /// `eth_getBlockByNumber` with transaction hashes only; `None` if there is no such block.
    pub async fn block(&self, tag: BlockTag) -> Result<Option<Block>, EngineError> {
        self.rpc.call(ETH_GET_BLOCK_BY_NUMBER, (tag.to_param(), false), ETH_READ_TIMEOUT).await
    }

    /// The canonical head. Every chain has one (genesis at least), so `None` is an error.
    pub async fn head(&self) -> Result<Block, EngineError> {
        self.block(BlockTag::Latest).await?.ok_or(EngineError::Decode {
            method: ETH_GET_BLOCK_BY_NUMBER,
            reason: "the execution client has no latest block".into(),
        })
    }
}
