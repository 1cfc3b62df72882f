//! Bad ABCI input, sent to a real app on a real Geth: it answers or closes that one
//! connection, never crashes, and its state is unchanged. And bad flags, refused at start.

use std::time::Duration;

use alloy_primitives::{Address, B256};
use bytes::BytesMut;
use cometbft_consensus::abci::{frame, take_frame};
use common::{
    ElChain,
    harness::{Geth, Service, free_port, genesis_path, http_get},
};
use prost::Message;
use tendermint_proto::v0_38::abci::{
    Request, RequestFinalizeBlock, RequestInfo, RequestInitChain, RequestPrepareProposal, RequestProcessProposal,
    Response, request, response, response_process_proposal::ProposalStatus,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// An app on a fresh Geth, with no CometBFT: the test is CometBFT.
struct Lone {
    app: Service,
    abci: String,
    health: String,
    geth: Geth,
    dir: tempfile::TempDir,
}

async fn lone_app() -> Lone {
    lone_app_with(&[]).await
}

/// [`lone_app`], with flags.
async fn lone_app_with(args: &[&str]) -> Lone {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let (abci, health) =
        (format!("127.0.0.1:{}", free_port().expect("port")), format!("127.0.0.1:{}", free_port().expect("port")));
    let app = Service::stopped("app", &dir.path().join("app.log"));
    let mut lone = Lone { app, abci, health, geth, dir };
    restart_app(&mut lone, args).await;
    lone
}

/// Starts the lone app (again, on the same store, if it ran before), and waits until it
/// serves ABCI.
async fn restart_app(lone: &mut Lone, args: &[&str]) {
    let starts = lone.app.output().matches("serving ABCI").count();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cometbft-consensus"));
    command
        .args(args)
        .env("ETH_CLIENT_URL", lone.geth.auth_url())
        .env("JWT_SECRET", lone.geth.jwt_path())
        .env("GENESIS", genesis_path())
        .env("ABCI_ADDR", &lone.abci)
        .env("STATE_DIR", lone.dir.path().join("app"))
        .env("HEALTH_ADDR", &lone.health)
        .env("RUST_LOG", "info");
    lone.app.start(command).expect("app starts");
    common::harness::eventually("the app to serve ABCI", Duration::from_secs(60), || async {
        (lone.app.output().matches("serving ABCI").count() > starts).then_some(())
    })
    .await;
}

/// Flags that parse but make no sense are refused at start, each naming the flag and the
/// rule it breaks (no Geth is needed to find them).
#[test]
fn flags_that_make_no_sense_are_refused_at_start_naming_the_rule() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("app");
    for (flags, rule) in [
        (&["--build-time-ms", "2001"][..], "--build-time-ms (2001) is over 2 s"),
        (&["--ready-max-age", "0"], "--ready-max-age must be at least 1 second"),
        (&["--retain-blocks", "127"], "--retain-blocks must be 0 (keep every block) or at least 128"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cometbft-consensus"))
            .args(flags)
            .env("STATE_DIR", &state)
            .env("ABCI_ADDR", format!("127.0.0.1:{}", free_port().expect("port")))
            .env("HEALTH_ADDR", format!("127.0.0.1:{}", free_port().expect("port")))
            .env("EL_WAIT", "1")
            .output()
            .expect("the app runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was taken:\n{stderr}");
        assert!(stderr.contains(rule), "{flags:?}: expected {rule:?} in:\n{stderr}");
    }
}

/// Sends raw bytes and reads until the app answers one frame or closes the connection.
async fn exchange(addr: &str, bytes: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream.shutdown().await.ok();
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = take_frame(&mut buf).expect("the app frames its answers") {
            // The app then closes the connection (we sent nothing more): wait for that, so
            // the next call is on a connection opened after this one is gone, as
            // CometBFT's connections would be.
            let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_buf(&mut BytesMut::new())).await;
            return Some(Response::decode(frame).expect("the app's answer decodes"));
        }
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_buf(&mut buf)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            return None;
        }
        assert!(read.is_ok(), "the app neither answers nor closes the connection within 30 s");
    }
}

async fn call(addr: &str, request: request::Value) -> response::Value {
    let response = exchange(addr, &frame(&Request { value: Some(request) })).await.expect("an answer");
    response.value.expect("a response value")
}

fn height_and_hash(info: response::Value) -> (i64, bytes::Bytes) {
    let response::Value::Info(info) = info else { panic!("not an Info answer: {info:?}") };
    (info.last_block_height, info.last_block_app_hash)
}

#[tokio::test]
async fn garbage_and_truncated_messages_close_only_their_connection() {
    let lone = lone_app().await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let before = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);

    // A length prefix that is not a varint; an absurd length; a frame cut short.
    assert!(exchange(&lone.abci, &[0xff; 16]).await.is_none());
    let mut absurd = BytesMut::new();
    prost::encoding::encode_varint(u64::MAX, &mut absurd);
    assert!(exchange(&lone.abci, &absurd).await.is_none());
    let whole = frame(&Request { value: Some(request::Value::Info(RequestInfo::default())) });
    assert!(exchange(&lone.abci, &whole[..whole.len() - 1]).await.is_none());

    // Framed, but not a request; framed, but without a method: a clear exception.
    let not_protobuf = [&[5_u8][..], &[0xff; 5]].concat();
    let answer = exchange(&lone.abci, &not_protobuf).await.expect("an answer").value;
    assert!(matches!(answer, Some(response::Value::Exception(ref e)) if e.error.contains("undecodable")), "{answer:?}");
    let answer = exchange(&lone.abci, &frame(&Request { value: None })).await.expect("an answer").value;
    assert!(matches!(answer, Some(response::Value::Exception(ref e)) if e.error.contains("without a method")));

    let after = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(before, after, "nothing changed");
    assert_eq!(http_get(&format!("http://{}/health", lone.health)).await.map(|(c, _)| c), Some(200));
    assert!(!lone.app.output().contains("panicked"));
}

#[tokio::test]
async fn bad_proposals_are_rejected_and_a_bad_decided_block_is_refused_without_damage() {
    let lone = lone_app().await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let before = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds: 2_000_000_000, nanos: 0 });
    let proposal = |txs: Vec<bytes::Bytes>| {
        request::Value::ProcessProposal(RequestProcessProposal { txs, height: 1, time, ..Default::default() })
    };
    let cases = [
        ("empty", vec![]),
        ("two transactions", vec![bytes::Bytes::from_static(b"{}"), bytes::Bytes::from_static(b"{}")]),
        ("undecodable", vec![bytes::Bytes::from_static(b"\x00\x01not json")]),
        ("large and undecodable", vec![bytes::Bytes::from(vec![b'{'; 5000])]),
    ];
    for (name, txs) in cases {
        let answer = call(&lone.abci, proposal(txs)).await;
        let response::Value::ProcessProposal(verdict) = answer else { panic!("{name}: {answer:?}") };
        assert_eq!(verdict.status, i32::from(ProposalStatus::Reject), "{name} is rejected");
    }
    // A decided block that cannot be applied: an exception (CometBFT would halt), and
    // nothing is stored.
    let finalize = request::Value::FinalizeBlock(RequestFinalizeBlock {
        txs: vec![bytes::Bytes::from_static(b"garbage")],
        height: 1,
        time,
        ..Default::default()
    });
    let answer = call(&lone.abci, finalize).await;
    assert!(matches!(answer, response::Value::Exception(ref e) if e.error.contains("cannot be applied")), "{answer:?}");
    // Nor a well-formed block (its hash right) on another parent than our head: Geth is
    // not asked to import it (it would wait for that parent for ever).
    let engine = lone.geth.engine();
    let genesis = common::Head::from(&engine.head().await.expect("head"));
    let mut elsewhere = built_with(&engine, &genesis, 2_000_000_000, |_| {}).await;
    elsewhere.execution_payload.payload_inner.payload_inner.parent_hash = B256::repeat_byte(0x42);
    elsewhere.execution_payload.payload_inner.payload_inner.block_hash = elsewhere.computed_hash().expect("hash");
    let tx = cometbft_consensus::proposal::encode(&elsewhere).expect("encodes");
    let finalize = RequestFinalizeBlock { txs: vec![tx], height: 1, time, ..Default::default() };
    let answer = call(&lone.abci, request::Value::FinalizeBlock(finalize)).await;
    let on_another_parent = |e: &str| e.contains("cannot be applied") && e.contains("our head is block 0");
    assert!(matches!(answer, response::Value::Exception(ref e) if on_another_parent(&e.error)), "{answer:?}");
    let after = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(before, after, "nothing was stored");
    assert!(lone.app.output().contains("rejecting the proposal"));
}

/// Whether `geth` holds the block `hash` (canonical or not).
async fn holds(geth: &Geth, hash: alloy_primitives::B256) -> bool {
    let block: Option<serde_json::Value> = geth
        .http()
        .call("eth_getBlockByHash", serde_json::json!([hash, false]), Duration::from_secs(10))
        .await
        .expect("call");
    block.is_some()
}

/// ProcessProposal of `block` at height 1 and block time `seconds`: the verdict.
async fn process(lone: &Lone, block: &common::payload::ExecutableBlock, seconds: i64) -> i32 {
    process_at(lone, block, 1, seconds).await
}

