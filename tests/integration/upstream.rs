//! Misbehaving upstream HTTP servers for the URL-import tests.
//!
//! [`Upstream::start`] binds a tiny HTTP/1.1 server on `127.0.0.1:0` that serves one body at every
//! path, with a chosen [`Behaviour`]: a well-behaved server with `Range` support, one that ignores
//! `Range`, one that redirects, one that stalls or drops the connection part-way through a body,
//! and one that answers with a fixed status. Each connection carries exactly one request: the
//! server reads the request head (at most 16 KiB), writes one response with `Connection: close`,
//! and closes. The server records the `Range` header of every request and counts the body bytes it
//! writes, so tests can assert that a "peek" did not download a whole image.
//!
//! The server (including any stalled connection) stops when the [`Upstream`] is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Largest request head the server accepts; larger heads get 431.
const MAX_HEAD: usize = 16 * 1024;
/// Bodies are written in chunks of at most this many bytes.
const CHUNK: usize = 64 * 1024;

/// How an [`Upstream`] answers requests.
#[allow(dead_code)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves `body` for GET; honours `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (single range)
    /// with 206 + `Content-Range`; no `Range` -> 200 with `Content-Length`. A range starting at or
    /// beyond the end of the body -> 416 with `Content-Range: bytes */LEN`. Malformed or multi-range
    /// headers are ignored (200 with the whole body), as RFC 9110 allows.
    Normal,
    /// Ignores `Range`: always 200 with the whole body and `Content-Length`.
    IgnoresRange,
    /// Answers every request with 302 and `Location: <target>` (an absolute URL given by the test).
    RedirectTo(String),
    /// For a GET without `Range`: sends 200 with `Content-Length` = body length and the first
    /// `after` bytes, then stalls forever (keeps the socket open, sends nothing more). Requests
    /// with a `Range` header are answered as [`Behaviour::Normal`] does, so a peek succeeds.
    StallAfter(usize),
    /// Like [`Behaviour::StallAfter`], but closes the connection after `after` bytes of a GET
    /// without `Range`, so the client sees the body end before `Content-Length` bytes.
    DropAfter(usize),
    /// Always answers with this status code and a short text body.
    Status(u16),
    /// Ignores `Range` and stalls: every GET gets 200 with the full `Content-Length`, `after`
    /// bytes, then silence. A client that wants only a prefix must stop reading by itself.
    IgnoresRangeThenStall(usize),
}

struct State {
    body: Bytes,
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<Option<String>>>,
    authorizations: Mutex<Vec<Option<String>>>,
    bytes_sent: AtomicU64,
}

/// A running upstream server; dropping it stops the server and all its connections.
#[allow(dead_code)]
pub struct Upstream {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[allow(dead_code)]
impl Upstream {
    /// Starts a server on 127.0.0.1:0 serving `body` at every path with the given behaviour.
    pub async fn start(body: Vec<u8>, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream listener");
        let port = listener.local_addr().expect("upstream local address").port();
        let state = Arc::new(State {
            body: Bytes::from(body),
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
            authorizations: Mutex::new(Vec::new()),
            bytes_sent: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Upstream { port, state, task }
    }

    /// Changes how later requests are answered (connections already stalled stay stalled).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// `http://127.0.0.1:PORT/PATH` (path without leading slash; e.g. `url("disk.raw")`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// One entry per request received so far, in order: its `Range` header, or `None` when absent.
    pub fn requests(&self) -> Vec<Option<String>> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One entry per request received so far, in order: its `Authorization` header, if any.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state
            .authorizations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Total response-body bytes handed to client sockets so far (including short text bodies of
    /// error responses). Bytes count once the kernel accepts them, not once the client reads them.
    pub fn bytes_sent(&self) -> u64 {
        self.state.bytes_sent.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task too.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(handle(stream, Arc::clone(&state)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

pub(crate) struct Request {
    pub(crate) method: String,
    /// The request target: path and query.
    pub(crate) path: String,
    pub(crate) range: Option<String>,
    pub(crate) authorization: Option<String>,
}

pub(crate) enum HeadError {
    /// The client went away before sending a complete head.
    Closed,
    TooLarge,
    Malformed,
}

/// Reads one HTTP/1 request head (also the token service's in `registry`).
pub(crate) async fn read_request(stream: &mut TcpStream) -> Result<Request, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut scratch = [0u8; 4096];
    let head_len = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        match stream.read(&mut scratch).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
        }
    };
    if head_len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| HeadError::Malformed)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().ok_or(HeadError::Malformed)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if method.is_empty() || !path.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed);
    }
    let mut range = None;
    let mut authorization = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HeadError::Malformed);
        };
        if range.is_none() && name.trim().eq_ignore_ascii_case("range") {
            range = Some(value.trim().to_owned());
        }
        if authorization.is_none() && name.trim().eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_owned());
        }
    }
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        range,
        authorization,
    })
}

