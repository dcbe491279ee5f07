//! End-to-end tests of the `shopnet` binary on real data (the built-in Cora, and the shared
//! LastFM and Taobao samples).
//!
//! The image family's tests are in tests/images.rs; the helpers both use, in tests/common.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use tempfile::TempDir;

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_file() {
            files.insert(entry.path(), fs::read(entry.path()).unwrap());
        }
    }
    files
}

#[test]
fn gcn_trains_evaluates_scores_exports_and_inspects_on_cora() {
    let dir = TempDir::new().unwrap();
    let run =
        train(dir.path(), &["--config", &config("gcn_cora.toml"), "--set", "train.epochs=60"]);
    for file in [
        "config.toml",
        "run.json",
        "best.safetensors",
        "last.safetensors",
        "metrics.csv",
        "metrics.jsonl",
        "report.json",
        "state.json",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let csv = fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        csv.starts_with(
            "epoch,lr,train_loss,val_loss,val_accuracy,val_macro_f1,train_seconds,seconds\n"
        ),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 61);
    // After 60 epochs a correct GCN is well above the 0.3 of the majority class.
    let test_accuracy = report_metric(&run, "test_accuracy");
    assert!(test_accuracy > 0.75, "test accuracy {test_accuracy}");

    let eval = shopnet(&["eval", "--run", run.to_str().unwrap(), "--split", "test"], dir.path());
    assert!(eval.status.success(), "{}", stderr(&eval));
    let table = stdout(&eval);
    let line = table.lines().find(|l| l.starts_with("accuracy")).unwrap();
    let evaluated: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((evaluated - test_accuracy).abs() < 1e-4, "{evaluated} vs {test_accuracy}");
    // eval refreshes its split in report.json and keeps the rest.
    report_metric(&run, "val_accuracy");

    let scores = dir.path().join("scores.csv");
    let score = shopnet(
        &[
            "score",
            "--run",
            run.to_str().unwrap(),
            "--input",
            "builtin:cora",
            "--output",
            scores.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(score.status.success(), "{}", stderr(&score));
    let text = fs::read_to_string(&scores).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "node_id,predicted,prob_0,prob_1,prob_2,prob_3,prob_4,prob_5,prob_6"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2708);
    for row in rows.iter().take(50) {
        let fields: Vec<&str> = row.split(',').collect();
        let probabilities: Vec<f64> = fields[2..].iter().map(|p| p.parse().unwrap()).collect();
        assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{row}");
        let best = probabilities.iter().cloned().fold(f64::MIN, f64::max);
        let predicted: usize = fields[1].parse().unwrap();
        assert_eq!(probabilities[predicted], best, "{row}");
    }

    let bundle = dir.path().join("bundle");
    let export = shopnet(
        &["export", "--run", run.to_str().unwrap(), "--out", bundle.to_str().unwrap()],
        dir.path(),
    );
    assert!(export.status.success(), "{}", stderr(&export));
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["model"]["kind"], "gcn");
    assert_eq!(manifest["model"]["labels"].as_array().unwrap().len(), 7);
    assert_eq!(manifest["files"]["model.safetensors"].as_str().unwrap().len(), 64);

    // A bundle scores like the run it came from.
    let bundle_scores = dir.path().join("bundle_scores.csv");
    let score = shopnet(
        &[
            "score",
            "--run",
            bundle.to_str().unwrap(),
            "--input",
            "builtin:cora",
            "--output",
            bundle_scores.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(score.status.success(), "{}", stderr(&score));
    assert_eq!(fs::read_to_string(&bundle_scores).unwrap(), text);

    let inspect = shopnet(&["inspect", bundle.to_str().unwrap()], dir.path());
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let shown = stdout(&inspect);
    // 1433*16 + 16 + 16*7 + 7 parameters.
    assert!(shown.contains("model       gcn") && shown.contains("parameters  23063"), "{shown}");
    assert!(shown.contains("test_accuracy"), "{shown}");

    // A modified bundle is refused.
    fs::write(bundle.join("config.toml"), "tampered").unwrap();
    assert_user_error(
        &shopnet(&["inspect", bundle.to_str().unwrap()], dir.path()),
        "sha256 does not match",
    );
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let dir = TempDir::new().unwrap();
    let common =
        ["--config", &config("gat_cora.toml"), "--set", "train.epochs=25", "--set", "train.seed=3"];
    let full = train(dir.path(), &common);

    let mut stopped_args = common.to_vec();
    stopped_args.extend(["--stop-after", "9"]);
    let out = dir.path().join("runs");
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend(stopped_args);
    let stopped = shopnet(&args, dir.path());
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let message = stdout(&stopped);
    assert!(message.contains("stopped after epoch 9"), "{message}");
    let run = run_dir_from(&message);
    assert!(!run.join("report.json").exists());

    let resumed = shopnet(&["train", "--resume", run.to_str().unwrap()], dir.path());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stdout(&resumed).contains("finished after 25 epochs"), "{}", stdout(&resumed));
    assert_eq!(fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count(), 26);
    for metric in ["test_accuracy", "test_loss", "val_loss"] {
        assert_eq!(report_metric(&full, metric), report_metric(&run, metric), "{metric}");
    }
    // A finished run is not silently trained further.
    assert_user_error(
        &shopnet(&["train", "--resume", run.to_str().unwrap()], dir.path()),
        "already finished",
    );
}

/// A 4-node graph in the CSV layout, with one file replaced by `edit`.
fn tiny_graph(dir: &Path, file: &str, contents: &str) -> PathBuf {
    let graph = dir.join("graph");
    fs::create_dir_all(&graph).unwrap();
    fs::write(
        graph.join("nodes.csv"),
        "node_id,label,split\na,x,train\nb,y,train\nc,x,val\nd,y,test\n",
    )
    .unwrap();
    fs::write(
        graph.join("features.csv"),
        "node_id,feature_index,value\na,0,1\nb,1,1\nc,0,0.5\nd,1,2\n",
    )
    .unwrap();
    fs::write(graph.join("edges.csv"), "src,dst\na,b\nb,c\nc,d\n").unwrap();
    fs::write(graph.join(file), contents).unwrap();
    graph
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("bad.toml");
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn bad_input_gives_one_clear_line_and_exit_code_2() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let run = train(d, &["--config", &config("gcn_cora.toml"), "--set", "train.epochs=3"]);
    let before = snapshot(&run);
    let base = fs::read_to_string(config("gcn_cora.toml")).unwrap();

    let malformed = write_config(d, &base.replace("hidden = 16", "hidden = = 16"));
    assert_user_error(&shopnet(&["train", "--config", &malformed], d), "bad.toml:7:");

    let unknown = write_config(d, &base.replace("hidden = 16", "hidden = 16\nhiden = 8"));
    assert_user_error(
        &shopnet(&["train", "--config", &unknown], d),
        "bad.toml:8: model.hiden: unknown field `hiden`",
    );

    let wrong_type = write_config(d, &base.replace("lr = 0.01", "lr = \"fast\""));
    assert_user_error(
        &shopnet(&["train", "--config", &wrong_type], d),
        "bad.toml:19: train.lr: expected a float, got \"fast\"",
    );

    let missing = write_config(d, &base.replace("builtin:cora", "no/such/graph"));
    assert_user_error(
        &shopnet(&["train", "--config", &missing], d),
        "no/such/graph: graph folder not found",
    );

    let graph = tiny_graph(d, "edges.csv", "src,dst\na,b\nb,zz\n");
    let bad_edge = write_config(d, &base.replace("builtin:cora", graph.to_str().unwrap()));
    assert_user_error(
        &shopnet(&["train", "--config", &bad_edge], d),
        "edges.csv:3: dst: unknown node \"zz\"",
    );

    let graph = tiny_graph(d, "features.csv", "node_id,feature_index,value\na,0,1\nb,1,high\n");
    let bad_feature = write_config(d, &base.replace("builtin:cora", graph.to_str().unwrap()));
    assert_user_error(
        &shopnet(&["train", "--config", &bad_feature], d),
        "features.csv:3: value: expected a number, got \"high\"",
    );

    let graph = tiny_graph(d, "features.csv", "node_id,feature_index,value\na,0,NaN\n");
    let nan_feature = write_config(d, &base.replace("builtin:cora", graph.to_str().unwrap()));
    assert_user_error(
        &shopnet(&["train", "--config", &nan_feature], d),
        "features.csv:2: value: NaN is not a finite number",
    );

    assert_user_error(
        &shopnet(&["eval", "--run", d.to_str().unwrap()], d),
        "not a run directory or bundle",
    );
    assert_user_error(
        &shopnet(&["score", "--run", "nowhere", "--input", "builtin:cora", "--output", "x.csv"], d),
        "nowhere: not a run directory",
    );

    // A checkpoint of another model kind, put where the GCN run's weights were.
    let gat = train(d, &["--config", &config("gat_cora.toml"), "--set", "train.epochs=2"]);
    let swapped = d.join("swapped");
    fs::create_dir_all(&swapped).unwrap();
    for (name, bytes) in &before {
        fs::write(swapped.join(name.file_name().unwrap()), bytes).unwrap();
    }
    fs::copy(gat.join("best.safetensors"), swapped.join("best.safetensors")).unwrap();
    assert_user_error(
        &shopnet(&["eval", "--run", swapped.to_str().unwrap()], d),
        "best.safetensors: checkpoint of a gat model, but this run is a gcn model",
    );

    assert_user_error(
        &shopnet(&["train", "--config", &config("gcn_cora.toml"), "--device", "tpu"], d),
        "unknown device \"tpu\"",
    );
    let gcn = config("gcn_cora.toml");
    let set = |assignment: &str| shopnet(&["train", "--config", &gcn, "--set", assignment], d);
    assert_user_error(&set("train.batch_size=0"), "train.batch_size: must be at least 1");
    assert_user_error(&set("train.lr=-0.01"), "train.lr: must be in (0, 100], got -0.01");
    assert_user_error(
        &set("train.early_stopping.metric=val_acc"),
        "\"val_acc\" is not a metric of this model",
    );
    assert_eq!(before, snapshot(&run), "a failed command changed the run's files");
    // Configs that fail validation leave no run directory behind.
    assert!(!d.join("checkpoints").exists(), "a failed train created a run directory");
}

/// The GPU code path on whatever Vulkan device the machine has (lavapipe in CI). The
/// seed fixes weights and dropout masks on the host, so the wgpu run follows the CPU run.
#[test]
fn wgpu_training_follows_cpu_training() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    if !wgpu_usable(d) {
        return;
    }
    for (config_name, epochs) in [("gcn_cora.toml", "40"), ("gat_cora.toml", "12")] {
        let epochs_set = format!("train.epochs={epochs}");
        let args =
            ["--config", &config(config_name), "--set", &epochs_set, "--set", "train.seed=1"];
        let cpu = train(d, &[&args[..], &["--device", "cpu"]].concat());
        let gpu = train(d, &[&args[..], &["--device", "wgpu"]].concat());
        let (cpu_acc, gpu_acc) =
            (report_metric(&cpu, "test_accuracy"), report_metric(&gpu, "test_accuracy"));
        assert!(
            (cpu_acc - gpu_acc).abs() <= 0.01,
            "{config_name}: cpu {cpu_acc} vs wgpu {gpu_acc}"
        );
    }
}

