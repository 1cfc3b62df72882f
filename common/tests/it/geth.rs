//! The client and the harness against a real Geth, including the errors Geth does give.

use common::{
    EngineClient, EngineError, ForkSchedule, JwtSecret, PayloadStatus, RpcErrorKind,
    harness::{Geth, GethOptions, edited_genesis, genesis_path, take_slots},
    payload::{self, finalized_at},
    startup::check_execution_client,
};

#[tokio::test]
async fn harness_starts_geth_and_cleans_up_on_drop() {
    let geth = Geth::start().await.expect("geth starts");
    let datadir = geth.datadir();
    let engine = geth.engine();
    check_execution_client(&engine).await.expect("real Geth serves what we need");
    let head = engine.head().await.expect("head");
    assert_eq!(head.number, 0, "a fresh chain starts at genesis");
    drop(geth);
    assert!(!datadir.exists(), "datadir removed on drop");
    assert!(engine.chain_id().await.is_err(), "process gone on drop");
}

/// A Geth whose genesis file differs from the consensus layer's in a fork time alone has
/// the same block 0 and chain id, so only its fork schedule tells them apart. The start
/// check compares it: a fork after block 0 by the fork id (`eth_config`), saying what each
/// side schedules; a fork at block 0, which the fork id leaves out, by the precompiles in
/// force at Geth's head.
#[tokio::test]
async fn start_up_check_refuses_a_geth_on_another_fork_schedule() {
    const OSAKA: u64 = 4_000_000_000;
    let ours = ForkSchedule::from_genesis_file(&genesis_path()).expect("genesis.json parses");
    let cases: [(&str, Option<u64>, &str); 2] = [
        ("Osaka later", Some(OSAKA), "has another fork schedule than the genesis file: its fork id is 0x"),
        (
            "no Osaka",
            None,
            "is not in Osaka in its current fork (in force from time 0), where the genesis file says it is",
        ),
    ];
    for (what, osaka, message) in cases {
        let file = edited_genesis(|genesis| {
            match osaka {
                Some(time) => genesis["config"]["osakaTime"] = time.into(),
                None => {
                    let config = genesis["config"].as_object_mut().expect("config");
                    config.remove("osakaTime");
                    config["blobSchedule"].as_object_mut().expect("blobSchedule").remove("osaka");
                }
            }
            Ok(())
        })
        .expect("genesis written");
        let geth = started_on(&file.path).await;

        let client = EngineClient::new(&geth.auth_url(), geth.jwt(), ours.clone()).expect("client");
        assert_eq!(client.chain_id().await.expect("chain id"), 1337, "{what}: the same chain id");
        let err = format!("{:#}", check_execution_client(&client).await.unwrap_err());
        assert!(
            err.contains(message) && err.contains("point --genesis at the file the EL was initialised with"),
            "{what}: {err}"
        );
        if osaka.is_some() {
            assert!(
                err.contains(&format!(
                    "(its forks: the current one from time 0, the next at {OSAKA}, the last at {OSAKA})"
                )) && err.contains("where the file's forks after block 0 (at blocks [], times []) give 0x"),
                "{what}: {err}"
            );
        }
    }
}