/// What a `Range` header asks for, resolved against a body of a given length.
#[derive(Debug, PartialEq, Eq)]
enum RangeOutcome {
    /// No usable range: serve the whole body.
    Full,
    /// Inclusive byte range.
    Partial(usize, usize),
    Unsatisfiable,
}

fn resolve_range(header: Option<&str>, len: usize) -> RangeOutcome {
    let Some(header) = header else {
        return RangeOutcome::Full;
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeOutcome::Full;
    };
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeOutcome::Full;
    };
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        let Ok(suffix) = end.parse::<usize>() else {
            return RangeOutcome::Full;
        };
        if suffix == 0 || len == 0 {
            return RangeOutcome::Unsatisfiable;
        }
        return RangeOutcome::Partial(len.saturating_sub(suffix), len - 1);
    }
    let Ok(first) = start.parse::<usize>() else {
        return RangeOutcome::Full;
    };
    let last = if end.is_empty() {
        None
    } else {
        let Ok(last) = end.parse::<usize>() else {
            return RangeOutcome::Full;
        };
        if last < first {
            return RangeOutcome::Full;
        }
        Some(last)
    };
    if first >= len {
        return RangeOutcome::Unsatisfiable;
    }
    RangeOutcome::Partial(first, last.map_or(len - 1, |last| last.min(len - 1)))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Formats a response head; `Content-Length` and `Connection: close` are always included.
