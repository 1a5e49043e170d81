//! Webhook endpoints (admins only): register one, change or remove it, and ask for a delivery
//! to be sent again. The deliverer does the sending; these commands only record what an admin
//! decided.

use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::webhook::{Webhook, WebhookCommand};
use domain::Permission;
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use webhook::SigningSecret;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed. Addresses inside this network (loopback, private,
    /// link-local) are refused unless the operator allows them with `WEBHOOK_ALLOWED_CIDRS`.
    pub url: String,
    /// Some of `run.completed`, `run.failed`, `comparison.completed`, `label.moved`,
    /// `card.created`, `card.updated`, `alert.fired`, `alert.resolved`; or `["*"]` for all.
    pub events: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `false` stops deliveries (they wait); `true` resumes them, also after the deliverer
    /// disabled a failing endpoint.
    pub enabled: Option<bool>,
}

/// An endpoint after a command, as stored with the idempotency key: without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookReply {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
}

impl WebhookReply {
    fn of(id: Uuid, hook: &Webhook) -> Self {
        Self {
            id,
            url: hook.url.clone(),
            events: hook.events.clone(),
            enabled: hook.enabled,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookCreated {
    pub id: Uuid,
    /// `whsec_<base64>`: verify deliveries with it as the Standard Webhooks specification says.
    /// Shown once; it cannot be retrieved later.
    pub secret: String,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeleted {
    pub id: Uuid,
    pub deleted: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RedeliveryQueued {
    pub webhook_id: Uuid,
    pub delivery_id: Uuid,
}

/// Refuses a URL pointing inside this network, as a field error.
async fn check_target(state: &AppState, url: &str) -> Result<(), ApiError> {
    state
        .settings
        .webhook_targets
        .check_url(url)
        .await
        .map(drop)
        .map_err(|refused| ApiError::invalid("url", refused.to_string()))
}

/// Registers an endpoint. Its signing secret is in this response only.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/webhooks", tag = "webhooks", request_body = CreateWebhook,
    params(("ws" = Uuid, Path)),
    responses((status = 201, body = Positioned<WebhookCreated>), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<CreateWebhook>,
) -> Result<Reply<WebhookCreated>, ApiError> {
    let webhook_id = Uuid::now_v7();
    let secret = SigningSecret::generate();
    let sealed_secret = state.settings.webhook_keyring.seal(&secret, webhook_id);
    let access = Access::Workspace(workspace_id, Permission::ManageWebhooks);
    // After authorisation, so that nobody else makes this server resolve names.
    let load = async |_: Loader| check_target(&state, &request.url).await;
    let reply = state
        .execute(&ctx, access, StatusCode::CREATED, load, |()| {
            let mut changes = Changes::default();
            let command = WebhookCommand::Create {
                webhook_id,
                workspace_id,
                url: request.url.clone(),
                events: request.events.clone(),
                sealed_secret: sealed_secret.clone(),
            };
            let hook = changes.decide(webhook_id, &Loaded::<Webhook>::empty(), command)?;
            Ok((changes, WebhookReply::of(webhook_id, &hook)))
        })
        .await?;
    // A retried request must not show a secret again: the answer stored with the key has none.
    if reply.replayed {
        return Err(ApiError::Conflict {
            message: "this webhook was already created; its secret was shown once and cannot be shown again".into(),
            current_version: None,
        });
    }
    Ok(reply.map(|stored| WebhookCreated {
        id: stored.id,
        secret: secret.expose(),
        url: stored.url,
        events: stored.events,
        enabled: stored.enabled,
    }))
}

/// Changes an endpoint's URL, event types or whether it is enabled.
#[utoipa::path(patch, path = "/v1/workspaces/{ws}/webhooks/{webhook}", tag = "webhooks", request_body = UpdateWebhook,
    params(("ws" = Uuid, Path), ("webhook" = Uuid, Path)),
    responses((status = 200, body = Positioned<WebhookReply>), (status = 403), (status = 404), (status = 422)))]
pub async fn update_webhook(
    State(state): State<AppState>,
    Path((workspace_id, webhook_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<UpdateWebhook>,
) -> Result<Reply<WebhookReply>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::ManageWebhooks);
    let load = async |l: Loader| {
        let hook = l.in_workspace::<Webhook>(webhook_id).await?;
        if let Some(url) = &request.url {
            check_target(&state, url).await?;
        }
        Ok(hook)
    };
    state
        .execute(&ctx, access, StatusCode::OK, load, |hook| {
            let mut changes = Changes::default();
            let command = WebhookCommand::Update {
                url: request.url.clone(),
                events: request.events.clone(),
                enabled: request.enabled,
            };
            let hook = changes.decide(webhook_id, &hook, command)?;
            Ok((changes, WebhookReply::of(webhook_id, &hook)))
        })
        .await
}

/// Removes an endpoint; its deliveries still waiting are given up.
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/webhooks/{webhook}", tag = "webhooks",
    params(("ws" = Uuid, Path), ("webhook" = Uuid, Path)),
    responses((status = 200, body = Positioned<WebhookDeleted>, description = "deleted"), (status = 403), (status = 404)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Path((workspace_id, webhook_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<WebhookDeleted>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::ManageWebhooks);
    let load = async |l: Loader| l.in_workspace::<Webhook>(webhook_id).await;
    state
        .execute(&ctx, access, StatusCode::OK, load, |hook| {
            let mut changes = Changes::default();
            changes.decide(webhook_id, &hook, WebhookCommand::Delete)?;
            let answer = WebhookDeleted {
                id: webhook_id,
                deleted: true,
            };
            Ok((changes, answer))
        })
        .await
}

/// Sends a delivery again, with the same `webhook-id`, ahead of the endpoint's other deliveries.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/webhooks/{webhook}/deliveries/{delivery}/redeliver", tag = "webhooks",
    params(("ws" = Uuid, Path), ("webhook" = Uuid, Path), ("delivery" = Uuid, Path)),
    responses((status = 202, body = Positioned<RedeliveryQueued>, description = "queued"), (status = 403), (status = 404), (status = 409)))]
pub async fn redeliver(
    State(state): State<AppState>,
    Path((workspace_id, webhook_id, delivery_id)): Path<(Uuid, Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<RedeliveryQueued>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::ManageWebhooks);
    let load = async |l: Loader| {
        let hook = l.in_workspace::<Webhook>(webhook_id).await?;
        let owner = webhook::outbox::webhook_of(state.repo.store().pool(), delivery_id).await?;
        if owner != Some(webhook_id) {
            return Err(ApiError::NotFound("delivery not found".into()));
        }
        Ok(hook)
    };
    state
        .execute(&ctx, access, StatusCode::ACCEPTED, load, |hook| {
            let mut changes = Changes::default();
            changes.decide(webhook_id, &hook, WebhookCommand::Redeliver { delivery_id })?;
            Ok((
                changes,
                RedeliveryQueued {
                    webhook_id,
                    delivery_id,
                },
            ))
        })
        .await
}
