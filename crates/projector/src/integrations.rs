//! The read models of what tells other systems what happened: webhook endpoints (never their
//! secrets), alert rules and the alerts they fired. Applied by [`crate::postgres::PostgresSink`]
//! inside its batch transaction, like every other read model.

use domain::alert::{AlertRuleEvent, RuleSpec};
use domain::webhook::WebhookEvent;
use event_store::RecordedEvent;
use sqlx::PgConnection;

pub(crate) async fn apply_webhook(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    hook: WebhookEvent,
) -> anyhow::Result<()> {
    let id = event.stream_id;
    let at = event.recorded_at;
    let statement = match hook {
        WebhookEvent::WebhookCreated {
            workspace_id,
            url,
            events,
            ..
        } => sqlx::query(
            "INSERT INTO webhooks (webhook_id, workspace_id, url, events, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, true, $5, $5)",
        )
        .bind(id)
        .bind(workspace_id)
        .bind(url)
        .bind(events)
        .bind(at),
        WebhookEvent::WebhookUpdated { url, events } => {
            sqlx::query("UPDATE webhooks SET url = $2, events = $3, updated_at = $4 WHERE webhook_id = $1")
                .bind(id)
                .bind(url)
                .bind(events)
                .bind(at)
        }
        WebhookEvent::WebhookEnabled {} => sqlx::query(
            "UPDATE webhooks SET enabled = true, disabled_reason = NULL, updated_at = $2 WHERE webhook_id = $1",
        )
        .bind(id)
        .bind(at),
        WebhookEvent::WebhookDisabled { reason, .. } => sqlx::query(
            "UPDATE webhooks SET enabled = false, disabled_reason = $2, updated_at = $3 WHERE webhook_id = $1",
        )
        .bind(id)
        .bind(reason)
        .bind(at),
        WebhookEvent::WebhookDeleted {} => sqlx::query("DELETE FROM webhooks WHERE webhook_id = $1").bind(id),
        // The deliverer acts on it; the endpoint itself does not change.
        WebhookEvent::WebhookRedeliveryRequested { .. } => return Ok(()),
    };
    statement.execute(&mut *tx).await?;
    Ok(())
}

pub(crate) async fn apply_alert_rule(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    rule: AlertRuleEvent,
) -> anyhow::Result<()> {
    let id = event.stream_id;
    let at = event.recorded_at;
    match rule {
        AlertRuleEvent::AlertRuleCreated { workspace_id, spec, .. } => {
            let RuleSpec {
                kind,
                card_id,
                label,
                provider,
                threshold,
                window_runs,
                ..
            } = spec;
            sqlx::query(
                "INSERT INTO alert_rules
                   (rule_id, workspace_id, kind, card_id, label, provider, threshold, window_runs, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .bind(id)
            .bind(workspace_id)
            .bind(kind.as_str())
            .bind(card_id)
            .bind(label)
            .bind(provider)
            .bind(threshold)
            .bind(window_runs.map(|w| w as i32))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        AlertRuleEvent::AlertRuleDeleted {} => {
            sqlx::query("DELETE FROM alert_rules WHERE rule_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        AlertRuleEvent::AlertFired {
            alert_id,
            spec,
            figure,
            run_id,
            message,
            ..
        } => {
            let workspace_id = event
                .workspace_id
                .ok_or_else(|| anyhow::anyhow!("AlertFired at position {} has no workspace", event.position))?;
            sqlx::query(
                "INSERT INTO alerts (alert_id, rule_id, workspace_id, kind, threshold, figure, message, run_id,
                                     fired_position, fired_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(alert_id)
            .bind(id)
            .bind(workspace_id)
            .bind(spec.kind.as_str())
            .bind(spec.threshold)
            .bind(serde_json::to_value(&figure)?)
            .bind(message)
            .bind(run_id)
            .bind(event.position)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE alert_rules SET firing_alert_id = $2, updated_at = $3 WHERE rule_id = $1")
                .bind(id)
                .bind(alert_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        AlertRuleEvent::AlertResolved {
            alert_id,
            figure,
            message,
            ..
        } => {
            sqlx::query(
                "UPDATE alerts SET resolved_figure = $2, resolved_message = $3, resolved_at = $4 WHERE alert_id = $1",
            )
            .bind(alert_id)
            .bind(figure.map(|f| serde_json::to_value(&f)).transpose()?)
            .bind(message)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE alert_rules SET firing_alert_id = NULL, updated_at = $2 WHERE rule_id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}
