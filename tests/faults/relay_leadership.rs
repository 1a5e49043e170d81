//! Two relays, one leader: through a Postgres restart (which ends the session holding the
//! advisory lock) and a SIGKILL of the leader, never do both publish in the same window, and
//! the topic ends up with every event.

use crate::matrix::{outage, service};
use crate::support::{eventually, Client, Load, Stack};
use std::time::Duration;

const RELAYS: [&str; 2] = ["relay", "relay-standby"];

/// Events each relay has published so far.
async fn published(stack: &Stack) -> [f64; 2] {
    [
        stack.metric(RELAYS[0], "relay_events_published_total").await,
        stack.metric(RELAYS[1], "relay_events_published_total").await,
    ]
}

/// While the load runs, the relays that published while `window` more commands were accepted
/// and published: exactly one may have.
async fn publishers_during(stack: &Stack, load: &Load, window: usize) -> Vec<&'static str> {
    let before = published(stack).await;
    load.until_more(window).await;
    // Each command is one event; wait until the window's worth has been published.
    eventually(Duration::from_secs(30), "the window's events are published", || async {
        // A killed relay answers no /metrics (0): count only what grew.
        let after = published(stack).await;
        let grown = (after[0] - before[0]).max(0.0) + (after[1] - before[1]).max(0.0);
        (grown >= window as f64).then_some(())
    })
    .await;
    let after = published(stack).await;
    RELAYS
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(_, (b, a))| a > *b)
        .map(|(name, _)| *name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's services; deploy/local/test runs it alone, after the rest"]
async fn two_relays_never_publish_at_once_through_a_postgres_restart_and_a_leader_kill() {
    let mut stack = Stack::start().await;
    stack.start_instance("relay-standby", "relay").await;
    let clients: Vec<Client> = futures::future::join_all((0..4).map(|_| stack.client())).await;
    let load = Load::start(&clients);

    let leaders = publishers_during(&stack, &load, 40).await;
    assert_eq!(leaders, ["relay"], "before any fault, only the first relay publishes");

    // Postgres restart: the lock's session ends, and whichever relay takes the lock next leads.
    service("stop", "postgres");
    tokio::time::sleep(outage()).await;
    service("start", "postgres");
    let mut probes = vec![stack.apis_answer(&clients[0], Duration::from_secs(5)).await.1];
    eventually(Duration::from_secs(10), "one relay leads again", || async {
        let leading = [
            stack.metric(RELAYS[0], "relay_leader").await,
            stack.metric(RELAYS[1], "relay_leader").await,
        ];
        (leading.iter().sum::<f64>() == 1.0).then_some(())
    })
    .await;
    let leaders = publishers_during(&stack, &load, 40).await;
    assert_eq!(
        leaders.len(),
        1,
        "after the Postgres restart these relays published in one window: {leaders:?}"
    );
    let leader = leaders[0];

    // SIGKILL of the leader: the standby takes over.
    stack.kill(leader);
    let leaders = publishers_during(&stack, &load, 40).await;
    let survivor = RELAYS.iter().find(|r| **r != leader).unwrap();
    assert_eq!(
        leaders,
        [*survivor],
        "after the leader's death the standby publishes, alone"
    );

    probes.push(stack.apis_answer(&clients[0], Duration::from_secs(5)).await.1);
    let mut acknowledged = load.stop().await;
    acknowledged.extend(probes);
    stack.drained(Duration::from_secs(30)).await;
    stack.assert_every_card_once(&acknowledged).await;
    stack.assert_projections_equal_the_store().await;
}
