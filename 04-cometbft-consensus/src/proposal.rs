//! What a proposal is, and the rules every validator checks before it votes for one. Pure
//! functions over the proposal and our head: no Geth, no sockets.
//!
//! A CometBFT block carries exactly one transaction: the execution payload for the EL
//! block of the same height, as the Engine API's JSON (`executionPayload`,
//! `executionRequests`). So CometBFT height `h` is EL block `h`, always.

use std::time::Duration;

use alloy_primitives::B256;
use anyhow::bail;
use common::{Head, payload::ExecutableBlock};
use tendermint_proto::v0_38::types::ConsensusParams;

/// Why a proposal is refused. Every variant names what was wrong, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// A block must carry exactly one payload.
    #[error("the proposal carries {0} transactions; it must carry exactly one payload")]
    NotOnePayload(usize),
    /// Not an Engine API payload.
    #[error("the payload does not decode: {0}")]
    Undecodable(String),
    /// Not the next block on our head.
    #[error("the payload is block {number} on {parent}, but our head is block {head_number} {head_hash}")]
    NotNext {
        /// Its height.
        number: u64,
        /// Its parent hash.
        parent: B256,
        /// Our head's height.
        head_number: u64,
        /// Our head's hash.
        head_hash: B256,
    },
    /// The timestamp does not follow the rule of [`timestamp`].
    #[error("the payload's timestamp is {got}, the rule gives {want}")]
    Timestamp {
        /// The payload's.
        got: u64,
        /// The rule's.
        want: u64,
    },
    /// prevRandao or withdrawals break the chain's written policy.
    #[error("the payload breaks the chain's policy: {0}")]
    Policy(&'static str),
    /// The contents do not hash to the payload's block hash.
    #[error("{0}")]
    Corrupt(String),
    /// The proposal has no block time.
    #[error("the proposal has no block time")]
    NoTime,
}

// ANCHOR: timestamp
/// The EL timestamp of the block CometBFT proposes at `block_time` (seconds since the
/// epoch): the block time's whole seconds, but at least one second after the parent's.
/// Every validator computes the same value from the block header, so the rule can be
/// checked, and the EL chain follows CometBFT's clock (BFT time).
pub const fn timestamp(parent: u64, block_time_secs: i64) -> u64 {
    let secs = if block_time_secs < 0 { 0 } else { block_time_secs as u64 };
    if secs > parent { secs } else { parent + 1 }
}
// ANCHOR_END: timestamp

/// The longest a proposer holds its proposal for the wall clock: a chain whose timestamps
/// ran ahead comes back to the clock by up to this much a block. The `timeout_propose` the
/// project derives leaves room for the hold a chain at a block a second needs (up to a
/// second less `timeout_commit`); a longer hold costs a nil round, and the next round's
/// proposer, later by then, holds less.
pub const MAX_HOLD: Duration = Duration::from_secs(1);

// ANCHOR: hold
/// How long the proposer waits before it hands over a block with this `timestamp`, at
/// wall-clock time `now`: until the clock reaches the timestamp, at most [`MAX_HOLD`].
///
/// The rule gives at least the parent's timestamp plus one second, so a network whose
/// rounds take less than a second would otherwise put its EL chain further ahead of the
/// clock with every block. Only the proposer waits, and only its own clock decides how
/// long: no validator's verdict depends on it.
pub fn hold(timestamp: u64, now: Duration) -> Duration {
    Duration::from_secs(timestamp).saturating_sub(now).min(MAX_HOLD)
}
// ANCHOR_END: hold

/// The one transaction a proposal carries. An error means there is nothing to propose
/// (never an empty transaction in its place).
pub fn encode(block: &ExecutableBlock) -> serde_json::Result<bytes::Bytes> {
    serde_json::to_vec(block).map(bytes::Bytes::from)
}

/// The most bytes the payload of a block with `gas_limit` can take as a proposal's
/// transaction. Transaction data costs at least 10 gas a byte (EIP-7623's floor, since
/// Prague), so a block carries at most `gas_limit / 10` bytes of it; the Engine API's JSON
/// writes each byte as two hex digits; 64 KiB more covers the header's fields, each
/// transaction's envelope, and CometBFT's header and commit around the payload.
pub const fn largest_payload(gas_limit: u64) -> u64 {
    gas_limit / 10 * 2 + 64 * 1024
}

