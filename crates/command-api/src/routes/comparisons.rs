//! Comparisons: one request starts two runs of a card's cases, a baseline version and a
//! candidate version, on the same providers; the runner finishes the comparison when both end.

use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::runs::ProviderDto;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::card::PromptCard;
use domain::comparison::{Comparison, ComparisonCommand, ComparisonPlan, Promotion, Side};
use domain::run::{cases_to_run, CardRunRequest, ProviderSpec, RunCommand, TestRun};
use domain::test_case::TestCase;
use domain::{DomainError, FieldError, Permission};
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A side of a comparison: a card version, or a label naming one.
#[derive(Debug, Deserialize, ToSchema, Clone)]
#[serde(untagged)]
pub enum VersionRef {
    Version { version: u32 },
    Label { label: String },
}

#[derive(Debug, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct PromoteDto {
    /// The label to move to the candidate when it wins.
    pub label: String,
    /// How much more the candidate may cost than the baseline, as a fraction (0.1 = 10%);
    /// default 0.
    pub max_cost_increase: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestComparison {
    pub baseline: VersionRef,
    pub candidate: VersionRef,
    pub providers: Vec<ProviderDto>,
    /// How many times each case runs per provider on each side; default 1.
    pub repeat: Option<u32>,
    /// Defaults to every test case of the card.
    pub test_case_ids: Option<Vec<Uuid>>,
    /// Move a label to the candidate when it is significantly better and within the cost margin.
    pub promote: Option<PromoteDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComparisonQueued {
    pub comparison_id: Uuid,
    pub baseline_run_id: Uuid,
    pub candidate_run_id: Uuid,
}

/// What the load step reads: the card and the cases both runs snapshot.
struct ComparisonInputs {
    card: PromptCard,
    case_ids: Vec<Uuid>,
    cases: Vec<TestCase>,
}

fn resolve(card: &PromptCard, side: &VersionRef, field: &str) -> Result<(u32, Option<String>), DomainError> {
    match side {
        VersionRef::Version { version } => Ok((*version, None)),
        VersionRef::Label { label } => card
            .labels
            .get(label)
            .map(|version| (*version, Some(label.clone())))
            .ok_or_else(|| {
                DomainError::Invalid(vec![FieldError::new(field, format!("the card has no label {label:?}"))])
            }),
    }
}

/// Starts a comparison: both runs are requested in the same append as the comparison, so
/// either all three exist or none does.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompt-cards/{card}/comparisons", tag = "comparisons",
    request_body = RequestComparison,
    params(("ws" = Uuid, Path), ("card" = Uuid, Path)),
    responses((status = 202, body = Positioned<ComparisonQueued>, description = "both runs queued"),
        (status = 404), (status = 409), (status = 422)))]
pub async fn request_comparison(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<RequestComparison>,
) -> Result<Reply<ComparisonQueued>, ApiError> {
    let (comparison_id, baseline_run_id, candidate_run_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| {
        let card = l.in_workspace::<PromptCard>(card_id).await?.state;
        let case_ids = cases_to_run(&card, request.test_case_ids.clone());
        let mut cases = Vec::with_capacity(case_ids.len());
        for case_id in case_ids.iter().filter(|id| card.test_cases.contains(id)) {
            cases.push(l.in_workspace::<TestCase>(*case_id).await?.state);
        }
        Ok(ComparisonInputs { card, case_ids, cases })
    };
    let providers: Vec<ProviderSpec> = request.providers.iter().cloned().map(ProviderSpec::from).collect();
    let repeat = request.repeat.unwrap_or(1);
    state
        .execute(&ctx, access, StatusCode::ACCEPTED, load, |inputs| {
            let (baseline_version, baseline_label) = resolve(&inputs.card, &request.baseline, "baseline")?;
            let (candidate_version, candidate_label) = resolve(&inputs.card, &request.candidate, "candidate")?;
            let mut changes = Changes::default();
            let run = |run_id: Uuid, version: u32| RunCommand::RequestForCard {
                run_id,
                request: CardRunRequest {
                    card: inputs.card.clone(),
                    card_version: Some(version),
                    case_ids: inputs.case_ids.clone(),
                    cases: inputs.cases.clone(),
                    providers: providers.clone(),
                    repeat,
                    comparison_id: Some(comparison_id),
                },
            };
            let plan = ComparisonPlan {
                workspace_id,
                card_id,
                baseline: Side {
                    version: baseline_version,
                    label: baseline_label,
                    run_id: baseline_run_id,
                },
                candidate: Side {
                    version: candidate_version,
                    label: candidate_label,
                    run_id: candidate_run_id,
                },
                providers: providers.iter().map(|p| p.id.clone()).collect(),
                repeat,
                promote: request.promote.as_ref().map(|p| Promotion {
                    label: p.label.clone(),
                    max_cost_increase: p.max_cost_increase.unwrap_or(0.0),
                }),
            };
            changes.decide(
                comparison_id,
                &Loaded::<Comparison>::empty(),
                ComparisonCommand::Request { comparison_id, plan },
            )?;
            changes.decide(
                baseline_run_id,
                &Loaded::<TestRun>::empty(),
                run(baseline_run_id, baseline_version),
            )?;
            changes.decide(
                candidate_run_id,
                &Loaded::<TestRun>::empty(),
                run(candidate_run_id, candidate_version),
            )?;
            Ok((
                changes,
                ComparisonQueued {
                    comparison_id,
                    baseline_run_id,
                    candidate_run_id,
                },
            ))
        })
        .await
}
