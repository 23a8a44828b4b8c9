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
});

fn upload_head(app: &TestApp, token: &str, id: &str, framing: &str) -> String {
    let addr = app.direct.trim_start_matches("http://");
    format!(
        "PUT /api/v1/organizations/acme/regions/local/images/{id}/file HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n{framing}\r\n"
    )
}

/// A chunked-encoding frame.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn body_of(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

async fn state_of(app: &TestApp, token: &str, id: &str) -> String {
    let res = app
        .req(Method::GET, &format!("{}/images/{id}", app.v1("acme", "local")), token)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await["status"]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

both!(
    stalled_uploads_time_out,
    config = |c: &mut strata_api::Config| {
        c.limits.body_idle_timeout_secs = 1;
        c.limits.body_base_secs = 2;
        c.limits.body_min_bytes_per_sec = 1 << 20;
        c.server.request_header_timeout_secs = 1;
    },
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let data = samples::raw_mbr(4 << 20);
        // Content-Length announced, a quarter sent, then silence
        let img = app.create_named("acme", &t, "stalled-length").await;
        let id = img["id"].as_str().unwrap();
        let mut s = open_raw(
            &app,
            &upload_head(&app, &t, id, &format!("Content-Length: {}\r\n", data.len())),
            &data[..1 << 20],
        )
        .await;
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(6)).await;
        assert_eq!(status_of(&got), 408, "{got}");
        assert_eq!(body_of(&got)["error"], "request-timeout", "{got}");
        assert!(closed.is_some(), "the connection stayed open after the 408");
        // chunked, a few chunks, then silence
        let img = app.create_named("acme", &t, "stalled-chunked").await;
        let id2 = img["id"].as_str().unwrap();
        let mut s = open_raw(
            &app,
            &upload_head(&app, &t, id2, "Transfer-Encoding: chunked\r\n"),
            &chunk(&data[..100_000]),
        )
        .await;
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(6)).await;
        assert_eq!(status_of(&got), 408, "{got}");
        assert!(closed.is_some(), "the connection stayed open after the 408");
        // a trickle that is never idle for long but far below the minimum rate
        let img = app.create_named("acme", &t, "trickle").await;
        let id3 = img["id"].as_str().unwrap();
        let mut s = open_raw(
            &app,
            &upload_head(&app, &t, id3, "Transfer-Encoding: chunked\r\n"),
            &chunk(&data[..65536]),
        )
        .await;
        let started = Instant::now();
        let mut offset = 65536;
        let answer = loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if s.write_all(&chunk(&data[offset..offset + 1000])).await.is_err()
                || started.elapsed() > Duration::from_secs(8)
            {
                break read_until_closed(&mut s, Duration::from_secs(3)).await;
            }
            offset += 1000;
        };
        assert_eq!(status_of(&answer.0), 408, "{}", answer.0);
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the trickle went on for {:?}",
            started.elapsed()
        );
        // slow headers are cut off too
        let mut s = open_raw(&app, "GET /healthz HTTP/1.1\r\nHost: x\r\n", b"").await;
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "a connection that never finished its headers stayed open"
        );
        // nothing was kept, the images stay pending and take a good upload afterwards
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.stored().await, Vec::<String>::new());
        for id in [id, id2, id3] {
            assert_eq!(state_of(&app, &t, id).await, "pending");
        }
        expect_status(
            app.upload("acme", &t, id, samples::raw_mbr(1 << 20)).await,
            StatusCode::OK,
        )
        .await;
    }
);

