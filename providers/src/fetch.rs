//! The hardened HTTP fetcher: every download Strata makes on a tenant's behalf goes through here.
//!
//! - Only `http`/`https`, only allowed ports, never a denied host.
//! - The host is resolved once and every address must be public (see
//!   `strata_domain::netpolicy`); the connection then goes to exactly those addresses, so a DNS
//!   answer that changes between check and connect (rebinding) cannot redirect it.
//! - Redirects are followed by hand, at most `max_redirects`, each hop checked the same way;
//!   credentials from the URL go to the original origin only.
//! - No proxy from the environment; connect, idle and peek timeouts.
//! - Credentials embedded in the URL are sent as basic auth and never appear in errors or in
//!   [`Source::redacted`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use strata_domain::netpolicy::{HostRule, canonical, non_public_reason};
use url::{Host, Url};

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub allowed_ports: Vec<u16>,
    pub deny_hosts: Vec<HostRule>,
    /// Destinations exempt from the address and port checks (tests, internal mirrors).
    pub allow_hosts: Vec<HostRule>,
    pub connect_timeout: Duration,
    /// Whole budget of a peek: connect, redirects, headers and the first bytes.
    pub peek_timeout: Duration,
    /// Longest silence while reading a body.
    pub idle_timeout: Duration,
    pub max_redirects: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allowed_ports: vec![80, 443],
            deny_hosts: Vec::new(),
            allow_hosts: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            peek_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_redirects: 5,
        }
    }
}

/// Why a connection to the source could not be made, as far as a tenant may know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The name does not resolve (or to no address).
    Resolve,
    /// TCP could not connect: refused, unreachable, reset. Which one is not said: it would let a
    /// tenant map what the server can reach.
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
}

/// A failed fetch. `Display` carries transport detail for the log; [`FetchError::public_reason`]
/// is what a tenant is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("URL not allowed: {0}")]
    NotAllowed(String),
    #[error("upstream answered HTTP {status}")]
    Status { status: u16 },
    #[error("upstream timed out")]
    Timeout,
    #[error("could not reach upstream ({kind:?}): {detail}")]
    Connect { kind: ConnectFailure, detail: String },
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("reading from upstream failed: {0}")]
    Body(String),
}

impl FetchError {
    /// A short, stable reason for tenants: no addresses, no OS or TLS library text.
    pub fn public_reason(&self) -> String {
        match self {
            FetchError::InvalidUrl(r) => format!("invalid URL: {r}"),
            FetchError::NotAllowed(r) => format!("URL not allowed: {r}"),
            FetchError::Status { status } => format!("HTTP {status} from the source"),
            FetchError::Timeout => "timed out".into(),
            FetchError::Connect { kind, .. } => match kind {
                ConnectFailure::Resolve => "could not resolve the host",
                ConnectFailure::Connect => "could not connect",
                ConnectFailure::Tls => "TLS handshake failed",
            }
            .into(),
            FetchError::TooManyRedirects(n) => format!("more than {n} redirects"),
            FetchError::Body(_) => "the connection to the source broke".into(),
        }
    }
}

#[derive(Clone)]
struct Credentials {
    user: String,
    password: Option<String>,
}

/// A URL to fetch from, split into the part that may be shown and stored, and credentials.
#[derive(Clone)]
pub struct Source {
    url: Url,
    credentials: Option<Credentials>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("url", &self.redacted())
            .finish_non_exhaustive()
    }
}

impl Source {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(raw: &str) -> Result<Self, FetchError> {
        if raw.len() > Self::MAX_LEN {
            return Err(FetchError::InvalidUrl(format!(
                "longer than {} characters",
                Self::MAX_LEN
            )));
        }
        // The parser's own message never includes the URL, so credentials cannot leak through it.
        let mut url = Url::parse(raw.trim()).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::NotAllowed(format!(
                "scheme {:?}: only http and https",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(FetchError::InvalidUrl("no host".into()));
        }
        let credentials = if !url.username().is_empty() || url.password().is_some() {
            Some(Credentials {
                user: decode(url.username())?,
                password: url.password().map(decode).transpose()?,
            })
        } else {
            None
        };
        // Cannot fail for http(s) URLs with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(None);
        Ok(Self { url, credentials })
    }

