//! The answers of the Engine API and `eth_` methods, in the shape a consensus layer uses.
//!
//! Request types (payloads, attributes, forkchoice state) come from `alloy-rpc-types-engine`
//! unchanged. Answers are our own small types, so the statuses a caller must branch on are
//! one `match` away and a block header is just the fields we read.

use alloy_primitives::{B256, Bytes, U64, U256};
use alloy_rpc_types_engine::{ExecutionPayloadV3, PayloadId};
use serde::{Deserialize, Serialize};

/// The verdict of `newPayload` or `forkchoiceUpdated` on a block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPayloadStatus")]
pub enum PayloadStatus {
    /// Executed (or already known) and valid.
    Valid {
        /// The hash the EL considers the latest valid one, normally the block itself.
        latest_valid_hash: Option<B256>,
    },
    /// Executed and invalid: never retry the same payload.
    Invalid {
        /// The last valid ancestor, if the EL knows it.
        latest_valid_hash: Option<B256>,
        /// Why the EL refused it, for example "invalid timestamp".
        validation_error: String,
    },
    /// The EL lacks the parent or is syncing; the block was not executed yet.
    Syncing,
    /// Stored but not executed (a side chain); not yet known valid.
    Accepted,
    /// The block hash does not match the payload's contents (older ELs; Geth now answers
    /// INVALID for this case, but the status is still in the spec).
    InvalidBlockHash {
        /// The EL's explanation.
        validation_error: String,
    },
}

impl PayloadStatus {
    /// The status word as the EL sends it.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Valid { .. } => "VALID",
            Self::Invalid { .. } => "INVALID",
            Self::Syncing => "SYNCING",
            Self::Accepted => "ACCEPTED",
            Self::InvalidBlockHash { .. } => "INVALID_BLOCK_HASH",
        }
    }

    /// True only for VALID.
    pub const fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }

    /// SYNCING and ACCEPTED say "not yet": asking again later may give VALID.
    pub const fn is_pending(&self) -> bool {
        matches!(self, Self::Syncing | Self::Accepted)
    }
}

impl std::fmt::Display for PayloadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid { validation_error, .. } | Self::InvalidBlockHash { validation_error } => {
                write!(f, "{}: {validation_error}", self.as_str())
            }
            _ => f.write_str(self.as_str()),
        }
    }
}

/// The wire form: `{status, latestValidHash, validationError}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayloadStatus {
    status: String,
    latest_valid_hash: Option<B256>,
    validation_error: Option<String>,
}

impl TryFrom<RawPayloadStatus> for PayloadStatus {
    type Error = String;

    fn try_from(raw: RawPayloadStatus) -> Result<Self, Self::Error> {
        let validation_error = raw.validation_error.unwrap_or_default();
        Ok(match raw.status.as_str() {
            "VALID" => Self::Valid { latest_valid_hash: raw.latest_valid_hash },
            "INVALID" => Self::Invalid { latest_valid_hash: raw.latest_valid_hash, validation_error },
            "SYNCING" => Self::Syncing,
            "ACCEPTED" => Self::Accepted,
            "INVALID_BLOCK_HASH" => Self::InvalidBlockHash { validation_error },
            other => return Err(format!("unknown payload status {other:?}")),
        })
    }
}

/// The answer to `engine_forkchoiceUpdated`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForkchoiceUpdated {
    /// What the EL thinks of the new head.
    pub payload_status: PayloadStatus,
    /// Set when attributes were given and the EL started building. `None` with VALID means
    /// the EL chose not to build, as Geth does for a head older than its current one.
    pub payload_id: Option<PayloadId>,
}

/// What `engine_getPayloadV4`/`V5` hands back: the block and what must accompany it to
/// `newPayload`. Both envelope versions carry these fields; they differ in the blobs bundle
/// (V5 has cell proofs), of which we keep only the commitments to cross-check blob counts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltPayload {
    /// The block itself.
    pub execution_payload: ExecutionPayloadV3,
    /// Fees the fee recipient earns from this block, in wei.
    pub block_value: U256,
    /// The blob commitments of the block's blob transactions, in order.
    #[serde(rename = "blobsBundle", deserialize_with = "commitments_only")]
    pub blob_commitments: Vec<Bytes>,
    /// EIP-7685 requests (deposits, withdrawals, consolidations) to pass to newPayloadV4.
    pub execution_requests: Vec<Bytes>,
    /// The EL's hint to prefer this over a builder's block; meaningless without builders.
    #[serde(default)]
    pub should_override_builder: bool,
}

