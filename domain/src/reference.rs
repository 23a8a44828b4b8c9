//! Container image references (`debian:bookworm`, `127.0.0.1:5000/team/app@sha256:...`), parsed
//! and normalised the way the Docker CLI and the distribution project do, for OCI registry pulls
//! and the Docker Engine API. One parser, so a name the docker CLI accepts means the same image
//! in both places.

use std::fmt;

use crate::error::DomainError;
use crate::name::ImageName;

/// The registry a reference without one means.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";
/// The whole name (registry and path) is limited like the distribution project's.
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_TAG_LEN: usize = 128;
/// Bounds the work the parser does on hostile input.
pub const MAX_REFERENCE_LEN: usize = 512;

/// A parsed, normalised reference. `registry` is a host with an optional port; `repository` is
/// the path (`library/debian` for Docker Hub short forms); at least one of `tag` and `digest`
/// is set after [`Reference::with_default_tag`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A content digest, `sha256:` and 64 lowercase hex characters (the only algorithm accepted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let err = |why: &str| DomainError::invalid("digest", format!("{why}; expected sha256:<64 hex digits>"));
        let Some(hex) = s.strip_prefix("sha256:") else {
            return Err(err(if s.contains(':') {
                "unsupported digest algorithm"
            } else {
                "missing the algorithm"
            }));
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(err("not 64 lowercase hex digits"));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The digest of `bytes`' sha256 as hex (computed elsewhere: domain does no hashing).
    pub fn from_sha256_hex(hex: &str) -> Result<Self, DomainError> {
        Self::parse(&format!("sha256:{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(reason: impl Into<String>) -> DomainError {
    DomainError::invalid("reference", reason)
}

/// `[a-z0-9]+` separated by `.`, `_`, `__` or one or more `-` (the distribution grammar).
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or "-"+
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A host (`registry.example`, `localhost`, `127.0.0.1`, `[::1]`) with an optional port.
fn valid_registry(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => (v6, None),
            p => match p.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return false;
    }
    if s.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parses `[registry/]path[:tag][@digest]`, normalising Docker Hub short forms: `alpine` ->
    /// `docker.io/library/alpine`, `index.docker.io/x` -> `docker.io/x`. The first component is
    /// a registry when it contains `.` or `:`, is `localhost`, or has an uppercase letter, as the
    /// docker CLI decides.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if s.len() > MAX_REFERENCE_LEN {
            return Err(invalid(format!("must be at most {MAX_REFERENCE_LEN} characters")));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must not contain spaces or control characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|e| invalid(format!("bad digest: {}", detail(&e))))?),
            ),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/', so a registry port is not a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                let t = &t[1..];
                if !valid_tag(t) {
                    return Err(invalid(format!(
                        "tag {t:?} is not valid: up to {MAX_TAG_LEN} letters, digits, '_', '.' and '-', not starting with '.' or '-'"
                    )));
                }
                (n, Some(t.to_owned()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid("the repository name is missing"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.')
                    || first.contains(':')
                    || first.starts_with('[')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        if !valid_registry(&registry) {
            return Err(invalid(format!("registry {registry:?} is not a valid host[:port]")));
        }
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY.to_owned()
        } else {
            registry
        };
        if path.is_empty() {
            return Err(invalid("the repository name is missing"));
        }
        if let Some(bad) = path.split('/').find(|c| !valid_path_component(c)) {
            return Err(invalid(format!(
                "repository component {bad:?} is not valid: lowercase letters and digits, separated by '.', '_', '__' or '-'"
            )));
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(format!("the name must be at most {MAX_NAME_LEN} characters")));
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `latest` when neither a tag nor a digest was given (what `docker pull alpine` means).
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The host part of the registry, without port or brackets, for the address policy.
    pub fn registry_host(&self) -> &str {
        let r = self.registry.as_str();
        if let Some(rest) = r.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        r.split(':').next().unwrap_or(r)
    }

    /// What registries are asked for: the digest if there is one, else the tag.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => DEFAULT_TAG,
        }
    }

    /// The short form the docker CLI shows: `alpine:3.19` for `docker.io/library/alpine:3.19`,
    /// `team/app:1` for Docker Hub, the full name elsewhere.
    pub fn familiar_name(&self) -> String {
        // Docker Hub's name is dropped only when what remains would not read as a registry
        // host (`docker.io/ker.io/x` stays whole: `ker.io/x` names another registry).
        let first = self.repository.split('/').next().unwrap_or_default();
        let looks_like_host =
            self.repository.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
        if self.registry == DEFAULT_REGISTRY && !looks_like_host {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// `familiar_name:tag` (or `@digest`), as `docker images` lists it.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }

    /// The Strata image name a pull or load gets when none is given: the last path component
    /// and the tag (`127.0.0.1:5000/library/debian:bookworm` -> `debian-bookworm`), or the first
    /// 12 hex digits of the digest for a digest reference (`debian-0123456789ab`), made to fit
    /// the image-name rules.
    pub fn default_image_name(&self) -> Result<ImageName, DomainError> {
        let repo = self.repository.rsplit('/').next().unwrap_or(&self.repository);
        let suffix = match (&self.digest, &self.tag) {
            (Some(d), _) => d.hex()[..12].to_owned(),
            (None, Some(t)) => t.to_ascii_lowercase(),
            (None, None) => DEFAULT_TAG.to_owned(),
        };
        image_name_from(&format!("{repo}-{suffix}"))
    }
}

/// Fits `raw` to the image-name rules: lowercase, only `[a-z0-9._-]`, at most 63 characters,
/// starting and ending with a letter or digit.
pub fn image_name_from(raw: &str) -> Result<ImageName, DomainError> {
    let mapped: String = raw
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()));
    ImageName::parse(trimmed)
}

