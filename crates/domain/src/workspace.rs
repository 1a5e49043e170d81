//! A team's workspace: its members with their roles, its API keys, the provider credentials
//! its runs call models with, and its spend budget.

use crate::error::Problems;
use crate::event::DecodeError;
use crate::{Aggregate, DomainError, Event, Permission, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workspace {
    pub id: Option<Uuid>,
    pub name: String,
    pub members: BTreeMap<Uuid, Role>,
    pub api_keys: BTreeMap<Uuid, ApiKey>,
    pub provider_credentials: BTreeMap<ProviderKind, ProviderCredential>,
    /// The most its runs may cost, in micro-USD; `None` is no limit.
    pub spend_budget_micro_usd: Option<u64>,
    /// What its finished runs cost, in micro-USD.
    pub spent_micro_usd: u64,
    /// The runs whose cost is counted in `spent_micro_usd`, so none is counted twice.
    pub spend_recorded: std::collections::BTreeSet<Uuid>,
}

/// The providers a workspace keeps credentials for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Ollama,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 3] = [ProviderKind::OpenAi, ProviderKind::Anthropic, ProviderKind::Ollama];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Ollama => "ollama",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// A secret encrypted with an authenticated cipher under a key-encryption key the services
/// hold; the domain only carries it. Fields are base64 (nonce, ciphertext with its tag) and
/// the id of the key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub kek_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderCredential {
    pub base_url: Option<String>,
    pub default_model: Option<String>,
    pub api_key: Option<SealedSecret>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the key's secret, hex encoded. The secret itself is shown once and never kept.
    pub secret_hash: String,
    /// When the key was made; unknown for keys made before keys recorded it.
    pub created_at: Option<DateTime<Utc>>,
    /// After this instant the key no longer authenticates.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key still authenticates at `now`: not revoked and not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| now < expiry)
    }
}

impl Workspace {
    /// The role of a member, if they are one.
    pub fn role_of(&self, user_id: Uuid) -> Option<Role> {
        self.members.get(&user_id).copied()
    }