/// Nor do block 0, the chain id and the fork id cover a fork's blob parameters, which Geth
/// takes from the genesis file too: a BPO fork at block 0 (BPO1's 10/15 blobs where Prague
/// gives 6/9), Prague's own target, or a BPO fork at one time in both files but with other
/// parameters, as the next fork or the last. The start check compares those `eth_config`
/// gives for the current, next and last forks with the file's at their times, and says
/// which fork differs and how. Each Geth passes with its own file, one with Amsterdam ahead
/// and a BPO entry it does not schedule among them (Geth may give Amsterdam that entry's
/// parameters; the check leaves Amsterdam out, which this consensus layer does not build).
#[tokio::test]
async fn start_up_check_refuses_a_geth_of_other_blob_parameters() {
    const BPO1: u64 = 4_000_000_000;
    const BPO2: u64 = 4_100_000_000;
    let prague = "target 6, max 9, base fee update fraction 5007716";
    let bpo1_params = "target 10, max 15, base fee update fraction 8346193";
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let none = || -> Edit { Box::new(|_| {}) };
    let cases: [(&str, Edit, Edit, String); 5] = [
        (
            "BPO1 at block 0",
            Box::new(|genesis| set_bpo(genesis, 1, 0, 10, 15)),
            none(),
            format!("in its current fork (from time 0): {bpo1_params}, where the file gives {prague}"),
        ),
        (
            "Prague's target 5",
            Box::new(|genesis| genesis["config"]["blobSchedule"]["prague"]["target"] = 5.into()),
            none(),
            format!(
                "in its current fork (from time 0): target 5, max 9, base fee update fraction 5007716, where the file gives {prague}"
            ),
        ),
        (
            "BPO1 later, other parameters",
            Box::new(|genesis| set_bpo(genesis, 1, BPO1, 10, 15)),
            Box::new(|genesis| set_bpo(genesis, 1, BPO1, 12, 16)),
            format!(
                "in its next fork (from time {BPO1}): {bpo1_params}, where the file gives target 12, max 16, base fee update fraction 8346193"
            ),
        ),
        (
            "BPO2 last, other parameters",
            Box::new(|genesis| {
                set_bpo(genesis, 1, BPO1, 10, 15);
                set_bpo(genesis, 2, BPO2, 14, 21);
            }),
            Box::new(|genesis| {
                set_bpo(genesis, 1, BPO1, 10, 15);
                set_bpo(genesis, 2, BPO2, 16, 24);
            }),
            format!(
                "in its last fork (from time {BPO2}): target 14, max 21, base fee update fraction 8346193, where the file gives target 16, max 24, base fee update fraction 8346193"
            ),
        ),
        (
            "Amsterdam ahead, a BPO entry not scheduled",
            Box::new(|genesis| {
                genesis["config"]["amsterdamTime"] = BPO1.into();
                set_bpo(genesis, 1, BPO1, 10, 15);
                genesis["config"].as_object_mut().expect("config").remove("bpo1Time");
            }),
            none(),
            String::new(),
        ),
    ];
    for (what, theirs, ours, message) in cases {
        let theirs = edited_genesis(|genesis| {
            theirs(genesis);
            Ok(())
        })
        .expect("genesis written");
        let ours = edited_genesis(|genesis| {
            ours(genesis);
            Ok(())
        })
        .expect("genesis written");
        let geth = started_on(&theirs.path).await;
        if message.is_empty() {
            continue;
        }
        let forks = ForkSchedule::from_genesis_file(&ours.path).expect("our file parses");
        let client = EngineClient::new(&geth.auth_url(), geth.jwt(), forks).expect("client");
        let err = format!("{:#}", check_execution_client(&client).await.unwrap_err());
        assert!(
            err.contains(&format!("has other blob parameters than the genesis file {message}"))
                && err.contains("point --genesis at the file the EL was initialised with"),
            "{what}: {err}"
        );
    }
}

/// A Geth initialised from the genesis file at `path`, which passes the start check against
/// that same file.
async fn started_on(path: &std::path::Path) -> Geth {
    let geth = Geth::start_with(GethOptions { genesis: Some(path.to_owned()), ..Default::default() })
        .await
        .expect("geth starts");
    check_execution_client(&geth.engine()).await.expect("a Geth and the file it was initialised with agree");
    geth
}

/// Schedules BPO fork `n` at `time`, with a `blobSchedule` entry of `target` and `max` blobs.
fn set_bpo(genesis: &mut serde_json::Value, n: u8, time: u64, target: u64, max: u64) {
    genesis["config"][format!("bpo{n}Time")] = time.into();
    genesis["config"]["blobSchedule"][format!("bpo{n}")] =
        serde_json::json!({"target": target, "max": max, "baseFeeUpdateFraction": 8_346_193});
}

