//! A corpus of bad user inputs, one table per input class: configs, graph folders, event
//! logs, interaction files, review CSVs, images and IDX files, run directories and
//! bundles, tokenizers, and command-line misuse.
//!
//! Every case starts from a known-good baseline folder of its class (valid inputs, and a
//! run trained from them where the class needs one), changes one thing, runs one command
//! in a copy of that folder and enforces the user-error contract:
//!
//! - exit code 2, never a panic (101) or an abort (134, a signal), and an answer within
//!   `LIMIT` (a config that would train for ever, or allocate a terabyte, is refused
//!   up front);
//! - exactly one line on stderr, starting with `error: `, shorter than 1,000 bytes (a
//!   megabyte-long row is quoted in part), naming the file, `file:line` or key at fault
//!   (the case's needle; an argument error also names the argument and points at `--help`);
//! - the folder is byte for byte as before: no input modified or deleted, and nothing
//!   created (a failed command leaves no run directory, no output and no temporary file).
//!
//! Each test runs all its cases and then fails once, listing every case that broke the
//! contract with what it did instead. A held-back corpus of the same classes is run too:
//! fix the cause of a failure, not the case.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{config, shopnet, stderr, train};
use tempfile::TempDir;

/// How long a bad input may take to be refused. Every case fails during validation or
/// while reading its input, in well under a second.
const LIMIT: Duration = Duration::from_secs(10);

/// An error line longer than this quotes too much of the input.
const MAX_LINE: usize = 1000;

/// File contents that mean "delete this file from the baseline".
const MISSING: &str = "\0missing";

/// One bad input: `files` are written over a copy of the class's baseline folder (a path
/// ending in `/` is an empty folder, `MISSING` deletes the file), then `args` run there.
/// In `args`, `{dir}` is the case's folder and `{cfg:NAME}` is `configs/NAME`.
struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    /// What the error line must name: a file, `file:line`, key or argument.
    needle: &'static str,
}

/// A bad input that takes code to make (binary contents, edits of a trained run).
struct Built {
    name: &'static str,
    build: fn(&Path),
    args: &'static [&'static str],
    needle: &'static str,
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// A small GCN on the built-in Cora: trains in a fraction of a second.
const GCN_TOML: &str = r#"[model]
kind = "gcn"
hidden = 4

[data]
source = "builtin:cora"

[train]
epochs = 3

[runtime]
device = "cpu"
"#;

const TRAIN_BAD: &[&str] = &["train", "--config", "bad.toml"];
const TRAIN_GCN: &[&str] = &["train", "--config", "gcn.toml"];

const CONFIG_CASES: &[Case] = &[
    Case {
        name: "malformed TOML: doubled =",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\nhidden = = 4\n")],
        args: TRAIN_BAD,
        needle: "bad.toml:3",
    },
    Case {
        name: "malformed TOML: unclosed table header",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[data\nsource = \"builtin:cora\"\n")],
        args: TRAIN_BAD,
        needle: "bad.toml:4",
    },
    Case {
        name: "malformed TOML: duplicate key",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\nhidden = 4\nhidden = 8\n")],
        args: TRAIN_BAD,
        needle: "bad.toml:4",
    },
    Case {
        name: "malformed TOML: duplicate table",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[model]\nkind = \"gat\"\n")],
        args: TRAIN_BAD,
        needle: "bad.toml:4",
    },
    Case {
        name: "malformed TOML: unterminated string",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[data]\nsource = \"builtin:cora\n")],
        args: TRAIN_BAD,
        needle: "bad.toml:5",
    },
    Case {
        name: "malformed TOML: unquoted string",
        files: &[("bad.toml", "[model]\nkind = gcn\n")],
        args: TRAIN_BAD,
        needle: "bad.toml:2",
    },
    Case {
        name: "empty config file",
        files: &[("bad.toml", "")],
        args: TRAIN_BAD,
        needle: "model",
    },
    Case {
        name: "config path is a folder",
        files: &[("bad.toml/", "")],
        args: TRAIN_BAD,
        needle: "bad.toml",
    },
    Case {
        name: "config file missing",
        files: &[],
        args: &["train", "--config", "nope.toml"],
        needle: "nope.toml",
    },
    Case {
        name: "unknown key in [model]",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\nwidth = 4\n")],
        args: TRAIN_BAD,
        needle: "model.width",
    },
    Case {
        name: "GAT key in a GCN [model]",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\nheads = 8\n")],
        args: TRAIN_BAD,
        needle: "model.heads",
    },
    Case {
        name: "unknown key in [data]",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[data]\nsorce = \"builtin:cora\"\n")],
        args: TRAIN_BAD,
        needle: "data.sorce",
    },
    Case {
        name: "event-log key in a graph [data]",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[data]\nevents = \"log.csv\"\n")],
        args: TRAIN_BAD,
        needle: "data.events",
    },
    Case {
        name: "unknown key in [train]",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[train]\nlearning_rate = 0.1\n")],
        args: TRAIN_BAD,
        needle: "train.learning_rate",
    },
    Case {
        name: "unknown key in train.early_stopping",
        files: &[(
            "bad.toml",
            "[model]\nkind = \"gcn\"\n\n[train]\nearly_stopping = { metric = \"val_loss\", patiense = 3 }\n",
        )],
        args: TRAIN_BAD,
        needle: "train.early_stopping.patiense",
    },
    Case {
        name: "unknown key in [runtime]",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[runtime]\ngpu = true\n")],
        args: TRAIN_BAD,
        needle: "runtime.gpu",
    },
    Case {
        name: "unknown section",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[optimizer]\nlr = 0.1\n")],
        args: TRAIN_BAD,
        needle: "optimizer",
    },
    Case {
        name: "unknown top-level key",
        files: &[("bad.toml", "name = \"x\"\n\n[model]\nkind = \"gcn\"\n")],
        args: TRAIN_BAD,
        needle: "bad.toml:1",
    },
    Case {
        name: "unknown key through --set",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "train.nope=1"],
        needle: "train.nope",
    },
    Case {
        name: "wrong type: string for an integer",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\nhidden = \"wide\"\n")],
        args: TRAIN_BAD,
        needle: "model.hidden",
    },
    Case {
        name: "wrong type: quoted number",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[train]\nepochs = \"3\"\n")],
        args: TRAIN_BAD,
        needle: "train.epochs",
    },
    Case {
        name: "wrong type: float for an integer",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[train]\nepochs = 2.5\n")],
        args: TRAIN_BAD,
        needle: "train.epochs",
    },
    Case {
        name: "wrong type: boolean for a float",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[train]\nlr = true\n")],
        args: TRAIN_BAD,
        needle: "train.lr",
    },
    Case {
        name: "wrong type: string for a float",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\ndropout = \"half\"\n")],
        args: TRAIN_BAD,
        needle: "model.dropout",
    },
    Case {
        name: "wrong type: string for a boolean",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[data]\nnormalize_features = \"yes\"\n")],
        args: TRAIN_BAD,
        needle: "data.normalize_features",
    },
    Case {
        name: "wrong type: integer for a string",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[runtime]\ndevice = 3\n")],
        args: TRAIN_BAD,
        needle: "runtime.device",
    },
    Case {
        name: "wrong type: negative count",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[runtime]\nthreads = -2\n")],
        args: TRAIN_BAD,
        needle: "runtime.threads",
    },
    Case {
        name: "wrong type: negative seed",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n\n[train]\nseed = -1\n")],
        args: TRAIN_BAD,
        needle: "train.seed",
    },
    Case {
        name: "wrong type: scalar for a section",
        files: &[("bad.toml", "train = 5\n\n[model]\nkind = \"gcn\"\n")],
        args: TRAIN_BAD,
        needle: "train",
    },
    Case {
        name: "wrong type: string for early_stopping",
        files: &[(
            "bad.toml",
            "[model]\nkind = \"gcn\"\n\n[train]\nearly_stopping = \"val_loss\"\n",
        )],
        args: TRAIN_BAD,
        needle: "train.early_stopping",
    },
    Case {
        name: "missing [model]",
        files: &[("bad.toml", "[data]\nsource = \"builtin:cora\"\n")],
        args: TRAIN_BAD,
        needle: "model",
    },
    Case {
        name: "missing model.kind",
        files: &[("bad.toml", "[model]\nhidden = 4\n")],
        args: TRAIN_BAD,
        needle: "kind",
    },
    Case {
        name: "unknown model.kind",
        files: &[("bad.toml", "[model]\nkind = \"mlp\"\n")],
        args: TRAIN_BAD,
        needle: "model.kind",
    },
    Case {
        name: "model.kind not a string",
        files: &[("bad.toml", "[model]\nkind = 3\n")],
        args: TRAIN_BAD,
        needle: "model.kind",
    },
    Case {
        name: "missing [data]",
        files: &[("bad.toml", "[model]\nkind = \"gcn\"\n")],
        args: TRAIN_BAD,
        needle: "data",
    },
    Case {
        name: "unknown early_stopping.metric",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "train.early_stopping.metric=val_acc"],
        needle: "train.early_stopping.metric",
    },
    Case {
        name: "early_stopping.metric on the test split",
        files: &[],
        args: &[
            "train",
            "--config",
            "gcn.toml",
            "--set",
            "train.early_stopping.metric=test_accuracy",
        ],
        needle: "train.early_stopping.metric",
    },
    Case {
        name: "unknown early_stopping.direction",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "train.early_stopping.direction=up"],
        needle: "train.early_stopping.direction",
    },
    Case {
        name: "unknown train.optimizer",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "train.optimizer=lbfgs"],
        needle: "train.optimizer",
    },
    Case {
        name: "unknown train.schedule",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "train.schedule=linear"],
        needle: "train.schedule",
    },
    Case {
        name: "unknown built-in dataset",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "data.source=builtin:citeseer"],
        needle: "data.source",
    },
    Case {
        name: "unknown runtime.device in the config",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "runtime.device=tpu"],
        needle: "runtime.device",
    },
    Case {
        name: "GCN model.hidden = 0",
        files: &[],
        args: &["train", "--config", "{cfg:gcn_cora.toml}", "--set", "model.hidden=0"],
        needle: "model.hidden",
    },
    Case {
        name: "GCN model.hidden = 1e12 (memory estimate up front)",
        files: &[],
        args: &["train", "--config", "{cfg:gcn_cora.toml}", "--set", "model.hidden=1000000000000"],
        needle: "model.hidden",
    },
    Case {
        name: "GCN model.layers = 0",
        files: &[],
        args: &["train", "--config", "{cfg:gcn_cora.toml}", "--set", "model.layers=0"],
        needle: "model.layers",
    },
    Case {
        name: "GCN model.layers = 1e12",
        files: &[],
        args: &["train", "--config", "{cfg:gcn_cora.toml}", "--set", "model.layers=1000000000000"],
        needle: "model.layers",
    },
    Case {
        name: "GAT model.hidden = 1e12",
        files: &[],
        args: &["train", "--config", "{cfg:gat_cora.toml}", "--set", "model.hidden=1000000000000"],
        needle: "model.hidden",
    },
    Case {
        name: "GAT model.heads = 0",
        files: &[],
        args: &["train", "--config", "{cfg:gat_cora.toml}", "--set", "model.heads=0"],
        needle: "model.heads",
    },
    Case {
        name: "GAT model.heads = 1e12",
        files: &[],
        args: &["train", "--config", "{cfg:gat_cora.toml}", "--set", "model.heads=1000000000000"],
        needle: "model.heads",
    },
    Case {
        name: "GAT model.out_heads = 0",
        files: &[],
        args: &["train", "--config", "{cfg:gat_cora.toml}", "--set", "model.out_heads=0"],
        needle: "model.out_heads",
    },
    Case {
        name: "GAT model.negative_slope = NaN",
        files: &[],
        args: &[
            "train",
            "--config",
            "{cfg:gat_cora.toml}",
            "--set",
            "train.epochs=2",
            "--set",
            "model.negative_slope=nan",
        ],
        needle: "model.negative_slope",
    },
    Case {
        name: "GAT model.negative_slope = inf",
        files: &[],
        args: &[
            "train",
            "--config",
            "{cfg:gat_cora.toml}",
            "--set",
            "train.epochs=2",
            "--set",
            "model.negative_slope=inf",
        ],
        needle: "model.negative_slope",
    },
    Case {
        name: "model.dropout = 1",
        files: &[],
        args: &["train", "--config", "{cfg:gcn_cora.toml}", "--set", "model.dropout=1.0"],
        needle: "model.dropout",
    },
    Case {
        name: "model.dropout = -0.1",
        files: &[],
        args: &["train", "--config", "{cfg:gcn_cora.toml}", "--set", "model.dropout=-0.1"],
        needle: "model.dropout",
    },
    Case {
        name: "model.dropout = NaN",
        files: &[],
        args: &["train", "--config", "{cfg:gcn_cora.toml}", "--set", "model.dropout=nan"],
        needle: "model.dropout",
    },
    Case {
        name: "GAT model.attention_dropout = 1.5",
        files: &[],
        args: &["train", "--config", "{cfg:gat_cora.toml}", "--set", "model.attention_dropout=1.5"],
        needle: "model.attention_dropout",
    },
    Case {
        name: "runtime.threads = 1e12",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "runtime.threads=1000000000000"],
        needle: "runtime.threads",
    },
    Case {
        name: "runtime.name leaving runtime.out_dir",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "runtime.name=../escaped"],
        needle: "runtime.name",
    },
    Case {
        name: "runtime.out_dir is a file",
        files: &[("notes.txt", "not a folder\n")],
        args: &["train", "--config", "gcn.toml", "--set", "runtime.out_dir=notes.txt"],
        needle: "notes.txt",
    },
];