fn shared_data(path: &str) -> String {
    repo().join("../shared/data").join(path).display().to_string()
}

fn lastfm_args(epochs: &str) -> Vec<String> {
    [
        "--config".to_string(),
        config("lightgcn_lastfm.toml"),
        "--set".into(),
        format!("data.train={}", shared_data("lastfm/data1.txt")),
        "--set".into(),
        format!("data.test={}", shared_data("lastfm/test1.txt")),
        "--set".into(),
        format!("train.epochs={epochs}"),
    ]
    .to_vec()
}

#[test]
fn lightgcn_trains_and_recommends_on_lastfm() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let out = d.join("runs");
    let mut args = vec!["train".to_string(), "--out".into(), out.display().to_string()];
    args.extend(lastfm_args("4"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trained = shopnet(&args, d);
    assert!(trained.status.success(), "{}", stderr(&trained));
    // LastFM has two test users without training items: a documented skip, with a count.
    assert!(
        stderr(&trained).contains("note: 2 test users have no training interactions"),
        "{}",
        stderr(&trained)
    );
    let run = run_dir_from(&stdout(&trained));
    // Random ranking scores about 0.005; a working LightGCN passes 0.1 within 4 epochs.
    let recall = report_metric(&run, "test_recall@20");
    assert!(recall > 0.1, "recall@20 {recall}");
    let page = report_check::check_common(&run, "lightgcn_lastfm");
    report_check::check_ranking(&page, &run);
    // The split has no validation part: eval says so rather than report the test numbers.
    assert_user_error(
        &shopnet(&["eval", "--run", run.to_str().unwrap(), "--split", "val"], d),
        "use --split test",
    );

    let recs = d.join("recs.csv");
    let recommended = shopnet(
        &[
            "recommend",
            "--run",
            run.to_str().unwrap(),
            "--users",
            "all",
            "--k",
            "5",
            "--output",
            recs.to_str().unwrap(),
        ],
        d,
    );
    assert!(recommended.status.success(), "{}", stderr(&recommended));
    let train_text = fs::read_to_string(shared_data("lastfm/data1.txt")).unwrap();
    let seen: std::collections::HashSet<(u64, u64)> = train_text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect();
    let users: std::collections::HashSet<u64> = seen.iter().map(|p| p.0).collect();
    let text = fs::read_to_string(&recs).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "user_id,rank,item_id,score");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), users.len() * 5);
    for row in &rows {
        let (user, rank, item): (u64, usize, u64) =
            (row[0].parse().unwrap(), row[1].parse().unwrap(), row[2].parse().unwrap());
        assert!((1..=5).contains(&rank) && (1..=4489).contains(&item), "{row:?}");
        assert!(!seen.contains(&(user, item)), "recommended a training item: {row:?}");
    }
}

