//! Grading with models: the I/O half of model-graded assertions. The `assertions` crate builds
//! the grading prompts and reads the answers; this module finds the grading model
//! ([`GraderResolver`], the one place a grader is chosen), calls it through `providers`, and
//! adds up what the graders used, apart from the tested call's tokens and cost.
//!
//! A grader that fails (unreachable, an HTTP error, a timeout) fails its assertion with the
//! error as reason; nothing here returns an error or panics.

use assertions::model_graded::{self, GraderKind, Grading, Message};
use assertions::{combine, outcome, Assertion, AssertionType, Grade, Observation, Outcome, Verdict};
use domain::run::{GradingUsage, ProviderSpec};
use futures::future::{join_all, BoxFuture};
use providers::{Credentials, GradingMessage, Providers};
use serde_json::{json, Value};
use service::env_or;
use std::sync::Arc;
use uuid::Uuid;

/// promptfoo 0.121's default grading models (its OpenAI defaults).
pub const DEFAULT_GRADING_PROVIDER: &str = "openai:chat:gpt-5.5-2026-04-23";
pub const DEFAULT_EMBEDDING_PROVIDER: &str = "openai:embedding:text-embedding-3-large";

/// The grading models used when an assertion names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradingSettings {
    /// `GRADING_PROVIDER`: the chat model grading `llm-rubric`, `model-graded-closedqa`,
    /// `factuality` and `g-eval`.
    pub default_provider: String,
    /// `GRADING_EMBEDDING_PROVIDER`: the embedding model of `similar`.
    pub default_embedding_provider: String,
}

impl Default for GradingSettings {
    fn default() -> Self {
        Self {
            default_provider: DEFAULT_GRADING_PROVIDER.into(),
            default_embedding_provider: DEFAULT_EMBEDDING_PROVIDER.into(),
        }
    }
}

impl GradingSettings {
    pub fn from_env() -> Self {
        Self {
            default_provider: env_or("GRADING_PROVIDER", DEFAULT_GRADING_PROVIDER),
            default_embedding_provider: env_or("GRADING_EMBEDDING_PROVIDER", DEFAULT_EMBEDDING_PROVIDER),
        }
    }
}

/// A grading model ready to call: which one, and the client (with its base URL and key) that
/// calls it.
#[derive(Clone)]
pub struct Grader {
    pub spec: ProviderSpec,
    pub providers: Arc<Providers>,
}

/// Chooses the grading model of a model-graded assertion: the one the assertion names
/// (`requested`, `openai:chat:<model>`, `openai:embedding:<model>`, ...), else the workspace's
/// default for `kind`. The one seam where per-workspace provider credentials plug in: an
/// implementation may return a `Providers` built from the workspace's base URL and key.
pub trait GraderResolver: Send + Sync {
    fn resolve(
        &self,
        workspace_id: Uuid,
        requested: Option<ProviderSpec>,
        kind: GraderKind,
    ) -> BoxFuture<'_, Result<Grader, String>>;
}

/// Resolves graders through the runner's own provider settings (`OPENAI_BASE_URL`,
/// `OPENAI_API_KEY`, ...) and [`GradingSettings`], the same for every workspace.
pub struct SettingsGraders {
    providers: Arc<Providers>,
    settings: GradingSettings,
}

impl SettingsGraders {
    pub fn new(providers: Arc<Providers>, settings: GradingSettings) -> Self {
        Self { providers, settings }
    }
}

impl GraderResolver for SettingsGraders {
    fn resolve(
        &self,
        _workspace_id: Uuid,
        requested: Option<ProviderSpec>,
        kind: GraderKind,
    ) -> BoxFuture<'_, Result<Grader, String>> {
        let spec = requested.unwrap_or_else(|| default_grader(&self.settings, kind));
        let grader = Grader {
            spec,
            providers: self.providers.clone(),
        };
        Box::pin(async move { Ok(grader) })
    }
}

/// The default grader of `kind`. As promptfoo's default `llm-rubric` grader, it is asked for a
/// JSON object when it is an OpenAI model.
fn default_grader(settings: &GradingSettings, kind: GraderKind) -> ProviderSpec {
    match kind {
        GraderKind::Embedding => ProviderSpec {
            id: settings.default_embedding_provider.clone(),
            config: Value::Null,
        },
        GraderKind::JsonChat if settings.default_provider.starts_with("openai:") => ProviderSpec {
            id: settings.default_provider.clone(),
            config: json!({ "response_format": { "type": "json_object" } }),
        },
        GraderKind::JsonChat | GraderKind::Chat => ProviderSpec {
            id: settings.default_provider.clone(),
            config: Value::Null,
        },
    }
}

/// A test's grade and what its graders used.
#[derive(Debug, Clone, PartialEq)]
pub struct Graded {
    pub grade: Grade,
    pub usage: GradingUsage,
}

/// Grades `assertions` as `assertions::grade` does, calling grading models for the
/// model-graded ones (concurrently). `prompt` is the prompt the tested provider was sent (the
/// question `factuality`, `model-graded-closedqa` and `g-eval` judge the answer to).
pub async fn grade(
    graders: &dyn GraderResolver,
    workspace_id: Uuid,
    credentials: &Credentials,
    assertions: &[Assertion],
    observation: &Observation<'_>,
    prompt: &str,
) -> Graded {
    let results = join_all(
        assertions
            .iter()
            .map(|assertion| grade_one(graders, workspace_id, credentials, assertion, observation, prompt)),
    )
    .await;
    let mut usage = GradingUsage::default();
    let outcomes: Vec<Outcome> = results
        .into_iter()
        .map(|(outcome, used)| {
            usage.add(used);
            outcome
        })
        .collect();
    Graded {
        grade: combine(assertions, outcomes),
        usage,
    }
}