#[tokio::test]
async fn geth_rejects_a_foreign_jwt() {
    let geth = Geth::start().await.expect("geth starts");
    let stranger =
        EngineClient::new(&geth.auth_url(), JwtSecret::new([9; 32]), geth.engine().forks().clone()).expect("client");
    let err = stranger.chain_id().await.unwrap_err();
    assert!(matches!(err, EngineError::Unauthorized { status: 401, .. }), "{err}");
}

#[tokio::test]
async fn geth_answers_the_documented_errors() {
    let geth = Geth::start().await.expect("geth starts");
    let engine = geth.engine();
    let genesis = engine.head().await.expect("head");

    // A timestamp not after the parent's: -38003 from forkchoiceUpdated.
    let stale = payload::attributes(genesis.hash, genesis.timestamp, Default::default());
    let err = engine.forkchoice_updated_v3(finalized_at(genesis.hash), Some(stale)).await.unwrap_err();
    assert_eq!(err.rpc_kind(), Some(RpcErrorKind::InvalidPayloadAttributes), "{err}");

    // An id Geth never issued: -38001 from getPayload. Geth checks the id's first byte
    // (the payload version, 3 for Cancun through Osaka) before looking it up, so a
    // well-formed id is needed to reach the lookup; an all-zero id gets -38005.
    let unknown = alloy_rpc_types_engine::PayloadId::new([3, 0, 0, 0, 0, 0, 0, 1]);
    let err = engine.get_payload_v5(unknown).await.unwrap_err();
    assert_eq!(err.rpc_kind(), Some(RpcErrorKind::UnknownPayload), "{err}");
    let err = engine.get_payload_v5(Default::default()).await.unwrap_err();
    assert_eq!(err.rpc_kind(), Some(RpcErrorKind::UnsupportedFork), "{err}");

    // An Osaka payload asked for with the Prague method: -38005.
    let attrs = payload::attributes(genesis.hash, common::unix_time().as_secs(), Default::default());
    let updated = engine.forkchoice_updated_v3(finalized_at(genesis.hash), Some(attrs)).await.expect("fcu");
    let id = updated.payload_id.expect("Geth builds on genesis");
    let err = engine.get_payload_v4(id).await.unwrap_err();
    assert_eq!(err.rpc_kind(), Some(RpcErrorKind::UnsupportedFork), "{err}");

    // The right version for the timestamp works, and the block executes.
    let built =
        engine.get_payload(id, common::unix_time().as_secs().max(genesis.timestamp + 1)).await.expect("getPayloadV5");
    let status = engine
        .new_payload_v4(
            &built.execution_payload,
            &payload::built_versioned_hashes(&built).expect("no blobs"),
            payload::parent_beacon_block_root(&built.execution_payload),
            &built.execution_requests,
        )
        .await
        .expect("newPayload");
    assert!(status.is_valid(), "{status}");

    // The same block with a wrong timestamp is INVALID with Geth's reason, not an error.
    let mut tampered = built.execution_payload.clone();
    tampered.payload_inner.payload_inner.timestamp = genesis.timestamp;
    let status = engine
        .new_payload_v4(&tampered, &[], payload::parent_beacon_block_root(&tampered), &built.execution_requests)
        .await
        .expect("newPayload answers");
    assert!(matches!(status, PayloadStatus::Invalid { .. }), "tampered payload: {status}");
}

