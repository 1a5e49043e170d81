//! Prompt cards: versioned templates. Every update is a new immutable version; labels such as
//! `production` point at versions.

use crate::error::Problems;
use crate::prompt::{check_card_name, check_config, check_messages, legacy_name, ChatMessage, PromptKind};
use crate::template::{check_template, check_variables, VarType, Variable};
use crate::{Aggregate, DecodeError, DomainError, Event};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::LazyLock;
use uuid::Uuid;

pub const MAX_TAGS: usize = 20;

pub(crate) static LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$").expect("valid regex"));

/// What one version of a card says. A version is a text `template` or a chat prompt
/// (`messages`, each content a template), never both; `config` is the team's model settings
/// (model, temperature, max_tokens, ...), passed to providers where they apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardContent {
    pub title: String,
    pub description: String,
    /// Empty for a chat prompt.
    #[serde(default)]
    pub template: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<ChatMessage>,
    pub variables: Vec<Variable>,
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
}

impl CardContent {
    /// Trims what users do not mean to keep and checks every rule, reporting all problems.
    fn validated(mut self) -> Result<Self, DomainError> {
        let mut problems = Problems::default();
        self.title = self.title.trim().to_owned();
        let title_len = self.title.chars().count();
        if title_len == 0 || title_len > 500 {
            problems.add("title", "must be 1 to 500 characters");
        }
        if self.description.chars().count() > 5_000 {
            problems.add("description", "must be at most 5,000 characters");
        }
        check_variables(&self.variables, &mut problems);
        if self.messages.is_empty() {
            check_template(&self.template, &self.variables, &mut problems);
        } else {
            if !self.template.is_empty() {
                problems.add("template", "give a template or messages, not both");
            }
            check_messages(&self.messages, &self.variables, &mut problems);
        }
        check_config(&self.config, &mut problems);
        if self.tags.len() > MAX_TAGS {
            problems.add("tags", format!("at most {MAX_TAGS} tags, got {}", self.tags.len()));
        }
        for (i, tag) in self.tags.iter_mut().enumerate() {
            *tag = tag.trim().to_owned();
            let len = tag.chars().count();
            if len == 0 || len > 50 {
                problems.add(format!("tags[{i}]"), "must be 1 to 50 characters");
            }
        }
        let mut sorted = self.tags.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.tags.len() {
            problems.add("tags", "must not repeat a tag");
        }
        problems.into_result().map(|()| self)
    }

    /// [`validated`](Self::validated), with the card's name checked too when one is given.
    fn validated_with_name(self, name: Option<&str>) -> Result<Self, DomainError> {
        let name_problem = name.and_then(|n| check_card_name(n).err());
        match (self.validated(), name_problem) {
            (result, None) => result,
            (Ok(_), Some(problem)) => Err(DomainError::Invalid(vec![problem])),
            (Err(DomainError::Invalid(mut problems)), Some(problem)) => {
                problems.insert(0, problem);
                Err(DomainError::Invalid(problems))
            }
            (Err(error), Some(_)) => Err(error),
        }
    }

