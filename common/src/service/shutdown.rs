//! The signals that stop a long-running service, and the sleep that ends when they do.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what `docker stop` and systemd send).
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// A token cancelled when `shutdown` completes (with a log line saying so), for every
/// part of a service to watch.
pub fn cancel_on(shutdown: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested; finishing the current block");
        on_signal.cancel();
    });
    cancel
}

/// Sleeps for `duration`; false if `cancel` fired first. Like any tokio sleep, even a zero
/// `duration` waits for the timer's next 1 ms tick.
pub async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = cancel.cancelled() => false,
    }
}