fn commitments_only<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Bytes>, D::Error> {
    #[derive(Deserialize)]
    struct Bundle {
        commitments: Vec<Bytes>,
    }
    Ok(Bundle::deserialize(d)?.commitments)
}

/// Which block `eth_getBlockByNumber` should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockTag {
    /// The canonical head.
    Latest,
    /// The block marked finalized by the last forkchoice update.
    Finalized,
    /// The block marked safe by the last forkchoice update.
    Safe,
    /// A canonical block by height.
    Number(u64),
}

impl BlockTag {
    /// The JSON-RPC parameter: `"latest"`, `"finalized"`, `"safe"` or a hex quantity.
    pub fn to_param(self) -> serde_json::Value {
        match self {
            Self::Latest => "latest".into(),
            Self::Finalized => "finalized".into(),
            Self::Safe => "safe".into(),
            Self::Number(n) => format!("{n:#x}").into(),
        }
    }
}

/// The fields of a block header a consensus layer reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawBlock")]
pub struct Block {
    /// Height.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent's hash.
    pub parent_hash: B256,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    /// Gas used by the block's transactions.
    pub gas_used: u64,
    /// The most gas its transactions could have used.
    pub gas_limit: u64,
    /// Transaction hashes (we always ask for hashes, never full transactions).
    pub transactions: Vec<B256>,
}

impl From<&ExecutionPayloadV3> for Block {
    /// The header fields of a payload; transaction hashes are the keccak of each envelope.
    fn from(payload: &ExecutionPayloadV3) -> Self {
        let block = &payload.payload_inner.payload_inner;
        Self {
            number: block.block_number,
            hash: block.block_hash,
            parent_hash: block.parent_hash,
            timestamp: block.timestamp,
            gas_used: block.gas_used,
            gas_limit: block.gas_limit,
            transactions: block.transactions.iter().map(alloy_primitives::keccak256).collect(),
        }
    }
}

/// The block a producer builds on, and what every later step remembers of its chain's tip:
/// the height, the hash, and the timestamp the child's must exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Height.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Timestamp, seconds.
    pub timestamp: u64,
}

impl From<&Block> for Head {
    fn from(block: &Block) -> Self {
        Self { number: block.number, hash: block.hash, timestamp: block.timestamp }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBlock {
    number: U64,
    hash: B256,
    parent_hash: B256,
    timestamp: U64,
    gas_used: U64,
    gas_limit: U64,
    #[serde(default)]
    transactions: Vec<B256>,
}

impl From<RawBlock> for Block {
    fn from(raw: RawBlock) -> Self {
        Self {
            number: raw.number.to(),
            hash: raw.hash,
            parent_hash: raw.parent_hash,
            timestamp: raw.timestamp.to(),
            gas_used: raw.gas_used.to(),
            gas_limit: raw.gas_limit.to(),
            transactions: raw.transactions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_decode_from_the_wire() {
        let hash = B256::repeat_byte(0x11);
        let valid: PayloadStatus =
            serde_json::from_value(json!({"status": "VALID", "latestValidHash": hash, "validationError": null}))
                .expect("valid");
        assert_eq!(valid, PayloadStatus::Valid { latest_valid_hash: Some(hash) });
        let invalid: PayloadStatus = serde_json::from_value(
            json!({"status": "INVALID", "latestValidHash": hash, "validationError": "invalid timestamp"}),
        )
        .expect("invalid");
        assert_eq!(invalid.to_string(), "INVALID: invalid timestamp");
        let syncing: PayloadStatus =
            serde_json::from_value(json!({"status": "SYNCING", "latestValidHash": null})).expect("syncing");
        assert!(syncing.is_pending());
        let bad_hash: PayloadStatus =
            serde_json::from_value(json!({"status": "INVALID_BLOCK_HASH", "validationError": "mismatch"}))
                .expect("ibh");
        assert!(matches!(bad_hash, PayloadStatus::InvalidBlockHash { .. }));
        assert!(serde_json::from_value::<PayloadStatus>(json!({"status": "MAYBE"})).is_err());
    }

    #[test]
    fn block_tags_render_as_rpc_params() {
        assert_eq!(BlockTag::Number(26).to_param(), json!("0x1a"));
        assert_eq!(BlockTag::Latest.to_param(), json!("latest"));
    }
}
