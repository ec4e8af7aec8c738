//! Analysis quality on the labeled set, and its interfaces: POST /api/analyze, evidence on
//! search hits, and `kizashi reanalyze` after a lexicon change (the index follows).
use crate::{enc, spawn_app_with, test_settings};
use kizashi::dictionaries::Dictionaries;
use kizashi::evaluate::{evidence_overlaps, parse_tsv, score};
use kizashi::pipeline::Pipeline;

/// Guards the numbers in BENCHMARKS.md: the test part is only measured, never tuned on.
#[test]
fn labeled_set_scores_and_evidence_overlap() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/eval/sentences.tsv"
    ))
    .unwrap();
    let rows = parse_tsv(&text).unwrap();
    let pipeline = Pipeline::new(&Dictionaries::builtin()).unwrap();
    for split in ["dev", "test"] {
        let mut pairs = Vec::new();
        let (mut gold, mut overlap) = (0, 0);
        for r in rows.iter().filter(|r| r.split == split) {
            let a = pipeline.analyze_text(&r.text).unwrap();
            let got = match &r.target {
                Some(t) => a
                    .targets
                    .iter()
                    .find(|x| &x.service == t)
                    .map(|x| x.label)
                    .unwrap_or(a.sentiment.label),
                None => a.sentiment.label,
            };
            pairs.push((r.label, got));
            if !r.evidence.is_empty() && got == r.label {
                gold += 1;
                overlap += usize::from(evidence_overlaps(&a.sentiment.evidence, &r.evidence));
            }
        }
        let s = score(&pairs);
        assert!(s.n > 200, "{split}: {s:?}");
        assert!(s.macro_f1 >= 0.75, "{split} 3-class macro-F1 {s:?}");
        assert!(s.posneg_macro_f1 >= 0.85, "{split} pos/neg macro-F1 {s:?}");
        assert!(
            overlap as f64 >= 0.85 * gold as f64,
            "{split}: evidence overlaps gold spans in {overlap} of {gold}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_api_evidence_on_hits_and_reanalyze_after_a_lexicon_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let app = spawn_app_with(test_settings(&path, &[]), Some(dir)).await;

    // POST /api/analyze: the `kizashi analyze` shape, at most 1,000 texts.
    let r = app
        .client
        .post(format!("{}/api/analyze", app.base))
        .json(&serde_json::json!({ "texts": ["PayPayは大丈夫だけど7payは怖い", "今日は晴れ"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let first = &v["results"][0];
    assert_eq!(first["text"], "PayPayは大丈夫だけど7payは怖い");
    assert_eq!(first["services"], serde_json::json!(["7pay", "paypay"]));
    let targets: Vec<(String, String)> = first["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["service"].as_str().unwrap().into(),
                t["label"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        targets.contains(&("paypay".into(), "positive".into())),
        "{targets:?}"
    );
    assert!(
        targets.contains(&("7pay".into(), "negative".into())),
        "{targets:?}"
    );
    assert!(!first["sentiment"]["evidence"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(v["results"][1]["sentiment"]["label"], "neutral");
    let too_many = serde_json::json!({ "texts": vec!["x"; 1001] });
    let r = app
        .client
        .post(format!("{}/api/analyze", app.base))
        .json(&too_many)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(format!("{}/api/analyze", app.base))
        .body("{\"texts\": 3}")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Items scored with the built-in lexicon.
    let lines = [
        serde_json::json!({"url": "https://e.jp/1", "title": "メルペイの新機能", "body": "メルペイの新機能がエモい", "published_at": "2019-07-03T10:00:00+09:00", "source": "t", "kind": "social"}),
        serde_json::json!({"url": "https://e.jp/2", "title": "メルペイ", "body": "メルペイで支払った", "published_at": "2019-07-03T11:00:00+09:00", "source": "t", "kind": "social"}),
    ]
    .map(|l| l.to_string())
    .join("\n");
    let kizashi = |args: &[&str], dicts: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kizashi"));
        c.env("KIZASHI_DATA_DIR", &path)
            .env("KIZASHI_LOG", "warn")
            .current_dir(&path)
            .args(args);
        if let Some(d) = dicts {
            c.env("KIZASHI_DICTIONARIES_DIR", d);
        }
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        // `reanalyze` reads no input and may have exited already on a busy machine.
        if let Err(e) = child.stdin.take().unwrap().write_all(lines.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    kizashi(&["import", "-"], None);
    app.wait_indexed().await;
    let (_, body) = app
        .get_json(&format!("/api/search?q={}&evidence=1", enc("エモい")))
        .await;
    assert_eq!(body["hits"][0]["sentiment"]["label"], "positive", "{body}");
    assert!(
        body["hits"][0]["evidence"]["sentiment"]["evidence"]
            .to_string()
            .contains("エモい"),
        "{body}"
    );
    let (_, plain) = app
        .get_json(&format!("/api/search?q={}", enc("エモい")))
        .await;
    assert!(
        plain["hits"][0].get("evidence").is_none(),
        "evidence only on demand"
    );

    // The team decides エモい reads negative in their market: edit the lexicon, reanalyze.
    let dicts = tempfile::tempdir().unwrap();
    let lexicon = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dictionaries/sentiment.tsv"
    ))
    .unwrap()
    .replace("エモい\t0.6", "エモい\t-0.9");
    std::fs::write(dicts.path().join("sentiment.tsv"), lexicon).unwrap();
    let out = kizashi(&["reanalyze"], Some(dicts.path()));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        report["rescored"], 2,
        "every item had the old version: {out}"
    );
    // Running it again finds nothing to do; --since forces a rescore of recent items.
    let again: serde_json::Value =
        serde_json::from_str(kizashi(&["reanalyze"], Some(dicts.path())).trim()).unwrap();
    assert_eq!(again["rescored"], 0);
    let forced: serde_json::Value = serde_json::from_str(
        kizashi(
            &["reanalyze", "--since", "2019-07-03T10:30:00+09:00"],
            Some(dicts.path()),
        )
        .trim(),
    )
    .unwrap();
    assert_eq!(forced["rescored"], 1);
    app.wait_indexed().await;
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", enc("エモい")))
        .await;
    assert_eq!(
        body["hits"][0]["sentiment"]["label"], "negative",
        "the index followed: {body}"
    );
}
