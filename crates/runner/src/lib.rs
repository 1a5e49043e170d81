//! The runner: executes requested test runs. For each pending (case, provider, repetition) it
//! renders the snapshotted template, calls the provider, grades the output with the domain's
//! assertions (calling grading models for model-graded ones, see [`grading`]) and records the
//! result on the run's stream. Results are appended in batches at
//! the run's expected version, and the aggregate records each slot at most once, so a runner
//! killed mid-run resumes without redoing or losing a result; a cancel stops further calls.

pub mod comparisons;
mod consumer;
mod executions;
pub mod grading;
pub mod instruments;

pub use consumer::RunRequests;

use assertions::Observation;
use domain::prompt::{ChatMessage, Rendered};
use domain::run::{GradingUsage, ResultKey, RunCommand, RunPlan, TestResult, TestRun};
use domain::template::render;
use domain::workspace::{ProviderKind, Workspace, WorkspaceCommand};
use domain::DomainError;
use event_store::{ExecuteError, Metadata, Repository};
use grading::{GraderResolver, GradingSettings, SettingsGraders};
use providers::{Credentials, Endpoint, Providers};
use service::sealing::Sealer;
use service::settings::{self, Kafka};
use service::{env_or, Secret};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub database_url: Secret,
    pub kafka: Kafka,
    /// Playground executions' live updates go through Redis.
    pub redis_url: Secret,
    pub group_id: String,
    /// Static group membership, so a restarted runner resumes at once (see `kafka::consumer_config`).
    pub instance_id: Option<String>,
    /// Runs executed at the same time.
    pub max_concurrent_runs: usize,
    /// Provider calls in flight per run (providers bound their own concurrency too).
    pub max_in_flight: usize,
    /// `PROVIDER_ENV_KEYS_DEFAULT`, default false: whether the environment's provider keys
    /// serve workspaces that set none of their own. Off, one tenant never spends another's
    /// (or the operator's) money.
    pub environment_keys: bool,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            addr: env_or("RUNNER_ADDR", "127.0.0.1:8083").parse()?,
            database_url: settings::database_url(),
            kafka: Kafka::from_env()?,
            redis_url: settings::redis_url(),
            group_id: env_or("RUNNER_GROUP", "promptcards-runner"),
            instance_id: kafka::instance_id_from_env(),
            max_concurrent_runs: env_or("RUNNER_MAX_RUNS", "4").parse()?,
            max_in_flight: env_or("RUNNER_MAX_IN_FLIGHT", "64").parse()?,
            environment_keys: env_or("PROVIDER_ENV_KEYS_DEFAULT", "false").parse()?,
        })
    }
}

/// How a run execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Completed {
        recorded: usize,
    },
    Cancelled {
        recorded: usize,
    },
    /// The run was already finished, failed or cancelled; nothing was called.
    AlreadyOver,
}

#[derive(Clone)]
pub struct Runner {
    repo: Repository,
    providers: Arc<Providers>,
    /// Chooses the grading models of model-graded assertions.
    graders: Arc<dyn GraderResolver>,
    max_in_flight: usize,
    /// Opens the workspaces' sealed provider keys.
    sealer: Option<Arc<Sealer>>,
    /// Whether the environment's keys serve providers a workspace set nothing for.
    environment_keys: bool,
    /// Where playground executions' live updates go; without it they are skipped.
    live: Option<service::redis::Lazy>,
}

/// Most results appended in one transaction.
const BATCH: usize = 500;
/// How long the appender gathers results before writing a partial batch, and how often it
/// checks for a cancel while results are slow to come.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
const CANCEL_CHECK: Duration = Duration::from_millis(250);

impl Runner {
    /// A runner whose graders are the providers' default grading models ([`GradingSettings`]'s
    /// defaults); see [`Runner::with_graders`].
    pub fn new(repo: Repository, providers: Arc<Providers>, max_in_flight: usize) -> Self {
        let graders = Arc::new(SettingsGraders::new(providers.clone(), GradingSettings::default()));
        Self {
            repo,
            providers,
            graders,
            max_in_flight: max_in_flight.max(1),
            sealer: None,
            environment_keys: true,
            live: None,
        }
    }

