//! An Engine API proxy in front of a real Geth that answers newPayload with INVALID on
//! demand: the one answer about its own blocks Geth cannot be made to give. Everything
//! else, and every newPayload while it is off, passes through untouched, after Geth has
//! seen the request.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// How many of the next newPayload answers are made INVALID.
#[derive(Debug, Clone)]
pub struct InvalidatingProxy {
    url: String,
    remaining: Arc<AtomicU64>,
}

impl InvalidatingProxy {
    /// Starts the proxy in front of `target` (Geth's Engine API URL); it passes everything
    /// through until [`InvalidatingProxy::invalidate`] is called.
    pub async fn start(target: String) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the proxy")?;
        let url = format!("http://{}", listener.local_addr()?);
        let remaining = Arc::new(AtomicU64::new(0));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let counter = remaining.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, target, counter) = (client.clone(), target.clone(), counter.clone());
                let service = hyper::service::service_fn(move |request| {
                    forward(client.clone(), target.clone(), counter.clone(), request)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Ok(Self { url, remaining })
    }

    /// The URL to give the consensus layer instead of Geth's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers the next `n` newPayload calls with INVALID (`u64::MAX`: all of them, until
    /// called again with 0).
    pub fn invalidate(&self, n: u64) {
        self.remaining.store(n, Ordering::SeqCst);
    }
}

/// Sends `request` to `target`, and returns Geth's answer, or INVALID in its place for a
/// newPayload while `remaining` is above zero.
async fn forward(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    target: String,
    remaining: Arc<AtomicU64>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut outgoing = hyper::Request::post(target.as_str());
    for name in [hyper::header::AUTHORIZATION, hyper::header::CONTENT_TYPE] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let response = client.request(outgoing.body(Full::new(body.clone()))?).await?;
    let (mut parts, answer) = response.into_parts();
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    let mut answer = answer.collect().await?.to_bytes();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let take = |n: u64| (n > 0).then(|| if n == u64::MAX { n } else { n - 1 });
    if request["method"] == "engine_newPayloadV4"
        && remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, take).is_ok()
    {
        let invalid = serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "result": {
            "status": "INVALID", "latestValidHash": null, "validationError": "proxy says: invalid for the test"}});
        answer = invalid.to_string().into();
    }
    Ok(hyper::Response::from_parts(parts, Full::new(answer)))
}