    /// The same URL with credentials given apart from it (a registry login): used and
    /// redacted exactly like credentials in the URL.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some(Credentials {
            user: user.to_owned(),
            password: Some(password.to_owned()),
        });
        self
    }

    /// The URL without credentials, for building further URLs on the same origin.
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The URL without credentials or fragment: safe to log, store and show.
    pub fn redacted(&self) -> &str {
        self.url.as_str()
    }
}

/// Percent-decodes a userinfo component as the URL standard does: `%XX` only; `+`, `&` and `=`
/// are themselves (form decoding would turn `+` into a space and split at `&`).
fn decode(s: &str) -> Result<String, FetchError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| FetchError::InvalidUrl("the credentials are not UTF-8 once percent-decoded".into()))
}

/// An open download.
pub struct Download {
    pub content_length: Option<u64>,
    pub stream: BoxStream<'static, Result<Bytes, FetchError>>,
}

#[derive(Debug, Clone)]
pub struct Fetcher {
    policy: FetchPolicy,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Self {
        Self { policy }
    }

    /// Checks a URL against the policy and resolves it: the addresses returned are the only ones
    /// the request may connect to.
    pub async fn vet(&self, url: &Url) -> Result<Vec<SocketAddr>, FetchError> {
        let not_allowed = |why: String| Err(FetchError::NotAllowed(why));
        if !matches!(url.scheme(), "http" | "https") {
            return not_allowed(format!("scheme {:?}: only http and https", url.scheme()));
        }
        let port = url.port_or_known_default().unwrap_or(0);
        let (name, literal): (Option<String>, Option<IpAddr>) = match url.host() {
            Some(Host::Domain(d)) => (Some(d.trim_end_matches('.').to_ascii_lowercase()), None),
            Some(Host::Ipv4(v4)) => (None, Some(IpAddr::V4(v4))),
            Some(Host::Ipv6(v6)) => (None, Some(canonical(IpAddr::V6(v6)))),
            None => return Err(FetchError::InvalidUrl("no host".into())),
        };
        let p = &self.policy;
        let named = |rules: &[HostRule]| name.as_deref().is_some_and(|n| rules.iter().any(|r| r.matches_name(n)));
        if named(&p.deny_hosts) {
            return not_allowed("the host is on the deny list".into());
        }
        let addrs: Vec<SocketAddr> = match (literal, &name) {
            (Some(ip), _) => vec![SocketAddr::new(ip, port)],
            (None, Some(n)) => {
                let looked_up = tokio::time::timeout(p.connect_timeout, tokio::net::lookup_host((n.as_str(), port)))
                    .await
                    .map_err(|_| FetchError::Timeout)?
                    .map_err(|e| FetchError::Connect {
                        kind: ConnectFailure::Resolve,
                        detail: format!("cannot resolve {n}: {e}"),
                    })?;
                let mut v: Vec<SocketAddr> = looked_up
                    .map(|a| SocketAddr::new(canonical(a.ip()), a.port()))
                    .collect();
                v.sort();
                v.dedup();
                v
            }
            (None, None) => return Err(FetchError::InvalidUrl("no host".into())),
        };
        if addrs.is_empty() {
            return Err(FetchError::Connect {
                kind: ConnectFailure::Resolve,
                detail: "the host has no addresses".into(),
            });
        }
        let shown = name
            .clone()
            .unwrap_or_else(|| literal.map(|ip| ip.to_string()).unwrap_or_default());
        for a in &addrs {
            if p.deny_hosts.iter().any(|r| r.matches_ip(a.ip())) {
                return not_allowed("the address is on the deny list".into());
            }
        }
        // Exempt only if the name is listed or every address is.
        let exempt = named(&p.allow_hosts) || addrs.iter().all(|a| p.allow_hosts.iter().any(|r| r.matches_ip(a.ip())));
        if !exempt {
            if !p.allowed_ports.contains(&port) {
                return not_allowed(format!("port {port} is not allowed"));
            }
            for a in &addrs {
                if let Some(reason) = non_public_reason(a.ip()) {
                    return not_allowed(format!("{shown} resolves to a {reason}"));
                }
            }
        }
        Ok(addrs)
    }

