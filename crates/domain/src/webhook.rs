//! Webhook endpoints of a workspace: where the deliverer sends what happened, which event types
//! it sends there, and whether it may. The signing secret is held sealed (encrypted by the
//! command API, opened only by the deliverer); this aggregate never sees it in the clear.

use crate::error::Problems;
use crate::{Aggregate, DomainError, Event};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The event types an endpoint can subscribe to, as deliveries name them in `type`.
pub mod event_types {
    pub const RUN_COMPLETED: &str = "run.completed";
    pub const RUN_FAILED: &str = "run.failed";
    /// Emitted once comparisons exist; accepted now so endpoints can subscribe ahead.
    pub const COMPARISON_COMPLETED: &str = "comparison.completed";
    pub const LABEL_MOVED: &str = "label.moved";
    pub const CARD_CREATED: &str = "card.created";
    pub const CARD_UPDATED: &str = "card.updated";
    pub const ALERT_FIRED: &str = "alert.fired";
    pub const ALERT_RESOLVED: &str = "alert.resolved";
    /// Subscribes to every type, including types added later.
    pub const ALL: &str = "*";

    /// Every type an endpoint may name, `*` aside.
    pub const KNOWN: [&str; 8] = [
        RUN_COMPLETED,
        RUN_FAILED,
        COMPARISON_COMPLETED,
        LABEL_MOVED,
        CARD_CREATED,
        CARD_UPDATED,
        ALERT_FIRED,
        ALERT_RESOLVED,
    ];
}

/// The longest URL an endpoint may have.
pub const MAX_URL_LEN: usize = 2_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Webhook {
    pub id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
    pub url: String,
    /// Event types sent, sorted; `["*"]` for all.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why the endpoint was disabled, when it is.
    pub disabled_reason: Option<String>,
    /// The signing secret as the command API sealed it.
    pub sealed_secret: String,
    pub deleted: bool,
}

