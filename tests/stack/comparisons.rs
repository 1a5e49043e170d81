//! Comparisons, exports and the CI gate, as a team uses them against the running stack: two
//! versions of a card compared on the echo provider, the winner promoted, each export format
//! read back by a real parser, and `promptcards gate` exiting 0, 1 and 2.

use crate::support::{binary_path, eventually, Client, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;

const WORDS: [&str; 8] = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];

/// A card whose version 1 says each case's word (every case passes) and whose version 2 says
/// its length instead (every case fails), with `production` on version 2.
async fn card_with_a_bad_production_version(client: &Client) -> Uuid {
    let card = client.create_card("Compare").await;
    for word in WORDS {
        client.create_case(card, word).await;
    }
    update_card(client, card, "Say {{ word | length }} things.", 1).await;
    client
        .post(
            &format!("/prompt-cards/{card}/labels"),
            json!({ "label": "production", "version": 2 }),
        )
        .await;
    card
}

/// A new version of the card with `template`, over the same variable.
async fn update_card(client: &Client, card: Uuid, template: &str, expected_version: u32) {
    let body = json!({ "title": "Compare", "template": template,
        "variables": [{ "name": "word", "type": "string" }], "expected_version": expected_version });
    let updated = client
        .send(Method::PUT, &format!("/prompt-cards/{card}"), Some(body))
        .await;
    assert_eq!(updated.status(), 200, "{}", updated.text().await.unwrap());
}

async fn finished_comparison(client: &Client, query_api: &str, id: &str) -> Value {
    let query = "query($id: ID!) { comparison(id: $id) { id status baselineRunId candidateRunId verdict pValue
        baseline { results passed passRate low high tokens costUsd } candidate { results passed passRate low high }
        providers { provider verdict pValue baseline { passRate } candidate { passRate } }
        flips { testCaseId provider from to baselineOutput candidateOutput changedAssertions } flipCount
        promoted promotion { label promotedVersion reason } } }";
    eventually(Duration::from_secs(60), "the comparison completes", || async {
        let data = client.graphql(query_api, query, json!({ "id": id })).await;
        let comparison = data["comparison"].clone();
        (comparison["status"] == "COMPLETED").then_some(comparison)
    })
    .await
}

