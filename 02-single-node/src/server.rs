//! `/health`, `/ready` and `/metrics` over HTTP/1.1.
//!
//! - `/health`: 200 while the process runs (for a liveness probe).
//! - `/ready`: 200 once a block was produced and while Geth answers; 503 with the reason
//!   otherwise (for a load balancer or an orchestrator).
//! - `/metrics`: Prometheus/OpenMetrics text.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::metrics::Metrics;

/// What the endpoints report, shared with the sequencer.
#[derive(Debug, Default)]
pub struct Status {
    /// The metrics.
    pub metrics: Metrics,
    produced: AtomicBool,
    el_reachable: AtomicBool,
}

impl Status {
    /// Called after each block: we are producing.
    pub fn block_produced(&self) {
        self.produced.store(true, Ordering::Relaxed);
        self.el_reachable.store(true, Ordering::Relaxed);
    }

    /// Called when Geth stops or starts answering.
    pub fn set_el_reachable(&self, reachable: bool) {
        self.el_reachable.store(reachable, Ordering::Relaxed);
    }

    /// `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.el_reachable.load(Ordering::Relaxed) {
            Some("execution client unreachable")
        } else if !self.produced.load(Ordering::Relaxed) {
            Some("no block produced yet")
        } else {
            None
        }
    }
}

/// Serves the endpoints on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, status: Arc<Status>, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => { debug!(%error, "accept failed"); continue; }
            },
            () = cancel.cancelled() => return,
        };
        let status = status.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, status.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn respond(request: Request<Incoming>, status: Arc<Status>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (code, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        (&Method::GET, "/ready") => match status.not_ready_reason() {
            None => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{reason}\n")),
        },
        (&Method::GET, "/metrics") => {
            (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", status.metrics.encode())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
    };
    let response =
        Response::builder().status(code).header(header::CONTENT_TYPE, content_type).body(Full::new(Bytes::from(body)));
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}