/// Every numeric `[train]` key, and `runtime.checkpoint_secs`, with values that must be
/// refused: `(key, settings that make the key matter, bad values)`. Set on top of
/// configs/gcn_cora.toml cut to 3 epochs, so a case that is not refused finishes fast.
const NUMERIC_KEYS: &[(&str, &[&str], &[&str])] = &[
    ("train.epochs", &[], &["-1", "0", "nan", "inf", "1e18", "1000000000000000000"]),
    ("train.batch_size", &[], &["-1", "0", "nan", "inf", "1000000000000000000"]),
    ("train.lr", &[], &["-0.01", "0", "nan", "inf", "-inf", "1e18"]),
    ("train.weight_decay", &[], &["-1", "nan", "inf", "1e18"]),
    ("train.momentum", &["train.optimizer=sgd"], &["-0.5", "nan", "inf", "1e18"]),
    ("train.beta1", &[], &["-0.1", "1", "nan", "inf", "1e18"]),
    ("train.beta2", &[], &["-0.1", "1", "nan", "inf", "1e18"]),
    ("train.eps", &[], &["-1e-8", "0", "nan", "inf", "1e18"]),
    ("train.warmup_steps", &[], &["-1", "nan", "inf", "1000000000000000000"]),
    ("train.step_epochs", &["train.schedule=step"], &["-1", "0", "nan", "1000000000000000000"]),
    ("train.gamma", &["train.schedule=step"], &["-0.1", "0", "nan", "inf", "1e18"]),
    ("train.min_lr", &["train.schedule=cosine"], &["-1", "nan", "inf", "1e18"]),
    ("train.clip_grad_norm", &[], &["-1", "nan", "inf", "1e18"]),
    ("train.label_smoothing", &[], &["-0.1", "1", "nan", "inf"]),
    ("runtime.checkpoint_secs", &[], &["-1", "nan", "inf", "1e18"]),
];

#[test]
fn bad_configs_are_refused_naming_the_line_or_key() {
    let baseline = baseline(&[("gcn.toml", GCN_TOML)], &[]);
    let mut failures = run_cases(baseline.path(), CONFIG_CASES, &[]);
    let mut count = CONFIG_CASES.len();
    for (key, context, values) in NUMERIC_KEYS {
        for value in *values {
            let assignment = format!("{key}={value}");
            let mut args = vec!["train", "--config", "{cfg:gcn_cora.toml}"];
            if *key != "train.epochs" {
                args.extend(["--set", "train.epochs=3"]);
            }
            for setting in *context {
                args.extend(["--set", *setting]);
            }
            args.extend(["--set", assignment.as_str()]);
            let name = format!("--set {assignment}");
            failures.extend(check(&name, baseline.path(), |_| {}, &args, &[*key]));
            count += 1;
        }
    }
    report("config", count, failures);
}

// ---------------------------------------------------------------------------------------
// Graph folders
// ---------------------------------------------------------------------------------------

const GRAPH_TOML: &str = r#"[model]
kind = "gcn"
hidden = 4

[data]
source = "graph"

[train]
epochs = 2
"#;

const NODES: &str =
    "node_id,label,split\na,x,train\nb,y,train\nc,x,val\nd,y,val\ne,x,test\nf,y,test\n";
const FEATURES: &str = "node_id,feature_index,value\na,0,1\nb,1,1\nc,0,0.5\nd,1,2\ne,2,1\nf,2,1\n";
const EDGES: &str = "src,dst\na,b\nb,c\nc,d\nd,e\ne,f\n";

const SCORE_GRAPH: &[&str] =
    &["score", "--run", "run", "--input", "graph", "--output", "scores.csv"];

const GRAPH_CASES: &[Case] = &[
    Case {
        name: "nodes.csv missing",
        files: &[("graph/nodes.csv", MISSING)],
        args: TRAIN_GCN,
        needle: "nodes.csv",
    },
    Case {
        name: "features.csv missing",
        files: &[("graph/features.csv", MISSING)],
        args: TRAIN_GCN,
        needle: "features.csv",
    },
    Case {
        name: "edges.csv missing",
        files: &[("graph/edges.csv", MISSING)],
        args: TRAIN_GCN,
        needle: "edges.csv",
    },
    Case {
        name: "graph folder missing",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "data.source=nowhere"],
        needle: "nowhere",
    },
    Case {
        name: "data.source is a file",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "data.source=gcn.toml"],
        needle: "gcn.toml",
    },
    Case {
        name: "nodes.csv is a folder",
        files: &[("graph/nodes.csv", MISSING), ("graph/nodes.csv/", "")],
        args: TRAIN_GCN,
        needle: "nodes.csv",
    },
    Case {
        name: "nodes.csv header without node_id",
        files: &[("graph/nodes.csv", "id,label,split\na,x,train\n")],
        args: TRAIN_GCN,
        needle: "nodes.csv:1",
    },
    Case {
        name: "features.csv header without feature_index",
        files: &[("graph/features.csv", "node_id,feature\na,0\n")],
        args: TRAIN_GCN,
        needle: "features.csv:1",
    },
    Case {
        name: "edges.csv header source,target",
        files: &[("graph/edges.csv", "source,target\na,b\n")],
        args: TRAIN_GCN,
        needle: "edges.csv:1",
    },
    Case {
        name: "edge to an unknown node",
        files: &[("graph/edges.csv", "src,dst\na,b\nb,zz\n")],
        args: TRAIN_GCN,
        needle: "edges.csv:3",
    },
    Case {
        name: "edge from an unknown node",
        files: &[("graph/edges.csv", "src,dst\nzz,a\n")],
        args: TRAIN_GCN,
        needle: "edges.csv:2",
    },
    Case {
        name: "edge row with one column",
        files: &[("graph/edges.csv", "src,dst\na\n")],
        args: TRAIN_GCN,
        needle: "edges.csv:2",
    },
    Case {
        name: "feature of an unknown node",
        files: &[("graph/features.csv", "node_id,feature_index\nzz,0\n")],
        args: TRAIN_GCN,
        needle: "features.csv:2",
    },
    Case {
        name: "feature_index not a number",
        files: &[("graph/features.csv", "node_id,feature_index\na,0\nb,one\n")],
        args: TRAIN_GCN,
        needle: "features.csv:3",
    },
    Case {
        name: "feature_index NaN",
        files: &[("graph/features.csv", "node_id,feature_index\na,NaN\n")],
        args: TRAIN_GCN,
        needle: "features.csv:2",
    },
    Case {
        name: "feature_index negative",
        files: &[("graph/features.csv", "node_id,feature_index\na,-1\n")],
        args: TRAIN_GCN,
        needle: "features.csv:2",
    },
    Case {
        name: "feature_index fractional",
        files: &[("graph/features.csv", "node_id,feature_index\na,1.5\n")],
        args: TRAIN_GCN,
        needle: "features.csv:2",
    },
    Case {
        name: "feature_index 4294967295",
        files: &[("graph/features.csv", "node_id,feature_index\na,0\nb,4294967295\n")],
        args: TRAIN_GCN,
        needle: "features.csv",
    },
    Case {
        name: "feature_index 4294967296",
        files: &[("graph/features.csv", "node_id,feature_index\na,4294967296\n")],
        args: TRAIN_GCN,
        needle: "features.csv:2",
    },
    Case {
        name: "feature value NaN",
        files: &[("graph/features.csv", "node_id,feature_index,value\na,0,1\nb,1,NaN\n")],
        args: TRAIN_GCN,
        needle: "features.csv:3",
    },
    Case {
        name: "feature value inf",
        files: &[("graph/features.csv", "node_id,feature_index,value\na,0,inf\n")],
        args: TRAIN_GCN,
        needle: "features.csv:2",
    },
    Case {
        name: "feature value not a number",
        files: &[("graph/features.csv", "node_id,feature_index,value\na,0,high\n")],
        args: TRAIN_GCN,
        needle: "features.csv:2",
    },
    Case {
        name: "duplicate node",
        files: &[("graph/nodes.csv", "node_id,label,split\na,x,train\nb,y,train\na,y,val\n")],
        args: TRAIN_GCN,
        needle: "nodes.csv:4",
    },
    Case {
        name: "empty node id",
        files: &[("graph/nodes.csv", "node_id,label,split\n,x,train\n")],
        args: TRAIN_GCN,
        needle: "nodes.csv:2",
    },
    Case {
        name: "unknown split",
        files: &[("graph/nodes.csv", "node_id,label,split\na,x,training\n")],
        args: TRAIN_GCN,
        needle: "nodes.csv:2",
    },
    Case {
        name: "empty nodes.csv",
        files: &[("graph/nodes.csv", "")],
        args: TRAIN_GCN,
        needle: "nodes.csv",
    },
    Case {
        name: "nodes.csv with a header only",
        files: &[("graph/nodes.csv", "node_id,label,split\n")],
        args: TRAIN_GCN,
        needle: "nodes.csv",
    },
    Case {
        name: "empty features.csv",
        files: &[("graph/features.csv", "")],
        args: TRAIN_GCN,
        needle: "features.csv",
    },
    Case {
        name: "features.csv with a header only",
        files: &[("graph/features.csv", "node_id,feature_index\n")],
        args: TRAIN_GCN,
        needle: "features.csv",
    },
    Case {
        name: "empty edges.csv",
        files: &[("graph/edges.csv", "")],
        args: TRAIN_GCN,
        needle: "edges.csv",
    },
    Case {
        name: "no train nodes",
        files: &[(
            "graph/nodes.csv",
            "node_id,label,split\na,x,val\nb,y,val\nc,x,val\nd,y,val\ne,x,test\nf,y,test\n",
        )],
        args: TRAIN_GCN,
        needle: "train split",
    },
    Case {
        name: "no val nodes",
        files: &[(
            "graph/nodes.csv",
            "node_id,label,split\na,x,train\nb,y,train\nc,x,train\nd,y,train\ne,x,test\nf,y,test\n",
        )],
        args: TRAIN_GCN,
        needle: "val split",
    },
    Case {
        name: "no test nodes",
        files: &[(
            "graph/nodes.csv",
            "node_id,label,split\na,x,train\nb,y,train\nc,x,val\nd,y,val\ne,x,val\nf,y,val\n",
        )],
        args: TRAIN_GCN,
        needle: "test split",
    },
    Case {
        name: "train node without a label",
        files: &[("graph/nodes.csv", "node_id,label,split\na,,train\nb,y,train\n")],
        args: TRAIN_GCN,
        needle: "nodes.csv:2",
    },
    Case {
        name: "val node without a label",
        files: &[("graph/nodes.csv", "node_id,label,split\na,x,train\nb,y,train\nc,,val\n")],
        args: TRAIN_GCN,
        needle: "nodes.csv:4",
    },
    Case {
        name: "score: a label the model does not know",
        files: &[(
            "graph/nodes.csv",
            "node_id,label,split\na,x,train\nb,y,train\nc,x,val\nd,y,val\ne,z,test\nf,y,test\n",
        )],
        args: SCORE_GRAPH,
        needle: "nodes.csv",
    },
    Case {
        name: "score: more features than the model was trained on",
        files: &[(
            "graph/features.csv",
            "node_id,feature_index,value\na,0,1\nb,1,1\nc,0,0.5\nd,1,2\ne,2,1\nf,7,1\n",
        )],
        args: SCORE_GRAPH,
        needle: "features.csv",
    },
    Case {
        name: "score: edge to an unknown node",
        files: &[("graph/edges.csv", "src,dst\na,zz\n")],
        args: SCORE_GRAPH,
        needle: "edges.csv:2",
    },
    Case {
        name: "score: unknown built-in dataset",
        files: &[],
        args: &["score", "--run", "run", "--input", "builtin:citeseer", "--output", "scores.csv"],
        needle: "citeseer",
    },
];

#[test]
fn bad_graph_folders_are_refused_naming_the_file_and_line() {
    let baseline = baseline(
        &[
            ("gcn.toml", GRAPH_TOML),
            ("graph/nodes.csv", NODES),
            ("graph/features.csv", FEATURES),
            ("graph/edges.csv", EDGES),
        ],
        &[("gcn.toml", "run")],
    );
    let mut failures = run_cases(baseline.path(), GRAPH_CASES, &[]);
    let built = [Built {
        name: "nodes.csv not UTF-8",
        build: |d| put(d, "graph/nodes.csv", b"node_id,label,split\na,x,train\nb,\xff\xfe,train\n"),
        args: TRAIN_GCN,
        needle: "nodes.csv:3",
    }];
    failures.extend(run_built(baseline.path(), &built, &[]));
    report("graph folder", GRAPH_CASES.len() + built.len(), failures);
}

