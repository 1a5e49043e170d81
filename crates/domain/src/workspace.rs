//! A team's workspace: its members with their roles, and its API keys.

use crate::error::Problems;
use crate::{Aggregate, DomainError, Event, Permission, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workspace {
    pub id: Option<Uuid>,
    pub name: String,
    pub members: BTreeMap<Uuid, Role>,
    pub api_keys: BTreeMap<Uuid, ApiKey>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the key's secret, hex encoded. The secret itself is shown once and never kept.
    pub secret_hash: String,
    pub revoked: bool,
}

impl Workspace {
    /// The role of a member, if they are one.
    pub fn role_of(&self, user_id: Uuid) -> Option<Role> {
        self.members.get(&user_id).copied()
    }

    fn owners(&self) -> usize {
        self.members.values().filter(|r| **r == Role::Owner).count()
    }
}

#[derive(Debug, Clone)]
pub enum WorkspaceCommand {
    Create {
        workspace_id: Uuid,
        name: String,
        owner_id: Uuid,
    },
    AddMember {
        actor_role: Role,
        user_id: Uuid,
        role: Role,
    },
    ChangeMemberRole {
        actor_role: Role,
        user_id: Uuid,
        role: Role,
    },
    RemoveMember {
        actor_role: Role,
        user_id: Uuid,
    },
    CreateApiKey {
        actor_role: Role,
        key_id: Uuid,
        name: String,
        role: Role,
        secret_hash: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum WorkspaceEvent {
    WorkspaceCreated {
        workspace_id: Uuid,
        name: String,
        owner_id: Uuid,
    },
    MemberAdded {
        user_id: Uuid,
        role: Role,
    },
    MemberRoleChanged {
        user_id: Uuid,
        from: Role,
        to: Role,
    },
    MemberRemoved {
        user_id: Uuid,
    },
    ApiKeyCreated {
        key_id: Uuid,
        name: String,
        role: Role,
        secret_hash: String,
    },
}

impl Event for WorkspaceEvent {
    fn event_type(&self) -> &'static str {
        match self {
            WorkspaceEvent::WorkspaceCreated { .. } => "WorkspaceCreated",
            WorkspaceEvent::MemberAdded { .. } => "MemberAdded",
            WorkspaceEvent::MemberRoleChanged { .. } => "MemberRoleChanged",
            WorkspaceEvent::MemberRemoved { .. } => "MemberRemoved",
            WorkspaceEvent::ApiKeyCreated { .. } => "ApiKeyCreated",
        }
    }
}

pub fn check_workspace_name(name: &str) -> Result<String, DomainError> {
    let name = name.trim();
    let mut problems = Problems::default();
    if name.is_empty() || name.chars().count() > 200 {
        problems.add("name", "must be 1 to 200 characters");
    }
    problems.into_result().map(|()| name.to_owned())
}

/// Admins manage admins, members and viewers; only owners grant, change or take the owner role.
fn may_manage(actor_role: Role, target_role: Role) -> Result<(), DomainError> {
    if !actor_role.allows(Permission::ManageMembers) {
        return Err(DomainError::Forbidden(format!("a {actor_role} may not manage members")));
    }
    if target_role == Role::Owner && actor_role != Role::Owner {
        return Err(DomainError::Forbidden(
            "only an owner may grant, change or remove the owner role".into(),
        ));
    }
    Ok(())
}

impl Aggregate for Workspace {
    const STREAM_TYPE: &'static str = crate::names::stream_types::WORKSPACE;
    type Command = WorkspaceCommand;
    type Event = WorkspaceEvent;

    fn decide(&self, command: WorkspaceCommand) -> Result<Vec<WorkspaceEvent>, DomainError> {
        if let WorkspaceCommand::Create {
            workspace_id,
            name,
            owner_id,
        } = command
        {
            if self.id.is_some() {
                return Err(DomainError::Conflict("the workspace already exists".into()));
            }
            return Ok(vec![WorkspaceEvent::WorkspaceCreated {
                workspace_id,
                name: check_workspace_name(&name)?,
                owner_id,
            }]);
        }
        if self.id.is_none() {
            return Err(DomainError::NotFound("workspace not found".into()));
        }
        match command {
            WorkspaceCommand::Create { .. } => unreachable!("handled above"),
            WorkspaceCommand::AddMember {
                actor_role,
                user_id,
                role,
            } => {
                may_manage(actor_role, role)?;
                if self.members.contains_key(&user_id) {
                    return Err(DomainError::Conflict(
                        "the user is already a member; change their role instead".into(),
                    ));
                }
                Ok(vec![WorkspaceEvent::MemberAdded { user_id, role }])
            }
            WorkspaceCommand::ChangeMemberRole {
                actor_role,
                user_id,
                role,
            } => {
                let current = self
                    .role_of(user_id)
                    .ok_or_else(|| DomainError::NotFound("member not found".into()))?;
                may_manage(actor_role, current)?;
                may_manage(actor_role, role)?;
                if current == role {
                    return Ok(vec![]);
                }
                if current == Role::Owner && self.owners() == 1 {
                    return Err(DomainError::Conflict("a workspace keeps at least one owner".into()));
                }
                Ok(vec![WorkspaceEvent::MemberRoleChanged {
                    user_id,
                    from: current,
                    to: role,
                }])
            }
            WorkspaceCommand::RemoveMember { actor_role, user_id } => {
                let current = self
                    .role_of(user_id)
                    .ok_or_else(|| DomainError::NotFound("member not found".into()))?;
                may_manage(actor_role, current)?;
                if current == Role::Owner && self.owners() == 1 {
                    return Err(DomainError::Conflict("a workspace keeps at least one owner".into()));
                }
                Ok(vec![WorkspaceEvent::MemberRemoved { user_id }])
            }
            WorkspaceCommand::CreateApiKey {
                actor_role,
                key_id,
                name,
                role,
                secret_hash,
            } => {
                may_manage(actor_role, role)?;
                if role > actor_role {
                    return Err(DomainError::Forbidden(
                        "an API key may not have a higher role than its creator".into(),
                    ));
                }
                let mut problems = Problems::default();
                let name = name.trim().to_owned();
                if name.is_empty() || name.chars().count() > 200 {
                    problems.add("name", "must be 1 to 200 characters");
                }
                problems.into_result()?;
                Ok(vec![WorkspaceEvent::ApiKeyCreated {
                    key_id,
                    name,
                    role,
                    secret_hash,
                }])
            }
        }
    }

    fn evolve(mut self, event: &WorkspaceEvent) -> Self {
        match event {
            WorkspaceEvent::WorkspaceCreated {
                workspace_id,
                name,
                owner_id,
            } => {
                self.id = Some(*workspace_id);
                self.name = name.clone();
                self.members.insert(*owner_id, Role::Owner);
            }
            WorkspaceEvent::MemberAdded { user_id, role } => {
                self.members.insert(*user_id, *role);
            }
            WorkspaceEvent::MemberRoleChanged { user_id, to, .. } => {
                self.members.insert(*user_id, *to);
            }
            WorkspaceEvent::MemberRemoved { user_id } => {
                self.members.remove(user_id);
            }
            WorkspaceEvent::ApiKeyCreated {
                key_id,
                name,
                role,
                secret_hash,
            } => {
                self.api_keys.insert(
                    *key_id,
                    ApiKey {
                        name: name.clone(),
                        role: *role,
                        secret_hash: secret_hash.clone(),
                        revoked: false,
                    },
                );
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given_when;

    fn created(owner: Uuid) -> WorkspaceEvent {
        WorkspaceEvent::WorkspaceCreated {
            workspace_id: Uuid::new_v4(),
            name: "Acme".into(),
            owner_id: owner,
        }
    }

    #[test]
    fn the_creator_owns_the_workspace() {
        let owner = Uuid::new_v4();
        let ws = Workspace::fold(&[created(owner)]);
        assert_eq!(ws.role_of(owner), Some(Role::Owner));
    }

    #[test]
    fn admins_add_members_but_not_owners() {
        let owner = Uuid::new_v4();
        let user = Uuid::new_v4();
        let events = given_when::<Workspace>(
            &[created(owner)],
            WorkspaceCommand::AddMember {
                actor_role: Role::Admin,
                user_id: user,
                role: Role::Member,
            },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![WorkspaceEvent::MemberAdded {
                user_id: user,
                role: Role::Member
            }]
        );
        let err = given_when::<Workspace>(
            &[created(owner)],
            WorkspaceCommand::AddMember {
                actor_role: Role::Admin,
                user_id: user,
                role: Role::Owner,
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)));
    }

    #[test]
    fn members_and_viewers_manage_nobody() {
        for actor_role in [Role::Member, Role::Viewer] {
            let err = given_when::<Workspace>(
                &[created(Uuid::new_v4())],
                WorkspaceCommand::AddMember {
                    actor_role,
                    user_id: Uuid::new_v4(),
                    role: Role::Viewer,
                },
            )
            .unwrap_err();
            assert!(matches!(err, DomainError::Forbidden(_)), "{actor_role}");
        }
    }

    #[test]
    fn the_last_owner_stays() {
        let owner = Uuid::new_v4();
        let err = given_when::<Workspace>(
            &[created(owner)],
            WorkspaceCommand::RemoveMember {
                actor_role: Role::Owner,
                user_id: owner,
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
        let err = given_when::<Workspace>(
            &[created(owner)],
            WorkspaceCommand::ChangeMemberRole {
                actor_role: Role::Owner,
                user_id: owner,
                role: Role::Admin,
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
    }

    #[test]
    fn a_second_owner_can_demote_the_first() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let given = [
            created(a),
            WorkspaceEvent::MemberAdded {
                user_id: b,
                role: Role::Owner,
            },
        ];
        let events = given_when::<Workspace>(
            &given,
            WorkspaceCommand::ChangeMemberRole {
                actor_role: Role::Owner,
                user_id: a,
                role: Role::Viewer,
            },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![WorkspaceEvent::MemberRoleChanged {
                user_id: a,
                from: Role::Owner,
                to: Role::Viewer
            }]
        );
    }

    #[test]
    fn an_api_key_is_never_above_its_creator() {
        let err = given_when::<Workspace>(
            &[created(Uuid::new_v4())],
            WorkspaceCommand::CreateApiKey {
                actor_role: Role::Admin,
                key_id: Uuid::new_v4(),
                name: "ci".into(),
                role: Role::Owner,
                secret_hash: "x".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)));
    }

    #[test]
    fn commands_on_a_missing_workspace_are_not_found() {
        let err = given_when::<Workspace>(
            &[],
            WorkspaceCommand::RemoveMember {
                actor_role: Role::Owner,
                user_id: Uuid::new_v4(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::NotFound(_)));
    }
}
