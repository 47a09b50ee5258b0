//! HTTP/1 request framing, checked before hyper parses each request head.
//!
//! hyper answers a malformed head with an empty body, lets a head grow past its buffer when it
//! arrives in one read, and takes `Content-Length` beside `Transfer-Encoding` (it drops the
//! length and closes afterwards). hookd promises a JSON error a person can act on, a 64 KiB
//! head limit, and a 400 for the smuggling pair (RFC 9112 §6.1), so the bytes pass through
//! this reader first. It follows the framing (lengths and chunks) to know where each head
//! starts, withholds a head until it is whole, and on a bad one passes nothing more: hyper
//! finishes the responses it owes, sees the connection end, and shuts it down, and the refusal
//! is written then, after them, in order.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hookd_shared::{ErrorBody, ErrorResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest request head (request line and headers, with the empty line that ends them).
pub const MAX_HEAD: usize = 64 * 1024;
/// hyper's own limits, kept so that it never refuses first (with an empty body).
const MAX_HEADERS: usize = 100;
const MAX_URI: usize = u16::MAX as usize - 1;
const FIRST_READ: usize = 8 * 1024;

/// A connection's reader that checks request heads; its writes go straight through.
pub struct Guarded<IO> {
    io: IO,
    /// Bytes held back: `start..cleared` are checked and not yet handed on, `cleared..len`
    /// wait for the rest of their head. Empty while heads arrive whole.
    buf: Vec<u8>,
    start: usize,
    cleared: usize,
    len: usize,
    framing: Framing,
    /// How much of the refusal is written.
    sent: usize,
    eof: bool,
}

/// Where the reader is in the requests, and the answer to a bad head once there is one.
struct Framing {
    frame: Frame,
    /// Written when hyper shuts the connection down.
    refusal: Option<Vec<u8>>,
}

/// Where the next bytes belong.
#[derive(Debug, PartialEq)]
enum Frame {
    /// A head, of which the first `searched` bytes hold no end.
    Head {
        searched: usize,
    },
    /// A body of this many bytes more.
    Body(u64),
    Chunked(Chunk),
    /// No more heads to check: the connection was upgraded, or a body's framing is hyper's to
    /// refuse.
    Through,
}

impl<IO> Guarded<IO> {
    /// Checks the requests read from `io`.
    pub fn new(io: IO) -> Self {
        Guarded {
            io,
            buf: Vec::new(),
            start: 0,
            cleared: 0,
            len: 0,
            framing: Framing {
                frame: Frame::Head { searched: 0 },
                refusal: None,
            },
            sent: 0,
            eof: false,
        }
    }

    /// The connection and the bytes read from it that were not handed on (an upgraded
    /// connection continues with them).
    pub fn into_parts(self) -> (IO, Vec<u8>) {
        let unread = self.buf[self.start..self.len].to_vec();
        (self.io, unread)
    }
}

impl Framing {
    /// How many of `bytes`, which follow what was read before, may be handed on now; the rest
    /// is a head still arriving, or what follows a refused one.
    fn advance(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        while at < bytes.len() && self.refusal.is_none() {
            let rest = &bytes[at..];
            match &mut self.frame {
                Frame::Through => at = bytes.len(),
                Frame::Body(left) => {
                    let n = (*left).min(rest.len() as u64);
                    *left -= n;
                    // `n` is at most `rest.len()`, a usize.
                    at += n as usize;
                    if *left == 0 {
                        self.frame = Frame::Head { searched: 0 };
                    }
                }
                Frame::Chunked(chunk) => {
                    let (used, next) = chunk.feed(rest);
                    at += used;
                    match next {
                        Fed::More => {}
                        Fed::Done => self.frame = Frame::Head { searched: 0 },
                        Fed::Lost => self.frame = Frame::Through,
                    }
                }
                Frame::Head { searched } => match head_end(rest, *searched) {
                    None => {
                        if rest.len() > MAX_HEAD {
                            self.refuse(Refusal::too_large());
                        } else {
                            *searched = rest.len();
                        }
                        return at;
                    }
                    Some(end) => {
                        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                        let mut req = httparse::Request::new(&mut headers);
                        match req.parse(rest) {
                            Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => {
                                self.refuse(Refusal::too_large());
                            }
                            Ok(httparse::Status::Complete(n)) => match check(&req) {
                                Ok(frame) => {
                                    at += n;
                                    self.frame = frame;
                                }
                                Err(r) => self.refuse(r),
                            },
                            // Empty lines before a request line end nothing.
                            Ok(httparse::Status::Partial) => *searched = end,
                            Err(e) => self.refuse(Refusal::unparsable(e)),
                        }
                    }
                },
            }
        }
        at
    }

