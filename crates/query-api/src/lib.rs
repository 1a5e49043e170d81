//! The GraphQL query API: reads the read models (Postgres, Redis) and ClickHouse, and serves
//! live subscriptions fed by Redis pub/sub.

//!
//! Layout: one module per GraphQL area (`cards`, `prompts`, `comparisons`, `workspaces`, `runs`,
//! `analytics`, `audit`, `webhooks`, `alerts`),
//! each with its types and resolvers, merged in `schema`. The areas use the shared modules
//! (`context`, `pagination`, `access`, `errors`, `cache`, `freshness`, `metrics`, `money`);
//! the shared modules never use an area.

pub mod access;
pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod cache;
pub mod cards;
pub mod comparisons;
pub mod context;
pub mod errors;
pub mod executions;
mod exports;
pub use serving::freshness;
pub mod metrics;
pub mod money;
pub mod pagination;
pub mod prompts;
pub mod runs;
pub mod schema;
pub mod settings;
pub mod webhooks;
pub mod workspaces;

pub use context::AppState;
pub use settings::Settings;

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::{self, Either};
use futures::{SinkExt, StreamExt};
use schema::AppSchema;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

/// A request-level error (no field location), with its `extensions.code`.
fn error_response(error: async_graphql::Error) -> GraphQLResponse {
    let mut server_error = ServerError::new(error.message, None);
    server_error.extensions = error.extensions;
    async_graphql::Response::from_errors(vec![server_error]).into()
}

async fn graphql(
    State(app): State<(AppState, AppSchema)>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    graphql_response(
        app,
        peer.map(|axum::Extension(ConnectInfo(addr))| addr),
        headers,
        request,
    )
    .await
}

async fn graphql_response(
    app: (AppState, AppSchema),
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let (state, schema) = app;
    let request = request.into_inner();
    if request.query.len() > state.settings.max_query_bytes {
        return error_response(errors::bad_request(format!(
            "the query is longer than {} bytes",
            state.settings.max_query_bytes
        )))
        .into_response();
    }
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let access = match state.access_from_header(authorization).await {
        Ok(access) => access,
        Err(error) => return error_response(error).into_response(),
    };
    let address = peer.map_or_else(|| "anonymous".to_owned(), |addr| format!("ip:{}", addr.ip()));
    if let Err(error) = access.count_request(&state, &address) {
        // The whole request is refused: HTTP 429 with Retry-After, the GraphQL error inside.
        let retry_after = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("retryAfter"))
            .map(|v| v.to_string())
            .unwrap_or_else(|| "1".into());
        let mut response = error_response(error).into_response();
        *response.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
        if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        return response;
    }
    let mut min_position = None;
    if let Some(value) = headers.get("x-min-position") {
        let Some(position) = value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()) else {
            return error_response(errors::bad_request(
                "X-Min-Position must be a global position (an integer)",
            ))
            .into_response();
        };
        match state
            .freshness
            .wait_for(position, state.settings.min_position_wait)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return error_response(errors::error(
                    "STALE",
                    format!("the read models have not reached position {position} yet; retry shortly"),
                ))
                .into_response()
            }
            Err(error) => return error_response(errors::internal(error)).into_response(),
        }
        min_position = Some(freshness::MinPosition(position));
    }
    let operation = request.operation_name.clone().unwrap_or_else(|| "anonymous".into());
    let mut request = request;
    schema::add_request_data(&mut request.data, &state, access);
    if let Some(min_position) = min_position {
        request = request.data(min_position);
    }
    let started = Instant::now();
    let response = schema.execute(request).await;
    metrics::request_served(operation, started.elapsed());
    GraphQLResponse::from(response).into_response()
}

async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

/// graphql-transport-ws; the credential comes in `connection_init` as `{"Authorization": "Bearer ..."}`.
async fn websocket(
    State(app): State<(AppState, AppSchema)>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (state, schema) = app;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_websocket(socket, state, schema, protocol))
        .into_response()
}

