//! The ABCI socket server: CometBFT connects (four connections: consensus, mempool, query,
//! snapshot) and sends requests; each connection is answered in order.
//!
//! The wire format is CometBFT v0.38's: each message is a protobuf `Request` or `Response`
//! from `tendermint_proto::v0_38::abci`, preceded by its length as an unsigned varint.
//!
//! Bad input never takes the process down: a frame longer than [`MAX_FRAME`] or a
//! connection that ends in the middle of a frame closes that connection; a frame that is
//! not a `Request`, or a `Request` without a method, gets a `ResponseException` naming
//! what was wrong.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use prost::Message;
use tendermint_proto::v0_38::abci::{Request, Response, ResponseException, response};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::app::{App, exception};

/// The longest request we read: above CometBFT's largest block (21 MiB by default), so a
/// proposal always fits, and small enough that a garbage length cannot exhaust memory.
pub const MAX_FRAME: usize = 64 << 20;

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

/// Accepts CometBFT's connections until `cancel` fires.
pub async fn serve(listener: TcpListener, app: Arc<App>, cancel: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => { warn!(%error, "cannot accept an ABCI connection"); continue; }
            },
            () = cancel.cancelled() => return,
        };
        info!(%peer, "ABCI connection");
        let (app, cancel) = (app.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                result = connection(stream, &app) => match result {
                    Ok(()) => debug!(%peer, "ABCI connection closed"),
                    Err(error) => warn!(%peer, %error, "closing the ABCI connection"),
                },
                () = cancel.cancelled() => {}
            }
        });
    }
}

/// Answers one connection's requests, in order, until it closes.
async fn connection(mut stream: TcpStream, app: &App) -> Result<(), FrameError> {
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
            Ok(Request { value: Some(request) }) => app.handle(request).await,
            Ok(Request { value: None }) => exception("an ABCI request without a method".into()),
            Err(error) => exception(format!("an undecodable ABCI request: {error}")),
        };
        if let Some(response::Value::Exception(ResponseException { error })) = &response {
            warn!(%error, "answering an ABCI request with an exception");
        }
        stream.write_all(&frame(&Response { value: response })).await?;
    }
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
}
