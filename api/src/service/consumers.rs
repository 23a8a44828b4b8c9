use strata_domain::DomainError;
use strata_domain::ids::{ConsumerId, ImageId};

use crate::db;
use crate::db::consumers::{ConsumerRow, NewConsumer};
use crate::error::ApiResult;
use crate::model::ConsumerRequest;
use crate::service::images::find_visible;
use crate::state::AppState;
use crate::tenancy::{ImagesWrite, OrgRegion};

fn check_kind(kind: &str) -> Result<(), DomainError> {
    let ok = !kind.is_empty()
        && kind.len() <= 63
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "kind",
            "must be 1-63 lowercase letters, digits and '-'",
        ))
    }
}

/// Any organization that can see an image may register its own consumers of it (a VM booted
/// from a global image, say); consumers are kept per organization.
pub async fn register(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    image: ImageId,
    id: &ConsumerId,
    req: ConsumerRequest,
) -> ApiResult<(ConsumerRow, bool)> {
    check_kind(&req.kind)?;
    let description = req
        .description
        .as_deref()
        .map(strata_domain::name::Description::parse)
        .transpose()?
        .map(|d| d.as_str().to_owned());
    find_visible(st, access, image).await?;
    Ok(db::consumers::upsert(
        &st.db,
        NewConsumer {
            image,
            org: &access.org,
            id,
            kind: req.kind,
            description,
        },
    )
    .await?)
}

/// The owner (or a platform admin, for global images) sees every consumer; other organizations
/// see only their own.
pub async fn list<S>(st: &AppState, access: &OrgRegion<S>, image: ImageId) -> ApiResult<Vec<ConsumerRow>> {
    let img = find_visible(st, access, image).await?;
    let sees_all = img.modifiable_by(&access.org, access.principal.platform_admin);
    Ok(db::consumers::list(&st.db, image, (!sees_all).then_some(&access.org)).await?)
}

pub async fn unregister(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    image: ImageId,
    id: &ConsumerId,
) -> ApiResult<()> {
    find_visible(st, access, image).await?;
    if db::consumers::delete(&st.db, image, &access.org, id).await? {
        Ok(())
    } else {
        Err(DomainError::not_found(strata_domain::ResourceKind::Consumer, id).into())
    }
}
