//! Bearer-token verification. Every key has exactly one pinned algorithm, so a token cannot pick
//! its own (no `none`, no HS/RS confusion); `exp`/`nbf` are checked with a small leeway, and
//! `iss`/`aud` when configured. The development key is one HS256 key like any other.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use strata_domain::DomainError;
use strata_domain::access::{Principal, Scope};
use strata_domain::ids::OrganizationId;

use crate::config::Config;

pub const DEV_KID: &str = "strata-dev";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub org_ids: Vec<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub platform_admin: bool,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

struct VerifyKey {
    kid: Option<String>,
    validation: Validation,
    key: DecodingKey,
}

/// The set of trusted keys, built once from config.
pub struct Verifier {
    keys: Vec<VerifyKey>,
    /// Whether `<data_dir>/dev-signing-key` is trusted (so `strata token` mints usable tokens).
    dev_key: bool,
}

fn parse_alg(s: &str) -> anyhow::Result<Algorithm> {
    s.parse::<Algorithm>()
        .map_err(|_| anyhow::anyhow!("unknown JWT algorithm {s:?}"))
}

impl Verifier {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let a = &cfg.auth;
        let validation_for = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.leeway = a.leeway_secs;
            v.validate_nbf = true;
            v.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
            match &a.audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    v.required_spec_claims.insert("aud".into());
                }
                None => v.validate_aud = false,
            }
            if let Some(iss) = &a.issuer {
                v.set_issuer(&[iss]);
                v.required_spec_claims.insert("iss".into());
            }
            v
        };
        let mut keys = Vec::new();
        if a.dev_key {
            let secret = load_or_create_dev_key(&cfg.dev_key_path())?;
            keys.push(VerifyKey {
                kid: Some(DEV_KID.into()),
                validation: validation_for(Algorithm::HS256),
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            });
        }
        for (i, k) in a.keys.iter().enumerate() {
            let alg = parse_alg(&k.algorithm).with_context(|| format!("auth.keys[{i}]"))?;
            let key = match alg {
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                    let secret = match (&k.secret, &k.secret_file) {
                        (Some(s), None) => s.expose_secret().to_owned(),
                        (None, Some(f)) => std::fs::read_to_string(f)
                            .with_context(|| format!("auth.keys[{i}]: reading secret_file"))?
                            .trim()
                            .to_owned(),
                        _ => anyhow::bail!("auth.keys[{i}]: an HMAC key needs exactly one of secret, secret_file"),
                    };
                    if secret.len() < 32 {
                        anyhow::bail!("auth.keys[{i}]: an HMAC secret must be at least 32 bytes");
                    }
                    DecodingKey::from_secret(secret.as_bytes())
                }
                _ => {
                    let f = k
                        .public_key_file
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("auth.keys[{i}]: {alg:?} needs public_key_file"))?;
                    let pem = std::fs::read(f).with_context(|| format!("auth.keys[{i}]: reading public_key_file"))?;
                    match alg {
                        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                        Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                        _ => DecodingKey::from_rsa_pem(&pem),
                    }
                    .with_context(|| format!("auth.keys[{i}]: invalid PEM public key"))?
                }
            };
            keys.push(VerifyKey {
                kid: k.kid.clone(),
                validation: validation_for(alg),
                key,
            });
        }
        if let Some(path) = &a.jwks_file {
            let raw = std::fs::read(path).with_context(|| format!("reading JWKS {}", path.display()))?;
            let set: JwkSet = serde_json::from_slice(&raw).context("invalid JWKS document")?;
            for jwk in &set.keys {
                let alg_name = jwk.common.key_algorithm.ok_or_else(|| {
                    anyhow::anyhow!("JWKS key {:?} has no alg; every key must pin one", jwk.common.key_id)
                })?;
                let alg = parse_alg(&alg_name.to_string())?;
                keys.push(VerifyKey {
                    kid: jwk.common.key_id.clone(),
                    validation: validation_for(alg),
                    key: DecodingKey::from_jwk(jwk).context("unusable JWKS key")?,
                });
            }
        }
        if keys.is_empty() {
            anyhow::bail!("no token verification keys: enable auth.dev_key or configure auth.keys / auth.jwks_file");
        }
        Ok(Self {
            keys,
            dev_key: a.dev_key,
        })
    }

    /// Whether tokens signed with the development key are accepted.
    pub fn dev_key_enabled(&self) -> bool {
        self.dev_key
    }

    /// Verifies a bearer token and reduces it to a [`Principal`].
    pub fn verify(&self, token: &str) -> Result<Principal, DomainError> {
        let unauth = |reason: &str| DomainError::Unauthenticated {
            reason: reason.to_owned(),
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauth("malformed token"))?;
        // RFC 7515 4.1.11: a `crit` header names extensions the recipient must understand; we
        // understand none. `b64` (RFC 7797, unencoded payload) changes what is signed.
        if header.crit.is_some() {
            return Err(unauth(
                "the token's crit header names extensions this server does not understand",
            ));
        }
        if header.extras.inner().contains_key("b64") {
            return Err(unauth("tokens with a b64 header are not accepted"));
        }
        let candidates = self.keys.iter().filter(|k| match (&header.kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            (Some(_), None) | (None, _) => k.validation.algorithms.contains(&header.alg),
        });
        let mut last = unauth("no trusted key matches the token's kid or alg");
        for k in candidates {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &k.validation) {
                Ok(data) => {
                    let now = jsonwebtoken::get_current_timestamp();
                    if data
                        .claims
                        .iat
                        .is_some_and(|iat| iat > now.saturating_add(k.validation.leeway))
                    {
                        return Err(unauth("token issued in the future"));
                    }
                    return principal_from(data.claims);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = unauth(match e.kind() {
                        K::ExpiredSignature => "token expired",
                        K::ImmatureSignature => "token not valid yet",
                        K::InvalidIssuer => "wrong issuer",
                        K::InvalidAudience => "wrong audience",
                        K::InvalidAlgorithm => "algorithm not allowed for this key",
                        K::MissingRequiredClaim(_) => "token lacks a required claim",
                        _ => "invalid token",
                    });
                }
            }
        }
        Err(last)
    }
}

