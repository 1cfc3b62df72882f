//! Which Engine API version serves a payload, decided from the chain's fork times; and
//! which chain a node is on.
//!
//! Each fork changed the payload shape or its envelope, and the EL checks that the version
//! we call matches the fork of the payload's timestamp (-38005 otherwise). This module is
//! the one place that choice is made: callers ask [`ForkSchedule::get_payload_version`].
//!
//! A chain is block 0, the chain id, the fork schedule and the forks' blob parameters
//! ([`ElChain`]): a genesis file's `config` is not in block 0, so two files that differ only
//! there give one block 0.

use std::path::Path;

use alloy_primitives::{Address, B256, FixedBytes};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tracing::warn;

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
    /// Every fork the file schedules, the ones above included: what the EL's fork id is
    /// made of, so that its schedule can be compared with the file's ([`Self::fork_id`]).
    pub forks: ForkPoints,
    /// The forks in force at block 0 (at block 0, or at block 0's time and before), by
    /// their keys as Geth spells them, sorted: what the fork id leaves out
    /// ([`Self::genesis_forks_id`]).
    pub genesis_forks: Vec<&'static str>,
    /// The forks that set blob parameters (EIP-7840), in Geth's order ([`BLOB_FORKS`]): what
    /// the EL's `eth_config` gives for a fork is the last of these by its time
    /// ([`Self::blob_params_at`]); what the fork id and the genesis forks leave out
    /// ([`Self::blob_schedule_id`]).
    pub blob_schedule: Vec<BlobFork>,
}

/// A fork that sets blob parameters, from a genesis file's fork time and `blobSchedule` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobFork {
    /// Its `blobSchedule` key: `cancun`, `prague`, `bpo1` to `bpo5`.
    pub name: &'static str,
    /// When it comes.
    pub time: u64,
    /// What it sets.
    pub params: BlobParams,
}

/// A fork's blob parameters (EIP-7840), as a genesis file's `config.blobSchedule` and an EL's
/// `eth_config` give them: how many blobs a block aims at and may hold, and how fast the
/// blob base fee moves. Block 0 and the fork id leave them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobParams {
    /// The blobs a block aims at.
    pub target: u64,
    /// The most blobs a block may hold.
    pub max: u64,
    /// The blob base fee's update fraction.
    pub base_fee_update_fraction: u64,
}

impl std::fmt::Display for BlobParams {
    /// "target 6, max 9, base fee update fraction 5007716".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {}, max {}, base fee update fraction {}",
            self.target, self.max, self.base_fee_update_fraction
        )
    }
}

/// The forks whose `blobSchedule` entry Geth v1.17.8 reads, in its order of forks, each with
/// its entry's key. Osaka is not among them: Geth drops the file's `osaka` entry, and its
/// Osaka keeps Prague's.
pub const BLOB_FORKS: [(&str, &str); 7] = [
    ("cancunTime", "cancun"),
    ("pragueTime", "prague"),
    ("bpo1Time", "bpo1"),
    ("bpo2Time", "bpo2"),
    ("bpo3Time", "bpo3"),
    ("bpo4Time", "bpo4"),
    ("bpo5Time", "bpo5"),
];

/// The forks of a chain config: the value of each of its fork keys, at a block number
/// ([`BLOCK_FORKS`]) or at a timestamp ([`TIME_FORKS`]), as Geth gathers them for
/// EIP-2124's fork id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForkPoints {
    /// Block numbers, as written.
    pub blocks: Vec<u64>,
    /// Timestamps, as written.
    pub times: Vec<u64>,
}

/// The keys of a chain config that name a fork at a block number: Geth v1.17.8's
/// `params.ChainConfig` fields ending in `Block`, which its fork id is made of.
pub const BLOCK_FORKS: [&str; 15] = [
    "homesteadBlock",
    "daoForkBlock",
    "eip150Block",
    "eip155Block",
    "eip158Block",
    "byzantiumBlock",
    "constantinopleBlock",
    "petersburgBlock",
    "istanbulBlock",
    "muirGlacierBlock",
    "berlinBlock",
    "londonBlock",
    "arrowGlacierBlock",
    "grayGlacierBlock",
    "mergeNetsplitBlock",
];