    /// Calls providers with each run's workspace credentials, opened with `sealer`; the
    /// environment's keys serve the rest only when `environment_keys` is set. Without this
    /// (tools, tests), the environment's keys serve every run.
    pub fn with_workspace_credentials(mut self, sealer: Arc<Sealer>, environment_keys: bool) -> Self {
        self.sealer = Some(sealer);
        self.environment_keys = environment_keys;
        self
    }

    /// The run's workspace's provider credentials, keys opened. A key that does not open is
    /// left out (and logged, without it), so the call fails naming the missing key.
    async fn credentials(&self, workspace_id: Uuid) -> anyhow::Result<Credentials> {
        let Some(sealer) = &self.sealer else {
            return Ok(Credentials::environment());
        };
        let workspace = self.repo.load::<Workspace>(workspace_id).await?.state;
        let mut credentials = Credentials {
            environment_keys: self.environment_keys,
            ..Credentials::default()
        };
        for (provider, own) in &workspace.provider_credentials {
            let api_key = own.api_key.as_ref().and_then(|sealed| {
                let context = service::sealing::provider_key_context(workspace_id, *provider);
                sealer
                    .open(sealed, &context)
                    .inspect_err(|error| {
                        tracing::warn!(%workspace_id, provider = provider.as_str(), %error, "A workspace's provider key does not open.");
                    })
                    .ok()
            });
            let endpoint = Some(Endpoint {
                base_url: own.base_url.clone(),
                api_key,
            });
            match provider {
                ProviderKind::OpenAi => credentials.openai = endpoint,
                ProviderKind::Anthropic => credentials.anthropic = endpoint,
                ProviderKind::Ollama => credentials.ollama = endpoint,
            }
        }
        Ok(credentials)
    }

    /// Streams playground executions' answers to their subscribers through `redis`.
    pub fn with_live_updates(mut self, redis: service::redis::Lazy) -> Self {
        self.live = Some(redis);
        self
    }

    /// Grades model-graded assertions with the graders `graders` chooses.
    pub fn with_graders(mut self, graders: Arc<dyn GraderResolver>) -> Self {
        self.graders = graders;
        self
    }