/// The largest `block.max_bytes` we accept: half the longest ABCI message we read
/// ([`crate::abci::MAX_FRAME`]). A ProcessProposal or FinalizeBlock request carries the
/// block's one transaction, which `block.max_bytes` bounds; the rest of it (a few fields of
/// fixed size, a vote summary of some 40 bytes per validator of the last commit, and the
/// misbehaviour the block's evidence names) takes a small part of the other half. Vote
/// extensions would reach PrepareProposal outside `block.max_bytes`; [`check_max_bytes`]
/// keeps them off.
pub const MAX_BLOCK_BYTES: i64 = (crate::abci::MAX_FRAME / 2) as i64;

// ANCHOR: max_bytes
/// Checks the network's block size limits, once, at InitChain. A full EL block must fit
/// in a CometBFT block beside the most evidence one may carry (`evidence.max_bytes`,
/// which CometBFT takes from the same room), or the chain stops once Geth's pool holds a
/// full block: every proposer builds the same block, and none can propose it. And a block
/// must fit in one ABCI message as we read it, or a faulty proposer's block would close
/// every validator's consensus connection; CometBFT's `-1` means its own largest block,
/// 100 MiB, which does not. Vote extensions must stay off: the app makes none, and a
/// faulty validator's would reach the next proposer's PrepareProposal (in its last
/// commit) outside `block.max_bytes`, unverified if its precommit came late (CometBFT
/// v0.38 verifies no extension of a precommit added after the block was decided).
pub fn check_max_bytes(params: &ConsensusParams, gas_limit: u64) -> anyhow::Result<()> {
    if let Some(height) = params.abci.as_ref().map(|a| a.vote_extensions_enable_height).filter(|&h| h > 0) {
        bail!(
            "the CometBFT genesis turns vote extensions on at height {height} (abci.vote_extensions_enable_height): \
             this app makes none, and a faulty validator's would reach the next proposer outside block.max_bytes: \
             set it to 0"
        );
    }
    let Some(block) = &params.block else { return Ok(()) };
    let evidence = params.evidence.as_ref().map_or(0, |e| e.max_bytes.max(0));
    let payload = largest_payload(gas_limit);
    let needed = i64::try_from(payload).unwrap_or(i64::MAX).saturating_add(evidence);
    let full = format!(
        "a full block of the EL chain (gas limit {gas_limit}) can take {payload} bytes as a proposal, with {evidence} \
         of evidence beside it (evidence.max_bytes)"
    );
    match block.max_bytes {
        _ if needed > MAX_BLOCK_BYTES => bail!(
            "{full}: more than the {MAX_BLOCK_BYTES} bytes a block may take here (half the longest ABCI message this \
             app reads): lower the EL chain's gas limit or evidence.max_bytes"
        ),
        max if max == -1 || max > MAX_BLOCK_BYTES => bail!(
            "the CometBFT genesis sets block.max_bytes = {max} (-1 is CometBFT's largest block, 100 MiB): a proposal \
             that large does not fit in one ABCI message as this app reads it, so a faulty proposer could close every \
             validator's consensus connection: lower block.max_bytes to at most {MAX_BLOCK_BYTES}"
        ),
        max if max < needed => {
            bail!(
                "the CometBFT genesis sets block.max_bytes = {max}, but {full}: raise block.max_bytes to at least {needed}"
            )
        }
        _ => Ok(()),
    }
}
// ANCHOR_END: max_bytes

// ANCHOR: counted_size
/// The bytes CometBFT counts for a proposal's one transaction against PrepareProposal's
/// `max_tx_bytes`: the transaction as a field of its protobuf `Data` message, so a
/// one-byte field tag and the length as a varint come before it. An answer over the limit
/// counted this way makes the proposer's CometBFT panic.
pub fn counted_size(tx: &[u8]) -> usize {
    1 + prost::encoding::encoded_len_varint(tx.len() as u64) + tx.len()
}
// ANCHOR_END: counted_size

