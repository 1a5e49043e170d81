//! The GraphQL schema of API.md: each area's queries and subscriptions merged into one root,
//! and the data every request adds to it. The field order of `Query` and `Subscription`
//! follows the order of the parts below.

use crate::access::Access;
use crate::alerts::AlertsQuery;
use crate::analytics::AnalyticsQuery;
use crate::audit::{AuditQuery, AuditSubscription};
use crate::cards::{CardsQuery, TestCasesByCard};
use crate::comparisons::{ComparisonsQuery, ComparisonsSubscription};
use crate::context::AppState;
use crate::executions::ExecutionsSubscription;
use crate::prompts::PromptsQuery;
use crate::runs::{RunsQuery, RunsSubscription};
use crate::webhooks::WebhooksQuery;
use crate::workspaces::WorkspacesQuery;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Data, EmptyMutation, MergedObject, MergedSubscription, Schema};

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    WorkspacesQuery,
    CardsQuery,
    AuditQuery,
    RunsQuery,
    AnalyticsQuery,
    ComparisonsQuery,
    PromptsQuery,
    WebhooksQuery,
    AlertsQuery,
);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(
    RunsSubscription,
    AuditSubscription,
    ComparisonsSubscription,
    ExecutionsSubscription,
);

pub type AppSchema = Schema<QueryRoot, EmptyMutation, SubscriptionRoot>;

/// The schema with the process's handles and the limits from its settings.
pub fn build(state: &AppState) -> AppSchema {
    Schema::build(QueryRoot::default(), EmptyMutation, SubscriptionRoot::default())
        .data(state.clone())
        .limit_depth(state.settings.max_depth)
        .limit_complexity(state.settings.max_complexity)
        .finish()
}

/// What one request or subscription connection adds: who is asking, and fresh loaders, so
/// batching never mixes the data of two callers.
pub fn add_request_data(data: &mut Data, state: &AppState, access: Access) {
    data.insert(access);
    data.insert(DataLoader::new(TestCasesByCard(state.pool.clone()), tokio::spawn));
}