both!(
    uploads_are_limited_per_image_and_organization,
    config = |c: &mut strata_api::Config| {
        c.quotas.max_concurrent_uploads = 2;
    },
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let mut ids = vec![];
        for i in 0..3 {
            let img = app.create_named("acme", &t, &format!("disk-{i}")).await;
            ids.push(img["id"].as_str().unwrap().to_owned());
        }
        let data = samples::raw_mbr(1 << 20);
        let length = format!("Content-Length: {}\r\n", data.len());
        let first = open_raw(&app, &upload_head(&app, &t, &ids[0], &length), &data[..200_000]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // the same image: 409 at once, on this replica and on another one
        let started = Instant::now();
        expect_error(
            app.upload("acme", &t, &ids[0], data.clone()).await,
            StatusCode::CONFLICT,
            "upload-in-progress",
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let other = app.sibling(app.cfg.clone()).await;
        expect_error(
            other.upload("acme", &t, &ids[0], data.clone()).await,
            StatusCode::CONFLICT,
            "upload-in-progress",
        )
        .await;
        // a second image: fine up to the organization's limit, then 429 with Retry-After
        let second = open_raw(&app, &upload_head(&app, &t, &ids[1], &length), &data[..200_000]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let res = other.upload("acme", &t, &ids[2], data.clone()).await;
        let retry = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        expect_error(res, StatusCode::TOO_MANY_REQUESTS, "too-many-uploads").await;
        assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok()), "no Retry-After");
        // another organization is not affected
        let b = app.token(&["beta"]);
        let img = app.create_named("beta", &b, "theirs").await;
        expect_status(
            app.upload("beta", &b, img["id"].as_str().unwrap(), data.clone()).await,
            StatusCode::OK,
        )
        .await;
        // a client that goes away gives its slot back
        drop(first);
        let mut done = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let res = app.upload("acme", &t, &ids[2], data.clone()).await;
            if res.status() == StatusCode::OK {
                done = Some(());
                break;
            }
            expect_error(res, StatusCode::TOO_MANY_REQUESTS, "too-many-uploads").await;
        }
        assert!(done.is_some(), "the slot of a client that went away was not given back");
        expect_status(app.upload("acme", &t, &ids[0], data.clone()).await, StatusCode::OK).await;
        drop(second);
    }
);

both!(
    chunked_upload_stops_when_it_crosses_the_quota,
    config = |c: &mut strata_api::Config| {
        c.quotas.max_bytes = 1 << 20;
    },
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let img = app.create_named("acme", &t, "big").await;
        let id = img["id"].as_str().unwrap();
        // 2 MiB of an 8 MiB body in chunks, then the client pauses: the server must not wait for
        // the rest to find that it cannot fit
        let data = samples::raw_mbr(8 << 20);
        let mut body = vec![];
        for part in data[..2 << 20].chunks(64 << 10) {
            body.extend(chunk(part));
        }
        let started = Instant::now();
        let mut s = open_raw(
            &app,
            &upload_head(&app, &t, id, "Transfer-Encoding: chunked\r\n"),
            &body,
        )
        .await;
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert_eq!(status_of(&got), 409, "{got}");
        assert_eq!(body_of(&got)["error"], "quota-exceeded", "{got}");
        assert!(closed.is_some(), "the connection stayed open");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.stored().await, Vec::<String>::new());
        assert_eq!(state_of(&app, &t, id).await, "pending");
    }
);

both!(
    upload_leases_are_renewed_while_streaming_and_lapse_after_a_crash,
    config = |c: &mut strata_api::Config| {
        c.limits.upload_lease_secs = 1;
    },
    |app: TestApp| async move {
        use sea_orm::ConnectionTrait;
        let t = app.token(&["acme"]);
        let a = app.create_named("acme", &t, "streaming").await;
        let a = a["id"].as_str().unwrap().to_owned();
        let b = app.create_named("acme", &t, "orphaned").await;
        let b = b["id"].as_str().unwrap().to_owned();
        // a live upload outlasting its lease several times keeps it: renewed while streaming
        let data = samples::raw_mbr(1 << 20);
        let mut s = open_raw(
            &app,
            &upload_head(&app, &t, &a, "Transfer-Encoding: chunked\r\n"),
            &chunk(&data[..65536]),
        )
        .await;
        let mut offset = 65536;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(3500) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            s.write_all(&chunk(&data[offset..offset + 4096])).await.unwrap();
            offset += 4096;
        }
        expect_error(
            app.upload("acme", &t, &a, data.clone()).await,
            StatusCode::CONFLICT,
            "upload-in-progress",
        )
        .await;
        s.write_all(&chunk(&data[offset..])).await.unwrap();
        s.write_all(b"0\r\n\r\n").await.unwrap();
        let (got, _) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        assert_eq!(status_of(&got), 200, "{got}");
        // a lease left by a process that died (nobody renews it) lapses
        let db = strata_api::db::connect(&app.cfg.database_url(), Some(1)).await.unwrap();
        let expires = chrono::Utc::now().timestamp_micros() + 1_000_000;
        db.execute_unprepared(&format!(
            "INSERT INTO upload_leases (image_id, organization_id, holder, expires_at) VALUES ('{b}', 'acme', 'dead', {expires})"
        ))
        .await
        .unwrap();
        expect_error(
            app.upload("acme", &t, &b, data.clone()).await,
            StatusCode::CONFLICT,
            "upload-in-progress",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        expect_status(app.upload("acme", &t, &b, data.clone()).await, StatusCode::OK).await;
    }
);