/// The payload of a proposal's transactions, if they are exactly one payload. Its size is
/// bounded by CometBFT's consensus parameter `block.max_bytes`, which CometBFT enforces on
/// every proposal before the app sees it: the same limit on every validator, and the one
/// PrepareProposal builds to.
pub fn decode(txs: &[impl AsRef<[u8]>]) -> Result<ExecutableBlock, Reject> {
    let [tx] = txs else { return Err(Reject::NotOnePayload(txs.len())) };
    serde_json::from_slice(tx.as_ref()).map_err(|e| Reject::Undecodable(e.to_string()))
}

/// Checks that `block` is the next block on `head`: parent and height.
pub fn extends(block: &ExecutableBlock, head: &Head) -> Result<(), Reject> {
    if block.number() != head.number + 1 || block.parent_hash() != head.hash {
        return Err(Reject::NotNext {
            number: block.number(),
            parent: block.parent_hash(),
            head_number: head.number,
            head_hash: head.hash,
        });
    }
    Ok(())
}

// ANCHOR: check
/// Everything ProcessProposal checks before it asks Geth: one payload, the next block on
/// our head, the timestamp rule, the chain's prevRandao and withdrawals policy, and a
/// block hash that matches the contents. Geth then executes what passes.
pub fn check(txs: &[impl AsRef<[u8]>], head: &Head, block_time_secs: Option<i64>) -> Result<ExecutableBlock, Reject> {
    let block = decode(txs)?;
    extends(&block, head)?;
    let want = timestamp(head.timestamp, block_time_secs.ok_or(Reject::NoTime)?);
    if block.timestamp() != want {
        return Err(Reject::Timestamp { got: block.timestamp(), want });
    }
    let inner = &block.execution_payload.payload_inner;
    if inner.payload_inner.prev_randao != head.hash {
        return Err(Reject::Policy("prevRandao must be the parent's hash"));
    }
    if !inner.withdrawals.is_empty() {
        return Err(Reject::Policy("there are no withdrawals on this chain"));
    }
    block.check_hash().map_err(|e| Reject::Corrupt(e.to_string()))?;
    Ok(block)
}
// ANCHOR_END: check

#[cfg(test)]
pub(crate) mod tests {
    use alloy_primitives::{Address, Bytes, U256};
    use alloy_rpc_types_engine::{ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3};

    use super::*;

    pub(crate) const HEAD: Head = Head { number: 7, hash: B256::repeat_byte(7), timestamp: 1_000 };

    /// A well-formed child of `HEAD` with a correct hash.
    pub(crate) fn child(timestamp: u64) -> ExecutableBlock {
        let mut block = ExecutableBlock {
            execution_payload: ExecutionPayloadV3 {
                payload_inner: ExecutionPayloadV2 {
                    payload_inner: ExecutionPayloadV1 {
                        parent_hash: HEAD.hash,
                        fee_recipient: Address::ZERO,
                        state_root: B256::repeat_byte(1),
                        receipts_root: B256::repeat_byte(2),
                        logs_bloom: Default::default(),
                        prev_randao: HEAD.hash,
                        block_number: HEAD.number + 1,
                        gas_limit: 30_000_000,
                        gas_used: 0,
                        timestamp,
                        extra_data: Bytes::new(),
                        base_fee_per_gas: U256::from(7),
                        block_hash: B256::ZERO,
                        transactions: Vec::new(),
                    },
                    withdrawals: Vec::new(),
                },
                blob_gas_used: 0,
                excess_blob_gas: 0,
            },
            execution_requests: Vec::new(),
        };
        block.execution_payload.payload_inner.payload_inner.block_hash = block.computed_hash().expect("hash");
        block
    }

    fn txs(block: &ExecutableBlock) -> Vec<bytes::Bytes> {
        vec![encode(block).expect("encodes")]
    }

