//! End-to-end tests of `shopnet report`: the page `train` writes, `--split`, `--compare`,
//! bundles, and runs that cannot be drawn. Every page is parsed and checked against the
//! run's files and opened in headless Chromium (tests/common/report_check.rs). The other
//! families' pages are checked in their own tests (images, sentiment, cli's LastFM run).

mod common;

use std::fs;
use std::path::Path;

use common::report_check::{Report, check_binary, check_classes, check_common, open_in_browser};
use common::*;
use tempfile::TempDir;

fn gcn(dir: &Path, seed: &str) -> std::path::PathBuf {
    let seed = format!("train.seed={seed}");
    train(dir, &["--config", &config("gcn_cora.toml"), "--set", "train.epochs=20", "--set", &seed])
}

fn report(args: &[&str], dir: &Path) -> std::process::Output {
    let mut full = vec!["report"];
    full.extend_from_slice(args);
    shopnet(&full, dir)
}

#[test]
fn node_classification_report_splits_bundles_and_comparisons() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let run = gcn(d, "1");
    // Cora's Planetoid split: 1,000 test and 500 validation nodes, 7 classes.
    let page = check_common(&run, "gcn_cora");
    check_classes(&page, &run, Some(1000), 7);
    let misclassified = page.table("misclassified-table");
    assert!(!misclassified.is_empty() && misclassified.len() <= 24, "{}", misclassified.len());
    let ids = fs::read_to_string(repo().join("data/cora/nodes.csv")).unwrap();
    assert!(ids.contains(&misclassified[0][0]), "node ids are Cora's: {:?}", misclassified[0]);

    // The validation split, computed from the weights: 500 nodes, eval's accuracy.
    let val_page = d.join("val.html");
    let run_arg = run.to_str().unwrap();
    let output =
        report(&["--run", run_arg, "--split", "val", "--out", val_page.to_str().unwrap()], d);
    assert!(output.status.success(), "{}", stderr(&output));
    let val = Report::open(&val_page);
    let counts: usize = val
        .attributes(Some("confusion-table"), "td", "data-count")
        .iter()
        .map(|c| c.parse::<usize>().unwrap())
        .sum();
    assert_eq!(counts, 500);
    let eval = shopnet(&["eval", "--run", run_arg, "--split", "val"], d);
    let accuracy_line =
        stdout(&eval).lines().find(|l| l.starts_with("accuracy")).unwrap().to_string();
    let shown = val.table("metrics-table").into_iter().find(|r| r[0] == "accuracy").unwrap();
    assert!(accuracy_line.ends_with(&shown[1]), "eval {accuracy_line:?} vs page {shown:?}");

    // Two runs side by side.
    let other = gcn(d, "2");
    let comparison = d.join("comparison.html");
    let output = report(
        &["--compare", run_arg, other.to_str().unwrap(), "--out", comparison.to_str().unwrap()],
        d,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let page = Report::open(&comparison);
    let rows = page.table("comparison-table");
    assert_eq!(rows.len(), 2);
    let accuracy_column =
        page.texts("comparison-table", "th").iter().position(|h| h == "test_accuracy").unwrap();
    assert_eq!(rows[1][accuracy_column], format!("{:.4}", report_metric(&other, "test_accuracy")));
    assert_eq!(
        page.last_point("chart-val-loss", other.file_name().unwrap().to_str().unwrap()).0,
        20.0
    );
    open_in_browser(&comparison, "comparison");

    // A bundle: no training history, the same test metrics.
    let bundle = d.join("bundle");
    assert!(
        shopnet(&["export", "--run", run_arg, "--out", bundle.to_str().unwrap()], d)
            .status
            .success()
    );
    let bundle_page = d.join("bundle.html");
    let output =
        report(&["--run", bundle.to_str().unwrap(), "--out", bundle_page.to_str().unwrap()], d);
    assert!(output.status.success(), "{}", stderr(&output));
    let page = Report::open(&bundle_page);
    assert!(page.texts("training", ".note")[0].contains("bundle carries no training history"));
    let accuracy = page.table("metrics-table").into_iter().find(|r| r[0] == "accuracy").unwrap();
    assert_eq!(accuracy[1], format!("{:.4}", report_metric(&run, "test_accuracy")));
}

#[test]
fn a_run_without_epochs_gets_a_page_and_broken_runs_one_error_line() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let run = gcn(d, "1");
    // What a run killed in its first epoch leaves: its config, run.json, the initial state.
    let young = d.join("young");
    fs::create_dir(&young).unwrap();
    for file in ["config.toml", "run.json"] {
        fs::copy(run.join(file), young.join(file)).unwrap();
    }
    fs::write(young.join("state.json"), r#"{"epochs_done":0,"steps_done":0,"best_epoch":null,"best_value":null,"epochs_without_improvement":0,"finished":false}"#).unwrap();
    fs::write(young.join("metrics.csv"), "").unwrap();
    let output = report(&["--run", young.to_str().unwrap()], d);
    assert!(output.status.success(), "{}", stderr(&output));
    let page = Report::open(&young.join("report.html"));
    assert!(page.texts("training", ".note")[0].contains("No epoch has finished yet"));
    assert!(page.texts("metrics", ".note")[0].contains("no weights to evaluate"));
    assert!(page.has("overview") && page.has("config"));
    open_in_browser(&young.join("report.html"), "no_epochs");

    assert_user_error(&report(&["--run", "no/such/run"], d), "not a run directory or bundle");
    let corrupt = d.join("corrupt");
    fs::create_dir(&corrupt).unwrap();
    fs::copy(run.join("config.toml"), corrupt.join("config.toml")).unwrap();
    fs::write(corrupt.join("run.json"), "{ \"kind\": ").unwrap();
    assert_user_error(&report(&["--run", corrupt.to_str().unwrap()], d), "run.json");
    fs::write(run.join("metrics.csv"), "epoch,train_loss\n1,oops\n").unwrap();
    assert_user_error(&report(&["--run", run.to_str().unwrap()], d), "metrics.csv:2");
    // The report never overwrites what the run keeps.
    let config = run.join("config.toml");
    let target = ["--run", run.to_str().unwrap(), "--out", config.to_str().unwrap()];
    assert_user_error(&report(&target, d), "would overwrite");
}

#[test]
fn purchase_intent_report_draws_the_net_beside_the_cart_baseline() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    synth_events(d, 2000, 3);
    let run = train_on_events(d, "intent_synth.toml", &["--set", "train.epochs=2"]);
    let page = check_common(&run, "intent_synth");
    check_binary(&page, &run);
}
