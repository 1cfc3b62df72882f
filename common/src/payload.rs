//! Pure helpers around payloads: what to ask the builder for, and what newPayload needs.

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256};
use alloy_rpc_types_engine::{ExecutionPayloadV3, ForkchoiceState, PayloadAttributes};

use alloy_primitives::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{Block, BuiltPayload, Head};

/// A block as a consensus layer keeps it: everything needed to give it to an execution
/// client again with newPayload (the versioned hashes and the beacon root are derived from
/// it). Serialised as JSON in the Engine API's own field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutableBlock {
    /// The block.
    pub execution_payload: ExecutionPayloadV3,
    /// Its EIP-7685 requests, as getPayload returned them.
    pub execution_requests: Vec<Bytes>,
}

impl From<BuiltPayload> for ExecutableBlock {
    fn from(built: BuiltPayload) -> Self {
        Self { execution_payload: built.execution_payload, execution_requests: built.execution_requests }
    }
}

impl ExecutableBlock {
    /// Height.
    pub const fn number(&self) -> u64 {
        self.execution_payload.payload_inner.payload_inner.block_number
    }

    /// Block hash.
    pub const fn hash(&self) -> B256 {
        self.execution_payload.payload_inner.payload_inner.block_hash
    }

    /// Parent's hash.
    pub const fn parent_hash(&self) -> B256 {
        self.execution_payload.payload_inner.payload_inner.parent_hash
    }

    /// Timestamp, seconds.
    pub const fn timestamp(&self) -> u64 {
        self.execution_payload.payload_inner.payload_inner.timestamp
    }

    /// Number of transactions.
    pub const fn transaction_count(&self) -> usize {
        self.execution_payload.payload_inner.payload_inner.transactions.len()
    }

    /// The header fields as [`Block`].
    pub fn header(&self) -> Block {
        Block::from(&self.execution_payload)
    }

    /// The head this block makes when it is finalized.
    pub const fn head(&self) -> Head {
        Head { number: self.number(), hash: self.hash(), timestamp: self.timestamp() }
    }

    /// The blob versioned hashes newPayload needs.
    pub fn versioned_hashes(&self) -> Result<Vec<B256>, PayloadDecodeError> {
        versioned_hashes(&self.execution_payload)
    }

    // ANCHOR: check_hash
    /// Recomputes the block hash from the payload's contents and the side data newPayload
    /// gets with it (the beacon root of [`attributes`], the execution requests), and checks
    /// it is the hash the payload claims. A block that passes cannot have been altered
    /// after it was built without the change showing: the hash covers every field.
    pub fn check_hash(&self) -> Result<(), PayloadDecodeError> {
        let computed = self.computed_hash()?;
        if computed != self.hash() {
            return Err(PayloadDecodeError::HashMismatch { claimed: self.hash(), computed });
        }
        Ok(())
    }

    /// The hash of the header rebuilt from the payload and its side data.
    pub fn computed_hash(&self) -> Result<B256, PayloadDecodeError> {
        use alloy_eips::eip7685::Requests;
        use alloy_rpc_types_engine::{
            CancunPayloadFields, ExecutionPayload, ExecutionPayloadSidecar, PraguePayloadFields,
        };
        let sidecar = ExecutionPayloadSidecar::v4(
            CancunPayloadFields::new(parent_beacon_block_root(&self.execution_payload), self.versioned_hashes()?),
            PraguePayloadFields::new(Requests::new(self.execution_requests.clone())),
        );
        let block = ExecutionPayload::V3(self.execution_payload.clone())
            .into_block_with_sidecar_raw(&sidecar)
            .map_err(|e| PayloadDecodeError::Malformed(e.to_string()))?;
        Ok(block.header.hash_slow())
    }
    // ANCHOR_END: check_hash
}

// ANCHOR: attributes
/// The payload attributes for a block on top of `parent_hash` at `timestamp`.
///
/// Our policy, the same in every part: there is no beacon chain, so
/// - `prevRandao` is the parent's hash: deterministic and known to anyone with the chain,
///   which is honest: a single sequencer can bias any randomness it provides, so contracts
///   must not use `PREVRANDAO` as a source of randomness on this chain;
/// - the parent beacon block root (EIP-4788) is the parent's hash too, so anyone replaying
///   the chain can recompute it from the payload alone;
/// - there are no withdrawals (no validators to pay), but the list must be present.
pub fn attributes(parent_hash: B256, timestamp: u64, fee_recipient: Address) -> PayloadAttributes {
    PayloadAttributes {
        timestamp,
        prev_randao: parent_hash,
        suggested_fee_recipient: fee_recipient,
        withdrawals: Some(Vec::new()),
        parent_beacon_block_root: Some(parent_hash),
        // Amsterdam-only fields: must be absent for forkchoiceUpdatedV3.
        slot_number: None,
        target_gas_limit: None,
    }
}
// ANCHOR_END: attributes

/// The parent beacon block root to pass to newPayload for a payload built with
/// [`attributes`]: the payload's parent hash.
pub const fn parent_beacon_block_root(payload: &ExecutionPayloadV3) -> B256 {
    payload.payload_inner.payload_inner.parent_hash
}

/// A forkchoice state that makes `hash` head, safe and finalized at once. Right for a
/// chain with one producer or with BFT finality: nothing can ever reorg it.
pub const fn finalized_at(hash: B256) -> ForkchoiceState {
    ForkchoiceState { head_block_hash: hash, safe_block_hash: hash, finalized_block_hash: hash }
}

/// The first timestamp a child of a block at `parent_timestamp` may have: one second later.
pub const fn min_child_timestamp(parent_timestamp: u64) -> u64 {
    parent_timestamp + 1
}

