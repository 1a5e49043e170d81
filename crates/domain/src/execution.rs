//! Playground executions: one card version, or an unsaved template tried beside the card, rendered
//! with variables and sent to one provider while someone watches the answer arrive. The request
//! and the outcome are events (so executions are audited and counted in analytics like runs);
//! the answer's chunks are not: the runner streams them through Redis to subscribers, and the
//! outcome event carries the whole answer.

use crate::card::PromptCard;
use crate::error::Problems;
use crate::prompt::{render_prompt, ChatMessage, Rendered};
use crate::run::{is_known_provider, with_card_config, ProviderSpec};
use crate::template::{template_variables, VarType, Variable};
use crate::{Aggregate, DomainError, Event};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// What is executed, fixed when requested: later edits to the card never change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPlan {
    pub workspace_id: Uuid,
    pub card_id: Uuid,
    /// The card version rendered; `None` for an unsaved template or unsaved messages.
    pub card_version: Option<u32>,
    pub variables: Map<String, Value>,
    /// The prompt as sent: the rendered text, or the rendered messages.
    pub prompt: Rendered,
    /// The provider with the version's config beneath its own, as runs call it.
    pub provider: ProviderSpec,
}

/// The request as the API receives it, resolved against the card by `decide`.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub card: PromptCard,
    /// Defaults to the card's current version; ignored when `template` or `messages` is given.
    pub version: Option<u32>,
    /// An unsaved text template to try instead of a version.
    pub template: Option<String>,
    /// Unsaved chat messages to try instead of a version.
    pub messages: Option<Vec<ChatMessage>>,
    pub variables: Map<String, Value>,
    pub provider: ProviderSpec,
}

impl ExecutionRequest {
    fn plan(self) -> Result<ExecutionPlan, DomainError> {
        let card = &self.card;
        let (Some(card_id), Some(workspace_id), Some(current)) = (card.id, card.workspace_id, card.current()) else {
            return Err(DomainError::NotFound("prompt card not found".into()));
        };
        if card.archived {
            return Err(DomainError::Conflict("the prompt card is archived".into()));
        }
        let mut problems = Problems::default();
        if !is_known_provider(&self.provider.id) {
            problems.add(
                "provider",
                format!(
                    "{:?} is not a supported provider; use echo, openai:<model>, ollama:chat:<model> or anthropic:messages:<model>",
                    self.provider.id
                ),
            );
        }
        if !matches!(self.provider.config, Value::Null | Value::Object(_)) {
            problems.add("provider.config", "must be a JSON object");
        }
        let (card_version, template, messages, variables, config) = match (self.template, self.messages) {
            (Some(_), Some(_)) => {
                problems.add("template", "give a template or messages, not both");
                problems.into_result()?;
                unreachable!("a problem was added")
            }
            (None, None) => {
                let version = self.version.unwrap_or(card.version());
                let Some(at) = card.at_version(version) else {
                    problems.add(
                        "version",
                        format!("must be an existing version, 1 to {}", card.version()),
                    );
                    problems.into_result()?;
                    unreachable!("a problem was added")
                };
                let c = &at.content;
                (
                    Some(version),
                    c.template.clone(),
                    c.messages.clone(),
                    c.variables.clone(),
                    c.config.clone(),
                )
            }
            (template, messages) => {
                let (template, messages) = (template.unwrap_or_default(), messages.unwrap_or_default());
                if template.trim().is_empty() && messages.is_empty() {
                    problems.add("template", "must not be empty");
                }
                let variables = unsaved_variables(&current.content.variables, &template, &messages, &mut problems);
                (None, template, messages, variables, current.content.config.clone())
            }
        };
        problems.into_result()?;
        let prompt = render_prompt(&template, &messages, &variables, &self.variables, "variables")?;
        Ok(ExecutionPlan {
            workspace_id,
            card_id,
            card_version,
            variables: self.variables,
            prompt,
            provider: with_card_config(&self.provider, &config),
        })
    }
}

