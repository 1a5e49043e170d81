//! Alert rules: what to watch and its bound. The deliverer's evaluator measures and fires.

use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::alert::{AlertKind, AlertRule, AlertRuleCommand, RuleSpec};
use domain::card::PromptCard;
use domain::Permission;
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKindDto {
    PassRateBelow,
    DailyCostAbove,
    LatencyP95Above,
}

impl From<AlertKindDto> for AlertKind {
    fn from(kind: AlertKindDto) -> Self {
        match kind {
            AlertKindDto::PassRateBelow => AlertKind::PassRateBelow,
            AlertKindDto::DailyCostAbove => AlertKind::DailyCostAbove,
            AlertKindDto::LatencyP95Above => AlertKind::LatencyP95Above,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlertRule {
    pub kind: AlertKindDto,
    /// `pass_rate_below`: the card (or give `label`, or both); otherwise narrows the figure to
    /// one card.
    pub card_id: Option<Uuid>,
    /// `pass_rate_below`: only runs of the version the label points at when they finish.
    pub label: Option<String>,
    /// `latency_p95_above`: the provider (required); `daily_cost_above`: narrows to one provider.
    pub provider: Option<String>,
    /// A pass rate from 0 to 1, a daily budget in USD, or a latency in milliseconds.
    pub threshold: f64,
    /// Runs measured over, for the pass rate and the latency; default 10.
    pub window_runs: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleReply {
    pub id: Uuid,
    pub kind: AlertKindDto,
    pub card_id: Option<Uuid>,
    pub label: Option<String>,
    pub provider: Option<String>,
    pub threshold: f64,
    pub window_runs: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleDeleted {
    pub id: Uuid,
    pub deleted: bool,
}

/// Creates an alert rule, evaluated whenever a run finishes and on a schedule.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/alert-rules", tag = "alerts", request_body = CreateAlertRule,
    params(("ws" = Uuid, Path)),
    responses((status = 201, body = Positioned<AlertRuleReply>), (status = 403), (status = 404), (status = 422)))]
pub async fn create_alert_rule(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<CreateAlertRule>,
) -> Result<Reply<AlertRuleReply>, ApiError> {
    let rule_id = Uuid::now_v7();
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    // A rule naming a card watches one of this workspace's.
    let load = async |l: Loader| match request.card_id {
        Some(card_id) => l.in_workspace::<PromptCard>(card_id).await.map(drop),
        None => Ok(()),
    };
    state
        .execute(&ctx, access, StatusCode::CREATED, load, |()| {
            let mut changes = Changes::default();
            let spec = RuleSpec {
                kind: request.kind.into(),
                card_id: request.card_id,
                label: request.label.clone(),
                provider: request.provider.clone(),
                threshold: request.threshold,
                threshold_micro_usd: None,
                window_runs: request.window_runs,
            };
            let command = AlertRuleCommand::Create {
                rule_id,
                workspace_id,
                spec,
            };
            let rule = changes.decide(rule_id, &Loaded::<AlertRule>::empty(), command)?;
            let spec = rule.spec.expect("a created rule has its spec");
            let answer = AlertRuleReply {
                id: rule_id,
                kind: request.kind,
                card_id: spec.card_id,
                label: spec.label,
                provider: spec.provider,
                threshold: spec.threshold,
                window_runs: spec.window_runs,
            };
            Ok((changes, answer))
        })
        .await
}

/// Deletes an alert rule; an alert it has firing is resolved.
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/alert-rules/{rule}", tag = "alerts",
    params(("ws" = Uuid, Path), ("rule" = Uuid, Path)),
    responses((status = 200, body = Positioned<AlertRuleDeleted>, description = "deleted"), (status = 403), (status = 404)))]
pub async fn delete_alert_rule(
    State(state): State<AppState>,
    Path((workspace_id, rule_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<AlertRuleDeleted>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| l.in_workspace::<AlertRule>(rule_id).await;
    state
        .execute(&ctx, access, StatusCode::OK, load, |rule| {
            let mut changes = Changes::default();
            changes.decide(rule_id, &rule, AlertRuleCommand::Delete)?;
            Ok((
                changes,
                AlertRuleDeleted {
                    id: rule_id,
                    deleted: true,
                },
            ))
        })
        .await
}