    /// Refuses new runs once the workspace has spent its budget.
    pub fn may_spend(&self) -> Result<(), DomainError> {
        match self.spend_budget_micro_usd {
            Some(budget) if self.spent_micro_usd >= budget => Err(DomainError::Invalid(vec![crate::FieldError::new(
                "budget",
                format!(
                    "the workspace has spent {} of its budget of {} micro-USD; an admin can raise it",
                    self.spent_micro_usd, budget
                ),
            )])),
            _ => Ok(()),
        }
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
        created_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    },
    RevokeApiKey {
        actor_role: Role,
        key_id: Uuid,
        revoked_at: DateTime<Utc>,
    },
    /// `api_key: None` keeps the key already stored.
    SetProviderCredential {
        actor_role: Role,
        provider: ProviderKind,
        base_url: Option<String>,
        default_model: Option<String>,
        api_key: Option<SealedSecret>,
        updated_at: DateTime<Utc>,
    },
    RemoveProviderCredential {
        actor_role: Role,
        provider: ProviderKind,
    },
    SetSpendBudget {
        actor_role: Role,
        limit_micro_usd: Option<u64>,
    },
    /// A finished run's cost, counted once per run.
    RecordSpend {
        run_id: Uuid,
        micro_usd: u64,
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
    /// Schema version 2 added `created_at` and `expires_at`; version 1 keys have neither.
    ApiKeyCreated {
        key_id: Uuid,
        name: String,
        role: Role,
        secret_hash: String,
        #[serde(default)]
        created_at: Option<DateTime<Utc>>,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    ApiKeyRevoked {
        key_id: Uuid,
        revoked_at: DateTime<Utc>,
    },
    /// The key, when one was given, only sealed; `api_key: None` kept the stored one.
    ProviderCredentialSet {
        provider: ProviderKind,
        base_url: Option<String>,
        default_model: Option<String>,
        api_key: Option<SealedSecret>,
        updated_at: DateTime<Utc>,
    },
    ProviderCredentialRemoved {
        provider: ProviderKind,
    },
    SpendBudgetSet {
        limit_micro_usd: Option<u64>,
    },
    SpendRecorded {
        run_id: Uuid,
        micro_usd: u64,
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
            WorkspaceEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            WorkspaceEvent::ProviderCredentialSet { .. } => "ProviderCredentialSet",
            WorkspaceEvent::ProviderCredentialRemoved { .. } => "ProviderCredentialRemoved",
            WorkspaceEvent::SpendBudgetSet { .. } => "SpendBudgetSet",
            WorkspaceEvent::SpendRecorded { .. } => "SpendRecorded",
        }
    }

    fn schema_version(event_type: &str) -> u32 {
        match event_type {
            "ApiKeyCreated" => 2,
            _ => 1,
        }
    }

    fn upcast(event_type: &str, schema_version: u32, data: Value) -> Result<Value, DecodeError> {
        match (event_type, schema_version) {
            // Version 1 had no times: the key's creation is unknown and it never expires, which
            // the new fields' absence (`null`) says.
            ("ApiKeyCreated", 1) => Ok(data),
            (t, v) if v == Self::schema_version(t) => Ok(data),
            (t, v) => Err(DecodeError::UnknownSchemaVersion {
                event_type: t.to_owned(),
                schema_version: v,
            }),
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

fn may_configure(actor_role: Role) -> Result<(), DomainError> {
    if actor_role.allows(Permission::ManageMembers) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(format!(
            "a {actor_role} may not change the workspace's providers or budget"
        )))
    }
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
                created_at,
                expires_at,
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
                if expires_at.is_some_and(|expiry| expiry <= created_at) {
                    problems.add("expires_at", "must be in the future");
                }
                problems.into_result()?;
                Ok(vec![WorkspaceEvent::ApiKeyCreated {
                    key_id,
                    name,
                    role,
                    secret_hash,
                    created_at: Some(created_at),
                    expires_at,
                }])
            }
            WorkspaceCommand::RevokeApiKey {
                actor_role,
                key_id,
                revoked_at,
            } => {
                let key = self
                    .api_keys
                    .get(&key_id)
                    .ok_or_else(|| DomainError::NotFound("API key not found".into()))?;
                may_manage(actor_role, key.role)?;
                if key.revoked_at.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![WorkspaceEvent::ApiKeyRevoked { key_id, revoked_at }])
            }
            WorkspaceCommand::SetProviderCredential {
                actor_role,
                provider,
                base_url,
                default_model,
                api_key,
                updated_at,
            } => {
                may_configure(actor_role)?;
                let mut problems = Problems::default();
                if base_url.as_ref().is_some_and(|url| {
                    !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2_000
                }) {
                    problems.add("base_url", "must be an http or https URL");
                }
                if default_model
                    .as_ref()
                    .is_some_and(|model| model.trim().is_empty() || model.len() > 200)
                {
                    problems.add("default_model", "must be 1 to 200 characters");
                }
                problems.into_result()?;
                Ok(vec![WorkspaceEvent::ProviderCredentialSet {
                    provider,
                    base_url,
                    default_model,
                    api_key,
                    updated_at,
                }])
            }
            WorkspaceCommand::RemoveProviderCredential { actor_role, provider } => {
                may_configure(actor_role)?;
                if !self.provider_credentials.contains_key(&provider) {
                    return Err(DomainError::NotFound(format!(
                        "no {} credentials are set",
                        provider.as_str()
                    )));
                }
                Ok(vec![WorkspaceEvent::ProviderCredentialRemoved { provider }])
            }
            WorkspaceCommand::SetSpendBudget {
                actor_role,
                limit_micro_usd,
            } => {
                may_configure(actor_role)?;
                if self.spend_budget_micro_usd == limit_micro_usd {
                    return Ok(vec![]);
                }
                Ok(vec![WorkspaceEvent::SpendBudgetSet { limit_micro_usd }])
            }
            WorkspaceCommand::RecordSpend { run_id, micro_usd } => {
                if self.spend_recorded.contains(&run_id) {
                    return Ok(vec![]);
                }
                Ok(vec![WorkspaceEvent::SpendRecorded { run_id, micro_usd }])
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
                created_at,
                expires_at,
            } => {
                self.api_keys.insert(
                    *key_id,
                    ApiKey {
                        name: name.clone(),
                        role: *role,
                        secret_hash: secret_hash.clone(),
                        created_at: *created_at,
                        expires_at: *expires_at,
                        revoked_at: None,
                    },
                );
            }
            WorkspaceEvent::ApiKeyRevoked { key_id, revoked_at } => {
                if let Some(key) = self.api_keys.get_mut(key_id) {
                    key.revoked_at = Some(*revoked_at);
                }
            }
            WorkspaceEvent::ProviderCredentialSet {
                provider,
                base_url,
                default_model,
                api_key,
                updated_at,
            } => {
                let kept = self.provider_credentials.remove(provider).and_then(|c| c.api_key);
                self.provider_credentials.insert(
                    *provider,
                    ProviderCredential {
                        base_url: base_url.clone(),
                        default_model: default_model.clone(),
                        api_key: api_key.clone().or(kept),
                        updated_at: *updated_at,
                    },
                );
            }
            WorkspaceEvent::ProviderCredentialRemoved { provider } => {
                self.provider_credentials.remove(provider);
            }
            WorkspaceEvent::SpendBudgetSet { limit_micro_usd } => self.spend_budget_micro_usd = *limit_micro_usd,
            WorkspaceEvent::SpendRecorded { run_id, micro_usd } => {
                self.spend_recorded.insert(*run_id);
                self.spent_micro_usd = self.spent_micro_usd.saturating_add(*micro_usd);
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
                created_at: Utc::now(),
                expires_at: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)));
    }

    #[test]
    fn a_revoked_or_expired_key_is_no_longer_live_and_revoking_twice_changes_nothing() {
        let now = Utc::now();
        let key_id = Uuid::new_v4();
        let given = [
            created(Uuid::new_v4()),
            WorkspaceEvent::ApiKeyCreated {
                key_id,
                name: "ci".into(),
                role: Role::Member,
                secret_hash: "x".into(),
                created_at: Some(now),
                expires_at: Some(now + chrono::Duration::seconds(60)),
            },
        ];
        let ws = Workspace::fold(&given);
        assert!(ws.api_keys[&key_id].is_live(now));
        assert!(!ws.api_keys[&key_id].is_live(now + chrono::Duration::seconds(60)));
        let revoke = |actor_role| WorkspaceCommand::RevokeApiKey {
            actor_role,
            key_id,
            revoked_at: now,
        };
        let err = given_when::<Workspace>(&given, revoke(Role::Member)).unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)));
        let events = given_when::<Workspace>(&given, revoke(Role::Admin)).unwrap();
        assert_eq!(
            events,
            vec![WorkspaceEvent::ApiKeyRevoked {
                key_id,
                revoked_at: now
            }]
        );
        let revoked: Vec<_> = given.iter().cloned().chain(events).collect();
        assert!(!Workspace::fold(&revoked).api_keys[&key_id].is_live(now));
        assert_eq!(given_when::<Workspace>(&revoked, revoke(Role::Owner)).unwrap(), vec![]);
        let unknown = WorkspaceCommand::RevokeApiKey {
            actor_role: Role::Owner,
            key_id: Uuid::new_v4(),
            revoked_at: now,
        };
        assert!(matches!(
            given_when::<Workspace>(&given, unknown),
            Err(DomainError::NotFound(_))
        ));
    }

    #[test]
    fn provider_keys_are_kept_unless_replaced_and_a_spent_budget_stops_runs() {
        let owner = Uuid::new_v4();
        let sealed = |c: &str| SealedSecret {
            kek_id: "k1".into(),
            nonce: "n".into(),
            ciphertext: c.into(),
        };
        let set = |api_key| WorkspaceEvent::ProviderCredentialSet {
            provider: ProviderKind::OpenAi,
            base_url: None,
            default_model: Some("gpt-4o-mini".into()),
            api_key,
            updated_at: Utc::now(),
        };
        let given = [created(owner), set(Some(sealed("first"))), set(None)];
        let ws = Workspace::fold(&given);
        assert_eq!(
            ws.provider_credentials[&ProviderKind::OpenAi].api_key,
            Some(sealed("first"))
        );
        let viewer_set = WorkspaceCommand::SetProviderCredential {
            actor_role: Role::Member,
            provider: ProviderKind::Anthropic,
            base_url: None,
            default_model: None,
            api_key: None,
            updated_at: Utc::now(),
        };
        assert!(matches!(
            given_when::<Workspace>(&given, viewer_set),
            Err(DomainError::Forbidden(_))
        ));

        let run = Uuid::new_v4();
        let spent = [
            created(owner),
            WorkspaceEvent::SpendBudgetSet {
                limit_micro_usd: Some(100),
            },
            WorkspaceEvent::SpendRecorded {
                run_id: run,
                micro_usd: 60,
            },
        ];
        assert!(Workspace::fold(&spent).may_spend().is_ok());
        let again = WorkspaceCommand::RecordSpend {
            run_id: run,
            micro_usd: 60,
        };
        assert_eq!(given_when::<Workspace>(&spent, again).unwrap(), vec![]);
        let over: Vec<_> = spent
            .iter()
            .cloned()
            .chain([WorkspaceEvent::SpendRecorded {
                run_id: Uuid::new_v4(),
                micro_usd: 40,
            }])
            .collect();
        assert!(matches!(
            Workspace::fold(&over).may_spend(),
            Err(DomainError::Invalid(_))
        ));
    }

    #[test]
    fn a_version_1_key_has_no_times_and_never_expires() {
        let data = serde_json::json!({"key_id": Uuid::new_v4(), "name": "old", "role": "member", "secret_hash": "h"});
        let event: WorkspaceEvent = crate::event::decode("ApiKeyCreated", 1, data).unwrap();
        let WorkspaceEvent::ApiKeyCreated {
            created_at, expires_at, ..
        } = event
        else {
            panic!("decoded {event:?}")
        };
        assert_eq!((created_at, expires_at), (None, None));
        assert_eq!(WorkspaceEvent::schema_version("ApiKeyCreated"), 2);
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
