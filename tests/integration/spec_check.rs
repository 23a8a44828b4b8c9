//! Every response a test receives is checked against the committed `openapi/openapi.json`, not
//! against the code that generated it: each test app sits behind a small HTTP proxy that forwards
//! requests unchanged and checks what comes back.
//!
//! A response is a violation when its route and method are documented but its status is not, when
//! its body is not valid for the schema documented for that status (JSON Schema 2020-12, as OpenAPI
//! 3.1 defines it), when it has a body where none is documented, or when its content type is not
//! one the spec lists. Violations fail the test that caused them (see `harness::run`).
//!
//! Raw-socket tests that exercise connection handling talk to `TestApp::direct` instead.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// The committed document, parsed once per test binary.
static SPEC: LazyLock<Spec> = LazyLock::new(|| {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let text = std::fs::read_to_string(&path).expect("openapi/openapi.json exists");
    Spec::new(serde_json::from_str(&text).expect("openapi/openapi.json is JSON"))
});

struct Spec {
    doc: Value,
    /// (path template split in segments, its key in `paths`)
    templates: Vec<(Vec<String>, String)>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Spec {
    fn new(doc: Value) -> Self {
        let templates = doc["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .map(|k| (k.split('/').map(str::to_owned).collect(), k.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            doc,
            templates,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The documented path template that `path` matches (`{param}` matches one non-empty segment).
    fn template_of(&self, path: &str) -> Option<&str> {
        let segs: Vec<&str> = path.split('/').collect();
        self.templates
            .iter()
            .find(|(t, _)| {
                t.len() == segs.len()
                    && t.iter().zip(&segs).all(|(t, s)| {
                        if t.starts_with('{') && t.ends_with('}') {
                            !s.is_empty()
                        } else {
                            t == s
                        }
                    })
            })
            .map(|(_, k)| k.as_str())
    }

    /// Follows a local `$ref` (`#/components/responses/X`) to its target.
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self.doc.pointer(r.trim_start_matches('#')).unwrap_or(&Value::Null),
            None => v,
        }
    }

    /// A validator for the schema at `pointer`, compiled against the whole document so that its
    /// `$ref`s resolve.
    fn validator(&self, pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.get(pointer) {
            return Ok(v.clone());
        }
        let mut root = self.doc.clone();
        root["$schema"] = Value::from("https://json-schema.org/draft/2020-12/schema");
        // JSON pointers inside a URI fragment must be percent-encoded (`{` in path templates).
        let fragment = pointer.replace('%', "%25").replace('{', "%7B").replace('}', "%7D");
        root["$ref"] = Value::from(format!("#{fragment}"));
        let v = Arc::new(
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&root)
                .map_err(|e| format!("the schema at {pointer} does not compile: {e}"))?,
        );
        cache.insert(pointer.to_owned(), v.clone());
        Ok(v)
    }

    /// Checks one exchange; returns what is wrong with it.
    fn check(&self, method: &str, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) -> Vec<String> {
        let Some(template) = self.template_of(path) else {
            return vec![]; // not an API route (docs, the spec itself, unknown paths)
        };
        let method = method.to_ascii_lowercase();
        let Some(op) = self.doc["paths"][template].get(&method) else {
            return vec![]; // an undocumented method: 405, checked by the contract run
        };
        let what = format!("{} {template} -> {status}", method.to_uppercase());
        let responses = &op["responses"];
        let key = status.to_string();
        let class = format!("{}XX", status / 100);
        let Some((declared_as, response)) = [key.as_str(), class.as_str(), "default"]
            .into_iter()
            .find_map(|k| responses.get(k).map(|r| (k, self.deref(r))))
        else {
            return vec![format!("{what}: status not declared in openapi/openapi.json")];
        };
        let content = response.get("content").and_then(Value::as_object);
        if body.is_empty() || method == "head" {
            return vec![];
        }
        let Some(content) = content else {
            return vec![format!("{what}: a body was sent, but the spec declares none")];
        };
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let Some(declared) = content.get(&media) else {
            return vec![format!(
                "{what}: content type {media:?} is not one of {:?}",
                content.keys().collect::<Vec<_>>()
            )];
        };
        if !media.ends_with("json") {
            return vec![];
        }
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return vec![format!("{what}: body is not JSON: {e}")],
        };
        if declared.get("schema").is_none() {
            return vec![];
        }
        let escaped = |s: &str| s.replace('~', "~0").replace('/', "~1");
        let pointer = match responses
            .get(declared_as)
            .and_then(|r| r.get("$ref"))
            .and_then(Value::as_str)
        {
            Some(r) => format!("{}/content/{}/schema", r.trim_start_matches('#'), escaped(&media)),
            None => format!(
                "/paths/{}/{method}/responses/{declared_as}/content/{}/schema",
                escaped(template),
                escaped(&media)
            ),
        };
        match self.validator(&pointer) {
            Err(e) => vec![format!("{what}: {e}")],
            Ok(v) => v
                .iter_errors(&instance)
                .map(|e| format!("{what}: {e} at {} (body: {})", e.instance_path(), truncate(body)))
                .collect(),
        }
    }
}