/// The keys that name a fork at a timestamp: the fields ending in `Time`.
pub const TIME_FORKS: [&str; 12] = [
    "shanghaiTime",
    "cancunTime",
    "pragueTime",
    "osakaTime",
    "bpo1Time",
    "bpo2Time",
    "bpo3Time",
    "bpo4Time",
    "bpo5Time",
    "amsterdamTime",
    "bogotaTime",
    "ubtTime",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenesisFile {
    config: serde_json::Map<String, serde_json::Value>,
    /// The rest of the document: block 0's fields, its time among them.
    #[serde(flatten)]
    block_0: serde_json::Map<String, serde_json::Value>,
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
        // Go's JSON decoder, which Geth reads the file with, matches keys in any case.
        let timestamp = genesis.block_0.iter().find(|(key, _)| key.eq_ignore_ascii_case("timestamp"));
        let genesis_time = match timestamp.map(|(_, value)| value) {
            None | Some(serde_json::Value::Null) => 0,
            Some(value) => whole_number(value).with_context(|| format!("timestamp is {value}, not a whole number"))?,
        };
        let mut forks = ForkPoints::default();
        let mut genesis_forks = Vec::new();
        for (key, value) in &genesis.config {
            let known = |keys: &'static [&'static str]| keys.iter().find(|fork| fork.eq_ignore_ascii_case(key));
            let (name, list, at_block_0) = if let Some(name) = known(&BLOCK_FORKS) {
                (*name, &mut forks.blocks, 0)
            } else if let Some(name) = known(&TIME_FORKS) {
                (*name, &mut forks.times, genesis_time)
            } else {
                if key.ends_with("Block") || key.ends_with("Time") {
                    warn!(key, "the genesis file's config has a key Geth v1.17.8 knows no fork by: it is not counted");
                }
                continue;
            };
            if value.is_null() {
                continue;
            }
            let at = value.as_u64().with_context(|| {
                format!("config.{key} is {value}, where a fork's block number or time must be a whole number")
            })?;
            list.push(at);
            if at <= at_block_0 {
                genesis_forks.push(name);
            }
        }
        // Sorted, each once (a key written twice, in two cases, is one field to Geth).
        genesis_forks.sort_unstable();
        genesis_forks.dedup();
        // The four we read by name, in any case too.
        let number = |name: &str| -> anyhow::Result<Option<u64>> {
            let value = genesis.config.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value);
            match value {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(value) => {
                    value.as_u64().map(Some).with_context(|| format!("config.{name} is {value}, not a whole number"))
                }
            }
        };
        // The blob parameters of each fork that has both a time and an entry, as Geth reads
        // them.
        let entries = match genesis.config.iter().find(|(key, _)| key.eq_ignore_ascii_case("blobSchedule")) {
            None | Some((_, serde_json::Value::Null)) => None,
            Some((_, serde_json::Value::Object(entries))) => Some(entries),
            Some((_, value)) => bail!("config.blobSchedule is {value}, not an object of forks' blob parameters"),
        };
        let mut blob_schedule = Vec::new();
        for (fork, name) in BLOB_FORKS {
            let entry = entries.and_then(|entries| entries.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)));
            let (Some(time), Some((_, entry))) = (number(fork)?, entry.filter(|(_, entry)| !entry.is_null())) else {
                continue;
            };
            let params = blob_params(entry).with_context(|| {
                format!(
                    "config.blobSchedule.{name} is {entry}, where a fork's blob parameters are \
                     {{\"target\", \"max\", \"baseFeeUpdateFraction\"}}, whole numbers"
                )
            })?;
            blob_schedule.push(BlobFork { name, time, params });
        }
        Ok(Self {
            chain_id: number("chainId")?.context("not a Geth genesis document: config has no chainId")?,
            prague_time: number("pragueTime")?,
            osaka_time: number("osakaTime")?,
            amsterdam_time: number("amsterdamTime")?,
            forks,
            genesis_forks,
            blob_schedule,
        })
    }

    /// The blob parameters in force at `time`, as Geth takes them: the last fork's that set
    /// them by then ([`Self::blob_schedule`]; of forks at one time, the last in Geth's order);
    /// `None` before Cancun.
    pub fn blob_params_at(&self, time: u64) -> Option<BlobParams> {
        let by_then = self.blob_schedule.iter().enumerate().filter(|(_, fork)| fork.time <= time);
        by_then.max_by_key(|(order, fork)| (fork.time, *order)).map(|(_, fork)| fork.params)
    }

    /// The blob parameters of every fork that sets them, summed up in 4 bytes as the fork id
    /// sums up the forks' times: the CRC-32 of a line for each ([`Self::blob_schedule`], in
    /// Geth's order), its `blobSchedule` key, target, maximum and base fee update fraction,
    /// separated by spaces and ended by a newline (`prague 6 9 5007716`), big-endian. The
    /// forks' times are not in it: the fork id and the genesis forks cover them.
    pub fn blob_schedule_id(&self) -> FixedBytes<4> {
        let mut crc = crc32fast::Hasher::new();
        for fork in &self.blob_schedule {
            let BlobParams { target, max, base_fee_update_fraction } = fork.params;
            crc.update(format!("{} {target} {max} {base_fee_update_fraction}\n", fork.name).as_bytes());
        }
        FixedBytes(crc.finalize().to_be_bytes())
    }

    /// The forks in force at block 0 summed up in 4 bytes, as the fork id sums up those
    /// after it: the CRC-32 of their keys ([`Self::genesis_forks`]), each followed by a
    /// newline, big-endian. Block 0 does not tell them apart (Osaka, or a BPO fork, at
    /// block 0 gives the same block 0 as none), nor does the fork id, which leaves them out.
    pub fn genesis_forks_id(&self) -> FixedBytes<4> {
        let mut crc = crc32fast::Hasher::new();
        for name in &self.genesis_forks {
            crc.update(name.as_bytes());
            crc.update(b"\n");
        }
        FixedBytes(crc.finalize().to_be_bytes())
    }

    /// The forks after block 0, for a block 0 of this time: ascending, each once, without
    /// those at block 0 or at its time and before, which are block 0's own rules.
    pub fn forks_after_block_0(&self, genesis_time: u64) -> ForkPoints {
        let ascending = |forks: &[u64], after: u64| {
            let mut forks: Vec<u64> = forks.iter().copied().filter(|&fork| fork > after).collect();
            forks.sort_unstable();
            forks.dedup();
            forks
        };
        ForkPoints { blocks: ascending(&self.forks.blocks, 0), times: ascending(&self.forks.times, genesis_time) }
    }

    /// The fork id (EIP-2124) of the chain this schedule gives to the block 0 named, once
    /// every fork has come: the CRC-32 of block 0's hash, then of each fork after block 0
    /// ([`Self::forks_after_block_0`]), block numbers first and then times, each as 8 bytes,
    /// big-endian. It is what an EL reports for its last fork (`eth_config`, EIP-7910), so
    /// two that differ schedule different forks, at one time or block number at least.
    pub fn fork_id(&self, genesis_hash: B256, genesis_time: u64) -> FixedBytes<4> {
        let after = self.forks_after_block_0(genesis_time);
        let mut crc = crc32fast::Hasher::new();
        crc.update(genesis_hash.as_slice());
        for fork in after.blocks.iter().chain(&after.times) {
            crc.update(&fork.to_be_bytes());
        }
        FixedBytes(crc.finalize().to_be_bytes())
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

/// One fork's entry in a genesis file's `blobSchedule`, as Go's decoder reads it into Geth's
/// config: keys in any case, a missing or `null` one 0.
fn blob_params(entry: &serde_json::Value) -> Option<BlobParams> {
    let entry = entry.as_object()?;
    let field = |name: &str| match entry.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)) {
        None | Some((_, serde_json::Value::Null)) => Some(0),
        Some((_, value)) => value.as_u64(),
    };
    Some(BlobParams {
        target: field("target")?,
        max: field("max")?,
        base_fee_update_fraction: field("baseFeeUpdateFraction")?,
    })
}

