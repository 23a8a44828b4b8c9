//! The v2 query: turns raw query parameters and the caller's rights into a domain `ImageQuery`.

use strata_domain::DomainError;
use strata_domain::ids::{OrganizationId, RegionId};
use strata_domain::image::Image;
use strata_domain::name::ImageName;
use strata_domain::query::{ImageQuery, MAX_ORG_FILTERS, MAX_TAG_FILTERS, OrgFilter, Sort};
use strata_domain::tags::TagFilter;

use crate::db;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::tenancy::{ImagesRead, RegionAccess};

/// One page of a keyset-paged list (images or kernels) and the token of the next.
pub struct Page<T = Image> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// What a page's cursor is made of.
pub trait Listed {
    fn cursor_name(&self) -> String;
    fn cursor_id(&self) -> uuid::Uuid;
    fn cursor_created_at(&self) -> chrono::DateTime<chrono::Utc>;
}

impl Listed for Image {
    fn cursor_name(&self) -> String {
        self.name.to_string()
    }
    fn cursor_id(&self) -> uuid::Uuid {
        self.id.as_uuid()
    }
    fn cursor_created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.created_at
    }
}

impl Listed for strata_domain::kernel::Kernel {
    fn cursor_name(&self) -> String {
        self.name.to_string()
    }
    fn cursor_id(&self) -> uuid::Uuid {
        self.id.as_uuid()
    }
    fn cursor_created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.created_at
    }
}

/// Parses repeated `key=value` pairs. Unknown parameters are refused so that a typo
/// (`organizationId`) does not silently widen the result.
pub fn build<S>(
    access: &RegionAccess<S>,
    params: &[(String, String)],
) -> Result<(ImageQuery, Option<String>), DomainError> {
    let mut requested = Vec::new();
    let mut owned = false;
    let mut states = Vec::new();
    let mut name = None;
    let mut architecture = None;
    let mut kind = None;
    let mut tags = Vec::new();
    let mut sort = Sort::default();
    let mut limit = None;
    let mut token = None;
    for (k, v) in params {
        match k.as_str() {
            "organizationID" => requested.push(OrganizationId::parse(v)?),
            "scope" => {
                owned = match v.as_str() {
                    "owned" => true,
                    "available" => false,
                    _ => return Err(DomainError::invalid("scope", "must be owned or available")),
                }
            }
            "status" => states.push(v.parse()?),
            "name" => name = Some(ImageName::parse(v)?),
            "architecture" => architecture = Some(v.parse()?),
            "kind" => kind = Some(v.parse()?),
            "tag" => tags.push(TagFilter::parse(v)?),
            "sort" => sort = Sort::parse(v)?,
            "limit" => {
                limit = Some(
                    v.parse::<u32>()
                        .map_err(|_| DomainError::invalid("limit", "must be a number"))?,
                )
            }
            "pageToken" => token = Some(v.clone()),
            other => return Err(DomainError::invalid(other, "unknown query parameter")),
        }
    }
    if requested.len() > MAX_ORG_FILTERS {
        return Err(DomainError::invalid(
            "organizationID",
            format!("at most {MAX_ORG_FILTERS} values"),
        ));
    }
    if tags.len() > MAX_TAG_FILTERS {
        return Err(DomainError::invalid("tag", format!("at most {MAX_TAG_FILTERS} values")));
    }
    states.sort_by_key(|s: &strata_domain::image::ImageState| s.as_str());
    states.dedup();
    tags.sort();
    tags.dedup();

    let p = &access.principal;
    let organizations = if !requested.is_empty() {
        requested.sort();
        requested.dedup();
        OrgFilter::Only(requested.into_iter().filter(|o| access.may_read(o)).collect())
    } else if p.platform_admin {
        match &access.region.policy.organizations {
            None => OrgFilter::Any,
            Some(allowed) => OrgFilter::Only(allowed.iter().cloned().collect()),
        }
    } else {
        OrgFilter::Only(p.organizations.iter().filter(|o| access.may_read(o)).cloned().collect())
    };
    let q = ImageQuery {
        organizations,
        include_global: !owned,
        states,
        name,
        architecture,
        kind,
        tags,
        sort,
        limit: ImageQuery::check_limit(limit)?,
        after: None,
    };
    Ok((q, token))
}

pub async fn run(st: &AppState, access: &RegionAccess<ImagesRead>, params: &[(String, String)]) -> ApiResult<Page> {
    let (mut q, token) = build(access, params)?;
    if let Some(t) = token {
        q.after = Some(q.decode_token(&t)?);
    }
    page(st, access.region_id(), &q).await
}

/// One page of `q`, with the token of the next one when more follow.
pub async fn page(st: &AppState, region: &RegionId, q: &ImageQuery) -> ApiResult<Page> {
    let (items, more) = db::images::query(&st.db, region, q).await?;
    Ok(Page::of(q, items, more))
}

impl<T: Listed> Page<T> {
    /// A page of `q`'s results, with the token of the next one when `more` follow.
    pub fn of(q: &ImageQuery, items: Vec<T>, more: bool) -> Self {
        let next_page_token = match (more, items.last()) {
            (true, Some(last)) => Some(q.encode_token(&match q.sort {
                Sort::Name => strata_domain::query::Cursor::Name {
                    name: last.cursor_name(),
                    id: last.cursor_id(),
                },
                Sort::CreatedAt | Sort::CreatedAtDesc => strata_domain::query::Cursor::CreatedAt {
                    at: last.cursor_created_at(),
                    id: last.cursor_id(),
                },
            })),
            _ => None,
        };
        Page { items, next_page_token }
    }
}
