//! Tenancy as types. Handlers that touch tenant data take one of these extractors; holding a value
//! proves the token was verified, carries the route's scope, acts for the organization in the path
//! and may use the region. Service functions take these values, so a forgotten check does not compile.

use std::marker::PhantomData;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::{Ready, ready};
use strata_domain::access::{Principal, Scope};
use strata_domain::ids::{ConsumerId, ImageId, OrganizationId, RegionId};
use strata_domain::{DomainError, ResourceKind};

use crate::error::ApiError;
use crate::state::{AppState, Region};

pub trait RequiredScope {
    const SCOPE: Scope;
}

/// Marker: the route reads images.
pub struct ImagesRead;
/// Marker: the route changes images.
pub struct ImagesWrite;

impl RequiredScope for ImagesRead {
    const SCOPE: Scope = Scope::ImagesRead;
}
impl RequiredScope for ImagesWrite {
    const SCOPE: Scope = Scope::ImagesWrite;
}

/// Marker: the route reads kernels.
pub struct KernelsRead;
/// Marker: the route changes kernels.
pub struct KernelsWrite;

impl RequiredScope for KernelsRead {
    const SCOPE: Scope = Scope::KernelsRead;
}
impl RequiredScope for KernelsWrite {
    const SCOPE: Scope = Scope::KernelsWrite;
}

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))
}

/// Verifies the bearer token. 401 for anything but a valid, trusted, unexpired token.
fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let st = state(req)?;
    let unauth = |reason: &str| DomainError::Unauthenticated { reason: reason.into() };
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| unauth("missing Authorization header"))?;
    let value = header.to_str().map_err(|_| unauth("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauth("expected 'Authorization: Bearer <token>'"))?;
    Ok(st.verifier.verify(token.trim())?)
}

/// The caller's principal when the request carries a valid bearer token; `None` otherwise. For
/// routes that answer everyone but tell an authenticated caller more (readiness).
pub fn optional_principal(req: &HttpRequest) -> Option<Principal> {
    req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    authenticate(req).ok()
}

fn path_param<T>(req: &HttpRequest, name: &str, parse: impl Fn(&str) -> Result<T, DomainError>) -> Result<T, ApiError> {
    let raw = req
        .match_info()
        .get(name)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("route lacks path parameter {name}")))?;
    Ok(parse(raw)?)
}

fn region_or_404(req: &HttpRequest, id: &RegionId) -> Result<Arc<Region>, ApiError> {
    state(req)?
        .regions
        .get(id)
        .cloned()
        .ok_or_else(|| DomainError::not_found(ResourceKind::Region, id).into())
}

/// A caller with a valid token and nothing more: for routes that describe what the caller may
/// reach (the regions it can use), never tenant data.
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(Authenticated))
    }
}

/// An authorised (organization, region) pair for the v1 API.
pub struct OrgRegion<S> {
    pub principal: Principal,
    pub org: OrganizationId,
    pub region: Arc<Region>,
    _scope: PhantomData<S>,
}

impl<S> OrgRegion<S> {
    pub fn region_id(&self) -> &RegionId {
        &self.region.policy.id
    }
}

impl<S: RequiredScope> OrgRegion<S> {
    /// Order matters: 401 before 403 before 404, and an organization the caller may not act for
    /// is refused before the region is looked at, so region existence never leaks.
    fn extract(req: &HttpRequest) -> Result<Self, ApiError> {
        let principal = authenticate(req)?;
        principal.require_scope(S::SCOPE)?;
        let org = path_param(req, "organizationID", OrganizationId::parse)?;
        principal.require_org(&org)?;
        let region_id = path_param(req, "regionID", RegionId::parse)?;
        let region = region_or_404(req, &region_id)?;
        if !region.policy.admits(&org) {
            return Err(DomainError::not_found(ResourceKind::Region, &region_id).into());
        }
        Ok(Self {
            principal,
            org,
            region,
            _scope: PhantomData,
        })
    }
}

