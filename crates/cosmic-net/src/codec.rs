//! The wire format of our request-response protocol: a length-prefixed, versioned
//! envelope, read with a hard size limit.
//!
//! One libp2p protocol, [`PROTOCOL`], carries every application protocol (reconciliation,
//! blob requests, ...): the request envelope names the application protocol, so adding
//! one needs no new libp2p protocol negotiation.
//!
//! ```text
//! frame    = length:u32be payload[length]          length <= max_message_size
//! request  = version:u8=1 kind:u8=1 name_len:u8 name[name_len] body
//! response = version:u8=1 kind:u8=2 body            (success)
//!          | version:u8=1 kind:u8=3 message:utf8    (the peer refused)
//! ```
//!
//! Anything else (a longer frame, another version or kind, a bad name) is an
//! [`io::ErrorKind::InvalidData`] error. A bad response fails its request; a bad request
//! is read as [`Frame::Malformed`] rather than an error, because request-response does
//! not report a request it could not read, and the actor must know which peer sent it
//! to count it against that peer. The rest of a bad stream is never read.

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// The libp2p protocol name of our request-response protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/cosmic/req/1.0.0");

/// The envelope version this crate writes and the only one it reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// The longest application protocol name, in bytes.
pub const MAX_PROTOCOL_NAME_LEN: usize = 64;

const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE_OK: u8 = 2;
const KIND_RESPONSE_ERROR: u8 = 3;

/// An outbound or inbound request: the application protocol and an opaque body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The application protocol, e.g. `sync/reconcile/1`.
    pub protocol: String,
    /// The body; its meaning belongs to the application protocol.
    pub body: Bytes,
}

/// An inbound request frame as read by [`Codec`]: a request, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A well-formed request.
    Request(Request),
    /// A frame that is oversized or malformed; the text says why.
    Malformed(String),
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The request was served; the body is the answer.
    Ok(Bytes),
    /// The peer refused the request; the text says why.
    Error(String),
}

/// Checks an application protocol name: 1 to 64 printable ASCII characters.
pub fn is_valid_protocol_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PROTOCOL_NAME_LEN
        && name.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Encodes a request envelope (without the length prefix).
pub fn encode_request(request: &Request) -> io::Result<Vec<u8>> {
    if !is_valid_protocol_name(&request.protocol) {
        return Err(invalid(format!("invalid protocol name {:?}", request.protocol)));
    }
    let name = request.protocol.as_bytes();
    let mut payload = Vec::with_capacity(3 + name.len() + request.body.len());
    payload.extend_from_slice(&[ENVELOPE_VERSION, KIND_REQUEST]);
    // The name is at most 64 bytes, checked above.
    payload.push(u8::try_from(name.len()).map_err(|_| invalid("protocol name too long"))?);
    payload.extend_from_slice(name);
    payload.extend_from_slice(&request.body);
    Ok(payload)
}

/// Decodes a request envelope (without the length prefix).
pub fn decode_request(payload: &[u8]) -> io::Result<Request> {
    let rest = check_header(payload, &[KIND_REQUEST])?.1;
    let (&name_len, rest) = rest.split_first().ok_or_else(|| invalid("request without a name"))?;
    let name_len = usize::from(name_len);
    if rest.len() < name_len {
        return Err(invalid(format!("protocol name of {name_len} bytes runs past the frame")));
    }
    let (name, body) = rest.split_at(name_len);
    let protocol =
        std::str::from_utf8(name).ok().filter(|name| is_valid_protocol_name(name)).ok_or_else(
            || invalid(format!("invalid protocol name {:?}", String::from_utf8_lossy(name))),
        )?;
    Ok(Request { protocol: protocol.to_owned(), body: Bytes::copy_from_slice(body) })
}

/// Encodes a response envelope (without the length prefix).
pub fn encode_response(response: &Response) -> Vec<u8> {
    let (kind, body) = match response {
        Response::Ok(body) => (KIND_RESPONSE_OK, body.as_ref()),
        Response::Error(message) => (KIND_RESPONSE_ERROR, message.as_bytes()),
    };
    let mut payload = Vec::with_capacity(2 + body.len());
    payload.extend_from_slice(&[ENVELOPE_VERSION, kind]);
    payload.extend_from_slice(body);
    payload
}

/// Decodes a response envelope (without the length prefix).
pub fn decode_response(payload: &[u8]) -> io::Result<Response> {
    let (kind, body) = check_header(payload, &[KIND_RESPONSE_OK, KIND_RESPONSE_ERROR])?;
    if kind == KIND_RESPONSE_OK {
        return Ok(Response::Ok(Bytes::copy_from_slice(body)));
    }
    let message =
        std::str::from_utf8(body).map_err(|_| invalid("error response is not valid utf-8"))?;
    Ok(Response::Error(message.to_owned()))
}

fn check_header<'a>(payload: &'a [u8], kinds: &[u8]) -> io::Result<(u8, &'a [u8])> {
    match payload {
        [version, ..] if *version != ENVELOPE_VERSION => {
            Err(invalid(format!("unsupported envelope version {version}")))
        }
        [_, kind, rest @ ..] if kinds.contains(kind) => Ok((*kind, rest)),
        [_, kind, ..] => Err(invalid(format!("unexpected envelope kind {kind}"))),
        _ => Err(invalid(format!("envelope of {} bytes is too short", payload.len()))),
    }
}

/// Reads one length-prefixed frame of at most `max_len` bytes.
///
/// The length is checked before any byte of the payload is read or allocated.
pub async fn read_frame<T>(io: &mut T, max_len: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max_len {
        return Err(invalid(format!("frame of {len} bytes exceeds max_message_size {max_len}")));
    }
    let mut payload = Vec::new();
    let limit = u64::try_from(len).unwrap_or(u64::MAX);
    io.take(limit).read_to_end(&mut payload).await?;
    if payload.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {} of {len} bytes", payload.len()),
        ));
    }
    Ok(payload)
}

/// Writes one length-prefixed frame, refusing payloads above `max_len` bytes.
pub async fn write_frame<T>(io: &mut T, payload: &[u8], max_len: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    if payload.len() > max_len {
        return Err(invalid(format!(
            "frame of {} bytes exceeds max_message_size {max_len}",
            payload.len()
        )));
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| invalid(format!("frame of {} bytes is too long", payload.len())))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(payload).await?;
    // Request-response closes the write side itself once the frame is written.
    io.flush().await
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The [`request_response::Codec`] of [`PROTOCOL`], limited to `max_message_size` bytes
/// per frame.
#[derive(Debug, Clone)]
pub struct Codec {
    max_message_size: usize,
}

impl Codec {
    /// A codec that reads and writes frames of at most `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Self { max_message_size }
    }
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let decoded = match read_frame(io, self.max_message_size).await {
            Ok(payload) => decode_request(&payload),
            Err(error) => Err(error),
        };
        match decoded {
            Ok(request) => Ok(Frame::Request(request)),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                Ok(Frame::Malformed(error.to_string()))
            }
            Err(error) => Err(error),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_response(&read_frame(io, self.max_message_size).await?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        frame: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let Frame::Request(request) = frame else {
            return Err(invalid("refusing to send a malformed frame"));
        };
        write_frame(io, &encode_request(&request)?, self.max_message_size).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_response(&response), self.max_message_size).await
    }
}
