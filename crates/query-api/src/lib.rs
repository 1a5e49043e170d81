//! The GraphQL query API: reads the read models (Postgres, Redis) and ClickHouse, and serves
//! live subscriptions fed by Redis pub/sub.

//!
//! Layout: one module per GraphQL area (`cards`, `workspaces`, `runs`, `analytics`, `audit`,
//! `webhooks`, `alerts`),
//! each with its types and resolvers, merged in `schema`. The areas use the shared modules
//! (`context`, `pagination`, `access`, `errors`, `cache`, `freshness`, `metrics`, `money`);
//! the shared modules never use an area.

pub mod access;
pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod cache;
pub mod cards;
pub mod context;
pub mod errors;
pub mod freshness;
pub mod metrics;
pub mod money;
pub mod pagination;
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
use axum::extract::{State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use schema::AppSchema;
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
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let (state, schema) = app;
    let request = request.into_inner();
    if request.query.len() > state.settings.max_query_bytes {
        return error_response(errors::bad_request(format!(
            "the query is longer than {} bytes",
            state.settings.max_query_bytes
        )));
    }
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let access = match state.access_from_header(authorization).await {
        Ok(access) => access,
        Err(error) => return error_response(error),
    };
    let mut min_position = None;
    if let Some(value) = headers.get("x-min-position") {
        let Some(position) = value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()) else {
            return error_response(errors::bad_request(
                "X-Min-Position must be a global position (an integer)",
            ));
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
            }
            Err(error) => return error_response(errors::internal(error)),
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
    response.into()
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
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let authorization = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|v| v.as_str());
                    let access = state.access_from_header(authorization).await?;
                    let mut data = Data::default();
                    schema::add_request_data(&mut data, &state, access);
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}

/// The whole HTTP surface: GraphQL, GraphiQL, the WebSocket, and the ops endpoints.
pub fn router(state: AppState) -> Router {
    let schema = schema::build(&state);
    let readiness = service::readiness::Readiness::new()
        .with("postgres", service::readiness::postgres(state.pool.clone()))
        .with("redis", service::readiness::redis_client(state.redis_client.clone()))
        .with("clickhouse", service::readiness::clickhouse(state.clickhouse.clone()))
        .into_check();
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(websocket))
        .with_state((state, schema))
        .merge(service::ops_router(readiness))
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
        let listener = tokio::net::TcpListener::bind(settings.addr).await?;
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
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(service::shutdown_signal())
            .await?;
        Ok(())
    }
}
