//! `audit export`: every event of the workspace, and nothing of another.

use crate::support::*;
use event_store::EventStore;
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn audit_export_covers_the_workspace_and_nothing_else(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let (ours, theirs) = (Actor::new(), Actor::new());
    seed(&store, &ours, 3, 3).await;
    seed(&store, &theirs, 2, 2).await;
    let expected: Vec<_> = all_events(&store)
        .await
        .into_iter()
        .filter(|e| e.workspace_id == Some(ours.workspace_id))
        .collect();
    assert!(expected.len() > 20);
    let workspace = ours.workspace_id.to_string();

    let jsonl = promptcards(
        &pool,
        &["audit", "export", "--workspace", &workspace, "--format", "jsonl"],
    )
    .await
    .success();
    let records = jsonl.json_lines();
    assert_eq!(records.len(), expected.len());
    for (record, event) in records.iter().zip(&expected) {
        assert_eq!(record["event_id"], event.event_id.to_string());
        assert_eq!(record["workspace_id"], workspace);
        assert_eq!(record["actor_id"], ours.actor_id.to_string());
        assert_eq!(record["event_type"], event.event_type);
        assert_eq!(record["stream_id"], event.stream_id.to_string());
        assert_eq!(record["stream_type"], event.stream_type);
        assert_eq!(record["position"], event.position);
        assert_eq!(record["version"], event.version);
        assert_eq!(record["data"], event.data);
        let recorded_at: chrono::DateTime<chrono::Utc> = record["recorded_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(recorded_at, event.recorded_at);
    }

    let file = std::env::temp_dir().join(format!("audit-{}.csv", uuid::Uuid::new_v4().simple()));
    let csv = promptcards(
        &pool,
        &[
            "audit",
            "export",
            "--workspace",
            &workspace,
            "--format",
            "csv",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await
    .success();
    assert!(csv.stdout.is_empty(), "the export went to the file");
    assert!(
        csv.stderr.contains(&format!("{} events", expected.len())),
        "{}",
        csv.stderr
    );
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    for column in [
        "position",
        "recorded_at",
        "stream_type",
        "stream_id",
        "version",
        "event_type",
        "actor_id",
        "data",
    ] {
        assert!(header.iter().any(|h| h == column), "{column} missing from {header:?}");
    }
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(rows.len(), expected.len());
    for (row, event) in rows.iter().zip(&expected) {
        assert_eq!(&row[column("event_id")], event.event_id.to_string());
        assert_eq!(&row[column("workspace_id")], workspace);
        assert_eq!(&row[column("actor_id")], ours.actor_id.to_string());
        assert_eq!(&row[column("event_type")], event.event_type);
        let data: Value = serde_json::from_str(&row[column("data")]).unwrap();
        assert_eq!(data, event.data);
    }

    let since = promptcards(
        &pool,
        &[
            "audit",
            "export",
            "--workspace",
            &workspace,
            "--format",
            "jsonl",
            "--since",
            "2100-01-01",
        ],
    )
    .await
    .success();
    assert!(since.stdout.is_empty());
}