// ---------------------------------------------------------------------------------------
// Event logs (purchase intent, and recommenders from a Taobao log)
// ---------------------------------------------------------------------------------------

/// A valid 30-row Taobao log (10 users, 3 of whom buy in the two days before the last
/// event) followed by the given rows, which start on line 31.
macro_rules! log_with {
    ($($row:literal),*) => {
        concat!(
            "1,101,7,pv,1511600000\n1,201,8,cart,1511700000\n1,101,7,pv,1511900000\n",
            "2,102,7,pv,1511600000\n2,202,8,cart,1511700000\n2,102,7,pv,1511900000\n",
            "3,103,7,pv,1511600000\n3,203,8,cart,1511700000\n3,103,7,buy,1511900000\n",
            "4,104,7,pv,1511600000\n4,204,8,cart,1511700000\n4,104,7,pv,1511900000\n",
            "5,105,7,pv,1511600000\n5,205,8,cart,1511700000\n5,105,7,pv,1511900000\n",
            "6,106,7,pv,1511600000\n6,206,8,cart,1511700000\n6,106,7,buy,1511900000\n",
            "7,107,7,pv,1511600000\n7,207,8,cart,1511700000\n7,107,7,pv,1511900000\n",
            "8,108,7,pv,1511600000\n8,208,8,cart,1511700000\n8,108,7,pv,1511900000\n",
            "9,109,7,pv,1511600000\n9,209,8,cart,1511700000\n9,109,7,buy,1511900000\n",
            "10,110,7,pv,1511600000\n10,210,8,cart,1511700000\n10,110,7,pv,1511900000\n",
            $($row),*
        )
    };
}

const LOG: &str = log_with!();

const INTENT_TOML: &str = r#"[model]
kind = "intent"
embedding_size = 4
conv_channels = 4
hidden = 4

[data]
events = "log.csv"
cut = "last 2 days"
window = "2 days"
sequence_length = 4
val_fraction = 0.2
test_fraction = 0.2

[train]
epochs = 1
batch_size = 4
"#;

const TAOBAO_TOML: &str = r#"[model]
kind = "recommender"
embedding_size = 4
layers = 1
eval_k = [2]

[data]
format = "taobao"
events = "log.csv"
behaviors = { pv = 1.0, cart = 2.0, buy = 3.0 }
test_fraction = 0.3

[train]
epochs = 1
batch_size = 8
early_stopping = { metric = "val_recall@2", direction = "max" }
"#;

const TRAIN_INTENT: &[&str] = &["train", "--config", "intent.toml"];
const TRAIN_TAOBAO: &[&str] = &["train", "--config", "taobao.toml"];
const SCORE_EVENTS: &[&str] =
    &["score", "--run", "run", "--input", "in.csv", "--output", "scores.csv"];