/// ProcessProposal of `block` at `height` and block time `seconds`: the verdict.
async fn process_at(lone: &Lone, block: &common::payload::ExecutableBlock, height: i64, seconds: i64) -> i32 {
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds, nanos: 0 });
    let txs = vec![cometbft_consensus::proposal::encode(block).expect("encodes")];
    let request = RequestProcessProposal { txs, height, time, ..Default::default() };
    let answer = call(&lone.abci, request::Value::ProcessProposal(request)).await;
    let response::Value::ProcessProposal(verdict) = answer else { panic!("{answer:?}") };
    verdict.status
}

/// A validator accepts (prevotes for) only a block its own Geth executed: a proposal that
/// passes every check a validator can make without executing it (a wrong state root, with a
/// block hash to match: what `--test-corrupt-proposals` proposes) is rejected, and a good
/// one is accepted only once Geth has executed it (Geth holds it afterwards, not before).
#[tokio::test]
async fn a_proposal_is_accepted_only_once_geth_has_executed_it() {
    let lone = lone_app().await;
    let (genesis, good, seconds) = block_one(&lone).await;
    let before = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    let mut bad = good.clone();
    bad.execution_payload.payload_inner.payload_inner.state_root = alloy_primitives::B256::repeat_byte(0xbd);
    bad.execution_payload.payload_inner.payload_inner.block_hash = bad.computed_hash().expect("hash");
    let bad_tx = cometbft_consensus::proposal::encode(&bad).expect("encodes");
    cometbft_consensus::proposal::check(&[bad_tx], &genesis, Some(seconds))
        .expect("the bad block passes every check made without executing it");
    assert!(!holds(&lone.geth, good.hash()).await, "Geth has not imported the block it built");

    assert_eq!(process(&lone, &bad, seconds).await, i32::from(ProposalStatus::Reject), "the bad block is rejected");
    assert!(!holds(&lone.geth, bad.hash()).await, "Geth does not keep the bad block");
    assert_eq!(process(&lone, &good, seconds).await, i32::from(ProposalStatus::Accept), "the good block is accepted");
    assert!(holds(&lone.geth, good.hash()).await, "Geth executed the good block before the validator accepted it");

    let after = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(before, after, "a proposal commits nothing");
    assert_eq!(lone.geth.engine().head().await.expect("head").hash, genesis.hash, "nor moves Geth's head");
}

/// The chain's own rules, which Geth does not know: blocks Geth would call VALID, each
/// breaking one rule, are rejected before Geth is asked (it never holds them): a timestamp
/// other than the one CometBFT's block time gives, another prevRandao than the parent's
/// hash, a withdrawal (ether from nowhere), and a block on another parent than our head.
#[tokio::test]
async fn a_proposal_that_breaks_the_chains_rules_is_rejected_though_geth_would_take_it() {
    let lone = lone_app().await;
    let (genesis, good, seconds) = block_one(&lone).await;
    let engine = lone.geth.engine();
    let mut rejected = Vec::new();
    // CometBFT's block time five seconds later: the rule gives another timestamp.
    rejected.push((good.clone(), 1, seconds + 5, "the rule gives"));
    let other_randao = built_with(&engine, &genesis, seconds, |a| a.prev_randao = B256::repeat_byte(0x55)).await;
    rejected.push((other_randao, 1, seconds, "prevRandao must be the parent's hash"));
    let withdrawal = serde_json::json!({"index": "0x0", "validatorIndex": "0x0",
        "address": "0x7777777777777777777777777777777777777777", "amount": "0x3b9aca00"});
    let paid = built_with(&engine, &genesis, seconds, |a| {
        a.withdrawals = Some(vec![serde_json::from_value(withdrawal).expect("a withdrawal")]);
    })
    .await;
    rejected.push((paid, 1, seconds, "there are no withdrawals"));
    for (block, height, time, reason) in &rejected {
        assert_eq!(process_at(&lone, block, *height, *time).await, i32::from(ProposalStatus::Reject), "{reason}");
        assert!(lone.app.output().contains(reason), "rejected for {reason:?}: {}", lone.app.output());
        assert!(!holds(&lone.geth, block.hash()).await, "Geth was not asked to execute it ({reason})");
    }
    // Each breaks only that rule: Geth takes it.
    for (block, _, _, reason) in &rejected {
        let status = single_node::round::import(&engine, block).await.expect("newPayload");
        assert!(status.is_valid(), "Geth calls the block that breaks {reason:?} {status}");
    }

    // Block 1 decided, another block 1 (on genesis, built while genesis was Geth's head,
    // and VALID) proposed at height 2 is on another parent than our head.
    let sibling =
        built_with(&engine, &genesis, seconds + 1, |a| a.suggested_fee_recipient = Address::repeat_byte(9)).await;
    let (tx, _) = propose(&lone, 1, seconds).await;
    decide(&lone, 1, seconds, tx).await;
    assert_eq!(process_at(&lone, &sibling, 2, seconds + 1).await, i32::from(ProposalStatus::Reject));
    assert!(lone.app.output().contains("but our head is block 1"), "{}", lone.app.output());
    assert!(!holds(&lone.geth, sibling.hash()).await, "Geth was not asked to execute the block on another parent");
    let status = single_node::round::import(&engine, &sibling).await.expect("newPayload");
    assert!(status.is_valid(), "Geth calls the block on another parent {status}");
}

/// A block Geth builds on `parent` at `timestamp`, with the attributes changed by `change`
/// (getPayload does not import it).
async fn built_with(
    engine: &common::EngineClient,
    parent: &common::Head,
    timestamp: i64,
    change: impl FnOnce(&mut alloy_rpc_types_engine::PayloadAttributes),
) -> common::payload::ExecutableBlock {
    let timestamp = u64::try_from(timestamp).expect("a time after 1970");
    let mut attributes = common::payload::attributes(parent.hash, timestamp, Address::ZERO);
    change(&mut attributes);
    let state = alloy_rpc_types_engine::ForkchoiceState {
        head_block_hash: parent.hash,
        safe_block_hash: parent.hash,
        finalized_block_hash: parent.hash,
    };
    let updated = engine.forkchoice_updated_v3(state, Some(attributes)).await.expect("forkchoiceUpdated");
    let id = updated.payload_id.unwrap_or_else(|| panic!("Geth builds the block: {updated:?}"));
    engine.get_payload(id, timestamp).await.expect("getPayload").into()
}

/// InitChain, then block 1 built by Geth as a proposer's block is (getPayload does not
/// import it): the genesis head, the block, and its time in seconds.
async fn block_one(lone: &Lone) -> (common::Head, common::payload::ExecutableBlock, i64) {
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let engine = lone.geth.engine();
    let genesis = common::Head::from(&engine.head().await.expect("head"));
    let timestamp = common::unix_time().as_secs();
    let cancel = tokio_util::sync::CancellationToken::new();
    let build = Duration::from_millis(200);
    let block = single_node::round::build(&engine, &genesis, timestamp, Default::default(), build, &cancel)
        .await
        .expect("build")
        .expect("a block");
    (genesis, block, i64::try_from(timestamp).expect("fits"))
}

/// A validator whose Geth is down can neither check a proposal nor build one: it rejects a
/// good block it cannot execute (never accepting what it did not check), and as proposer it
/// proposes nothing, saying why (in its log, `/ready` and `/status`); it answers each
/// (within the test's 30 s) with Geth still down, so CometBFT's round goes on without it.
#[tokio::test]
async fn a_validator_whose_geth_is_down_rejects_what_it_cannot_check_and_proposes_nothing() {
    let mut lone = lone_app().await;
    let (_, good, seconds) = block_one(&lone).await;

    lone.geth.kill();
    assert_eq!(process(&lone, &good, seconds).await, i32::from(ProposalStatus::Reject), "a block it cannot execute");
    assert!(lone.app.output().contains("cannot ask Geth"), "the rejection says why: {}", lone.app.output());
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds, nanos: 0 });
    let prepare = RequestPrepareProposal { max_tx_bytes: 1 << 24, height: 1, time, ..Default::default() };
    let answer = call(&lone.abci, request::Value::PrepareProposal(prepare)).await;
    let response::Value::PrepareProposal(proposed) = answer else { panic!("{answer:?}") };
    assert!(proposed.txs.is_empty(), "nothing is proposed: {} transactions", proposed.txs.len());
    assert!(lone.app.output().contains("cannot build a proposal"), "and it says why: {}", lone.app.output());
    // `/ready` and `/status` say why, until Geth answers again.
    let ready = http_get(&format!("http://{}/ready", lone.health)).await;
    assert_eq!(ready, Some((503, "execution client unreachable\n".to_owned())));
    assert_eq!(status(&lone).await["el_reachable"], false);
    lone.geth.restart().await.expect("geth restarts");
    assert_eq!(process(&lone, &good, seconds).await, i32::from(ProposalStatus::Accept), "checked, once Geth is back");
    assert_eq!(status(&lone).await["el_reachable"], true);
}

/// The lone app's `/status`.
async fn status(lone: &Lone) -> serde_json::Value {
    let (code, body) = http_get(&format!("http://{}/status", lone.health)).await.expect("/status answers");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("/status is JSON")
}

