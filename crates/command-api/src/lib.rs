//! The command API: REST commands under `/v1`, OpenAPI at `/openapi.json`.

pub mod auth;
pub mod command;
pub mod context;
pub mod error;
pub mod extract;
pub mod instruments;
pub mod routes;
pub mod settings;
pub mod throttle;

pub use settings::{Secret, Settings};

use auth::TokenKeys;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use error::ApiError;
use event_store::{EventStore, Repository};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ::auth::API_KEY_SCOPE;

/// Handles shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub repo: Repository,
    pub tokens: Arc<TokenKeys>,
    /// API keys as their workspaces' streams record them, and their last use.
    pub api_keys: ::auth::ApiKeys,
    /// Requests per caller (user, API key or client address); checked on every command.
    pub limiter: Arc<service::rate_limit::RateLimiter>,
    /// Failed logins per email and per client address.
    pub login_throttle: Arc<throttle::LoginThrottle>,
    pub settings: Arc<Settings>,
    pub metrics: PrometheusHandle,
    /// Prompts served by name to applications (`serving`), from memory, Redis, the read models.
    pub prompts: serving::Prompts,
}

impl axum::extract::FromRef<AppState> for serving::Prompts {
    fn from_ref(state: &AppState) -> Self {
        state.prompts.clone()
    }
}

impl AppState {
    pub fn new(store: EventStore, settings: Settings) -> Self {
        let repo = Repository::new(store.clone(), 10_000);
        let tokens = Arc::new(TokenKeys::new(
            settings.jwt_secret.expose(),
            settings.access_token_ttl,
            settings.refresh_token_ttl,
        ));
        let api_keys = ::auth::ApiKeys::new(repo.clone());
        let prompts = serving::Prompts::start(
            store.pool().clone(),
            settings.redis_url.expose(),
            tokens.clone(),
            api_keys.clone(),
            serving::Freshness::start(store.pool().clone(), store.clone()),
            settings.min_position_wait,
        );
        Self {
            api_keys,
            repo,
            tokens,
            prompts,
            limiter: service::rate_limit::RateLimiter::new(settings.rate_limit_per_second, settings.rate_limit_burst),
            login_throttle: Arc::new(throttle::LoginThrottle::new(&settings)),
            settings: Arc::new(settings),
            metrics: service::metrics_handle(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Promptcards command API",
    description = "Commands on prompt cards, test cases and workspaces. Every 2xx that appended carries `position`, the global event position."
))]
struct ApiDoc;

/// The API's routes with their OpenAPI description, generated from the handlers.
fn api() -> OpenApiRouter<AppState> {
    use routes::{
        alerts, auth, cards, comparisons, executions, exports, imports, provider_credentials, runs, test_cases,
        webhooks, workspaces,
    };
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::signup))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::change_password))
        .routes(routes!(workspaces::create_workspace))
        .routes(routes!(workspaces::add_member))
        .routes(routes!(workspaces::change_member_role, workspaces::remove_member))
        .routes(routes!(workspaces::create_api_key, workspaces::list_api_keys))
        .routes(routes!(workspaces::revoke_api_key))
        .routes(routes!(cards::create_card))
        .routes(routes!(cards::update_card))
        .routes(routes!(cards::move_label))
        .routes(routes!(cards::archive_card))
        .routes(routes!(test_cases::create_test_case))
        .routes(routes!(test_cases::update_test_case, test_cases::delete_test_case))
        .routes(routes!(runs::request_run))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(comparisons::request_comparison))
        .routes(routes!(executions::request_execution))
        .routes(routes!(executions::cancel_execution))
        .routes(routes!(exports::export_run))
        .routes(routes!(exports::export_comparison))
        .routes(routes!(imports::import_promptfoo))
        .routes(routes!(serving::rest::get_prompt))
        .routes(routes!(serving::rest::render_prompt))
        .routes(routes!(provider_credentials::list_provider_credentials))
        .routes(routes!(
            provider_credentials::set_provider_credential,
            provider_credentials::remove_provider_credential
        ))
        .routes(routes!(
            provider_credentials::set_budget,
            provider_credentials::get_budget
        ))
        .routes(routes!(webhooks::create_webhook))
        .routes(routes!(webhooks::update_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(alerts::create_alert_rule))
        .routes(routes!(alerts::delete_alert_rule))
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The whole HTTP surface, ready to serve or to drive in tests.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api().split_for_parts();
    let openapi = Arc::new(openapi);
    api.route(
        "/openapi.json",
        get(move || async move { axum::Json(openapi.as_ref().clone()) }),
    )
    .route("/healthz", get(routes::health::healthz))
    .route("/readyz", get(routes::health::readyz))
    .route("/metrics", get(routes::health::metrics))
    // Unknown paths and methods get the same JSON error shape as every other failure.
    .fallback(|uri: Uri| async move { ApiError::NotFound(format!("no route for {}", uri.path())) })
    .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
        ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
    })
    .layer(middleware::from_fn_with_state(
        state.clone(),
        context::hash_idempotent_requests,
    ))
    .layer(middleware::from_fn(record_request_metrics))
    .layer(DefaultBodyLimit::max(state.settings.body_limit))
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(|request: &Request| {
                let path = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("unmatched");
                let request_id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let span = tracing::info_span!("request", method = %request.method(), path, request_id);
                // A caller that traces hands us its context; the request continues its trace.
                let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
                service::set_parent_from_traceparent(&span, header("traceparent"), header("tracestate"));
                span
            })
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
    )
    .layer(PropagateRequestIdLayer::x_request_id())
    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
    .layer(service::cors::layer(&state.settings.cors_allowed_origins))
    .with_state(state)
}

async fn record_request_metrics(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "path" => path,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// A bound listener and the app it serves.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Application {
    /// Connects to Postgres, applies migrations, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = EventStore::connect(settings.database_url.expose(), settings.database_max_connections).await?;
        store.migrate().await?;
        let listener = service::bind_without_nagle(settings.addr).await?;
        let state = AppState::new(store, settings);
        Ok(Self {
            listener,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM or Ctrl-C, finishing requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "Command API listening.");
        axum::serve(
            self.listener,
            self.router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(service::shutdown_signal())
        .await?;
        Ok(())
    }
}
