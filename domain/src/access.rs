//! Who is calling and what they may do: the verified claims of a token, reduced to types.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::DomainError;
use crate::ids::{OrganizationId, RegionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    ImagesRead,
    ImagesWrite,
    KernelsRead,
    KernelsWrite,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::ImagesRead,
        Scope::ImagesWrite,
        Scope::KernelsRead,
        Scope::KernelsWrite,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::ImagesRead => "images:read",
            Scope::ImagesWrite => "images:write",
            Scope::KernelsRead => "kernels:read",
            Scope::KernelsWrite => "kernels:write",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller. Built only from a verified token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub organizations: BTreeSet<OrganizationId>,
    pub scopes: BTreeSet<Scope>,
    pub platform_admin: bool,
}

impl Principal {
    pub fn require_scope(&self, scope: Scope) -> Result<(), DomainError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(DomainError::Forbidden {
                reason: format!("the token lacks the {scope} scope"),
            })
        }
    }

    /// May this caller act for `org`? Members of it, and platform admins for any organization.
    pub fn acts_for(&self, org: &OrganizationId) -> bool {
        self.platform_admin || self.organizations.contains(org)
    }

    pub fn require_org(&self, org: &OrganizationId) -> Result<(), DomainError> {
        if self.acts_for(org) {
            Ok(())
        } else {
            Err(DomainError::Forbidden {
                reason: format!("the token does not act for organization {org}"),
            })
        }
    }
}

/// A configured region and the organizations it is open to.
#[derive(Debug, Clone)]
pub struct RegionPolicy {
    pub id: RegionId,
    /// `None`: open to every organization.
    pub organizations: Option<BTreeSet<OrganizationId>>,
}

impl RegionPolicy {
    pub fn admits(&self, org: &OrganizationId) -> bool {
        self.organizations.as_ref().is_none_or(|allowed| allowed.contains(org))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrganizationId {
        OrganizationId::parse(s).unwrap()
    }

    #[test]
    fn orgs_and_regions() {
        let p = Principal {
            subject: "u".into(),
            organizations: [org("a")].into(),
            scopes: [Scope::ImagesRead].into(),
            platform_admin: false,
        };
        assert!(p.require_org(&org("a")).is_ok());
        assert_eq!(p.require_org(&org("b")).unwrap_err().code(), "forbidden");
        assert_eq!(p.require_scope(Scope::ImagesWrite).unwrap_err().code(), "forbidden");
        let admin = Principal {
            platform_admin: true,
            ..p
        };
        assert!(admin.require_org(&org("b")).is_ok());

        let open = RegionPolicy {
            id: RegionId::parse("r").unwrap(),
            organizations: None,
        };
        let closed = RegionPolicy {
            organizations: Some([org("a")].into()),
            ..open.clone()
        };
        assert!(open.admits(&org("z")));
        assert!(closed.admits(&org("a")));
        assert!(!closed.admits(&org("z")));
    }
}