fn detail(e: &DomainError) -> String {
    match e {
        DomainError::InvalidInput { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// What a Docker Engine API `{name}` means, resolved in Docker's order: a full `sha256:` id, an
/// id prefix of at least 12 hex digits (with or without `sha256:`), else a reference
/// (`repo:tag`, `repo` meaning `repo:latest`, Docker Hub short forms normalised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageLookup {
    Id(Digest),
    /// Lowercase hex, 12 to 63 digits; must match exactly one image.
    IdPrefix(String),
    Reference(Reference),
}

impl ImageLookup {
    pub const MIN_PREFIX: usize = 12;

    pub fn parse(name: &str) -> Result<Self, DomainError> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            if hex.len() == 64 {
                return Digest::parse(name).map(ImageLookup::Id);
            }
            return Self::prefix(hex).ok_or_else(|| {
                invalid(format!(
                    "an image id prefix needs {} to 64 lowercase hex digits",
                    Self::MIN_PREFIX
                ))
            });
        }
        // A bare hex string of id length is an id (prefix) first, as Docker decides.
        if name.len() == 64
            && let Ok(d) = Digest::from_sha256_hex(name)
        {
            return Ok(ImageLookup::Id(d));
        }
        if let Some(p) = Self::prefix(name) {
            return Ok(p);
        }
        Reference::parse(name).map(|r| ImageLookup::Reference(r.with_default_tag()))
    }

    fn prefix(hex: &str) -> Option<Self> {
        let ok = (Self::MIN_PREFIX..64).contains(&hex.len())
            && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| ImageLookup::IdPrefix(hex.to_owned()))
    }
}

