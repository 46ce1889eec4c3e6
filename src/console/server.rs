//! The console's accept loop. `axum::serve` waits for ever on a client that sends its request
//! slowly and takes every connection it is offered; a thousand such clients hold a thousand
//! sockets and tasks for good. Here a client has [`HEADER_TIMEOUT`] to send each request's
//! head, a connection is closed after [`MAX_LIFETIME`] however busy (browsers open another),
//! and beyond [`MAX_CONNECTIONS`] open connections a new one is closed at once, so the console
//! answers its operators whatever a stranger does.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Time a client has to send a request's line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection stays open (no page or API call takes nearly this long).
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Open connections at most; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `app` on `listener` (over TLS with `tls`) until `stop` resolves, then lets the open
/// requests finish (at most 5 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let slots = std::sync::Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing, closed) = watch::channel(false);
    let mut refused = 0u64;
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait a little instead of spinning.
                    tracing::warn!("console: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    "console: {MAX_CONNECTIONS} connections open, {refused} refused so far"
                );
            }
            continue;
        };
        let (app, closed, tls) = (app.clone(), closed.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                // The handshake counts against the same time as a request's head.
                Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, app, closed).await,
                    Ok(Err(e)) => tracing::debug!("console: TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!("console: TLS handshake timed out"),
                },
                None => serve_connection(stream, app, closed).await,
            }
            drop(slot);
        });
    }
    let _ = closing.send(true);
    // Give the connections their 5 s to finish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while slots.available_permits() < MAX_CONNECTIONS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One connection's requests, until it ends, times out, or the console stops.
async fn serve_connection<Io>(stream: Io, app: Router, mut closed: watch::Receiver<bool>)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(MAX_LIFETIME);
    tokio::pin!(lifetime);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closed.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
        }
        // hyper has no idle timeout of its own: a kept-alive connection that sends nothing
        // more would otherwise hold its slot for good.
        _ = &mut lifetime => {}
    }
}