/// The variables an unsaved template is checked against: the card's current ones, and any other
/// name the template uses as an optional string, so a draft can try a new variable.
fn unsaved_variables(
    declared: &[Variable],
    template: &str,
    messages: &[ChatMessage],
    problems: &mut Problems,
) -> Vec<Variable> {
    let mut variables = declared.to_vec();
    let sources = std::iter::once(("template".to_owned(), template)).chain(
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("messages[{i}].content"), m.content.as_str())),
    );
    for (field, source) in sources {
        match template_variables(source) {
            Ok(names) => {
                for name in names {
                    if !variables.iter().any(|v| v.name == name) {
                        variables.push(Variable {
                            name,
                            kind: VarType::String,
                            description: None,
                            required: false,
                            default: None,
                        });
                    }
                }
            }
            Err(error) => problems.add(field, format!("is not a valid template: {error}")),
        }
    }
    variables
}

/// The answer and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionOutput {
    pub output: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// From sending the request to the answer's end.
    pub latency_ms: u64,
    /// From sending the request to the first chunk of the answer.
    pub first_token_ms: u64,
    /// `None` when the model's price is unknown.
    pub cost_micro_usd: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    #[default]
    Requested,
    Finished,
    Failed,
    Cancelled,
}

impl ExecutionStatus {
    pub fn is_terminal(self) -> bool {
        self != ExecutionStatus::Requested
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Requested => "REQUESTED",
            ExecutionStatus::Finished => "FINISHED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Execution {
    pub id: Option<Uuid>,
    pub plan: Option<ExecutionPlan>,
    pub status: ExecutionStatus,
    pub output: Option<ExecutionOutput>,
    pub error: Option<String>,
}

impl Execution {
    pub fn workspace_id(&self) -> Option<Uuid> {
        self.plan.as_ref().map(|p| p.workspace_id)
    }