#[tokio::test]
async fn devnet_and_compose_pass_the_harness_flags() {
    use common::harness::{GETH_ALONE_FLAGS, GETH_FLAGS, GETH_LOOPBACK_FLAGS, GETH_PEERED_FLAGS};
    let root = common::harness::workspace_root();
    // The native scripts start every Geth through one function, alone or peered; the
    // compose file has the devnet's Geth (alone) and the cluster's (one definition for its
    // three nodes, peered, on the host's network with the native loopback addresses).
    let expected: [(&str, &[&str], usize); 8] = [
        ("scripts/lib.sh", GETH_FLAGS, 1),
        ("scripts/lib.sh", GETH_ALONE_FLAGS, 1),
        ("scripts/lib.sh", GETH_PEERED_FLAGS, 1),
        ("scripts/lib.sh", GETH_LOOPBACK_FLAGS, 1),
        ("docker-compose.yml", GETH_FLAGS, 2),
        ("docker-compose.yml", GETH_ALONE_FLAGS, 1),
        ("docker-compose.yml", GETH_PEERED_FLAGS, 1),
        ("docker-compose.yml", GETH_LOOPBACK_FLAGS, 1),
    ];
    for (file, flags, geths) in expected {
        let text = std::fs::read_to_string(root.join(file)).expect("file exists");
        let tokens: Vec<&str> =
            text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '(' || c == ')').collect();
        for flag in flags {
            let passed = tokens.iter().filter(|t| *t == flag).count();
            assert!(
                passed >= geths,
                "{file} passes {flag} {passed} times, not to each of its {geths} Geth definitions"
            );
        }
    }
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).expect("compose");
    assert!(compose.contains("--miner.gasprice=1"), "the minimum tip is set for Docker users too");
}

#[tokio::test]
async fn a_built_block_hashes_to_the_hash_geth_gave_it_and_a_changed_one_does_not() {
    use std::time::Duration;

    use alloy_primitives::{Address, U256};
    use common::{
        harness::{dev_signer, eventually, signed_transfer},
        payload::{ExecutableBlock, PayloadDecodeError},
    };

    let geth = Geth::start().await.expect("geth starts");
    let engine = geth.engine();
    let genesis = engine.head().await.expect("head");
    let raw = signed_transfer(&dev_signer(), 1337, 0, Address::repeat_byte(0x42), U256::from(5));
    geth.send_raw_transaction(&raw).await.expect("Geth accepts the transfer");
    // Geth moves an accepted transaction to its pending pool in the background: a build
    // started before that would leave it out.
    eventually("the transfer pending in Geth's pool", Duration::from_secs(30), || async {
        let status: serde_json::Value =
            geth.http().call("txpool_status", serde_json::json!([]), Duration::from_secs(5)).await.ok()?;
        (status["pending"] == "0x1").then_some(())
    })
    .await;

    // getPayload takes whatever block is ready (the empty one until the first full build
    // is done, however long that takes on a busy machine) and ends the build. So build
    // until a block holds the transfer, giving each build longer; each build has its own
    // fee recipient, so each is a new payload.
    let timestamp = common::unix_time().as_secs().max(genesis.timestamp + 1);
    let mut build_time = Duration::from_millis(200);
    let mut attempt = 0_u8;
    let block = loop {
        attempt += 1;
        let attrs = payload::attributes(genesis.hash, timestamp, Address::with_last_byte(attempt));
        let updated = engine.forkchoice_updated_v3(finalized_at(genesis.hash), Some(attrs)).await.expect("fcu");
        tokio::time::sleep(build_time).await;
        let built = engine.get_payload(updated.payload_id.expect("id"), timestamp).await.expect("payload");
        let block = ExecutableBlock::from(built);
        if block.transaction_count() > 0 || attempt == 8 {
            break block;
        }
        build_time *= 2;
    };
    assert_eq!(block.transaction_count(), 1, "the transfer is in the block (after {attempt} builds)");
    block.check_hash().expect("the hash we compute is the one Geth computed");

    let mut changed = block.clone();
    changed.execution_payload.payload_inner.payload_inner.gas_used += 1;
    let err = changed.check_hash().unwrap_err();
    assert!(matches!(err, PayloadDecodeError::HashMismatch { .. }), "{err}");
    let mut with_request = block;
    with_request.execution_requests.push(alloy_primitives::Bytes::from_static(&[0x00, 0x01]));
    assert!(with_request.check_hash().is_err(), "the requests are covered by the hash too");
}

