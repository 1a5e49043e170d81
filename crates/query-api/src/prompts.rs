//! Prompts served by name, in GraphQL: `prompt` and `renderPrompt`, answered by the same
//! `serving::Prompts` as the REST routes (memory, then Redis, then the read models).

use crate::context::{access, parse_id, state};
use crate::errors::{error, internal, not_found};
use crate::freshness::MinPosition;
use async_graphql::{Context, Json, Object, Result, SimpleObject, ID};
use serde_json::{Map, Value};
use serving::{Selector, ServeError, Served};
use std::sync::Arc;

/// A prompt as applications get it.
pub struct PromptNode(Arc<Served>);

#[Object(name = "Prompt")]
impl PromptNode {
    async fn id(&self) -> ID {
        ID(self.0.prompt.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.prompt.name
    }
    async fn version(&self) -> u32 {
        self.0.prompt.version
    }
    /// `text` or `chat`.
    #[graphql(name = "type")]
    async fn kind(&self) -> &'static str {
        self.0.prompt.kind.as_str()
    }
    async fn template(&self) -> Option<&str> {
        self.0.prompt.template.as_deref()
    }
    /// `[{role, content}]` for a chat prompt.
    async fn messages(&self) -> Option<Json<Value>> {
        self.0
            .prompt
            .messages
            .as_ref()
            .map(|m| Json(serde_json::to_value(m).unwrap_or_default()))
    }
    async fn variables(&self) -> Json<Value> {
        Json(serde_json::to_value(&self.0.prompt.variables).unwrap_or_default())
    }
    async fn config(&self) -> Json<&Map<String, Value>> {
        Json(&self.0.prompt.config)
    }
    async fn labels(&self) -> Json<&Map<String, Value>> {
        Json(&self.0.prompt.labels)
    }
    /// The global position of the card's last event this answer reflects.
    async fn position(&self) -> i64 {
        self.0.prompt.position
    }
    async fn etag(&self) -> String {
        self.0.etag()
    }
}

/// A prompt rendered: `text` for a text prompt, `messages` for a chat prompt.
#[derive(SimpleObject)]
pub struct RenderedPrompt {
    version: u32,
    #[graphql(name = "type")]
    kind: String,
    text: Option<String>,
    messages: Option<Json<Value>>,
}

fn graphql_error(failure: ServeError) -> async_graphql::Error {
    match failure {
        ServeError::Unauthorized(message) => error("UNAUTHENTICATED", message),
        ServeError::NotFound(message) => error("NOT_FOUND", message),
        ServeError::BadRequest(message) => error("BAD_REQUEST", message),
        ServeError::Stale(position) => error(
            "STALE",
            format!("the read models have not reached position {position} yet"),
        ),
        ServeError::Invalid(fields) => {
            let message = ServeError::Invalid(fields.clone()).to_string();
            async_graphql::ErrorExtensions::extend_with(async_graphql::Error::new(message), move |_, e| {
                e.set("code", "BAD_REQUEST");
                e.set(
                    "details",
                    async_graphql::Value::from_json(serde_json::json!(fields)).unwrap_or_default(),
                );
            })
        }
        ServeError::Internal(message) => internal(message),
    }
}

async fn fetch(
    ctx: &Context<'_>,
    workspace_id: &ID,
    name: &str,
    label: Option<String>,
    version: Option<u32>,
) -> Result<Option<Arc<Served>>> {
    let workspace_id = parse_id(workspace_id, "workspaceId")?;
    let principal = access(ctx).principal()?;
    let selector = Selector::new(label, version).map_err(graphql_error)?;
    let min_position = ctx.data_opt::<MinPosition>().map(|m| m.0);
    match state(ctx)
        .prompts
        .get(principal, workspace_id, name, &selector, min_position)
        .await
    {
        Ok(served) => Ok(Some(served)),
        // A prompt that is not there is null, as `promptCard` answers; a stranger's workspace
        // is NOT_FOUND.
        Err(ServeError::NotFound(message)) if message.starts_with("no prompt") => Ok(None),
        Err(error) => Err(graphql_error(error)),
    }
}

#[derive(Default)]
pub struct PromptsQuery;

#[Object]
impl PromptsQuery {
    /// A prompt by name: at `label`, or `version`; neither means the `production` label, else
    /// the latest version.
    async fn prompt(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        name: String,
        label: Option<String>,
        version: Option<u32>,
    ) -> Result<Option<PromptNode>> {
        Ok(fetch(ctx, &workspace_id, &name, label, version).await?.map(PromptNode))
    }

    /// A prompt rendered with `variables`; each missing, unknown or mistyped one is named in
    /// the error's `extensions.details`.
    async fn render_prompt(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        name: String,
        label: Option<String>,
        version: Option<u32>,
        variables: Option<Json<Map<String, Value>>>,
    ) -> Result<RenderedPrompt> {
        let served = fetch(ctx, &workspace_id, &name, label, version)
            .await?
            .ok_or_else(|| not_found("prompt"))?;
        let values = variables.map(|v| v.0).unwrap_or_default();
        let rendered = served.render(&values).map_err(graphql_error)?;
        let reply = serving::rest::RenderReply::of(&served, rendered);
        Ok(RenderedPrompt {
            version: reply.version,
            kind: reply.kind.as_str().to_owned(),
            text: reply.text,
            messages: reply
                .messages
                .map(|m| Json(serde_json::to_value(m).unwrap_or_default())),
        })
    }
}