/// How often a connection opened with an API key asks whether the key is still live. With
/// [`auth::keys::LIVENESS_TTL`] it bounds the time from a revocation to the close.
const KEY_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Serves one WebSocket. Messages to the client pass through a channel so that a connection
/// whose API key is revoked or expires can be sent a close frame (4403) and dropped with every
/// subscription on it.
async fn serve_websocket(socket: WebSocket, state: AppState, schema: AppSchema, protocol: GraphQLProtocol) {
    let (mut sink, from_client) = socket.split();
    let (to_client, mut outgoing) = futures::channel::mpsc::channel::<Message>(64);
    let (principal_tx, principal_rx) = tokio::sync::oneshot::channel::<access::Principal>();
    let init_state = state.clone();
    let serve = GraphQLWebSocket::new_with_pair(to_client, from_client, schema, protocol)
        .on_connection_init(move |payload| async move {
            let authorization = payload
                .get("Authorization")
                .or_else(|| payload.get("authorization"))
                .and_then(|v| v.as_str());
            let access = init_state.access_from_header(authorization).await?;
            if let Some(principal) = access.0 {
                let _ = principal_tx.send(principal);
            }
            let mut data = Data::default();
            schema::add_request_data(&mut data, &init_state, access);
            Ok(data)
        })
        .serve();
    let revoked = key_revoked(state, principal_rx);
    let forward = async move {
        tokio::pin!(revoked);
        loop {
            tokio::select! {
                message = outgoing.next() => {
                    let Some(message) = message else { break };
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
                () = &mut revoked => {
                    let close = CloseFrame {
                        code: 4403,
                        reason: "the API key was revoked or has expired".into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
            }
        }
    };
    // When the protocol ends first, what it queued (its own close frame) is still sent.
    if let Either::Left(((), forward)) = future::select(std::pin::pin!(serve), std::pin::pin!(forward)).await {
        forward.await;
    }
}

/// Completes once the connection's API key is no longer live; never for a user's token,
/// which is short-lived by itself.
async fn key_revoked(state: AppState, principal: tokio::sync::oneshot::Receiver<access::Principal>) {
    let Ok(access::Principal::ApiKey { key_id, .. }) = principal.await else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(KEY_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        match state.api_keys.still_live(key_id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(%key_id, "Closing a WebSocket whose API key was revoked or expired.");
                return;
            }
            // The store unreachable is no reason to drop every subscriber; the check repeats.
            Err(error) => tracing::warn!(%key_id, %error, "Checking an API key of an open WebSocket failed."),
        }
    }
}

/// The whole HTTP surface: GraphQL, GraphiQL, the WebSocket, and the ops endpoints.
pub fn router(state: AppState) -> Router {
    let schema = schema::build(&state);
    let readiness = service::readiness::Readiness::new()
        .with("postgres", service::readiness::postgres(state.pool.clone()))
        .with("redis", service::readiness::redis_client(state.redis_client.clone()))
        .with("clickhouse", service::readiness::clickhouse(state.clickhouse.clone()))
        .into_check();
    let prompts = state.prompts.clone();
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(websocket))
        .route("/v1/workspaces/{ws}/analytics/export", get(exports::analytics_csv))
        .with_state((state.clone(), schema))
        .merge(serving::rest::router().with_state(prompts))
        .merge(service::ops_router(readiness))
        .layer(service::cors::layer(&state.settings.cors_allowed_origins))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::extract::Request| {
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
}

pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(20)
            .acquire_timeout(Duration::from_secs(5))
            .connect(settings.database_url.expose())
            .await?;
        let listener = service::bind_without_nagle(settings.addr).await?;
        let state = AppState::new(pool, settings).await;
        Ok(Self {
            listener,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "Query API listening.");
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(service::shutdown_signal())
        .await?;
        Ok(())
    }
}