    fn ensure_requested(&self) -> Result<(), DomainError> {
        if self.plan.is_none() {
            return Err(DomainError::NotFound("execution not found".into()));
        }
        if self.status.is_terminal() {
            return Err(DomainError::Conflict(format!(
                "the execution is already {}",
                self.status.as_str().to_lowercase()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub enum ExecutionCommand {
    Request {
        execution_id: Uuid,
        request: Box<ExecutionRequest>,
    },
    Finish(ExecutionOutput),
    Fail {
        error: String,
    },
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ExecutionEvent {
    ExecutionRequested {
        execution_id: Uuid,
        #[serde(flatten)]
        plan: ExecutionPlan,
    },
    ExecutionFinished {
        /// Named again so analytics need no lookup.
        workspace_id: Uuid,
        card_id: Uuid,
        provider: String,
        #[serde(flatten)]
        output: ExecutionOutput,
    },
    ExecutionFailed {
        error: String,
    },
    ExecutionCancelled {},
}

impl Event for ExecutionEvent {
    fn event_type(&self) -> &'static str {
        match self {
            ExecutionEvent::ExecutionRequested { .. } => Self::EXECUTION_REQUESTED,
            ExecutionEvent::ExecutionFinished { .. } => "ExecutionFinished",
            ExecutionEvent::ExecutionFailed { .. } => "ExecutionFailed",
            ExecutionEvent::ExecutionCancelled { .. } => "ExecutionCancelled",
        }
    }
}

impl ExecutionEvent {
    /// The stored name of `ExecutionRequested`, for the runner that picks requests off the topic.
    pub const EXECUTION_REQUESTED: &'static str = "ExecutionRequested";
}

impl Aggregate for Execution {
    const STREAM_TYPE: &'static str = crate::names::stream_types::EXECUTION;
    type Command = ExecutionCommand;
    type Event = ExecutionEvent;

    fn decide(&self, command: ExecutionCommand) -> Result<Vec<ExecutionEvent>, DomainError> {
        match command {
            ExecutionCommand::Request { execution_id, request } => {
                if self.id.is_some() {
                    return Err(DomainError::Conflict("the execution already exists".into()));
                }
                let plan = request.plan()?;
                Ok(vec![ExecutionEvent::ExecutionRequested { execution_id, plan }])
            }
            ExecutionCommand::Finish(output) => {
                self.ensure_requested()?;
                let plan = self.plan.as_ref().expect("checked above");
                Ok(vec![ExecutionEvent::ExecutionFinished {
                    workspace_id: plan.workspace_id,
                    card_id: plan.card_id,
                    provider: plan.provider.id.clone(),
                    output,
                }])
            }
            ExecutionCommand::Fail { error } => {
                self.ensure_requested()?;
                Ok(vec![ExecutionEvent::ExecutionFailed { error }])
            }
            ExecutionCommand::Cancel => {
                self.ensure_requested()?;
                Ok(vec![ExecutionEvent::ExecutionCancelled {}])
            }
        }
    }

    fn evolve(mut self, event: &ExecutionEvent) -> Self {
        match event {
            ExecutionEvent::ExecutionRequested { execution_id, plan } => {
                self.id = Some(*execution_id);
                self.plan = Some(plan.clone());
            }
            ExecutionEvent::ExecutionFinished { output, .. } => {
                self.status = ExecutionStatus::Finished;
                self.output = Some(output.clone());
            }
            ExecutionEvent::ExecutionFailed { error } => {
                self.status = ExecutionStatus::Failed;
                self.error = Some(error.clone());
            }
            ExecutionEvent::ExecutionCancelled {} => self.status = ExecutionStatus::Cancelled,
        }
        self
    }
}

/// What an execution's subscribers receive, in order: `Started`, a `Chunk` per piece of the
/// answer, then `Finished` (with the whole answer, usage, latency and cost) or `Failed`. A
/// `Started` after chunks means the runner restarted the execution: its text begins again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpdateKind {
    Started,
    Chunk,
    Finished,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

/// One update; the runner writes it to the execution's Redis stream
/// ([`crate::names::execution_updates_key`]) as JSON, the query API hands it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionUpdate {
    pub kind: UpdateKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<u64>,
    /// `None` also when the model's price is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_micro_usd: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The error a cancelled execution's subscribers see.
pub const CANCELLED: &str = "the execution was cancelled";

impl ExecutionUpdate {
    fn of(kind: UpdateKind) -> Self {
        Self {
            kind,
            text: None,
            usage: None,
            latency_ms: None,
            first_token_ms: None,
            cost_micro_usd: None,
            error: None,
        }
    }

    pub fn started() -> Self {
        Self::of(UpdateKind::Started)
    }

    pub fn chunk(text: &str) -> Self {
        Self {
            text: Some(text.to_owned()),
            ..Self::of(UpdateKind::Chunk)
        }
    }

    pub fn finished(output: &ExecutionOutput) -> Self {
        Self {
            text: Some(output.output.clone()),
            usage: Some(Usage {
                prompt_tokens: output.prompt_tokens,
                completion_tokens: output.completion_tokens,
                total_tokens: output.prompt_tokens.saturating_add(output.completion_tokens),
            }),
            latency_ms: Some(output.latency_ms),
            first_token_ms: Some(output.first_token_ms),
            cost_micro_usd: output.cost_micro_usd,
            ..Self::of(UpdateKind::Finished)
        }
    }

    pub fn failed(error: &str) -> Self {
        Self {
            error: Some(error.to_owned()),
            ..Self::of(UpdateKind::Failed)
        }
    }

    pub fn is_last(&self) -> bool {
        matches!(self.kind, UpdateKind::Finished | UpdateKind::Failed)
    }
}

impl Execution {
    /// The updates an ended execution's subscribers get when its live ones are gone (expired,
    /// or never written because Redis was down): started, the whole answer as one chunk, the
    /// end. Empty while it has not ended.
    pub fn replay(&self) -> Vec<ExecutionUpdate> {
        match self.status {
            ExecutionStatus::Requested => vec![],
            ExecutionStatus::Finished => {
                let output = self.output.as_ref().expect("a finished execution has its output");
                vec![
                    ExecutionUpdate::started(),
                    ExecutionUpdate::chunk(&output.output),
                    ExecutionUpdate::finished(output),
                ]
            }
            ExecutionStatus::Failed => vec![
                ExecutionUpdate::started(),
                ExecutionUpdate::failed(self.error.as_deref().unwrap_or("failed")),
            ],
            ExecutionStatus::Cancelled => vec![ExecutionUpdate::started(), ExecutionUpdate::failed(CANCELLED)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{CardCommand, CardContent};
    use crate::given_when;
    use serde_json::json;

    fn card(archived: bool) -> PromptCard {
        let content = CardContent {
            title: "Greeting".into(),
            template: "Hello {{ name }}".into(),
            variables: vec![Variable {
                name: "name".into(),
                kind: VarType::String,
                description: None,
                required: true,
                default: None,
            }],
            config: Map::from_iter([("temperature".to_owned(), json!(0.2)), ("model".to_owned(), json!("x"))]),
            ..Default::default()
        };
        let created = PromptCard::default()
            .decide(CardCommand::Create {
                card_id: Uuid::from_u128(1),
                workspace_id: Uuid::from_u128(2),
                name: "greeting".into(),
                content,
            })
            .unwrap();
        let mut card = PromptCard::fold(&created);
        if archived {
            let events = card.decide(CardCommand::Archive).unwrap();
            card = events.iter().fold(card, PromptCard::evolve);
        }
        card
    }

    fn request(card: PromptCard) -> ExecutionRequest {
        ExecutionRequest {
            card,
            version: None,
            template: None,
            messages: None,
            variables: Map::from_iter([("name".to_owned(), json!("Ada"))]),
            provider: ProviderSpec {
                id: "echo".into(),
                config: Value::Null,
            },
        }
    }

    fn requested(request: ExecutionRequest) -> Result<Vec<ExecutionEvent>, DomainError> {
        given_when::<Execution>(
            &[],
            ExecutionCommand::Request {
                execution_id: Uuid::from_u128(9),
                request: Box::new(request),
            },
        )
    }

    #[test]
    fn a_version_is_rendered_with_its_config_under_the_provider() {
        let events = requested(request(card(false))).unwrap();
        let ExecutionEvent::ExecutionRequested { plan, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(plan.prompt, Rendered::Text("Hello Ada".into()));
        assert_eq!(plan.card_version, Some(1));
        assert_eq!(plan.provider.config, json!({"temperature": 0.2}));
    }

    #[test]
    fn an_unsaved_template_may_use_new_variables_but_not_skip_required_ones() {
        let mut r = request(card(false));
        r.template = Some("Bonjour {{ name }}, {{ mood }}".into());
        r.variables.insert("mood".into(), json!("happy"));
        let events = requested(r.clone()).unwrap();
        let ExecutionEvent::ExecutionRequested { plan, .. } = &events[0] else {
            panic!()
        };
        assert_eq!(
            (plan.card_version, &plan.prompt),
            (None, &Rendered::Text("Bonjour Ada, happy".into()))
        );
        r.variables.remove("name");
        let Err(DomainError::Invalid(problems)) = requested(r) else {
            panic!("a required variable is missing")
        };
        assert_eq!(problems[0].field, "variables.name");
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        assert!(matches!(requested(request(card(true))), Err(DomainError::Conflict(_))));
        let mut r = request(card(false));
        r.version = Some(7);
        r.provider.id = "gpt4".into();
        let Err(DomainError::Invalid(problems)) = requested(r) else {
            panic!()
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["provider", "version"]);
        let mut r = request(card(false));
        r.template = Some("x".into());
        r.messages = Some(vec![]);
        assert!(matches!(requested(r), Err(DomainError::Invalid(_))));
    }

    #[test]
    fn events_read_back_as_written() {
        let events = requested(request(card(false))).unwrap();
        for event in events {
            let encoded = crate::event::encode(&event);
            let decoded: ExecutionEvent =
                crate::event::decode(encoded.event_type, encoded.schema_version, encoded.data).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn an_execution_ends_once() {
        let given = requested(request(card(false))).unwrap();
        let cancelled = given_when::<Execution>(&given, ExecutionCommand::Cancel).unwrap();
        let all: Vec<ExecutionEvent> = given.iter().chain(&cancelled).cloned().collect();
        assert!(matches!(
            given_when::<Execution>(&all, ExecutionCommand::Fail { error: "x".into() }),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            given_when::<Execution>(&[], ExecutionCommand::Cancel),
            Err(DomainError::NotFound(_))
        ));
    }
}