async fn export(client: &Client, path: &str) -> Vec<u8> {
    let response = client.send(Method::GET, path, None).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_comparison_finds_the_flips_promotes_the_winner_and_exports_in_every_format() {
    let stack = Stack::start().await;
    let query_api = stack.url("query-api");
    let client = stack.client().await;
    let card = card_with_a_bad_production_version(&client).await;

    let started = client
        .post(
            &format!("/prompt-cards/{card}/comparisons"),
            json!({ "baseline": { "label": "production" }, "candidate": { "version": 1 },
                "providers": ["echo"], "promote": { "label": "production" } }),
        )
        .await;
    let id = started["comparison_id"].as_str().unwrap().to_owned();
    let baseline_run = started["baseline_run_id"].as_str().unwrap().to_owned();
    let candidate_run = started["candidate_run_id"].as_str().unwrap().to_owned();
    let comparison = finished_comparison(&client, &query_api, &id).await;

    // 0 of 8 against 8 of 8: Fisher's exact p = 2 / C(16, 8).
    assert_eq!(comparison["verdict"], "CANDIDATE_BETTER", "{comparison}");
    let p = comparison["pValue"].as_f64().unwrap();
    assert!((p - 2.0 / 12870.0).abs() < 1e-9, "p = {p}");
    assert_eq!(comparison["baseline"]["passed"], 0);
    assert_eq!(comparison["candidate"]["passRate"], 1.0);
    // Wilson's interval for 8 of 8 is [0.6756, 1].
    let low = comparison["candidate"]["low"].as_f64().unwrap();
    assert!((low - 0.6756).abs() < 1e-4, "low = {low}");
    assert_eq!(comparison["flipCount"], 8);
    for flip in comparison["flips"].as_array().unwrap() {
        assert_eq!(
            (flip["from"].as_str(), flip["to"].as_str()),
            (Some("FAIL"), Some("PASS")),
            "{flip}"
        );
        assert_eq!(flip["changedAssertions"], json!(["contains"]));
        assert!(flip["baselineOutput"].as_str().unwrap().contains("things"), "{flip}");
    }
    assert_eq!(comparison["promoted"], true, "{comparison}");
    assert_eq!(comparison["promotion"]["promotedVersion"], 1);

    // The label moved to version 1 as an ordinary, audited move caused by the comparison.
    let history =
        "query($id: ID!) { promptCard(id: $id) { labels labelHistory { label version previousVersion causeId } } }";
    let card_now = eventually(Duration::from_secs(30), "the promotion is projected", || async {
        let data = client.graphql(&query_api, history, json!({ "id": card })).await;
        (data["promptCard"]["labels"]["production"] == 1).then(|| data["promptCard"].clone())
    })
    .await;
    let last = card_now["labelHistory"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        json!({ "label": "production", "version": 1, "previousVersion": 2, "causeId": id })
    );

    // The same two runs compared after the fact agree.
    let again = client
        .graphql(
            &query_api,
            "query($a: ID!, $b: ID!) { compareRuns(baselineRunId: $a, candidateRunId: $b) { id verdict pValue flipCount } }",
            json!({ "a": baseline_run, "b": candidate_run }),
        )
        .await;
    assert_eq!(again["compareRuns"]["verdict"], "CANDIDATE_BETTER");
    assert_eq!(again["compareRuns"]["flipCount"], 8);
    assert_eq!(again["compareRuns"]["pValue"], comparison["pValue"]);
    assert_eq!(again["compareRuns"]["id"], Value::Null);

    // Every export format, read back by a real parser, equals the run's results.
    let results = client
        .graphql(
            &query_api,
            "query($id: ID!) { testRun(id: $id) { results { testCaseId provider output passed } } }",
            json!({ "id": baseline_run }),
        )
        .await;
    let expected: BTreeSet<(String, String, String, bool)> = results["testRun"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["testCaseId"].as_str().unwrap().to_owned(),
                r["provider"].as_str().unwrap().to_owned(),
                r["output"].as_str().unwrap().to_owned(),
                r["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(expected.len(), 8);
    let run_export = |format: &str| format!("/runs/{baseline_run}/export?format={format}");

    let csv_bytes = export(&client, &run_export("csv")).await;
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let from_csv: BTreeSet<_> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            assert!(r[column("failed_assertions")].starts_with("contains: "), "{r:?}");
            (
                r[column("test_case_id")].to_owned(),
                r[column("provider")].to_owned(),
                r[column("output")].to_owned(),
                &r[column("passed")] == "true",
            )
        })
        .collect();
    assert_eq!(from_csv, expected);

    let jsonl = String::from_utf8(export(&client, &run_export("jsonl")).await).unwrap();
    let from_jsonl: BTreeSet<_> = jsonl
        .lines()
        .map(|line| {
            let r: Value = serde_json::from_str(line).unwrap();
            (
                r["test_case_id"].as_str().unwrap().to_owned(),
                r["provider"].as_str().unwrap().to_owned(),
                r["output"].as_str().unwrap().to_owned(),
                r["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(from_jsonl, expected);

    let junit = String::from_utf8(export(&client, &run_export("junit")).await).unwrap();
    let document = roxmltree::Document::parse(&junit).unwrap();
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(
        (root.attribute("tests"), root.attribute("failures")),
        (Some("8"), Some("8"))
    );
    let suite = root.children().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("tests"), Some("8"));
    let cases: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 8);
    let names: BTreeSet<_> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(names, WORDS.into_iter().collect());
    for case in &cases {
        assert_eq!(case.attribute("classname"), Some("echo"));
        assert!(case.attribute("time").unwrap().parse::<f64>().is_ok());
        let failure = case.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert!(
            failure.attribute("message").unwrap().starts_with("contains: "),
            "{junit}"
        );
    }

    let xlsx = export(&client, &run_export("xlsx")).await;
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx)).unwrap();
    let sheet = workbook.worksheet_range("results").unwrap();
    let rows: Vec<_> = sheet.rows().collect();
    assert_eq!(rows[0][0].to_string(), "test_case_id");
    let from_xlsx: BTreeSet<_> = rows[1..]
        .iter()
        .map(|r| {
            (
                r[0].to_string(),
                r[2].to_string(),
                r[10].to_string(),
                r[4] == calamine::Data::Bool(true),
            )
        })
        .collect();
    assert_eq!(from_xlsx, expected);

    let comparison_csv = export(&client, &format!("/comparisons/{id}/export?format=csv")).await;
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(comparison_csv.as_slice())
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 4, "overall and echo, each side");
    assert_eq!(
        (&rows[0][0], &rows[0][1], &rows[1][1]),
        ("overall", "baseline", "candidate")
    );
    let comparison_json: Value =
        serde_json::from_slice(&export(&client, &format!("/comparisons/{id}/export?format=json")).await).unwrap();
    assert_eq!(comparison_json["report"]["verdict"], "CANDIDATE_BETTER");
    assert_eq!(comparison_json["report"]["flips"].as_array().unwrap().len(), 8);

    // Analytics series as CSV, from ClickHouse: both runs' 16 results in today's bucket.
    let analytics = format!("/v1/workspaces/{}/analytics/export", client.workspace);
    let series = eventually(Duration::from_secs(30), "the results reach ClickHouse", || async {
        let response = client
            .get_at(
                &query_api,
                &format!("{analytics}?series=pass_rate&bucket=day&card_id={card}"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect();
        (rows.len() == 1 && &rows[0][1] == "16").then_some(rows)
    })
    .await;
    assert_eq!(&series[0][2], "8", "8 of 16 passed: {series:?}");
    let bad_series = client.get_at(&query_api, &format!("{analytics}?series=nope")).await;
    assert_eq!(bad_series.status(), 400);

    // Bad input is a 400 with a JSON error; a stranger sees nothing.
    let bad = client.send(Method::GET, &run_export("pdf"), None).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"], "bad_request");
    let stranger = stack.client().await;
    let their_view = stranger
        .get_at(&query_api, &format!("{analytics}?series=pass_rate"))
        .await;
    assert_eq!(their_view.status(), 404);
    for path in [run_export("csv"), format!("/comparisons/{id}/export?format=json")] {
        assert_eq!(stranger.send(Method::GET, &path, None).await.status(), 404, "{path}");
    }
    let theirs = stranger
        .send(
            Method::POST,
            &format!("/prompt-cards/{card}/comparisons"),
            Some(json!({ "baseline": { "version": 1 }, "candidate": { "version": 2 }, "providers": ["echo"] })),
        )
        .await;
    assert_eq!(theirs.status(), 404);
    let seen = stranger
        .graphql(
            &query_api,
            "query($id: ID!) { comparison(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(seen["comparison"], Value::Null);
}

/// Runs `promptcards gate` and returns its exit code and output.
async fn gate(client: &Client, api_key: &str, args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(binary_path("promptcards"))
        .arg("gate")
        .args(["--workspace", &client.workspace])
        .args(args)
        .env("PROMPTCARDS_API_URL", client.base())
        .env("PROMPTCARDS_API_KEY", api_key)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gate_passes_an_improvement_and_fails_a_regression_with_junit_for_ci() {
    let stack = Stack::start().await;
    let client = stack.client().await;
    let card = card_with_a_bad_production_version(&client).await.to_string();
    let key = client
        .post("/api-keys", json!({ "name": "ci", "role": "member" }))
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // A CI job gates a card made long before; this one was made a moment ago, so wait until
    // it is served by name with its production label, as the gate looks it up.
    eventually(Duration::from_secs(30), "the card is served by name", || async {
        let served = client
            .send(Method::GET, "/prompts/compare?label=production", None)
            .await;
        (served.status() == 200).then_some(())
    })
    .await;
    let junit = std::env::temp_dir().join(format!("gate-{}.xml", Uuid::new_v4()));
    let junit_arg = junit.to_str().unwrap();

    let (code, out) = gate(
        &client,
        &key,
        &[
            "--card",
            "compare", // the card by its name, as CI jobs name it
            "--candidate",
            "1",
            "--baseline",
            "production",
            "--providers",
            "echo",
            "--min-pass-rate",
            "0.9",
            "--junit",
            junit_arg,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("CANDIDATE_BETTER") && out.contains("gate: PASSED"),
        "{out}"
    );
    let report = std::fs::read_to_string(&junit).unwrap();
    let document = roxmltree::Document::parse(&report).unwrap();
    assert_eq!(document.root_element().attribute("failures"), Some("0"));
    std::fs::remove_file(&junit).unwrap();

    let (code, out) = gate(
        &client,
        &key,
        &[
            "--card",
            &card,
            "--candidate",
            "2",
            "--baseline",
            "1",
            "--providers",
            "echo",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("regression"), "{out}");

    // A pass rate below the threshold fails without a significant difference: version 3 is
    // as bad as version 2.
    update_card(&client, card.parse().unwrap(), "Say {{ word | length }} things!", 2).await;
    let (code, out) = gate(
        &client,
        &key,
        &[
            "--card",
            &card,
            "--candidate",
            "3",
            "--baseline",
            "2",
            "--providers",
            "echo",
            "--min-pass-rate",
            "0.5",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("NO_SIGNIFICANT_DIFFERENCE") && out.contains("below the minimum"),
        "{out}"
    );

    let (code, out) = gate(
        &client,
        &key,
        &[
            "--card",
            &card,
            "--candidate",
            "2",
            "--baseline",
            "2",
            "--providers",
            "echo",
        ],
    )
    .await;
    assert_eq!(code, 2, "the same version on both sides is refused: {out}");

    let (code, out) = gate(
        &client,
        "pc_not_a_key",
        &[
            "--card",
            &card,
            "--candidate",
            "1",
            "--baseline",
            "2",
            "--providers",
            "echo",
        ],
    )
    .await;
    assert_eq!(code, 2, "{out}");
}
