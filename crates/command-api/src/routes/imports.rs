//! Imports from other tools' formats.

use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Path, Yaml};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::card::{CardCommand, PromptCard};
use domain::names::card_name_scope;
use domain::prompt::{legacy_name, name_candidates};
use domain::run::ProviderSpec;
use domain::test_case::{CardFacts, TestCase, TestCaseCommand};
use domain::{promptfoo, DomainError, FieldError, Permission};
use event_store::{AppendError, Loaded};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// What an import created, in the config's order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportReply {
    pub cards: Vec<ImportedCardReply>,
    /// The config's providers, ready for a run request.
    #[schema(value_type = Vec<Object>)]
    pub providers: Vec<ProviderSpec>,
    /// Top-level keys skipped because they only steer promptfoo's CLI.
    pub ignored: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportedCardReply {
    pub id: Uuid,
    pub title: Option<String>,
    /// The name the card is served under, derived from its title.
    #[serde(default)]
    pub name: String,
    pub version: u32,
    pub test_case_ids: Vec<Uuid>,
}

/// Creates one card per prompt of a promptfoo config, each with the config's tests as test
/// cases in the config's order (`defaultTest` merged as promptfoo merges it), in one atomic
/// append. Anything the config holds that Promptcards cannot represent (javascript/python or
/// model-graded assertions, `file://` references, unknown keys) is a 422 listing every item.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/imports/promptfoo", tag = "imports",
    request_body(content = String, content_type = "application/yaml", description = "a promptfoo config"),
    params(("ws" = Uuid, Path)),
    responses((status = 201, body = Positioned<ImportReply>),
        (status = 400), (status = 403), (status = 404), (status = 415), (status = 422)))]
pub async fn import_promptfoo(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Yaml(config): Yaml,
) -> Result<Reply<ImportReply>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let scope = card_name_scope(workspace_id);
    // Names derived for the cards may be claimed by another creator first: derive them again.
    for attempt in 1.. {
        let result = state
            .try_execute(
                &ctx,
                access,
                StatusCode::CREATED,
                async |loader| free_names(&loader, &scope, &config).await,
                |names| decide_import(workspace_id, &config, &names),
            )
            .await?;
        return match result {
            Err(AppendError::Reserved { .. }) if attempt < 5 => continue,
            other => other.map_err(ApiError::from),
        };
    }
    unreachable!("the loop returns")
}

/// A free name for each card the config makes, in order: the title's slug, made unique among
/// the workspace's cards and the import's own.
async fn free_names(loader: &Loader, scope: &str, config: &Value) -> Result<Vec<String>, ApiError> {
    let Ok(import) = promptfoo::translate(config) else {
        // The decision reports what is wrong with the config.
        return Ok(vec![]);
    };
    let mut names: Vec<String> = Vec::new();
    for card in &import.cards {
        let mut chosen = None;
        for candidate in name_candidates(&card.content.title).take(100) {
            if !names.contains(&candidate) && loader.reservation(scope, &candidate).await?.is_none() {
                chosen = Some(candidate);
                break;
            }
        }
        names.push(chosen.unwrap_or_else(|| legacy_name(&card.content.title, Uuid::now_v7())));
    }
    Ok(names)
}

/// Decides every card and case of the config on new streams, reporting every invalid item.
fn decide_import(workspace_id: Uuid, config: &Value, names: &[String]) -> Result<(Changes, ImportReply), ApiError> {
    let import = promptfoo::translate(config)?;
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
    let mut changes = Changes::default();
    let mut cards = Vec::new();
    let scope = card_name_scope(workspace_id);
    for (i, card) in import.cards.iter().enumerate() {
        let card_id = Uuid::now_v7();
        let name = names
            .get(i)
            .cloned()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no name was chosen for imported card {i}")))?;
        changes.reserve(&scope, name.clone(), card_id);
        let command = CardCommand::Create {
            card_id,
            workspace_id,
            name: name.clone(),
            content: card.content.clone(),
        };
        // The card's creation and the attachment of each case are one append to its stream.
        let mut created = match Loaded::<PromptCard>::empty().decide(card_id, command) {
            Ok(created) => created,
            Err(error) => {
                note(card.locate(error))?;
                continue;
            }
        };
        let mut case_streams = Vec::new();
        let mut case_ids = Vec::new();
        for case in &card.cases {
            let case_id = Uuid::now_v7();
            let facts = CardFacts {
                card_id,
                workspace_id,
                variables: card.content.variables.clone(),
                archived: false,
            };
            let command = TestCaseCommand::Create {
                case_id,
                card: facts,
                content: case.content.clone(),
            };
            match Loaded::<TestCase>::empty().decide(case_id, command) {
                Ok(decided) => case_streams.push(decided.append),
                Err(error) => {
                    note(case.locate(error))?;
                    continue;
                }
            }
            created.then(CardCommand::AttachTestCase { case_id })?;
            case_ids.push(case_id);
        }
        // The card first, then its cases: the order the per-card route appends them in.
        cards.push(ImportedCardReply {
            id: card_id,
            title: created.state.current().map(|v| v.content.title.clone()),
            name,
            version: 1,
            test_case_ids: case_ids,
        });
        changes.push(created.append);
        case_streams.into_iter().for_each(|stream| changes.push(stream));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let answer = ImportReply {
        cards,
        providers: import.providers,
        ignored: import.ignored,
    };
    Ok((changes, answer))
}
