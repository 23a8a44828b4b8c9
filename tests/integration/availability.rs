//! Availability under hostile clients: refused requests close their connections whatever the
//! body's framing, upload bodies time out, and one organization cannot hold unbounded uploads.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use strata_domain::disk_format::samples;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both;
use crate::harness::*;

/// Sends `head` (and `body`) on a fresh connection without finishing the request.
pub async fn open_raw(app: &TestApp, head: &str, body: &[u8]) -> TcpStream {
    let addr = app.direct.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s.flush().await.unwrap();
    s
}

/// Reads until the server closes the connection (EOF or reset) or `limit` passes. Returns what was
/// read and how long the server took to close, `None` if it did not.
pub async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), Some(started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

both!(refused_chunked_requests_are_closed, |app: TestApp| async move {
    let t = app.token(&["acme"]);
    let img = app.create_named("acme", &t, "disk").await;
    let id = img["id"].as_str().unwrap();
    let file = format!("/api/v1/organizations/acme/regions/local/images/{id}/file");
    let cases = [
        ("POST /healthz", String::new(), 405),
        ("POST /nowhere", String::new(), 404),
        (&*format!("PUT {file}"), String::new(), 401),
        (
            &*format!("PUT {file}"),
            format!("Authorization: Bearer {t}\r\nContent-Type: text/plain\r\n"),
            415,
        ),
    ];
    for (line, extra, want) in cases {
        for framing in ["Transfer-Encoding: chunked\r\n", "Content-Length: 100000\r\n"] {
            let head = format!("{line} HTTP/1.1\r\nHost: x\r\n{extra}{framing}\r\n");
            let body: &[u8] = if framing.contains("chunked") {
                b"5\r\nhello\r\n"
            } else {
                b"hello"
            };
            let mut s = open_raw(&app, &head, body).await;
            let (got, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
            assert_eq!(status_of(&got), want, "{line} {framing:?}: {got}");
            let closed =
                closed.unwrap_or_else(|| panic!("{line} with {framing:?}: the server kept the connection open"));
            assert!(
                closed < Duration::from_secs(3),
                "{line} {framing:?}: closed after {closed:?}"
            );
        }
    }
    // the service still works
    let res = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let _ = (Method::GET, samples::raw_mbr(512));
});
