//! What applications are served: card names, chat messages, and a version rendered with the
//! values an application sends.

use crate::error::Problems;
use crate::template::{check_values, render, template_variables, Variable, MAX_TEMPLATE_CHARS};
use crate::{DomainError, FieldError};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::LazyLock;
use uuid::Uuid;

pub const MAX_MESSAGES: usize = 100;
pub const MAX_CONFIG_BYTES: usize = 20_000;
pub const MAX_NAME_CHARS: usize = 100;

static CARD_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9._-]{0,99}$").expect("valid regex"));

/// Who says a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

/// One message of a chat prompt; `content` is a template, or its rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

/// Whether a version is one text template or a list of chat messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptKind {
    Text,
    Chat,
}

impl PromptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::Text => "text",
            PromptKind::Chat => "chat",
        }
    }
}

/// A name a card can be served under: `^[a-z0-9][a-z0-9._-]{0,99}$`.
pub fn check_card_name(name: &str) -> Result<(), FieldError> {
    if CARD_NAME.is_match(name) {
        Ok(())
    } else {
        Err(FieldError::new(
            "name",
            format!("{name:?} must match ^[a-z0-9][a-z0-9._-]{{0,99}}$ (lower-case letters, digits, '.', '_', '-')"),
        ))
    }
}

/// The name a title suggests: ASCII letters and digits, lower-cased, every other run of
/// characters one '-', at most `max` characters; `prompt` when nothing is left. The same rule
/// is written in SQL by the migration that reserved the names of cards created before names
/// existed, so it keeps to ASCII, where both agree.
pub fn slug(title: &str, max: usize) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.truncate(max);
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "prompt".to_owned()
    } else {
        slug.to_owned()
    }
}

/// Candidate names for a card created without one, most wanted first: the title's slug, then
/// the slug with `-2`, `-3`, ... The caller takes the first one not yet reserved.
pub fn name_candidates(title: &str) -> impl Iterator<Item = String> {
    let base = slug(title, MAX_NAME_CHARS - 6);
    std::iter::once(base.clone()).chain((2..).map(move |n| format!("{base}-{n}")))
}

/// The name given to a card created before cards had names: its title's slug and the last 8
/// hex digits of its id (the random part of a v4 or v7 UUID), so cards of one title differ.
pub fn legacy_name(title: &str, card_id: Uuid) -> String {
    let id = card_id.simple().to_string();
    format!("{}-{}", slug(title, 80), &id[id.len() - 8..])
}

/// Checks a chat prompt: 1 to 100 messages, each content a template using only declared
/// variables.
pub(crate) fn check_messages(messages: &[ChatMessage], variables: &[Variable], problems: &mut Problems) {
    if messages.len() > MAX_MESSAGES {
        problems.add(
            "messages",
            format!("at most {MAX_MESSAGES} messages, got {}", messages.len()),
        );
    }
    let mut total = 0;
    for (i, message) in messages.iter().enumerate() {
        let field = format!("messages[{i}].content");
        let len = message.content.chars().count();
        total += len;
        if len == 0 {
            problems.add(field, "must not be empty");
            continue;
        }
        match template_variables(&message.content) {
            Err(error) => problems.add(field, format!("does not parse: {error}")),
            Ok(used) => {
                let undeclared: Vec<_> = used
                    .iter()
                    .filter(|name| !variables.iter().any(|v| &v.name == *name))
                    .map(String::as_str)
                    .collect();
                if !undeclared.is_empty() {
                    problems.add(field, format!("uses undeclared variables: {}", undeclared.join(", ")));
                }
            }
        }
    }
    if total > MAX_TEMPLATE_CHARS {
        problems.add("messages", format!("at most {MAX_TEMPLATE_CHARS} characters in all"));
    }
}

pub(crate) fn check_config(config: &Map<String, Value>, problems: &mut Problems) {
    let bytes = serde_json::to_string(config).map(|s| s.len()).unwrap_or(0);
    if bytes > MAX_CONFIG_BYTES {
        problems.add("config", format!("must be at most {MAX_CONFIG_BYTES} bytes of JSON"));
    }
}