#[tokio::test]
async fn a_proposer_proposes_only_what_fits_the_one_size_limit() {
    let lone = lone_app().await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds: 2_000_000_000, nanos: 0 });
    let prepare = |max_tx_bytes| {
        request::Value::PrepareProposal(RequestPrepareProposal { max_tx_bytes, height: 1, time, ..Default::default() })
    };
    // CometBFT's block.max_bytes, passed as max_tx_bytes, is the one limit: an empty
    // block's payload is about 1.5 kB; with room for it, it is proposed.
    let answer = call(&lone.abci, prepare(1 << 20)).await;
    let response::Value::PrepareProposal(proposed) = answer else { panic!("{answer:?}") };
    assert_eq!(proposed.txs.len(), 1, "a proposal that fits");
    // CometBFT counts the transaction as its block's protobuf `Data` encodes it (with a
    // tag and a length before it); a proposal over the limit counted that way makes it
    // panic. Exactly the room it needs: proposed.
    let size = counted(&proposed.txs);
    let answer = call(&lone.abci, prepare(size)).await;
    let response::Value::PrepareProposal(proposed) = answer else { panic!("{answer:?}") };
    assert_eq!(proposed.txs.len(), 1, "a proposal that fits exactly");
    assert_eq!(counted(&proposed.txs), size);
    // One byte less room than it needs: nothing is proposed, rather than a proposal
    // CometBFT would panic on.
    let answer = call(&lone.abci, prepare(size - 1)).await;
    let response::Value::PrepareProposal(proposed) = answer else { panic!("{answer:?}") };
    assert!(proposed.txs.is_empty(), "nothing proposed: {} txs", proposed.txs.len());
    assert!(lone.app.output().contains("does not fit in a CometBFT block"));
}

/// The size of `txs` in a CometBFT block: its protobuf `Data` message.
fn counted(txs: &[bytes::Bytes]) -> i64 {
    let data = tendermint_proto::v0_38::types::Data { txs: txs.iter().map(|tx| tx.to_vec()).collect() };
    i64::try_from(data.encoded_len()).expect("fits")
}

#[tokio::test]
async fn a_geth_that_loses_the_decided_block_before_commit_gets_it_back_from_the_store() {
    let mut lone = lone_app().await;
    // Block 1, built by Geth as a proposer's would be, and decided.
    let (_, block, seconds) = block_one(&lone).await;
    let engine = lone.geth.engine();
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds, nanos: 0 });
    let txs = vec![cometbft_consensus::proposal::encode(&block).expect("encodes")];
    let answer = call(
        &lone.abci,
        request::Value::FinalizeBlock(RequestFinalizeBlock { txs, height: 1, time, ..Default::default() }),
    )
    .await;
    let response::Value::FinalizeBlock(finalized) = answer else { panic!("{answer:?}") };
    assert_eq!(finalized.app_hash.as_ref(), block.hash().as_slice());

    // Geth loses everything after the import FinalizeBlock started, before Commit (a
    // crash, a lost disk).
    common::harness::eventually("Geth to import block 1", Duration::from_secs(60), || async {
        holds(&lone.geth, block.hash()).await.then_some(())
    })
    .await;
    lone.geth.wipe_and_restart().await.expect("geth comes back empty");
    let commit = call(&lone.abci, request::Value::Commit(Default::default()));
    let answer = tokio::time::timeout(Duration::from_secs(120), commit).await.expect("Commit answers");
    assert!(matches!(answer, response::Value::Commit(_)), "{answer:?}");
    let head = engine.head().await.expect("head");
    assert_eq!((head.number, head.hash), (1, block.hash()), "Geth got the block back from the store, as head");
    let info = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(info, (1, bytes::Bytes::copy_from_slice(block.hash().as_slice())));
}

/// The proposal PrepareProposal gives at `height` and block time `seconds`, decoded.
async fn propose(lone: &Lone, height: i64, seconds: i64) -> (bytes::Bytes, common::payload::ExecutableBlock) {
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds, nanos: 0 });
    let prepare = RequestPrepareProposal { max_tx_bytes: 1 << 20, height, time, ..Default::default() };
    let answer = call(&lone.abci, request::Value::PrepareProposal(prepare)).await;
    let response::Value::PrepareProposal(proposed) = answer else { panic!("{answer:?}") };
    let tx = proposed.txs.first().cloned().expect("a proposal");
    let block = cometbft_consensus::proposal::decode(std::slice::from_ref(&tx)).expect("decodes");
    (tx, block)
}

/// FinalizeBlock and Commit of `tx` at `height`.
async fn decide(lone: &Lone, height: i64, seconds: i64, tx: bytes::Bytes) {
    finalize(lone, height, seconds, tx).await;
    commit(lone).await;
}

/// FinalizeBlock of `tx` at `height`, with block time `seconds`.
async fn finalize(lone: &Lone, height: i64, seconds: i64, tx: bytes::Bytes) {
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds, nanos: 0 });
    let finalize = RequestFinalizeBlock { txs: vec![tx], height, time, ..Default::default() };
    let answer = call(&lone.abci, request::Value::FinalizeBlock(finalize)).await;
    assert!(matches!(answer, response::Value::FinalizeBlock(_)), "{answer:?}");
}

/// Commit of the block FinalizeBlock gave.
async fn commit(lone: &Lone) {
    let answer = call(&lone.abci, request::Value::Commit(Default::default())).await;
    assert!(matches!(answer, response::Value::Commit(_)), "{answer:?}");
}

/// The timestamp the app built block `number` ahead for, once its log says so.
async fn built_ahead(lone: &Lone, number: u64) -> u64 {
    let needle = format!("building the next block ahead number={number} timestamp=");
    common::harness::eventually("the block built ahead", Duration::from_secs(60), || async {
        let output = lone.app.output();
        let line = output.lines().find(|line| line.contains(&needle))?;
        line.split(&needle).nth(1)?.split_whitespace().next()?.parse().ok()
    })
    .await
}