/// Why [`versioned_hashes`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PayloadDecodeError {
    /// A transaction is not a valid EIP-2718 envelope.
    #[error("transaction {index} of the payload does not decode: {reason}")]
    BadTransaction {
        /// Position in the payload.
        index: usize,
        /// The decoder's message.
        reason: String,
    },
    /// A field is out of range for a block header (for example oversized extra data).
    #[error("the payload is not a well-formed block: {0}")]
    Malformed(String),
    /// The contents hash to another block hash than the one the payload claims.
    #[error("the payload claims block hash {claimed} but its contents hash to {computed}")]
    HashMismatch {
        /// The `blockHash` field.
        claimed: B256,
        /// The hash of the header rebuilt from the payload.
        computed: B256,
    },
    /// The bundle and the transactions disagree on the number of blobs.
    #[error("payload carries {commitments} blob commitments but its transactions reference {hashes} blobs")]
    BlobCountMismatch {
        /// Commitments in the blobs bundle.
        commitments: usize,
        /// Versioned hashes in the transactions.
        hashes: usize,
    },
}

// ANCHOR: versioned_hashes
/// The blob versioned hashes of every blob transaction in the payload, in order, as
/// newPayloadV3+ requires. An empty list is only right for a payload without blobs.
pub fn versioned_hashes(payload: &ExecutionPayloadV3) -> Result<Vec<B256>, PayloadDecodeError> {
    let mut hashes = Vec::new();
    for (index, raw) in payload.payload_inner.payload_inner.transactions.iter().enumerate() {
        let tx = TxEnvelope::decode_2718(&mut raw.as_ref())
            .map_err(|e| PayloadDecodeError::BadTransaction { index, reason: e.to_string() })?;
        if let Some(blob_hashes) = tx.blob_versioned_hashes() {
            hashes.extend_from_slice(blob_hashes);
        }
    }
    Ok(hashes)
}
// ANCHOR_END: versioned_hashes

/// [`versioned_hashes`] for a freshly built payload, checked against its blobs bundle.
pub fn built_versioned_hashes(built: &BuiltPayload) -> Result<Vec<B256>, PayloadDecodeError> {
    let hashes = versioned_hashes(&built.execution_payload)?;
    if hashes.len() != built.blob_commitments.len() {
        return Err(PayloadDecodeError::BlobCountMismatch {
            commitments: built.blob_commitments.len(),
            hashes: hashes.len(),
        });
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEip4844};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Bytes, Signature, U256};
    use alloy_rpc_types_engine::{ExecutionPayloadV1, ExecutionPayloadV2};

    use super::*;

    fn payload_with(transactions: Vec<Bytes>) -> ExecutionPayloadV3 {
        ExecutionPayloadV3 {
            payload_inner: ExecutionPayloadV2 {
                payload_inner: ExecutionPayloadV1 {
                    parent_hash: B256::repeat_byte(1),
                    fee_recipient: Address::ZERO,
                    state_root: B256::ZERO,
                    receipts_root: B256::ZERO,
                    logs_bloom: Default::default(),
                    prev_randao: B256::ZERO,
                    block_number: 1,
                    gas_limit: 30_000_000,
                    gas_used: 0,
                    timestamp: 1,
                    extra_data: Bytes::new(),
                    base_fee_per_gas: U256::from(7),
                    block_hash: B256::ZERO,
                    transactions,
                },
                withdrawals: Vec::new(),
            },
            blob_gas_used: 0,
            excess_blob_gas: 0,
        }
    }

    fn encoded(tx: TxEnvelope) -> Bytes {
        tx.encoded_2718().into()
    }

    fn signature() -> Signature {
        Signature::new(U256::from(1), U256::from(1), false)
    }

    #[test]
    fn blob_hashes_are_collected_in_transaction_order() {
        let (a, b, c) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb), B256::repeat_byte(0xc));
        let blob = |hashes: Vec<B256>| {
            let tx = TxEip4844 { blob_versioned_hashes: hashes, ..Default::default() };
            encoded(TxEnvelope::from(tx.into_signed(signature())))
        };
        let plain = encoded(TxEnvelope::from(TxEip1559::default().into_signed(signature())));
        let payload = payload_with(vec![blob(vec![a, b]), plain, blob(vec![c])]);
        assert_eq!(versioned_hashes(&payload).ok(), Some(vec![a, b, c]));
    }

    #[test]
    fn no_blob_transactions_means_an_empty_list() {
        let plain = encoded(TxEnvelope::from(TxEip1559::default().into_signed(signature())));
        assert_eq!(versioned_hashes(&payload_with(vec![plain])).ok(), Some(vec![]));
    }

    #[test]
    fn a_corrupt_transaction_is_reported_with_its_index() {
        let plain = encoded(TxEnvelope::from(TxEip1559::default().into_signed(signature())));
        let err = versioned_hashes(&payload_with(vec![plain, Bytes::from_static(&[0x02, 0xff])])).unwrap_err();
        assert!(matches!(err, PayloadDecodeError::BadTransaction { index: 1, .. }), "{err}");
    }

    #[test]
    fn attributes_follow_the_written_policy() {
        let parent = B256::repeat_byte(9);
        let attrs = attributes(parent, 42, Address::repeat_byte(3));
        assert_eq!((attrs.prev_randao, attrs.parent_beacon_block_root), (parent, Some(parent)));
        assert_eq!(attrs.withdrawals, Some(vec![]));
        assert_eq!(parent_beacon_block_root(&payload_with(vec![])), B256::repeat_byte(1));
    }
}
