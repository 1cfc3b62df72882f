//! Networks of validators: blocks, a lone validator's clock, a stopped validator, a faulty
//! proposer, transactions, a Geth restarted under a running app, a full node that joins late, and one that joins
//! behind the retained window.

use std::time::Duration;

use common::{BlockTag, harness::eventually};

use crate::support::{Network, Setup};

#[tokio::test]
async fn four_validators_agree_on_every_block() {
    let network = Network::start(4, &[]).await;
    let head = network.geth_at_least(0, 20).await;
    for i in 1..4 {
        network.geth_at_least(i, head.number).await;
    }
    network.assert_one_chain(&[0, 1, 2, 3], head.number).await;
    let mut ahead = 0.0;
    for i in 0..4 {
        let (code, body) = network.get(i, "/ready").await.expect("ready answers");
        assert_eq!(code, 200, "validator {i}: {body}");
        assert!(network.metric(i, "bft_proposals_accepted_total").await >= 10.0);
        let (_, page) = network.get(i, "/metrics").await.expect("metrics answer");
        common::harness::check_metrics(&page).await.expect("Prometheus's lint passes");
        ahead += network.metric(i, "bft_ahead_builds_used_total").await;
    }
    // With the defaults the next proposer builds ahead. A block built ahead is proposed
    // only when the rule gives its parent and timestamp (`abci_input`'s
    // `a_block_built_ahead_is_proposed_when_the_rule_agrees_and_dropped_when_not` checks
    // both sides): so no honest validator ever refused a proposal for its timestamp or its
    // parent. How many proposals building ahead serves is a figure, not a rule: the bft
    // benchmark reports blocks built ahead used and dropped.
    assert!(ahead >= 1.0, "no block built ahead was ever proposed: the check below would prove nothing");
    for validator in &network.validators {
        let output = validator.app.output();
        let refused: Vec<&str> = output
            .lines()
            .filter(|line| line.contains("rejecting the proposal"))
            .filter(|line| line.contains("the rule gives") || line.contains("but our head is"))
            .collect();
        assert!(refused.is_empty(), "an honest proposer's block broke the rule: {refused:#?}");
    }
}

/// A lone validator finishes a round in a few milliseconds, so its blocks would come
/// faster than one a second; the rule's timestamps (a second apart at least) would then
/// run ahead of the clock, further with every block. The proposer holds each block until
/// its timestamp has come.
#[tokio::test]
async fn a_lone_validator_keeps_its_chain_on_the_clock() {
    let network = Network::start(1, &[]).await;
    let first = network.geth_at_least(0, 1).await;
    let head = network.geth_at_least(0, first.number + 15).await;
    let now = single_node::clock::unix_time().as_secs();
    assert!(
        head.timestamp <= now,
        "block {} has timestamp {}, ahead of the clock ({now})",
        head.number,
        head.timestamp
    );
}

#[tokio::test]
async fn a_stopped_validator_leaves_the_rest_going_and_catches_up_when_back() {
    let mut network = Network::start(4, &[]).await;
    network.geth_at_least(3, 3).await;

    // Three of four validators hold more than two thirds of the voting power.
    network.kill_validator(3);
    let stopped = network.geths[3].engine().head().await.expect("head").number;
    let head = network.geth_at_least(0, stopped + 8).await;
    network.restart_validator(3);
    network.geth_at_least(3, head.number).await;
    network.assert_one_chain(&[0, 1, 2, 3], head.number).await;

    // Back again with its app's store gone: the app reports height 0, and CometBFT's
    // handshake replays every block from its own store, through the app, into Geth.
    network.kill_validator(3);
    std::fs::remove_dir_all(&network.validators[3].state).expect("delete the app's store");
    let head = network.geth_at_least(0, head.number + 3).await;
    network.restart_validator(3);
    network.geth_at_least(3, head.number).await;
    network.assert_one_chain(&[0, 1, 2, 3], head.number).await;
    // (Its Geth kept its chain, so it is at the head before the replay through the app ends.)
    eventually("the app to commit every block again", crate::support::TIMEOUT, || async {
        (network.metric(3, "bft_height").await >= head.number as f64).then_some(())
    })
    .await;
    let log = network.validators[3].app.output();
    assert_eq!(log.matches("chain initialised").count(), 2, "InitChain at genesis, and again after the store was lost");
}

