//! Many funded accounts: keys derived from a fixed seed, and a genesis file that funds them
//! (the benchmarks' and the soak's load comes from many senders, as a real chain's does).

use std::path::PathBuf;

use alloy_primitives::keccak256;
use alloy_signer_local::PrivateKeySigner;
use anyhow::Context;
use serde_json::{Value, json};

/// Keys derived from a fixed seed, so every run funds and uses the same accounts.
#[derive(Debug)]
pub struct Accounts {
    signers: Vec<PrivateKeySigner>,
}

impl Accounts {
    /// The first `n` accounts.
    pub fn new(n: usize) -> anyhow::Result<Self> {
        let signers = (0..n as u64)
            .map(|i| {
                let key = keccak256([&b"geth-cl-tutorial bench account"[..], &i.to_be_bytes()].concat());
                PrivateKeySigner::from_bytes(&key).context("a derived key is not a valid secp256k1 key")
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { signers })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.signers.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// Every account's key, in order.
    pub fn signers(&self) -> &[PrivateKeySigner] {
        &self.signers
    }
}

/// A genesis file written for a test: the project's `genesis.json`, edited.
#[derive(Debug)]
pub struct WrittenGenesis {
    /// Where it is.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Writes the project's genesis with every account in `accounts` funded.
pub fn funded_genesis(accounts: &Accounts) -> anyhow::Result<WrittenGenesis> {
    edited_genesis(|genesis| {
        let alloc = genesis["alloc"].as_object_mut().context("genesis.json has no alloc")?;
        for signer in &accounts.signers {
            // 10^27 wei: any number of transfers at any fee a run reaches.
            alloc.insert(signer.address().to_string(), json!({"balance": "0x33b2e3c9fd0803ce8000000"}));
        }
        Ok(())
    })
}

/// Writes the project's genesis as `edit` changes it.
pub fn edited_genesis(edit: impl FnOnce(&mut Value) -> anyhow::Result<()>) -> anyhow::Result<WrittenGenesis> {
    let mut genesis: Value = serde_json::from_str(&std::fs::read_to_string(super::genesis_path())?)?;
    edit(&mut genesis)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("genesis.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&genesis)?)?;
    Ok(WrittenGenesis { path, _dir: dir })
}