async fn grade_one(
    graders: &dyn GraderResolver,
    workspace_id: Uuid,
    credentials: &Credentials,
    assertion: &Assertion,
    observation: &Observation<'_>,
    prompt: &str,
) -> (Outcome, GradingUsage) {
    let mut usage = GradingUsage::default();
    let kind = match assertion.assertion_type() {
        Ok(AssertionType { kind, .. }) if kind.is_model_graded() => kind,
        _ => return (outcome(assertion, observation), usage),
    };
    let grading = match model_graded::prepare(assertion, observation, prompt) {
        Ok(grading) => grading,
        Err(verdict) => return (Err(verdict), usage),
    };
    let requested = model_graded::requested_grader(assertion).map(|(id, config)| ProviderSpec { id, config });
    let grader = match graders
        .resolve(workspace_id, requested, model_graded::grader_kind(kind))
        .await
    {
        // Graders are called with the run's workspace credentials, as the tested provider is.
        Ok(grader) => (grader, credentials),
        Err(error) => return (Ok(model_graded::grader_failed(assertion, &error)), usage),
    };
    let verdict = match grading {
        Grading::Chat { messages } => match chat(&grader, &messages, &mut usage).await {
            Ok(answer) => model_graded::judge(assertion, &answer),
            Err(error) => model_graded::grader_failed(assertion, &error),
        },
        Grading::GEval { criteria } => {
            let mut results = Vec::new();
            for criterion in &criteria {
                let result = geval(&grader, assertion, criterion, prompt, observation.output, &mut usage).await;
                let failed = result.is_err();
                results.push(result);
                if failed {
                    break;
                }
            }
            model_graded::geval_verdict(assertion, &criteria, &results)
        }
        Grading::Similar { expected } => similar(&grader, assertion, &expected, observation.output, &mut usage).await,
    };
    (Ok(verdict), usage)
}

/// One chat call to the grader; its answer text, or the error as a reason.
async fn chat(
    (grader, credentials): &(Grader, &Credentials),
    messages: &[Message],
    usage: &mut GradingUsage,
) -> Result<String, String> {
    let messages: Vec<GradingMessage> = messages
        .iter()
        .map(|m| GradingMessage {
            role: m.role.clone(),
            content: m.content.clone(),
        })
        .collect();
    let completion = grader
        .providers
        .complete_messages(&grader.spec, &messages, credentials)
        .await
        .map_err(|e| e.to_string())?;
    usage.add(cost(grader, completion.prompt_tokens, completion.completion_tokens));
    Ok(completion.output)
}

async fn geval(
    grader: &(Grader, &Credentials),
    assertion: &Assertion,
    criterion: &str,
    prompt: &str,
    output: &str,
    usage: &mut GradingUsage,
) -> Result<(f64, String), String> {
    let steps_prompt = model_graded::geval_steps_messages(assertion, criterion)?;
    let steps = model_graded::parse_geval_steps(&chat(grader, &steps_prompt, usage).await?)?;
    let evaluate = model_graded::geval_evaluate_messages(assertion, criterion, &steps, prompt, output)?;
    model_graded::parse_geval_score(&chat(grader, &evaluate, usage).await?)
}

async fn similar(
    grader_and_credentials: &(Grader, &Credentials),
    assertion: &Assertion,
    expected: &[String],
    output: &str,
    usage: &mut GradingUsage,
) -> Verdict {
    let (grader, credentials) = grader_and_credentials;
    let texts = std::iter::once(output).chain(expected.iter().map(String::as_str));
    let embeddings = join_all(texts.map(|text| grader.providers.embed(&grader.spec, text, credentials))).await;
    let mut vectors = Vec::with_capacity(embeddings.len());
    for embedding in embeddings {
        match embedding {
            Ok(embedding) => {
                usage.add(cost(grader, embedding.prompt_tokens, 0));
                vectors.push(embedding.vector);
            }
            Err(error) => return model_graded::grader_failed(assertion, &error.to_string()),
        }
    }
    let (output, expected) = vectors.split_first().expect("the output's embedding comes first");
    let similarities: Vec<Result<f64, String>> = expected
        .iter()
        .map(|vector| model_graded::cosine(vector, output))
        .collect();
    model_graded::similar_verdict(assertion, &similarities)
}

/// A grader call's usage, priced. `openai:chat:<model>` is priced as `openai:<model>`.
fn cost(grader: &Grader, prompt_tokens: u32, completion_tokens: u32) -> GradingUsage {
    let id = &grader.spec.id;
    let priced = match id.strip_prefix("openai:chat:") {
        Some(model) => format!("openai:{model}"),
        None => id.clone(),
    };
    GradingUsage {
        grading_prompt_tokens: prompt_tokens,
        grading_completion_tokens: completion_tokens,
        grading_cost_micro_usd: grader
            .providers
            .prices()
            .cost_micro_usd(&priced, prompt_tokens, completion_tokens),
    }
}