    pub fn kind(&self) -> PromptKind {
        if self.messages.is_empty() {
            PromptKind::Text
        } else {
            PromptKind::Chat
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CardVersion {
    pub version: u32,
    pub content: CardContent,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptCard {
    pub id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
    /// The slug the card is served under, unique in its workspace.
    pub name: String,
    /// Every version ever written, oldest first; `versions[n - 1].version == n`. A persistent
    /// vector: cloning the state shares it, and a new version shares the others. A card edited
    /// thousands of times was otherwise copied whole on every command: with a `Vec` of `Arc`s,
    /// a profile of the command API under load still put 15% of its CPU in cloning and dropping
    /// those lists (half of it before the versions were `Arc`s).
    pub versions: imbl::Vector<Arc<CardVersion>>,
    pub labels: BTreeMap<String, u32>,
    pub archived: bool,
    /// Live test cases, in the order they were added.
    pub test_cases: Vec<Uuid>,
}

impl PromptCard {
    pub fn current(&self) -> Option<&CardVersion> {
        self.versions.back().map(Arc::as_ref)
    }

    pub fn version(&self) -> u32 {
        self.versions.len() as u32
    }

    pub fn at_version(&self, version: u32) -> Option<&CardVersion> {
        version
            .checked_sub(1)
            .and_then(|i| self.versions.get(i as usize))
            .map(Arc::as_ref)
    }
}

#[derive(Debug, Clone)]
pub enum CardCommand {
    /// `name` is checked here; that no other card holds it is the reservation's job.
    Create {
        card_id: Uuid,
        workspace_id: Uuid,
        name: String,
        content: CardContent,
    },
    /// A new version; with a `name` other than the card's, the card is renamed too.
    Update {
        expected_version: u32,
        name: Option<String>,
        content: CardContent,
    },
    MoveLabel {
        label: String,
        version: u32,
    },
    Archive,
    /// Recorded on the card with a test case's creation, so the card knows its cases and a
    /// case is never added to a card archived at the same moment.
    AttachTestCase {
        case_id: Uuid,
    },
    DetachTestCase {
        case_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CardEvent {
    PromptCardCreated {
        card_id: Uuid,
        workspace_id: Uuid,
        name: String,
        #[serde(flatten)]
        content: CardContent,
    },
    PromptCardRenamed {
        name: String,
        previous_name: String,
    },
    PromptCardUpdated {
        version: u32,
        #[serde(flatten)]
        content: CardContent,
    },
    PromptCardLabelMoved {
        label: String,
        version: u32,
        previous_version: Option<u32>,
    },
    PromptCardArchived {},
    TestCaseAttached {
        case_id: Uuid,
    },
    TestCaseDetached {
        case_id: Uuid,
    },
}

impl Event for CardEvent {
    fn event_type(&self) -> &'static str {
        match self {
            CardEvent::PromptCardCreated { .. } => "PromptCardCreated",
            CardEvent::PromptCardRenamed { .. } => "PromptCardRenamed",
            CardEvent::PromptCardUpdated { .. } => "PromptCardUpdated",
            CardEvent::PromptCardLabelMoved { .. } => "PromptCardLabelMoved",
            CardEvent::PromptCardArchived { .. } => "PromptCardArchived",
            CardEvent::TestCaseAttached { .. } => "TestCaseAttached",
            CardEvent::TestCaseDetached { .. } => "TestCaseDetached",
        }
    }

    /// Version 2 of the content-carrying events declares typed variables; version 1 listed
    /// bare names, all of which were strings and required. Version 3 of `PromptCardCreated`
    /// names the card; older ones get the name [`legacy_name`] derives from their title and id
    /// (the migration that introduced names reserved the same names).
    fn schema_version(event_type: &str) -> u32 {
        match event_type {
            "PromptCardCreated" => 3,
            "PromptCardUpdated" => 2,
            _ => 1,
        }
    }

    fn upcast(event_type: &str, schema_version: u32, mut data: Value) -> Result<Value, DecodeError> {
        if event_type == "PromptCardCreated" && schema_version < 3 {
            let data = Self::upcast("PromptCardUpdated", schema_version, data)?;
            return Ok(with_legacy_name(data));
        }
        match (event_type, schema_version) {
            ("PromptCardUpdated", 1) => {
                if let Some(vars) = data.get_mut("variables").and_then(Value::as_array_mut) {
                    for var in vars.iter_mut() {
                        if let Value::String(name) = var {
                            *var = serde_json::json!({
                                "name": name,
                                "type": VarType::String,
                                "required": true,
                            });
                        }
                    }
                }
                Ok(data)
            }
            (t, v) if v == Self::schema_version(t) => Ok(data),
            (t, v) => Err(DecodeError::UnknownSchemaVersion {
                event_type: t.to_owned(),
                schema_version: v,
            }),
        }
    }
}

/// Adds the name a card created before names existed is known by.
fn with_legacy_name(mut data: Value) -> Value {
    if let Value::Object(fields) = &mut data {
        if !fields.contains_key("name") {
            let title = fields.get("title").and_then(Value::as_str).unwrap_or_default();
            let card_id = fields
                .get("card_id")
                .and_then(Value::as_str)
                .and_then(|id| Uuid::parse_str(id).ok())
                .unwrap_or_default();
            let name = legacy_name(title, card_id);
            fields.insert("name".into(), Value::String(name));
        }
    }
    data
}

impl PromptCard {
    fn ensure_live(&self) -> Result<(), DomainError> {
        if self.id.is_none() {
            return Err(DomainError::NotFound("prompt card not found".into()));
        }
        if self.archived {
            return Err(DomainError::Conflict("the prompt card is archived".into()));
        }
        Ok(())
    }
}

impl Aggregate for PromptCard {
    const STREAM_TYPE: &'static str = crate::names::stream_types::PROMPT_CARD;
    type Command = CardCommand;
    type Event = CardEvent;

    fn decide(&self, command: CardCommand) -> Result<Vec<CardEvent>, DomainError> {
        match command {
            CardCommand::Create {
                card_id,
                workspace_id,
                name,
                content,
            } => {
                if self.id.is_some() {
                    return Err(DomainError::Conflict("the prompt card already exists".into()));
                }
                let content = content.validated_with_name(Some(&name))?;
                Ok(vec![CardEvent::PromptCardCreated {
                    card_id,
                    workspace_id,
                    name,
                    content,
                }])
            }
            CardCommand::Update {
                expected_version,
                name,
                content,
            } => {
                self.ensure_live()?;
                let content = content.validated_with_name(name.as_deref())?;
                if expected_version != self.version() {
                    return Err(DomainError::VersionMismatch {
                        expected: expected_version,
                        current: self.version(),
                    });
                }
                let mut events = vec![CardEvent::PromptCardUpdated {
                    version: self.version() + 1,
                    content,
                }];
                if let Some(name) = name.filter(|n| *n != self.name) {
                    events.push(CardEvent::PromptCardRenamed {
                        name,
                        previous_name: self.name.clone(),
                    });
                }
                Ok(events)
            }
            CardCommand::MoveLabel { label, version } => {
                self.ensure_live()?;
                let mut problems = Problems::default();
                if !LABEL.is_match(&label) {
                    problems.add(
                        "label",
                        "must be 1 to 50 letters, digits, '_', '.' or '-', starting with a letter or digit",
                    );
                }
                if version == 0 || version > self.version() {
                    problems.add(
                        "version",
                        format!("must be an existing version, 1 to {}", self.version()),
                    );
                }
                problems.into_result()?;
                let previous_version = self.labels.get(&label).copied();
                if previous_version == Some(version) {
                    return Ok(vec![]);
                }
                Ok(vec![CardEvent::PromptCardLabelMoved {
                    label,
                    version,
                    previous_version,
                }])
            }
            CardCommand::Archive => {
                self.ensure_live()?;
                Ok(vec![CardEvent::PromptCardArchived {}])
            }
            CardCommand::AttachTestCase { case_id } => {
                self.ensure_live()?;
                if self.test_cases.contains(&case_id) {
                    return Ok(vec![]);
                }
                Ok(vec![CardEvent::TestCaseAttached { case_id }])
            }
            CardCommand::DetachTestCase { case_id } => {
                if self.id.is_none() {
                    return Err(DomainError::NotFound("prompt card not found".into()));
                }
                if !self.test_cases.contains(&case_id) {
                    return Ok(vec![]);
                }
                Ok(vec![CardEvent::TestCaseDetached { case_id }])
            }
        }
    }

    fn evolve(mut self, event: &CardEvent) -> Self {
        match event {
            CardEvent::PromptCardCreated {
                card_id,
                workspace_id,
                name,
                content,
            } => {
                self.id = Some(*card_id);
                self.workspace_id = Some(*workspace_id);
                self.name = name.clone();
                self.versions = imbl::Vector::unit(Arc::new(CardVersion {
                    version: 1,
                    content: content.clone(),
                }));
            }
            CardEvent::PromptCardUpdated { version, content } => {
                self.versions.push_back(Arc::new(CardVersion {
                    version: *version,
                    content: content.clone(),
                }));
            }
            CardEvent::PromptCardRenamed { name, .. } => self.name = name.clone(),
            CardEvent::PromptCardLabelMoved { label, version, .. } => {
                self.labels.insert(label.clone(), *version);
            }
            CardEvent::PromptCardArchived {} => self.archived = true,
            CardEvent::TestCaseAttached { case_id } => self.test_cases.push(*case_id),
            CardEvent::TestCaseDetached { case_id } => self.test_cases.retain(|c| c != case_id),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, encode};
    use crate::given_when;

    fn content(template: &str, vars: &[&str]) -> CardContent {
        CardContent {
            title: "Summarise".into(),
            description: String::new(),
            template: template.into(),
            variables: vars
                .iter()
                .map(|n| Variable {
                    name: (*n).into(),
                    kind: VarType::String,
                    description: None,
                    default: None,
                    required: true,
                })
                .collect(),
            tags: vec!["support".into()],
            ..Default::default()
        }
    }

    fn created() -> CardEvent {
        CardEvent::PromptCardCreated {
            card_id: Uuid::new_v4(),
            workspace_id: Uuid::new_v4(),
            name: "summarise".into(),
            content: content("Summarise {{ text }}", &["text"]),
        }
    }

    fn invalid_fields(err: DomainError) -> Vec<String> {
        match err {
            DomainError::Invalid(fields) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn creating_a_card_makes_version_one() {
        let events = given_when::<PromptCard>(
            &[],
            CardCommand::Create {
                card_id: Uuid::new_v4(),
                workspace_id: Uuid::new_v4(),
                name: "summarise".into(),
                content: content("Hi {{ name }}", &["name"]),
            },
        )
        .unwrap();
        let card = PromptCard::fold(&events);
        assert_eq!(card.version(), 1);
        assert_eq!(card.current().unwrap().content.template, "Hi {{ name }}");
    }

    #[test]
    fn every_rule_is_reported_at_once() {
        let mut bad = content("{{ a }} {{ undeclared }}", &["a", "a", "9bad"]);
        bad.title = " ".into();
        bad.description = "x".repeat(5_001);
        bad.tags = (0..21).map(|i| format!("t{i}")).collect();
        bad.tags[0] = "x".repeat(51);
        let err = given_when::<PromptCard>(
            &[],
            CardCommand::Create {
                card_id: Uuid::new_v4(),
                workspace_id: Uuid::new_v4(),
                name: "summarise".into(),
                content: bad,
            },
        )
        .unwrap_err();
        let fields = invalid_fields(err);
        for expected in [
            "title",
            "description",
            "variables[1].name",
            "variables[2].name",
            "template",
            "tags",
            "tags[0]",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn an_update_is_a_new_version_and_old_ones_stay() {
        let events = given_when::<PromptCard>(
            &[created()],
            CardCommand::Update {
                name: None,
                expected_version: 1,
                content: content("Summarise briefly: {{ text }}", &["text"]),
            },
        )
        .unwrap();
        assert!(matches!(events[0], CardEvent::PromptCardUpdated { version: 2, .. }));
        let card = PromptCard::fold([created()].iter().chain(&events));
        assert_eq!(card.version(), 2);
        assert_eq!(card.at_version(1).unwrap().content.template, "Summarise {{ text }}");
    }

    #[test]
    fn a_stale_update_names_the_current_version() {
        let err = given_when::<PromptCard>(
            &[created()],
            CardCommand::Update {
                name: None,
                expected_version: 3,
                content: content("x {{ text }}", &["text"]),
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            DomainError::VersionMismatch {
                expected: 3,
                current: 1
            }
        );
    }

    #[test]
    fn labels_point_at_existing_versions_and_remember_the_previous_one() {
        let moved = given_when::<PromptCard>(
            &[created()],
            CardCommand::MoveLabel {
                label: "production".into(),
                version: 1,
            },
        )
        .unwrap();
        assert_eq!(
            moved,
            vec![CardEvent::PromptCardLabelMoved {
                label: "production".into(),
                version: 1,
                previous_version: None
            }]
        );
        let err = given_when::<PromptCard>(
            &[created()],
            CardCommand::MoveLabel {
                label: "production".into(),
                version: 2,
            },
        )
        .unwrap_err();
        assert_eq!(invalid_fields(err), vec!["version"]);
    }

    #[test]
    fn an_archived_card_refuses_changes_but_keeps_its_history() {
        let given = [created(), CardEvent::PromptCardArchived {}];
        let err = given_when::<PromptCard>(&given, CardCommand::Archive).unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
        let card = PromptCard::fold(&given);
        assert!(card.archived);
        assert_eq!(card.version(), 1);
    }

    #[test]
    fn a_card_keeps_its_test_cases_in_order_and_refuses_new_ones_once_archived() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let given = [
            created(),
            CardEvent::TestCaseAttached { case_id: a },
            CardEvent::TestCaseAttached { case_id: b },
            CardEvent::TestCaseDetached { case_id: a },
        ];
        assert_eq!(PromptCard::fold(&given).test_cases, vec![b]);
        let archived = [created(), CardEvent::PromptCardArchived {}];
        let err = given_when::<PromptCard>(&archived, CardCommand::AttachTestCase { case_id: a }).unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
        // Deleting a case of an archived card still works: its history is kept either way.
        let given = [
            created(),
            CardEvent::TestCaseAttached { case_id: a },
            CardEvent::PromptCardArchived {},
        ];
        assert_eq!(
            given_when::<PromptCard>(&given, CardCommand::DetachTestCase { case_id: a }).unwrap(),
            vec![CardEvent::TestCaseDetached { case_id: a }]
        );
    }

    #[test]
    fn a_version_one_event_is_upcast_to_typed_variables() {
        let v1 = serde_json::json!({
            "card_id": Uuid::nil(), "workspace_id": Uuid::nil(), "title": "t",
            "description": "", "template": "{{ q }}", "variables": ["q"], "tags": []
        });
        let event: CardEvent = decode("PromptCardCreated", 1, v1).unwrap();
        let CardEvent::PromptCardCreated { content, .. } = event else {
            panic!("wrong variant")
        };
        assert_eq!(content.variables[0].name, "q");
        assert_eq!(content.variables[0].kind, VarType::String);
        assert!(content.variables[0].required);
    }

    #[test]
    fn an_older_created_event_is_named_from_its_title_and_id() {
        let card_id = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        for version in [1, 2] {
            let data = serde_json::json!({
                "card_id": card_id, "workspace_id": Uuid::nil(), "title": "Support reply",
                "description": "", "template": "Hi", "variables": [], "tags": []
            });
            let CardEvent::PromptCardCreated { name, content, .. } =
                decode("PromptCardCreated", version, data).unwrap()
            else {
                panic!("wrong variant")
            };
            assert_eq!(name, "support-reply-2e3f4a5b");
            assert_eq!(content.kind(), PromptKind::Text);
            assert!(content.config.is_empty());
        }
    }

    #[test]
    fn an_update_with_another_name_renames_the_card() {
        let events = given_when::<PromptCard>(
            &[created()],
            CardCommand::Update {
                expected_version: 1,
                name: Some("digest".into()),
                content: content("Digest {{ text }}", &["text"]),
            },
        )
        .unwrap();
        assert_eq!(
            events[1],
            CardEvent::PromptCardRenamed {
                name: "digest".into(),
                previous_name: "summarise".into()
            }
        );
        let card = PromptCard::fold([created()].iter().chain(&events));
        assert_eq!(card.name, "digest");
        let same = given_when::<PromptCard>(
            &[created()],
            CardCommand::Update {
                expected_version: 1,
                name: Some("summarise".into()),
                content: content("x {{ text }}", &["text"]),
            },
        )
        .unwrap();
        assert_eq!(same.len(), 1, "keeping the name renames nothing");
        let bad = given_when::<PromptCard>(
            &[created()],
            CardCommand::Update {
                expected_version: 1,
                name: Some("Not A Slug".into()),
                content: content("x {{ text }}", &["text"]),
            },
        )
        .unwrap_err();
        assert_eq!(invalid_fields(bad), vec!["name"]);
    }

    #[test]
    fn a_chat_version_checks_variables_across_messages_and_keeps_its_config() {
        let mut chat = content("", &["topic"]);
        chat.messages = vec![
            ChatMessage {
                role: crate::prompt::ChatRole::System,
                content: "You write about {{ topic }}".into(),
            },
            ChatMessage {
                role: crate::prompt::ChatRole::User,
                content: "And {{ undeclared }}".into(),
            },
        ];
        let create = |content| CardCommand::Create {
            card_id: Uuid::new_v4(),
            workspace_id: Uuid::new_v4(),
            name: "chat".into(),
            content,
        };
        let err = given_when::<PromptCard>(&[], create(chat.clone())).unwrap_err();
        assert_eq!(invalid_fields(err), vec!["messages[1].content"]);
        chat.messages[1].content = "Go".into();
        chat.config.insert("temperature".into(), Value::from(0.2));
        let events = given_when::<PromptCard>(&[], create(chat)).unwrap();
        let encoded = encode(&events[0]);
        assert_eq!(encoded.schema_version, 3);
        assert_eq!(encoded.data["messages"][0]["role"], "system");
        assert_eq!(encoded.data["config"]["temperature"], 0.2);
        let back: CardEvent = decode(encoded.event_type, 3, encoded.data).unwrap();
        let CardEvent::PromptCardCreated { content, .. } = back else {
            panic!("wrong variant")
        };
        assert_eq!(content.kind(), PromptKind::Chat);
        let mut both = content.clone();
        both.template = "t".into();
        assert_eq!(
            invalid_fields(given_when::<PromptCard>(&[], create(both)).unwrap_err()),
            vec!["template"]
        );
    }

    #[test]
    fn events_round_trip_through_their_encoding() {
        for event in [
            created(),
            CardEvent::PromptCardArchived {},
            CardEvent::PromptCardLabelMoved {
                label: "prod".into(),
                version: 1,
                previous_version: Some(1),
            },
        ] {
            let encoded = encode(&event);
            assert_eq!(encoded.event_type, event.event_type());
            let back: CardEvent = decode(encoded.event_type, encoded.schema_version, encoded.data).unwrap();
            assert_eq!(back, event);
        }
    }
}
