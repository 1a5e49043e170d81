//! Playground executions: the runner streams the provider's answer, hands each piece to the
//! execution's subscribers through a Redis stream (see [`domain::names::execution_updates_key`])
//! and records the outcome as an event. Redis carries only the live view: when it is away the
//! execution still runs and its outcome is still recorded, and subscribers get the outcome
//! from the event (see [`domain::execution::Execution::replay`]).
//!
//! A cancel is an event appended by the command API; the runner checks the execution's stream
//! while the answer arrives and, once it is cancelled, drops the call, which closes the
//! connection to the provider.

use crate::Runner;
use domain::execution::{Execution, ExecutionCommand, ExecutionOutput, ExecutionStatus, ExecutionUpdate, CANCELLED};
use domain::names::execution_updates_key;
use domain::DomainError;
use event_store::{ExecuteError, Metadata};
use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// How often a streaming execution checks whether it was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(100);
/// How long subscribers can replay an execution's live updates after it ended.
const UPDATES_TTL_SECONDS: i64 = 3_600;

impl Runner {
    /// Streams the execution's answer and records how it ended. Safe to call again after a
    /// crash (the execution starts over, and its subscribers see STARTED again) and for an
    /// execution already over (nothing is called).
    #[tracing::instrument(skip_all, fields(execution_id = %execution_id), err)]
    pub async fn run_execution(&self, execution_id: Uuid) -> anyhow::Result<ExecutionStatus> {
        let loaded = self.repo.load::<Execution>(execution_id).await?;
        let Some(plan) = loaded.state.plan.clone() else {
            return Ok(ExecutionStatus::Requested);
        };
        if loaded.state.status.is_terminal() {
            return Ok(loaded.state.status);
        }
        let credentials = self.credentials(plan.workspace_id).await?;
        let key = execution_updates_key(execution_id);
        let redis = self.live.as_ref().and_then(|lazy| lazy.get().cloned());
        let (updates, receiver) = mpsc::unbounded_channel::<ExecutionUpdate>();
        let writer = tokio::spawn(write_updates(redis, key, receiver));
        let _ = updates.send(ExecutionUpdate::started());

        let mut on_chunk = |text: &str| {
            let _ = updates.send(ExecutionUpdate::chunk(text));
        };
        let call = self
            .providers
            .stream_with(&plan.provider, &plan.prompt, &credentials, &mut on_chunk);
        let outcome = tokio::select! {
            outcome = call => Some(outcome),
            () = cancelled(self, execution_id) => None,
        };
        let command = match outcome {
            None => None,
            Some(Ok(streamed)) => {
                let c = &streamed.completion;
                Some(ExecutionCommand::Finish(ExecutionOutput {
                    output: c.output.clone(),
                    prompt_tokens: c.prompt_tokens,
                    completion_tokens: c.completion_tokens,
                    latency_ms: c.latency.as_millis() as u64,
                    first_token_ms: streamed.first_token.as_millis() as u64,
                    cost_micro_usd: self.providers.prices().cost(
                        &plan.provider.id,
                        c.prompt_tokens,
                        c.completion_tokens,
                    ),
                }))
            }
            Some(Err(error)) => Some(ExecutionCommand::Fail {
                error: error.to_string(),
            }),
        };
        let metadata = Metadata {
            workspace_id: Some(plan.workspace_id),
            correlation_id: execution_id,
            ..Default::default()
        };
        let ended = match command {
            Some(command) => self.end_execution(execution_id, command, metadata).await?,
            None => None,
        };
        let (status, last, cost) = match ended {
            Some(execution) => {
                let last = execution.replay().pop().expect("an ended execution replays its end");
                let cost = execution.output.as_ref().and_then(|o| o.cost_micro_usd);
                (execution.status, last, cost)
            }
            // Cancelled, before or while the answer came.
            None => (ExecutionStatus::Cancelled, ExecutionUpdate::failed(CANCELLED), None),
        };
        let _ = updates.send(last);
        drop(updates);
        let _ = writer.await;
        if let Some(cost) = cost {
            self.record_spend(execution_id, plan.workspace_id, cost.max(0) as u64)
                .await?;
        }
        Ok(status)
    }

    /// Appends the outcome; `None` when the execution was cancelled meanwhile.
    async fn end_execution(
        &self,
        execution_id: Uuid,
        command: ExecutionCommand,
        metadata: Metadata,
    ) -> anyhow::Result<Option<Execution>> {
        match self
            .repo
            .execute_retrying::<Execution>(execution_id, command, metadata)
            .await
        {
            Ok(executed) => Ok(Some(executed.state)),
            Err(ExecuteError::Refused(DomainError::Conflict(_))) => {
                let state = self.repo.load::<Execution>(execution_id).await?.state;
                Ok((state.status != ExecutionStatus::Cancelled).then_some(state))
            }
            Err(other) => Err(other.into()),
        }
    }
}

/// Ends once the execution is over by other hands (a cancel); never ends otherwise. A failed
/// read is not a cancel: the check is tried again.
async fn cancelled(runner: &Runner, execution_id: Uuid) {
    loop {
        tokio::time::sleep(CANCEL_CHECK).await;
        if let Ok(loaded) = runner.repo.load::<Execution>(execution_id).await {
            if loaded.state.status.is_terminal() {
                return;
            }
        }
    }
}

/// Appends updates to the execution's Redis stream in order, as many per round trip as are
/// waiting, after deleting what an earlier attempt wrote (a restarted execution begins its
/// updates again). Without Redis, or when it fails, updates are dropped: the outcome event is
/// what lasts.
async fn write_updates(
    redis: Option<ConnectionManager>,
    key: String,
    mut updates: mpsc::UnboundedReceiver<ExecutionUpdate>,
) {
    let Some(mut redis) = redis else {
        while updates.recv().await.is_some() {}
        return;
    };
    let mut first = true;
    let mut failing = false;
    while let Some(update) = updates.recv().await {
        let mut batch = vec![update];
        while let Ok(more) = updates.try_recv() {
            batch.push(more);
        }
        let mut pipe = redis::pipe();
        if std::mem::take(&mut first) {
            pipe.del(&key).ignore();
        }
        for update in &batch {
            let json = serde_json::to_string(update).expect("updates serialize");
            pipe.cmd("XADD").arg(&key).arg("*").arg("u").arg(json).ignore();
        }
        pipe.expire(&key, UPDATES_TTL_SECONDS).ignore();
        if let Err(error) = pipe.query_async::<()>(&mut redis).await {
            if !failing {
                tracing::warn!(%error, "Writing an execution's live updates to Redis failed; its outcome is still recorded.");
                failing = true;
            }
        }
    }
}