const EVENT_CASES: &[Case] = &[
    Case {
        name: "unknown behavior",
        files: &[("log.csv", log_with!("1,2,3,like,1511600001\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "empty behavior",
        files: &[("log.csv", log_with!("1,2,3,,1511600001\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "timestamp not a number",
        files: &[("log.csv", log_with!("1,2,3,pv,noon\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "fractional timestamp",
        files: &[("log.csv", log_with!("1,2,3,pv,1511600000.5\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "timestamp -9223372036854775808",
        files: &[("log.csv", log_with!("1,2,3,pv,-9223372036854775808\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "timestamp 9223372036854775807",
        files: &[("log.csv", log_with!("1,2,3,pv,9223372036854775807\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "timestamp past i64",
        files: &[("log.csv", log_with!("1,2,3,pv,9223372036854775808\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "user id 18446744073709551615",
        files: &[("log.csv", log_with!("18446744073709551615,2,3,pv,1511600001\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "user id negative",
        files: &[("log.csv", log_with!("-1,2,3,pv,1511600001\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "user id not a number",
        files: &[("log.csv", log_with!("alice,2,3,pv,1511600001\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "item id past u64",
        files: &[("log.csv", log_with!("1,18446744073709551616,3,pv,1511600001\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "category id 2^62",
        files: &[("log.csv", log_with!("1,2,4611686018427387904,pv,1511600001\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "row with 4 columns",
        files: &[("log.csv", log_with!("1,2,3,pv\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "row with 6 columns",
        files: &[("log.csv", log_with!("1,2,3,pv,1511600001,extra\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case {
        name: "row with NUL bytes",
        files: &[("log.csv", log_with!("\0\0\0\0\n"))],
        args: TRAIN_INTENT,
        needle: "log.csv:31",
    },
    Case { name: "empty log", files: &[("log.csv", "")], args: TRAIN_INTENT, needle: "log.csv" },
    Case {
        name: "log with a header only",
        files: &[("log.csv", "user_id,item_id,category_id,behavior,timestamp\n")],
        args: TRAIN_INTENT,
        needle: "log.csv",
    },
    Case {
        name: "log of blank lines",
        files: &[("log.csv", "\n\n\n")],
        args: TRAIN_INTENT,
        needle: "log.csv",
    },
    Case {
        name: "log missing",
        files: &[("log.csv", MISSING)],
        args: TRAIN_INTENT,
        needle: "log.csv",
    },
    Case {
        name: "log is a folder",
        files: &[("log.csv", MISSING), ("log.csv/", "")],
        args: TRAIN_INTENT,
        needle: "log.csv",
    },
    Case {
        name: "data.cut after the last event",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.cut=1600000000"],
        needle: "data.cut",
    },
    Case {
        name: "data.cut not a time",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.cut=yesterday"],
        needle: "data.cut",
    },
    Case {
        name: "data.cut counting back a negative span",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.cut=last -1 days"],
        needle: "data.cut",
    },
    Case {
        name: "data.window of 0 days",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.window=0 days"],
        needle: "data.window",
    },
    Case {
        name: "data.window negative",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.window=-5"],
        needle: "data.window",
    },
    Case {
        name: "data.sequence_length = 0",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.sequence_length=0"],
        needle: "data.sequence_length",
    },
    Case {
        name: "data.sequence_length = 1e12",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.sequence_length=1000000000000"],
        needle: "data.sequence_length",
    },
    Case {
        name: "data.vocab_size = 0",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.vocab_size=0"],
        needle: "data.vocab_size",
    },
    Case {
        name: "data.val_fraction = 1",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.val_fraction=1.0"],
        needle: "data.val_fraction",
    },
    Case {
        name: "data.val_fraction + data.test_fraction = 1",
        files: &[],
        args: &[
            "train",
            "--config",
            "intent.toml",
            "--set",
            "data.val_fraction=0.5",
            "--set",
            "data.test_fraction=0.5",
        ],
        needle: "data.test_fraction",
    },
    Case {
        name: "data.skip_bad_rows not a boolean",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.skip_bad_rows=\"yes\""],
        needle: "data.skip_bad_rows",
    },
    Case {
        name: "unknown key in an intent [data]",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "data.event=\"log.csv\""],
        needle: "data.event",
    },
    Case {
        name: "unknown key in an intent [model]",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "model.layers=2"],
        needle: "model.layers",
    },
    Case {
        name: "intent model.embedding_size = 1e12",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "model.embedding_size=1000000000000"],
        needle: "model.embedding_size",
    },
    Case {
        name: "intent model.hidden = 1e12",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "model.hidden=1000000000000"],
        needle: "model.hidden",
    },
    Case {
        name: "intent model.kernel_size = 0",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "model.kernel_size=0"],
        needle: "model.kernel_size",
    },
    Case {
        name: "intent model.pos_weight = NaN",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "model.pos_weight=nan"],
        needle: "model.pos_weight",
    },
    Case {
        name: "score: unknown behavior",
        files: &[("in.csv", "1,101,7,pv,1511600000\n1,2,3,like,1511600001\n")],
        args: SCORE_EVENTS,
        needle: "in.csv:2",
    },
    Case {
        name: "score: timestamp -9223372036854775808",
        files: &[("in.csv", "1,101,7,pv,1511600000\n1,2,3,pv,-9223372036854775808\n")],
        args: SCORE_EVENTS,
        needle: "in.csv:2",
    },
    Case {
        name: "score: user id 18446744073709551615",
        files: &[("in.csv", "1,101,7,pv,1511600000\n18446744073709551615,2,3,pv,1511600001\n")],
        args: SCORE_EVENTS,
        needle: "in.csv:2",
    },
    Case {
        name: "score: empty log",
        files: &[("in.csv", "")],
        args: SCORE_EVENTS,
        needle: "in.csv",
    },
    Case { name: "score: log missing", files: &[], args: SCORE_EVENTS, needle: "in.csv" },
    Case {
        name: "score: the run's vocab.csv damaged",
        files: &[("in.csv", "1,101,7,pv,1511600000\n"), ("run/vocab.csv", "garbage\n")],
        args: SCORE_EVENTS,
        needle: "vocab.csv",
    },
    Case {
        name: "intent: label smoothing on a probability",
        files: &[],
        args: &["train", "--config", "intent.toml", "--set", "train.label_smoothing=0.1"],
        needle: "train.label_smoothing",
    },
    Case {
        name: "taobao recommender: label smoothing on a ranking",
        files: &[],
        args: &["train", "--config", "taobao.toml", "--set", "train.label_smoothing=0.1"],
        needle: "train.label_smoothing",
    },
    Case {
        name: "taobao recommender: unknown behavior in data.behaviors",
        files: &[],
        args: &["train", "--config", "taobao.toml", "--set", "data.behaviors.like=1.0"],
        needle: "data.behaviors",
    },
    Case {
        name: "taobao recommender: negative behavior weight",
        files: &[],
        args: &["train", "--config", "taobao.toml", "--set", "data.behaviors.pv=-1.0"],
        needle: "data.behaviors",
    },
    Case {
        name: "taobao recommender: NaN behavior weight",
        files: &[],
        args: &["train", "--config", "taobao.toml", "--set", "data.behaviors.cart=nan"],
        needle: "data.behaviors",
    },
    Case {
        name: "taobao recommender: infinite behavior weight",
        files: &[],
        args: &["train", "--config", "taobao.toml", "--set", "data.behaviors.buy=inf"],
        needle: "data.behaviors",
    },
    Case {
        name: "taobao recommender: every behavior weighted 0",
        files: &[],
        args: &[
            "train",
            "--config",
            "taobao.toml",
            "--set",
            "data.behaviors={ pv = 0.0, cart = 0.0, buy = 0.0 }",
        ],
        needle: "data.behaviors",
    },
    Case {
        name: "taobao recommender: data.test_fraction = 1",
        files: &[],
        args: &["train", "--config", "taobao.toml", "--set", "data.test_fraction=1.0"],
        needle: "data.test_fraction",
    },
    Case {
        name: "taobao recommender: data.train with format taobao",
        files: &[],
        args: &["train", "--config", "taobao.toml", "--set", "data.train=\"train.txt\""],
        needle: "train",
    },
    Case {
        name: "taobao recommender: unknown behavior in the log",
        files: &[("log.csv", log_with!("1,2,3,like,1511600001\n"))],
        args: TRAIN_TAOBAO,
        needle: "log.csv:31",
    },
    Case {
        name: "taobao recommender: user id 18446744073709551615",
        files: &[("log.csv", log_with!("18446744073709551615,2,3,pv,1511600001\n"))],
        args: TRAIN_TAOBAO,
        needle: "log.csv:31",
    },
    Case {
        name: "taobao recommender: timestamp -9223372036854775808",
        files: &[("log.csv", log_with!("1,2,3,pv,-9223372036854775808\n"))],
        args: TRAIN_TAOBAO,
        needle: "log.csv:31",
    },
];

#[test]
fn bad_event_logs_are_refused_naming_the_file_and_line() {
    let baseline = baseline(
        &[("intent.toml", INTENT_TOML), ("taobao.toml", TAOBAO_TOML), ("log.csv", LOG)],
        &[("intent.toml", "run"), ("taobao.toml", "taobao_run")],
    );
    let mut failures = run_cases(baseline.path(), EVENT_CASES, &[]);
    let built = [
        Built {
            name: "a 1 MB timestamp",
            build: |d| put(d, "log.csv", format!("{LOG}1,2,3,pv,{}\n", "9".repeat(1 << 20))),
            args: TRAIN_INTENT,
            needle: "log.csv:31",
        },
        Built {
            name: "a 1 MB behavior",
            build: |d| {
                put(d, "log.csv", format!("{LOG}1,2,3,{},1511600001\n", "x".repeat(1 << 20)))
            },
            args: TRAIN_INTENT,
            needle: "log.csv:31",
        },
        Built {
            name: "a 1 MB row without commas",
            build: |d| put(d, "log.csv", format!("{LOG}{}\n", "y".repeat(1 << 20))),
            args: TRAIN_INTENT,
            needle: "log.csv:31",
        },
        Built {
            name: "a 1 MB row of commas",
            build: |d| put(d, "log.csv", format!("{LOG}{}\n", ",".repeat(1 << 20))),
            args: TRAIN_INTENT,
            needle: "log.csv:31",
        },
        Built {
            name: "a row that is not UTF-8",
            build: |d| {
                put(d, "log.csv", [LOG.as_bytes(), &b"1,2,3,\xff\xfe,1511600001\n"[..]].concat())
            },
            args: TRAIN_INTENT,
            needle: "log.csv:31",
        },
        Built {
            name: "score: a 1 MB row",
            build: |d| {
                put(d, "in.csv", format!("1,101,7,pv,1511600000\n{}\n", "z".repeat(1 << 20)))
            },
            args: SCORE_EVENTS,
            needle: "in.csv:2",
        },
    ];
    failures.extend(run_built(baseline.path(), &built, &[]));
    report("event log", EVENT_CASES.len() + built.len(), failures);
}

// ---------------------------------------------------------------------------------------
// Interaction files (LightGCN and pairs formats)
// ---------------------------------------------------------------------------------------

const REC_TOML: &str = r#"[model]
kind = "recommender"
embedding_size = 8
layers = 1
eval_k = [2]

[data]
format = "lightgcn"
train = "train.txt"
test = "test.txt"

[train]
epochs = 1
batch_size = 4
early_stopping = { metric = "val_recall@2", direction = "max" }
"#;

const REC_TRAIN: &str = "0 1 2\n1 0 3\n2 2 4\n3 1 4\n";
const REC_TEST: &str = "0 3\n1 4\n2 0\n";

const TRAIN_REC: &[&str] = &["train", "--config", "rec.toml"];
const RECOMMEND_USERS: &[&str] =
    &["recommend", "--run", "run", "--users", "users.txt", "--output", "recs.csv"];

const INTERACTION_CASES: &[Case] = &[
    Case {
        name: "user id not a number",
        files: &[("train.txt", "0 1 2\nabc 3\n")],
        args: TRAIN_REC,
        needle: "train.txt:2",
    },
    Case {
        name: "item id not a number",
        files: &[("train.txt", "0 1 2\n1 x\n")],
        args: TRAIN_REC,
        needle: "train.txt:2",
    },
    Case {
        name: "user id negative",
        files: &[("train.txt", "0 1 2\n-1 3\n")],
        args: TRAIN_REC,
        needle: "train.txt:2",
    },
    Case {
        name: "item id fractional",
        files: &[("train.txt", "0 1 2\n1 2.5\n")],
        args: TRAIN_REC,
        needle: "train.txt:2",
    },
    Case {
        name: "user id 4000000000 (memory estimate up front)",
        files: &[("train.txt", "0 1 2\n1 0 3\n2 2 4\n3 1 4\n4000000000 1\n")],
        args: TRAIN_REC,
        needle: "train.txt",
    },
    Case {
        name: "item id 4000000000 (memory estimate up front)",
        files: &[("train.txt", "0 1 2\n1 0 3\n2 2 4\n3 1 4000000000\n")],
        args: TRAIN_REC,
        needle: "train.txt",
    },
    Case {
        name: "user id 18446744073709551615",
        files: &[("train.txt", "0 1 2\n1 0 3\n18446744073709551615 1\n")],
        args: TRAIN_REC,
        needle: "train.txt",
    },
    Case {
        name: "user id past u64",
        files: &[("train.txt", "0 1 2\n18446744073709551616 1\n")],
        args: TRAIN_REC,
        needle: "train.txt:2",
    },
    Case {
        name: "empty train file",
        files: &[("train.txt", "")],
        args: TRAIN_REC,
        needle: "train.txt",
    },
    Case {
        name: "train file of blank lines",
        files: &[("train.txt", "\n\n")],
        args: TRAIN_REC,
        needle: "train.txt",
    },
    Case {
        name: "empty test file",
        files: &[("test.txt", "")],
        args: TRAIN_REC,
        needle: "test.txt",
    },
    Case {
        name: "train file missing",
        files: &[("train.txt", MISSING)],
        args: TRAIN_REC,
        needle: "train.txt",
    },
    Case {
        name: "test id not a number",
        files: &[("test.txt", "0 3\n1 four\n")],
        args: TRAIN_REC,
        needle: "test.txt:2",
    },
    Case {
        name: "one user interacted with every item",
        files: &[("train.txt", "0 0 1 2 3 4\n1 0\n2 1\n")],
        args: TRAIN_REC,
        needle: "train.txt",
    },
    Case {
        name: "ids beyond data.num_users",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "data.num_users=2"],
        needle: "train.txt",
    },
    Case {
        name: "test item beyond data.num_items",
        files: &[("test.txt", "0 3\n1 9\n")],
        args: &["train", "--config", "rec.toml", "--set", "data.num_items=5"],
        needle: "test.txt",
    },
    Case {
        name: "data.num_items = 0",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "data.num_items=0"],
        needle: "data.num_items",
    },
    Case {
        name: "data.num_users = 1e12 (memory estimate up front)",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "data.num_users=1000000000000"],
        needle: "data.num_users",
    },
    Case {
        name: "id below data.id_base",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "data.id_base=1"],
        needle: "train.txt:1",
    },
    Case {
        name: "data.id_base negative",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "data.id_base=-1"],
        needle: "data.id_base",
    },
    Case {
        name: "data.test missing",
        files: &[(
            "rec.toml",
            "[model]\nkind = \"recommender\"\neval_k = [2]\n\n[data]\nformat = \"lightgcn\"\ntrain = \"train.txt\"\n\n[train]\nearly_stopping = { metric = \"val_recall@2\" }\n",
        )],
        args: TRAIN_REC,
        needle: "data.test",
    },
    Case {
        name: "data.events with format lightgcn",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "data.events=\"log.csv\""],
        needle: "data.events",
    },
    Case {
        name: "unknown data.format",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "data.format=\"csv\""],
        needle: "data.format",
    },
    Case {
        name: "unknown key in a recommender [data]",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "data.trian=\"train.txt\""],
        needle: "data.trian",
    },
    Case {
        name: "pairs format: a line with one field",
        files: &[("train.txt", "0 1\n1\n")],
        args: &["train", "--config", "rec.toml", "--set", "data.format=\"pairs\""],
        needle: "train.txt:2",
    },
    Case {
        name: "model.embedding_size = 0",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.embedding_size=0"],
        needle: "model.embedding_size",
    },
    Case {
        name: "model.embedding_size = 1e12",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.embedding_size=1000000000000"],
        needle: "model.embedding_size",
    },
    Case {
        name: "model.layers = 1e12",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.layers=1000000000000"],
        needle: "model.layers",
    },
    Case {
        name: "model.eval_k = [0]",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.eval_k=[0]"],
        needle: "model.eval_k",
    },
    Case {
        name: "model.eval_k = []",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.eval_k=[]"],
        needle: "model.eval_k",
    },
    Case {
        name: "model.l2 negative",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.l2=-1.0"],
        needle: "model.l2",
    },
    Case {
        name: "model.l2 = NaN",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.l2=nan"],
        needle: "model.l2",
    },
    Case {
        name: "model.init_std negative",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.init_std=-1.0"],
        needle: "model.init_std",
    },
    Case {
        name: "model.init_std = NaN",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.init_std=nan"],
        needle: "model.init_std",
    },
    Case {
        name: "GAT encoder with heads not dividing the embedding",
        files: &[],
        args: &[
            "train",
            "--config",
            "rec.toml",
            "--set",
            "model.encoder=\"gat\"",
            "--set",
            "model.heads=3",
        ],
        needle: "model.heads",
    },
    Case {
        name: "unknown model.encoder",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.encoder=\"mlp\""],
        needle: "model.encoder",
    },
    Case {
        name: "unknown key in a recommender [model]",
        files: &[],
        args: &["train", "--config", "rec.toml", "--set", "model.hidden=8"],
        needle: "model.hidden",
    },
    Case {
        name: "recommend: user id not a number",
        files: &[("users.txt", "0\nabc\n")],
        args: RECOMMEND_USERS,
        needle: "users.txt:2",
    },
    Case {
        name: "recommend: unknown user",
        files: &[("users.txt", "0\n99\n")],
        args: RECOMMEND_USERS,
        needle: "users.txt:2",
    },
    Case {
        name: "recommend: user 18446744073709551615",
        files: &[("users.txt", "18446744073709551615\n")],
        args: RECOMMEND_USERS,
        needle: "users.txt:1",
    },
    Case {
        name: "recommend: empty users file",
        files: &[("users.txt", "")],
        args: RECOMMEND_USERS,
        needle: "users.txt",
    },
    Case {
        name: "recommend: users file missing",
        files: &[],
        args: RECOMMEND_USERS,
        needle: "users.txt",
    },
    Case {
        name: "recommend: training data changed since training",
        files: &[("train.txt", "0 1 2\n1 0 3\n2 2 4\n3 1 4\n9 9\n")],
        args: &["recommend", "--run", "run", "--output", "recs.csv"],
        needle: "train.txt",
    },
    Case {
        name: "recommend: --output is a folder",
        files: &[("recs/", "")],
        args: &["recommend", "--run", "run", "--output", "recs"],
        needle: "recs",
    },
    Case {
        name: "score with a recommender",
        files: &[],
        args: &["score", "--run", "run", "--input", "train.txt", "--output", "scores.csv"],
        needle: "recommend",
    },
];

#[test]
fn bad_interaction_files_are_refused_naming_the_file_and_line() {
    let baseline = baseline(
        &[("rec.toml", REC_TOML), ("train.txt", REC_TRAIN), ("test.txt", REC_TEST)],
        &[("rec.toml", "run")],
    );
    let failures = run_cases(baseline.path(), INTERACTION_CASES, &[]);
    report("interaction file", INTERACTION_CASES.len(), failures);
}

// ---------------------------------------------------------------------------------------
// Review CSVs
// ---------------------------------------------------------------------------------------

const BERT_TOML: &str = r#"[model]
kind = "bert"
tokenizer_vocab_size = 40
tokenizer_min_frequency = 1
layers = 1
hidden = 8
heads = 2
intermediate = 16
max_length = 16

[data]
path = "reviews.csv"
text_column = "review"
label_column = "label"
test_fraction = 0.2
val_fraction = 0.2

[train]
epochs = 1
batch_size = 4
"#;

/// 20 reviews, 2 classes; the rows start on line 2, so an appended row is on line 22.
macro_rules! reviews_with {
    ($($row:literal),*) => {
        concat!(
            "label,review\n",
            "0,bad thing 0\n1,good item 1\n0,bad thing 2\n1,good item 3\n0,bad thing 4\n",
            "1,good item 5\n0,bad thing 6\n1,good item 7\n0,bad thing 8\n1,good item 9\n",
            "0,bad thing 10\n1,good item 11\n0,bad thing 12\n1,good item 13\n0,bad thing 14\n",
            "1,good item 15\n0,bad thing 16\n1,good item 17\n0,bad thing 18\n1,good item 19\n",
            $($row),*
        )
    };
}

const REVIEWS: &str = reviews_with!();

const TRAIN_BERT: &[&str] = &["train", "--config", "bert.toml"];
const SCORE_REVIEWS: &[&str] =
    &["score", "--run", "run", "--input", "in.csv", "--output", "scores.csv"];

const REVIEW_CASES: &[Case] = &[
    Case {
        name: "text column missing",
        files: &[("reviews.csv", "label,text\n0,bad\n1,good\n")],
        args: TRAIN_BERT,
        needle: "reviews.csv:1",
    },
    Case {
        name: "label column missing",
        files: &[("reviews.csv", "y,review\n0,bad\n1,good\n")],
        args: TRAIN_BERT,
        needle: "reviews.csv:1",
    },
    Case {
        name: "empty file",
        files: &[("reviews.csv", "")],
        args: TRAIN_BERT,
        needle: "reviews.csv",
    },
    Case {
        name: "header only",
        files: &[("reviews.csv", "label,review\n")],
        args: TRAIN_BERT,
        needle: "reviews.csv",
    },
    Case {
        name: "a single class",
        files: &[("reviews.csv", "label,review\n1,good\n1,fine\n1,great\n1,nice\n1,ok\n")],
        args: TRAIN_BERT,
        needle: "reviews.csv",
    },
    Case {
        name: "empty label",
        files: &[("reviews.csv", reviews_with!(",good stuff\n"))],
        args: TRAIN_BERT,
        needle: "reviews.csv:22",
    },
    Case {
        name: "row without its text field",
        files: &[("reviews.csv", reviews_with!("1\n"))],
        args: TRAIN_BERT,
        needle: "reviews.csv:22",
    },
    Case {
        name: "unterminated quote",
        files: &[("reviews.csv", reviews_with!("1,\"never closed\n0,bad\n"))],
        args: TRAIN_BERT,
        needle: "reviews.csv:22",
    },
    Case {
        name: "file missing",
        files: &[("reviews.csv", MISSING)],
        args: TRAIN_BERT,
        needle: "reviews.csv",
    },
    Case {
        name: "data.test_fraction + data.val_fraction above 1",
        files: &[],
        args: &[
            "train",
            "--config",
            "bert.toml",
            "--set",
            "data.test_fraction=0.6",
            "--set",
            "data.val_fraction=0.5",
        ],
        needle: "data.test_fraction",
    },
    Case {
        name: "data.val_fraction = NaN",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "data.val_fraction=nan"],
        needle: "data.val_fraction",
    },
    Case {
        name: "unknown key in a text [data]",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "data.text=\"review\""],
        needle: "data.text",
    },
    Case {
        name: "model.tokenizer_vocab_size = 0",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.tokenizer_vocab_size=0"],
        needle: "model.tokenizer_vocab_size",
    },
    Case {
        name: "model.tokenizer_vocab_size = 5",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.tokenizer_vocab_size=5"],
        needle: "model.tokenizer_vocab_size",
    },
    Case {
        name: "model.tokenizer_cjk not a known rule",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.tokenizer_cjk=\"phrases\""],
        needle: "model.tokenizer_cjk",
    },
    Case {
        name: "model.tokenizer_cjk with a given tokenizer",
        files: &[(
            "bert.toml",
            "[model]\nkind = \"bert\"\ntokenizer = \"tok.json\"\ntokenizer_cjk = \"words\"\n\n[data]\npath = \"reviews.csv\"\ntext_column = \"review\"\nlabel_column = \"label\"\n",
        )],
        args: TRAIN_BERT,
        needle: "model.tokenizer_cjk",
    },
    Case {
        name: "model.hidden = 0",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.hidden=0"],
        needle: "model.hidden",
    },
    Case {
        name: "model.hidden = 1e12",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.hidden=1000000000000"],
        needle: "model.hidden",
    },
    Case {
        name: "model.heads = 0",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.heads=0"],
        needle: "model.heads",
    },
    Case {
        name: "model.heads not dividing model.hidden",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.heads=3"],
        needle: "model.heads",
    },
    Case {
        name: "model.layers = 0",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.layers=0"],
        needle: "model.layers",
    },
    Case {
        name: "model.layers = 1e12",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.layers=1000000000000"],
        needle: "model.layers",
    },
    Case {
        name: "model.intermediate = 0",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.intermediate=0"],
        needle: "model.intermediate",
    },
    Case {
        name: "model.intermediate = 1e12",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.intermediate=1000000000000"],
        needle: "model.intermediate",
    },
    Case {
        name: "model.max_length = 1",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.max_length=1"],
        needle: "model.max_length",
    },
    Case {
        name: "model.max_length = 1e12",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.max_length=1000000000000"],
        needle: "model.max_length",
    },
    Case {
        name: "model.layer_norm_eps = NaN",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.layer_norm_eps=nan"],
        needle: "model.layer_norm_eps",
    },
    Case {
        name: "model.layer_norm_eps = 0",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.layer_norm_eps=0.0"],
        needle: "model.layer_norm_eps",
    },
    Case {
        name: "model.dropout = 1",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.dropout=1.0"],
        needle: "model.dropout",
    },
    Case {
        name: "model.encoder_dropout negative",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.encoder_dropout=-0.1"],
        needle: "model.encoder_dropout",
    },
    Case {
        name: "model.init_std = NaN",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.init_std=nan"],
        needle: "model.init_std",
    },
    Case {
        name: "neither a tokenizer nor a pretrained model",
        files: &[(
            "bert.toml",
            "[model]\nkind = \"bert\"\n\n[data]\npath = \"reviews.csv\"\ntext_column = \"review\"\nlabel_column = \"label\"\n",
        )],
        args: TRAIN_BERT,
        needle: "model.tokenizer",
    },
    Case {
        name: "both model.tokenizer and model.tokenizer_vocab_size",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.tokenizer=\"tok.json\""],
        needle: "model.tokenizer",
    },
    Case {
        name: "model.pretrained folder missing",
        files: &[(
            "bert.toml",
            "[model]\nkind = \"bert\"\npretrained = \"nowhere\"\n\n[data]\npath = \"reviews.csv\"\ntext_column = \"review\"\nlabel_column = \"label\"\n",
        )],
        args: TRAIN_BERT,
        needle: "nowhere",
    },
    Case {
        name: "unknown key in a bert [model]",
        files: &[],
        args: &["train", "--config", "bert.toml", "--set", "model.vocab=100"],
        needle: "model.vocab",
    },
    Case {
        name: "score: a label never seen in training",
        files: &[("in.csv", "label,review\n0,good\n7,bad\n")],
        args: SCORE_REVIEWS,
        needle: "in.csv:3",
    },
    Case {
        name: "score: text column missing",
        files: &[("in.csv", "label,text\n0,good\n")],
        args: SCORE_REVIEWS,
        needle: "in.csv:1",
    },
    Case {
        name: "score: empty file",
        files: &[("in.csv", "")],
        args: SCORE_REVIEWS,
        needle: "in.csv",
    },
    Case {
        name: "score: unterminated quote",
        files: &[("in.csv", "label,review\n0,good\n1,\"never closed\n")],
        args: SCORE_REVIEWS,
        needle: "in.csv:3",
    },
    Case { name: "score: input missing", files: &[], args: SCORE_REVIEWS, needle: "in.csv" },
];

#[test]
fn bad_review_csvs_are_refused_naming_the_file_and_line() {
    let baseline =
        baseline(&[("bert.toml", BERT_TOML), ("reviews.csv", REVIEWS)], &[("bert.toml", "run")]);
    let mut failures = run_cases(baseline.path(), REVIEW_CASES, &[]);
    let built = [
        Built {
            name: "a row that is not UTF-8",
            build: |d| {
                put(d, "reviews.csv", [REVIEWS.as_bytes(), &b"1,\xff\xfe bad\n"[..]].concat())
            },
            args: TRAIN_BERT,
            needle: "reviews.csv:22",
        },
        Built {
            name: "score: a row that is not UTF-8",
            build: |d| put(d, "in.csv", b"label,review\n0,good\n1,\xff\xfe bad\n"),
            args: SCORE_REVIEWS,
            needle: "in.csv:3",
        },
        Built {
            name: "score: a 1 MB review with an unknown label",
            build: |d| put(d, "in.csv", format!("label,review\n{},good\n", "9".repeat(1 << 20))),
            args: SCORE_REVIEWS,
            needle: "in.csv:2",
        },
    ];
    failures.extend(run_built(baseline.path(), &built, &[]));
    report("review CSV", REVIEW_CASES.len() + built.len(), failures);
}

// ---------------------------------------------------------------------------------------
// Images and IDX files
// ---------------------------------------------------------------------------------------

const VGG_TOML: &str = r#"[model]
kind = "vgg"
blocks = [4, "M"]
input_size = 4
embedding_size = 4

[data]
source = "imgs"
test_fraction = 0.25
val_fraction = 0.25

[train]
epochs = 1
batch_size = 4
"#;

/// A 4x4 grayscale PNG.
const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x04\x00\x00\x00\x04\x08\x00\x00\x00\x00\x8c\x9a\xc1\xa2\x00\x00\x00\x0e\x49\x44\x41\x54\x78\xda\x63\x38\x01\x04\x0c\xa8\x04\x00\x7d\x14\x0c\x81\xb6\xe0\xb1\x66\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";

const TRAIN_VGG: &[&str] = &["train", "--config", "vgg.toml"];
const TRAIN_IDX: &[&str] = &["train", "--config", "vgg.toml", "--set", "data.source=\"x.idx\""];
const EMBED_IDX: &[&str] =
    &["embed", "--run", "run", "--input", "x.idx", "--output", "catalogue.safetensors"];
const SIMILAR_BAD_INDEX: &[&str] = &["similar", "--index", "bad.safetensors", "--query", "x"];

const IMAGE_CASES: &[Case] = &[
    Case {
        name: "a non-image file named .png in a class folder",
        files: &[("imgs/cats/bad.png", "this is not a PNG\n")],
        args: TRAIN_VGG,
        needle: "bad.png",
    },
    Case {
        name: "an empty class folder",
        files: &[("imgs/birds/", "")],
        args: TRAIN_VGG,
        needle: "birds",
    },
    Case {
        name: "an empty image folder",
        files: &[("empty/", "")],
        args: &["train", "--config", "vgg.toml", "--set", "data.source=\"empty\""],
        needle: "empty",
    },
    Case {
        name: "image source missing",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "data.source=\"nowhere\""],
        needle: "nowhere",
    },
    Case {
        name: "CSV naming a missing image",
        files: &[("list.csv", "path,label\nimgs/cats/0.png,cat\nnope.png,dog\n")],
        args: &["train", "--config", "vgg.toml", "--set", "data.source=\"list.csv\""],
        needle: "list.csv:3",
    },
    Case {
        name: "CSV without a path column",
        files: &[("list.csv", "file,label\nimgs/cats/0.png,cat\n")],
        args: &["train", "--config", "vgg.toml", "--set", "data.source=\"list.csv\""],
        needle: "list.csv:1",
    },
    Case {
        name: "empty CSV",
        files: &[("list.csv", "")],
        args: &["train", "--config", "vgg.toml", "--set", "data.source=\"list.csv\""],
        needle: "list.csv",
    },
    Case {
        name: "model.input_size = 0",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.input_size=0"],
        needle: "model.input_size",
    },
    Case {
        name: "model.input_size = 1e12",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.input_size=1000000000000"],
        needle: "model.input_size",
    },
    Case {
        name: "model.embedding_size = 0",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.embedding_size=0"],
        needle: "model.embedding_size",
    },
    Case {
        name: "model.embedding_size = 1e12",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.embedding_size=1000000000000"],
        needle: "model.embedding_size",
    },
    Case {
        name: "model.blocks = [1e12]",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.blocks=[1000000000000]"],
        needle: "model.blocks",
    },
    Case {
        name: "model.blocks = []",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.blocks=[]"],
        needle: "model.blocks",
    },
    Case {
        name: "model.blocks = [0]",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.blocks=[0]"],
        needle: "model.blocks",
    },
    Case {
        name: "data.std with a 0",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "data.std=[0.0, 1.0, 1.0]"],
        needle: "data.std",
    },
    Case {
        name: "data.mean with a NaN",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "data.mean=[nan, 0.0, 0.0]"],
        needle: "data.mean",
    },
    Case {
        name: "data.resize = 0",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "data.resize=0"],
        needle: "data.resize",
    },
    Case {
        name: "data.resize = 1e12",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "data.resize=1000000000000"],
        needle: "data.resize",
    },
    Case {
        name: "data.augment.crop_padding = 1e12",
        files: &[],
        args: &[
            "train",
            "--config",
            "vgg.toml",
            "--set",
            "data.augment={ crop_padding = 1000000000000 }",
        ],
        needle: "data.augment.crop_padding",
    },
    Case {
        name: "unknown key in data.augment",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "data.augment={ rotate = 90 }"],
        needle: "data.augment.rotate",
    },
    Case {
        name: "model.dropout = 1",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.dropout=1.0"],
        needle: "model.dropout",
    },
    Case {
        name: "unknown model.preset",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.preset=\"resnet\""],
        needle: "model.preset",
    },
    Case {
        name: "unknown key in a vgg [model]",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.channels=3"],
        needle: "model.channels",
    },
    Case {
        name: "model.pretrained missing",
        files: &[],
        args: &["train", "--config", "vgg.toml", "--set", "model.pretrained=\"nope.pth\""],
        needle: "nope.pth",
    },
    Case {
        name: "model.pretrained not a weights file",
        files: &[("w.safetensors", "garbage")],
        args: &["train", "--config", "vgg.toml", "--set", "model.pretrained=\"w.safetensors\""],
        needle: "w.safetensors",
    },
    Case {
        name: "embed: a non-image file named .png",
        files: &[("catalogue/bad.png", "this is not a PNG\n")],
        args: &[
            "embed",
            "--run",
            "run",
            "--input",
            "catalogue",
            "--output",
            "catalogue.safetensors",
        ],
        needle: "bad.png",
    },
    Case {
        name: "embed: an empty folder",
        files: &[("catalogue/", "")],
        args: &[
            "embed",
            "--run",
            "run",
            "--input",
            "catalogue",
            "--output",
            "catalogue.safetensors",
        ],
        needle: "catalogue",
    },
    Case {
        name: "score: an empty class folder",
        files: &[("imgs/birds/", "")],
        args: &["score", "--run", "run", "--input", "imgs", "--output", "scores.csv"],
        needle: "birds",
    },
    Case {
        name: "similar: an index that is not safetensors",
        files: &[("bad.safetensors", "garbage")],
        args: SIMILAR_BAD_INDEX,
        needle: "bad.safetensors",
    },
    Case {
        name: "similar: a weights file as the index",
        files: &[],
        args: &["similar", "--index", "run/best.safetensors", "--query", "x"],
        needle: "best.safetensors",
    },
    Case {
        name: "similar: an empty queries file",
        files: &[("queries.txt", "")],
        args: &[
            "similar",
            "--index",
            "index.safetensors",
            "--queries",
            "queries.txt",
            "--output",
            "neighbours.csv",
        ],
        needle: "queries.txt",
    },
    Case {
        name: "similar: a query that is neither an id nor a file",
        files: &[],
        args: &["similar", "--index", "index.safetensors", "--query", "nope.png"],
        needle: "nope.png",
    },
];

fn idx_images(count: u32, rows: u32, cols: u32, pixels: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0803, count, rows, cols] {
        bytes.extend(word.to_be_bytes());
    }
    bytes.resize(16 + pixels, 0);
    bytes
}

#[test]
fn bad_images_and_idx_files_are_refused_naming_the_file() {
    let dir = TempDir::new().unwrap();
    write_files(dir.path(), &[("vgg.toml", VGG_TOML)]);
    for class in ["cats", "dogs"] {
        for i in 0..4 {
            put(dir.path(), &format!("imgs/{class}/{i}.png"), PNG);
        }
    }
    train_into(dir.path(), &["--config", "vgg.toml"], "run");
    let embedded = shopnet(
        &["embed", "--run", "run", "--input", "imgs", "--output", "index.safetensors"],
        dir.path(),
    );
    assert!(embedded.status.success(), "embed failed: {}", stderr(&embedded));
    let baseline = dir;

    let mut failures = run_cases(baseline.path(), IMAGE_CASES, &[]);
    let built = [
        Built {
            name: "IDX header with 0xFFFFFFFF images",
            build: |d| put(d, "x.idx", idx_images(u32::MAX, 4, 4, 64)),
            args: TRAIN_IDX,
            needle: "x.idx",
        },
        Built {
            name: "IDX header with 0xFFFFFFFF rows",
            build: |d| put(d, "x.idx", idx_images(4, u32::MAX, 4, 64)),
            args: TRAIN_IDX,
            needle: "x.idx",
        },
        Built {
            name: "IDX header with 0xFFFFFFFF columns",
            build: |d| put(d, "x.idx", idx_images(4, 4, u32::MAX, 64)),
            args: TRAIN_IDX,
            needle: "x.idx",
        },
        Built {
            name: "IDX header of 0xFFFFFFFF everywhere",
            build: |d| put(d, "x.idx", idx_images(u32::MAX, u32::MAX, u32::MAX, 0)),
            args: TRAIN_IDX,
            needle: "x.idx",
        },
        Built {
            name: "IDX with 0 rows",
            build: |d| put(d, "x.idx", idx_images(4, 0, 4, 0)),
            args: TRAIN_IDX,
            needle: "x.idx",
        },
        Built {
            name: "IDX with the wrong magic",
            build: |d| {
                put(d, "x.idx", [&[0u8, 0, 8, 1][..], &idx_images(4, 4, 4, 64)[4..]].concat())
            },
            args: TRAIN_IDX,
            needle: "x.idx",
        },
        Built {
            name: "IDX shorter than its header",
            build: |d| put(d, "x.idx", [0u8, 0, 8, 3]),
            args: TRAIN_IDX,
            needle: "x.idx",
        },
        Built {
            name: "IDX labels of the wrong count",
            build: |d| {
                put(d, "x.idx", idx_images(4, 4, 4, 64));
                put(
                    d,
                    "l.idx",
                    [&0x0801u32.to_be_bytes()[..], &3u32.to_be_bytes()[..], &[0u8, 1, 0][..]]
                        .concat(),
                );
            },
            args: &[
                "train",
                "--config",
                "vgg.toml",
                "--set",
                "data.source=\"x.idx\"",
                "--set",
                "data.labels=\"l.idx\"",
            ],
            needle: "l.idx",
        },
        Built {
            name: "a truncated PNG in a class folder",
            build: |d| put(d, "imgs/cats/cut.png", &PNG[..30]),
            args: TRAIN_VGG,
            needle: "cut.png",
        },
        Built {
            name: "embed: IDX header with 0xFFFFFFFF images",
            build: |d| put(d, "x.idx", idx_images(u32::MAX, 4, 4, 64)),
            args: EMBED_IDX,
            needle: "x.idx",
        },
        Built {
            name: "embed: IDX header with 0xFFFFFFFF rows and columns",
            build: |d| put(d, "x.idx", idx_images(1, u32::MAX, u32::MAX, 64)),
            args: EMBED_IDX,
            needle: "x.idx",
        },
        Built {
            name: "embed: --output is a folder",
            build: |d| fs::create_dir_all(d.join("out.safetensors")).unwrap(),
            args: &["embed", "--run", "run", "--input", "imgs", "--output", "out.safetensors"],
            needle: "out.safetensors",
        },
        Built {
            name: "similar: index with a header length of 2^63",
            build: |d| {
                put(d, "bad.safetensors", [&(1u64 << 63).to_le_bytes()[..], &b"{}"[..]].concat())
            },
            args: SIMILAR_BAD_INDEX,
            needle: "bad.safetensors",
        },
    ];
    failures.extend(run_built(baseline.path(), &built, &[]));
    report("image", IMAGE_CASES.len() + built.len(), failures);
}

// ---------------------------------------------------------------------------------------
// Run directories, weights and bundles
// ---------------------------------------------------------------------------------------

const EVAL_RUN: &[&str] = &["eval", "--run", "run"];
const EVAL_BUNDLE: &[&str] = &["eval", "--run", "bundle"];
const REPORT_RUN: &[&str] = &["report", "--run", "run"];

const RUN_CASES: &[Case] = &[
    Case {
        name: "an empty folder",
        files: &[("empty/", "")],
        args: &["eval", "--run", "empty"],
        needle: "empty",
    },
    Case {
        name: "a run folder that does not exist",
        files: &[],
        args: &["eval", "--run", "nowhere"],
        needle: "nowhere",
    },
    Case {
        name: "config.toml missing",
        files: &[("run/config.toml", MISSING)],
        args: EVAL_RUN,
        needle: "config.toml",
    },
    Case {
        name: "run.json missing",
        files: &[("run/run.json", MISSING)],
        args: EVAL_RUN,
        needle: "run.json",
    },
    Case {
        name: "run.json not JSON",
        files: &[("run/run.json", "{not json")],
        args: EVAL_RUN,
        needle: "run.json",
    },
    Case {
        name: "run.json empty",
        files: &[("run/run.json", "")],
        args: EVAL_RUN,
        needle: "run.json",
    },
    Case {
        name: "run.json of an unknown kind",
        files: &[("run/run.json", "{\"kind\": \"mlp\", \"labels\": [], \"input\": {}}")],
        args: EVAL_RUN,
        needle: "run.json",
    },
    Case {
        name: "config.toml malformed",
        files: &[("run/config.toml", "[model\nkind = \"gcn\"\n")],
        args: EVAL_RUN,
        needle: "config.toml:1",
    },
    Case {
        name: "best.safetensors missing",
        files: &[("run/best.safetensors", MISSING)],
        args: EVAL_RUN,
        needle: "best.safetensors",
    },
    Case {
        name: "best.safetensors empty",
        files: &[("run/best.safetensors", "")],
        args: EVAL_RUN,
        needle: "best.safetensors",
    },
    Case {
        name: "best.safetensors is text",
        files: &[("run/best.safetensors", "these are not weights")],
        args: EVAL_RUN,
        needle: "best.safetensors",
    },
    Case {
        name: "best.safetensors is a folder",
        files: &[("run/best.safetensors", MISSING), ("run/best.safetensors/", "")],
        args: EVAL_RUN,
        needle: "best.safetensors",
    },
    Case {
        name: "score: best.safetensors missing",
        files: &[("run/best.safetensors", MISSING)],
        args: &["score", "--run", "run", "--input", "builtin:cora", "--output", "scores.csv"],
        needle: "best.safetensors",
    },
    Case {
        name: "inspect: an empty folder",
        files: &[("empty/", "")],
        args: &["inspect", "empty"],
        needle: "empty",
    },
    Case {
        name: "inspect: run.json not JSON",
        files: &[("run/run.json", "[1, 2")],
        args: &["inspect", "run"],
        needle: "run.json",
    },
    Case {
        name: "bundle: manifest.json missing",
        files: &[("bundle/manifest.json", MISSING)],
        args: EVAL_BUNDLE,
        needle: "manifest.json",
    },
    Case {
        name: "bundle: manifest.json not JSON",
        files: &[("bundle/manifest.json", "nope")],
        args: EVAL_BUNDLE,
        needle: "manifest.json",
    },
    Case {
        name: "bundle: config.toml changed",
        files: &[("bundle/config.toml", "tampered")],
        args: EVAL_BUNDLE,
        needle: "config.toml",
    },
    Case {
        name: "bundle: model.safetensors missing",
        files: &[("bundle/model.safetensors", MISSING)],
        args: &["inspect", "bundle"],
        needle: "model.safetensors",
    },
    Case {
        name: "report: an empty folder",
        files: &[("empty/", "")],
        args: &["report", "--run", "empty"],
        needle: "empty",
    },
    Case {
        name: "report: run.json not JSON",
        files: &[("run/run.json", "{not json")],
        args: REPORT_RUN,
        needle: "run.json",
    },
    Case {
        name: "report: config.toml malformed",
        files: &[("run/config.toml", "[model\nkind = \"gcn\"\n")],
        args: REPORT_RUN,
        needle: "config.toml:1",
    },
    Case {
        name: "report: metrics.csv row that does not parse",
        files: &[("run/metrics.csv", "epoch,train_loss\n1,0.5\n2,\"x\"\n")],
        args: REPORT_RUN,
        needle: "metrics.csv:3",
    },
    Case {
        name: "report: state.json not JSON",
        files: &[("run/state.json", "{")],
        args: REPORT_RUN,
        needle: "state.json",
    },
    Case {
        name: "report: findings-test.json not JSON",
        files: &[("run/findings-test.json", "[")],
        args: REPORT_RUN,
        needle: "findings-test.json",
    },
    Case {
        name: "report: bundle config.toml changed",
        files: &[("bundle/config.toml", "tampered")],
        args: &["report", "--run", "bundle", "--out", "page.html"],
        needle: "config.toml",
    },
    Case {
        name: "report: --compare with one run",
        files: &[],
        args: &["report", "--compare", "run"],
        needle: "--compare",
    },
    Case {
        name: "report: --out is a folder",
        files: &[("pages/", "")],
        args: &["report", "--run", "run", "--out", "pages"],
        needle: "pages",
    },
    Case {
        name: "export: the run is not a run",
        files: &[("empty/", "")],
        args: &["export", "--run", "empty", "--out", "exported"],
        needle: "empty",
    },
    Case {
        name: "resume: a finished run",
        files: &[],
        args: &["train", "--resume", "run"],
        needle: "run",
    },
    Case {
        name: "resume: a folder that is not a run",
        files: &[("empty/", "")],
        args: &["train", "--resume", "empty"],
        needle: "empty",
    },
    Case {
        name: "resume: state.json not JSON",
        files: &[("stopped/state.json", "garbage")],
        args: &["train", "--resume", "stopped"],
        needle: "state.json",
    },
];

/// Replaces the first `from` by `to` in a file of the case's folder (text or binary).
fn replace(dir: &Path, file: &str, from: &str, to: &str) {
    edit(dir, file, |bytes| {
        let at = bytes
            .windows(from.len())
            .position(|window| window == from.as_bytes())
            .unwrap_or_else(|| panic!("{from:?} not in {file}"));
        [&bytes[..at], to.as_bytes(), &bytes[at + from.len()..]].concat()
    });
}

/// Removes `key` from a bundle's manifest.json, or sets it when `value` is given.
fn manifest_key(dir: &Path, key: &str, value: Option<serde_json::Value>) {
    edit(dir, "bundle/manifest.json", |bytes| {
        let mut manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let object = manifest.as_object_mut().unwrap();
        match value {
            Some(value) => object.insert(key.to_string(), value),
            None => object.remove(key),
        };
        serde_json::to_vec_pretty(&manifest).unwrap()
    });
}

/// A safetensors file whose 8-byte header length is `len`, then what followed it.
fn header_len(dir: &Path, file: &str, len: u64) {
    edit(dir, file, |bytes| [&len.to_le_bytes()[..], &bytes[8..]].concat());
}

#[test]
fn bad_run_directories_and_bundles_are_refused_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    write_files(d, &[("gcn.toml", GCN_TOML)]);
    train_into(d, &["--config", "gcn.toml"], "run");
    train_into(d, &["--config", "gcn.toml", "--stop-after", "1"], "stopped");
    let gat = config("gat_cora.toml");
    train_into(d, &["--config", &gat, "--set", "train.epochs=2"], "gat");
    let exported = shopnet(&["export", "--run", "run", "--out", "bundle"], d);
    assert!(exported.status.success(), "export failed: {}", stderr(&exported));
    let baseline = dir;

    let mut failures = run_cases(baseline.path(), RUN_CASES, &[]);
    let built = [
        Built {
            name: "run.json of another kind than config.toml",
            build: |d| replace(d, "run/run.json", "\"gcn\"", "\"gat\""),
            args: EVAL_RUN,
            needle: "run.json",
        },
        Built {
            name: "weights of another model kind",
            build: |d| {
                fs::copy(d.join("gat/best.safetensors"), d.join("run/best.safetensors")).unwrap();
            },
            args: EVAL_RUN,
            needle: "best.safetensors",
        },
        Built {
            name: "truncated best.safetensors",
            build: |d| edit(d, "run/best.safetensors", |bytes| bytes[..bytes.len() / 2].to_vec()),
            args: EVAL_RUN,
            needle: "best.safetensors",
        },
        Built {
            name: "best.safetensors cut inside its header",
            build: |d| edit(d, "run/best.safetensors", |bytes| bytes[..40].to_vec()),
            args: EVAL_RUN,
            needle: "best.safetensors",
        },
        Built {
            name: "safetensors header length of 2^63",
            build: |d| header_len(d, "run/best.safetensors", 1 << 63),
            args: EVAL_RUN,
            needle: "best.safetensors",
        },
        Built {
            name: "safetensors header length of 2^64 - 1",
            build: |d| header_len(d, "run/best.safetensors", u64::MAX),
            args: EVAL_RUN,
            needle: "best.safetensors",
        },
        Built {
            name: "safetensors header that is not JSON",
            build: |d| {
                edit(d, "run/best.safetensors", |bytes| {
                    let mut bytes = bytes;
                    bytes[8] = b'!';
                    bytes
                })
            },
            args: EVAL_RUN,
            needle: "best.safetensors",
        },
        Built {
            name: "a tensor whose shape differs from the header's offsets",
            build: |d| {
                replace(d, "run/best.safetensors", "\"shape\":[1433,4]", "\"shape\":[1433,5]")
            },
            args: EVAL_RUN,
            needle: "best.safetensors",
        },
        Built {
            name: "resume: a resume record of another net",
            build: |d| {
                let record = "stopped/resume-000001.model.bpk";
                fs::copy(d.join("gat/resume-000002.model.bpk"), d.join(record)).unwrap();
            },
            args: &["train", "--resume", "stopped"],
            needle: "resume-000001.model.bpk",
        },
        Built {
            name: "resume: a truncated resume record",
            build: |d| {
                edit(d, "stopped/resume-000001.model.bpk", |bytes| {
                    bytes[..bytes.len() / 2].to_vec()
                })
            },
            args: &["train", "--resume", "stopped"],
            needle: "resume-000001.model.bpk",
        },
        Built {
            name: "resume: a truncated optimiser record",
            build: |d| {
                edit(d, "stopped/resume-000001.optim.bpk", |bytes| {
                    bytes[..bytes.len() / 2].to_vec()
                })
            },
            args: &["train", "--resume", "stopped"],
            needle: "resume-000001.optim.bpk",
        },
        Built {
            name: "bundle: manifest.json lost its \"files\" key",
            build: |d| manifest_key(d, "files", None),
            args: EVAL_BUNDLE,
            needle: "manifest.json",
        },
        Built {
            name: "bundle: manifest.json \"files\" not a map",
            build: |d| manifest_key(d, "files", Some(serde_json::json!(5))),
            args: &["inspect", "bundle"],
            needle: "manifest.json",
        },
        Built {
            name: "bundle: manifest.json \"files\" empty",
            build: |d| manifest_key(d, "files", Some(serde_json::json!({}))),
            args: EVAL_BUNDLE,
            needle: "manifest.json",
        },
        Built {
            name: "bundle: manifest.json lost its \"model\" key",
            build: |d| manifest_key(d, "model", None),
            args: EVAL_BUNDLE,
            needle: "manifest.json",
        },
        Built {
            name: "bundle: tampered model.safetensors",
            build: |d| {
                edit(d, "bundle/model.safetensors", |bytes| {
                    let mut bytes = bytes;
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x40;
                    bytes
                })
            },
            args: EVAL_BUNDLE,
            needle: "model.safetensors",
        },
        Built {
            name: "bundle: truncated model.safetensors",
            build: |d| {
                edit(d, "bundle/model.safetensors", |bytes| bytes[..bytes.len() / 3].to_vec())
            },
            args: &[
                "score",
                "--run",
                "bundle",
                "--input",
                "builtin:cora",
                "--output",
                "scores.csv",
            ],
            needle: "model.safetensors",
        },
        Built {
            name: "bundle: model.safetensors header length of 2^63",
            build: |d| header_len(d, "bundle/model.safetensors", 1 << 63),
            args: &["inspect", "bundle"],
            needle: "model.safetensors",
        },
    ];
    failures.extend(run_built(baseline.path(), &built, &[]));
    report("run directory", RUN_CASES.len() + built.len(), failures);
}

// ---------------------------------------------------------------------------------------
// Tokenizers
// ---------------------------------------------------------------------------------------

/// A WordPiece tokenizer.json with this pre-tokenizer and vocabulary (both JSON).
macro_rules! wordpiece {
    ($pre_tokenizer:literal, $vocab:literal) => {
        concat!(
            "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],",
            "\"normalizer\":null,\"pre_tokenizer\":",
            $pre_tokenizer,
            ",\"post_processor\":null,\"decoder\":null,\"model\":{\"type\":\"WordPiece\",",
            "\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\",",
            "\"max_input_chars_per_word\":100,\"vocab\":",
            $vocab,
            "}}"
        )
    };
}

const TRAIN_TOKENIZED: &[&str] = &["train", "--config", "tok.toml"];
const TOKENIZER_TRAIN: &[&str] =
    &["tokenizer", "train", "--input", "reviews.csv", "--column", "review", "--out", "new.json"];

const TOKENIZER_CASES: &[Case] = &[
    Case {
        name: "tokenizer.json not JSON",
        files: &[("tok.json", "not json")],
        args: TRAIN_TOKENIZED,
        needle: "tok.json",
    },
    Case {
        name: "tokenizer.json empty",
        files: &[("tok.json", "")],
        args: TRAIN_TOKENIZED,
        needle: "tok.json",
    },
    Case {
        name: "tokenizer.json an empty object",
        files: &[("tok.json", "{}")],
        args: TRAIN_TOKENIZED,
        needle: "tok.json",
    },
    Case {
        name: "tokenizer.json a JSON array",
        files: &[("tok.json", "[]")],
        args: TRAIN_TOKENIZED,
        needle: "tok.json",
    },
    Case {
        name: "tokenizer.json missing",
        files: &[("tok.json", MISSING)],
        args: TRAIN_TOKENIZED,
        needle: "tok.json",
    },
    Case {
        name: "tokenizer with an empty vocabulary",
        files: &[("tok.json", wordpiece!("null", "{}"))],
        args: TRAIN_TOKENIZED,
        needle: "tok.json",
    },
    Case {
        name: "tokenizer without [UNK], [CLS], [SEP] or [PAD]",
        files: &[(
            "tok.json",
            wordpiece!(r#"{"type":"BertPreTokenizer"}"#, r#"{"good":0,"bad":1}"#),
        )],
        args: TRAIN_TOKENIZED,
        needle: "tok.json",
    },
    Case {
        name: "tokenizer whose ids skip past its vocabulary",
        files: &[(
            "tok.json",
            wordpiece!(
                r#"{"type":"BertPreTokenizer"}"#,
                r#"{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"[MASK]":4,"good":5,"bad":999999999}"#
            ),
        )],
        args: TRAIN_TOKENIZED,
        needle: "tok.json",
    },
    Case {
        name: "score: the run's tokenizer.json not JSON",
        files: &[("in.csv", "label,review\n0,good\n"), ("run/tokenizer.json", "not json")],
        args: SCORE_REVIEWS,
        needle: "tokenizer.json",
    },
    Case {
        name: "score: the run's tokenizer.json missing",
        files: &[("in.csv", "label,review\n0,good\n"), ("run/tokenizer.json", MISSING)],
        args: SCORE_REVIEWS,
        needle: "tokenizer.json",
    },
    Case {
        name: "score: the run's tokenizer with an empty vocabulary",
        files: &[
            ("in.csv", "label,review\n0,good\n"),
            ("run/tokenizer.json", wordpiece!("null", "{}")),
        ],
        args: SCORE_REVIEWS,
        needle: "tokenizer.json",
    },
    Case {
        name: "tokenizer train: column missing",
        files: &[],
        args: &[
            "tokenizer",
            "train",
            "--input",
            "reviews.csv",
            "--column",
            "text",
            "--out",
            "new.json",
        ],
        needle: "reviews.csv:1",
    },
    Case {
        name: "tokenizer train: empty CSV",
        files: &[("reviews.csv", "")],
        args: TOKENIZER_TRAIN,
        needle: "reviews.csv",
    },
    Case {
        name: "tokenizer train: only empty texts",
        files: &[("reviews.csv", "label,review\n0,\n1,\n")],
        args: TOKENIZER_TRAIN,
        needle: "reviews.csv",
    },
    Case {
        name: "tokenizer train: input missing",
        files: &[("reviews.csv", MISSING)],
        args: TOKENIZER_TRAIN,
        needle: "reviews.csv",
    },
    Case {
        name: "tokenizer train: an unterminated quote",
        files: &[("reviews.csv", reviews_with!("1,\"never closed\n0,bad\n"))],
        args: TOKENIZER_TRAIN,
        needle: "reviews.csv:22",
    },
    Case {
        name: "tokenizer train: --out in a missing folder",
        files: &[],
        args: &[
            "tokenizer",
            "train",
            "--input",
            "reviews.csv",
            "--column",
            "review",
            "--out",
            "nowhere/new.json",
        ],
        needle: "nowhere",
    },
    Case {
        name: "tokenizer train: --out is a folder",
        files: &[("new.json/", "")],
        args: TOKENIZER_TRAIN,
        needle: "new.json",
    },
];

/// BERT_TOML reading its tokenizer from tok.json instead of training one.
fn tokenizer_config() -> String {
    BERT_TOML.replace("tokenizer_vocab_size = 40\n", "tokenizer = \"tok.json\"\n")
}

#[test]
fn bad_tokenizers_are_refused_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    write_files(d, &[("bert.toml", BERT_TOML), ("reviews.csv", REVIEWS)]);
    train_into(d, &["--config", "bert.toml"], "run");
    let made = shopnet(
        &[
            "tokenizer",
            "train",
            "--input",
            "reviews.csv",
            "--column",
            "review",
            "--vocab-size",
            "40",
            "--min-frequency",
            "1",
            "--out",
            "tok.json",
        ],
        d,
    );
    assert!(made.status.success(), "tokenizer train failed: {}", stderr(&made));
    put(d, "tok.toml", tokenizer_config());
    // The baseline trains with tok.json.
    let checked = train(d, &["--config", "tok.toml"]);
    fs::remove_dir_all(checked.parent().unwrap()).unwrap();
    let baseline = dir;

    let mut failures = run_cases(baseline.path(), TOKENIZER_CASES, &[]);
    let built = [Built {
        name: "tokenizer train: a row that is not UTF-8",
        build: |d| put(d, "reviews.csv", [REVIEWS.as_bytes(), &b"1,\xff\xfe bad\n"[..]].concat()),
        args: TOKENIZER_TRAIN,
        needle: "reviews.csv:22",
    }];
    failures.extend(run_built(baseline.path(), &built, &[]));
    report("tokenizer", TOKENIZER_CASES.len() + built.len(), failures);
}

// ---------------------------------------------------------------------------------------
// Command-line misuse
// ---------------------------------------------------------------------------------------

/// Each error line must also point at `--help`.
const CLI_CASES: &[Case] = &[
    Case { name: "unknown subcommand", files: &[], args: &["frobnicate"], needle: "frobnicate" },
    Case {
        name: "misspelled subcommand",
        files: &[],
        args: &["trian", "--config", "gcn.toml"],
        needle: "trian",
    },
    Case { name: "no subcommand", files: &[], args: &[], needle: "shopnet" },
    Case { name: "synth without what to make", files: &[], args: &["synth"], needle: "synth" },
    Case { name: "train without --config", files: &[], args: &["train"], needle: "--config" },
    Case {
        name: "--config without its value",
        files: &[],
        args: &["train", "--config"],
        needle: "--config",
    },
    Case { name: "eval without --run", files: &[], args: &["eval"], needle: "--run" },
    Case {
        name: "score without --output",
        files: &[],
        args: &["score", "--run", "run", "--input", "graph"],
        needle: "--output",
    },
    Case {
        name: "unknown flag",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--frob"],
        needle: "--frob",
    },
    Case {
        name: "--config with --resume",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--resume", "run"],
        needle: "--resume",
    },
    Case {
        name: "recommend --k 0",
        files: &[],
        args: &["recommend", "--run", "recrun", "--k", "0", "--output", "recs.csv"],
        needle: "--k",
    },
    Case {
        name: "recommend --k -1",
        files: &[],
        args: &["recommend", "--run", "recrun", "--k", "-1", "--output", "recs.csv"],
        needle: "--k",
    },
    Case {
        name: "recommend --k ten",
        files: &[],
        args: &["recommend", "--run", "recrun", "--k", "ten", "--output", "recs.csv"],
        needle: "--k",
    },
    Case {
        name: "similar --k 0",
        files: &[],
        args: &["similar", "--index", "index.safetensors", "--query", "x", "--k", "0"],
        needle: "--k",
    },
    Case {
        name: "similar --queries without --output",
        files: &[("queries.txt", "x\n")],
        args: &["similar", "--index", "index.safetensors", "--queries", "queries.txt"],
        needle: "--output",
    },
    Case {
        name: "score --output equal to --input",
        files: &[],
        args: &["score", "--run", "run", "--input", "graph", "--output", "graph"],
        needle: "--output",
    },
    Case {
        name: "score --output into the input graph's nodes.csv",
        files: &[],
        args: &["score", "--run", "run", "--input", "graph", "--output", "graph/nodes.csv"],
        needle: "--output",
    },
    Case {
        name: "score --output into the input graph's edges.csv by an absolute path",
        files: &[],
        args: &["score", "--run", "run", "--input", "graph", "--output", "{dir}/graph/edges.csv"],
        needle: "--output",
    },
    Case {
        name: "score --output over the run's run.json",
        files: &[],
        args: &["score", "--run", "run", "--input", "builtin:cora", "--output", "run/run.json"],
        needle: "--output",
    },
    Case {
        name: "recommend --output over the training data",
        files: &[],
        args: &["recommend", "--run", "recrun", "--output", "train.txt"],
        needle: "--output",
    },
    Case {
        name: "recommend --output equal to --users",
        files: &[("users.txt", "0\n1\n")],
        args: &["recommend", "--run", "recrun", "--users", "users.txt", "--output", "users.txt"],
        needle: "--output",
    },
    Case {
        name: "tokenizer train --out equal to --input",
        files: &[],
        args: &[
            "tokenizer",
            "train",
            "--input",
            "reviews.csv",
            "--column",
            "review",
            "--out",
            "reviews.csv",
        ],
        needle: "--out",
    },
    Case {
        name: "tokenizer train --vocab-size 0",
        files: &[],
        args: &[
            "tokenizer",
            "train",
            "--input",
            "reviews.csv",
            "--column",
            "review",
            "--vocab-size",
            "0",
            "--out",
            "tok.json",
        ],
        needle: "--vocab-size",
    },
    Case {
        name: "export --out into the run itself",
        files: &[],
        args: &["export", "--run", "run", "--out", "run"],
        needle: "--out",
    },
    Case {
        name: "train --out is a file",
        files: &[("notes.txt", "not a folder\n")],
        args: &["train", "--config", "gcn.toml", "--out", "notes.txt"],
        needle: "--out",
    },
    Case {
        name: "--device tpu",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--device", "tpu"],
        needle: "--device",
    },
    Case {
        name: "--device wgpu:foo",
        files: &[],
        args: &["eval", "--run", "run", "--device", "wgpu:foo"],
        needle: "--device",
    },
    Case {
        name: "--set without =",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "train.lr"],
        needle: "--set",
    },
    Case {
        name: "--set with an empty key",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "=3"],
        needle: "--set",
    },
    Case {
        name: "--set into a value",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--set", "train.epochs.max=3"],
        needle: "--set",
    },
    Case {
        name: "--stop-after 0",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--stop-after", "0"],
        needle: "--stop-after",
    },
    Case {
        name: "--stop-after -1",
        files: &[],
        args: &["train", "--config", "gcn.toml", "--stop-after", "-1"],
        needle: "--stop-after",
    },
    Case {
        name: "eval --split train",
        files: &[],
        args: &["eval", "--run", "run", "--split", "train"],
        needle: "--split",
    },
    Case {
        name: "bench --heads 0",
        files: &[],
        args: &["bench", "--model", "gat", "--heads", "0", "--epochs", "1", "--warmup", "0"],
        needle: "--heads",
    },
    Case {
        name: "bench --features 0 --nodes 10 --edges 10",
        files: &[],
        args: &[
            "bench",
            "--model",
            "gcn",
            "--features",
            "0",
            "--nodes",
            "10",
            "--edges",
            "10",
            "--epochs",
            "1",
            "--warmup",
            "0",
        ],
        needle: "--features",
    },
    Case {
        name: "bench --nodes 0",
        files: &[],
        args: &[
            "bench",
            "--model",
            "gcn",
            "--features",
            "4",
            "--nodes",
            "0",
            "--edges",
            "10",
            "--epochs",
            "1",
            "--warmup",
            "0",
        ],
        needle: "--nodes",
    },
    Case {
        name: "bench --nodes without --edges",
        files: &[],
        args: &["bench", "--model", "gcn", "--nodes", "10", "--features", "4"],
        needle: "--edges",
    },
    Case {
        name: "bench --nodes 1e12 (memory estimate up front)",
        files: &[],
        args: &[
            "bench",
            "--model",
            "gcn",
            "--features",
            "4",
            "--nodes",
            "1000000000000",
            "--edges",
            "10",
            "--epochs",
            "1",
            "--warmup",
            "0",
        ],
        needle: "--nodes",
    },
    Case {
        name: "bench --edges 1e15 (memory estimate up front)",
        files: &[],
        args: &[
            "bench",
            "--model",
            "gcn",
            "--features",
            "4",
            "--nodes",
            "10",
            "--edges",
            "1000000000000000",
            "--epochs",
            "1",
            "--warmup",
            "0",
        ],
        needle: "--edges",
    },
    Case {
        name: "bench --epochs 0",
        files: &[],
        args: &["bench", "--model", "gcn", "--epochs", "0", "--warmup", "0"],
        needle: "--epochs",
    },
    Case {
        name: "bench --threads 1e12",
        files: &[],
        args: &[
            "bench",
            "--model",
            "gcn",
            "--threads",
            "1000000000000",
            "--epochs",
            "1",
            "--warmup",
            "0",
        ],
        needle: "--threads",
    },
    Case {
        name: "bench --model resnet",
        files: &[],
        args: &["bench", "--model", "resnet"],
        needle: "--model",
    },
    Case {
        name: "synth events --users 0",
        files: &[],
        args: &["synth", "events", "--users", "0", "--out", "events.csv"],
        needle: "--users",
    },
    Case {
        name: "synth events --users 1e15",
        files: &[],
        args: &["synth", "events", "--users", "1000000000000000", "--out", "events.csv"],
        needle: "--users",
    },
];

#[test]
fn command_line_misuse_names_the_argument_and_points_at_help() {
    let baseline = baseline(
        &[
            ("gcn.toml", GRAPH_TOML),
            ("graph/nodes.csv", NODES),
            ("graph/features.csv", FEATURES),
            ("graph/edges.csv", EDGES),
            ("rec.toml", REC_TOML),
            ("train.txt", REC_TRAIN),
            ("test.txt", REC_TEST),
            ("reviews.csv", REVIEWS),
        ],
        &[("gcn.toml", "run"), ("rec.toml", "recrun")],
    );
    let failures = run_cases(baseline.path(), CLI_CASES, &["--help"]);
    report("command-line", CLI_CASES.len(), failures);
}

// ---------------------------------------------------------------------------------------
// The machinery: baselines, running a case, checking the contract
// ---------------------------------------------------------------------------------------

/// A folder with `files`, and for each `(config, name)` a run trained from that config
/// (with cwd in the folder) and moved to `name`.
fn baseline(files: &[(&str, &str)], runs: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    write_files(dir.path(), files);
    for (config, name) in runs {
        train_into(dir.path(), &["--config", config], name);
    }
    dir
}

/// Trains with `args` in `dir` and moves the run to `dir/name`.
fn train_into(dir: &Path, args: &[&str], name: &str) {
    let run = train(dir, args);
    fs::rename(run, dir.join(name)).unwrap();
    fs::remove_dir_all(dir.join("runs")).unwrap();
}

fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let target = dir.join(path);
        if path.ends_with('/') {
            fs::create_dir_all(&target).unwrap();
        } else if *contents == MISSING {
            fs::remove_file(&target).unwrap();
        } else {
            put(dir, path, contents);
        }
    }
}

fn put(dir: &Path, path: &str, contents: impl AsRef<[u8]>) {
    let target = dir.join(path);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::write(target, contents).unwrap();
}

fn edit(dir: &Path, path: &str, change: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let target = dir.join(path);
    let bytes = fs::read(&target).unwrap();
    fs::write(target, change(bytes)).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn run_cases(baseline: &Path, cases: &[Case], also: &[&str]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let needles = [&[case.needle][..], also].concat();
        let prepare = |dir: &Path| write_files(dir, case.files);
        failures.extend(check(case.name, baseline, prepare, case.args, &needles));
    }
    failures
}

fn run_built(baseline: &Path, cases: &[Built], also: &[&str]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let needles = [&[case.needle][..], also].concat();
        failures.extend(check(case.name, baseline, case.build, case.args, &needles));
    }
    failures
}

/// Runs one case in a fresh copy of `baseline`; `None` when it kept the contract, else
/// one line saying what it did.
fn check(
    name: &str,
    baseline: &Path,
    prepare: impl FnOnce(&Path),
    args: &[&str],
    needles: &[&str],
) -> Option<String> {
    let dir = TempDir::new().unwrap();
    copy_tree(baseline, dir.path());
    prepare(dir.path());
    let before = snapshot(dir.path());
    let args: Vec<String> = args.iter().map(|arg| expand(arg, dir.path())).collect();
    let outcome = run_bounded(&args, dir.path());
    let mut problems = contract(&outcome, needles);
    problems.extend(changes(&before, &snapshot(dir.path())));
    if problems.is_empty() {
        return None;
    }
    Some(format!("{name}: {}; stderr: {}", problems.join(", "), telling_line(&outcome.stderr)))
}

/// `{dir}` is the case's folder, `{cfg:NAME}` a config of the repository.
fn expand(arg: &str, dir: &Path) -> String {
    match arg.strip_prefix("{cfg:").and_then(|rest| rest.strip_suffix('}')) {
        Some(name) => config(name),
        None => arg.replace("{dir}", dir.to_str().unwrap()),
    }
}

struct Outcome {
    /// `None` when the command was still running after `LIMIT` and was killed.
    status: Option<ExitStatus>,
    stderr: Vec<u8>,
}

/// Runs the binary like `common::shopnet`, but kills it after `LIMIT`: a bad input that
/// starts an endless training run or a huge allocation must fail this test, not hang it.
fn run_bounded(args: &[String], cwd: &Path) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopnet"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the shopnet binary runs");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for shopnet") {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    drop(stdout.join());
    Outcome { status, stderr: stderr.join().unwrap() }
}

/// Reads a pipe to its end on a thread of its own, so that a chatty child never blocks.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The user-error contract of `common::assert_user_error`, as a list of what broke it,
/// plus the time limit and the bound on the line's length.
fn contract(outcome: &Outcome, needles: &[&str]) -> Vec<String> {
    let Some(status) = outcome.status else {
        return vec![format!("still running after {} s", LIMIT.as_secs())];
    };
    let err = String::from_utf8_lossy(&outcome.stderr);
    let mut problems = Vec::new();
    if status.code() != Some(2) {
        problems.push(match status.code() {
            Some(code) => format!("exit code {code}"),
            None => format!("{status}"),
        });
    }
    if err.contains("panicked") {
        problems.push("panicked".to_string());
    }
    let lines = err.trim_end().lines().count();
    if lines != 1 {
        problems.push(format!("{lines} lines on stderr"));
    } else if err.trim_end().len() >= MAX_LINE {
        problems.push(format!("an error line of {} bytes", err.trim_end().len()));
    }
    if !err.starts_with("error: ") {
        problems.push("no `error: ` line first".to_string());
    }
    for needle in needles {
        if !err.contains(needle) {
            problems.push(format!("does not name {needle:?}"));
        }
    }
    problems
}

/// The stderr line that says most: a panic's message, else the first `error:` line, else
/// the first line; cut to 200 characters.
fn telling_line(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = err.lines().collect();
    let line = match lines.iter().position(|l| l.contains("panicked at")) {
        Some(i) => format!("{} {}", lines[i], lines.get(i + 1).copied().unwrap_or("")),
        None => lines
            .iter()
            .find(|l| l.starts_with("error: "))
            .or(lines.first())
            .copied()
            .unwrap_or("(empty)")
            .to_string(),
    };
    let short: String = line.chars().take(200).collect();
    if short.len() < line.len() { format!("{short}...") } else { short }
}

/// Every file (its bytes) and folder (`None`) under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if entry.file_type().unwrap().is_dir() {
                into.insert(relative, None);
                walk(root, &path, into);
            } else {
                into.insert(relative, Some(fs::read(&path).unwrap_or_default()));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

/// What a failed command changed in its folder: files modified, deleted or created.
fn changes(
    before: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    after: &BTreeMap<PathBuf, Option<Vec<u8>>>,
) -> Vec<String> {
    let mut changed = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => changed.push(format!("deleted {}", path.display())),
            Some(new) if new != old => changed.push(format!("modified {}", path.display())),
            Some(_) => {}
        }
    }
    let created: Vec<&PathBuf> = after.keys().filter(|path| !before.contains_key(*path)).collect();
    // A new run directory is one change, not one per file in it.
    let tops: Vec<&PathBuf> = created
        .iter()
        .copied()
        .filter(|path| !created.iter().any(|other| other != path && path.starts_with(other)))
        .collect();
    changed.extend(tops.iter().map(|path| format!("created {}", path.display())));
    changed
}

fn report(class: &str, total: usize, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} of {total} bad {class} inputs broke the user-error contract:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