    fn refuse(&mut self, r: Refusal) {
        tracing::debug!("refused a request head: {} {}", r.status, r.message);
        metrics::counter!(
            crate::metrics::REQUESTS,
            "route" => "malformed",
            "command" => "",
            "status" => crate::metrics::status_label(r.status),
        )
        .increment(1);
        self.refusal = Some(r.into_bytes());
    }
}

/// Where the empty line that ends a head is, as the offset just past it; `searched` bytes are
/// known to hold none.
fn head_end(bytes: &[u8], searched: usize) -> Option<usize> {
    let from = searched.saturating_sub(2);
    let mut i = from;
    while let Some(p) = bytes[i..].iter().position(|&b| b == b'\n') {
        let at = i + p + 1;
        match bytes.get(at..) {
            Some([b'\n', ..]) => return Some(at + 1),
            Some([b'\r', b'\n', ..]) => return Some(at + 2),
            _ => i = at,
        }
    }
    None
}

/// How the body after a whole, valid head is framed; or why the head is refused.
fn check(req: &httparse::Request<'_, '_>) -> Result<Frame, Refusal> {
    let http11 = req.version == Some(1);
    let target = req.path.unwrap_or("");
    if target.len() > MAX_URI {
        return Err(Refusal::new(
            414,
            "uri_too_long",
            format!(
                "the request target is {} bytes; hookd takes at most {MAX_URI}",
                target.len()
            ),
        ));
    }
    // A path of plain characters is a valid URI; parsing it again would cost each request an
    // allocation.
    let plain = target.starts_with('/')
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/?=&%-._~+,;:@!$*()'".contains(&b));
    if let Some(Err(e)) = (!plain).then(|| http::Uri::try_from(target)) {
        return Err(Refusal::bad(format!(
            "the request target is not a valid URI ({e}); percent-encode bytes outside \
             printable ASCII"
        )));
    }
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    let mut upgrade = req.method == Some("CONNECT");
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or_else(|| {
                Refusal::bad(format!(
                    "Content-Length {:?} is not a number of bytes",
                    String::from_utf8_lossy(h.value)
                ))
            })?;
            if length.is_some_and(|m| m != n) {
                return Err(Refusal::bad(
                    "two Content-Length headers disagree about the body's length".into(),
                ));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = Some(ends_chunked(h.value));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= http11;
        }
    }
    match (chunked, length) {
        (Some(_), _) if !http11 => Err(Refusal::bad(
            "Transfer-Encoding needs HTTP/1.1; send Content-Length with HTTP/1.0".into(),
        )),
        (Some(false), _) => Err(Refusal::bad(
            "Transfer-Encoding must end in chunked (the only coding hookd reads)".into(),
        )),
        (Some(true), Some(_)) => Err(Refusal::bad(
            "the request has both Content-Length and Transfer-Encoding, which could frame the \
             body two ways (RFC 9112 §6.1); send one of them"
                .into(),
        )),
        _ if upgrade => Ok(Frame::Through),
        (Some(true), None) => Ok(Frame::Chunked(Chunk::FIRST)),
        (None, Some(n)) if n > 0 => Ok(Frame::Body(n)),
        (None, _) => Ok(Frame::Head { searched: 0 }),
    }
}