/// Reads one response (head and a `content-length` body) from a kept-alive connection.
async fn read_response(s: &mut TcpStream) -> String {
    let (head, _, body) = tokio::time::timeout(Duration::from_secs(10), read_http_response(s, false))
        .await
        .expect("a response within 10 s");
    head + &String::from_utf8_lossy(&body)
}

// actix-http times out slow headers only on a connection's first request; the keep-alive
// watchdog (keepalive.rs) does it for every later one. Before it, the stalled second request
// below held its connection for as long as the client liked (over 2 minutes measured).
both!(
    slow_headers_on_a_kept_alive_connection_time_out,
    config = |c: &mut strata_api::Config| {
        c.server.request_header_timeout_secs = 1;
        c.server.keep_alive_secs = 1;
    },
    |app: TestApp| async move {
        let addr = app.direct.trim_start_matches("http://").to_owned();
        let get = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let mut s = open_raw(&app, &get, b"").await;
        assert_eq!(status_of(&read_response(&mut s).await), 200);
        // the connection is reused while the client keeps to the timeouts
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(get.as_bytes()).await.unwrap();
        assert_eq!(status_of(&read_response(&mut s).await), 200);
        // then part of a third request's headers, and silence
        s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
            .await
            .unwrap();
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        let closed = closed.expect("a stalled request on a kept-alive connection was left open");
        // keep-alive (1 s) + header timeout (1 s) + one watchdog scan (1 s), with slack
        assert!(closed < Duration::from_secs(5), "closed after {closed:?}");

        // A request that stays in the application longer than that is not touched: an upload
        // streaming steadily for about 3 s on a kept-alive connection.
        let t = app.token(&["acme"]);
        let img = app.create_named("acme", &t, "steady").await;
        let id = img["id"].as_str().unwrap();
        let data = samples::raw_mbr(1 << 20);
        let mut s = open_raw(&app, &get, b"").await;
        assert_eq!(status_of(&read_response(&mut s).await), 200);
        let head = upload_head(&app, &t, id, &format!("Content-Length: {}\r\n", data.len()));
        s.write_all(head.as_bytes()).await.unwrap();
        for part in data.chunks(data.len() / 12) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            s.write_all(part).await.unwrap();
        }
        let res = read_response(&mut s).await;
        assert_eq!(status_of(&res), 200, "{res}");
        assert_eq!(state_of(&app, &t, id).await, "ready");
    }
);

// The HTTP/1 parser's own refusals (past actix-http's hard limits, or not HTTP at all) carry the
// same JSON error document as every other 4xx (vendor/README.md), not an empty body.
both!(parser_refusals_carry_the_json_error, |app: TestApp| async move {
    fn json_body(response: &str) -> serde_json::Value {
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
        assert!(
            head.to_ascii_lowercase().contains("content-type: application/json"),
            "no JSON content type: {head}"
        );
        assert!(
            head.to_ascii_lowercase().contains("x-request-id: "),
            "no request id: {head}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON error ({e}): {response:?}"))
    }
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "120 header fields (actix-http stops at 96)",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..120).map(|i| format!("x-f{i}: v\r\n")).collect::<String>()
            ),
            431,
            "headers-too-large",
        ),
        (
            "a 200 KiB header (actix-http stops at 128 KiB)",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(200 * 1024)
            ),
            431,
            "headers-too-large",
        ),
        (
            "not HTTP",
            "GET /healthz HTTP/1.1\r\nHost x\0\r\n\r\n".to_owned(),
            400,
            "invalid-input",
        ),
    ];
    for (what, head, status, code) in cases {
        let addr = app.direct.trim_start_matches("http://").to_owned();
        let mut s = TcpStream::connect(&addr).await.unwrap();
        // the server may answer and close before it has read everything: ignore write errors
        let _ = s.write_all(head.as_bytes()).await;
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert_eq!(status_of(&got), status, "{what}: {got:?}");
        assert!(closed.is_some(), "{what}: the connection stayed open");
        let err = json_body(&got);
        assert_eq!(err["error"], code, "{what}: {err}");
        assert!(!err["message"].as_str().unwrap_or_default().is_empty(), "{what}: {err}");
        assert!(
            !err["requestId"].as_str().unwrap_or_default().is_empty(),
            "{what}: {err}"
        );
    }
});
