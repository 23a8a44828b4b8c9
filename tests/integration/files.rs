use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use strata_domain::disk_format::samples;

use crate::both;
use crate::harness::*;

fn small_cap(cfg: &mut strata_api::Config) {
    cfg.limits.max_image_bytes = 1 << 20;
}

both!(
    upload_and_download,
    config = small_cap,
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let data = samples::raw_mbr(300_000);
        let sha = hex::encode(Sha256::digest(&data));
        let img = app
            .create(
                "acme",
                &t,
                json!({"name": "disk", "source": {"type": "upload", "sha256": sha.to_uppercase()}}),
            )
            .await;
        let id = img["id"].as_str().unwrap();
        let file = format!("{}/images/{id}/file", app.v1("acme", "local"));

        // downloads wait for the bytes
        expect_error(
            app.req(Method::GET, &file, &t).send().await.unwrap(),
            StatusCode::CONFLICT,
            "invalid-state",
        )
        .await;

        let res = app.upload("acme", &t, id, data.clone()).await;
        let ready = expect_status(res, StatusCode::OK).await;
        assert_eq!(ready["status"]["state"], "ready");
        assert_eq!(ready["sizeBytes"], data.len());
        assert_eq!(ready["sha256"], sha);
        assert_eq!(ready["provenance"]["digest"], format!("sha256:{sha}"));
        assert_eq!(ready["tags"]["strata.dev/digest"], format!("sha256:{sha}"));
        // a second upload is refused: the image is no longer pending
        expect_error(
            app.upload("acme", &t, id, data.clone()).await,
            StatusCode::CONFLICT,
            "invalid-state",
        )
        .await;

        let res = app.req(Method::GET, &file, &t).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-length"], data.len().to_string().as_str());
        assert_eq!(res.headers()["etag"], format!("\"{sha}\"").as_str());
        assert_eq!(res.headers()["accept-ranges"], "bytes");
        assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..]);

        let n = data.len();
        for (range, start, end) in [
            ("bytes=0-511", 0, 511),
            ("bytes=510-511", 510, 511),
            ("bytes=1000-", 1000, n - 1),
            ("bytes=-100", n - 100, n - 1),
            ("bytes=299990-400000", 299_990, n - 1),
            ("bytes=-999999999", 0, n - 1),
            ("bytes=7-7", 7, 7),
        ] {
            let res = app
                .req(Method::GET, &file, &t)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                res.headers()["content-range"],
                format!("bytes {start}-{end}/{n}").as_str(),
                "{range}"
            );
            assert_eq!(
                res.headers()["content-length"],
                (end - start + 1).to_string().as_str(),
                "{range}"
            );
            assert_eq!(res.bytes().await.unwrap().as_ref(), &data[start..=end], "{range}");
        }
        for range in [
            format!("bytes={n}-"),
            format!("bytes={}-{}", n + 5, n + 10),
            "bytes=-0".to_owned(),
        ] {
            let res = app
                .req(Method::GET, &file, &t)
                .header("range", &range)
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.headers()["content-range"],
                format!("bytes */{n}").as_str(),
                "{range}"
            );
            expect_error(res, StatusCode::RANGE_NOT_SATISFIABLE, "range-not-satisfiable").await;
        }
        // several ranges, or nonsense, get the whole file
        for range in ["bytes=0-1,5-6", "bytes=9-3", "pages=1-2"] {
            let res = app
                .req(Method::GET, &file, &t)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{range}");
            assert_eq!(res.bytes().await.unwrap().len(), n, "{range}");
        }
        // global readers may download what they can see; deletion removes the bytes
        let stored_before = app.stored().await;
        assert_eq!(stored_before.len(), 1);
        expect_status(
            app.req(Method::DELETE, &format!("{}/images/{id}", app.v1("acme", "local")), &t)
                .send()
                .await
                .unwrap(),
            StatusCode::NO_CONTENT,
        )
        .await;
        assert_eq!(app.stored().await, Vec::<String>::new());
    }
);