#[tokio::test]
async fn peered_geths_gossip_transactions() {
    use alloy_primitives::{Address, U256};
    use common::harness::{dev_signer, eventually, signed_transfer};

    let nodes = Geth::start_peered_group(3).await.expect("three peered geths");
    for node in &nodes {
        assert_eq!(node.peer_count().await.expect("peers"), 2);
        // Geth takes transactions from peers only once it counts itself synced, which a
        // forkchoice update to a block it has makes it (`SetSynced` in eth/catalyst).
        let engine = node.engine();
        let head = engine.head().await.expect("head");
        engine.forkchoice_updated_v3(finalized_at(head.hash), None).await.expect("fcu");
    }
    let raw = signed_transfer(&dev_signer(), 1337, 0, Address::repeat_byte(0x42), U256::from(1));
    let hash = nodes[0].send_raw_transaction(&raw).await.expect("accepted");
    // Sent to one node, it reaches the others' pools.
    for node in &nodes[1..] {
        eventually("the transaction in every pool", std::time::Duration::from_secs(60), || async {
            let tx: Option<serde_json::Value> = node
                .http()
                .call("eth_getTransactionByHash", serde_json::json!([hash]), std::time::Duration::from_secs(5))
                .await
                .ok()
                .flatten();
            tx.map(|_| ())
        })
        .await;
    }
}

#[test]
fn bft_sh_and_compose_derive_cometbfts_timeouts_as_the_harness_does() {
    use common::harness::CometTimeouts;
    let root = common::harness::workspace_root();
    for ms in [1000_u64, 750, 2000, 100, 999, 1, 1200, 4000] {
        let output = std::process::Command::new("bash")
            .args(["scripts/bft.sh", "timeouts"])
            .env("BLOCK_TIME_MS", ms.to_string())
            .env_remove("BUILD_TIME_MS")
            .current_dir(&root)
            .output()
            .expect("bft.sh runs");
        let ours = CometTimeouts::for_block_time(std::time::Duration::from_millis(ms));
        let expected = format!(
            "timeout_commit={} timeout_propose={} timeout_precommit={} flush_throttle_timeout={}",
            ours.timeout_commit, ours.timeout_propose, ours.timeout_precommit, ours.flush_throttle
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), expected, "BLOCK_TIME_MS={ms}");
    }
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).expect("compose");
    assert!(compose.contains("BLOCK_TIME_MS: ${BLOCK_TIME_MS:-1000}"), "the bft profile passes the block time on");
    assert!(compose.contains("BUILD_TIME_MS: ${BUILD_TIME_MS:-200}"), "and the build deadline");
}