/// A whole number in a genesis file's top level, as Geth reads one there (`math.HexOrDecimal64`):
/// a JSON number, or a string in hex (`"0x…"`) or decimal, the empty string being 0.
fn whole_number(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::String(text) if text.is_empty() => Some(0),
        serde_json::Value::String(text) => match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => text.parse().ok(),
        },
        value => value.as_u64(),
    }
}

/// What an EL says of its own forks (`eth_config`, EIP-7910): the fork in force at its
/// head, and the next and the last it has scheduled (`None` when no fork is ahead).
#[derive(Debug, Clone, Deserialize)]
pub struct ElForks {
    /// The fork of the EL's head.
    pub current: Option<ElFork>,
    /// The next fork it has scheduled.
    pub next: Option<ElFork>,
    /// The last fork it has scheduled.
    pub last: Option<ElFork>,
}

/// One fork, as `eth_config` gives it (the fields this project reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElFork {
    /// When it activates; 0 for a fork in force from block 0.
    pub activation_time: u64,
    /// The fork id (EIP-2124) once it has come.
    pub fork_id: FixedBytes<4>,
    /// The precompiled contracts in force, by name (`None` from an EL that leaves them out).
    #[serde(default)]
    pub precompiles: Option<std::collections::BTreeMap<String, Address>>,
    /// The blob parameters in force: `None` from an EL that leaves them out, `Some(None)`
    /// before Cancun (`null`).
    #[serde(default, deserialize_with = "present")]
    pub blob_schedule: Option<Option<BlobParams>>,
}