    /// Sends a GET, following redirects hop by hop under the same policy.
    async fn get(&self, src: &Source, range: Option<&str>) -> Result<reqwest::Response, FetchError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(r) = range.and_then(|r| reqwest::header::HeaderValue::from_str(r).ok()) {
            headers.insert(reqwest::header::RANGE, r);
        }
        self.get_with(src, &headers, None).await
    }

    /// A GET with extra headers and an optional bearer token (registry clients), under the same
    /// policy as every fetch: the token, like credentials, goes to the original origin only, and
    /// the response is returned whatever its status.
    pub async fn get_with(
        &self,
        src: &Source,
        headers: &reqwest::header::HeaderMap,
        bearer: Option<&str>,
    ) -> Result<reqwest::Response, FetchError> {
        let mut url = src.url.clone();
        let mut credentials = src.credentials.clone();
        let mut bearer = bearer;
        for hop in 0..=self.policy.max_redirects {
            let addrs = self.vet(&url).await?;
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .connect_timeout(self.policy.connect_timeout)
                .read_timeout(self.policy.idle_timeout)
                .pool_max_idle_per_host(0)
                .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")));
            if let Some(Host::Domain(d)) = url.host() {
                builder = builder.resolve_to_addrs(d, &addrs);
            }
            let client = builder.build().map_err(|e| FetchError::Connect {
                kind: ConnectFailure::Connect,
                detail: e.without_url().to_string(),
            })?;
            let mut req = client.get(url.clone()).headers(headers.clone());
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            } else if let Some(c) = &credentials {
                req = req.basic_auth(&c.user, c.password.as_deref());
            }
            let resp = req.send().await.map_err(classify)?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let Some(location) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return Ok(resp);
            };
            if hop == self.policy.max_redirects {
                return Err(FetchError::TooManyRedirects(self.policy.max_redirects));
            }
            let mut next = url
                .join(location)
                .map_err(|e| FetchError::InvalidUrl(format!("bad redirect location: {e}")))?;
            let _ = next.set_username("");
            let _ = next.set_password(None);
            if next.origin() != url.origin() {
                credentials = None;
                bearer = None;
            }
            url = next;
        }
        Err(FetchError::TooManyRedirects(self.policy.max_redirects))
    }

    /// Reads at most `n` bytes from the start of the resource with a `Range` request. A server
    /// that ignores `Range` and sends everything still costs only `n` bytes: the connection is
    /// dropped once they are in.
    pub async fn peek(&self, src: &Source, n: usize) -> Result<Bytes, FetchError> {
        let work = async {
            let resp = self.get(src, Some(&format!("bytes=0-{}", n.saturating_sub(1)))).await?;
            let status = resp.status().as_u16();
            if status != 200 && status != 206 {
                return Err(FetchError::Status { status });
            }
            let mut stream = resp.bytes_stream();
            let mut buf = BytesMut::with_capacity(n);
            while buf.len() < n {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        let take = chunk.len().min(n - buf.len());
                        buf.extend_from_slice(&chunk[..take]);
                    }
                    Some(Err(e)) => return Err(classify_body(e)),
                    None => break,
                }
            }
            Ok(buf.freeze())
        };
        tokio::time::timeout(self.policy.peek_timeout, work)
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    /// Opens the whole resource for streaming. Only `200 OK` is accepted.
    pub async fn open(&self, src: &Source) -> Result<Download, FetchError> {
        let resp = self.get(src, None).await?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status { status });
        }
        let content_length = resp.content_length();
        let stream = resp.bytes_stream().map_err(classify_body).boxed();
        Ok(Download { content_length, stream })
    }
}

fn classify(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        let kind = if is_tls(&e) {
            ConnectFailure::Tls
        } else {
            ConnectFailure::Connect
        };
        FetchError::Connect {
            kind,
            detail: describe(e),
        }
    }
}