    #[test]
    fn the_timestamp_follows_bft_time_but_always_rises() {
        assert_eq!(timestamp(1_000, 1_005), 1_005);
        assert_eq!(timestamp(1_000, 1_000), 1_001, "same second as the parent");
        assert_eq!(timestamp(1_000, 990), 1_001, "a clock behind the chain");
        assert_eq!(timestamp(0, -5), 1);
    }

    #[test]
    fn the_proposer_holds_a_block_until_its_timestamp_but_never_long() {
        assert_eq!(hold(1_000, Duration::from_millis(1_000_500)), Duration::ZERO, "the clock is past it");
        assert_eq!(hold(1_000, Duration::from_secs(1_000)), Duration::ZERO, "exactly on time");
        assert_eq!(hold(1_000, Duration::from_millis(999_785)), Duration::from_millis(215));
        assert_eq!(hold(1_000, Duration::from_secs(900)), MAX_HOLD, "a chain far ahead of the clock");
    }

    #[test]
    fn a_good_proposal_passes() {
        let block = child(1_003);
        assert_eq!(check(&txs(&block), &HEAD, Some(1_003)), Ok(block));
    }

    #[test]
    fn every_rule_is_enforced() {
        let good = child(1_003);
        let check = |txs: &[bytes::Bytes], time| check(txs, &HEAD, time);
        assert_eq!(check(&[], Some(1_003)), Err(Reject::NotOnePayload(0)));
        let tx = encode(&good).expect("encodes");
        assert_eq!(check(&[tx.clone(), tx], Some(1_003)), Err(Reject::NotOnePayload(2)));
        assert!(matches!(check(&[bytes::Bytes::from_static(b"{\"x\":1}")], Some(1_003)), Err(Reject::Undecodable(_))));
        assert_eq!(check(&txs(&good), Some(1_004)), Err(Reject::Timestamp { got: 1_003, want: 1_004 }));
        assert_eq!(check(&txs(&good), None), Err(Reject::NoTime));
        // Not the next block: another height on our head's hash, or our height on another
        // parent.
        for other_head in [Head { number: 8, ..HEAD }, Head { hash: B256::repeat_byte(8), ..HEAD }] {
            assert!(
                matches!(super::check(&txs(&good), &other_head, Some(1_003)), Err(Reject::NotNext { .. })),
                "{other_head:?}"
            );
        }

        // The policy, each with a block hash that matches, so only the rule can refuse it.
        let mut randao = good.clone();
        randao.execution_payload.payload_inner.payload_inner.prev_randao = B256::repeat_byte(9);
        let mut withdrawal = good.clone();
        withdrawal.execution_payload.payload_inner.withdrawals.push(Default::default());
        for (mut broken, why) in [(randao, "prevRandao"), (withdrawal, "withdrawals")] {
            broken.execution_payload.payload_inner.payload_inner.block_hash = broken.computed_hash().expect("hash");
            assert!(matches!(check(&txs(&broken), Some(1_003)), Err(Reject::Policy(p)) if p.contains(why)), "{why}");
        }
        let mut altered = good;
        altered.execution_payload.payload_inner.payload_inner.gas_used = 21_000;
        assert!(matches!(check(&txs(&altered), Some(1_003)), Err(Reject::Corrupt(_))));
    }

    /// The most payload bytes a block of `gas_limit` can carry: one transaction whose data is
    /// all zero bytes, each at EIP-7623's floor of 10 gas, filling the gas left after the
    /// transaction's 21,000. Its signed EIP-1559 envelope takes at most 226 bytes more: type
    /// 1, list header 5, chain id 9, nonce 9, two fees 33 each, gas 9, recipient 21, value
    /// 33, the data's length 5, access list 1, signature 67. CometBFT's block around it takes
    /// at most 626 bytes of header, 11 of framing and 94 + 111 a validator of commit
    /// (`MaxHeaderBytes`, `MaxOverheadForBlock`, `MaxCommitBytes` in its `types`). The bound
    /// must leave room for the commit of 200 validators, and not much more (under 128 KiB
    /// spare): a far larger bound would have InitChain demand a needlessly large
    /// `block.max_bytes`.
    #[test]
    fn the_largest_payload_holds_a_full_block_and_cometbfts_header_and_commit() {
        for gas_limit in [30_000_000, 60_000_000, 300_000_000] {
            let mut block = child(1_003);
            let inner = &mut block.execution_payload.payload_inner.payload_inner;
            inner.gas_limit = gas_limit;
            inner.gas_used = gas_limit;
            inner.transactions = vec![Bytes::from(vec![0; (gas_limit as usize - 21_000) / 10 + 226])];
            let full = counted_size(&encode(&block).expect("encodes")) as u64;
            let room = largest_payload(gas_limit).checked_sub(full).expect("a full block fits");
            let validators = room.saturating_sub(626 + 11 + 94) / 111;
            assert!(validators >= 200, "gas limit {gas_limit}: room for the commit of {validators} validators only");
            assert!(room < 128 * 1024, "gas limit {gas_limit}: {room} bytes to spare, far more than needed");
        }
    }