/// A field that is there, `null` or not: told apart from one left out (`None`, by default).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(field: D) -> Result<Option<T>, D::Error> {
    T::deserialize(field).map(Some)
}

impl ElForks {
    /// The last fork the EL has scheduled: the one whose fork id covers its whole schedule.
    pub fn latest(&self) -> Option<&ElFork> {
        self.last.as_ref().or(self.current.as_ref())
    }
}

/// An EL chain, as far as one side names it: block 0, and the chain id, the fork id (of
/// the last fork scheduled, [`ForkSchedule::fork_id`]), the forks at block 0
/// ([`ForkSchedule::genesis_forks_id`]) and the blob schedule
/// ([`ForkSchedule::blob_schedule_id`]) where known. What a node's Geth is checked
/// against: the chain a store holds, a network's genesis names, a snapshot is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElChain {
    /// The hash of block 0.
    pub genesis: B256,
    /// The EIP-155 chain id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// The fork id of the last fork scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_id: Option<FixedBytes<4>>,
    /// The forks in force at block 0, summed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_forks: Option<FixedBytes<4>>,
    /// The forks' blob parameters, summed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_schedule: Option<FixedBytes<4>>,
}

impl ElChain {
    /// Whether `other` can be this chain: the same block 0, and the same chain id, fork id,
    /// forks at block 0 and blob schedule where this one names them.
    pub fn admits(&self, other: &Self) -> bool {
        fn same<T: PartialEq>(ours: Option<T>, theirs: Option<T>) -> bool {
            ours.is_none() || ours == theirs
        }
        self.genesis == other.genesis
            && same(self.chain_id, other.chain_id)
            && same(self.fork_id, other.fork_id)
            && same(self.genesis_forks, other.genesis_forks)
            && same(self.blob_schedule, other.blob_schedule)
    }

    /// What this does not name of what it can: a chain made by an older version of this
    /// project may name block 0 alone, or leave out the forks at block 0 or the blob
    /// schedule.
    pub fn unnamed(&self) -> Vec<&'static str> {
        let named = [
            ("chain id", self.chain_id.is_some()),
            ("fork id", self.fork_id.is_some()),
            ("genesis forks", self.genesis_forks.is_some()),
            ("blob schedule", self.blob_schedule.is_some()),
        ];
        named.into_iter().filter(|(_, named)| !named).map(|(what, _)| what).collect()
    }
}