both!(
    refused_uploads_keep_nothing,
    config = small_cap,
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let iso_plain = {
            let mut d = vec![0u8; 70_000];
            d[0x8001..0x8006].copy_from_slice(b"CD001");
            d
        };
        let mut gpt_without_header = samples::raw_mbr(8192);
        samples::set_entry(&mut gpt_without_header, 0, 0, 0xEE, 1, 100);
        let mut bad_status = samples::raw_mbr(4096);
        bad_status[446] = 0x12;
        let mut no_partitions = samples::raw_mbr(4096);
        samples::set_entry(&mut no_partitions, 0, 0, 0, 0, 0);
        let mut no_signature = samples::raw_mbr(4096);
        no_signature[510] = 0;
        let mut qcow2_later = samples::raw_mbr(70_000);
        qcow2_later[4096..4104].copy_from_slice(b"QFI\xfb\0\0\0\x03");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("qcow2", samples::qcow2(100_000), "qcow2"),
            ("vmdk", samples::with_magic(b"KDMV\x01\0\0\0", 4096), "vmdk"),
            (
                "vmdk descriptor",
                samples::with_magic(b"# Disk DescriptorFile\n", 4096),
                "vmdk",
            ),
            ("vhd", samples::with_magic(b"conectix", 4096), "vhd"),
            ("vhdx", samples::with_magic(b"vhdxfile", 4096), "vhdx"),
            ("qed", samples::with_magic(b"QED\0", 4096), "qed"),
            ("luks", samples::with_magic(b"LUKS\xba\xbe\0\x02", 4096), "luks"),
            ("iso", iso_plain, "iso9660"),
            ("hybrid iso", samples::hybrid_iso(80_000), "iso9660"),
            ("qcow2 behind an mbr", qcow2_later, "qcow2"),
            ("fat", samples::fat32(4096), "fat"),
            ("short", vec![0u8; 100], "512"),
            ("empty", vec![], "512"),
            ("no boot signature", no_signature, "0x55AA"),
            ("bad status", bad_status, "status"),
            ("no partitions", no_partitions, "no partitions"),
            ("gpt without header", gpt_without_header, "GPT"),
        ];
        let img = app.create_named("acme", &t, "disk").await;
        let id = img["id"].as_str().unwrap();
        for (what, bytes, detected) in cases {
            let err = expect_error(
                app.upload("acme", &t, id, bytes).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "unsupported-disk-format",
            )
            .await;
            assert!(err["message"].as_str().unwrap().contains(detected), "{what}: {err}");
        }
        // checksum mismatch
        let sha_img = app
            .create(
                "acme",
                &t,
                json!({"name": "sha", "source": {"type": "upload", "sha256": "0".repeat(64)}}),
            )
            .await;
        let sha_id = sha_img["id"].as_str().unwrap();
        let err = expect_error(
            app.upload("acme", &t, sha_id, samples::raw_mbr(100_000)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "checksum-mismatch",
        )
        .await;
        assert!(err["message"].as_str().unwrap().contains(&"0".repeat(64)));
        // over the cap: announced by Content-Length, and streamed without one
        expect_error(
            app.upload("acme", &t, id, samples::raw_mbr((1 << 20) + 1)).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
        )
        .await;
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20)
            .map(|i| {
                Ok(if i == 0 {
                    samples::raw_mbr(65536)
                } else {
                    vec![7u8; 65536]
                })
            })
            .collect();
        let res = app
            .req(
                Method::PUT,
                &format!("{}/images/{id}/file", app.v1("acme", "local")),
                &t,
            )
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;
        // wrong content type
        let res = app
            .req(
                Method::PUT,
                &format!("{}/images/{id}/file", app.v1("acme", "local")),
                &t,
            )
            .header("content-type", "application/json")
            .body(samples::raw_mbr(4096))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type").await;

        // after all that: still pending, and not one byte stored (no staging files either)
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(app.stored().await, Vec::<String>::new());
        for i in [id, sha_id] {
            let got = app
                .req(Method::GET, &format!("{}/images/{i}", app.v1("acme", "local")), &t)
                .send()
                .await
                .unwrap();
            let got = expect_status(got, StatusCode::OK).await;
            assert_eq!(got["status"]["state"], "pending");
            assert_eq!(got["sizeBytes"], serde_json::Value::Null);
        }
        // and a good upload still works afterwards
        let gpt = samples::raw_gpt(100_000);
        expect_status(app.upload("acme", &t, id, gpt).await, StatusCode::OK).await;
    }
);