/// A Content-Length value: digits, or a list of equal ones (as hyper takes it).
fn content_length(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let digits = part.trim_ascii();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|m| m != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Where a chunked body's reader is.
#[derive(Debug, PartialEq)]
enum Chunk {
    /// In a chunk's size, `digits` hex digits read.
    Size {
        value: u64,
        digits: u8,
    },
    /// Past the size, in its extensions or line end.
    SizeRest {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
}

/// What a chunked body's bytes came to.
#[derive(Debug, PartialEq)]
enum Fed {
    More,
    Done,
    /// Not chunked framing hookd follows: hyper will refuse it.
    Lost,
}

impl Chunk {
    const FIRST: Chunk = Chunk::Size {
        value: 0,
        digits: 0,
    };

    /// After a size line: the chunk's data, or the trailers after the last chunk.
    fn sized(value: u64) -> Chunk {
        if value == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data(value)
        }
    }

    /// Reads `bytes`; how many belong to the body, and whether it ended.
    fn feed(&mut self, bytes: &[u8]) -> (usize, Fed) {
        let mut i = 0;
        while i < bytes.len() {
            if let Chunk::Data(left) = self {
                let n = (*left).min((bytes.len() - i) as u64);
                *left -= n;
                // `n` is at most what is left of `bytes`, a usize.
                i += n as usize;
                if *left == 0 {
                    *self = Chunk::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            *self = match (&*self, b) {
                (&Chunk::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                    if digits >= 15 {
                        return (i, Fed::Lost);
                    }
                    let d = (b as char).to_digit(16).map_or(0, u64::from);
                    Chunk::Size {
                        value: value * 16 + d,
                        digits: digits + 1,
                    }
                }
                (Chunk::Size { digits: 0, .. }, _) => return (i, Fed::Lost),
                (&Chunk::Size { value, .. } | &Chunk::SizeRest { value }, b'\n') => {
                    Chunk::sized(value)
                }
                (&Chunk::Size { value, .. }, b';' | b' ' | b'\t' | b'\r') => {
                    Chunk::SizeRest { value }
                }
                (Chunk::Size { .. }, _) => return (i, Fed::Lost),
                (&Chunk::SizeRest { value }, _) => Chunk::SizeRest { value },
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr | Chunk::DataLf, b'\n') => Chunk::FIRST,
                (Chunk::DataCr | Chunk::DataLf, _) => return (i, Fed::Lost),
                (Chunk::TrailerStart, b'\r') => Chunk::TrailerLf,
                (Chunk::TrailerStart | Chunk::TrailerLf, b'\n') => return (i, Fed::Done),
                (Chunk::TrailerLf, _) => return (i, Fed::Lost),
                (Chunk::TrailerLine, b'\n') => Chunk::TrailerStart,
                (Chunk::TrailerStart | Chunk::TrailerLine, _) => Chunk::TrailerLine,
                // Handled before the match.
                (Chunk::Data(_), _) => return (i, Fed::Lost),
            };
        }
        (i, Fed::More)
    }
}

/// Why a head is refused, and the answer.
struct Refusal {
    status: u16,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: String) -> Self {
        Refusal {
            status,
            code,
            message,
        }
    }

    fn bad(message: String) -> Self {
        Refusal::new(400, "bad_request", message)
    }

    fn too_large() -> Self {
        Refusal::new(
            431,
            "head_too_large",
            format!(
                "the request line and headers take more than {MAX_HEAD} bytes, hookd's limit; \
                 move large values into the body"
            ),
        )
    }

    fn unparsable(e: httparse::Error) -> Self {
        use httparse::Error as E;
        let message = match e {
            E::TooManyHeaders => {
                return Refusal::new(
                    431,
                    "head_too_large",
                    format!("the request has more than {MAX_HEADERS} headers, hookd's limit"),
                );
            }
            E::HeaderName => "a header name has a character a token may not hold (RFC 9110 §5.6.2)",
            E::HeaderValue => "a header value holds a control character, such as NUL",
            E::NewLine => "a line of the request head does not end in CRLF",
            E::Token => {
                "the request line is not `METHOD TARGET HTTP/1.1`: a method, a target without \
                 spaces in valid UTF-8, one space between each"
            }
            E::Version => "the request line does not end in HTTP/1.0 or HTTP/1.1",
            E::Status => "the request line is malformed",
        };
        Refusal::bad(format!("malformed request: {message}"))
    }

    /// A whole HTTP/1.1 response that closes the connection.
    fn into_bytes(self) -> Vec<u8> {
        let body = serde_json::to_vec(&ErrorResponse {
            error: ErrorBody {
                status: self.status,
                code: self.code.into(),
                message: self.message,
            },
        })
        .unwrap_or_default();
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            self.status,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.cleared > this.start {
                let n = out.remaining().min(this.cleared - this.start);
                out.put_slice(&this.buf[this.start..this.start + n]);
                this.start += n;
                return Poll::Ready(Ok(()));
            }
            // Past a refusal hyper sees the end of the connection.
            if this.framing.refusal.is_some() || this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.start == this.len {
                // Nothing held back: read into hyper's buffer and check the bytes there,
                // holding back only the start of a head that is still arriving.
                let before = out.filled().len();
                ready!(Pin::new(&mut this.io).poll_read(cx, out))?;
                let fresh = &out.filled()[before..];
                if fresh.is_empty() {
                    this.eof = true;
                    return Poll::Ready(Ok(()));
                }
                let n = this.framing.advance(fresh);
                if n < fresh.len() && this.framing.refusal.is_none() {
                    this.buf.clear();
                    this.buf.extend_from_slice(&fresh[n..]);
                    this.buf.resize(this.buf.len().max(FIRST_READ), 0);
                    (this.start, this.cleared, this.len) = (0, 0, fresh.len() - n);
                }
                out.set_filled(before + n);
                if n > 0 || this.framing.refusal.is_some() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if this.start > 0 {
                this.buf.copy_within(this.start..this.len, 0);
                this.len -= this.start;
                this.cleared -= this.start;
                this.start = 0;
            }
            if this.len == this.buf.len() {
                // A head may take MAX_HEAD bytes and one more shows it is too long.
                let size = (this.buf.len() * 2).clamp(FIRST_READ, MAX_HEAD + FIRST_READ);
                if size <= this.len {
                    // Cannot happen: a head past MAX_HEAD is refused when read.
                    return Poll::Ready(Err(io::Error::other("request head buffer full")));
                }
                this.buf.resize(size, 0);
            }
            let mut read = ReadBuf::new(&mut this.buf[this.len..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                this.eof = true;
            } else {
                this.len += n;
                this.cleared += this.framing.advance(&this.buf[this.cleared..this.len]);
                if this.framing.refusal.is_some() {
                    this.len = this.cleared;
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(answer) = &this.framing.refusal {
            while this.sent < answer.len() {
                let n = ready!(Pin::new(&mut this.io).poll_write(cx, &answer[this.sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                this.sent += n;
            }
            ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that sends `reads` one at a time and keeps what is written to it.
    #[derive(Default)]
    struct Peer {
        reads: VecDeque<Vec<u8>>,
        written: Vec<u8>,
    }

    impl AsyncRead for Peer {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if let Some(mut next) = this.reads.pop_front() {
                let n = next.len().min(out.remaining());
                out.put_slice(&next[..n]);
                if n < next.len() {
                    this.reads.push_front(next.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Peer {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// What hyper would be handed from `bytes` sent in pieces of `piece` bytes, and what the
    /// peer is answered when the connection is shut down.
    async fn through(bytes: &[u8], piece: usize) -> (Vec<u8>, String) {
        let peer = Peer {
            reads: bytes.chunks(piece).map(<[u8]>::to_vec).collect(),
            written: Vec::new(),
        };
        let mut g = Guarded::new(peer);
        let mut handed = Vec::new();
        g.read_to_end(&mut handed).await.expect("read");
        g.shutdown().await.expect("shutdown");
        let (peer, _) = g.into_parts();
        (handed, String::from_utf8_lossy(&peer.written).into_owned())
    }

    const SIZED: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 48\r\n\r\n\
        \r\n\r\nGET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
    const CHUNKED: &[u8] = b"POST /b HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
        3;name=value\r\nabc\r\n12\r\n\r\n\r\nGET / HTTP/1.0\r\n0\r\nTrailer: t\r\n\r\n";
    const BARE: &[u8] = b"\r\nGET /c?q=1 HTTP/1.1\nHost: x\n\n";

    #[tokio::test]
    async fn good_requests_pass_whole_and_in_order_however_they_are_split() {
        let good = [SIZED, CHUNKED, BARE].concat();
        for piece in [1, 2, 3, 5, 17, 64, 4096] {
            let (handed, answer) = through(&good, piece).await;
            assert_eq!(handed, good, "split every {piece} bytes");
            assert_eq!(answer, "", "nothing refused");
        }
    }

    #[tokio::test]
    async fn a_bad_head_ends_the_stream_after_the_requests_before_it_and_is_answered_in_json() {
        let good = [SIZED, CHUNKED, BARE].concat();
        let cases: [(&[u8], &str, &str); 9] = [
            (
                b"POST /d HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "400 Bad Request",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                b"POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
                "400 Bad Request",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                b"POST /d HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc",
                "400 Bad Request",
                "\"3x\" is not a number of bytes",
            ),
            (
                b"POST /d HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
                "400 Bad Request",
                "disagree",
            ),
            (
                b"POST /d HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                "400 Bad Request",
                "must end in chunked",
            ),
            (
                b"GET /caf\xe9 HTTP/1.1\r\n\r\n",
                "400 Bad Request",
                "request line is not",
            ),
            (b"GET http:// HTTP/1.1\r\n\r\n", "400 Bad Request", "not a valid URI"),
            (
                b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
                "400 Bad Request",
                "control character",
            ),
            (b"GET / HTTP/1.1\r\nX A: b\r\n\r\n", "400 Bad Request", "header name"),
        ];
        for (bad, status, says) in cases {
            let mut sent = good.clone();
            sent.extend_from_slice(bad);
            sent.extend_from_slice(b"GET /after HTTP/1.1\r\n\r\n");
            for piece in [1, 7, 4096] {
                let (handed, answer) = through(&sent, piece).await;
                assert_eq!(
                    handed,
                    good,
                    "{:?} split every {piece}",
                    String::from_utf8_lossy(bad)
                );
                assert!(
                    answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                    "{answer}"
                );
                assert!(answer.contains("connection: close\r\n"), "{answer}");
                let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
                let v: serde_json::Value = serde_json::from_str(body).expect("json body");
                assert_eq!(v["error"]["status"].as_u64(), status[..3].parse().ok());
                let message = v["error"]["message"].as_str().unwrap_or("");
                assert!(message.contains(says), "{message}");
                assert!(
                    answer.contains(&format!("content-length: {}\r\n", body.len())),
                    "{answer}"
                );
            }
        }
    }

    #[tokio::test]
    async fn heads_up_to_64_kib_pass_and_longer_ones_or_too_many_headers_get_431() {
        let head = |filler: usize| {
            let mut h = b"GET / HTTP/1.1\r\nX-Fill: ".to_vec();
            h.resize(h.len() + filler, b'a');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        let fits = head(MAX_HEAD - head(0).len());
        assert_eq!(fits.len(), MAX_HEAD);
        let (handed, answer) = through(&fits, 4096).await;
        assert_eq!((handed.len(), answer.as_str()), (MAX_HEAD, ""));

        let over = head(MAX_HEAD - head(0).len() + 1);
        for sent in [
            over.clone(),
            [over, b"more".to_vec()].concat(),
            head(200_000),
        ] {
            for piece in [4096, 100_000] {
                let (handed, answer) = through(&sent, piece).await;
                assert!(handed.is_empty());
                assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
                assert!(answer.contains("65536 bytes"), "{answer}");
            }
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let (handed, answer) =
            through(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), 512).await;
        assert!(handed.is_empty());
        assert!(answer.contains("more than 100 headers"), "{answer}");
    }

    #[tokio::test]
    async fn an_upgraded_connection_passes_whatever_follows_its_head() {
        let sent =
            b"GET /api/v3/events HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\
            \x81\x05hello GET / HTTP/1.1\r\nTransfer-Encoding: x\r\n\r\n";
        let (handed, answer) = through(sent, 3).await;
        assert_eq!((handed.as_slice(), answer.as_str()), (&sent[..], ""));
    }

    #[test]
    fn chunked_framing_it_cannot_follow_is_left_to_hyper() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"3\r\nabcX",
            b"0\r\n\rX",
            b"1234567890abcdef0\r\n",
        ] {
            let mut c = Chunk::FIRST;
            assert_eq!(
                c.feed(bad).1,
                Fed::Lost,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut c = Chunk::FIRST;
        assert_eq!(c.feed(b"2\r\nab\r\n0\r\n\r\nnext"), (12, Fed::Done));
    }

    #[test]
    fn content_lengths_are_digits_or_lists_of_equal_ones() {
        assert_eq!(content_length(b"42"), Some(42));
        assert_eq!(content_length(b" 7 , 7"), Some(7));
        for bad in [
            &b""[..],
            b"-1",
            b"1 2",
            b"7, 8",
            b"+5",
            b"99999999999999999999",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