async fn counter(lone: &Lone, name: &str) -> u64 {
    let (_, text) = http_get(&format!("http://{}/metrics", lone.health)).await.expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn a_block_built_ahead_is_proposed_when_the_rule_agrees_and_dropped_when_not() {
    let lone = lone_app_with(&["--build-ahead", "all"]).await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let now = i64::try_from(common::unix_time().as_secs()).expect("fits");
    let (tx, first) = propose(&lone, 1, now).await;
    decide(&lone, 1, now, tx).await;

    // Committed: the next block's build started at once, for the timestamp the rule will
    // most likely give. The next block time gives exactly that: it is used.
    let predicted = built_ahead(&lone, 2).await;
    assert!(predicted > first.timestamp());
    let (tx, second) = propose(&lone, 2, i64::try_from(predicted).expect("fits")).await;
    assert_eq!(second.timestamp(), predicted);
    assert_eq!(second.parent_hash(), first.hash());
    assert_eq!(counter(&lone, "bft_ahead_builds_used_total").await, 1);
    decide(&lone, 2, i64::try_from(predicted).expect("fits"), tx).await;

    // The next block time gives another timestamp than the one built for: dropped, and a
    // fresh block with the right timestamp is proposed.
    let predicted = built_ahead(&lone, 3).await;
    let later = i64::try_from(predicted + 100).expect("fits");
    let (_, third) = propose(&lone, 3, later).await;
    assert_eq!(third.timestamp(), predicted + 100, "the rule's timestamp, not the one built ahead");
    assert_eq!(third.parent_hash(), second.hash());
    assert_eq!(counter(&lone, "bft_ahead_builds_dropped_total").await, 1);
    assert_eq!(counter(&lone, "bft_ahead_builds_used_total").await, 1);
    assert!(lone.app.output().contains("dropping the block built ahead"));
}

/// A block built ahead that Geth can no longer give (Geth was killed and started again
/// since, and the build is gone) is dropped, and the proposer builds afresh on the same
/// parent: it still proposes, and the round is not lost.
#[tokio::test]
async fn a_block_built_ahead_that_geth_lost_is_built_afresh() {
    let mut lone = lone_app_with(&["--build-ahead", "all"]).await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let now = i64::try_from(common::unix_time().as_secs()).expect("fits");
    let (tx, first) = propose(&lone, 1, now).await;
    decide(&lone, 1, now, tx).await;
    let predicted = built_ahead(&lone, 2).await;

    lone.geth.kill();
    lone.geth.restart().await.expect("Geth starts again");
    let (_, second) = propose(&lone, 2, i64::try_from(predicted).expect("fits")).await;
    assert_eq!((second.number(), second.parent_hash(), second.timestamp()), (2, first.hash(), predicted));
    assert!(lone.app.output().contains("cannot take the block built ahead; building afresh"), "{}", lone.app.output());
    assert_eq!(counter(&lone, "bft_ahead_builds_dropped_total").await, 1);
    assert_eq!(counter(&lone, "bft_ahead_builds_used_total").await, 0);
}

/// A proposer hands its proposal over only once the wall clock has reached the block's
/// timestamp (for at most [`cometbft_consensus::proposal::MAX_HOLD`]), so the EL chain
/// never runs ahead of the clock: a fresh build goes on past its build deadline until
/// then, and a block built ahead is taken only then.
#[tokio::test]
async fn a_proposal_is_handed_over_once_the_clock_reaches_its_timestamp() {
    let lone = lone_app_with(&["--build-ahead", "all"]).await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let used = || counter(&lone, "bft_ahead_builds_used_total");
    let mut height = 1;
    loop {
        // Early in a second, a block is proposed for the next, held until it begins, past
        // its 200 ms build deadline: a fresh build for block 1 (nothing was committed yet
        // to build ahead on); later ones may be the block built ahead.
        let next = common::harness::eventually("the start of a second", Duration::from_secs(10), || async {
            let now = common::unix_time();
            (now.subsec_millis() < 200).then_some(now.as_secs() + 1)
        })
        .await;
        let (tx, block) = propose(&lone, height, i64::try_from(next).expect("fits")).await;
        let answered = common::unix_time();
        assert_eq!(block.timestamp(), next);
        assert!(answered >= Duration::from_secs(next), "a block for {next} handed over at {answered:?}");
        decide(&lone, height, i64::try_from(next).expect("fits"), tx).await;
        height += 1;

        // The next block is built ahead for the second after (its parent was decided in
        // `next`). Asked for it before that second begins, the proposer holds it until
        // then; on a busy machine the ask can come too late (or too near that second) to
        // show a hold: again.
        let predicted = built_ahead(&lone, u64::try_from(height).expect("fits")).await;
        let (asked, used_before) = (common::unix_time(), used().await);
        let (tx, block) = propose(&lone, height, i64::try_from(predicted).expect("fits")).await;
        let answered = common::unix_time();
        assert_eq!((block.timestamp(), used().await), (predicted, used_before + 1), "the block built ahead");
        assert!(
            answered >= Duration::from_secs(predicted),
            "a block built ahead for {predicted} handed over at {answered:?}"
        );
        if asked + Duration::from_millis(100) < Duration::from_secs(predicted) {
            break;
        }
        assert!(height < 8, "every PrepareProposal came after its block's timestamp: nothing showed a hold");
        decide(&lone, height, i64::try_from(predicted).expect("fits"), tx).await;
        height += 1;
    }
}

/// The next block's time is the median of the precommits that decided this one, so it is
/// at or before FinalizeBlock: the block built ahead is built for that second, not for the
/// second of the Commit, which a block that takes Geth long to make head or the store long
/// to write can push into the next one.
#[tokio::test]
async fn a_block_built_ahead_is_built_for_the_second_its_parent_was_decided_in() {
    // Every Commit counts as one after CometBFT paused (a round that took long), so the old
    // block moves the head, and the next block is built ahead on it.
    let lone = lone_app_with(&["--build-ahead", "all", "--test-catch-up-pause-ms", "0"]).await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    // Block times well in the past: the rule gives the block time, not the parent's plus one.
    let past = i64::try_from(common::unix_time().as_secs()).expect("fits") - 1_000;
    let (tx, _) = propose(&lone, 1, past).await;
    let before = common::unix_time().as_secs();
    finalize(&lone, 1, past, tx).await;
    let finalized = common::unix_time();
    // Commit comes in a later second than FinalizeBlock's answer.
    let next_second = Duration::from_secs(1) - Duration::from_nanos(u64::from(finalized.subsec_nanos()));
    tokio::time::sleep(next_second + Duration::from_millis(50)).await;
    let committing = common::unix_time().as_secs();
    assert!(committing > finalized.as_secs());
    commit(&lone).await;
    let predicted = built_ahead(&lone, 2).await;
    assert!(
        (before..=finalized.as_secs()).contains(&predicted),
        "built ahead for {predicted}: FinalizeBlock came in {before}..={}, Commit in {committing}",
        finalized.as_secs()
    );
}

/// What CometBFT is told at the start: the chain begins at height 1 (CometBFT height and
/// EL block number stay equal), and the app hash is the EL genesis hash, so validators
/// whose Geths hold different genesis blocks never agree. And transactions sent to
/// CometBFT's mempool are refused with where to send them instead. A `block.max_bytes` too
/// small for a full block is refused too, by a byte or more, and so is one too large for a
/// block to fit in one ABCI message, and so is a genesis that turns vote extensions on.
#[tokio::test]
async fn init_chain_answers_the_el_genesis_and_refuses_a_chain_that_starts_later() {
    let lone = lone_app().await;
    let later = RequestInitChain { initial_height: 5, ..Default::default() };
    let answer = call(&lone.abci, request::Value::InitChain(later)).await;
    assert!(matches!(answer, response::Value::Exception(ref e) if e.error.contains("initial_height 1")), "{answer:?}");
    assert_eq!(height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await).0, 0);
    // A block.max_bytes a full block does not fit in, by a byte or by much: the chain would
    // stop once Geth's pool filled a block, so it never starts. Nor does one whose blocks
    // may not fit in one ABCI message, CometBFT's -1 (its 100 MiB) among them. Exactly the
    // room a full block needs is enough, and so is the largest limit the app accepts (half
    // of what it reads in one message).
    let genesis_block = lone.geth.engine().block(common::BlockTag::Number(0)).await.expect("block 0").expect("block 0");
    let needed = i64::try_from(cometbft_consensus::proposal::largest_payload(genesis_block.gas_limit)).expect("fits");
    let init_with = |max_bytes| {
        let block = tendermint_proto::v0_38::types::BlockParams { max_bytes, max_gas: -1 };
        let params = tendermint_proto::v0_38::types::ConsensusParams { block: Some(block), ..Default::default() };
        request::Value::InitChain(RequestInitChain {
            initial_height: 1,
            consensus_params: Some(params),
            ..Default::default()
        })
    };
    for max_bytes in [1 << 20, needed - 1] {
        let answer = call(&lone.abci, init_with(max_bytes)).await;
        assert!(
            matches!(answer, response::Value::Exception(ref e) if e.error.contains("raise block.max_bytes")),
            "block.max_bytes = {max_bytes}: {answer:?}"
        );
    }
    for max_bytes in [-1, cometbft_consensus::proposal::MAX_BLOCK_BYTES + 1] {
        let answer = call(&lone.abci, init_with(max_bytes)).await;
        assert!(
            matches!(answer, response::Value::Exception(ref e) if e.error.contains("lower block.max_bytes")),
            "block.max_bytes = {max_bytes}: {answer:?}"
        );
    }
    for max_bytes in [needed, cometbft_consensus::proposal::MAX_BLOCK_BYTES] {
        let answer = call(&lone.abci, init_with(max_bytes)).await;
        assert!(matches!(answer, response::Value::InitChain(_)), "block.max_bytes = {max_bytes}: {answer:?}");
    }
    // Vote extensions turned on: refused, as the app makes none.
    let abci = tendermint_proto::v0_38::types::AbciParams { vote_extensions_enable_height: 1 };
    let params = tendermint_proto::v0_38::types::ConsensusParams { abci: Some(abci), ..Default::default() };
    let init = RequestInitChain { initial_height: 1, consensus_params: Some(params), ..Default::default() };
    let answer = call(&lone.abci, request::Value::InitChain(init)).await;
    assert!(matches!(answer, response::Value::Exception(ref e) if e.error.contains("vote extensions")), "{answer:?}");

    let answer =
        call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let response::Value::InitChain(init) = answer else { panic!("{answer:?}") };
    let genesis = lone.geth.engine().head().await.expect("head");
    assert_eq!(init.app_hash.as_ref(), genesis.hash.as_slice(), "the app hash starts as the EL genesis hash");

    let answer = call(&lone.abci, request::Value::CheckTx(Default::default())).await;
    let response::Value::CheckTx(check) = answer else { panic!("{answer:?}") };
    assert_ne!(check.code, 0, "CometBFT's mempool takes nothing");
    assert!(check.log.contains("eth_sendRawTransaction"), "and says where transactions go: {}", check.log);
}