#[test]
fn gcn_encoder_recommender_learns_on_lastfm() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut args = lastfm_args("4");
    args.extend(["--set".to_string(), "model.encoder=gcn".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = train(dir.path(), &args);
    // Random ranking scores about 0.005 at K = 20.
    let recall = report_metric(&run, "test_recall@20");
    assert!(recall > 0.02, "recall@20 {recall}");
}

#[test]
fn recommender_trains_on_a_taobao_event_log_and_keeps_its_ids() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let events = shared_data("taobao_sample/UserBehavior.csv");
    let events_set = format!("data.events={events}");
    let run = train(
        d,
        &[
            "--config",
            &config("recommender_taobao.toml"),
            "--set",
            &events_set,
            "--set",
            "train.epochs=3",
        ],
    );
    // Known values of this seed: one test item of one of the 32 ranked users (11 held-out
    // items) reaches the top 20, none the top 10. A ranking that leaks training items or
    // scores users wrongly moves them.
    assert_eq!(report_metric(&run, "test_recall@10"), 0.0);
    let recall_20 = report_metric(&run, "test_recall@20");
    assert!((recall_20 - 1.0 / 352.0).abs() < 1e-9, "recall@20 {recall_20}");
    let recs = d.join("recs.csv");
    let output = shopnet(
        &[
            "recommend",
            "--run",
            run.to_str().unwrap(),
            "--k",
            "3",
            "--output",
            recs.to_str().unwrap(),
        ],
        d,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let log = fs::read_to_string(&events).unwrap();
    let users: std::collections::HashSet<&str> =
        log.lines().map(|l| l.split(',').next().unwrap()).collect();
    let items: std::collections::HashSet<&str> =
        log.lines().map(|l| l.split(',').nth(1).unwrap()).collect();
    let text = fs::read_to_string(&recs).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    // The sample has 43 users, each with enough items for 3 recommendations.
    assert_eq!(rows.len(), 43 * 3);
    for row in rows {
        let fields: Vec<&str> = row.split(',').collect();
        assert!(
            users.contains(fields[0]) && items.contains(fields[2]),
            "ids not from the log: {row}"
        );
    }
}

#[test]
fn bad_interaction_files_give_one_clear_line() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let cases = [
        (
            "1\t2\t1\r\nabc\t3\t1\r\n",
            "train.txt:2: user id: expected a non-negative integer, got \"abc\"",
        ),
        ("1\t2\t1\r\n5\t9000\t1\r\n", "train.txt: item id 9000 is outside the declared 4489 items"),
        ("", "train.txt: the file is empty"),
    ];
    for (contents, needle) in cases {
        let train = d.join("train.txt");
        fs::write(&train, contents).unwrap();
        let mut args = vec!["train".to_string()];
        args.extend(lastfm_args("1"));
        args.extend(["--set".to_string(), format!("data.train={}", train.display())]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_user_error(&shopnet(&args, d), needle);
    }
}

#[test]
fn purchase_intent_trains_evaluates_scores_and_exports_on_the_taobao_sample() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let events = shared_data("taobao_sample/UserBehavior.csv");
    let events_set = format!("data.events={events}");
    let run = train(
        d,
        &[
            "--config",
            &config("intent_taobao.toml"),
            "--set",
            &events_set,
            "--set",
            "train.epochs=3",
        ],
    );
    // The sample's 43 users all have history before the cut; 13 buy in the two days after.
    let info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let input = &info["input"];
    let users: u64 =
        ["train", "val", "test"].iter().map(|s| input[s]["users"].as_u64().unwrap()).sum();
    let buyers: u64 =
        ["train", "val", "test"].iter().map(|s| input[s]["buyers"].as_u64().unwrap()).sum();
    assert_eq!((users, buyers), (43, 13));
    let loss = report_metric(&run, "test_loss");
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    assert!(
        fs::read_to_string(run.join("vocab.csv"))
            .unwrap()
            .starts_with("token_id,behavior,category_id,count\n2,pv,")
    );

    let bundle = d.join("bundle");
    let exported =
        shopnet(&["export", "--run", run.to_str().unwrap(), "--out", bundle.to_str().unwrap()], d);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(bundle.join("vocab.csv").is_file());
    for source in [&run, &bundle] {
        let scores = d.join("scores.csv");
        let scored = shopnet(
            &[
                "score",
                "--run",
                source.to_str().unwrap(),
                "--input",
                &events,
                "--output",
                scores.to_str().unwrap(),
            ],
            d,
        );
        assert!(scored.status.success(), "{}", stderr(&scored));
        let text = fs::read_to_string(&scores).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("user_id,probability"));
        let rows: Vec<(u64, f64)> = lines
            .map(|l| {
                let (user, p) = l.split_once(',').unwrap();
                (user.parse().unwrap(), p.parse().unwrap())
            })
            .collect();
        assert_eq!(rows.len(), 43);
        assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "users in ascending order");
        assert!(rows.iter().all(|&(_, p)| (0.0..=1.0).contains(&p)));
    }
    let evaluated = shopnet(&["eval", "--run", bundle.to_str().unwrap(), "--split", "test"], d);
    assert!(
        evaluated.status.success() && stdout(&evaluated).contains("roc_auc"),
        "{}",
        stderr(&evaluated)
    );
}

