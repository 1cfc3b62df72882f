//! Which Engine API version serves a payload, decided from the chain's fork times.
//!
//! Each fork changed the payload shape or its envelope, and the EL checks that the version
//! we call matches the fork of the payload's timestamp (-38005 otherwise). This module is
//! the one place that choice is made: callers ask [`ForkSchedule::get_payload_version`].

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The `engine_getPayload` version for a payload's fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetPayloadVersion {
    /// Prague: envelope with execution requests and a V1 blobs bundle.
    V4,
    /// Osaka: as V4, with a V2 blobs bundle (EIP-7594 cell proofs).
    V5,
}

/// The chain facts we read from `genesis.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkSchedule {
    /// EIP-155 chain id; the EL must report the same.
    pub chain_id: u64,
    /// Prague activation time; `None` if the chain never forks to it.
    pub prague_time: Option<u64>,
    /// Osaka activation time.
    pub osaka_time: Option<u64>,
    /// Amsterdam activation time: set means payloads we cannot build (V4 payloads).
    pub amsterdam_time: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenesisFile {
    config: ChainConfig,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChainConfig {
    chain_id: u64,
    prague_time: Option<u64>,
    osaka_time: Option<u64>,
    amsterdam_time: Option<u64>,
}

impl ForkSchedule {
    /// Reads the schedule from a genesis file in Geth's format.
    pub fn from_genesis_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read genesis file {}", path.display()))?;
        Self::from_genesis_json(&text).with_context(|| format!("bad genesis file {}", path.display()))
    }

    /// Parses a genesis document.
    pub fn from_genesis_json(text: &str) -> anyhow::Result<Self> {
        let genesis: GenesisFile = serde_json::from_str(text).context("not a Geth genesis document")?;
        let c = genesis.config;
        Ok(Self {
            chain_id: c.chain_id,
            prague_time: c.prague_time,
            osaka_time: c.osaka_time,
            amsterdam_time: c.amsterdam_time,
        })
    }

    /// The getPayload version for a payload with this timestamp. Fails for timestamps before
    /// Prague (we speak newPayloadV4 only) and from Amsterdam on (new payload shape).
    pub fn get_payload_version(&self, timestamp: u64) -> anyhow::Result<GetPayloadVersion> {
        let active = |fork: Option<u64>| fork.is_some_and(|t| timestamp >= t);
        if active(self.amsterdam_time) {
            bail!("timestamp {timestamp} is in Amsterdam, which this consensus layer does not support");
        }
        if active(self.osaka_time) {
            return Ok(GetPayloadVersion::V5);
        }
        if active(self.prague_time) {
            return Ok(GetPayloadVersion::V4);
        }
        bail!("timestamp {timestamp} is before Prague; this consensus layer needs Prague or later")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(prague: Option<u64>, osaka: Option<u64>) -> ForkSchedule {
        ForkSchedule { chain_id: 1, prague_time: prague, osaka_time: osaka, amsterdam_time: None }
    }

    #[test]
    fn osaka_payloads_use_v5_and_prague_payloads_v4() {
        let forks = schedule(Some(0), Some(1_000));
        assert_eq!(forks.get_payload_version(999).ok(), Some(GetPayloadVersion::V4));
        assert_eq!(forks.get_payload_version(1_000).ok(), Some(GetPayloadVersion::V5));
    }

    #[test]
    fn pre_prague_and_amsterdam_are_refused() {
        assert!(schedule(Some(10), None).get_payload_version(9).is_err());
        assert!(schedule(None, None).get_payload_version(0).is_err());
        let amsterdam = ForkSchedule { amsterdam_time: Some(5), ..schedule(Some(0), Some(0)) };
        assert!(amsterdam.get_payload_version(5).is_err());
    }

    #[test]
    fn the_project_genesis_is_osaka_from_block_zero() {
        let text = include_str!("../../genesis.json");
        let forks = ForkSchedule::from_genesis_json(text).expect("genesis.json parses");
        assert_eq!(forks.chain_id, 1337);
        assert_eq!(forks.get_payload_version(0).ok(), Some(GetPayloadVersion::V5));
    }
}
