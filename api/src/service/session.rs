//! What a client (the console) needs before it shows data: which regions the caller can use and
//! how tokens are obtained here.

use strata_domain::access::Principal;
use strata_domain::ids::RegionId;

use crate::state::AppState;

/// The regions the caller can use: every region for a platform admin, otherwise those whose
/// allow-list admits at least one of the caller's organizations. The same rule as the v2 query's
/// region check, so a region listed here never answers that caller 404.
pub fn visible_regions<'a>(st: &'a AppState, principal: &Principal) -> Vec<&'a RegionId> {
    st.regions
        .iter()
        .filter(|(_, r)| principal.platform_admin || principal.organizations.iter().any(|o| r.policy.admits(o)))
        .map(|(id, _)| id)
        .collect()
}

/// Whether this server trusts its development signing key (tokens minted by `strata token`).
pub fn dev_key_enabled(st: &AppState) -> bool {
    st.verifier.dev_key_enabled()
}
