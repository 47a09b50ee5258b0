//! An HTTP sink on 127.0.0.1 for outgoing-webhook tests: records every request and answers from
//! a script (200 when the script is empty).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the sink answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A status with extra headers, e.g. Retry-After.
    With(u16, Vec<(String, String)>),
    /// Never answer (the connection stays open).
    Hang,
}

/// A running sink.
pub struct HttpSink {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    script: Arc<Mutex<VecDeque<Reply>>>,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl HttpSink {
    /// Listens on an ephemeral port.
    pub async fn start() -> HttpSink {
        HttpSink::start_on(0).await
    }

    /// Listens on `port` of 127.0.0.1 (0: an ephemeral one), e.g. one a client was already
    /// given while nothing listened there.
    pub async fn start_on(port: u16) -> HttpSink {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind sink");
        let port = listener.local_addr().expect("addr").port();
        let script: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let s = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, s) = (tx.clone(), s.clone());
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut r = BufReader::new(r);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or("").to_string();
                        let path = parts.next().unwrap_or("").to_string();
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                            }
                        }
                        let len = headers
                            .iter()
                            .find(|(k, _)| k == "content-length")
                            .and_then(|(_, v)| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let _ = tx.send(Received {
                            method,
                            path,
                            headers,
                            body,
                            at: Instant::now(),
                        });
                        let reply = s
                            .lock()
                            .ok()
                            .and_then(|mut q| q.pop_front())
                            .unwrap_or(Reply::Status(200));
                        let (status, extra) = match reply {
                            Reply::Status(c) => (c, Vec::new()),
                            Reply::With(c, h) => (c, h),
                            Reply::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                        };
                        let mut resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 8\r\n");
                        for (k, v) in extra {
                            resp.push_str(&format!("{k}: {v}\r\n"));
                        }
                        resp.push_str("\r\nreceived");
                        if w.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HttpSink {
            url: format!("http://127.0.0.1:{port}"),
            port,
            script,
            rx,
        }
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut q) = self.script.lock() {
            q.extend(replies);
        }
    }

    /// The next request; panics after 30 s.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(30), self.rx.recv())
            .await
            .expect("a request within 30 s")
            .expect("sink running")
    }

    /// Requests received and not yet taken, without waiting.
    pub fn pending(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            out.push(r);
        }
        out
    }
}
