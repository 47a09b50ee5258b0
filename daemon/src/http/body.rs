//! Response bodies: small ones in memory, stored files streamed from disk.

use std::io::SeekFrom;
use std::path::Path;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Every response body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A body held in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `value` as a JSON response.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(full(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `len` bytes of the file at `path` from `offset`, streamed.
pub async fn file(path: &Path, offset: u64, len: u64) -> std::io::Result<Body> {
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(SeekFrom::Start(offset)).await?;
    let stream = ReaderStream::with_capacity(f.take(len), 64 * 1024).map_ok(Frame::data);
    Ok(BodyExt::boxed(StreamBody::new(stream)))
}

/// The chunks `rx` yields, as they come; an error ends the body as failed.
pub fn stream(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> Body {
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    BodyExt::boxed(StreamBody::new(chunks))
}
