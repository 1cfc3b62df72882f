//! A mock execution client for the answers a real Geth cannot be made to give on demand
//! (INVALID_BLOCK_HASH, SYNCING, a hang, a missing method). It checks every request's JWT
//! the way Geth does, records the JSON it received, and replies with a canned answer.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::{
    EngineClient, EngineError, ForkSchedule, JwtSecret, PayloadStatus, RpcErrorKind, startup::check_execution_client,
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// What the mock answers.
#[derive(Clone)]
enum Reply {
    /// `{"result": …}`
    Result(Value),
    /// `{"error": {"code", "message"}}`
    Error(i64, &'static str),
    /// Never answers within any timeout we use.
    Hang,
}

struct Mock {
    addr: SocketAddr,
    secret: JwtSecret,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Mock {
    /// Serves `reply_for(method)` to every request until the test ends.
    async fn start(reply_for: fn(&str) -> Reply) -> Self {
        let secret = JwtSecret::new([0x42; 32]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (verifier, log) = (secret.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (verifier, log) = (verifier.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, verifier.clone(), log.clone(), reply_for));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { addr, secret, seen }
    }

    fn client(&self) -> EngineClient {
        self.client_with(self.secret.clone())
    }

    fn client_with(&self, secret: JwtSecret) -> EngineClient {
        let forks = ForkSchedule {
            chain_id: 1337,
            prague_time: Some(0),
            osaka_time: Some(0),
            amsterdam_time: None,
            forks: Default::default(),
            genesis_forks: Vec::new(),
            blob_schedule: Vec::new(),
        };
        EngineClient::new(&format!("http://{}", self.addr), secret, forks).expect("client")
    }

    fn requests(&self) -> Vec<Value> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn handle(
    req: Request<Incoming>,
    secret: JwtSecret,
    seen: Arc<Mutex<Vec<Value>>>,
    reply_for: fn(&str) -> Reply,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let respond = |status: StatusCode, body: String| {
        Ok(Response::builder().status(status).body(Full::new(Bytes::from(body))).expect("response"))
    };
    if let Err(e) = token
        .ok_or_else(|| "missing token".to_owned())
        .and_then(|t| secret.validate(&t, common::unix_time().as_secs()).map_err(|e| e.to_string()))
    {
        return respond(StatusCode::UNAUTHORIZED, e);
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().expect("lock").push(request.clone());
    let id = request["id"].clone();
    match reply_for(request["method"].as_str().unwrap_or("")) {
        Reply::Result(result) => {
            respond(StatusCode::OK, json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
        }
        Reply::Error(code, message) => respond(
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string(),
        ),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            respond(StatusCode::OK, String::new())
        }
    }
}

fn payload_json() -> Value {
    json!({
        "parentHash": format!("0x{}", "11".repeat(32)), "feeRecipient": format!("0x{}", "00".repeat(20)),
        "stateRoot": format!("0x{}", "22".repeat(32)), "receiptsRoot": format!("0x{}", "33".repeat(32)),
        "logsBloom": format!("0x{}", "00".repeat(256)), "prevRandao": format!("0x{}", "11".repeat(32)),
        "blockNumber": "0x5", "gasLimit": "0x3938700", "gasUsed": "0x0", "timestamp": "0x6553f100",
        "extraData": "0x", "baseFeePerGas": "0x7", "blockHash": format!("0x{}", "44".repeat(32)),
        "transactions": [], "withdrawals": [], "blobGasUsed": "0x0", "excessBlobGas": "0x0"
    })
}

#[tokio::test]
async fn new_payload_sends_the_exact_params_with_a_valid_jwt() {
    let mock =
        Mock::start(|_| Reply::Result(json!({"status": "VALID", "latestValidHash": format!("0x{}", "44".repeat(32))})))
            .await;
    let payload = serde_json::from_value(payload_json()).expect("payload");
    let hashes = [alloy_primitives::B256::repeat_byte(0x01)];
    let requests = [alloy_primitives::Bytes::from_static(&[0x00, 0xaa])];
    let root = alloy_primitives::B256::repeat_byte(0x11);
    let status = mock.client().new_payload_v4(&payload, &hashes, root, &requests).await.expect("call succeeds");
    assert!(status.is_valid());
    let sent = mock.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["method"], "engine_newPayloadV4");
    assert_eq!(
        sent[0]["params"],
        json!([payload_json(), [format!("0x{}", "01".repeat(32))], format!("0x{}", "11".repeat(32)), ["0x00aa"]])
    );
}

#[tokio::test]
async fn statuses_geth_cannot_be_made_to_send_are_typed() {
    let mock = Mock::start(|_| {
        Reply::Result(
            json!({"status": "INVALID_BLOCK_HASH", "latestValidHash": null, "validationError": "block hash mismatch"}),
        )
    })
    .await;
    let payload = serde_json::from_value(payload_json()).expect("payload");
    let status = mock.client().new_payload_v4(&payload, &[], Default::default(), &[]).await.expect("call");
    assert_eq!(status, PayloadStatus::InvalidBlockHash { validation_error: "block hash mismatch".into() });

    let mock = Mock::start(|_| {
        Reply::Result(json!({"payloadStatus": {"status": "SYNCING", "latestValidHash": null}, "payloadId": null}))
    })
    .await;
    let updated = mock
        .client()
        .forkchoice_updated_v3(common::payload::finalized_at(Default::default()), None)
        .await
        .expect("call");
    assert!(updated.payload_status.is_pending() && updated.payload_id.is_none());
}

#[tokio::test]
async fn engine_error_codes_become_kinds() {
    for (code, kind) in [
        (-38001, RpcErrorKind::UnknownPayload),
        (-38003, RpcErrorKind::InvalidPayloadAttributes),
        (-38005, RpcErrorKind::UnsupportedFork),
    ] {
        let reply: fn(&str) -> Reply = match code {
            -38001 => |_| Reply::Error(-38001, "Unknown payload"),
            -38003 => |_| Reply::Error(-38003, "Invalid payload attributes"),
            _ => |_| Reply::Error(-38005, "Unsupported fork"),
        };
        let mock = Mock::start(reply).await;
        let err = mock.client().get_payload_v5(Default::default()).await.unwrap_err();
        assert_eq!(err.rpc_kind(), Some(kind), "{err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn a_wrong_secret_is_reported_as_unauthorized() {
    let mock = Mock::start(|_| Reply::Result(json!("0x539"))).await;
    let err = mock.client_with(JwtSecret::new([0x43; 32])).chain_id().await.unwrap_err();
    assert!(matches!(err, EngineError::Unauthorized { status: 401, .. }), "{err}");
    assert!(err.to_string().contains("--jwt-secret"), "{err}");
}

#[tokio::test]
async fn a_hanging_el_times_out_per_method() {
    let mock = Mock::start(|_| Reply::Hang).await;
    let err = mock.client().get_payload_v5(Default::default()).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Timeout { method: "engine_getPayloadV5", timeout } if timeout == Duration::from_secs(1)),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn nobody_listening_is_a_retryable_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let forks = ForkSchedule {
        chain_id: 1,
        prague_time: Some(0),
        osaka_time: Some(0),
        amsterdam_time: None,
        forks: Default::default(),
        genesis_forks: Vec::new(),
        blob_schedule: Vec::new(),
    };
    let client =
        EngineClient::new(&format!("http://127.0.0.1:{port}"), JwtSecret::new([1; 32]), forks).expect("client");
    let err = client.chain_id().await.unwrap_err();
    assert!(matches!(err, EngineError::Transport { .. }) && err.is_retryable(), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test]
async fn start_up_check_names_missing_methods_and_wrong_chains() {
    let mock = Mock::start(|method| match method {
        "engine_exchangeCapabilities" => Reply::Result(json!(["engine_forkchoiceUpdatedV3", "engine_newPayloadV4"])),
        _ => Reply::Result(json!("0x539")),
    })
    .await;
    let err = check_execution_client(&mock.client()).await.unwrap_err().to_string();
    assert!(err.contains("engine_getPayloadV4, engine_getPayloadV5"), "{err}");

    let mock = Mock::start(|method| match method {
        "engine_exchangeCapabilities" => Reply::Result(json!(common::engine::REQUIRED_CAPABILITIES)),
        _ => Reply::Result(json!("0x1")),
    })
    .await;
    let err = check_execution_client(&mock.client()).await.unwrap_err().to_string();
    assert!(err.contains("on chain 1, but the genesis file says 1337"), "{err}");

    // An EL without eth_config (EIP-7910) cannot have its fork schedule checked: it passes,
    // with a warning. (One that serves it is checked against a real Geth, in geth.rs.)
    let mock = Mock::start(|method| match method {
        "engine_exchangeCapabilities" => Reply::Result(json!(common::engine::REQUIRED_CAPABILITIES)),
        "eth_config" => Reply::Error(-32601, "the method eth_config does not exist/is not available"),
        _ => Reply::Result(json!("0x539")),
    })
    .await;
    check_execution_client(&mock.client()).await.expect("an EL without eth_config passes");
    assert!(mock.requests().iter().any(|r| r["method"] == "eth_config"), "eth_config was asked");
}
