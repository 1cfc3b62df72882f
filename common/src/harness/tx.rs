//! Transactions for tests, signed with the development key `genesis.json` funds.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, U64, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use anyhow::Context;
use serde::Deserialize;

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
