//! `GET /metrics`: counters move exactly as the requests made, no tenant data, the separate
//! listener; and `[log] format = "json"`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_domain::disk_format::samples;

use crate::both;
use crate::cli::{Server, spawn_serve};
use crate::harness::*;
use crate::imports::import_cfg;
use crate::upstream::{Behaviour, Upstream};

const BIN: &str = env!("CARGO_BIN_EXE_strata");
const IMAGES: &str = "/api/v1/organizations/{organizationID}/regions/{regionID}/images";
const IMAGE: &str = "/api/v1/organizations/{organizationID}/regions/{regionID}/images/{imageID}";
const FILE: &str = "/api/v1/organizations/{organizationID}/regions/{regionID}/images/{imageID}/file";
/// An organization id that must never appear in the exposition.
const ORG: &str = "metrics-org-5d1c";

/// `name{labels}` -> value, for every sample line.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {l:?}"));
            (
                k.to_owned(),
                v.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            )
        })
        .collect()
}

async fn scrape(app: &TestApp) -> (String, BTreeMap<String, f64>) {
    let res = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = res.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

fn requests(route: &str, method: &str, status: u16) -> String {
    format!("strata_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}")
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

both!(metrics_count_requests_by_route_template, |app: TestApp| async move {
    let t = app.token(&[ORG]);
    let img = app.create_named(ORG, &t, "counted").await;
    let id = img["id"].as_str().unwrap().to_owned();
    let (text0, before) = scrape(&app).await;
    let mut bytes_out = text0.len() as f64; // the first scrape's own body is counted as it is sent
    let mut bytes_in = 0.0;

    // 3 reads of one image, one of an image that does not exist, one unknown path
    for _ in 0..3 {
        let res = app
            .req(Method::GET, &format!("{}/images/{id}", app.v1(ORG, "local")), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        bytes_out += res.bytes().await.unwrap().len() as f64;
    }
    let missing = uuid::Uuid::new_v4();
    let res = app
        .req(Method::GET, &format!("{}/images/{missing}", app.v1(ORG, "local")), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    bytes_out += res.bytes().await.unwrap().len() as f64;
    let res = app
        .client
        .get(format!("{}/no/such/{ORG}", app.direct))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    bytes_out += res.bytes().await.unwrap().len() as f64;
    // one create (201) with a known body, one upload with a known body
    let body = serde_json::to_vec(&json!({"name": "counted-2", "source": {"type": "upload"}})).unwrap();
    bytes_in += body.len() as f64;
    let res = app
        .req(Method::POST, &format!("{}/images", app.v1(ORG, "local")), &t)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    bytes_out += res.bytes().await.unwrap().len() as f64;
    let disk = samples::raw_gpt(1 << 20);
    bytes_in += disk.len() as f64;
    let res = app.upload(ORG, &t, &id, disk).await;
    assert_eq!(res.status(), StatusCode::OK);
    bytes_out += res.bytes().await.unwrap().len() as f64;

    let (text, after) = scrape(&app).await;
    assert_eq!(delta(&before, &after, &requests(IMAGE, "GET", 200)), 3.0, "{text}");
    assert_eq!(delta(&before, &after, &requests(IMAGE, "GET", 404)), 1.0, "{text}");
    assert_eq!(
        delta(&before, &after, &requests("unmatched", "GET", 404)),
        1.0,
        "{text}"
    );
    assert_eq!(delta(&before, &after, &requests(IMAGES, "POST", 201)), 1.0, "{text}");
    assert_eq!(delta(&before, &after, &requests(FILE, "PUT", 200)), 1.0, "{text}");
    assert_eq!(delta(&before, &after, &requests("/metrics", "GET", 200)), 1.0, "{text}");
    // the histogram saw every request of the template, whatever its status
    let count = format!("strata_http_request_duration_seconds_count{{route=\"{IMAGE}\",method=\"GET\"}}");
    assert_eq!(delta(&before, &after, &count), 4.0, "{text}");
    let inf = format!("strata_http_request_duration_seconds_bucket{{route=\"{IMAGE}\",method=\"GET\",le=\"+Inf\"}}");
    assert_eq!(after[&inf], after[&count]);
    // bytes: exactly the bodies exchanged in between
    assert_eq!(
        delta(&before, &after, "strata_http_request_bytes_total"),
        bytes_in,
        "{text}"
    );
    assert_eq!(
        delta(&before, &after, "strata_http_response_bytes_total"),
        bytes_out,
        "{text}"
    );
    // nothing in flight once the upload answered; this scrape's connection is open
    assert_eq!(after["strata_uploads_in_flight"], 0.0);
    assert!(after["strata_http_open_connections"] >= 1.0, "{text}");
    assert_eq!(after["strata_http_requests_in_flight"], 1.0, "only the scrape itself");
    assert_eq!(after["strata_http_requests_timed_out_total"], 0.0);
    assert_eq!(after["strata_http_requests_shed_total"], 0.0);
    // the database pool
    let max = app.cfg.database.max_connections.map(f64::from);
    let pool_max = after["strata_db_pool_connections_max"];
    assert_eq!(
        pool_max,
        max.unwrap_or(if app.cfg.database.url.is_none() { 4.0 } else { 16.0 })
    );
    assert!(after["strata_db_pool_connections_in_use"] <= pool_max);
    assert_eq!(
        after["strata_db_pool_waiting"], 0.0,
        "nobody waits for a connection when idle"
    );
    assert!(
        after.contains_key("strata_sweeper_removed_total{kind=\"object\"}"),
        "{text}"
    );
    // no tenant data: no organization, image or region id, no raw path
    for secret in [ORG, id.as_str(), &missing.to_string(), "local"] {
        assert!(!text.contains(secret), "{secret} leaked into /metrics:\n{text}");
    }
    // no token needed
    assert!(!text.is_empty());
});

both!(
    metrics_count_import_jobs,
    config = import_cfg,
    |app: TestApp| async move {
        let t = app.token(&[ORG]);
        let data = samples::raw_gpt(1 << 20);
        let sha = hex::encode(Sha256::digest(&data));
        let up = Upstream::start(data, Behaviour::Normal).await;
        let good = json!({"name": "imported", "source": {"type": "url", "url": up.url("disk.raw"), "sha256": sha}});
        let res = app
            .req(Method::POST, &format!("{}/images", app.v1(ORG, "local")), &t)
            .json(&good)
            .send()
            .await
            .unwrap();
        let img = expect_status(res, StatusCode::CREATED).await;
        let id = img["id"].as_str().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let res = app
                .req(Method::GET, &format!("{}/images/{id}", app.v1(ORG, "local")), &t)
                .send()
                .await
                .unwrap();
            let v = expect_status(res, StatusCode::OK).await;
            if v["status"]["state"] == "ready" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (text, m) = scrape(&app).await;
        let event = |e: &str| {
            m.get(&format!("strata_import_job_events_total{{kind=\"url\",event=\"{e}\"}}"))
                .copied()
        };
        assert_eq!(event("started"), Some(1.0), "{text}");
        assert_eq!(event("succeeded"), Some(1.0), "{text}");
        assert_eq!(event("failed"), None, "{text}");
        assert_eq!(m["strata_import_jobs{kind=\"url\",state=\"leased\"}"], 0.0, "{text}");
        assert_eq!(m["strata_import_jobs{kind=\"url\",state=\"waiting\"}"], 0.0, "{text}");
        assert_eq!(m["strata_import_jobs_running"], 0.0, "{text}");
        assert!(
            !text.contains(ORG) && !text.contains(id) && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
);

/// Starts `strata serve` with a config file (stderr piped); returns the server and the rest of
/// its stdout.
fn serve_with(config: &str, dir: &std::path::Path) -> (Server, BufReader<std::process::ChildStdout>) {
    let file = dir.join("strata.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("STRATA_LOG")
        .stderr(Stdio::piped());
    spawn_serve(cmd)
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_main_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut out) = serve_with("[server]\nmetrics_listen = \"127.0.0.1:0\"\n", dir.path());
    let base = server.base.clone();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let metrics_url = line
        .split("metrics on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no 'metrics on' line: {line:?}"))
        .trim()
        .to_owned();
    let c = reqwest::Client::new();
    let main = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(main.status(), StatusCode::NOT_FOUND);
    let body: Value = main.json().await.unwrap();
    assert_eq!(body["error"], "not-found");
    assert_eq!(
        c.get(format!("{base}/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let sep = c.get(&metrics_url).send().await.unwrap();
    assert_eq!(sep.status(), StatusCode::OK);
    let text = sep.text().await.unwrap();
    let m = parse(&text);
    // the main listener's requests are counted, the refused /metrics among them
    assert_eq!(m[&requests("/metrics", "GET", 404)], 1.0, "{text}");
    assert_eq!(m[&requests("/healthz", "GET", 200)], 1.0, "{text}");
    // the separate listener also answers the probes, and nothing else
    let probe = c.get(metrics_url.replace("/metrics", "/healthz")).send().await.unwrap();
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(probe.json::<Value>().await.unwrap()["status"], "ok");
    let ready = c.get(metrics_url.replace("/metrics", "/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(ready.json::<Value>().await.unwrap()["checks"].get("database").is_some());
    let other = metrics_url.replace("/metrics", "/api/v2/regions/local/images");
    assert_eq!(c.get(other).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn json_log_lines_carry_request_id_route_status_and_duration() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _out) = serve_with("[log]\nformat = \"json\"\n", dir.path());
    let err = server.child.stderr.take().unwrap();
    let base = server.base.clone();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let c = reqwest::Client::new();
    let missing = uuid::Uuid::new_v4();
    let res = c
        .get(format!(
            "{base}/api/v1/organizations/acme/regions/local/images/{missing}"
        ))
        .header("x-request-id", "json-log-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let l = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no request line; saw:\n{}", seen.join("\n")));
        // every line is one JSON object
        let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        if v["span"]["request_id"] == "json-log-test-1" && v["message"] == "served" {
            break v;
        }
        seen.push(l);
    };
    assert_eq!(line["route"], IMAGE, "{line}");
    assert_eq!(line["status"], 401, "{line}");
    assert!(line["elapsed_ms"].is_u64(), "{line}");
    assert_eq!(line["level"], "INFO");
    assert!(line["timestamp"].is_string());
}

#[test]
fn default_log_format_is_human_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _out) = serve_with("", dir.path());
    let err = server.child.stderr.take().unwrap();
    let mut first = String::new();
    BufReader::new(err).read_line(&mut first).unwrap();
    assert!(serde_json::from_str::<Value>(&first).is_err(), "{first}");
    assert!(first.contains("INFO"), "{first}");
}