#[tokio::test]
async fn a_faulty_proposer_is_outvoted_and_no_geth_imports_its_blocks() {
    let network = Network::start(4, &[(1, &["--test-corrupt-proposals"])]).await;
    let head = network.geth_at_least(0, 12).await;
    for i in 1..4 {
        network.geth_at_least(i, head.number).await;
    }
    let bad: Vec<alloy_primitives::B256> = network.validators[1]
        .app
        .output()
        .lines()
        .filter(|line| line.contains("proposing a block with a wrong state root"))
        .filter_map(|line| line.split("hash=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!bad.is_empty(), "the faulty validator proposed at least once in 12 heights");
    for geth in &network.geths {
        for hash in &bad {
            let block: Option<serde_json::Value> = geth
                .http()
                .call("eth_getBlockByHash", serde_json::json!([hash, false]), std::time::Duration::from_secs(5))
                .await
                .expect("call");
            assert!(block.is_none(), "no Geth has the bad block {hash}");
        }
    }
    let rejected = network.metric(0, "bft_proposals_rejected_total").await;
    assert!(rejected >= 1.0, "an honest validator rejected the bad proposals: {rejected}");
    let round_changes = network.metric(0, "bft_round_changes_total").await;
    assert!(round_changes >= 1.0, "the rounds moved on: {round_changes}");
    network.assert_one_chain(&[0, 1, 2, 3], head.number).await;
}

#[tokio::test]
async fn a_transaction_sent_to_any_geth_is_included() {
    use alloy_primitives::{Address, U256};
    use common::harness::{Cast, default_fee_transfer, dev_signer, signed_transfer};

    let network = Network::start(4, &[]).await;
    let head = network.geth_at_least(2, 2).await;
    let sender = 2;
    // A user's first transaction, with cast's default fees, to a validator other than the
    // first: included, within a few blocks of its Geth accepting it (`default_fee_transfer`
    // says how many: it may have to travel to the proposer's Geth first).
    let cast = Cast::new(&network.geths[sender].http_url());
    default_fee_transfer(&cast, head.number).await.expect("cast's transfer is included");

    let own_address = network.comet.validator_address(sender).expect("address");
    // Round-robin proposers: keep sending to validator 2's Geth until a transfer lands in a
    // block another validator proposed, so it crossed the Geths' peer links.
    for nonce in 1..9 {
        let raw = signed_transfer(&dev_signer(), 1337, nonce, Address::repeat_byte(0x42), U256::from(1));
        let hash = network.geths[sender].send_raw_transaction(&raw).await.expect("accepted");
        let receipt = eventually("the transfer's receipt", crate::support::TIMEOUT, || async {
            network.geths[0].receipt(hash).await.ok().flatten()
        })
        .await;
        assert_eq!(receipt.status.to::<u64>(), 1, "the transfer succeeded");
        let height = receipt.block_number.to::<u64>();
        let proposer = network.comet.block_proposer(0, height).await.expect("block");
        if proposer != own_address {
            return;
        }
    }
    panic!("eight transfers in a row were proposed by the validator they were sent to");
}

#[tokio::test]
async fn a_validators_geth_restarted_mid_run_is_brought_back_by_its_app() {
    let mut network = Network::start(4, &[]).await;
    network.geth_at_least(1, 5).await;
    network.geths[1].kill();
    let head = network.geth_at_least(0, network.geths[0].engine().head().await.expect("head").number + 5).await;
    network.geths[1].restart().await.expect("geth restarts");
    network.geth_at_least(1, head.number + 2).await;
    network.assert_one_chain(&[0, 1, 2, 3], head.number + 2).await;
    eventually("/ready again", crate::support::TIMEOUT, || async {
        network.get(1, "/ready").await.filter(|(code, _)| *code == 200)
    })
    .await;
}

#[tokio::test]
async fn a_full_node_started_late_catches_up_follows_and_includes_transactions_sent_to_it() {
    use common::harness::{Cast, default_fee_transfer};

    let setup = Setup { full_nodes: 1, ..Setup::PEERED };
    let mut network = Network::start_with(4, &[], setup).await;
    let joined_at = network.geth_at_least(0, 15).await.number;

    // A node that joins at block 15 with an empty Geth: CometBFT's block sync gives its
    // app every decided block, which it replays, then it follows the validators' rounds.
    let full = network.start_full_node();
    let caught_up = network.geth_at_least(full, joined_at + 5).await;
    // In step, it keeps up with heights decided after it caught up, through a link to
    // every validator (so that no one of them going down cuts it off).
    eventually("the full node to follow the validators", crate::support::TIMEOUT, || async {
        let (ours, theirs) = (network.comet.height(full).await?, network.comet.height(0).await?);
        (ours + 1 >= theirs && ours >= caught_up.number + 3).then_some(())
    })
    .await;
    // While block sync caught up, its app moved its Geth's head every 64 blocks; in step,
    // each new block is its Geth's head as soon as it is committed.
    for _ in 0..3 {
        let next = network.geths[0].engine().head().await.expect("head").number + 1;
        let engine = network.geths[full].engine();
        eventually(&format!("the full node's Geth at block {next}"), Duration::from_secs(20), || async {
            engine.head().await.ok().filter(|h| h.number >= next)
        })
        .await;
    }
    eventually("the full node to peer with every validator", crate::support::TIMEOUT, || async {
        (network.comet.peer_count(full).await? == 4).then_some(())
    })
    .await;
    assert_eq!(network.metric(full, "bft_proposals_built_total").await, 0.0, "a full node builds nothing");
    let address = network.comet.validator_address(full).expect("its key's address");
    let height = network.comet.height(0).await.expect("height");
    for h in 1..=height {
        let proposer = network.comet.block_proposer(0, h).await.expect("block");
        assert_ne!(proposer, address, "block {h} was proposed by the full node");
    }

    // A user of the full node's JSON-RPC: the transfer travels to the validators' Geths and
    // is included, and the full node sees the receipt in the block every validator has.
    let cast = Cast::new(&network.geths[full].http_url());
    let head = network.geths[full].engine().head().await.expect("head");
    default_fee_transfer(&cast, head.number).await.expect("a transfer sent to the full node is included");
    let to = network.geths[full].engine().head().await.expect("head").number;
    for i in 0..4 {
        network.geth_at_least(i, to).await;
    }
    network.assert_one_chain(&[full, 0, 1, 2, 3], to).await;
}

/// With `--retain-blocks`, the validators' CometBFT drops the blocks below the window
/// (Commit's `retain_height`), so a node that joins later cannot block-sync from block 1.
/// It state-syncs instead: it takes a validator's snapshot (the EL block at a height, which
/// its light client checks against the signed headers), its Geth syncs the chain below
/// that block from its peers over devp2p, and then it block-syncs and follows. Its Geth
/// ends with the validator's block at every height.
///
/// Here the joining Geth has no peer for the restore's first 30 s. A restore that took
/// longer than that may have left the validators without the blocks above its snapshot, so
/// once Geth has the block the app asks for a newer snapshot, and the node begins there.
#[tokio::test]
async fn a_node_joining_behind_the_retained_window_state_syncs_a_fresh_snapshot_then_follows() {
    let setup = Setup { full_nodes: 1, full_nodes_unlinked: true, ..Setup::PEERED };
    let mut network = Network::start_with(1, &[(0, &["--retain-blocks", "128"])], setup).await;
    let base = eventually("the validator's CometBFT to drop its first blocks", crate::support::TIMEOUT, || async {
        network.comet.base(0).await.filter(|base| *base > 1)
    })
    .await;
    // Nor does its transaction index keep block 1's payload (its one transaction) for
    // ever: the index is off.
    let indexed = network.comet.indexed_txs(0, 1).await.expect("the validator's RPC answers /tx_search");
    assert!(
        matches!(&indexed, Err(error) if error.contains("indexing is disabled")),
        "the validator's CometBFT dropped block 1 (its base is {base}), but its transaction index answers {indexed:?}"
    );
    let trust_height = network.comet.height(0).await.expect("height") - 1;
    let trust_hash = network.comet.block_hash(0, trust_height).await.expect("the trusted block");

    let full = network.start_state_synced_node(trust_height, &trust_hash);
    let log = || std::fs::read_to_string(network.log(full)).unwrap_or_default();
    let first = eventually("the joining app to take a snapshot", crate::support::TIMEOUT, || async {
        let log = log();
        let line = log.lines().find(|line| line.contains("state sync: taking the snapshot"))?;
        line.split("height=").nth(1)?.split(' ').next()?.parse::<u64>().ok()
    })
    .await;
    // While Geth syncs, the app says so every 10 s: the third time, 30 s have passed.
    let deadline = std::time::Instant::now() + crate::support::TIMEOUT;
    while log().matches("state sync: Geth is syncing from its peers").count() < 3 {
        assert!(std::time::Instant::now() < deadline, "the restore did not run for 30 s:\n{}", log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    network.geths[0].link(&network.geths[full]).await.expect("the Geths peer");
    // Geth now reaches the block; the app refuses the snapshot as too late, CometBFT
    // offers a newer one, and the app restores that. Only then does block sync go on (a
    // Geth that reached the newer snapshot's block is no sign of it).
    eventually("the joining app to restore a snapshot", crate::support::TIMEOUT, || async {
        log().contains("state sync: Geth has the snapshot's block; block sync goes on").then_some(())
    })
    .await;
    let log = log();
    let late = log.lines().find(|line| line.contains("took long enough that the validators may have dropped"));
    assert!(
        late.is_some_and(|line| line.contains(&format!("block={first} "))),
        "the app refused the snapshot at block {first} as too late:\n{log}"
    );
    let to = network.comet.height(0).await.expect("height") + 3;
    network.geth_at_least(full, to).await;
    let ours = network.comet.base(full).await.expect("the full node's base");
    assert!(ours > base, "the full node started from a snapshot (its base {ours}), not block 1");
    assert!(
        ours > first + 1,
        "the full node began at a newer snapshot than block {first}, which its Geth reached too late (its base is {ours})"
    );
    let (theirs, mine) = (network.geths[0].engine(), network.geths[full].engine());
    for number in 0..=to {
        let expected = theirs.block(BlockTag::Number(number)).await.expect("call").expect("block").hash;
        let got = mine.block(BlockTag::Number(number)).await.expect("call").map(|b| b.hash);
        assert_eq!(got, Some(expected), "the full node's Geth at height {number}");
    }
    // The validator's app dropped its old blocks too: its store keeps the newest 128.
    network.validators[0].app.kill();
    let store =
        single_node::store::Store::open(&network.validators[0].state.join("app.redb")).expect("the app's store");
    let head = store.head().expect("read").expect("a head").number;
    let kept = store.first().expect("read").expect("a first block");
    assert_eq!(head - kept + 1, 128, "the app's store holds blocks {kept} to {head}, not the window of 128");
    assert!(store.block(1).expect("read").is_none(), "the app's store still holds block 1");
}
