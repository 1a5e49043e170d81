use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A member's role in a workspace, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

/// What a command needs to be allowed. The role matrix lives in [`Role::allows`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read anything in the workspace.
    Read,
    /// Create and change prompt cards, test cases and runs.
    WriteCards,
    /// Add, re-role and remove members; create API keys.
    ManageMembers,
    /// Register, change and remove webhook endpoints, and see their deliveries.
    ManageWebhooks,
}

impl Role {
    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::Read => true,
            Permission::WriteCards => self >= Role::Member,
            Permission::ManageMembers | Permission::ManageWebhooks => self >= Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            other => Err(format!(
                "unknown role {other:?}; expected owner, admin, member or viewer"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_never_write_and_members_do_not_manage() {
        assert!(!Role::Viewer.allows(Permission::WriteCards));
        assert!(Role::Viewer.allows(Permission::Read));
        assert!(Role::Member.allows(Permission::WriteCards));
        assert!(!Role::Member.allows(Permission::ManageMembers));
        assert!(Role::Admin.allows(Permission::ManageMembers));
        assert!(Role::Owner.allows(Permission::ManageMembers));
        assert!(!Role::Member.allows(Permission::ManageWebhooks));
        assert!(Role::Admin.allows(Permission::ManageWebhooks));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::Viewer, Role::Member, Role::Admin, Role::Owner] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