both!(
    aborted_upload_keeps_nothing,
    config = |_: &mut strata_api::Config| {},
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let img = app.create_named("acme", &t, "disk").await;
        let id = img["id"].as_str().unwrap();
        // announce 4 MiB, send 1 MiB, then hang up
        let addr = app.direct.trim_start_matches("http://").to_owned();
        let path = format!("/api/v1/organizations/acme/regions/local/images/{id}/file");
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        use tokio::io::AsyncWriteExt;
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {t}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            4 << 20
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&samples::raw_mbr(1 << 20)).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        drop(s);
        // the server notices, aborts the write and leaves the image pending
        let mut left = vec![];
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            left = app.stored().await;
            if left.is_empty() {
                break;
            }
        }
        assert_eq!(left, Vec::<String>::new());
        let got = app
            .req(Method::GET, &format!("{}/images/{id}", app.v1("acme", "local")), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(got, StatusCode::OK).await["status"]["state"], "pending");
        expect_status(
            app.upload("acme", &t, id, samples::raw_mbr(1 << 20)).await,
            StatusCode::OK,
        )
        .await;
    }
);

both!(conditional_reads_and_head, |app: TestApp| async move {
    let t = app.token(&["acme"]);
    let data = samples::raw_mbr(100_000);
    let sha = hex::encode(Sha256::digest(&data));
    let img = app.create_named("acme", &t, "cond").await;
    let id = img["id"].as_str().unwrap();
    let img_url = format!("{}/images/{id}", app.v1("acme", "local"));
    let file = format!("{img_url}/file");
    // HEAD before the bytes exist: like GET, 409 (headers only)
    let res = app.req(Method::HEAD, &file, &t).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    expect_status(app.upload("acme", &t, id, data.clone()).await, StatusCode::OK).await;

    // the image's JSON: a current ETag gives 304 without a body, a stale one the image
    let res = app.req(Method::GET, &img_url, &t).send().await.unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    expect_status(res, StatusCode::OK).await;
    for inm in [
        etag.clone(),
        format!("\"999\", {etag}"),
        format!("W/{etag}"),
        "*".into(),
    ] {
        let res = app
            .req(Method::GET, &img_url, &t)
            .header("if-none-match", &inm)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
        assert!(res.bytes().await.unwrap().is_empty());
    }
    let res = app
        .req(Method::GET, &img_url, &t)
        .header("if-none-match", "\"999\"")
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await;

    // downloads: 304 on a current ETag
    let file_etag = format!("\"{sha}\"");
    let res = app
        .req(Method::GET, &file, &t)
        .header("if-none-match", &file_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), file_etag);
    assert!(res.bytes().await.unwrap().is_empty());
    // If-Range: current -> the range; stale, weak or a date -> the whole file
    let res = app
        .req(Method::GET, &file, &t)
        .header("range", "bytes=0-9")
        .header("if-range", &file_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..10]);
    for stale in ["\"0000\"", &format!("W/{file_etag}"), "Wed, 21 Oct 2015 07:28:00 GMT"] {
        let res = app
            .req(Method::GET, &file, &t)
            .header("range", "bytes=0-9")
            .header("if-range", stale)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{stale}");
        assert_eq!(res.bytes().await.unwrap().len(), data.len(), "{stale}");
    }

    // HEAD: the headers GET would send, no body
    let res = app.req(Method::HEAD, &file, &t).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-length"], data.len().to_string().as_str());
    assert_eq!(res.headers()["etag"].to_str().unwrap(), file_etag);
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert!(res.bytes().await.unwrap().is_empty());
    let res = app
        .req(Method::HEAD, &file, &t)
        .header("if-none-match", &file_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    // HEAD keeps tenancy: another organization gets 404
    let res = app
        .req(Method::HEAD, &file, &app.token(&["other"]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let other = format!("{}/images/{id}/file", app.v1("other", "local"));
    let res = app
        .req(Method::HEAD, &other, &app.token(&["other"]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Allow lists HEAD for the file route
    let res = app.req(Method::POST, &file, &t).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(res.headers()["allow"].to_str().unwrap().contains("HEAD"));
});

// Downloads on one keep-alive connection, pipelined: large bodies leave the server from their
// own buffers (the vendored actix-http's direct writes), small ones through its write buffer;
// every response must still come whole and in order, ranges and HEAD included. (Unpatched,
// actix-http framed a response by the last request it had parsed, not the one it answered: a
// HEAD followed by a pipelined GET was framed as the GET's, and the connection was dropped.)
both!(pipelined_downloads_keep_their_order, |app: TestApp| async move {
    use tokio::io::AsyncWriteExt;
    let t = app.token(&["acme"]);
    let mut data = samples::raw_mbr(3 << 20);
    for (i, b) in data.iter_mut().enumerate().skip(4096) {
        *b = (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    let img = app.create_named("acme", &t, "pipelined").await;
    let id = img["id"].as_str().unwrap();
    expect_status(app.upload("acme", &t, id, data.clone()).await, StatusCode::OK).await;

    let addr = app.direct.trim_start_matches("http://").to_owned();
    let base = format!("/api/v1/organizations/acme/regions/local/images/{id}");
    let head = |method: &str, path: &str, extra: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {t}\r\n{extra}\r\n")
    };
    let requests = [
        head("GET", &format!("{base}/file"), "Range: bytes=100-1500099\r\n"),
        head("HEAD", &format!("{base}/file"), ""),
        head("GET", &base, ""),
        head("GET", &format!("{base}/file"), ""),
        head("GET", &format!("{base}/file"), "Range: bytes=-10\r\n"),
    ];
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(requests.concat().as_bytes()).await.unwrap();
    let limit = std::time::Duration::from_secs(30);
    let status = |head: &str| head.lines().next().unwrap_or_default().to_owned();
    let (head, _, body) = tokio::time::timeout(limit, read_http_response(&mut s, false))
        .await
        .unwrap();
    assert_eq!(status(&head), "HTTP/1.1 206 Partial Content");
    assert!(body == data[100..1_500_100], "the ranged body differs");
    let (head, len, _) = tokio::time::timeout(limit, read_http_response(&mut s, true))
        .await
        .unwrap();
    assert_eq!((status(&head).as_str(), len), ("HTTP/1.1 200 OK", data.len()));
    let (head, _, body) = tokio::time::timeout(limit, read_http_response(&mut s, false))
        .await
        .unwrap();
    assert_eq!(status(&head), "HTTP/1.1 200 OK");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["id"], id);
    let (head, _, body) = tokio::time::timeout(limit, read_http_response(&mut s, false))
        .await
        .unwrap();
    assert_eq!(status(&head), "HTTP/1.1 200 OK");
    assert!(body == data, "the whole body differs");
    let (head, _, body) = tokio::time::timeout(limit, read_http_response(&mut s, false))
        .await
        .unwrap();
    assert_eq!(status(&head), "HTTP/1.1 206 Partial Content");
    assert_eq!(body, data[data.len() - 10..]);
});