/// An OS/architecture pair from an image index (`linux/amd64`, `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let err = || DomainError::invalid("platform", format!("{s:?} is not OS/ARCH[/VARIANT], e.g. linux/amd64"));
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: Some(v.to_ascii_lowercase()),
            }),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `reference` fuzz target: Docker Hub names whose first component reads as a
    /// host keep `docker.io/`, or the familiar form would name another registry.
    #[test]
    fn familiar_form_keeps_docker_io_before_a_host_like_component() {
        for raw in ["docker.io/ker.io/x/y", "docker.io/localhost/app", "docker.io/a:5000/b"] {
            let Ok(r) = Reference::parse(raw) else { continue };
            let back = Reference::parse(&r.familiar()).unwrap();
            assert_eq!(back, r, "{raw} -> {}", r.familiar());
        }
        assert_eq!(
            Reference::parse("docker.io/library/alpine:3").unwrap().familiar(),
            "alpine:3"
        );
        assert_eq!(Reference::parse("team/app:1").unwrap().familiar(), "team/app:1");
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (
            r.registry().to_owned(),
            r.repository().to_owned(),
            r.tag().map(str::to_owned),
            r.digest().map(|d| d.to_string()),
        )
    }

    #[test]
    fn docker_hub_short_forms_normalise() {
        assert_eq!(
            parts("alpine"),
            ("docker.io".into(), "library/alpine".into(), None, None)
        );
        assert_eq!(parts("library/alpine:3.19").1, "library/alpine");
        assert_eq!(parts("docker.io/alpine:3.19").1, "library/alpine");
        assert_eq!(parts("index.docker.io/team/app").0, "docker.io");
        assert_eq!(parts("team/app:v1").1, "team/app");
        let r = Reference::parse("alpine").unwrap().with_default_tag();
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.familiar(), "alpine:latest");
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
    }

    #[test]
    fn registries_ports_tags_and_digests() {
        assert_eq!(
            parts("127.0.0.1:5000/library/debian:bookworm"),
            (
                "127.0.0.1:5000".into(),
                "library/debian".into(),
                Some("bookworm".into()),
                None
            )
        );
        assert_eq!(parts("localhost/app").0, "localhost");
        assert_eq!(parts("localhost:5000/app").2, None, "a port is not a tag");
        assert_eq!(parts("[::1]:5000/a/b:t").0, "[::1]:5000");
        let (_, repo, tag, digest) = parts(&format!("reg.example/a/b:1.0@{D}"));
        assert_eq!(
            (repo.as_str(), tag.as_deref(), digest.as_deref()),
            ("a/b", Some("1.0"), Some(D))
        );
        let r = Reference::parse(&format!("reg.example:443/x@{D}")).unwrap();
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.registry_host(), "reg.example");
        assert_eq!(Reference::parse("[::1]:5000/a").unwrap().registry_host(), "::1");
        assert_eq!(
            Reference::parse("Host/app").unwrap().registry(),
            "Host",
            "uppercase means a host"
        );
        assert_eq!(parts("a/b__c/d-e/f.g/h---i").1, "a/b__c/d-e/f.g/h---i");
    }

    #[test]
    fn refusals_name_the_problem() {
        for (bad, says) in [
            ("", "empty"),
            ("Alpine", "component"),
            ("a b", "spaces"),
            ("alpine:", "tag"),
            ("alpine:-x", "tag"),
            (&format!("alpine:{}", "t".repeat(129)), "tag"),
            ("alpine@sha256:abc", "digest"),
            ("alpine@md5:0123456789abcdef0123456789abcdef", "digest"),
            ("/alpine", "component"),
            ("reg.example/", "missing"),
            ("a//b", "component"),
            ("a/b_", "component"),
            ("a/.b", "component"),
            ("a/b..c", "component"),
            ("a/b___c", "component"),
            ("reg.example:99999/a", "registry"),
            ("reg.example:/a", "registry"),
            ("-reg.example/a", "registry"),
            ("[zz]/a", "registry"),
            (&format!("reg.example/{}", "a".repeat(300)), "255"),
            (&"a".repeat(600), "512"),
        ] {
            let err = Reference::parse(bad).expect_err(bad);
            assert_eq!(err.code(), "invalid-input");
            assert!(err.to_string().contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn default_names() {
        let name = |s: &str| {
            Reference::parse(s)
                .unwrap()
                .with_default_tag()
                .default_image_name()
                .unwrap()
        };
        assert_eq!(
            name("127.0.0.1:5000/library/debian:bookworm").as_str(),
            "debian-bookworm"
        );
        assert_eq!(name("alpine").as_str(), "alpine-latest");
        assert_eq!(name("alpine:3.19").as_str(), "alpine-3.19");
        assert_eq!(name("app:V1_X").as_str(), "app-v1_x");
        assert_eq!(
            name(&format!("reg.example/team/debian@{D}")).as_str(),
            "debian-0123456789ab"
        );
        assert_eq!(
            name(&format!("reg.example/team/debian:x@{D}")).as_str(),
            "debian-0123456789ab"
        );
        let long = name(&format!("a/{}:{}", "b".repeat(60), "c".repeat(60)));
        assert_eq!(long.as_str().len(), 63);
        assert_eq!(
            image_name_from("sha256:0123456789ab").unwrap().as_str(),
            "sha256-0123456789ab"
        );
        assert!(image_name_from("___").is_err());
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/amd64").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant),
            ("linux", "amd64", None)
        );
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap().to_string(), "linux/arm64/v8");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        assert_eq!(Digest::parse(D).unwrap().hex().len(), 64);
        assert!(Digest::parse(&D.to_uppercase()).is_err());
        assert!(Digest::parse("0123").is_err());
        assert_eq!(
            Digest::from_sha256_hex(&"a".repeat(64)).unwrap().as_str(),
            format!("sha256:{}", "a".repeat(64))
        );
    }

    #[test]
    fn docker_lookups() {
        let full = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            ImageLookup::parse(&full).unwrap(),
            ImageLookup::Id(Digest::parse(&full).unwrap())
        );
        assert_eq!(
            ImageLookup::parse(&"ab".repeat(32)).unwrap(),
            ImageLookup::Id(Digest::parse(&full).unwrap())
        );
        assert_eq!(
            ImageLookup::parse("0123456789ab").unwrap(),
            ImageLookup::IdPrefix("0123456789ab".into())
        );
        assert_eq!(
            ImageLookup::parse("sha256:0123456789abc").unwrap(),
            ImageLookup::IdPrefix("0123456789abc".into())
        );
        assert!(ImageLookup::parse("sha256:0123").is_err(), "too short a prefix");
        // short hex is a name, as Docker reads it
        match ImageLookup::parse("abcdef").unwrap() {
            ImageLookup::Reference(r) => assert_eq!(r.familiar(), "abcdef:latest"),
            other => panic!("{other:?}"),
        }
        match ImageLookup::parse("library/alpine").unwrap() {
            ImageLookup::Reference(r) => {
                assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
                assert_eq!(r.familiar(), "alpine:latest");
            }
            other => panic!("{other:?}"),
        }
        assert!(ImageLookup::parse("Not Valid").is_err());
    }
}