impl<S: RequiredScope> FromRequest for OrgRegion<S> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

/// An authorised region for the v2 API. Which organizations' data the caller may see in it is
/// decided by [`RegionAccess::readable_orgs`], never by the request alone.
pub struct RegionAccess<S> {
    pub principal: Principal,
    pub region: Arc<Region>,
    _scope: PhantomData<S>,
}

impl<S: RequiredScope> RegionAccess<S> {
    fn extract(req: &HttpRequest) -> Result<Self, ApiError> {
        let principal = authenticate(req)?;
        principal.require_scope(S::SCOPE)?;
        let region_id = path_param(req, "regionID", RegionId::parse)?;
        let region = region_or_404(req, &region_id)?;
        // A region none of the caller's organizations may use does not exist for the caller.
        let usable = principal.platform_admin || principal.organizations.iter().any(|o| region.policy.admits(o));
        if !usable {
            return Err(DomainError::not_found(ResourceKind::Region, &region_id).into());
        }
        Ok(Self {
            principal,
            region,
            _scope: PhantomData,
        })
    }
}

impl<S> RegionAccess<S> {
    pub fn region_id(&self) -> &RegionId {
        &self.region.policy.id
    }

    /// May the caller read `org`'s images in this region?
    pub fn may_read(&self, org: &OrganizationId) -> bool {
        self.principal.acts_for(org) && self.region.policy.admits(org)
    }
}

impl<S: RequiredScope> FromRequest for RegionAccess<S> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

/// A region in which a platform admin acts for the platform itself (the operator's defaults).
/// Needs a platform-admin token with `images:write` and `kernels:write`.
pub struct PlatformRegion {
    pub principal: Principal,
    pub region: Arc<Region>,
}

impl PlatformRegion {
    fn extract(req: &HttpRequest) -> Result<Self, ApiError> {
        let principal = authenticate(req)?;
        principal.require_scope(Scope::ImagesWrite)?;
        principal.require_scope(Scope::KernelsWrite)?;
        let region_id = path_param(req, "regionID", RegionId::parse)?;
        let region = region_or_404(req, &region_id)?;
        if !principal.platform_admin {
            return Err(DomainError::Forbidden {
                reason: "only platform admins manage the platform's defaults".into(),
            }
            .into());
        }
        Ok(Self { principal, region })
    }

    pub fn region_id(&self) -> &RegionId {
        &self.region.policy.id
    }
}

impl FromRequest for PlatformRegion {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

/// The `imageID` path segment, parsed.
pub struct ImageRef(pub ImageId);

impl FromRequest for ImageRef {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(path_param(req, "imageID", ImageId::parse).map(ImageRef))
    }
}

/// The `consumerID` path segment, parsed.
pub struct ConsumerRef(pub ConsumerId);

impl FromRequest for ConsumerRef {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(path_param(req, "consumerID", ConsumerId::parse).map(ConsumerRef))
    }
}

/// The `kernelID` path segment, parsed.
pub struct KernelRef(pub strata_domain::kernel::KernelId);

impl FromRequest for KernelRef {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(path_param(req, "kernelID", strata_domain::kernel::KernelId::parse).map(KernelRef))
    }
}

/// The `artifact` path segment: `vmlinux`, `initrd` or `modules`.
pub struct ArtifactRef(pub strata_domain::kernel::KernelArtifact);

impl FromRequest for ArtifactRef {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // `file` and `bundle` are the upload routes (PUT only): another method there is a 405,
        // not an unknown artifact.
        if matches!(req.match_info().get("artifact"), Some("file" | "bundle")) {
            return ready(Err(DomainError::MethodNotAllowed {
                allowed: vec!["PUT".into()],
            }
            .into()));
        }
        ready(path_param(req, "artifact", |s| s.parse()).map(ArtifactRef))
    }
}