/// A version rendered for an application: its text, or its messages with each content rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rendered {
    Text(String),
    Chat(Vec<ChatMessage>),
}

impl Rendered {
    /// One string for what takes one: the text, or the messages as a JSON array (the form
    /// promptfoo gives a chat prompt).
    pub fn to_prompt_string(&self) -> String {
        match self {
            Rendered::Text(text) => text.clone(),
            Rendered::Chat(messages) => serde_json::to_string(messages).expect("messages serialize"),
        }
    }
}

/// Renders a text template or chat messages with `values`, after checking them against the
/// declared variables: every unknown, mistyped or missing variable is named under `prefix`.
pub fn render_prompt(
    template: &str,
    messages: &[ChatMessage],
    variables: &[Variable],
    values: &Map<String, Value>,
    prefix: &str,
) -> Result<Rendered, DomainError> {
    let mut problems = Problems::default();
    check_values(variables, values, prefix, &mut problems);
    problems.into_result()?;
    let failed = |field: String, error: String| {
        DomainError::Invalid(vec![FieldError::new(field, format!("did not render: {error}"))])
    };
    if messages.is_empty() {
        return render(template, variables, values)
            .map(Rendered::Text)
            .map_err(|e| failed("template".into(), e));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            Ok(ChatMessage {
                role: message.role,
                content: render(&message.content, variables, values)
                    .map_err(|e| failed(format!("messages[{i}].content"), e))?,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Rendered::Chat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::VarType;

    #[test]
    fn names_are_slugs() {
        assert!(check_card_name("support-reply").is_ok());
        assert!(check_card_name("v1.2_x").is_ok());
        assert!(check_card_name("-x").is_err());
        assert!(check_card_name("Support").is_err());
        assert!(check_card_name(&"a".repeat(101)).is_err());
        assert_eq!(slug("  Support Reply: v2! ", 100), "support-reply-v2");
        assert_eq!(slug("Café crème", 100), "caf-cr-me");
        assert_eq!(slug("???", 100), "prompt");
        assert!(check_card_name(&slug(&"x ".repeat(300), 94)).is_ok());
        let mut candidates = name_candidates("Greeting");
        assert_eq!(candidates.next().unwrap(), "greeting");
        assert_eq!(candidates.next().unwrap(), "greeting-2");
    }

    #[test]
    fn legacy_names_keep_the_id_apart() {
        let id = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(legacy_name("Hello World", id), "hello-world-2e3f4a5b");
        assert!(check_card_name(&legacy_name(&"long title ".repeat(40), id)).is_ok());
    }

    #[test]
    fn chat_prompts_render_every_message_and_name_every_bad_value() {
        let variables = vec![
            Variable {
                name: "name".into(),
                kind: VarType::String,
                description: None,
                default: None,
                required: true,
            },
            Variable {
                name: "n".into(),
                kind: VarType::Number,
                description: None,
                default: Some(Value::from(1)),
                required: false,
            },
        ];
        let messages = vec![
            ChatMessage {
                role: ChatRole::System,
                content: "Count {{ n }}".into(),
            },
            ChatMessage {
                role: ChatRole::User,
                content: "I am {{ name }}".into(),
            },
        ];
        let mut values = Map::new();
        values.insert("name".into(), Value::from("Ada"));
        let rendered = render_prompt("", &messages, &variables, &values, "variables").unwrap();
        let Rendered::Chat(out) = rendered else {
            panic!("chat expected")
        };
        assert_eq!(out[0].content, "Count 1");
        assert_eq!(out[1].content, "I am Ada");

        let mut bad = Map::new();
        bad.insert("n".into(), Value::from("x"));
        bad.insert("other".into(), Value::from(1));
        let DomainError::Invalid(fields) = render_prompt("", &messages, &variables, &bad, "variables").unwrap_err()
        else {
            panic!("invalid expected")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["variables.n", "variables.other", "variables.name"]);
    }
}