#[test]
fn purchase_intent_finds_the_planted_signal_of_a_generated_log() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let log = synth_events(d, 4000, 3);
    let events_set = format!("data.events={}", log.display());
    let run = train(
        d,
        &[
            "--config",
            &config("intent_synth.toml"),
            "--set",
            &events_set,
            "--set",
            "train.epochs=4",
        ],
    );
    // A model that learned nothing scores 0.5 (this one about 0.80 after 4 epochs); the
    // baseline that counts carts scores about 0.85. Beating it takes more users and
    // epochs: the 50,000-user run in the README scores 0.88 against 0.81.
    let auc = report_metric(&run, "test_roc_auc");
    let baseline = report_metric(&run, "test_cart_baseline_roc_auc");
    assert!(auc > 0.7 && baseline > 0.75, "model {auc}, cart baseline {baseline}");

    // The fused LSTM (the CPU default) and the LSTM composed from Burn ops (wgpu, or
    // runtime.fused_ops = false) are the same function: one epoch of training with either
    // ends at the same model, up to float rounding, and both devices score alike.
    let one_epoch = |fused: &str| {
        let fused_set = format!("runtime.fused_ops={fused}");
        let args = ["--config", &config("intent_synth.toml"), "--set", &events_set];
        let run =
            train(d, &[&args[..], &["--set", "train.epochs=1", "--set", &fused_set]].concat());
        report_metric(&run, "test_loss")
    };
    let (fused, composed) = (one_epoch("true"), one_epoch("false"));
    assert!((fused - composed).abs() < 1e-3, "log-loss fused {fused}, composed {composed}");
    if wgpu_usable(d) {
        let probabilities = |device: &str| -> Vec<f64> {
            let out = d.join(format!("scores_{device}.csv"));
            let args = ["score", "--run", run.to_str().unwrap(), "--input", log.to_str().unwrap()];
            let output = shopnet(
                &[&args[..], &["--output", out.to_str().unwrap(), "--device", device]].concat(),
                d,
            );
            assert!(output.status.success(), "{device}: {}", stderr(&output));
            let text = fs::read_to_string(out).unwrap();
            text.lines()
                .skip(1)
                .map(|row| row.rsplit(',').next().unwrap().parse().unwrap())
                .collect()
        };
        let (cpu, gpu) = (probabilities("cpu"), probabilities("wgpu"));
        assert_eq!(cpu.len(), 4000);
        let worst = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "cpu (fused) and wgpu (composed) probabilities differ by {worst}");
    }
}