fn truncate(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    if s.len() > 600 {
        format!("{}...", &s[..s.floor_char_boundary(600)])
    } else {
        s.into_owned()
    }
}

/// What the proxies of one test found wrong.
pub type Violations = Arc<Mutex<Vec<String>>>;

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Starts a checking proxy on 127.0.0.1:0 in front of `upstream`; returns its address.
pub async fn proxy(upstream: SocketAddr, violations: Violations) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let client = client.clone();
            let violations = violations.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| forward(req, upstream, client.clone(), violations.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

type ProxyBody = Either<Full<Bytes>, Incoming>;

async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
    client: Client<HttpConnector, Incoming>,
    violations: Violations,
) -> Result<Response<ProxyBody>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    parts.uri = match format!("http://{upstream}{pq}").parse() {
        Ok(u) => u,
        Err(_) => return Ok(bad_gateway()),
    };
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    let res = match client.request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spec-check proxy: {method} {path}: upstream failed: {e}");
            return Ok(bad_gateway());
        }
    };
    let (mut parts, body) = res.into_parts();
    let closes = parts
        .headers
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    if closes {
        parts
            .headers
            .insert("connection", hyper::header::HeaderValue::from_static("close"));
    }
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Image bytes stream through unchecked (their schema is `binary`); everything else is read,
    // checked and passed on.
    if content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/octet-stream"))
    {
        let found = SPEC.check(&method, &path, parts.status.as_u16(), content_type.as_deref(), b"");
        record(&violations, found);
        return Ok(Response::from_parts(parts, Either::Right(body)));
    }
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            eprintln!("spec-check proxy: {method} {path}: reading the response failed: {e}");
            return Ok(bad_gateway());
        }
    };
    let found = SPEC.check(&method, &path, parts.status.as_u16(), content_type.as_deref(), &bytes);
    record(&violations, found);
    if method != "HEAD" {
        parts.headers.remove("content-length");
    }
    Ok(Response::from_parts(parts, Either::Left(Full::new(bytes))))
}

fn record(violations: &Violations, found: Vec<String>) {
    if found.is_empty() {
        return;
    }
    for v in &found {
        eprintln!("spec violation: {v}");
    }
    violations.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
}

fn bad_gateway() -> Response<ProxyBody> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(
        b"spec-check proxy: upstream failed",
    ))));
    *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checker itself must be able to fail: a wrong enum value, a missing field and an
    /// undeclared status are all reported.
    #[test]
    fn the_checker_finds_what_is_wrong() {
        let path = "/api/v1/organizations/acme/regions/local/images/0190b6a4-6c2e-7000-8000-000000000000";
        let err = br#"{"error":"not-found","message":"m","requestId":"r"}"#;
        assert!(SPEC.check("GET", path, 404, Some("application/json"), err).is_empty());
        let bad_code = br#"{"error":"not-found","message":"m"}"#;
        assert!(
            !SPEC
                .check("GET", path, 404, Some("application/json"), bad_code)
                .is_empty()
        );
        assert!(!SPEC.check("GET", path, 418, Some("application/json"), err).is_empty());
        assert!(!SPEC.check("GET", path, 404, Some("text/plain"), b"nope").is_empty());
        let list = "/api/v1/organizations/acme/regions/local/images";
        assert!(SPEC.check("GET", list, 200, Some("application/json"), b"[]").is_empty());
        let wrong_enum = br#"[{"architecture":"X86_64"}]"#;
        assert!(
            !SPEC
                .check("GET", list, 200, Some("application/json"), wrong_enum)
                .is_empty()
        );
    }
}
