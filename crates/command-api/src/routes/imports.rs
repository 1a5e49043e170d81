//! Imports from other tools' formats.

use crate::command::{stream_of, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Path, Yaml};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::card::{CardCommand, PromptCard};
use domain::test_case::{CardFacts, TestCase, TestCaseCommand};
use domain::{promptfoo, Aggregate, DomainError, FieldError, Permission};
use event_store::Loaded;
use serde_json::json;
use uuid::Uuid;

/// Creates one card per prompt of a promptfoo config, each with the config's tests as test
/// cases in the config's order (`defaultTest` merged as promptfoo merges it), in one atomic
/// append. Anything the config holds that Promptcards cannot represent (javascript/python or
/// model-graded assertions, `file://` references, unknown keys) is a 422 listing every item.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/imports/promptfoo", tag = "imports",
    request_body(content = String, content_type = "application/yaml", description = "a promptfoo config"),
    params(("ws" = Uuid, Path)),
    responses((status = 201, description = "{cards: [{id, title, version, test_case_ids}], providers, ignored, position}"),
        (status = 400), (status = 403), (status = 404), (status = 415), (status = 422)))]
pub async fn import_promptfoo(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Yaml(config): Yaml,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::CREATED).await? {
        return Ok(reply);
    }
    let import = promptfoo::translate(&config)?;
    let mut problems: Vec<FieldError> = Vec::new();
    let mut note = |error: DomainError| -> Result<(), ApiError> {
        match error {
            DomainError::Invalid(fields) => {
                for field in fields {
                    if !problems.contains(&field) {
                        problems.push(field);
                    }
                }
                Ok(())
            }
            other => Err(other.into()),
        }
    };
    let mut streams = Vec::new();
    let mut cards = Vec::new();
    for card in &import.cards {
        let card_id = Uuid::now_v7();
        let empty_card = Loaded {
            state: PromptCard::default(),
            version: 0,
        };
        let created = empty_card.state.decide(CardCommand::Create {
            card_id,
            workspace_id,
            content: card.content.clone(),
        });
        let mut card_events = match created {
            Ok(events) => events,
            Err(error) => {
                note(card.locate(error))?;
                continue;
            }
        };
        let mut card_state = PromptCard::fold(&card_events);
        let mut case_streams = Vec::new();
        let mut case_ids = Vec::new();
        for case in &card.cases {
            let case_id = Uuid::now_v7();
            let empty_case = Loaded {
                state: TestCase::default(),
                version: 0,
            };
            let facts = CardFacts {
                card_id,
                workspace_id,
                variables: card.content.variables.clone(),
                archived: false,
            };
            let created = empty_case.state.decide(TestCaseCommand::Create {
                case_id,
                card: facts,
                content: case.content.clone(),
            });
            match created {
                Ok(events) => case_streams.push(stream_of(case_id, &empty_case, &events)),
                Err(error) => {
                    note(case.locate(error))?;
                    continue;
                }
            }
            let attached = card_state.decide(CardCommand::AttachTestCase { case_id })?;
            card_state = attached.iter().fold(card_state, |s, e| s.evolve(e));
            card_events.extend(attached);
            case_ids.push(case_id);
        }
        // The card first, then its cases: the order the per-card route appends them in.
        streams.push(stream_of(card_id, &empty_card, &card_events));
        streams.extend(case_streams);
        cards.push(json!({
            "id": card_id,
            "title": card_state.current().map(|v| v.content.title.clone()),
            "version": 1,
            "test_case_ids": case_ids,
        }));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    state
        .commit(
            &ctx,
            Some(workspace_id),
            streams,
            vec![],
            StatusCode::CREATED,
            json!({ "cards": cards, "providers": import.providers, "ignored": import.ignored }),
        )
        .await
}
