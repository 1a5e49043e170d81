//! Alerts in GraphQL: `alerts` lists what fired (and whether it resolved), newest first, with
//! the figures that caused it; `alertRules` lists the rules and which are firing. Live, both
//! events arrive through the `workspaceEvents` subscription as `AlertFired` and `AlertResolved`.

use crate::context::{access, parse_id, state};
use crate::errors::{bad_request, internal};
use async_graphql::{Context, Enum, Json, Object, Result, ID};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum AlertStatus {
    Firing,
    Resolved,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertNode {
    pub alert_id: Uuid,
    pub rule_id: Uuid,
    pub workspace_id: Uuid,
    pub kind: String,
    pub threshold: f64,
    pub figure: Value,
    pub message: String,
    pub run_id: Option<Uuid>,
    pub fired_position: i64,
    pub fired_at: DateTime<Utc>,
    pub resolved_figure: Option<Value>,
    pub resolved_message: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

#[Object(name = "Alert")]
impl AlertNode {
    async fn id(&self) -> ID {
        ID(self.alert_id.to_string())
    }
    async fn rule_id(&self) -> ID {
        ID(self.rule_id.to_string())
    }
    async fn workspace_id(&self) -> ID {
        ID(self.workspace_id.to_string())
    }
    /// `pass_rate_below`, `daily_cost_above` or `latency_p95_above`.
    async fn kind(&self) -> &str {
        &self.kind
    }
    async fn status(&self) -> AlertStatus {
        match self.resolved_at {
            Some(_) => AlertStatus::Resolved,
            None => AlertStatus::Firing,
        }
    }
    /// The rule's bound: a pass rate (0 to 1), USD, or milliseconds.
    async fn threshold(&self) -> f64 {
        self.threshold
    }
    /// What crossed it: `{value, costMicroUsd, runs, results, passed, source}`.
    async fn figure(&self) -> Json<&Value> {
        Json(&self.figure)
    }
    async fn message(&self) -> &str {
        &self.message
    }
    /// The run whose end fired it, when a run did.
    async fn run_id(&self) -> Option<ID> {
        self.run_id.map(|id| ID(id.to_string()))
    }
    async fn fired_position(&self) -> i64 {
        self.fired_position
    }
    async fn fired_at(&self) -> DateTime<Utc> {
        self.fired_at
    }
    /// The figure back within bounds (null while firing, or when the rule was deleted).
    async fn resolved_figure(&self) -> Option<Json<&Value>> {
        self.resolved_figure.as_ref().map(Json)
    }
    async fn resolved_message(&self) -> Option<&str> {
        self.resolved_message.as_deref()
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.resolved_at
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRuleNode {
    pub rule_id: Uuid,
    pub workspace_id: Uuid,
    pub kind: String,
    pub card_id: Option<Uuid>,
    pub label: Option<String>,
    pub provider: Option<String>,
    pub threshold: f64,
    pub window_runs: Option<i32>,
    pub firing_alert_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[Object(name = "AlertRule")]
impl AlertRuleNode {
    async fn id(&self) -> ID {
        ID(self.rule_id.to_string())
    }
    async fn workspace_id(&self) -> ID {
        ID(self.workspace_id.to_string())
    }
    async fn kind(&self) -> &str {
        &self.kind
    }
    async fn card_id(&self) -> Option<ID> {
        self.card_id.map(|id| ID(id.to_string()))
    }
    async fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }
    async fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }
    async fn threshold(&self) -> f64 {
        self.threshold
    }
    async fn window_runs(&self) -> Option<i32> {
        self.window_runs
    }
    async fn firing(&self) -> bool {
        self.firing_alert_id.is_some()
    }
    /// The alert firing now, if one is.
    async fn firing_alert_id(&self) -> Option<ID> {
        self.firing_alert_id.map(|id| ID(id.to_string()))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
}

#[derive(Default)]
pub struct AlertsQuery;

#[Object]
impl AlertsQuery {
    /// Alerts of the workspace, newest first (at most `first`, default 50, up to 500),
    /// optionally only those firing or only those resolved.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        status: Option<AlertStatus>,
        first: Option<i32>,
    ) -> Result<Vec<AlertNode>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let limit = match first {
            None => 50,
            Some(n @ 1..=500) => n as i64,
            Some(_) => return Err(bad_request("first must be 1 to 500")),
        };
        let state = state(ctx);
        access(ctx).role_in(state, workspace_id).await?;
        sqlx::query_as(
            "SELECT alert_id, rule_id, workspace_id, kind, threshold, figure, message, run_id, fired_position,
                    fired_at, resolved_figure, resolved_message, resolved_at
             FROM read.alerts
             WHERE workspace_id = $1 AND ($2::boolean IS NULL OR (resolved_at IS NULL) = $2)
             ORDER BY fired_position DESC LIMIT $3",
        )
        .bind(workspace_id)
        .bind(status.map(|s| s == AlertStatus::Firing))
        .bind(limit)
        .fetch_all(&state.pool)
        .await
        .map_err(internal)
    }

    /// The workspace's alert rules, oldest first.
    async fn alert_rules(&self, ctx: &Context<'_>, workspace_id: ID) -> Result<Vec<AlertRuleNode>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let state = state(ctx);
        access(ctx).role_in(state, workspace_id).await?;
        sqlx::query_as(
            "SELECT rule_id, workspace_id, kind, card_id, label, provider, threshold, window_runs, firing_alert_id,
                    created_at
             FROM read.alert_rules WHERE workspace_id = $1 ORDER BY created_at, rule_id",
        )
        .bind(workspace_id)
        .fetch_all(&state.pool)
        .await
        .map_err(internal)
    }
}
