//! A small JSON-RPC 2.0 client over HTTP/1.1 with keep-alive.
//!
//! Both Geth ports speak it: the authenticated Engine API port (a JWT on every request)
//! and the public HTTP port (no JWT). One connection pool per client; each call has its own
//! timeout, because a stuck `newPayload` and a stuck `getPayload` deserve different patience.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use crate::{
    auth::JwtSecret,
    error::{EngineError, RpcErrorKind},
};

/// Idle keep-alive connections are dropped after this long; Geth closes its own after 120 s.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest error body we copy into an error message.
const MAX_ERROR_BODY: usize = 512;

/// Told about every finished call: the method, how long it took, and its error if any.
/// Services use it for latency histograms and error counters.
pub type CallObserver = Arc<dyn Fn(&'static str, Duration, Option<&EngineError>) + Send + Sync>;

/// A JSON-RPC client for one URL.
pub struct RpcClient {
    url: String,
    uri: Uri,
    jwt: Option<JwtSecret>,
    http: Client<HttpConnector, Full<Bytes>>,
    next_id: AtomicU64,
    observer: Option<CallObserver>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").field("url", &self.url).field("jwt", &self.jwt.is_some()).finish_non_exhaustive()
    }
}

impl RpcClient {
    /// A client for `url` (`http://host:port`), signing each request with `jwt` if given.
    /// Messages show the URL without any password it holds.
    pub fn new(url: &str, jwt: Option<JwtSecret>) -> anyhow::Result<Self> {
        let shown = crate::redact::redact(url);
        let uri: Uri = url.parse().map_err(|e| anyhow::anyhow!("bad URL {shown:?}: {e}"))?;
        anyhow::ensure!(uri.scheme_str() == Some("http"), "bad URL {shown:?}: only http:// is supported");
        anyhow::ensure!(uri.host().is_some(), "bad URL {shown:?}: no host");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).build(connector);
        Ok(Self { url: shown, uri, jwt, http, next_id: AtomicU64::new(1), observer: None })
    }

    /// Reports every finished call to `observer`.
    pub fn set_observer(&mut self, observer: CallObserver) {
        self.observer = Some(observer);
    }

    /// The URL this client calls, as messages show it (without a password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with positional `params` (a tuple, a slice or a JSON array) and
    /// decodes its `result` as `R`.
    ///
    /// Both directions go straight between bytes and typed values, with no
    /// `serde_json::Value` tree in between: a full block is half a megabyte of JSON, and a
    /// tree of it would be the largest copy the round makes.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: P,
        timeout: Duration,
    ) -> Result<R, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, self.exchange(method, id, &params)).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::Timeout { method, timeout }),
        };
        if let Some(observer) = &self.observer {
            observer(method, started.elapsed(), result.as_ref().err());
        }
        result
    }

    /// One HTTP round trip; returns the decoded `result` member.
    async fn exchange<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &'static str,
        id: u64,
        params: &P,
    ) -> Result<R, EngineError> {
        let body = serde_json::to_vec(&Call { jsonrpc: "2.0", id, method, params })
            .map_err(|e| EngineError::Decode { method, reason: format!("cannot encode the params: {e}") })?;
        let mut request = Request::post(self.uri.clone()).header(header::CONTENT_TYPE, "application/json");
        // ANCHOR: jwt_header
        if let Some(jwt) = &self.jwt {
            // A fresh token per request: iat is always "now", so clock drift never builds up.
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", jwt.token()));
        }
        // ANCHOR_END: jwt_header
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| EngineError::Transport {
            method,
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let transport =
            |e: &dyn std::fmt::Display| EngineError::Transport { method, url: self.url.clone(), reason: e.to_string() };
        let response = self.http.request(request).await.map_err(|e| transport(&error_chain(&e)))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| transport(&e))?.to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY)]).trim().to_owned();
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    EngineError::Unauthorized { method, status: status.as_u16(), body: text }
                }
                _ => EngineError::Http { method, status: status.as_u16(), body: text },
            });
        }
        decode_response(method, &bytes)
    }
}

/// A JSON-RPC 2.0 request, serialized as it stands.
#[derive(Serialize)]
struct Call<'a, P> {
    jsonrpc: &'static str,
    id: u64,
    method: &'static str,
    params: &'a P,
}

/// A JSON-RPC 2.0 response with its `result` left as raw text, to be decoded as the
/// caller's type. A missing `result` is `None`; `"result": null` is the text `null`.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

/// `Some` for any value, `null` included (`Option`'s own decoding would make `null` `None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// A JSON-RPC error object.
#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// Decodes a JSON-RPC response into its result as `R`, or its error object as an error.
fn decode_response<R: DeserializeOwned>(method: &'static str, bytes: &[u8]) -> Result<R, EngineError> {
    let reply: Reply<'_> = serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Decode { method, reason: format!("not a JSON-RPC response: {e}") })?;
    if let Some(ErrorObject { code, message }) = reply.error {
        return Err(EngineError::Rpc { method, code, kind: RpcErrorKind::from_code(code), message });
    }
    let result = reply
        .result
        .ok_or_else(|| EngineError::Decode { method, reason: "response has neither result nor error".into() })?;
    serde_json::from_str(result.get()).map_err(|e| EngineError::Decode { method, reason: e.to_string() })
}

/// hyper's client error says only "client error (Connect)"; the cause says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PayloadStatus;

    #[test]
    fn error_objects_become_typed_errors() {
        let body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-38001,"message":"Unknown payload"}}"#;
        let err = decode_response::<serde_json::Value>("engine_getPayloadV5", body).unwrap_err();
        assert_eq!(err.rpc_kind(), Some(RpcErrorKind::UnknownPayload));
    }

    #[test]
    fn a_null_result_is_a_result() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":null}"#;
        let result: Option<crate::types::Block> = decode_response("eth_getBlockByNumber", body).expect("a result");
        assert_eq!(result, None);
    }

    #[test]
    fn results_decode_straight_into_their_type() {
        let body =
            br#"{"jsonrpc":"2.0","id":1,"result":{"status":"VALID","latestValidHash":null,"validationError":null}}"#;
        let status: PayloadStatus = decode_response("engine_newPayloadV4", body).expect("a status");
        assert!(matches!(status, PayloadStatus::Valid { .. }));
        let wrong = decode_response::<Vec<String>>("engine_newPayloadV4", body).unwrap_err();
        assert!(matches!(wrong, EngineError::Decode { .. }), "{wrong}");
    }

    #[test]
    fn requests_are_json_rpc_with_positional_params() {
        let encoded = serde_json::to_value(Call { jsonrpc: "2.0", id: 7, method: "m", params: &(1, "two", ()) });
        assert_eq!(
            encoded.expect("encodes"),
            serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "m", "params": [1, "two", null]})
        );
        let none: [u8; 0] = [];
        let encoded = serde_json::to_value(Call { jsonrpc: "2.0", id: 8, method: "m", params: &none });
        assert_eq!(encoded.expect("encodes")["params"], serde_json::json!([]));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(decode_response::<u64>("m", b"<html>"), Err(EngineError::Decode { .. })));
        assert!(matches!(decode_response::<u64>("m", b"{}"), Err(EngineError::Decode { .. })));
    }

    #[test]
    fn urls_are_checked_up_front() {
        assert!(RpcClient::new("127.0.0.1:8551", None).is_err());
        assert!(RpcClient::new("https://example.invalid", None).is_err());
        assert!(RpcClient::new("http://127.0.0.1:8551", None).is_ok());
    }
}
