//! Sharded batch jobs (`--shard I/N`) and the job-runner files under `deploy/`: three
//! shards of a job, run over the input in another order, together write exactly the rows
//! of the unsharded job. Runs on generated data: no ../shared needed.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use tempfile::TempDir;
use yaml_rust2::YamlLoader;

/// The data rows of a CSV output (header left out), as a set: shards are compared by
/// content, whatever order each writes in.
fn rows(path: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().skip(1).map(str::to_string).collect()
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let output = shopnet(args, dir);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

/// Checks that shards 0..3 of `command` (given `{shard}` and `{out}` placeholders) hold
/// every row of the unsharded output exactly once.
fn check_shards(dir: &Path, command: &[&str], whole: &Path, what: &str) {
    let expected = rows(whole);
    assert!(expected.len() > 30, "{what}: too few rows to say anything");
    let mut union = BTreeSet::new();
    let mut total = 0;
    for index in 0..3 {
        let shard = format!("{index}/3");
        let out = dir.join(format!("{what}-part-{index}.csv"));
        let args: Vec<String> = command
            .iter()
            .map(|a| a.replace("{shard}", &shard).replace("{out}", out.to_str().unwrap()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let said = run_ok(dir, &args);
        assert!(said.contains(&format!("(shard {shard})")), "{said}");
        let part = rows(&out);
        // Each shard holds a fair share, not everything or nothing.
        assert!(part.len() > expected.len() / 6, "{what} shard {shard}: {} rows", part.len());
        total += part.len();
        union.extend(part);
    }
    assert_eq!(total, expected.len(), "{what}: a row in two shards, or one missing");
    let differing: Vec<&String> = union.symmetric_difference(&expected).take(4).collect();
    assert!(
        differing.is_empty(),
        "{what}: the shards differ from the unsharded output: {differing:?}"
    );
}

#[test]
fn three_shards_write_exactly_the_rows_of_the_unsharded_job() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    run_ok(d, &["synth", "events", "--users", "900", "--seed", "9", "--out", "events.csv"]);
    // The same log with its users in reverse order (each user's events keep theirs, which
    // breaks ties between equal timestamps): shards must not depend on positions.
    let log = fs::read_to_string(d.join("events.csv")).unwrap();
    let mut lines: Vec<&str> = log.lines().collect();
    let header = lines.remove(0);
    let user = |line: &str| line.split(',').next().unwrap().parse::<u64>().unwrap();
    lines.sort_by_key(|line| std::cmp::Reverse(user(line)));
    fs::write(d.join("reversed.csv"), format!("{header}\n{}\n", lines.join("\n"))).unwrap();

    let intent = train_on_events(d, "intent_synth.toml", &["--set", "train.epochs=1"]);
    let intent = intent.to_str().unwrap();
    run_ok(d, &["score", "--run", intent, "--input", "events.csv", "--output", "scores.csv"]);
    let sharded = [
        "score",
        "--run",
        intent,
        "--input",
        "reversed.csv",
        "--output",
        "{out}",
        "--shard",
        "{shard}",
    ];
    check_shards(d, &sharded, &d.join("scores.csv"), "score");

    let small = ["--set", "train.epochs=1", "--set", "model.embedding_size=8"];
    let recommender = train_on_events(d, "recommender_taobao.toml", &small);
    let recommender = recommender.to_str().unwrap();
    run_ok(d, &["recommend", "--run", recommender, "--k", "3", "--output", "recs.csv"]);
    let sharded =
        ["recommend", "--run", recommender, "--k", "3", "--output", "{out}", "--shard", "{shard}"];
    check_shards(d, &sharded, &d.join("recs.csv"), "recommend");

    for bad in ["3/3", "1/0", "one/3"] {
        let output = shopnet(
            &[
                "score",
                "--run",
                intent,
                "--input",
                "events.csv",
                "--output",
                "x.csv",
                "--shard",
                bad,
            ],
            d,
        );
        assert_user_error(&output, "--shard");
    }
}

#[test]
fn deploy_files_are_valid_and_shard_by_the_runner_index() {
    let deploy = repo().join("deploy");
    let manifest = fs::read_to_string(deploy.join("k8s-score-indexed-job.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&manifest).expect("valid YAML");
    assert_eq!(docs.len(), 1);
    let job = &docs[0];
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(job["kind"].as_str(), Some("Job"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().unwrap();
    assert_eq!(spec["parallelism"].as_i64(), Some(completions));
    let container = &spec["template"]["spec"]["containers"][0];
    let env = container["env"].as_vec().unwrap();
    let count = env.iter().find(|e| e["name"].as_str() == Some("SHARD_COUNT")).unwrap();
    assert_eq!(count["value"].as_str(), Some(completions.to_string().as_str()));
    let command = container["args"][0].as_str().unwrap();
    assert!(command.contains("shopnet score"), "{command}");
    assert!(command.contains("--shard \"${JOB_COMPLETION_INDEX}/${SHARD_COUNT}\""), "{command}");
    assert_eq!(spec["template"]["spec"]["restartPolicy"].as_str(), Some("Never"));

    let slurm = deploy.join("slurm-score-array.sh");
    let syntax = std::process::Command::new("bash").arg("-n").arg(&slurm).status().unwrap();
    assert!(syntax.success(), "bash -n {}", slurm.display());
    let script = fs::read_to_string(&slurm).unwrap();
    assert!(script.contains("#SBATCH --array="), "{script}");
    assert!(script.contains("--shard \"$index/$count\""), "{script}");
}

/// One metrics.csv column, by name.
fn column(run: &Path, name: &str) -> Vec<f64> {
    let text = fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}"));
    lines.map(|l| l.split(',').nth(at).unwrap().parse().unwrap()).collect()
}

#[test]
fn data_parallel_training_over_two_devices_follows_one_device() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    if !wgpu_usable(d) {
        return;
    }
    run_ok(d, &["synth", "events", "--users", "700", "--seed", "4", "--out", "events.csv"]);
    // Without dropout the split batch's gradient is the whole batch's: the runs agree up
    // to float rounding (the CPU and the wgpu device sum in different orders).
    let train = |devices: &str| {
        let said = shopnet(
            &[
                "train",
                "--config",
                &config("intent_synth.toml"),
                "--set",
                "data.events=\"events.csv\"",
                "--set",
                "train.epochs=2",
                "--set",
                "model.dropout=0.0",
                "--device",
                devices,
                "--out",
                "runs",
            ],
            d,
        );
        assert!(said.status.success(), "{devices}: {}", stderr(&said));
        (d.join(run_dir_from(&stdout(&said))), stderr(&said))
    };
    let (one, _) = train("cpu");
    let (two, said) = train("cpu,wgpu");
    assert!(said.contains("wgpu"), "the wgpu device was not opened: {said}");
    for name in ["train_loss", "val_loss", "val_roc_auc"] {
        let (a, b) = (column(&one, name), column(&two, name));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4 * x.abs().max(1.0), "{name}: one device {a:?}, two {b:?}");
        }
    }
    // A node classifier trains full-batch: it says so and uses the first device.
    let gcn = shopnet(
        &[
            "train",
            "--config",
            &config("gcn_cora.toml"),
            "--set",
            "train.epochs=2",
            "--device",
            "cpu,wgpu",
            "--out",
            "runs",
        ],
        d,
    );
    assert!(gcn.status.success(), "{}", stderr(&gcn));
    assert!(stderr(&gcn).contains("training on the first device only"), "{}", stderr(&gcn));
    assert_user_error(
        &shopnet(&["train", "--config", &config("gcn_cora.toml"), "--device", "cpu,cpu"], d),
        "listed twice",
    );
}