    #[test]
    fn a_block_size_limit_must_hold_a_full_block_and_its_evidence_and_fit_one_message() {
        use tendermint_proto::v0_38::types::{BlockParams, EvidenceParams};
        let params = |max_bytes, evidence| ConsensusParams {
            block: Some(BlockParams { max_bytes, max_gas: -1 }),
            evidence: Some(EvidenceParams { max_bytes: evidence, ..Default::default() }),
            ..Default::default()
        };
        let gas = 60_000_000;
        let full = i64::try_from(largest_payload(gas)).expect("fits");
        let refused = |max_bytes, evidence, gas, why: &str| {
            let error = check_max_bytes(&params(max_bytes, evidence), gas).expect_err(why).to_string();
            assert!(error.contains(why), "block.max_bytes {max_bytes}, evidence {evidence}: {error}");
        };
        refused(full - 1, 0, gas, &format!("raise block.max_bytes to at least {full}"));
        refused(full, 1 << 20, gas, &format!("raise block.max_bytes to at least {}", full + (1 << 20)));
        refused(-1, 0, gas, &format!("lower block.max_bytes to at most {MAX_BLOCK_BYTES}"));
        refused(MAX_BLOCK_BYTES + 1, 0, gas, "lower block.max_bytes");
        // A gas limit whose full block fits under the ceiling alone, but not with evidence.
        let large = 165_000_000;
        assert!(check_max_bytes(&params(MAX_BLOCK_BYTES, 0), large).is_ok(), "a full block alone fits");
        refused(MAX_BLOCK_BYTES, 1 << 20, large, "lower the EL chain's gas limit or evidence.max_bytes");
        for (max_bytes, evidence) in
            [(full, 0), (full + (1 << 20), 1 << 20), (22_020_096, 1 << 20), (MAX_BLOCK_BYTES, 0)]
        {
            assert!(
                check_max_bytes(&params(max_bytes, evidence), gas).is_ok(),
                "{max_bytes} with {evidence} of evidence"
            );
        }
        assert!(check_max_bytes(&ConsensusParams::default(), gas).is_ok(), "no block parameters: nothing to check");
        // Vote extensions on, at any height: refused; off (0): fine.
        use tendermint_proto::v0_38::types::AbciParams;
        for (height, ok) in [(1, false), (1_000, false), (0, true)] {
            let params =
                ConsensusParams { abci: Some(AbciParams { vote_extensions_enable_height: height }), ..params(full, 0) };
            let checked = check_max_bytes(&params, gas);
            assert_eq!(checked.is_ok(), ok, "vote extensions from height {height}: {checked:?}");
            if let Err(error) = checked {
                assert!(error.to_string().contains("set it to 0"), "{error}");
            }
        }
    }

    #[test]
    fn a_transaction_is_counted_as_cometbft_encodes_it() {
        use prost::Message;
        // CometBFT counts a block's transactions as its protobuf `Data` message encodes
        // them; the varint grows a byte at 128 B, 16 KiB and 2 MiB.
        for len in [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            let tx = vec![0xab; len];
            let data = tendermint_proto::v0_38::types::Data { txs: vec![tx.clone()] };
            assert_eq!(counted_size(&tx), data.encoded_len(), "a transaction of {len} bytes");
        }
    }
}
