use crate::support::{Client, Load, Stack};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Both APIs must answer within this long after the faulty service is back.
const APIS_BACK: Duration = Duration::from_secs(5);
/// Every consumer group must be at the topic's end within this long after recovery.
const CONSUMERS_BACK: Duration = Duration::from_secs(30);

pub fn long() -> bool {
    std::env::var("FAULTS_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Commands acknowledged in each phase of load (before, during and after the fault).
fn phase() -> usize {
    if long() {
        400
    } else {
        40
    }
}

/// How long a backing service stays away.
pub fn outage() -> Duration {
    if long() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(2)
    }
}

/// `deploy/local/service ACTION NAME`: the operator's way to stop, kill or start a service.
pub fn service(action: &str, name: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/service");
    let output = Command::new(script).args([action, name]).output().unwrap();
    assert!(
        output.status.success(),
        "deploy/local/service {action} {name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

enum Fault {
    /// SIGKILL one of the stack's processes, then start it as `up` does.
    Process(&'static str),
    /// Stop a backing service (SIGKILL for the broker), keep it away a while, start it again.
    Service { name: &'static str, action: &'static str },
}

impl Fault {
    fn name(&self) -> String {
        match self {
            Fault::Process(name) => format!("SIGKILL {name}"),
            Fault::Service { name, action } => format!("{action} {name}"),
        }
    }
}

/// Runs the load through one fault and checks everything the matrix promises.
async fn survive(fault: Fault) {
    let mut stack = Stack::start().await;
    let clients: Vec<Client> = futures::future::join_all((0..4).map(|_| stack.client())).await;
    let load = Load::start(&clients);
    load.until_more(phase()).await;

    let mut during = None;
    match &fault {
        Fault::Process(name) => {
            stack.kill(name);
            if *name == "command-api" {
                // No command is accepted meanwhile: the outage is a while of refused commands.
                tokio::time::sleep(outage()).await;
            } else {
                // Commands keep being accepted while any other process is away.
                load.until_more(phase() / 2).await;
            }
            stack.start_process(name).await;
        }
        Fault::Service { name, action } => {
            service(action, name);
            let started = Instant::now();
            // Postgres holds the commands and the read models; without it nothing can answer.
            // Any other service away, the APIs must keep answering from Postgres.
            if *name != "postgres" {
                let (took, probe) = stack.apis_answer(&clients[0], APIS_BACK).await;
                during = Some((took, probe));
            }
            // The outage lasts a while whatever the probe took: that is the fault.
            tokio::time::sleep(outage().saturating_sub(started.elapsed())).await;
            service("start", name);
        }
    }
    let recovered = Instant::now();
    let (apis_back, probe) = stack.apis_answer(&clients[0], APIS_BACK).await;
    load.until_more(phase()).await;
    let mut acknowledged = load.stop().await;
    acknowledged.push(probe);
    acknowledged.extend(during.map(|(_, probe)| probe));
    let remaining = CONSUMERS_BACK.saturating_sub(recovered.elapsed());
    stack.drained(remaining).await;
    let consumers_back = recovered.elapsed();

    stack.assert_every_card_once(&acknowledged).await;
    stack.assert_projections_equal_the_store().await;
    for name in crate::support::PROCESSES {
        assert!(
            stack.is_running(name),
            "{name} died during the fault:\n{}",
            stack.log(name)
        );
    }
    let during = during
        .map(|(took, _)| format!(", answered in {took:?} during the outage"))
        .unwrap_or_default();
    eprintln!(
        "fault matrix: {}: {} commands acknowledged; APIs back {apis_back:?} after recovery{during}; \
         every consumer group at the topic's end {consumers_back:?} after recovery",
        fault.name(),
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn sigkill_of_the_relay() {
    survive(Fault::Process("relay")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn sigkill_of_the_projector() {
    survive(Fault::Process("projector")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn sigkill_of_the_runner() {
    survive(Fault::Process("runner")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn sigkill_of_the_deliverer() {
    survive(Fault::Process("deliverer")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn sigkill_of_the_command_api() {
    survive(Fault::Process("command-api")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn sigkill_of_the_query_api() {
    survive(Fault::Process("query-api")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn sigkill_of_the_broker() {
    survive(Fault::Service {
        name: "kafka",
        action: "kill",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn restart_of_redis() {
    survive(Fault::Service {
        name: "redis",
        action: "stop",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn restart_of_clickhouse() {
    survive(Fault::Service {
        name: "clickhouse",
        action: "stop",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn restart_of_postgres() {
    survive(Fault::Service {
        name: "postgres",
        action: "stop",
    })
    .await;
}
