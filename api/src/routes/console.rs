//! The admin console: static files compiled into the binary (`api/console/`), served at
//! `/console/`. Plain ES modules, no build step, nothing fetched from elsewhere. Every response
//! carries a strict Content-Security-Policy: scripts and styles only from this origin, no inline
//! code, API calls only to this origin, no framing, and (Trusted Types) no string ever reaches an
//! HTML or script sink.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

/// `(path under /console/, content type, bytes)`.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../../console/index.html")),
    ("console.css", CSS, include_bytes!("../../console/console.css")),
    ("favicon.svg", SVG, include_bytes!("../../console/favicon.svg")),
    ("js/main.js", JS, include_bytes!("../../console/js/main.js")),
    ("js/dom.js", JS, include_bytes!("../../console/js/dom.js")),
    ("js/api.js", JS, include_bytes!("../../console/js/api.js")),
    ("js/table.js", JS, include_bytes!("../../console/js/table.js")),
    ("js/signin.js", JS, include_bytes!("../../console/js/signin.js")),
    ("js/images.js", JS, include_bytes!("../../console/js/images.js")),
    (
        "js/image-detail.js",
        JS,
        include_bytes!("../../console/js/image-detail.js"),
    ),
    ("js/import.js", JS, include_bytes!("../../console/js/import.js")),
    ("js/detail.js", JS, include_bytes!("../../console/js/detail.js")),
    ("js/usage.js", JS, include_bytes!("../../console/js/usage.js")),
    ("js/kernels.js", JS, include_bytes!("../../console/js/kernels.js")),
    (
        "js/kernel-detail.js",
        JS,
        include_bytes!("../../console/js/kernel-detail.js"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// `require-trusted-types-for 'script'` with no policy allowed: any string reaching an HTML or
/// script sink (`innerHTML`, `eval`, ...) throws in browsers that enforce Trusted Types.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
                       require-trusted-types-for 'script'; trusted-types 'none'";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(redirect))
        .route("/console/{file:.*}", web::get().to(file));
}

async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

async fn file(req: HttpRequest) -> HttpResponse {
    let path = req.match_info().get("file").unwrap_or_default();
    let path = if path.is_empty() { "index.html" } else { path };
    let mut res = match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *content_type))
            // Revalidate every time: a new binary must never run a stale module next to new ones.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
        None => HttpResponse::NotFound()
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body("not found"),
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    res
}