impl std::fmt::Display for ElChain {
    /// "chain id N, block 0 0x…, fork id 0x…, genesis forks 0x…, blob schedule 0x…", without
    /// what it does not name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(id) = self.chain_id {
            write!(f, "chain id {id}, ")?;
        }
        write!(f, "block 0 {}", self.genesis)?;
        if let Some(id) = self.fork_id {
            write!(f, ", fork id {id}")?;
        }
        if let Some(id) = self.genesis_forks {
            write!(f, ", genesis forks {id}")?;
        }
        if let Some(id) = self.blob_schedule {
            write!(f, ", blob schedule {id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(prague: Option<u64>, osaka: Option<u64>) -> ForkSchedule {
        ForkSchedule {
            chain_id: 1,
            prague_time: prague,
            osaka_time: osaka,
            amsterdam_time: None,
            forks: ForkPoints::default(),
            genesis_forks: Vec::new(),
            blob_schedule: Vec::new(),
        }
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
        assert_eq!(forks.forks.blocks.len(), 13, "homestead to grayGlacier, all at block 0");
        assert_eq!(forks.forks.times, vec![0; 4], "shanghai to osaka, all at time 0");
    }

    /// EIP-2124's own examples: Ethereum mainnet's fork ids before its first fork and
    /// after each of the first two (Homestead at block 1,150,000, the DAO fork at 1,920,000).
    #[test]
    fn fork_ids_are_eip_2124s() {
        let mainnet: B256 = "0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3".parse().expect("hash");
        let id = |blocks: &[u64], times: &[u64], genesis_time| {
            let forks = ForkPoints { blocks: blocks.to_vec(), times: times.to_vec() };
            ForkSchedule { forks, ..schedule(None, None) }.fork_id(mainnet, genesis_time).to_string()
        };
        assert_eq!(id(&[], &[], 0), "0xfc64ec04");
        assert_eq!(id(&[1_150_000], &[], 0), "0x97c2c34c");
        assert_eq!(
            id(&[1_920_000, 0, 1_150_000, 1_150_000], &[], 0),
            "0x91d1f948",
            "sorted, each once, block 0 left out"
        );
        assert_eq!(id(&[1_150_000], &[0, 7, 10], 10), "0x97c2c34c", "forks at block 0's time and before left out");
        assert_ne!(id(&[1_150_000], &[11], 10), "0x97c2c34c", "a fork after block 0's time counts");
        // Geth's own tests (core/forkid/forkid_test.go): mainnet's block forks, Homestead to
        // Gray Glacier (Constantinople and Petersburg at one block), then its time forks,
        // Shanghai alone, and Shanghai to BPO2. Block forks come before time forks.
        let blocks = [
            1_150_000, 1_920_000, 2_463_000, 2_675_000, 2_675_000, 4_370_000, 7_280_000, 7_280_000, 9_069_000,
            9_200_000, 12_244_000, 12_965_000, 13_773_000, 15_050_000,
        ];
        let times = [1_681_338_455, 1_710_338_135, 1_746_612_311, 1_764_798_551, 1_765_290_071, 1_767_747_671];
        assert_eq!(id(&blocks, &[], 0), "0xf0afd0e3");
        assert_eq!(id(&blocks, &times[..1], 0), "0xdce96c2d");
        assert_eq!(id(&blocks, &times, 0), "0x07c9462e");
        // The same through a genesis file's keys, as mainnet's config names them.
        let config = serde_json::json!({
            "chainId": 1, "homesteadBlock": 1_150_000, "daoForkBlock": 1_920_000, "daoForkSupport": true,
            "eip150Block": 2_463_000, "eip155Block": 2_675_000, "eip158Block": 2_675_000,
            "byzantiumBlock": 4_370_000, "constantinopleBlock": 7_280_000, "petersburgBlock": 7_280_000,
            "istanbulBlock": 9_069_000, "muirGlacierBlock": 9_200_000, "berlinBlock": 12_244_000,
            "londonBlock": 12_965_000, "arrowGlacierBlock": 13_773_000, "grayGlacierBlock": 15_050_000,
            "shanghaiTime": times[0], "cancunTime": times[1], "pragueTime": times[2], "osakaTime": times[3],
            "bpo1Time": times[4], "bpo2Time": times[5],
        });
        let text = serde_json::json!({ "config": config }).to_string();
        let forks = ForkSchedule::from_genesis_json(&text).expect("mainnet's config parses");
        assert_eq!(forks.fork_id(mainnet, 0).to_string(), "0x07c9462e");
    }

    /// Osaka, or a BPO fork, at block 0 gives the same block 0 as none (Geth v1.17.8 makes
    /// one block 0, 0x502808…61fd38, of the project's genesis.json with and without them),
    /// and the fork id leaves them out: only the genesis forks tell these files apart.
    #[test]
    fn forks_at_block_0_are_told_apart_by_the_genesis_forks_alone() {
        let text = include_str!("../../genesis.json");
        let ours = ForkSchedule::from_genesis_json(text).expect("genesis.json parses");
        let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut genesis: serde_json::Value = serde_json::from_str(text).expect("json");
            edit(&mut genesis);
            ForkSchedule::from_genesis_json(&genesis.to_string()).expect("parses")
        };
        let prague = edited(&|genesis| {
            genesis["config"].as_object_mut().expect("config").remove("osakaTime");
        });
        let bpo1 = edited(&|genesis| genesis["config"]["bpo1Time"] = 0.into());
        let osaka_later = edited(&|genesis| genesis["config"]["osakaTime"] = 4_000_000_000_u64.into());
        let block_0 = B256::repeat_byte(7);
        for other in [&prague, &bpo1] {
            assert_eq!(other.fork_id(block_0, 0), ours.fork_id(block_0, 0), "the fork id leaves out block 0's forks");
            assert_ne!(other.genesis_forks_id(), ours.genesis_forks_id());
        }
        assert_ne!(prague.genesis_forks_id(), bpo1.genesis_forks_id());
        assert_eq!(osaka_later.genesis_forks_id(), prague.genesis_forks_id(), "a fork after block 0 is not at it");
        assert_ne!(osaka_later.fork_id(block_0, 0), prague.fork_id(block_0, 0), "it is in the fork id");
        assert_eq!(ours.genesis_forks.len(), 17, "homestead to grayGlacier, shanghai to osaka");
        assert!(ours.genesis_forks.is_sorted() && ours.genesis_forks.contains(&"osakaTime"));
        // Pinned: stores and networks keep this value, so it must not change for a file.
        assert_eq!(ours.genesis_forks_id().to_string(), "0x253ba363");
        assert_eq!(prague.genesis_forks_id().to_string(), "0x36ad8cb0");
        // Keys in another case, as Go reads them, are named as Geth spells them, once.
        let cased = edited(&|genesis| {
            genesis["config"].as_object_mut().expect("config").remove("osakaTime");
            genesis["config"]["OsakaTime"] = 0.into();
            genesis["config"]["OSAKATIME"] = 0.into();
        });
        assert_eq!(cased.genesis_forks, ours.genesis_forks);
        // The CRC-32 of the keys, sorted, a line each, as `scripts/lib.sh` computes it.
        let mut lines = String::new();
        for name in &ours.genesis_forks {
            lines.push_str(name);
            lines.push('\n');
        }
        assert_eq!(ours.genesis_forks_id(), FixedBytes(crc32fast::hash(lines.as_bytes()).to_be_bytes()));
        // Block 0's time counts: a fork at it or before is at block 0, one after is not.
        let at = |time: &str| {
            edited(&|genesis| {
                genesis["timestamp"] = time.into();
                genesis["config"]["bpo1Time"] = 16.into();
            })
        };
        assert!(at("0x10").genesis_forks.contains(&"bpo1Time") && at("16").genesis_forks.contains(&"bpo1Time"));
        assert!(!at("0xf").genesis_forks.contains(&"bpo1Time"));
        let cased_time = edited(&|genesis| {
            genesis.as_object_mut().expect("genesis").remove("timestamp");
            genesis["Timestamp"] = "0x10".into();
            genesis["config"]["bpo1Time"] = 16.into();
        });
        assert!(cased_time.genesis_forks.contains(&"bpo1Time"), "the time read in any case");
        assert!(!at("").genesis_forks.contains(&"bpo1Time"), "an empty time is 0, as Geth reads it");
        let err = ForkSchedule::from_genesis_json(r#"{"config": {"chainId": 1}, "timestamp": "soon"}"#).unwrap_err();
        assert!(format!("{err:#}").contains(r#"timestamp is "soon""#), "{err:#}");
    }

    /// The blob parameters in force at a time, as Geth v1.17.8 gives them in `eth_config`
    /// (seen on it: genesis.json's current fork gives Prague's 6/9 whatever the file's
    /// `osaka` entry says; with `bpo1Time: 0`, BPO1's 10/15).
    #[test]
    fn blob_parameters_are_the_last_forks_that_set_them() {
        let text = include_str!("../../genesis.json");
        let ours = ForkSchedule::from_genesis_json(text).expect("genesis.json parses");
        let params = |target, max, base_fee_update_fraction| BlobParams { target, max, base_fee_update_fraction };
        let (cancun, prague, bpo1) = (params(3, 6, 3_338_477), params(6, 9, 5_007_716), params(10, 15, 8_346_193));
        let names: Vec<_> = ours.blob_schedule.iter().map(|fork| (fork.name, fork.time, fork.params)).collect();
        assert_eq!(names, [("cancun", 0, cancun), ("prague", 0, prague)], "in Geth's order; Osaka's entry not read");
        assert_eq!(ours.blob_params_at(0), Some(prague));
        assert_eq!(prague.to_string(), "target 6, max 9, base fee update fraction 5007716");
        let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut genesis: serde_json::Value = serde_json::from_str(text).expect("json");
            edit(&mut genesis);
            ForkSchedule::from_genesis_json(&genesis.to_string())
        };
        let bpo1_at = |time: u64| {
            edited(&|genesis| {
                genesis["config"]["bpo1Time"] = time.into();
                genesis["config"]["blobSchedule"]["bpo1"] =
                    serde_json::json!({"target": 10, "max": 15, "baseFeeUpdateFraction": 8_346_193});
                genesis["config"]["blobSchedule"]["osaka"] = serde_json::json!({"target": 7, "max": 9});
            })
            .expect("parses")
        };
        assert_eq!(bpo1_at(0).blob_params_at(0), Some(bpo1), "BPO1 comes after Prague at one time");
        assert_eq!(bpo1_at(100).blob_params_at(99), Some(prague), "Prague's until BPO1, whatever Osaka's entry says");
        assert_eq!(bpo1_at(100).blob_params_at(100), Some(bpo1));
        let cased = edited(&|genesis| {
            genesis["config"]["BlobSchedule"] = genesis["config"]["blobSchedule"].take();
            genesis["config"]["BlobSchedule"]["Prague"] = serde_json::json!({"TARGET": 5, "max": null});
            genesis["config"].as_object_mut().expect("config").remove("blobSchedule");
        })
        .expect("keys in any case, as Go reads them");
        // (Geth itself refuses a fraction of 0 at `geth init`; what matters here is that the
        // file is read as Go's decoder reads it.)
        assert_eq!(cased.blob_params_at(0), Some(params(5, 0, 0)), "a missing or null field is 0");
        let none = edited(&|genesis| {
            genesis["config"].as_object_mut().expect("config").remove("blobSchedule");
        })
        .expect("no blob schedule");
        assert_eq!(none.blob_params_at(0), None);
        // The blob schedule's id: pinned, since stores and networks keep it; it tells apart
        // what block 0, the fork id and the genesis forks do not (another Prague target),
        // and is the CRC-32 of the lines `scripts/lib.sh` writes.
        assert_eq!(ours.blob_schedule_id().to_string(), "0xcecf1abb");
        let target_5 =
            edited(&|genesis| genesis["config"]["blobSchedule"]["prague"]["target"] = 5.into()).expect("parses");
        assert_eq!(target_5.fork_id(B256::ZERO, 0), ours.fork_id(B256::ZERO, 0));
        assert_eq!(target_5.genesis_forks_id(), ours.genesis_forks_id());
        assert_ne!(target_5.blob_schedule_id(), ours.blob_schedule_id());
        assert_ne!(bpo1_at(100).blob_schedule_id(), ours.blob_schedule_id());
        assert_eq!(
            ours.blob_schedule_id(),
            FixedBytes(crc32fast::hash(b"cancun 3 6 3338477\nprague 6 9 5007716\n").to_be_bytes())
        );
        let err = edited(&|genesis| genesis["config"]["blobSchedule"]["prague"]["max"] = "nine".into()).unwrap_err();
        assert!(format!("{err:#}").contains(r#"config.blobSchedule.prague is {"#), "{err:#}");
        let err = edited(&|genesis| genesis["config"]["blobSchedule"] = 6.into()).unwrap_err();
        assert!(format!("{err:#}").contains("config.blobSchedule is 6, not an object"), "{err:#}");
    }

    #[test]
    fn a_chain_admits_what_it_does_not_name() {
        let full = ElChain {
            genesis: B256::repeat_byte(1),
            chain_id: Some(7),
            fork_id: Some(FixedBytes([9; 4])),
            genesis_forks: Some(FixedBytes([3; 4])),
            blob_schedule: Some(FixedBytes([4; 4])),
        };
        let block_0_alone = ElChain { chain_id: None, fork_id: None, genesis_forks: None, blob_schedule: None, ..full };
        assert!(full.admits(&full) && block_0_alone.admits(&full));
        assert!(full.unnamed().is_empty());
        assert_eq!(block_0_alone.unnamed(), ["chain id", "fork id", "genesis forks", "blob schedule"]);
        assert_eq!(ElChain { genesis_forks: None, ..full }.unnamed(), ["genesis forks"]);
        assert_eq!(ElChain { blob_schedule: None, ..full }.unnamed(), ["blob schedule"]);
        assert!(
            !full.admits(&block_0_alone),
            "a chain id, fork id, genesis forks and blob schedule named must be there"
        );
        assert!(!full.admits(&ElChain { chain_id: Some(8), ..full }));
        assert!(!full.admits(&ElChain { fork_id: Some(FixedBytes([8; 4])), ..full }));
        assert!(!full.admits(&ElChain { genesis_forks: Some(FixedBytes([8; 4])), ..full }));
        assert!(!full.admits(&ElChain { blob_schedule: Some(FixedBytes([8; 4])), ..full }));
        assert!(ElChain { genesis_forks: None, ..full }.admits(&full), "an older chain naming no genesis forks");
        assert!(ElChain { blob_schedule: None, ..full }.admits(&full), "nor a blob schedule");
        assert!(!block_0_alone.admits(&ElChain { genesis: B256::repeat_byte(2), ..full }));
        assert_eq!(block_0_alone.to_string(), format!("block 0 {}", full.genesis));
        assert_eq!(
            full.to_string(),
            format!(
                "chain id 7, block 0 {}, fork id 0x09090909, genesis forks 0x03030303, blob schedule 0x04040404",
                full.genesis
            )
        );
        let json = serde_json::to_string(&block_0_alone).expect("json");
        assert_eq!(json, format!(r#"{{"genesis":"{}"}}"#, full.genesis), "what it does not name is left out");
        assert_eq!(
            serde_json::from_str::<ElChain>(&json).expect("read back"),
            block_0_alone,
            "and read back as unnamed"
        );
    }

    #[test]
    fn a_fork_that_is_not_a_whole_number_is_refused() {
        let text = r#"{"config": {"chainId": 1, "osakaTime": "soon"}}"#;
        let err = ForkSchedule::from_genesis_json(text).unwrap_err();
        assert!(format!("{err:#}").contains("config.osakaTime is \"soon\""), "{err:#}");
        let text = r#"{"config": {"chainId": 1, "osakaTime": null, "daoForkSupport": true, "laterTime": 5}}"#;
        assert_eq!(
            ForkSchedule::from_genesis_json(text)
                .expect("null is no fork, and a key Geth has no fork by is left out")
                .forks,
            ForkPoints::default()
        );
        let text = r#"{"config": {"chainID": 1, "OsakaTime": 5, "homesteadblock": 2}}"#;
        let forks = ForkSchedule::from_genesis_json(text).expect("keys in another case, as Go reads them");
        assert_eq!(forks.forks, ForkPoints { blocks: vec![2], times: vec![5] });
        assert_eq!((forks.chain_id, forks.osaka_time), (1, Some(5)));
    }
}
