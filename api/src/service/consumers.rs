use strata_domain::DomainError;
use strata_domain::command::RegisterConsumer;
use strata_domain::ids::{ConsumerId, ImageId};

use crate::db;
use crate::db::consumers::{ConsumerRow, NewConsumer};
use crate::error::ApiResult;
use crate::service::images::find_visible;
use crate::state::AppState;
use crate::tenancy::{ImagesWrite, OrgRegion};

/// Any organization that can see an image may register its own consumers of it (a VM booted
/// from a global image, say); consumers are kept per organization.
pub async fn register(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    image: ImageId,
    id: &ConsumerId,
    cmd: RegisterConsumer,
) -> ApiResult<(ConsumerRow, bool)> {
    let description = cmd.description.map(|d| d.as_str().to_owned());
    find_visible(st, access, image).await?;
    Ok(db::consumers::upsert(
        &st.db,
        NewConsumer {
            image,
            org: &access.org,
            id,
            kind: cmd.kind,
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
