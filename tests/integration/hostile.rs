//! Hostile clients against the real `strata serve` with a low open-file limit: hundreds of
//! stalled and unfinished connections must not take health checks down, every stalled upload
//! ends within its timeout, and nothing (staging files, descriptors) is left afterwards.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::cli::{spawn_serve, strata};
use crate::harness::files_under;

const BIN: &str = env!("CARGO_BIN_EXE_strata");
const NOFILE: u64 = 256;
const UPLOADS: usize = 40;
const SLOW_HEADERS: usize = 300;
const CHUNKED: usize = 100;
const IDLE_SECS: u64 = 3;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Sends `head` + `body` and then nothing; returns how long the server took to close the
/// connection and the status line it sent, if any.
async fn stall(addr: String, head: String, body: Vec<u8>, limit: Duration) -> (Option<Duration>, String) {
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect(&addr).await else {
        return (Some(started.elapsed()), "connect failed".into());
    };
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(&body).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), s.read(&mut buf)).await {
            Err(_) => {
                return (
                    None,
                    String::from_utf8_lossy(&got).lines().next().unwrap_or("").to_owned(),
                );
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                let line = String::from_utf8_lossy(&got).lines().next().unwrap_or("").to_owned();
                return (Some(started.elapsed()), line);
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One `/healthz` or `/readyz` on a fresh connection; its latency if it answered 200.
async fn probe(addr: &str, path: &str) -> Option<Duration> {
    let started = Instant::now();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (closed, line) = stall(addr.to_owned(), head, vec![], Duration::from_secs(10)).await;
    (closed.is_some() && line.contains(" 200 ")).then(|| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_connections_under_a_low_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nmetrics_listen = \"127.0.0.1:0\"\nworkers = 2\nrequest_header_timeout_secs = 1\nkeep_alive_secs = 2\ndisconnect_timeout_secs = 1\n\
             [limits]\nbody_idle_timeout_secs = {IDLE_SECS}\nbody_base_secs = 5\nbody_min_bytes_per_sec = 65536\n\
             [quotas]\nmax_concurrent_uploads = 1000\n[sweeper]\nenabled = false\n"
        ),
    )
    .unwrap();
    let token = strata(&["token", "--data-dir", d, "--org", "acme"]).trim().to_owned();
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .args([
            BIN,
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            d,
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(log);
    let (server, mut stdout) = spawn_serve(cmd);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    // the operations listener ([server] metrics_listen), which answers the probes too
    let ops = line
        .split("metrics on http://")
        .nth(1)
        .expect("metrics line")
        .trim()
        .trim_end_matches("/metrics")
        .to_owned();
    let pid = server.child.id();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&NOFILE.to_string())),
        "{limits}"
    );

    // pending images to stall uploads into, and a warmed-up database pool
    let client = reqwest::Client::new();
    let mut ids = vec![];
    for i in 0..=UPLOADS {
        let res = client
            .post(format!(
                "{}/api/v1/organizations/acme/regions/local/images",
                server.base
            ))
            .bearer_auth(&token)
            .json(&json!({"name": format!("h-{i}"), "source": {"type": "upload"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        ids.push(
            res.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    drop(client);
    // the last image gets a complete upload in the middle of the storm: it needs a staging file
    let good = ids.pop().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_before = open_fds(pid);

    let started = Instant::now();
    let mut uploads = JoinSet::new();
    let data = strata_domain::disk_format::samples::raw_mbr(1 << 20);
    for id in &ids {
        let head = format!(
            "PUT /api/v1/organizations/acme/regions/local/images/{id}/file HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        uploads.spawn(stall(
            addr.clone(),
            head,
            data[..200_000].to_vec(),
            Duration::from_secs(20),
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut others = JoinSet::new();
    for i in 0..SLOW_HEADERS + CHUNKED {
        let (head, body) = if i % 4 < 3 {
            ("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_owned(), vec![])
        } else {
            (
                "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
                b"5\r\nhello\r\n".to_vec(),
            )
        };
        others.spawn(stall(addr.clone(), head, body, Duration::from_secs(20)));
    }
    let mut peak = open_fds(pid);

    // health keeps answering while the hostile connections are open and being shed
    let mut probes = vec![];
    let mut good_upload = None;
    // the operations listener, probed on its own meanwhile
    let ops_task = tokio::spawn(async move {
        let mut got = vec![];
        while started.elapsed() < Duration::from_secs(8) {
            let path = if got.len() % 2 == 0 { "/healthz" } else { "/readyz" };
            got.push(probe(&ops, path).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        got
    });
    while started.elapsed() < Duration::from_secs(8) {
        let path = if probes.len() % 2 == 0 { "/healthz" } else { "/readyz" };
        probes.push(probe(&addr, path).await);
        peak = peak.max(open_fds(pid));
        if good_upload.is_none() && started.elapsed() > Duration::from_secs(1) {
            let small = strata_domain::disk_format::samples::raw_mbr(65536);
            let head = format!(
                "PUT /api/v1/organizations/acme/regions/local/images/{good}/file HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\
                 Content-Length: {}\r\n\r\n",
                small.len()
            );
            good_upload = Some(stall(addr.clone(), head, small, Duration::from_secs(10)).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = probes.iter().filter(|p| p.is_none()).count();
    let mut answered: Vec<Duration> = probes.iter().flatten().copied().collect();
    answered.sort();
    let slowest = answered.last().copied().unwrap_or_default();
    let median = answered.get(answered.len() / 2).copied().unwrap_or_default();
    let ops_probes = ops_task.await.unwrap();
    let ops_failed = ops_probes.iter().filter(|p| p.is_none()).count();
    let ops_slowest = ops_probes.iter().flatten().max().copied().unwrap_or_default();

    let mut upload_end = Duration::ZERO;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    while let Some(r) = uploads.join_next().await {
        let (closed, line) = r.unwrap();
        let closed = closed.expect("a stalled upload was never ended");
        upload_end = upload_end.max(closed);
        *statuses.entry(line).or_default() += 1;
    }
    let mut others_open = 0;
    while let Some(r) = others.join_next().await {
        others_open += usize::from(r.unwrap().0.is_none());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fds_after = open_fds(pid);
    let staging: Vec<_> = files_under(&dir.path().join("blobs"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains('#'))
        .collect();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    println!(
        "hostile: nofile={NOFILE} connections={} probes={} failed={failed} median_probe={median:?} slowest_probe={slowest:?} \
         ops_probes={} ops_failed={ops_failed} ops_slowest={ops_slowest:?} \
         uploads_ended_within={upload_end:?} upload_answers={statuses:?} fds_before={fds_before} peak={peak} \
         fds_after={fds_after} staging_left={} good_upload={good_upload:?}",
        UPLOADS + SLOW_HEADERS + CHUNKED,
        probes.len(),
        ops_probes.len(),
        staging.len()
    );
    assert!(
        stderr.contains("open-file limit (RLIMIT_NOFILE) is 256"),
        "no warning about the descriptor limit in the log:\n{stderr}"
    );
    assert_eq!(failed, 0, "health probes failed: {probes:?}");
    assert!(
        !stderr.contains("Too many open files"),
        "the server ran out of descriptors:\n{stderr}"
    );
    assert!(peak < NOFILE as usize, "{peak} descriptors open at the peak");
    let good_upload = good_upload.expect("the upload ran");
    assert!(
        good_upload.1.contains(" 200 "),
        "an honest upload during the storm got {good_upload:?}"
    );
    // Probes wait in the same listen backlog as the hostile connections ahead of them, which
    // are shed at the header timeout (1 s) or after the disconnect linger (1 s): with 440 of
    // them and ~90 connection slots that is about five rounds of 1-2 s. This bound only catches
    // a listener that stopped shedding (a hang); how fast is the benchmarks' business: under the
    // full suite on 2 cores a probe took 8.4 s once, while the operations listener (below)
    // answered in 10 ms.
    assert!(slowest < Duration::from_secs(20), "slowest probe {slowest:?}");
    // On the operations listener the probes are not queued behind the flood at all.
    assert_eq!(
        ops_failed, 0,
        "probes on the operations listener failed: {ops_probes:?}"
    );
    assert!(
        ops_slowest < Duration::from_secs(1),
        "slowest operations-listener probe {ops_slowest:?}"
    );
    assert!(
        upload_end < Duration::from_secs(IDLE_SECS + 5),
        "stalled uploads took {upload_end:?} to end"
    );
    for line in statuses.keys() {
        assert!(
            line.is_empty() || line.contains(" 408 "),
            "a stalled upload got {line:?}"
        );
    }
    assert_eq!(others_open, 0, "hostile connections the server never closed");
    assert!(staging.is_empty(), "staging files left: {staging:?}");
    assert!(
        fds_after <= fds_before + 4,
        "descriptors: {fds_before} before, {fds_after} after"
    );
}
