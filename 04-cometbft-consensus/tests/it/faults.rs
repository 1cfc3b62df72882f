//! Faults below the consensus layer: Geths that lose their chains where no peer can give it
//! back, and a validator cut off from the others by the network (through toxiproxy).

use common::harness::eventually;

use crate::support::{Network, Setup, TIMEOUT};

#[tokio::test]
async fn geths_that_lose_their_chains_with_no_peer_to_sync_from_are_repaired_by_their_apps() {
    // Geths NOT peered: nobody but the app can give a wiped Geth its blocks back.
    let mut network = Network::start_with(4, &[], Setup { peered_geths: false, ..Setup::PEERED }).await;
    let head = network.geth_at_least(0, 5).await;
    // What each Geth about to be wiped holds: its app's store holds at least that (Geth
    // is made head only after the store has the block), so its app must replay at least
    // that much. (Validator 0's head is no measure: the others may be a block behind it.)
    let mut held = [0; 4];
    for i in [1, 2] {
        held[i] = network.geth_at_least(i, 5).await.number;
    }

    // Two of four Geths lose everything at once under their running apps: half the voting
    // power cannot vote until its Geth has the chain again, and no block can be decided
    // meanwhile, so no FinalizeBlock comes to repair them: ProcessProposal must (here the
    // two healthy proposers' blocks do it; `abci_input` tests PrepareProposal's repair).
    let (left, right) = network.geths.split_at_mut(2);
    let (one, two) = tokio::join!(left[1].wipe_and_restart(), right[0].wipe_and_restart());
    one.and(two).expect("both Geths come back empty");
    let later = network.geth_at_least(0, head.number + 5).await;
    for i in 0..4 {
        network.geth_at_least(i, later.number).await;
    }
    network.assert_one_chain(&[0, 1, 2, 3], later.number).await;
    for i in [1, 2] {
        let replayed = network.metric(i, "bft_replayed_blocks_total").await;
        assert!(
            replayed >= held[i] as f64,
            "validator {i}'s app gave its Geth the stored chain: {replayed} blocks, its Geth held {}",
            held[i]
        );
        eventually("/ready again", TIMEOUT, || async { network.get(i, "/ready").await.filter(|(c, _)| *c == 200) })
            .await;
    }
}

#[tokio::test]
async fn a_validator_cut_off_from_its_peers_leaves_the_rest_going_and_catches_up_when_healed() {
    let network = Network::start_with(4, &[], Setup { isolatable: Some(3), ..Setup::PEERED }).await;
    network.geth_at_least(3, 3).await;

    network.comet.isolate().await.expect("cut node 3 off");
    let cut_at = network.geths[3].engine().head().await.expect("head").number;
    // Three of four hold more than two thirds of the voting power: they go on.
    let head = network.geth_at_least(0, cut_at + 5).await;
    let alone = network.comet.height(3).await.expect("node 3's RPC answers");
    assert!(alone <= cut_at + 1, "the cut-off validator decided nothing alone: height {alone}, cut at {cut_at}");

    network.comet.rejoin().await.expect("heal");
    network.geth_at_least(3, head.number + 2).await;
    network.assert_one_chain(&[0, 1, 2, 3], head.number + 2).await;
}