impl Webhook {
    /// Whether deliveries of `event_type` go to this endpoint.
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_types::ALL || e == event_type)
    }

    /// Whether the endpoint exists and was not deleted.
    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.deleted
    }

    fn ensure_live(&self) -> Result<(), DomainError> {
        if !self.is_live() {
            return Err(DomainError::NotFound("webhook not found".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub enum WebhookCommand {
    /// `url` was checked at the boundary (parsed, and refused when it points inside).
    Create {
        webhook_id: Uuid,
        workspace_id: Uuid,
        url: String,
        events: Vec<String>,
        sealed_secret: String,
    },
    Update {
        url: Option<String>,
        events: Option<Vec<String>>,
        enabled: Option<bool>,
    },
    Delete,
    /// The deliverer gives up on an endpoint that has failed for too long.
    DisableFailing {
        reason: String,
    },
    /// Sends a delivery again, with the same `webhook-id`, whatever became of it.
    Redeliver {
        delivery_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum WebhookEvent {
    WebhookCreated {
        webhook_id: Uuid,
        workspace_id: Uuid,
        url: String,
        events: Vec<String>,
        sealed_secret: String,
    },
    /// Carries the url and the event types as they are after the change.
    WebhookUpdated {
        url: String,
        events: Vec<String>,
    },
    WebhookEnabled {},
    /// `automatic` when the deliverer disabled a failing endpoint, not an admin.
    WebhookDisabled {
        reason: String,
        automatic: bool,
    },
    WebhookDeleted {},
    WebhookRedeliveryRequested {
        delivery_id: Uuid,
    },
}

impl Event for WebhookEvent {
    fn event_type(&self) -> &'static str {
        match self {
            WebhookEvent::WebhookCreated { .. } => "WebhookCreated",
            WebhookEvent::WebhookUpdated { .. } => "WebhookUpdated",
            WebhookEvent::WebhookEnabled { .. } => "WebhookEnabled",
            WebhookEvent::WebhookDisabled { .. } => "WebhookDisabled",
            WebhookEvent::WebhookDeleted { .. } => "WebhookDeleted",
            WebhookEvent::WebhookRedeliveryRequested { .. } => "WebhookRedeliveryRequested",
        }
    }
}

/// The event types as stored: known names only, `*` alone, sorted, no repeats.
fn check_event_types(events: Vec<String>, problems: &mut Problems) -> Vec<String> {
    if events.is_empty() {
        problems.add("events", "name at least one event type, or \"*\" for all");
    }
    let mut checked = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let event = event.trim().to_owned();
        if event != event_types::ALL && !event_types::KNOWN.contains(&event.as_str()) {
            problems.add(
                format!("events[{i}]"),
                format!(
                    "{event:?} is not an event type; use \"*\" or some of {}",
                    event_types::KNOWN.join(", ")
                ),
            );
            continue;
        }
        checked.push(event);
    }
    checked.sort();
    checked.dedup();
    if checked.len() > 1 && checked.iter().any(|e| e == event_types::ALL) {
        problems.add("events", "\"*\" already names every event type; give it alone");
    }
    checked
}

/// The shape of a URL the deliverer can send to. Where it points is checked at the boundary,
/// which can resolve names.
fn check_url(url: &str, problems: &mut Problems) -> String {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        problems.add("url", "must be an http:// or https:// URL");
    } else if url.len() > MAX_URL_LEN {
        problems.add("url", format!("must be at most {MAX_URL_LEN} characters"));
    } else if url.chars().any(char::is_whitespace) {
        problems.add("url", "must not contain whitespace");
    }
    url.to_owned()
}

impl Aggregate for Webhook {
    const STREAM_TYPE: &'static str = crate::names::stream_types::WEBHOOK;
    type Command = WebhookCommand;
    type Event = WebhookEvent;

    fn decide(&self, command: WebhookCommand) -> Result<Vec<WebhookEvent>, DomainError> {
        match command {
            WebhookCommand::Create {
                webhook_id,
                workspace_id,
                url,
                events,
                sealed_secret,
            } => {
                if self.id.is_some() {
                    return Err(DomainError::Conflict("the webhook already exists".into()));
                }
                let mut problems = Problems::default();
                let url = check_url(&url, &mut problems);
                let events = check_event_types(events, &mut problems);
                problems.into_result()?;
                Ok(vec![WebhookEvent::WebhookCreated {
                    webhook_id,
                    workspace_id,
                    url,
                    events,
                    sealed_secret,
                }])
            }
            WebhookCommand::Update { url, events, enabled } => {
                self.ensure_live()?;
                let mut problems = Problems::default();
                let url = url.map(|u| check_url(&u, &mut problems));
                let events = events.map(|e| check_event_types(e, &mut problems));
                problems.into_result()?;
                let mut changes = Vec::new();
                let url = url.unwrap_or_else(|| self.url.clone());
                let events = events.unwrap_or_else(|| self.events.clone());
                if url != self.url || events != self.events {
                    changes.push(WebhookEvent::WebhookUpdated { url, events });
                }
                match enabled {
                    Some(true) if !self.enabled => changes.push(WebhookEvent::WebhookEnabled {}),
                    Some(false) if self.enabled => changes.push(WebhookEvent::WebhookDisabled {
                        reason: "disabled by an admin".into(),
                        automatic: false,
                    }),
                    _ => {}
                }
                Ok(changes)
            }
            WebhookCommand::Delete => {
                self.ensure_live()?;
                Ok(vec![WebhookEvent::WebhookDeleted {}])
            }
            WebhookCommand::DisableFailing { reason } => {
                // An endpoint already disabled, or gone, has nothing left to disable.
                if !self.is_live() || !self.enabled {
                    return Ok(vec![]);
                }
                Ok(vec![WebhookEvent::WebhookDisabled {
                    reason,
                    automatic: true,
                }])
            }
            WebhookCommand::Redeliver { delivery_id } => {
                self.ensure_live()?;
                if !self.enabled {
                    return Err(DomainError::Conflict(
                        "the webhook is disabled; enable it before redelivering".into(),
                    ));
                }
                Ok(vec![WebhookEvent::WebhookRedeliveryRequested { delivery_id }])
            }
        }
    }

    fn evolve(mut self, event: &WebhookEvent) -> Self {
        match event {
            WebhookEvent::WebhookCreated {
                webhook_id,
                workspace_id,
                url,
                events,
                sealed_secret,
            } => {
                self.id = Some(*webhook_id);
                self.workspace_id = Some(*workspace_id);
                self.url = url.clone();
                self.events = events.clone();
                self.sealed_secret = sealed_secret.clone();
                self.enabled = true;
            }
            WebhookEvent::WebhookUpdated { url, events } => {
                self.url = url.clone();
                self.events = events.clone();
            }
            WebhookEvent::WebhookEnabled {} => {
                self.enabled = true;
                self.disabled_reason = None;
            }
            WebhookEvent::WebhookDisabled { reason, .. } => {
                self.enabled = false;
                self.disabled_reason = Some(reason.clone());
            }
            WebhookEvent::WebhookDeleted {} => self.deleted = true,
            WebhookEvent::WebhookRedeliveryRequested { .. } => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given_when;

    fn create(events: &[&str]) -> WebhookCommand {
        WebhookCommand::Create {
            webhook_id: Uuid::from_u128(1),
            workspace_id: Uuid::from_u128(2),
            url: " https://hooks.example.com/promptcards ".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            sealed_secret: "sealed".into(),
        }
    }

    fn created() -> Vec<WebhookEvent> {
        given_when::<Webhook>(&[], create(&["run.completed", "label.moved"])).unwrap()
    }

    #[test]
    fn an_endpoint_is_created_enabled_with_its_types_sorted() {
        let hook = Webhook::fold(&created());
        assert!(hook.enabled && hook.is_live());
        assert_eq!(hook.url, "https://hooks.example.com/promptcards");
        assert_eq!(hook.events, vec!["label.moved", "run.completed"]);
        assert!(hook.subscribes_to("run.completed"));
        assert!(!hook.subscribes_to("card.created"));
    }

    #[test]
    fn unknown_types_a_star_among_others_and_bad_urls_are_named() {
        let mut command = create(&["run.completed", "run.exploded", "*"]);
        if let WebhookCommand::Create { url, .. } = &mut command {
            *url = "ftp://example.com".into();
        }
        let Err(DomainError::Invalid(fields)) = given_when::<Webhook>(&[], command) else {
            panic!("expected invalid")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, vec!["url", "events[1]", "events"]);
    }

    #[test]
    fn the_star_subscribes_to_every_type_even_future_ones() {
        let hook = Webhook::fold(&given_when::<Webhook>(&[], create(&["*"])).unwrap());
        assert!(hook.subscribes_to("comparison.completed"));
        assert!(hook.subscribes_to("something.added.later"));
    }

    #[test]
    fn an_update_records_only_what_changed() {
        let given = created();
        let same = WebhookCommand::Update {
            url: Some("https://hooks.example.com/promptcards".into()),
            events: None,
            enabled: Some(true),
        };
        assert_eq!(given_when::<Webhook>(&given, same).unwrap(), vec![]);
        let disable = WebhookCommand::Update {
            url: None,
            events: Some(vec!["*".into()]),
            enabled: Some(false),
        };
        let events = given_when::<Webhook>(&given, disable).unwrap();
        let hook = Webhook::fold(given.iter().chain(&events));
        assert_eq!(hook.events, vec!["*"]);
        assert!(!hook.enabled);
        assert_eq!(hook.disabled_reason.as_deref(), Some("disabled by an admin"));
    }

    #[test]
    fn the_deliverer_disables_once_and_redelivery_needs_an_enabled_endpoint() {
        let given = created();
        let disable = || WebhookCommand::DisableFailing {
            reason: "failing since yesterday".into(),
        };
        let events = given_when::<Webhook>(&given, disable()).unwrap();
        assert_eq!(
            events,
            vec![WebhookEvent::WebhookDisabled {
                reason: "failing since yesterday".into(),
                automatic: true
            }]
        );
        let all: Vec<_> = given.iter().chain(&events).cloned().collect();
        assert_eq!(given_when::<Webhook>(&all, disable()).unwrap(), vec![]);
        let redeliver = WebhookCommand::Redeliver {
            delivery_id: Uuid::from_u128(9),
        };
        assert!(matches!(
            given_when::<Webhook>(&all, redeliver),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn a_deleted_endpoint_is_gone_for_commands() {
        let mut given = created();
        given.push(WebhookEvent::WebhookDeleted {});
        assert!(matches!(
            given_when::<Webhook>(&given, WebhookCommand::Delete),
            Err(DomainError::NotFound(_))
        ));
        assert_eq!(
            given_when::<Webhook>(&given, WebhookCommand::DisableFailing { reason: "x".into() }).unwrap(),
            vec![]
        );
    }
}