/// A node whose Geth holds another chain than the one the network's genesis names
/// (`app_state`, as `scripts/bft.sh` writes it: block 0, chain id, fork id and genesis
/// forks): InitChain refuses, naming both chains, and records no chain; CometBFT's
/// handshake then stops with that error. Without the check CometBFT would take our app hash
/// and refuse block 1 ("wrong Block.Header.AppHash") from every peer, for ever; and a Geth
/// whose genesis differs only in its config (not in block 0) would refuse the first
/// transaction (another chain id) or part from the network at a fork (another fork time,
/// another fork at block 0, or other blob parameters). The chain it names is accepted, a
/// genesis without `app_state`, or without the chain id, the fork id, the genesis forks or
/// the blob schedule (networks made before each was written), is not checked, or not for
/// those, with a warning that names what is left out, and an `app_state` of another shape
/// is refused.
#[tokio::test]
async fn init_chain_refuses_a_geth_of_another_chain_than_the_network_genesis_names() {
    let lone = lone_app().await;
    let chain = lone.geth.el_chain().await.expect("the Geth's chain");
    let (ours, chain_id, fork_id) = (chain.genesis, chain.chain_id.expect("chain id"), chain.fork_id.expect("fork id"));
    let genesis_forks = chain.genesis_forks.expect("genesis forks");
    let blob_schedule = chain.blob_schedule.expect("blob schedule");
    let theirs = alloy_primitives::B256::repeat_byte(0x33);
    let init_naming = |app_state: &str| {
        request::Value::InitChain(RequestInitChain {
            initial_height: 1,
            app_state_bytes: app_state.as_bytes().to_vec().into(),
            ..Default::default()
        })
    };
    let no_chain_recorded = || async {
        assert_eq!(
            height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await),
            (0, bytes::Bytes::new()),
            "no chain was recorded"
        );
    };

    let answer =
        call(&lone.abci, init_naming(&format!(r#"{{"el_genesis_hash":"{theirs}","el_chain_id":{chain_id}}}"#))).await;
    let response::Value::Exception(refused) = answer else { panic!("another chain's block 0 is refused: {answer:?}") };
    assert!(
        refused.error.contains(&format!("block 0 {ours}")) && refused.error.contains(&format!("block 0 {theirs}")),
        "the error names both blocks 0: {}",
        refused.error
    );
    assert!(refused.error.contains("initialise it again"), "and says what to do: {}", refused.error);
    no_chain_recorded().await;
    // The same block 0 on another chain: a genesis file that differs only in its config. In
    // its chain id; in a fork time (another fork id); in a fork at block 0 (Osaka, or a BPO
    // fork, at 0 gives the same block 0); or in its `blobSchedule`.
    let other_id = chain_id + 1;
    let other_fork = alloy_primitives::FixedBytes::<4>::repeat_byte(0x44);
    let other_forks = alloy_primitives::FixedBytes::<4>::repeat_byte(0x55);
    let other_blobs = alloy_primitives::FixedBytes::<4>::repeat_byte(0x66);
    let named = format!(r#""el_genesis_hash":"{ours}","el_chain_id":{chain_id},"el_fork_id":"{fork_id}""#);
    let named_forks = format!(r#"{named},"el_genesis_forks":"{genesis_forks}""#);
    let cases = [
        (
            "another chain id",
            format!(r#"{{"el_genesis_hash":"{ours}","el_chain_id":{other_id}}}"#),
            format!("has chain id {chain_id}, block 0 {ours}"),
            format!("names chain id {other_id}, block 0 {ours}"),
        ),
        (
            "another fork id",
            format!(r#"{{"el_genesis_hash":"{ours}","el_chain_id":{chain_id},"el_fork_id":"{other_fork}"}}"#),
            format!("has chain id {chain_id}, block 0 {ours}, fork id {fork_id}"),
            format!("names chain id {chain_id}, block 0 {ours}, fork id {other_fork}"),
        ),
        (
            "other genesis forks",
            format!(r#"{{{named},"el_genesis_forks":"{other_forks}"}}"#),
            format!("has chain id {chain_id}, block 0 {ours}, fork id {fork_id}, genesis forks {genesis_forks}"),
            format!("names chain id {chain_id}, block 0 {ours}, fork id {fork_id}, genesis forks {other_forks}"),
        ),
        (
            "another blob schedule",
            format!(r#"{{{named_forks},"el_blob_schedule":"{other_blobs}"}}"#),
            format!("genesis forks {genesis_forks}, blob schedule {blob_schedule}, but"),
            format!("genesis forks {genesis_forks}, blob schedule {other_blobs} ("),
        ),
    ];
    for (what, app_state, has, names) in cases {
        let answer = call(&lone.abci, init_naming(&app_state)).await;
        let response::Value::Exception(refused) = answer else { panic!("{what} is refused: {answer:?}") };
        assert!(
            refused.error.contains(&has) && refused.error.contains(&names),
            "{what}: the error names both chains: {}",
            refused.error
        );
        no_chain_recorded().await;
    }
    for shape in [
        r#"{"genesis":"0x00"}"#,
        r#"{"el_genesis_hash":"0x1234"}"#,
        &format!(r#"{{"el_genesis_hash":"{ours}","el_chain_id":"one"}}"#),
        &format!(r#"{{"el_genesis_hash":"{ours}","el_chain_id":{chain_id},"more":1}}"#),
        &format!(r#"{{"el_genesis_hash":"{ours}","el_chain_id":{chain_id},"el_fork_id":"0x12"}}"#),
        &format!(r#"{{{named},"el_genesis_forks":"osaka"}}"#),
        &format!(r#"{{{named_forks},"el_blob_schedule":6}}"#),
        "[]",
    ] {
        let answer = call(&lone.abci, init_naming(shape)).await;
        assert!(
            matches!(answer, response::Value::Exception(ref e) if e.error.contains("app_state must be")),
            "app_state {shape}: {answer:?}"
        );
    }
    no_chain_recorded().await;

    // What a genesis leaves out is warned of (logged before the answer, to stderr, which
    // is unbuffered): nothing for one naming all of it.
    let left_out = || -> Vec<String> {
        let output = lone.app.output();
        output.lines().filter(|line| line.contains("names less than this version writes")).map(String::from).collect()
    };
    let answer =
        call(&lone.abci, init_naming(&format!(r#"{{{named_forks},"el_blob_schedule":"{blob_schedule}"}}"#))).await;
    let response::Value::InitChain(init) = answer else { panic!("our own chain is accepted: {answer:?}") };
    assert_eq!(init.app_hash.as_ref(), ours.as_slice());
    assert_eq!(left_out(), Vec::<String>::new(), "a genesis naming the whole chain is warned of");
    let answer = call(&lone.abci, init_naming(&format!("{{{named_forks}}}"))).await;
    assert!(
        matches!(answer, response::Value::InitChain(_)),
        "a genesis naming no blob schedule is checked on the rest: {answer:?}"
    );
    let warned = left_out();
    assert!(warned.len() == 1 && warned[0].contains("unnamed=\"blob schedule\""), "{warned:?}");
    let answer = call(&lone.abci, init_naming(&format!("{{{named}}}"))).await;
    assert!(
        matches!(answer, response::Value::InitChain(_)),
        "a genesis naming no genesis forks is checked on the rest: {answer:?}"
    );
    let warned = left_out();
    assert!(warned.len() == 2 && warned[1].contains("unnamed=\"genesis forks, blob schedule\""), "{warned:?}");
    let answer =
        call(&lone.abci, init_naming(&format!(r#"{{"el_genesis_hash":"{ours}","el_chain_id":{chain_id}}}"#))).await;
    assert!(
        matches!(answer, response::Value::InitChain(_)),
        "a genesis naming block 0 and the chain id is checked on them: {answer:?}"
    );
    let answer = call(&lone.abci, init_naming(&format!(r#"{{"el_genesis_hash":"{ours}"}}"#))).await;
    assert!(
        matches!(answer, response::Value::InitChain(_)),
        "a genesis naming block 0 alone is checked on it: {answer:?}"
    );
    let warning = "the CometBFT genesis names no EL chain";
    assert!(!lone.app.output().contains(warning));
    let answer = call(&lone.abci, init_naming("")).await;
    assert!(matches!(answer, response::Value::InitChain(_)), "a genesis without app_state is not checked: {answer:?}");
    assert!(lone.app.output().contains(warning), "and the app says so: {}", lone.app.output());
}

/// State sync, joining: the app takes a snapshot of its own format only, and a chunk only
/// if it names the very block CometBFT's light client verified (the app hash) and hashes to
/// the snapshot's hash. A peer that sends another block is rejected, and Geth is never
/// pointed at it: its head and the app's stay where they were. The restore is CometBFT's
/// snapshot connection's alone: a stray client can neither offer nor apply meanwhile, and
/// once that connection closes its offer is void.
#[tokio::test]
async fn a_snapshot_chunk_that_does_not_name_the_verified_block_is_rejected_and_geth_is_left_alone() {
    use alloy_primitives::{B256, keccak256};
    use tendermint_proto::v0_38::abci::{
        RequestApplySnapshotChunk, RequestOfferSnapshot, Snapshot, response_apply_snapshot_chunk,
        response_offer_snapshot,
    };

    let lone = lone_app().await;
    let verified = B256::repeat_byte(0x11);
    let chain = lone.geth.el_chain().await.expect("the Geth's chain");
    let chunk_naming = |hash: B256| snapshot_chunk(chain, hash);
    let offer = |chunk: &bytes::Bytes, format: u32| {
        let hash = keccak256(chunk).to_vec().into();
        let snapshot = Snapshot { height: 64, format, chunks: 1, hash, metadata: Default::default() };
        request::Value::OfferSnapshot(RequestOfferSnapshot {
            snapshot: Some(snapshot),
            app_hash: verified.to_vec().into(),
        })
    };
    let apply = |chunk: bytes::Bytes| {
        request::Value::ApplySnapshotChunk(RequestApplySnapshotChunk { index: 0, chunk, sender: "peer".into() })
    };
    let offered = |answer: Option<response::Value>| match answer {
        Some(response::Value::OfferSnapshot(r)) => r.result,
        other => panic!("{other:?}"),
    };
    let applied = |answer: Option<response::Value>| match answer {
        Some(response::Value::ApplySnapshotChunk(r)) => (r.result, r.reject_senders),
        other => panic!("{other:?}"),
    };
    let rejected = (response_apply_snapshot_chunk::Result::RejectSnapshot as i32, vec!["peer".to_owned()]);
    let accepted = response_offer_snapshot::Result::Accept as i32;

    let mut comet = Connection::open(&lone.abci).await;
    let other_block = chunk_naming(B256::repeat_byte(0x22));
    for format in [1, 3] {
        assert_eq!(
            offered(comet.call(offer(&other_block, format)).await),
            response_offer_snapshot::Result::RejectFormat as i32,
            "format {format}, which the app does not take (1 was the head alone)"
        );
    }
    assert_eq!(offered(comet.call(offer(&other_block, 2)).await), accepted);
    assert_eq!(applied(comet.call(apply(other_block.clone())).await), rejected, "a chunk naming another block");

    let right_block = chunk_naming(verified);
    assert_eq!(offered(comet.call(offer(&right_block, 2)).await), accepted);
    let tampered = chunk_naming(verified).iter().copied().chain(*b" ").collect::<Vec<u8>>().into();
    assert_eq!(applied(comet.call(apply(tampered)).await), rejected, "a chunk that is not the snapshot's");

    assert_eq!(offered(comet.call(offer(&right_block, 2)).await), accepted);
    let mut stray = Connection::open(&lone.abci).await;
    for request in [offer(&other_block, 2), apply(other_block.clone())] {
        let answer = stray.call(request).await;
        assert!(matches!(answer, Some(response::Value::Exception(_))), "a stray client restores nothing: {answer:?}");
    }
    drop(comet);
    // The app sees the connection close a moment later; until then the stray is refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let result = loop {
        if let Some(response::Value::ApplySnapshotChunk(r)) = stray.call(apply(right_block.clone())).await {
            break r.result;
        }
        assert!(tokio::time::Instant::now() < deadline, "the app did not see the connection close within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        result,
        response_apply_snapshot_chunk::Result::Abort as i32,
        "once the connection that was offered the snapshot closed, nobody can apply a chunk to it"
    );

    assert_eq!(lone.geth.engine().head().await.expect("head").number, 0, "Geth was never pointed elsewhere");
    assert_eq!(height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await).0, 0);
}

/// State sync, restarting: a validator down for longer than the network's retained window
/// has blocks of its own already. Its app takes a snapshot above its head (Geth syncs to
/// that block, here a block it holds but never made head) and moves its head there, and
/// refuses one below its head, which would move its chain back.
#[tokio::test]
async fn a_node_with_blocks_restores_a_snapshot_above_its_head_and_refuses_one_below() {
    use tendermint_proto::v0_38::abci::{
        RequestApplySnapshotChunk, RequestOfferSnapshot, Snapshot, response_apply_snapshot_chunk,
        response_offer_snapshot,
    };

    let lone = lone_app().await;
    call(&lone.abci, init_chain()).await;
    let now = i64::try_from(common::unix_time().as_secs()).expect("fits");
    let (tx, first) = propose(&lone, 1, now).await;
    decide(&lone, 1, now, tx).await;
    let (tx, _) = propose(&lone, 2, now + 1).await;
    decide(&lone, 2, now + 1, tx).await;
    // Block 3, as the network decided it while this node was away: its Geth holds it (as
    // it would once synced from its peers) but it is not head.
    let (_, third) = propose(&lone, 3, now + 2).await;
    let engine = lone.geth.engine();
    assert!(single_node::round::import(&engine, &third).await.expect("newPayload").is_valid());

    let chain = lone.geth.el_chain().await.expect("the Geth's chain");
    let mut comet = Connection::open(&lone.abci).await;
    let offer = |head: common::Head| {
        let chunk = snapshot_chunk_of(chain, head);
        let hash = alloy_primitives::keccak256(&chunk).to_vec().into();
        let snapshot = Snapshot { height: head.number, format: 2, chunks: 1, hash, metadata: Default::default() };
        let request = RequestOfferSnapshot { snapshot: Some(snapshot), app_hash: head.hash.to_vec().into() };
        (request::Value::OfferSnapshot(request), chunk)
    };
    let offered = |answer: Option<response::Value>| match answer {
        Some(response::Value::OfferSnapshot(r)) => r.result,
        other => panic!("{other:?}"),
    };

    let (below, _) = offer(first.head());
    assert_eq!(offered(comet.call(below).await), response_offer_snapshot::Result::Reject as i32, "below our head");
    assert!(lone.app.output().contains("refused a snapshot below our head"), "{}", lone.app.output());

    let (above, chunk) = offer(third.head());
    assert_eq!(offered(comet.call(above).await), response_offer_snapshot::Result::Accept as i32, "above our head");
    let apply = RequestApplySnapshotChunk { index: 0, chunk, sender: "peer".into() };
    let answer = comet.call(request::Value::ApplySnapshotChunk(apply)).await;
    let Some(response::Value::ApplySnapshotChunk(applied)) = answer else { panic!("{answer:?}") };
    assert_eq!(applied.result, response_apply_snapshot_chunk::Result::Accept as i32, "{}", lone.app.output());
    let info = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(info, (3, third.hash().to_vec().into()), "the app's head is the snapshot's block");
    let status = status(&lone).await;
    assert_eq!((&status["height"], &status["head"]["number"]), (&3.into(), &3.into()), "and /status's: {status}");
    assert_eq!(counter(&lone, "bft_height").await, 3, "and the height metric");
    assert_eq!(counter(&lone, "bft_head_timestamp_seconds").await, third.timestamp(), "and the head's time");
    assert_eq!(engine.head().await.expect("head").hash, third.hash(), "and Geth's");
}

/// A snapshot chunk as validators serve it (format 2): the chain (block 0, chain id, fork
/// id, genesis forks, blob schedule), and the EL block at height 64, named by `hash`.
fn snapshot_chunk(chain: ElChain, hash: alloy_primitives::B256) -> bytes::Bytes {
    snapshot_chunk_of(chain, common::Head { number: 64, hash, timestamp: 64 })
}

/// A snapshot chunk of the block `head`.
fn snapshot_chunk_of(chain: ElChain, head: common::Head) -> bytes::Bytes {
    let chunk = serde_json::json!({
        "genesis": chain.genesis,
        "chain_id": chain.chain_id,
        "fork_id": chain.fork_id,
        "genesis_forks": chain.genesis_forks,
        "blob_schedule": chain.blob_schedule,
        "head": head,
    });
    serde_json::to_vec(&chunk).expect("json").into()
}

/// State sync, joining on a Geth of another chain (initialised from another genesis file,
/// or on another chain's datadir): Geth's peers would refuse it, so it could never sync
/// to the snapshot's block, or, for a fork still ahead, it would sync and part from the
/// chain there. The app says so at once, naming both chains, and rejects the snapshot and
/// its sender (either could be wrong); Geth is left alone. Another block 0, and the same
/// block 0 on another chain id, another fork schedule, other forks at block 0 or other blob
/// parameters (a genesis file that differs only in its config). Without the check the
/// restore waits for that sync (here, for ever: the block named is no block), and this
/// test's call times out.
#[tokio::test]
async fn a_snapshot_of_another_chain_than_our_geths_is_refused_with_a_clear_error() {
    use alloy_primitives::{B256, FixedBytes, keccak256};
    use tendermint_proto::v0_38::abci::{
        RequestApplySnapshotChunk, RequestOfferSnapshot, Snapshot, response_apply_snapshot_chunk,
        response_offer_snapshot,
    };

    let lone = lone_app().await;
    let ours = lone.geth.el_chain().await.expect("the Geth's chain");
    let verified = B256::repeat_byte(0x11);
    let mut comet = Connection::open(&lone.abci).await;
    for theirs in [
        ElChain { genesis: B256::repeat_byte(0x33), ..ours },
        ElChain { chain_id: ours.chain_id.map(|id| id + 1), ..ours },
        ElChain { fork_id: Some(FixedBytes::repeat_byte(0x44)), ..ours },
        ElChain { genesis_forks: Some(FixedBytes::repeat_byte(0x55)), ..ours },
        ElChain { blob_schedule: Some(FixedBytes::repeat_byte(0x66)), ..ours },
    ] {
        let chunk = snapshot_chunk(theirs, verified);
        let snapshot = Snapshot {
            height: 64,
            format: 2,
            chunks: 1,
            hash: keccak256(&chunk).to_vec().into(),
            metadata: Default::default(),
        };
        let answer = comet
            .call(request::Value::OfferSnapshot(RequestOfferSnapshot {
                snapshot: Some(snapshot),
                app_hash: verified.to_vec().into(),
            }))
            .await;
        assert!(
            matches!(&answer, Some(response::Value::OfferSnapshot(r)) if r.result == response_offer_snapshot::Result::Accept as i32),
            "the offer is of our format, and nothing says yet which chain it is: {answer:?}"
        );
        let answer = comet
            .call(request::Value::ApplySnapshotChunk(RequestApplySnapshotChunk {
                index: 0,
                chunk,
                sender: "peer".into(),
            }))
            .await;
        let Some(response::Value::ApplySnapshotChunk(applied)) = answer else { panic!("{answer:?}") };
        assert_eq!(
            (applied.result, applied.reject_senders),
            (response_apply_snapshot_chunk::Result::RejectSnapshot as i32, vec!["peer".to_owned()]),
            "a snapshot of {theirs:?}"
        );
        let output = lone.app.output();
        let said = output.lines().filter(|line| line.contains("the snapshot's chain is another than ours"));
        assert!(
            said.into_iter().any(|line| line.contains(&ours.to_string()) && line.contains(&theirs.to_string())),
            "the app says the snapshot is of another chain, naming both:\n{output}"
        );
    }
    assert_eq!(lone.geth.engine().head().await.expect("head").number, 0, "Geth was never pointed elsewhere");
    assert_eq!(height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await).0, 0);
}

/// The faulty proposer of `--test-corrupt-proposals` proposes a block with a wrong state
/// root: its own ProcessProposal rejects it, and if the network decided it anyway (more
/// than a third faulty), Commit (which waits for the import FinalizeBlock started) stops
/// with Geth's INVALID instead of retrying or pretending: nothing is committed, and
/// Geth's head does not move.
#[tokio::test]
async fn a_decided_block_geth_calls_invalid_is_refused_and_commits_nothing() {
    let lone = lone_app_with(&["--test-corrupt-proposals"]).await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let before = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    let genesis = lone.geth.engine().head().await.expect("head");
    let now = i64::try_from(common::unix_time().as_secs()).expect("fits");
    let (tx, bad) = propose(&lone, 1, now).await;
    assert_eq!(bad.execution_payload.payload_inner.payload_inner.state_root, alloy_primitives::B256::repeat_byte(0xbd));
    assert_eq!(process(&lone, &bad, now).await, i32::from(ProposalStatus::Reject), "its own Geth rejects it");

    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds: now, nanos: 0 });
    let finalize = RequestFinalizeBlock { txs: vec![tx], height: 1, time, ..Default::default() };
    let answer = call(&lone.abci, request::Value::FinalizeBlock(finalize)).await;
    assert!(matches!(answer, response::Value::FinalizeBlock(_)), "{answer:?}");
    let answer = call(&lone.abci, request::Value::Commit(Default::default())).await;
    assert!(matches!(answer, response::Value::Exception(ref e) if e.error.contains("INVALID")), "{answer:?}");
    let after = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(before, after, "nothing was committed");
    assert_eq!(lone.geth.engine().head().await.expect("head").hash, genesis.hash, "Geth's head did not move");
}

/// While block sync catches up (old blocks, back to back), Commit stores a decided block
/// whose import may still be running. If Geth then calls it
/// INVALID, the next call that waits for the import answers with the exception and takes
/// the block out of the store again: the store keeps only blocks this Geth found VALID,
/// and a restarted CometBFT gives the block again. Here the next call is a proposal.
#[tokio::test]
async fn a_block_stored_while_catching_up_and_then_found_invalid_is_taken_out_of_the_store() {
    stored_while_catching_up_then_found_invalid(|past, _| {
        let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds: past + 1, nanos: 0 });
        request::Value::ProcessProposal(RequestProcessProposal { height: 2, time, ..Default::default() })
    })
    .await;
}

/// The same, with the call block sync itself makes next: FinalizeBlock of the following
/// block. It waits for the last block's import before it looks at its own, so the block
/// Geth calls INVALID stops the node there and is taken out of the store. (Block sync
/// gives no proposal to wait in its place: without this wait the INVALID verdict would be
/// lost, and the block left stored.)
#[tokio::test]
async fn a_block_found_invalid_while_catching_up_stops_the_next_finalize_block_and_is_taken_out_of_the_store() {
    stored_while_catching_up_then_found_invalid(|past, first| {
        // Block 2 on block 1, as the network would have decided it (made by hand here: no
        // Geth builds on a block it calls INVALID).
        let mut second = first.clone();
        let inner = &mut second.execution_payload.payload_inner.payload_inner;
        inner.parent_hash = first.hash();
        inner.block_number = 2;
        inner.timestamp += 1;
        second.execution_payload.payload_inner.payload_inner.block_hash = second.computed_hash().expect("hash");
        let txs = vec![cometbft_consensus::proposal::encode(&second).expect("encode")];
        let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds: past + 1, nanos: 0 });
        request::Value::FinalizeBlock(RequestFinalizeBlock { txs, height: 2, time, ..Default::default() })
    })
    .await;
}

/// While catching up, Commit does not wait for an import that still runs, but one that has
/// ended is its answer: a block Geth has already called INVALID is refused at Commit, and
/// never stored (an app that crashed with it stored would stop at Geth's INVALID on every
/// start, when it gives its stored blocks to Geth).
#[tokio::test]
async fn a_block_found_invalid_while_catching_up_before_its_commit_is_not_stored() {
    let lone = lone_app_with(&["--test-corrupt-proposals", "--test-catch-up-pause-ms", "3600000"]).await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let before = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    let past = i64::try_from(common::unix_time().as_secs()).expect("fits") - 60;
    let (tx, _bad) = propose(&lone, 1, past).await;
    finalize(&lone, 1, past, tx).await;
    common::harness::eventually("the import's INVALID in the app's log", Duration::from_secs(60), || async {
        lone.app.output().contains("the decided block's import failed").then_some(())
    })
    .await;
    let answer = call(&lone.abci, request::Value::Commit(Default::default())).await;
    assert!(
        matches!(answer, response::Value::Exception(ref e) if e.error.contains("INVALID")),
        "Commit of a block Geth has called INVALID answers Geth's verdict: {answer:?}"
    );
    let after = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(after, before, "nothing was stored");
}

/// Block 1 (one Geth calls INVALID) is finalized and committed while its import waits on
/// a hung Geth, as block sync does; then `next` (at height 2) must answer Geth's INVALID
/// and leave the store, Geth and the app where they were before block 1.
async fn stored_while_catching_up_then_found_invalid(
    next: impl FnOnce(i64, &common::payload::ExecutableBlock) -> request::Value,
) {
    let args = ["--test-corrupt-proposals", "--test-catch-up-pause-ms", "3600000"];
    let mut lone = lone_app_with(&args).await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let before = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    let genesis = lone.geth.engine().head().await.expect("head");
    let past = i64::try_from(common::unix_time().as_secs()).expect("fits") - 60;
    let (tx, bad) = propose(&lone, 1, past).await;

    // Geth hangs, so the import FinalizeBlock starts is still waiting at Commit.
    lone.geth.signal(libc::SIGSTOP);
    finalize(&lone, 1, past, tx).await;
    commit(&lone).await;
    let stored = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(stored.0, 1, "Commit stored the block while its import waited for Geth");

    lone.geth.signal(libc::SIGCONT);
    let answer = call(&lone.abci, next(past, &bad)).await;
    assert!(
        matches!(answer, response::Value::Exception(ref e) if e.error.contains("INVALID")),
        "the call after the block Geth calls INVALID answers Geth's verdict: {answer:?}"
    );
    let after = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(after, before, "the app's head is back on its parent");
    let status = status(&lone).await;
    assert_eq!((&status["height"], &status["head"]["number"]), (&0.into(), &0.into()), "and /status says so: {status}");
    assert_eq!(counter(&lone, "bft_height").await, 0, "and the height metric");
    assert_eq!(counter(&lone, "bft_head_timestamp_seconds").await, genesis.timestamp, "and the head's time");
    assert_eq!(lone.geth.engine().head().await.expect("head").hash, genesis.hash, "Geth's head did not move");
    assert_eq!(counter(&lone, r#"bft_errors_total{kind="decided_invalid"}"#).await, 1, "and the finding is counted");
    // What the store holds, read by the app started again on it (with block 1 still
    // stored, its reconcile at start would give it to Geth, and stop at Geth's INVALID).
    lone.app.kill();
    restart_app(&mut lone, &args).await;
    let restarted = height_and_hash(call(&lone.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(restarted, before, "the block Geth calls INVALID is out of the store");
}

/// While block sync catches up, Commit makes a block Geth's head only at every 64th block
/// (`REPLAY_HEAD_EVERY`), as a replay does: each move costs Geth more than a small block's
/// execution. The blocks between are executed and stored, and the 64th makes them
/// canonical. Here one app makes 65 blocks, and a second, on an empty Geth, is given them
/// as block sync gives them: old, and back to back. What counts as CometBFT pausing is an
/// hour here, so that the test's own pace never does. The 65th block is young, as the
/// first that consensus decides after block sync: it is made head at once.
#[tokio::test]
async fn while_catching_up_geths_head_moves_at_every_64th_block() {
    let every = i64::try_from(single_node::store::REPLAY_HEAD_EVERY).expect("fits");
    let start = i64::try_from(common::unix_time().as_secs()).expect("fits") - 600;
    let now = start + 600;
    let times: Vec<i64> = (1..=every).map(|height| start + height).chain([now]).collect();
    let txs = made_blocks(&times).await;
    let joiner = lone_app_with(&["--test-catch-up-pause-ms", "3600000"]).await;
    call(&joiner.abci, init_chain()).await;
    for ((height, tx), made_at) in (1..).zip(txs).zip(times) {
        // The young block's time is when the network decides it, now.
        let time = if height > every { i64::try_from(common::unix_time().as_secs()).expect("fits") } else { made_at };
        decide(&joiner, height, time, tx).await;
        let stored = height_and_hash(call(&joiner.abci, request::Value::Info(RequestInfo::default())).await).0;
        assert_eq!(stored, height, "Commit stored block {height}");
        let head = joiner.geth.engine().head().await.expect("head").number;
        let expected = if height >= every { height } else { 0 };
        assert_eq!(head, u64::try_from(expected).expect("fits"), "Geth's head after Commit of block {height}");
        // `/status` gives the stored head, wherever Geth's head is.
        let status = status(&joiner).await;
        assert_eq!((&status["height"], &status["head"]["number"]), (&height.into(), &height.into()), "{status}");
    }
}

/// When block sync has given its last block, and CometBFT gives no more (it waits for
/// consensus, or lost its peers), the block Commit held back becomes Geth's head once
/// CometBFT pauses (30 s here, so that the test's own pace never counts as a pause),
/// without a further block.
#[tokio::test]
async fn when_catching_up_stops_the_last_block_becomes_geths_head() {
    let start = i64::try_from(common::unix_time().as_secs()).expect("fits") - 600;
    let times = [start + 1, start + 2, start + 3];
    let txs = made_blocks(&times).await;
    let joiner = lone_app_with(&["--test-catch-up-pause-ms", "30000"]).await;
    call(&joiner.abci, init_chain()).await;
    for ((height, tx), time) in (1..).zip(txs).zip(times) {
        decide(&joiner, height, time, tx).await;
    }
    let held = joiner.geth.engine().head().await.expect("head").number;
    assert_eq!(held, 0, "the blocks came back to back: Commit held them back");
    let third = height_and_hash(call(&joiner.abci, request::Value::Info(RequestInfo::default())).await);
    assert_eq!(third.0, 3, "Commit stored every block");
    common::harness::eventually("block 3 as Geth's head", Duration::from_secs(120), || async {
        let head = joiner.geth.engine().head().await.ok()?;
        (head.number == 3).then_some(head)
    })
    .await;
    let head = joiner.geth.engine().head().await.expect("head");
    assert_eq!(head.hash.as_slice(), &third.1[..], "the stored block 3 is Geth's head");
    // The app logs the move once forkchoiceUpdated has returned, a moment after Geth's
    // head moved: give the line that moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !joiner.app.output().contains("made the last one Geth's head number=3")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        joiner.app.output().contains("made the last one Geth's head number=3"),
        "the pause moved the head, not a Commit:\n{}",
        joiner.app.output()
    );
}

/// Blocks made by one app, at the block times `times` (heights 1, 2, ...): the
/// transactions that carry them. The app and its Geth are gone afterwards, so that the next
/// app's Geth does not wait for a slot behind them.
async fn made_blocks(times: &[i64]) -> Vec<bytes::Bytes> {
    let maker = lone_app().await;
    call(&maker.abci, init_chain()).await;
    let mut txs = Vec::new();
    for (height, &time) in (1..).zip(times) {
        let (tx, _) = propose(&maker, height, time).await;
        decide(&maker, height, time, tx.clone()).await;
        txs.push(tx);
    }
    txs
}

fn init_chain() -> request::Value {
    request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })
}

/// A validator whose Geth lost its blocks (wiped, restarted from genesis) is repaired
/// from the app's store before it votes, before it executes a decided block, and before it
/// builds a proposal: Geth's
/// SYNCING is a wait, never a verdict. FinalizeBlock answers what CometBFT checks: one
/// result per transaction, the block hash as app hash, and the rounds it took counted.
#[tokio::test]
async fn a_geth_that_lost_its_blocks_is_repaired_before_it_votes_executes_or_proposes() {
    let mut lone = lone_app().await;
    call(&lone.abci, request::Value::InitChain(RequestInitChain { initial_height: 1, ..Default::default() })).await;
    let now = i64::try_from(common::unix_time().as_secs()).expect("fits");
    let (tx, _) = propose(&lone, 1, now).await;
    decide(&lone, 1, now, tx).await;
    let (tx, second) = propose(&lone, 2, now + 1).await;

    lone.geth.wipe_and_restart().await.expect("geth comes back empty");
    assert_eq!(process(&lone, &second, now + 1).await, i32::from(ProposalStatus::Accept), "repaired, then VALID");

    lone.geth.wipe_and_restart().await.expect("geth comes back empty");
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds: now + 1, nanos: 0 });
    let last_commit = Some(tendermint_proto::v0_38::abci::CommitInfo { round: 2, votes: Vec::new() });
    let finalize =
        RequestFinalizeBlock { txs: vec![tx], height: 2, time, decided_last_commit: last_commit, ..Default::default() };
    let answer = call(&lone.abci, request::Value::FinalizeBlock(finalize)).await;
    let response::Value::FinalizeBlock(finalized) = answer else { panic!("{answer:?}") };
    assert_eq!(finalized.app_hash.as_ref(), second.hash().as_slice());
    assert_eq!(finalized.tx_results.len(), 1, "one result per transaction, as CometBFT requires");
    assert_eq!(counter(&lone, "bft_round_changes_total").await, 2, "the two rounds beyond the first");
    let answer = call(&lone.abci, request::Value::Commit(Default::default())).await;
    assert!(matches!(answer, response::Value::Commit(_)), "{answer:?}");
    let head = lone.geth.engine().head().await.expect("head");
    assert_eq!((head.number, head.hash), (2, second.hash()));

    // And before it proposes: Geth wiped again (the block it built ahead is lost with it),
    // the proposer's build repairs it first, and proposes block 3 on block 2.
    lone.geth.wipe_and_restart().await.expect("geth comes back empty");
    let (_, third) = propose(&lone, 3, now + 2).await;
    assert_eq!((third.number(), third.parent_hash()), (3, second.hash()), "block 3, on block 2");
}

/// A connection held open, as CometBFT holds its four.
struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

impl Connection {
    async fn open(addr: &str) -> Self {
        Self { stream: TcpStream::connect(addr).await.expect("connect"), buf: BytesMut::new() }
    }

    /// Sends `request` and reads the answer; `None` if the app closed the connection.
    async fn call(&mut self, request: request::Value) -> Option<response::Value> {
        self.stream.write_all(&frame(&Request { value: Some(request) })).await.ok()?;
        loop {
            if let Some(frame) = take_frame(&mut self.buf).expect("the app frames its answers") {
                return Response::decode(frame).expect("the app's answer decodes").value;
            }
            let read = tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf)).await;
            match read.expect("the app answers or closes within 30 s") {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// A CometBFT killed while the app still answers its Commit (the app waits for a Geth that
/// is down) and started again: its new consensus connection is served once the app has
/// seen the old one closed (within 30 s here), though the old connection's Commit has not
/// been answered, because the old one stopped owning the consensus methods when its peer
/// closed it.
#[tokio::test]
async fn a_restarted_cometbft_is_served_while_its_old_connections_answer_is_still_pending() {
    let mut lone = lone_app().await;
    let (_, block, seconds) = block_one(&lone).await;
    let mut old = Connection::open(&lone.abci).await;
    let init = RequestInitChain { initial_height: 1, ..Default::default() };
    assert!(matches!(old.call(request::Value::InitChain(init)).await, Some(response::Value::InitChain(_))));
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds, nanos: 0 });
    let txs = vec![cometbft_consensus::proposal::encode(&block).expect("encodes")];
    let finalize = RequestFinalizeBlock { txs, height: 1, time, ..Default::default() };
    assert!(matches!(old.call(request::Value::FinalizeBlock(finalize)).await, Some(response::Value::FinalizeBlock(_))));
    lone.geth.kill();
    let commit = frame(&Request { value: Some(request::Value::Commit(Default::default())) });
    old.stream.write_all(&commit).await.expect("Commit sent");
    common::harness::eventually("the app to wait for Geth in Commit", Duration::from_secs(60), || async {
        lone.app.output().contains("retrying").then_some(())
    })
    .await;
    drop(old);

    let verify = || request::Value::VerifyVoteExtension(Default::default());
    let mut restarted = Connection::open(&lone.abci).await;
    // The app learns of the close from its own read of the old connection; until then the
    // new one is refused, as any second connection is.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer = restarted.call(verify()).await;
        if !matches!(answer, Some(response::Value::Exception(_))) || std::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        matches!(answer, Some(response::Value::VerifyVoteExtension(_))),
        "the new connection is served: {answer:?}"
    );
    let answer = call(&lone.abci, verify()).await;
    assert!(matches!(answer, response::Value::Exception(_)), "and owns the consensus methods: {answer:?}");
}

/// Another local process on the ABCI port can neither commit the block CometBFT is
/// deciding (the consensus methods are answered on CometBFT's consensus connection only)
/// nor open connections without end (beyond the limit they are closed at once).
#[tokio::test]
async fn a_stray_client_can_neither_commit_the_pending_block_nor_crowd_out_cometbft() {
    let lone = lone_app().await;
    let mut consensus = Connection::open(&lone.abci).await;
    let init = RequestInitChain { initial_height: 1, ..Default::default() };
    assert!(matches!(consensus.call(request::Value::InitChain(init)).await, Some(response::Value::InitChain(_))));
    let now = i64::try_from(common::unix_time().as_secs()).expect("fits");
    let time = Some(tendermint_proto::google::protobuf::Timestamp { seconds: now, nanos: 0 });
    let prepare = RequestPrepareProposal { max_tx_bytes: 1 << 20, height: 1, time, ..Default::default() };
    let Some(response::Value::PrepareProposal(proposed)) =
        consensus.call(request::Value::PrepareProposal(prepare)).await
    else {
        panic!("no proposal")
    };
    let block = cometbft_consensus::proposal::decode(&proposed.txs).expect("decodes");
    let finalize = RequestFinalizeBlock { txs: proposed.txs, height: 1, time, ..Default::default() };
    let answer = consensus.call(request::Value::FinalizeBlock(finalize)).await;
    assert!(matches!(answer, Some(response::Value::FinalizeBlock(_))), "{answer:?}");

    // A stray Commit on another connection: refused, and the pending block stays pending.
    let answer = call(&lone.abci, request::Value::Commit(Default::default())).await;
    assert!(
        matches!(answer, response::Value::Exception(ref e) if e.error.contains("consensus connection")),
        "{answer:?}"
    );
    assert!(matches!(
        consensus.call(request::Value::Commit(Default::default())).await,
        Some(response::Value::Commit(_))
    ));
    let head = lone.geth.engine().head().await.expect("head");
    assert_eq!((head.number, head.hash), (1, block.hash()), "CometBFT's Commit committed the block");

    // Connections up to the limit are served; one more is closed unanswered.
    let mut held = Vec::new();
    for _ in 1..cometbft_consensus::abci::MAX_CONNECTIONS {
        let mut connection = Connection::open(&lone.abci).await;
        assert!(connection.call(request::Value::Info(RequestInfo::default())).await.is_some());
        held.push(connection);
    }
    let info = frame(&Request { value: Some(request::Value::Info(RequestInfo::default())) });
    assert!(exchange(&lone.abci, &info).await.is_none(), "a connection beyond the limit is closed");
    assert!(lone.app.output().contains("refusing an ABCI connection"));
    assert!(consensus.call(request::Value::Info(RequestInfo::default())).await.is_some(), "CometBFT's still served");
    drop(held);
    common::harness::eventually("a connection once others closed", Duration::from_secs(30), || async {
        exchange(&lone.abci, &info).await
    })
    .await;
}