fn head(status: u16, content_length: usize, headers: &[(&str, String)]) -> String {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {content_length}\r\n",
        reason(status)
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// Writes `data` in chunks of at most [`CHUNK`] bytes, counting what the socket accepts. Returns
/// false if the client went away.
async fn write_body(stream: &mut TcpStream, data: &[u8], counter: &AtomicU64) -> bool {
    let mut offset = 0;
    while offset < data.len() {
        let end = data.len().min(offset + CHUNK);
        match stream.write(&data[offset..end]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                offset += n;
                counter.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    }
    true
}

/// Writes a complete response (`body` is skipped for HEAD), then closes the connection politely.
async fn respond(stream: &mut TcpStream, state: &State, head: String, body: &[u8], is_head: bool) {
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if !is_head && !write_body(stream, body, &state.bytes_sent).await {
        return;
    }
    if stream.flush().await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    // Drain whatever the client still sends until it closes, so closing does not reset the
    // connection before the client has read the response.
    let mut scratch = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = stream.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn handle(mut stream: TcpStream, state: Arc<State>) {
    let request = match read_request(&mut stream).await {
        Ok(request) => request,
        Err(HeadError::Closed) => return,
        Err(HeadError::TooLarge) => {
            let text = b"request head too large\n";
            respond(&mut stream, &state, head(431, text.len(), &[]), text, false).await;
            return;
        }
        Err(HeadError::Malformed) => {
            let text = b"malformed request\n";
            respond(&mut stream, &state, head(400, text.len(), &[]), text, false).await;
            return;
        }
    };
    state
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request.range.clone());
    state
        .authorizations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request.authorization.clone());

    let is_head = request.method == "HEAD";
    let behaviour = state.behaviour.lock().unwrap_or_else(PoisonError::into_inner).clone();
    match &behaviour {
        Behaviour::RedirectTo(target) => {
            let text = format!("redirecting to {target}\n");
            let h = head(302, text.len(), &[("Location", target.clone())]);
            respond(&mut stream, &state, h, text.as_bytes(), is_head).await;
            return;
        }
        Behaviour::Status(code) => {
            let text = format!("{code} {}\n", reason(*code));
            let h = head(*code, text.len(), &[("Content-Type", "text/plain".to_owned())]);
            respond(&mut stream, &state, h, text.as_bytes(), is_head).await;
            return;
        }
        _ => {}
    }
    if !is_head && request.method != "GET" {
        let text = b"method not allowed\n";
        let h = head(405, text.len(), &[("Allow", "GET, HEAD".to_owned())]);
        respond(&mut stream, &state, h, text, false).await;
        return;
    }

    let body = state.body.clone();
    let octets = ("Content-Type", "application/octet-stream".to_owned());
    let accept_ranges = ("Accept-Ranges", "bytes".to_owned());
    let cut_short = match &behaviour {
        Behaviour::IgnoresRange => {
            respond(&mut stream, &state, head(200, body.len(), &[octets]), &body, is_head).await;
            return;
        }
        Behaviour::StallAfter(after) | Behaviour::DropAfter(after) if request.range.is_none() => Some(*after),
        Behaviour::IgnoresRangeThenStall(after) => Some(*after),
        _ => None,
    };
    if let Some(after) = cut_short {
        let h = head(200, body.len(), &[octets, accept_ranges]);
        if stream.write_all(h.as_bytes()).await.is_err() || is_head {
            return;
        }
        let sent = &body[..after.min(body.len())];
        if !write_body(&mut stream, sent, &state.bytes_sent).await || stream.flush().await.is_err() {
            return;
        }
        if matches!(
            behaviour,
            Behaviour::StallAfter(_) | Behaviour::IgnoresRangeThenStall(_)
        ) {
            // Keep the socket open and silent until the server is dropped.
            std::future::pending::<()>().await;
        }
        let _ = stream.shutdown().await;
        return;
    }

    match resolve_range(request.range.as_deref(), body.len()) {
        RangeOutcome::Full => {
            let h = head(200, body.len(), &[octets, accept_ranges]);
            respond(&mut stream, &state, h, &body, is_head).await;
        }
        RangeOutcome::Partial(first, last) => {
            let content_range = ("Content-Range", format!("bytes {first}-{last}/{}", body.len()));
            let h = head(206, last - first + 1, &[octets, accept_ranges, content_range]);
            respond(&mut stream, &state, h, &body[first..=last], is_head).await;
        }
        RangeOutcome::Unsatisfiable => {
            let content_range = ("Content-Range", format!("bytes */{}", body.len()));
            respond(
                &mut stream,
                &state,
                head(416, 0, &[accept_ranges, content_range]),
                &[],
                is_head,
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::StatusCode;
    use tokio::time::timeout;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn get(url: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(url);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        timeout(LIMIT, request.send()).await.unwrap().unwrap()
    }

    async fn body_of(response: reqwest::Response) -> Vec<u8> {
        timeout(LIMIT, response.bytes()).await.unwrap().unwrap().to_vec()
    }

    #[test]
    fn ranges_resolve() {
        assert_eq!(resolve_range(None, 10), RangeOutcome::Full);
        assert_eq!(resolve_range(Some("bytes=0-3"), 10), RangeOutcome::Partial(0, 3));
        assert_eq!(resolve_range(Some("bytes=4-"), 10), RangeOutcome::Partial(4, 9));
        assert_eq!(resolve_range(Some("bytes=5-100"), 10), RangeOutcome::Partial(5, 9));
        assert_eq!(resolve_range(Some("bytes=-3"), 10), RangeOutcome::Partial(7, 9));
        assert_eq!(resolve_range(Some("bytes=-30"), 10), RangeOutcome::Partial(0, 9));
        assert_eq!(resolve_range(Some("bytes=10-"), 10), RangeOutcome::Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=-0"), 10), RangeOutcome::Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=0-"), 0), RangeOutcome::Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=3-1"), 10), RangeOutcome::Full);
        assert_eq!(resolve_range(Some("bytes=0-1,3-4"), 10), RangeOutcome::Full);
        assert_eq!(resolve_range(Some("items=0-1"), 10), RangeOutcome::Full);
    }

    #[tokio::test]
    async fn normal_serves_whole_body_and_ranges() {
        let body = pattern(200_000);
        let up = Upstream::start(body.clone(), Behaviour::Normal).await;
        assert_eq!(up.url("disk.raw"), format!("http://127.0.0.1:{}/disk.raw", up.port()));

        let response = get(&up.url("disk.raw"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-length"], "200000");
        assert_eq!(body_of(response).await, body);

        let response = get(&up.url("disk.raw"), Some("bytes=0-511")).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(response.headers()["content-range"], "bytes 0-511/200000");
        assert_eq!(body_of(response).await, &body[..512]);

        let response = get(&up.url("x"), Some("bytes=199990-")).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(response.headers()["content-range"], "bytes 199990-199999/200000");
        assert_eq!(body_of(response).await, &body[199_990..]);

        let response = get(&up.url("x"), Some("bytes=-4")).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body_of(response).await, &body[199_996..]);

        let response = get(&up.url("x"), Some("bytes=200000-")).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(response.headers()["content-range"], "bytes */200000");

        let response = timeout(LIMIT, reqwest::Client::new().head(up.url("x")).send())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-length"], "200000");

        assert_eq!(
            up.requests(),
            vec![
                None,
                Some("bytes=0-511".to_owned()),
                Some("bytes=199990-".to_owned()),
                Some("bytes=-4".to_owned()),
                Some("bytes=200000-".to_owned()),
                None,
            ]
        );
        assert_eq!(up.bytes_sent(), 200_000 + 512 + 10 + 4);
    }

    #[tokio::test]
    async fn ignores_range_sends_everything() {
        let body = pattern(5000);
        let up = Upstream::start(body.clone(), Behaviour::IgnoresRange).await;
        let response = get(&up.url("disk.raw"), Some("bytes=0-511")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("content-range").is_none());
        assert_eq!(body_of(response).await, body);
        assert_eq!(up.requests(), vec![Some("bytes=0-511".to_owned())]);
        assert_eq!(up.bytes_sent(), 5000);
    }

    #[tokio::test]
    async fn redirect_points_elsewhere() {
        let body = pattern(1000);
        let target = Upstream::start(body.clone(), Behaviour::Normal).await;
        let up = Upstream::start(Vec::new(), Behaviour::RedirectTo(target.url("real.raw"))).await;

        let no_follow = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = timeout(LIMIT, no_follow.get(up.url("disk.raw")).send())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], target.url("real.raw").as_str());

        let response = get(&up.url("disk.raw"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_of(response).await, body);
        assert_eq!(up.requests().len(), 2);
        assert_eq!(target.requests(), vec![None]);
    }

    #[tokio::test]
    async fn stall_after_never_finishes_but_peek_works() {
        let body = pattern(300_000);
        let up = Upstream::start(body.clone(), Behaviour::StallAfter(100_000)).await;

        let response = get(&up.url("disk.raw"), Some("bytes=0-511")).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body_of(response).await, &body[..512]);

        let mut response = get(&up.url("disk.raw"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-length"], "300000");
        let mut received = Vec::new();
        while received.len() < 100_000 {
            let chunk = timeout(LIMIT, response.chunk()).await.unwrap().unwrap().unwrap();
            received.extend_from_slice(&chunk);
        }
        assert_eq!(received, &body[..100_000]);
        assert!(
            timeout(Duration::from_millis(500), response.chunk()).await.is_err(),
            "body should stall"
        );
        assert_eq!(up.bytes_sent(), 512 + 100_000);
    }

    #[tokio::test]
    async fn drop_after_truncates_body() {
        let body = pattern(300_000);
        let up = Upstream::start(body.clone(), Behaviour::DropAfter(70_000)).await;

        let response = get(&up.url("disk.raw"), Some("bytes=0-511")).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body_of(response).await, &body[..512]);

        let response = get(&up.url("disk.raw"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        // Either reqwest reports the truncated body as an error, or it hands back a short one.
        if let Ok(bytes) = timeout(LIMIT, response.bytes()).await.unwrap() {
            assert!(bytes.len() < body.len(), "body should be short");
        }
        assert_eq!(up.bytes_sent(), 512 + 70_000);
    }

    #[tokio::test]
    async fn status_answers_every_request() {
        let up = Upstream::start(pattern(100), Behaviour::Status(503)).await;
        let response = get(&up.url("disk.raw"), Some("bytes=0-511")).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body_of(response).await.is_empty());
        let response = get(&up.url("other"), None).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(up.requests(), vec![Some("bytes=0-511".to_owned()), None]);
    }

    #[tokio::test]
    async fn dropping_stops_the_server() {
        let up = Upstream::start(pattern(10), Behaviour::Normal).await;
        let url = up.url("disk.raw");
        drop(up);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let result = timeout(LIMIT, reqwest::Client::new().get(url).send()).await.unwrap();
        assert!(result.is_err(), "server should be gone");
    }
}
