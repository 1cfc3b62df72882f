//! The ABCI socket server: CometBFT connects (four connections: consensus, mempool, query,
//! snapshot) and sends requests; each connection is answered in order.
//!
//! The wire format is CometBFT v0.38's: each message is a protobuf `Request` or `Response`
//! from `tendermint_proto::v0_38::abci`, preceded by its length as an unsigned varint.
//!
//! Bad input never takes the process down: a frame longer than [`MAX_FRAME`] or a
//! connection that ends in the middle of a frame closes that connection; a frame that is
//! not a `Request`, or a `Request` without a method, gets a `ResponseException` naming
//! what was wrong. At most [`MAX_CONNECTIONS`] are served at once, and the consensus
//! methods are answered on one connection only: the first to send one, for as long as it
//! stays open (CometBFT's consensus connection); so are the two that restore a state-sync
//! snapshot (its snapshot connection). A stray local client can neither exhaust memory
//! with connections, nor commit the block CometBFT is deciding, nor apply a chunk to the
//! snapshot CometBFT offered.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use bytes::{Buf, BytesMut};
use prost::Message;
use tendermint_proto::v0_38::abci::{Request, Response, ResponseException, request, response};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    app::{App, exception},
    server::lock,
};

/// The longest request we read: twice the largest block InitChain accepts
/// ([`crate::proposal::MAX_BLOCK_BYTES`]; CometBFT's default is 21 MiB), so a proposal
/// always fits, and small enough that a garbage length cannot exhaust memory.
pub const MAX_FRAME: usize = 64 << 20;

/// The most connections served at once: CometBFT opens four, and a restarted CometBFT
/// four more while the old ones close.
pub const MAX_CONNECTIONS: usize = 8;

/// Why a connection's input cannot be read further.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is not a varint.
    #[error("the length prefix is not a varint")]
    BadLength,
    /// The frame is larger than we accept.
    #[error("a frame of {0} bytes is larger than the {MAX_FRAME} accepted")]
    TooLarge(u64),
    /// The peer closed the connection in the middle of a frame.
    #[error("the connection ended in the middle of a frame")]
    Truncated,
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

// ANCHOR: frames
/// Takes one complete frame off the front of `buf`, if it holds one.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
    let mut peek = &buf[..];
    let len = match prost::encoding::decode_varint(&mut peek) {
        Ok(len) => len,
        // A varint is at most 10 bytes; fewer may just be the start of one.
        Err(_) if buf.len() < 10 => return Ok(None),
        Err(_) => return Err(FrameError::BadLength),
    };
    if len > MAX_FRAME as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let prefix = buf.len() - peek.len();
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    if peek.len() < len {
        return Ok(None);
    }
    buf.advance(prefix);
    Ok(Some(buf.split_to(len)))
}

/// A message with its length prefix.
pub fn frame(message: &impl Message) -> Vec<u8> {
    message.encode_length_delimited_to_vec()
}
// ANCHOR_END: frames

/// Which connection answers the consensus methods, and which the two that restore a
/// state-sync snapshot (`OfferSnapshot`, `ApplySnapshotChunk`): for each, the first
/// connection to send one, until it closes.
#[derive(Debug, Default)]
struct Consensus {
    owner: Mutex<Option<u64>>,
    restorer: Mutex<Option<u64>>,
}

impl Consensus {
    /// Whether connection `id` may send `request`: any connection may send the others; an
    /// owned method makes `id` its owner if there is none.
    fn allows(&self, id: u64, request: &request::Value) -> bool {
        use request::Value as Req;
        let slot = match request {
            Req::InitChain(_)
            | Req::PrepareProposal(_)
            | Req::ProcessProposal(_)
            | Req::FinalizeBlock(_)
            | Req::Commit(_)
            | Req::ExtendVote(_)
            | Req::VerifyVoteExtension(_) => &self.owner,
            Req::OfferSnapshot(_) | Req::ApplySnapshotChunk(_) => &self.restorer,
            _ => return true,
        };
        *lock(slot).get_or_insert(id) == id
    }

    /// Connection `id` closed: true if it was restoring a snapshot (the app forgets the
    /// snapshot it was offered, so no other connection can apply a chunk to it).
    fn closed(&self, id: u64) -> bool {
        let mut owner = lock(&self.owner);
        if *owner == Some(id) {
            *owner = None;
        }
        let mut restorer = lock(&self.restorer);
        let restoring = *restorer == Some(id);
        if restoring {
            *restorer = None;
        }
        restoring
    }
}

/// Accepts CometBFT's connections until `cancel` fires.
pub async fn serve(listener: TcpListener, app: Arc<App>, cancel: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let consensus = Arc::new(Consensus::default());
    let ids = AtomicU64::new(0);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => { warn!(%error, "cannot accept an ABCI connection"); continue; }
            },
            () = cancel.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warn!(%peer, "refusing an ABCI connection: {MAX_CONNECTIONS} are open already");
            continue;
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        info!(%peer, id, "ABCI connection");
        let (app, consensus, cancel) = (app.clone(), consensus.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                result = connection(stream, id, &app, &consensus) => match result {
                    Ok(()) => debug!(%peer, "ABCI connection closed"),
                    Err(error) => warn!(%peer, %error, "closing the ABCI connection"),
                },
                () = cancel.cancelled() => {}
            }
            drop(slot);
        });
    }
}

/// Answers one connection's requests, in order, until it closes. It stops owning the
/// consensus methods before the stream is dropped, so before its peer sees it closed.
async fn connection(mut stream: TcpStream, id: u64, app: &Arc<App>, consensus: &Consensus) -> Result<(), FrameError> {
    let result = answer_all(&mut stream, id, app, consensus).await;
    if consensus.closed(id) {
        app.forget_snapshot();
    }
    result
}

