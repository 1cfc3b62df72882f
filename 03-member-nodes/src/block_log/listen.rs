//! `LISTEN blocks`: how followers hear of new rows without polling.
//!
//! The listener keeps a connection of its own: a pooled connection goes back to the pool
//! between queries, and notifications sent meanwhile would be lost.

use std::sync::Arc;

use anyhow::anyhow;
use single_node::fault::{Fault, Retry};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Connection, NoTls, Socket, tls::NoTlsStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The channel `NOTIFY` announces new blocks on.
pub const CHANNEL: &str = "blocks";

// ANCHOR: listen
/// Keeps a `LISTEN blocks` connection open until `cancel` fires and wakes `wake` for
/// every announced block, and after every (re)connect, so the follower looks for what it
/// missed while the connection was down.
pub async fn listen(config: tokio_postgres::Config, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut retry = Retry::new(&cancel);
    loop {
        let lost = match config.connect(NoTls).await {
            Ok((client, connection)) => {
                retry.succeeded();
                let Some(lost) = hold(&client, connection, &wake, &cancel).await else { return };
                lost
            }
            Err(error) => anyhow!(error).context("cannot open the LISTEN connection"),
        };
        let again = retry.failed(Fault::Passing(lost), |waiting| {
            if waiting.worth_logging() {
                warn!(attempts = waiting.attempts, error = %format!("{:#}", waiting.error), "LISTEN is down; reconnecting");
            }
        });
        if !matches!(again.await, Ok(true)) {
            return;
        }
    }
}
// ANCHOR_END: listen

/// Listens on `connection` until it fails (the reason) or `cancel` fires (`None`).
async fn hold(
    client: &tokio_postgres::Client,
    mut connection: Connection<Socket, NoTlsStream>,
    wake: &Notify,
    cancel: &CancellationToken,
) -> Option<anyhow::Error> {
    // Fails or never ends: notifications arrive through `polling`.
    let listening = async {
        if let Err(error) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            return error;
        }
        wake.notify_one();
        std::future::pending().await
    };
    let polling = async {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(_) = message? {
                wake.notify_one();
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    };
    tokio::select! {
        error = listening => Some(anyhow!(error).context("LISTEN failed")),
        result = polling => Some(match result {
            Ok(()) => anyhow!("the server closed the LISTEN connection"),
            Err(error) => anyhow!(error).context("the LISTEN connection was lost"),
        }),
        () = cancel.cancelled() => None,
    }
}