    /// Executes whatever the run still needs, then completes it. Safe to call again after a
    /// crash, or twice concurrently: recorded slots are skipped and appends are conditional.
    #[tracing::instrument(skip_all, fields(run_id = %run_id), err)]
    pub async fn execute(&self, run_id: Uuid) -> anyhow::Result<RunOutcome> {
        let loaded = self.repo.load::<TestRun>(run_id).await?;
        if loaded.state.id.is_none() || loaded.state.status.is_terminal() {
            return Ok(RunOutcome::AlreadyOver);
        }
        let plan = loaded.state.plan.clone().expect("a requested run has a plan");
        let pending = loaded.state.pending();
        let credentials = Arc::new(self.credentials(plan.workspace_id).await?);
        let cancelled = Arc::new(AtomicBool::new(false));
        let (results, receiver) = mpsc::channel::<TestResult>(BATCH * 2);
        let appender = tokio::spawn(append_results(
            self.repo.clone(),
            run_id,
            plan.workspace_id,
            receiver,
            cancelled.clone(),
        ));

        let slots = Arc::new(Semaphore::new(self.max_in_flight));
        let mut calls = tokio::task::JoinSet::new();
        for key in pending {
            let permit = slots.clone().acquire_owned().await?;
            if cancelled.load(Ordering::Relaxed) {
                break;
            }
            let (providers, graders, plan, results) = (
                self.providers.clone(),
                self.graders.clone(),
                plan.clone(),
                results.clone(),
            );
            let credentials = credentials.clone();
            calls.spawn(async move {
                let result = run_one_with(&providers, graders.as_ref(), &plan, key, &credentials).await;
                let _ = results.send(result).await;
                drop(permit);
            });
        }
        drop(results);
        while calls.join_next().await.is_some() {}
        let recorded = appender.await??;

        if cancelled.load(Ordering::Relaxed) {
            self.record_spend_of_run(run_id, plan.workspace_id).await?;
            return Ok(RunOutcome::Cancelled { recorded });
        }
        match self
            .decide_and_append(run_id, plan.workspace_id, RunCommand::Complete)
            .await
        {
            Ok(_) => {
                self.record_spend_of_run(run_id, plan.workspace_id).await?;
                Ok(RunOutcome::Completed { recorded })
            }
            Err(AppendOutcome::Refused(DomainError::Conflict(_))) => {
                let state = self.repo.load::<TestRun>(run_id).await?.state;
                if state.status == domain::run::RunStatus::Cancelled {
                    Ok(RunOutcome::Cancelled { recorded })
                } else {
                    anyhow::bail!(
                        "run {run_id} could not complete: {} of {} recorded",
                        state.completed(),
                        state.total()
                    )
                }
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Finishes the comparison the run is one side of, when both sides are over.
    pub async fn settle_comparison(
        &self,
        run_id: Uuid,
    ) -> anyhow::Result<Option<domain::comparison::ComparisonStatus>> {
        comparisons::settle(&self.repo, run_id).await
    }

    /// Counts what a run or an execution cost against its workspace's budget, once per run or
    /// execution (`source_id`).
    async fn record_spend(&self, source_id: Uuid, workspace_id: Uuid, micro_usd: u64) -> anyhow::Result<()> {
        if micro_usd == 0 {
            return Ok(());
        }
        let metadata = Metadata {
            workspace_id: Some(workspace_id),
            correlation_id: source_id,
            ..Default::default()
        };
        let command = WorkspaceCommand::RecordSpend {
            run_id: source_id,
            micro_usd,
        };
        self.repo
            .execute_retrying::<Workspace>(workspace_id, command, metadata)
            .await?;
        Ok(())
    }

    async fn record_spend_of_run(&self, run_id: Uuid, workspace_id: Uuid) -> anyhow::Result<()> {
        let micro_usd = self.repo.load::<TestRun>(run_id).await?.state.cost_micro_usd;
        self.record_spend(run_id, workspace_id, micro_usd).await
    }

    /// Loads the run, decides, and appends at the loaded version, retrying a lost race.
    async fn decide_and_append(
        &self,
        run_id: Uuid,
        workspace_id: Uuid,
        command: RunCommand,
    ) -> Result<usize, AppendOutcome> {
        decide_and_append(&self.repo, run_id, workspace_id, command).await
    }
}

/// Why recording did not happen.
#[derive(Debug)]
enum AppendOutcome {
    Refused(DomainError),
    Failed(anyhow::Error),
}

impl From<AppendOutcome> for anyhow::Error {
    fn from(outcome: AppendOutcome) -> Self {
        match outcome {
            AppendOutcome::Refused(e) => anyhow::anyhow!(e),
            AppendOutcome::Failed(e) => e,
        }
    }
}

async fn decide_and_append(
    repo: &Repository,
    run_id: Uuid,
    workspace_id: Uuid,
    command: RunCommand,
) -> Result<usize, AppendOutcome> {
    let metadata = Metadata {
        workspace_id: Some(workspace_id),
        correlation_id: run_id,
        ..Default::default()
    };
    // Someone else (a cancel, another runner) appending first makes it decide again.
    match repo.execute_retrying::<TestRun>(run_id, command, metadata).await {
        Ok(executed) => Ok(executed.events),
        Err(ExecuteError::Refused(refusal)) => Err(AppendOutcome::Refused(refusal)),
        Err(other) => Err(AppendOutcome::Failed(other.into())),
    }
}

/// Gathers results into batches and records them; stops taking results once the run is
/// cancelled. Returns how many results it recorded.
async fn append_results(
    repo: Repository,
    run_id: Uuid,
    workspace_id: Uuid,
    mut receiver: mpsc::Receiver<TestResult>,
    cancelled: Arc<AtomicBool>,
) -> anyhow::Result<usize> {
    let mut recorded = 0;
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_check = Instant::now();
    loop {
        let next = tokio::time::timeout(BATCH_WINDOW, receiver.recv()).await;
        let closed = matches!(next, Ok(None));
        if let Ok(Some(result)) = next {
            batch.push(result);
            if batch.len() < BATCH {
                continue;
            }
        }
        if !batch.is_empty() {
            let results = std::mem::take(&mut batch);
            let count = results.len();
            match decide_and_append(&repo, run_id, workspace_id, RunCommand::Record { results }).await {
                Ok(_) => {
                    recorded += count;
                    metrics::counter!("runner_results_recorded_total").increment(count as u64);
                }
                Err(AppendOutcome::Refused(DomainError::Conflict(_))) => {
                    cancelled.store(true, Ordering::Relaxed);
                    return Ok(recorded);
                }
                Err(other) => return Err(other.into()),
            }
        } else if last_check.elapsed() >= CANCEL_CHECK {
            last_check = Instant::now();
            let state = repo.load::<TestRun>(run_id).await?.state;
            if state.status.is_terminal() {
                cancelled.store(true, Ordering::Relaxed);
                return Ok(recorded);
            }
        }
        if closed {
            return Ok(recorded);
        }
    }
}

/// Renders, calls and grades one slot: all the work a result costs besides its append. Every
/// failure becomes a recorded error, never a crash. Public so the benchmark can time it.
pub async fn run_one(
    providers: &Providers,
    graders: &dyn GraderResolver,
    plan: &RunPlan,
    key: ResultKey,
) -> TestResult {
    run_one_with(providers, graders, plan, key, &Credentials::environment()).await
}

/// [`run_one`] with the run's workspace credentials.
pub async fn run_one_with(
    providers: &Providers,
    graders: &dyn GraderResolver,
    plan: &RunPlan,
    key: ResultKey,
    credentials: &Credentials,
) -> TestResult {
    let case = plan
        .cases
        .iter()
        .find(|c| c.case_id == key.case_id)
        .expect("keys come from the plan");
    let provider = plan
        .providers
        .iter()
        .find(|p| p.id == key.provider)
        .expect("keys come from the plan");
    let failed = |rendered_prompt: String, error: String, latency_ms: u64| TestResult {
        key: key.clone(),
        rendered_prompt,
        output: None,
        error: Some(error),
        latency_ms,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_micro_usd: 0,
        passed: false,
        score: 0.0,
        assertions: vec![],
        grading: GradingUsage::default(),
    };
    let rendered = if plan.messages.is_empty() {
        render(&plan.template, &plan.variables, &case.vars).map(Rendered::Text)
    } else {
        plan.messages
            .iter()
            .map(|m| {
                Ok(ChatMessage {
                    role: m.role,
                    content: render(&m.content, &plan.variables, &case.vars)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(Rendered::Chat)
    };
    let rendered = match rendered {
        Ok(rendered) => rendered,
        Err(error) => return failed(String::new(), format!("the template did not render: {error}"), 0),
    };
    // The version's config under the provider's own: the provider's settings win, and the
    // provider id names the model, so the version's `model` is for applications, not runs.
    let provider = &domain::run::with_card_config(provider, &plan.config);
    let prompt = rendered.to_prompt_string();
    let started = Instant::now();
    let answer = match &rendered {
        Rendered::Text(text) => providers.complete_with(provider, text, credentials).await,
        Rendered::Chat(messages) => providers.complete_chat_with(provider, messages, credentials).await,
    };
    let completion = match answer {
        Ok(completion) => completion,
        Err(error) => return failed(prompt, error.to_string(), started.elapsed().as_millis() as u64),
    };
    let latency_ms = completion.latency.as_millis() as u64;
    // None when the model's price is unknown, so a `cost` assertion can tell it from free.
    let cost = providers
        .prices()
        .cost(&provider.id, completion.prompt_tokens, completion.completion_tokens);
    let graded = grading::grade(
        graders,
        plan.workspace_id,
        credentials,
        &case.assertions,
        &Observation {
            output: &completion.output,
            vars: &case.vars,
            latency_ms,
            cost_micro_usd: cost,
        },
        &prompt,
    )
    .await;
    let cost_micro_usd = cost.unwrap_or(0);
    TestResult {
        key,
        rendered_prompt: prompt,
        output: Some(completion.output),
        error: None,
        latency_ms,
        prompt_tokens: completion.prompt_tokens,
        completion_tokens: completion.completion_tokens,
        cost_micro_usd,
        passed: graded.grade.passed,
        score: graded.grade.score,
        assertions: graded.grade.verdicts,
        grading: graded.usage,
    }
}