fn principal_from(c: Claims) -> Result<Principal, DomainError> {
    if c.sub.is_empty() || c.sub.len() > 255 {
        return Err(DomainError::Unauthenticated {
            reason: "token subject must be 1-255 characters".into(),
        });
    }
    let organizations = c
        .org_ids
        .iter()
        .map(|o| OrganizationId::parse(o))
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|_| DomainError::Unauthenticated {
            reason: "token org_ids holds an invalid organization id".into(),
        })?;
    // Unknown scopes are ignored: tokens may carry scopes for other services.
    let scopes = c.scope.split_whitespace().filter_map(Scope::parse).collect();
    Ok(Principal {
        subject: c.sub,
        organizations,
        scopes,
        platform_admin: c.platform_admin,
    })
}

/// Reads the development signing key, creating it (mode 0600) when missing.
pub fn load_or_create_dev_key(path: &Path) -> anyhow::Result<SecretString> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_owned();
        if s.len() < 32 {
            anyhow::bail!(
                "development key {} is too short; delete it to create a new one",
                path.display()
            );
        }
        return Ok(SecretString::from(s));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes: [u8; 32] = rand::random();
    let secret = hex::encode(bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
            Ok(SecretString::from(secret))
        }
        // another process created it first: use theirs
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_dev_key(path),
        Err(e) => Err(e).with_context(|| format!("creating development key {}", path.display())),
    }
}

/// Mints a token with the development key (the `strata token` command and tests).
pub fn mint_dev_token(
    cfg: &Config,
    sub: &str,
    orgs: &[String],
    scopes: &[String],
    admin: bool,
    ttl_secs: u64,
) -> anyhow::Result<String> {
    let secret = load_or_create_dev_key(&cfg.dev_key_path())?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = Claims {
        sub: sub.to_owned(),
        org_ids: orgs.to_vec(),
        scope: scopes.join(" "),
        platform_admin: admin,
        exp: now + ttl_secs,
        nbf: Some(now),
        iat: Some(now),
        iss: cfg.auth.issuer.clone(),
        aud: cfg.auth.audience.clone(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(DEV_KID.into());
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )?)
}
