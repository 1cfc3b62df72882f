//! `/health`, `/ready`, `/metrics` (and `/status` where a service has one) over HTTP/1.1.
//!
//! - `/health`: 200 while the process runs (for a liveness probe).
//! - `/ready`: 200 when the service does its job; 503 with the reason otherwise (for a load
//!   balancer or an orchestrator).
//! - `/metrics`: OpenMetrics text for a scraper that asks for it (Prometheus does), else
//!   Prometheus's text format 0.0.4.
//! - `/status`: a JSON summary for people and scripts, if [`Endpoints::status`] gives one.
//!
//! Each service says what those mean for it by implementing [`Endpoints`].

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// What a service reports on its endpoints.
pub trait Endpoints: Send + Sync + 'static {
    /// `None` when ready, else why not.
    fn not_ready_reason(&self) -> Option<String>;
    /// The OpenMetrics text.
    fn metrics(&self) -> String;
    /// A JSON summary for `/status`; `None` (the default) serves 404.
    fn status(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Binds the endpoints' address, failing with the flag's name if it is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on --health-addr {addr}"))
}

/// Serves the endpoints on `listener` until `cancel` fires.
pub async fn serve<E: Endpoints>(listener: TcpListener, endpoints: Arc<E>, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => { debug!(%error, "accept failed"); continue; }
            },
            () = cancel.cancelled() => return,
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, endpoints.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Whether the client's `Accept` names OpenMetrics.
fn accepts_openmetrics(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|value| value.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")))
}

async fn respond<E: Endpoints>(
    request: Request<Incoming>,
    endpoints: Arc<E>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (code, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        (&Method::GET, "/ready") => match endpoints.not_ready_reason() {
            None => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{reason}\n")),
        },
        // OpenMetrics for a scraper that asks for it (Prometheus does), the older text
        // format for everyone else.
        (&Method::GET, "/metrics") if accepts_openmetrics(&request) => {
            (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", endpoints.metrics())
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            super::exporter::to_text_format(&endpoints.metrics()),
        ),
        (&Method::GET, "/status") => match endpoints.status() {
            Some(json) => (StatusCode::OK, "application/json", format!("{json}\n")),
            None => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
    };
    let response =
        Response::builder().status(code).header(header::CONTENT_TYPE, content_type).body(Full::new(Bytes::from(body)));
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}