#[test]
fn bad_event_logs_give_one_clear_line_or_are_skipped_and_counted() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let sample = fs::read_to_string(shared_data("taobao_sample/UserBehavior.csv")).unwrap();
    let log = d.join("log.csv");
    let intent = config("intent_taobao.toml");
    let events_set = format!("data.events={}", log.display());
    let run_with = |extra: &[&str]| {
        let mut args =
            vec!["train", "--config", &intent, "--set", &events_set, "--set", "train.epochs=1"];
        args.extend_from_slice(extra);
        shopnet(&args, d)
    };
    let cases = [
        (
            "1,2268318,2520377,pv\n",
            "log.csv:4322: expected 5 columns (user_id,item_id,category_id,behavior,timestamp), got 4",
        ),
        (
            "1,2268318,2520377,pv,noon\n",
            "log.csv:4322: timestamp: expected Unix seconds, got \"noon\"",
        ),
        (
            "1,2268318,2520377,like,1511544070\n",
            "log.csv:4322: behavior: expected pv, fav, cart or buy, got \"like\"",
        ),
    ];
    for (bad_row, needle) in cases {
        fs::write(&log, format!("{sample}{bad_row}")).unwrap();
        assert_user_error(&run_with(&[]), needle);
    }
    fs::write(&log, "").unwrap();
    assert_user_error(&run_with(&[]), "log.csv: the file has no events");
    fs::write(&log, &sample).unwrap();
    assert_user_error(
        &run_with(&["--set", "data.cut=1600000000"]),
        "data.cut: 2020-09-13 12:26:40 UTC (1600000000) is after the last event of",
    );

    let bad_rows: String = cases.iter().map(|(row, _)| *row).collect();
    fs::write(&log, format!("{sample}{bad_rows}")).unwrap();
    let skipped = run_with(&["--set", "data.skip_bad_rows=true"]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    assert!(stderr(&skipped).contains("note: skipped 3 rows of"), "{}", stderr(&skipped));
}