/// Is a rustls error anywhere in the cause chain (directly, or inside an `io::Error`)?
fn is_tls(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps, so look inside by hand (hyper wraps
        // rustls' io::Error in another io::Error)
        let mut io = c.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(|e| e.get_ref()) {
            if inner.is::<rustls::Error>() {
                return true;
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cause = c.source();
    }
    false
}

fn classify_body(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Body(describe(e))
    }
}

/// The error and its causes ("error sending request: connection refused"), without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cause = c.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher() -> Fetcher {
        Fetcher::new(FetchPolicy::default())
    }

    async fn vet(raw: &str) -> Result<Vec<SocketAddr>, FetchError> {
        let src = Source::parse(raw)?;
        fetcher().vet(&src.url).await
    }

    /// The SSRF table: all of these must be refused under the default policy, before any request.
    #[tokio::test]
    async fn refuses_internal_destinations() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://2130706433/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://10.0.0.1/",
            "http://172.16.0.1/",
            "http://192.168.0.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://192.0.2.1/",
            "http://[2001:db8::1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[64:ff9b:1::7f00:1]/",
            "http://[64:ff9b:1::808:808]/",
            "http://[2606:4700::5efe:7f00:1]/",
            "http://[3fff::1]/",
            "http://8.8.8.8:22/",
            "http://8.8.8.8:8080/",
            "ftp://8.8.8.8/",
            "file:///etc/passwd",
            "gopher://8.8.8.8/",
        ] {
            let r = vet(url).await;
            assert!(matches!(r, Err(FetchError::NotAllowed(_))), "{url}: {r:?}");
        }
    }

    #[tokio::test]
    async fn allows_public_and_listed_destinations() {
        assert!(vet("http://8.8.8.8/").await.is_ok());
        assert!(vet("https://1.1.1.1:443/x").await.is_ok());
        let f = Fetcher::new(FetchPolicy {
            allow_hosts: vec!["127.0.0.1".parse().unwrap()],
            deny_hosts: vec!["9.9.9.9".parse().unwrap(), "*.evil.example".parse().unwrap()],
            ..Default::default()
        });
        // listed: address and port checks do not apply
        let u = Source::parse("http://127.0.0.1:8123/x").unwrap();
        assert_eq!(f.vet(&u.url).await.unwrap(), vec!["127.0.0.1:8123".parse().unwrap()]);
        // the numeric forms normalise to the listed address too
        let u = Source::parse("http://2130706433:8123/x").unwrap();
        assert!(f.vet(&u.url).await.is_ok());
        // not listed: still refused
        let u = Source::parse("http://127.0.0.2/").unwrap();
        assert!(f.vet(&u.url).await.is_err());
        // deny beats everything
        let u = Source::parse("http://9.9.9.9/").unwrap();
        assert!(matches!(f.vet(&u.url).await, Err(FetchError::NotAllowed(_))));
        let u = Source::parse("http://a.evil.example/").unwrap();
        assert!(matches!(f.vet(&u.url).await, Err(FetchError::NotAllowed(_))));
    }

    #[test]
    fn credentials_are_split_off() {
        let s = Source::parse("https://alice:s%40cret@example.com/disk.raw#frag").unwrap();
        assert_eq!(s.redacted(), "https://example.com/disk.raw");
        let c = s.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_deref()), ("alice", Some("s@cret")));
        // `+`, `&` and `=` are literal in userinfo; only %XX is decoded
        let s = Source::parse("https://a+b:p+w&x=y%2B%20z@example.com/").unwrap();
        let c = s.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_deref()), ("a+b", Some("p+w&x=y+ z")));
        assert!(Source::parse("https://u:%FF@example.com/").is_err());
        assert!(!format!("{s:?}").contains("cret"));
        let e = Source::parse("http://user:pw@[::1").unwrap_err();
        assert!(!e.to_string().contains("pw"));
        assert!(Source::parse(&format!("http://a.example/{}", "x".repeat(3000))).is_err());
    }
}