/// [`connection`]'s requests and answers.
async fn answer_all(stream: &mut TcpStream, id: u64, app: &Arc<App>, consensus: &Consensus) -> Result<(), FrameError> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(64 << 10);
    loop {
        let input = loop {
            if let Some(input) = take_frame(&mut buf)? {
                break input;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return if buf.is_empty() { Ok(()) } else { Err(FrameError::Truncated) };
            }
        };
        let response = match Request::decode(input) {
            Ok(Request { value: Some(request) }) if consensus.allows(id, &request) => {
                // A CometBFT killed while we answer (Geth is down, say) is restarted and
                // connects again: its new consensus connection must not wait for this
                // answer. The answer is still finished (a request is never cut off halfway)
                // and sent if it can be, but this connection stops owning the consensus
                // methods as soon as its peer has closed it.
                let answer = app.handle(request);
                tokio::pin!(answer);
                tokio::select! {
                    response = &mut answer => response,
                    () = peer_gone(stream, &mut buf) => {
                        if consensus.closed(id) {
                            app.forget_snapshot();
                        }
                        let _ = stream.write_all(&frame(&Response { value: answer.await })).await;
                        return Ok(());
                    }
                }
            }
            Ok(Request { value: Some(_) }) => exception(
                "a method owned by another connection: CometBFT's consensus connection (or, to restore a snapshot, its snapshot connection)"
                    .into(),
            ),
            Ok(Request { value: None }) => exception("an ABCI request without a method".into()),
            Err(error) => exception(format!("an undecodable ABCI request: {error}")),
        };
        if let Some(response::Value::Exception(ResponseException { error })) = &response {
            warn!(%error, "answering an ABCI request with an exception");
        }
        stream.write_all(&frame(&Response { value: response })).await?;
    }
}

/// Returns once the peer closed the connection (or it failed); what it sends meanwhile
/// is kept in `buf`, up to a frame's worth.
async fn peer_gone(stream: &mut TcpStream, buf: &mut BytesMut) {
    while buf.len() <= MAX_FRAME {
        if matches!(stream.read_buf(buf).await, Ok(0) | Err(_)) {
            return;
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use tendermint_proto::v0_38::abci::{RequestEcho, request};

    use super::*;

    fn echo(message: &str) -> Request {
        Request { value: Some(request::Value::Echo(RequestEcho { message: message.into() })) }
    }

    #[test]
    fn frames_are_taken_whole_and_only_whole() {
        let mut buf = BytesMut::new();
        let bytes = [frame(&echo("a")), frame(&echo("bc"))].concat();
        for (i, byte) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let taken = take_frame(&mut buf).expect("well formed");
            if i + 1 == frame(&echo("a")).len() || i + 1 == bytes.len() {
                let request = Request::decode(taken.expect("a whole frame")).expect("decodes");
                assert!(matches!(request.value, Some(request::Value::Echo(_))));
            } else {
                assert!(taken.is_none(), "no frame before its last byte ({i})");
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn an_absurd_length_is_refused_before_anything_is_buffered() {
        let mut buf = BytesMut::new();
        prost::encoding::encode_varint(u64::MAX, &mut buf);
        assert!(matches!(take_frame(&mut buf), Err(FrameError::TooLarge(u64::MAX))));
        let mut garbage = BytesMut::from(&[0xff_u8; 12][..]);
        assert!(matches!(take_frame(&mut garbage), Err(FrameError::BadLength)));
    }

    #[test]
    fn the_consensus_methods_are_answered_on_one_connection_until_it_closes() {
        let consensus = Consensus::default();
        let commit = request::Value::Commit(Default::default());
        let info = request::Value::Info(Default::default());
        assert!(consensus.allows(1, &info) && consensus.allows(2, &info), "anyone may ask for Info");
        assert!(consensus.allows(1, &commit), "the first to send a consensus method owns them");
        assert!(!consensus.allows(2, &commit), "another connection may not");
        let owned = [
            request::Value::InitChain(Default::default()),
            request::Value::PrepareProposal(Default::default()),
            request::Value::ProcessProposal(Default::default()),
            request::Value::FinalizeBlock(Default::default()),
            request::Value::ExtendVote(Default::default()),
            request::Value::VerifyVoteExtension(Default::default()),
        ];
        for method in &owned {
            assert!(consensus.allows(1, method) && !consensus.allows(2, method), "{method:?} is owned too");
        }
        consensus.closed(2);
        assert!(!consensus.allows(2, &commit), "another connection closing changes nothing");
        consensus.closed(1);
        assert!(consensus.allows(2, &commit), "once it closed, the next to ask owns them");
    }

    #[test]
    fn a_snapshot_is_restored_on_one_connection_until_it_closes() {
        let consensus = Consensus::default();
        let offer = request::Value::OfferSnapshot(Default::default());
        let apply = request::Value::ApplySnapshotChunk(Default::default());
        let list = request::Value::ListSnapshots(Default::default());
        assert!(consensus.allows(1, &offer), "the first to offer restores");
        assert!(!consensus.allows(2, &offer) && !consensus.allows(2, &apply), "another connection may not");
        assert!(consensus.allows(2, &list), "anyone may list snapshots");
        assert!(!consensus.closed(2), "another connection closing changes nothing");
        assert!(consensus.closed(1), "the restoring connection closing is reported");
        assert!(consensus.allows(2, &apply), "once it closed, the next to ask restores");
    }
}
