//! Test cases of a prompt card: values for its variables, an expected output and assertions.

use crate::card::PromptCard;
use crate::error::Problems;
use crate::template::{check_values, Variable};
use crate::{Aggregate, DomainError, Event};
use assertions::{check_assertions, Assertion};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCaseContent {
    pub name: String,
    pub vars: Map<String, Value>,
    pub expected_output: Option<String>,
    pub assertions: Vec<Assertion>,
}

/// What a test case needs to know of its card to be checked. The service reads it from the
/// card's stream so `decide` stays free of I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct CardFacts {
    pub card_id: Uuid,
    pub workspace_id: Uuid,
    pub variables: Vec<Variable>,
    pub archived: bool,
}

impl CardFacts {
    /// The facts of a card as loaded; a card that does not exist has none.
    pub fn of(card: &PromptCard) -> Result<Self, DomainError> {
        let (Some(card_id), Some(workspace_id), Some(current)) = (card.id, card.workspace_id, card.current()) else {
            return Err(DomainError::NotFound("prompt card not found".into()));
        };
        Ok(CardFacts {
            card_id,
            workspace_id,
            variables: current.content.variables.clone(),
            archived: card.archived,
        })
    }
}

impl TestCaseContent {
    fn validated(mut self, card: &CardFacts) -> Result<Self, DomainError> {
        let mut problems = Problems::default();
        self.name = self.name.trim().to_owned();
        let len = self.name.chars().count();
        if len == 0 || len > 200 {
            problems.add("name", "must be 1 to 200 characters");
        }
        if self
            .expected_output
            .as_ref()
            .is_some_and(|o| o.chars().count() > 100_000)
        {
            problems.add("expected_output", "must be at most 100,000 characters");
        }
        check_values(&card.variables, &self.vars, "vars", &mut problems);
        problems.extend(check_assertions(&self.assertions));
        if card.archived {
            return Err(DomainError::Conflict("the prompt card is archived".into()));
        }
        problems.into_result().map(|()| self)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestCase {
    pub id: Option<Uuid>,
    pub card_id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
    pub content: Option<TestCaseContent>,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub enum TestCaseCommand {
    Create {
        case_id: Uuid,
        card: CardFacts,
        content: TestCaseContent,
    },
    Update {
        card: CardFacts,
        content: TestCaseContent,
    },
    /// Deletes the case, which must belong to `card_id`.
    Delete {
        card_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum TestCaseEvent {
    TestCaseCreated {
        case_id: Uuid,
        card_id: Uuid,
        workspace_id: Uuid,
        #[serde(flatten)]
        content: TestCaseContent,
    },
    TestCaseUpdated {
        #[serde(flatten)]
        content: TestCaseContent,
    },
    TestCaseDeleted {},
}

impl Event for TestCaseEvent {
    fn event_type(&self) -> &'static str {
        match self {
            TestCaseEvent::TestCaseCreated { .. } => "TestCaseCreated",
            TestCaseEvent::TestCaseUpdated { .. } => "TestCaseUpdated",
            TestCaseEvent::TestCaseDeleted { .. } => "TestCaseDeleted",
        }
    }
}

impl TestCase {
    /// A case is addressed through its card: one of another card reads as not found, like a
    /// deleted one.
    fn ensure_of_card(&self, card_id: Uuid) -> Result<(), DomainError> {
        if self.id.is_none() || self.deleted || self.card_id != Some(card_id) {
            return Err(DomainError::NotFound("test case not found".into()));
        }
        Ok(())
    }
}

impl Aggregate for TestCase {
    const STREAM_TYPE: &'static str = crate::names::stream_types::TEST_CASE;
    type Command = TestCaseCommand;
    type Event = TestCaseEvent;

    fn decide(&self, command: TestCaseCommand) -> Result<Vec<TestCaseEvent>, DomainError> {
        match command {
            TestCaseCommand::Create { case_id, card, content } => {
                if self.id.is_some() {
                    return Err(DomainError::Conflict("the test case already exists".into()));
                }
                let content = content.validated(&card)?;
                Ok(vec![TestCaseEvent::TestCaseCreated {
                    case_id,
                    card_id: card.card_id,
                    workspace_id: card.workspace_id,
                    content,
                }])
            }
            TestCaseCommand::Update { card, content } => {
                self.ensure_of_card(card.card_id)?;
                Ok(vec![TestCaseEvent::TestCaseUpdated {
                    content: content.validated(&card)?,
                }])
            }
            TestCaseCommand::Delete { card_id } => {
                self.ensure_of_card(card_id)?;
                Ok(vec![TestCaseEvent::TestCaseDeleted {}])
            }
        }
    }

    fn evolve(mut self, event: &TestCaseEvent) -> Self {
        match event {
            TestCaseEvent::TestCaseCreated {
                case_id,
                card_id,
                workspace_id,
                content,
            } => {
                self.id = Some(*case_id);
                self.card_id = Some(*card_id);
                self.workspace_id = Some(*workspace_id);
                self.content = Some(content.clone());
            }
            TestCaseEvent::TestCaseUpdated { content } => self.content = Some(content.clone()),
            TestCaseEvent::TestCaseDeleted {} => self.deleted = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given_when;
    use crate::template::VarType;
    use serde_json::json;

    fn card() -> CardFacts {
        CardFacts {
            card_id: Uuid::new_v4(),
            workspace_id: Uuid::new_v4(),
            variables: vec![Variable {
                name: "topic".into(),
                kind: VarType::String,
                description: None,
                default: None,
                required: true,
            }],
            archived: false,
        }
    }

    fn content(vars: Value) -> TestCaseContent {
        TestCaseContent {
            name: "greets".into(),
            vars: vars.as_object().cloned().unwrap(),
            expected_output: None,
            assertions: vec![Assertion {
                kind: "icontains".into(),
                value: Some(json!("{{ topic }}")),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_case_with_matching_vars_is_created() {
        let card = card();
        let case_id = Uuid::new_v4();
        let events = given_when::<TestCase>(
            &[],
            TestCaseCommand::Create {
                case_id,
                card: card.clone(),
                content: content(json!({"topic": "tea"})),
            },
        )
        .unwrap();
        let case = TestCase::fold(&events);
        assert_eq!(case.id, Some(case_id));
        assert_eq!(case.card_id, Some(card.card_id));
    }

    #[test]
    fn vars_are_checked_against_the_card() {
        let err = given_when::<TestCase>(
            &[],
            TestCaseCommand::Create {
                case_id: Uuid::new_v4(),
                card: card(),
                content: content(json!({"topic": 3, "extra": "x"})),
            },
        )
        .unwrap_err();
        let DomainError::Invalid(fields) = err else {
            panic!("expected invalid")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, vec!["vars.extra", "vars.topic"]);
    }

    #[test]
    fn an_archived_card_takes_no_new_cases() {
        let mut archived = card();
        archived.archived = true;
        let err = given_when::<TestCase>(
            &[],
            TestCaseCommand::Create {
                case_id: Uuid::new_v4(),
                card: archived,
                content: content(json!({"topic": "tea"})),
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
    }

    #[test]
    fn a_deleted_case_is_gone_for_commands() {
        let card = card();
        let given = [
            TestCaseEvent::TestCaseCreated {
                case_id: Uuid::new_v4(),
                card_id: card.card_id,
                workspace_id: card.workspace_id,
                content: content(json!({"topic": "tea"})),
            },
            TestCaseEvent::TestCaseDeleted {},
        ];
        let err = given_when::<TestCase>(&given, TestCaseCommand::Delete { card_id: card.card_id }).unwrap_err();
        assert!(matches!(err, DomainError::NotFound(_)));
    }

    fn created(card: &CardFacts) -> TestCaseEvent {
        TestCaseEvent::TestCaseCreated {
            case_id: Uuid::new_v4(),
            card_id: card.card_id,
            workspace_id: card.workspace_id,
            content: content(json!({"topic": "tea"})),
        }
    }

    #[test]
    fn a_case_of_another_card_cannot_be_updated() {
        let (card, other) = (card(), card());
        let err = given_when::<TestCase>(
            &[created(&card)],
            TestCaseCommand::Update {
                card: other,
                content: content(json!({"topic": "tea"})),
            },
        )
        .unwrap_err();
        assert_eq!(err, DomainError::NotFound("test case not found".into()));
    }

    #[test]
    fn a_case_of_another_card_cannot_be_deleted() {
        let card = card();
        let err = given_when::<TestCase>(
            &[created(&card)],
            TestCaseCommand::Delete {
                card_id: Uuid::new_v4(),
            },
        )
        .unwrap_err();
        assert_eq!(err, DomainError::NotFound("test case not found".into()));
        let events =
            given_when::<TestCase>(&[created(&card)], TestCaseCommand::Delete { card_id: card.card_id }).unwrap();
        assert_eq!(events, vec![TestCaseEvent::TestCaseDeleted {}]);
    }

    #[test]
    fn facts_of_a_card_that_does_not_exist_read_as_not_found() {
        let err = CardFacts::of(&PromptCard::default()).unwrap_err();
        assert_eq!(err, DomainError::NotFound("prompt card not found".into()));
    }
}