/// `scripts/cluster.sh` and `scripts/bft.sh` peer their Geths only once `same_chain`
/// (`scripts/lib.sh`) finds them on one chain: block 0, chain id, fork id, genesis forks and
/// blob schedule (which `chain_of` reads as the consensus layers do: the first check below).
/// Here on real Geths. One of a later Osaka (the same block 0 and chain id as ours) is named
/// against a network genesis naming all five (`bft.sh`), one naming block 0 alone (an
/// older network), and none (`cluster.sh`: the chain most of the Geths hold). One of
/// another chain id is named against a genesis naming all five, and one naming no fork id
/// (an older network: only the fork id tells a later Osaka apart). One without Osaka at
/// block 0 (the same block 0, chain id and fork id) is named against a genesis naming all
/// five, and none; one of another Prague blob target (the rest the same), against all
/// five. With block 0 at time 16, a fork at that time counts as at block 0 and one a second
/// later does not, in `chain_of` as in the consensus layers. A Geth that does not answer is
/// said to be unreadable (code 2), not of another chain.
#[tokio::test]
async fn the_scripts_name_a_geth_of_another_chain_id_or_fork_schedule_before_peering() {
    let root = common::harness::workspace_root();
    let bash = |script: &str, args: &[&str]| {
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("source scripts/lib.sh && {script} \"$@\""))
            .arg("same-chain-test")
            .args(args)
            .env("ROOT", &root)
            .current_dir(&root)
            .output()
            .expect("bash runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let port = |geth: &Geth| geth.http_url().rsplit(':').next().expect("a port").to_owned();
    // Two Geths at a time, their slots taken together (one held while asking for another
    // could wait for ever on the other tests').
    let slots = take_slots(2).await.expect("two slots");
    let start_on = |edit: fn(&mut serde_json::Value)| {
        let slots = slots.clone();
        async move {
            let file = edited_genesis(|genesis| {
                edit(genesis);
                Ok(())
            })
            .expect("genesis written");
            let options = GethOptions { genesis: Some(file.path.clone()), ..Default::default() };
            (Geth::start_peerable_in(slots, options).await.expect("geth starts"), file)
        }
    };

    let ours = Geth::start_peerable_in(slots.clone(), GethOptions::default()).await.expect("geth starts");
    let chain = ours.el_chain().await.expect("its chain");
    let (_, ours_chain, _) = bash("chain_of", &[&port(&ours)]);
    assert_eq!(ours_chain, chain.to_string(), "lib.sh reads a Geth's chain as the consensus layers do");
    let no_fork_id = format!("chain id 1337, block 0 {}", chain.genesis);
    let block_0 = format!("block 0 {}", chain.genesis);
    let (a, a2) = (format!("{}:ours", port(&ours)), format!("{}:ours-too", port(&ours)));

    let (later, _file) = start_on(|genesis| genesis["config"]["osakaTime"] = 4_000_000_000_u64.into()).await;
    let (_, later_chain, _) = bash("chain_of", &[&port(&later)]);
    assert!(later_chain.starts_with(&no_fork_id) && later_chain != ours_chain, "{later_chain}");
    let b = format!("{}:later-osaka", port(&later));
    for (want, geths) in
        [(ours_chain.as_str(), vec![&a, &b]), ("", vec![&a, &a2, &b]), (block_0.as_str(), vec![&a, &a2, &b])]
    {
        let mut args = vec![want];
        args.extend(geths.iter().map(|geth| geth.as_str()));
        let (code, _, said) = bash("same_chain", &args);
        assert_eq!(code, Some(1), "want {want:?}: {said}");
        assert!(
            said.contains(&format!("the Geth of later-osaka holds another chain ({later_chain})")),
            "want {want:?}: {said}"
        );
        assert!(!said.contains("the Geth of ours"), "want {want:?}: {said}");
    }
    for want in [ours_chain.as_str(), no_fork_id.as_str(), block_0.as_str(), ""] {
        let (code, _, said) = bash("same_chain", &[want, &a, &a2]);
        assert_eq!(code, Some(0), "want {want:?}: {said}");
    }
    let (code, _, said) = bash("same_chain", &["", &a, &b]);
    assert!(code == Some(1) && said.contains("which is the network's cannot be told"), "{said}");
    drop(later);

    let (other, _file) = start_on(|genesis| genesis["config"]["chainId"] = 1338.into()).await;
    let c = format!("{}:chain-1338", port(&other));
    for want in [ours_chain.as_str(), no_fork_id.as_str()] {
        let (code, _, said) = bash("same_chain", &[want, &a, &c]);
        assert!(
            code == Some(1) && said.contains("the Geth of chain-1338 holds another chain (chain id 1338,"),
            "want {want:?}: {said}"
        );
    }

    drop(other);

    // Without Osaka at block 0: the same block 0, chain id and fork id; the genesis forks
    // alone tell it apart.
    let (no_osaka, _file) = start_on(|genesis| {
        genesis["config"].as_object_mut().expect("config").remove("osakaTime");
    })
    .await;
    let (_, no_osaka_chain, _) = bash("chain_of", &[&port(&no_osaka)]);
    let fork_id = format!("{no_fork_id}, fork id {}, genesis forks ", chain.fork_id.expect("a fork id"));
    assert!(no_osaka_chain.starts_with(&fork_id) && no_osaka_chain != ours_chain, "{no_osaka_chain}");
    let as_the_layers_say = no_osaka.engine().el_chain().await.expect("its chain").to_string();
    assert_eq!(no_osaka_chain, as_the_layers_say, "lib.sh reads its genesis forks as the consensus layers do");
    let d = format!("{}:no-osaka", port(&no_osaka));
    for want in [ours_chain.as_str(), ""] {
        let geths: &[&str] = if want.is_empty() { &[&a, &a2, &d] } else { &[&a, &d] };
        let (code, _, said) = bash("same_chain", &[&[want], geths].concat());
        assert!(
            code == Some(1) && said.contains(&format!("the Geth of no-osaka holds another chain ({no_osaka_chain})")),
            "want {want:?}: {said}"
        );
    }
    drop(no_osaka);

    // Another Prague blob target: the same block 0, chain id, fork id and genesis forks; the
    // blob schedule alone tells it apart.
    let (blobs, _file) = start_on(|genesis| genesis["config"]["blobSchedule"]["prague"]["target"] = 5.into()).await;
    let (_, blobs_chain, _) = bash("chain_of", &[&port(&blobs)]);
    let genesis_forks = ours_chain.rsplit_once(", blob schedule ").expect("a blob schedule").0;
    assert!(blobs_chain.starts_with(genesis_forks) && blobs_chain != ours_chain, "{blobs_chain}");
    let as_the_layers_say = blobs.engine().el_chain().await.expect("its chain").to_string();
    assert_eq!(blobs_chain, as_the_layers_say, "lib.sh reads its blob schedule as the consensus layers do");
    let e = format!("{}:blob-target-5", port(&blobs));
    let (code, _, said) = bash("same_chain", &[&ours_chain, &a, &e]);
    assert!(
        code == Some(1) && said.contains(&format!("the Geth of blob-target-5 holds another chain ({blobs_chain})")),
        "{said}"
    );
    drop(blobs);

    // Block 0 at time 16, with a BPO fork at that time (so at block 0) and one second
    // after it (a fork after block 0): lib.sh and the consensus layers read both alike.
    let edits: [fn(&mut serde_json::Value); 2] = [|g| bpo1_at(g, 16), |g| bpo1_at(g, 17)];
    for (bpo1, edit) in [16, 17].into_iter().zip(edits) {
        let (geth, _file) = start_on(edit).await;
        let (_, read, _) = bash("chain_of", &[&port(&geth)]);
        let theirs = geth.engine().el_chain().await.expect("its chain");
        assert_eq!(read, theirs.to_string(), "bpo1Time {bpo1}, block 0 at time 16");
        let at_block_0 = geth.engine().forks().genesis_forks.contains(&"bpo1Time");
        assert_eq!(at_block_0, bpo1 == 16, "bpo1Time {bpo1}");
        check_execution_client(&geth.engine()).await.expect("a Geth and its own file agree, block 0 at time 16");
    }

    let (code, _, said) = bash("same_chain", &[&ours_chain, &a, "1:nothing-there"]);
    assert!(code == Some(2) && said.contains("cannot read the chain of the Geth of nothing-there"), "{said}");
}

/// Block 0 at time 16, and the BPO1 fork at `time` (with Osaka's blob schedule).
fn bpo1_at(genesis: &mut serde_json::Value, time: u64) {
    genesis["timestamp"] = "0x10".into();
    genesis["config"]["bpo1Time"] = time.into();
    genesis["config"]["blobSchedule"]["bpo1"] = genesis["config"]["blobSchedule"]["osaka"].clone();
}
