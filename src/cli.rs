//! The `shopnet` command line. Every command works the same for every model family;
//! errors end in one line on stderr and exit code 2.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::{self, DeviceSpec};
use crate::config::ConfigDoc;
use crate::data::Split;
use crate::run_dir::{self, Artifacts};
use crate::tasks::{self, TrainJob};
use crate::{bench, export};

#[derive(Parser, Debug)]
#[command(name = "shopnet", version, about = "Train, evaluate, score and export e-commerce models (GCN, GAT, LightGCN, CNN+LSTM, ...) on CPU or GPU.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model from a config file, or resume a stopped run.
    #[command(after_help = "Examples:\n  shopnet train --config configs/gat_cora.toml\n  shopnet train --config configs/gcn_cora.toml --device wgpu --set train.seed=3 --set train.epochs=50\n  shopnet train --resume checkpoints/gat_cora-20261128-101500")]
    Train {
        /// The run's TOML config.
        #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// cpu, wgpu, wgpu:cpu, wgpu:discrete:N, wgpu:integrated:N (default: runtime.device).
        #[arg(long)]
        device: Option<String>,
        /// Override any config key, e.g. --set train.lr=0.01 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Folder for the run directory (default: runtime.out_dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue a stopped run from its last checkpoint, optimiser state included.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Stop cleanly after this many epochs; the run can be resumed later.
        #[arg(long, value_name = "EPOCHS")]
        stop_after: Option<usize>,
    },
    /// Evaluate a trained model: metrics table on stdout, report.json in the run.
    #[command(after_help = "Example:\n  shopnet eval --run checkpoints/gat_cora-20261128-101500 --split test")]
    Eval {
        /// A run directory or an export bundle.
        #[arg(long = "run", value_name = "RUN_DIR|BUNDLE")]
        run: PathBuf,
        #[arg(long, value_enum, default_value_t = EvalSplit::Test)]
        split: EvalSplit,
        #[arg(long)]
        device: Option<String>,
    },
    /// Score new data with a trained model and write one CSV row per example.
    #[command(after_help = "Example (graph models: one row per node with its predicted label and class probabilities):\n  shopnet score --run checkpoints/gat_cora-20261128-101500 --input my_graph/ --output predictions.csv")]
    Score {
        #[arg(long = "run", value_name = "RUN_DIR|BUNDLE")]
        run: PathBuf,
        /// The data to score, in the model's input format (for a graph: a folder or builtin:cora).
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: PathBuf,
        #[arg(long)]
        device: Option<String>,
    },
    /// Recommend the top K items to users with a trained recommender.
    #[command(after_help = "Examples:\n  shopnet recommend --run checkpoints/lightgcn_gowalla-20261128-101500 --users all --k 20 --output recs.csv\n  shopnet recommend --run RUN_DIR --users user_ids.txt --k 10 --output recs.csv")]
    Recommend {
        #[arg(long = "run", value_name = "RUN_DIR|BUNDLE")]
        run: PathBuf,
        /// `all` (every user with training interactions) or a file with one user id per line.
        #[arg(long, default_value = "all")]
        users: String,
        #[arg(long, default_value_t = 20)]
        k: usize,
        /// CSV of user_id,rank,item_id,score; training items are never recommended.
        #[arg(long)]
        output: PathBuf,
        #[arg(long)]
        device: Option<String>,
    },
    /// Embed images with a trained image model: an index of L2-normalised embeddings.
    #[command(after_help = "Example:\n  shopnet embed --run checkpoints/vgg_fashion-20261128-101500 --input catalogue/ --output catalogue.safetensors\n\nWrites catalogue.safetensors (an F32 [N, D] matrix `embeddings`, with the run and its weights' sha256 as metadata) and catalogue.ids.csv (row,id,label).")]
    Embed {
        #[arg(long = "run", value_name = "RUN_DIR|BUNDLE")]
        run: PathBuf,
        /// A folder of images (optionally one sub-folder per class), a CSV with a path column, or an IDX image file.
        #[arg(long, value_name = "DIR|CSV|IDX")]
        input: String,
        #[arg(long)]
        output: PathBuf,
        #[arg(long)]
        device: Option<String>,
    },
    /// Find the K most similar items of an embedding index (exact cosine search).
    #[command(after_help = "Examples:\n  shopnet similar --index catalogue.safetensors --query photo.png --k 10\n  shopnet similar --index catalogue.safetensors --query test1000/2/0000.png --k 5     # an id in the index\n  shopnet similar --index catalogue.safetensors --queries queries.txt --k 10 --output neighbours.csv")]
    Similar {
        /// An index written by shopnet embed.
        #[arg(long, value_name = "EMBEDDINGS")]
        index: PathBuf,
        /// An image file, or the id of an item in the index (which is then left out of its own answer).
        #[arg(long, value_name = "IMAGE|ID", required_unless_present = "queries", conflicts_with = "queries")]
        query: Option<String>,
        /// A file with one query (image path or id) per line.
        #[arg(long, value_name = "FILE", requires = "output")]
        queries: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// CSV of query,rank,id,label,score (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The model that embeds query images (default: the run that built the index; another model is refused).
        #[arg(long = "run", value_name = "RUN_DIR|BUNDLE")]
        run: Option<PathBuf>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Write a self-contained serving bundle: model.safetensors, config.toml, manifest.json.
    #[command(after_help = "Example:\n  shopnet export --run checkpoints/gat_cora-20261128-101500 --out bundles/gat_cora")]
    Export {
        #[arg(long = "run", value_name = "RUN_DIR")]
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Show a run's or bundle's model kind, parameter count, best metrics and config.
    #[command(after_help = "Example:\n  shopnet inspect checkpoints/gat_cora-20261128-101500")]
    Inspect {
        #[arg(value_name = "RUN_DIR|BUNDLE")]
        path: PathBuf,
    },
    /// Generate synthetic data with a planted signal, for tests and benchmarks at any scale.
    Synth {
        #[command(subcommand)]
        what: SynthData,
    },
    /// Tokenizers for text models.
    Tokenizer {
        #[command(subcommand)]
        command: TokenizerCommand,
    },
    /// Time training epochs of a net (see README, Benchmarks).
    #[command(after_help = "Examples:\n  shopnet bench --model gat --threads 2\n  shopnet bench --model gcn --nodes 1000000 --edges 10000000 --features 64 --epochs 1 --warmup 0\n  shopnet bench --model intent --threads 2   # one epoch over 20,000 sequences, then inference\n  shopnet bench --model vgg --threads 2      # one epoch over 2,048 images, then inference\n  shopnet bench --model bert --weights \"$(scripts/install_minilm.sh)\" --threads 2")]
    Bench {
        #[arg(long, value_enum)]
        model: bench::BenchNet,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Timed epochs.
        #[arg(long, default_value_t = 200)]
        epochs: usize,
        /// Untimed epochs first.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// CPU threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// GAT hidden-layer heads.
        #[arg(long, default_value_t = 8)]
        heads: usize,
        /// Use a random graph of this many nodes instead of Cora.
        #[arg(long, requires_all = ["edges", "features"])]
        nodes: Option<usize>,
        #[arg(long)]
        edges: Option<usize>,
        #[arg(long)]
        features: Option<usize>,
        /// BERT: a Hugging Face model folder or repo id (the reference workload uses
        /// all-MiniLM-L6-v2; scripts/install_minilm.sh prints its folder).
        #[arg(long, value_name = "DIR|REPO_ID", required_if_eq("model", "bert"))]
        weights: Option<String>,
        /// BERT: sentences to embed (fewer for a smoke test).
        #[arg(long, default_value_t = 1024)]
        sentences: usize,
        /// BERT: timed fine-tuning steps.
        #[arg(long, default_value_t = 50)]
        steps: usize,
    },
}

#[derive(Subcommand, Debug)]
enum SynthData {
    /// A Taobao-format event log (user_id,item_id,category_id,behavior,timestamp) whose
    /// purchases after 2017-12-02 16:00 UTC follow a documented signal (see README).
    #[command(after_help = "Example:\n  shopnet synth events --users 50000 --seed 1 --out synth_events.csv")]
    Events {
        #[arg(long)]
        users: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TokenizerCommand {
    /// Train a BERT-style WordPiece tokenizer (BERT normaliser and pre-tokeniser, which
    /// splits Chinese characters) on one column of a CSV and write tokenizer.json.
    #[command(after_help = "Example:\n  shopnet tokenizer train --input ../shared/data/online_shopping_10_cats/online_shopping_10_cats.csv --column review --vocab-size 8000 --out zh_tokenizer.json")]
    Train {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        column: String,
        #[arg(long, default_value_t = 8000)]
        vocab_size: usize,
        /// Keep only pieces seen at least this often.
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EvalSplit {
    Val,
    Test,
}


/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            2
        }
    }
}

/// The error and its causes on one line, outermost first.
fn one_line(err: &anyhow::Error) -> String {
    err.chain().map(|e| e.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { config, device, overrides, out, resume, stop_after } => {
            train(config.as_deref(), device, &overrides, out, resume.as_deref(), stop_after)
        }
        Command::Eval { run, split, device } => {
            let artifacts = Artifacts::open(&run)?;
            let device = open_device(device.as_deref(), &artifacts.config)?;
            let split = match split {
                EvalSplit::Val => Split::Val,
                EvalSplit::Test => Split::Test,
            };
            let metrics = tasks::family(artifacts.info.kind).evaluate(&artifacts, split, &device)?;
            print!("{}", metrics.table());
            if !artifacts.is_bundle {
                crate::train::update_report(&artifacts.dir, artifacts.info.kind, &metrics.prefixed(&format!("{split}_")))?;
            }
            Ok(())
        }
        Command::Score { run, input, output, device } => {
            let artifacts = Artifacts::open(&run)?;
            let device = open_device(device.as_deref(), &artifacts.config)?;
            let rows = tasks::family(artifacts.info.kind).score(&artifacts, &input, &output, &device)?;
            println!("wrote {rows} rows to {}", output.display());
            Ok(())
        }
        Command::Recommend { run, users, k, output, device } => {
            if k == 0 {
                bail!("--k: must be at least 1");
            }
            let artifacts = Artifacts::open(&run)?;
            let device = open_device(device.as_deref(), &artifacts.config)?;
            let rows = tasks::family(artifacts.info.kind).recommend(&artifacts, &users, k, &output, &device)?;
            println!("wrote {rows} recommendations to {}", output.display());
            Ok(())
        }
        Command::Embed { run, input, output, device } => {
            let artifacts = Artifacts::open(&run)?;
            let device = open_device(device.as_deref(), &artifacts.config)?;
            let rows = tasks::family(artifacts.info.kind).embed(&artifacts, &input, &output, &device)?;
            println!("wrote {rows} embeddings to {} (ids in {})", output.display(), crate::embeddings::ids_path(&output).display());
            Ok(())
        }
        Command::Similar { index, query, queries, k, output, run, device } => {
            if k == 0 {
                bail!("--k: must be at least 1");
            }
            let queries = match (query, queries) {
                (Some(q), _) => vec![q],
                (None, Some(file)) => read_queries(&file)?,
                (None, None) => bail!("similar needs --query IMAGE|ID or --queries FILE"),
            };
            let job = tasks::images::SimilarJob { index: &index, queries, k, run: run.as_deref(), output: output.as_deref(), device_flag: device.as_deref() };
            let (rows, seconds) = tasks::images::similar(job)?;
            if let Some(output) = output {
                println!("wrote {rows} neighbours to {} (search {seconds:.3} s)", output.display());
            }
            Ok(())
        }
        Command::Export { run, out } => {
            let artifacts = Artifacts::open(&run)?;
            export::export(&artifacts, &out)?;
            println!("exported {} model to {}", artifacts.info.kind, out.display());
            Ok(())
        }
        Command::Inspect { path } => {
            print!("{}", export::inspect(&Artifacts::open(&path)?)?);
            Ok(())
        }
        Command::Synth { what: SynthData::Events { users, seed, out } } => {
            let summary = crate::synth::write_events(users, seed, &out)?;
            let auc = |value: Option<f64>| value.map_or("n/a".to_string(), |v| format!("{v:.4}"));
            println!(
                "wrote {} events of {} users ({} buy after the cut {}) to {}",
                summary.events,
                summary.users,
                summary.buyers,
                crate::data::sequences::describe_time(crate::synth::CUT),
                out.display()
            );
            println!(
                "planted signal: ROC-AUC {} for the true probabilities (the ceiling), {} for the cart-count baseline",
                auc(summary.oracle_roc_auc),
                auc(summary.cart_count_roc_auc)
            );
            Ok(())
        }
        Command::Tokenizer { command: TokenizerCommand::Train { input, column, vocab_size, min_frequency, out } } => {
            let size = crate::data::text::train_tokenizer_from_csv(&input, &column, vocab_size, min_frequency, &out)?;
            println!("wrote a WordPiece tokenizer of {size} tokens to {}", out.display());
            Ok(())
        }
        Command::Bench { model, device, epochs, warmup, threads, heads, nodes, edges, features, weights, sentences, steps } => {
            backend::configure_threads(threads);
            let spec = DeviceSpec::parse(&device)?;
            let device_name = device;
            let device = backend::open(&spec)?;
            let node_net = match model {
                bench::BenchNet::Intent => {
                    let (sequences, batch) = (20_000, 32);
                    let timing = bench::time_intent(sequences, batch, &device)?;
                    println!(
                        "intent {sequences} sequences of 50 on {device_name} ({} threads): train epoch {:.2} s ({} steps of {batch}), inference {:.2} s (batch 256)",
                        rayon::current_num_threads(),
                        timing.train_s,
                        timing.steps,
                        timing.inference_s
                    );
                    return Ok(());
                }
                bench::BenchNet::Vgg => {
                    let images = 2_048;
                    let times = bench::time_vgg(&bench::VggBench { images, train_batch: 64, infer_batch: 256, classes: 10 }, &device);
                    let peak = bench::peak_memory_mib().map_or("n/a".into(), |m| format!("{m:.0} MiB"));
                    println!(
                        "vgg {images} images 3x32x32 on {device_name} ({} threads): train epoch {:.3} s (batch 64), inference {:.3} s (batch 256); peak memory {peak}",
                        rayon::current_num_threads(),
                        times.train_s,
                        times.infer_s
                    );
                    return Ok(());
                }
                bench::BenchNet::Bert => {
                    let weights = weights.context("--weights is required with --model bert")?;
                    if sentences == 0 {
                        bail!("--sentences must be at least 1");
                    }
                    let workload = bench::BertWorkload {
                        sentences,
                        length: bench::BertWorkload::LENGTH,
                        batch: bench::BertWorkload::BATCH,
                        steps,
                        train_batch: bench::BertWorkload::TRAIN_BATCH,
                    };
                    let files = crate::models::bert::ModelFiles::resolve(&weights)?;
                    let timing = bench::time_bert(&files, &device, &workload)?;
                    let threads = rayon::current_num_threads();
                    println!(
                        "shopnet bert inference on {device_name} ({threads} threads): {sentences} sentences x {} tokens, batch {}: {:.3} s",
                        workload.length, workload.batch, timing.inference_s
                    );
                    println!(
                        "shopnet bert finetune on {device_name} ({threads} threads): {steps} steps, batch {} x {} tokens: {:.3} s",
                        workload.train_batch, workload.length, timing.finetune_s
                    );
                    return Ok(());
                }
                bench::BenchNet::Gcn => bench::NodeNet::Gcn,
                bench::BenchNet::Gat => bench::NodeNet::Gat,
            };
            let (graph, workload) = match (nodes, edges, features) {
                (Some(n), Some(e), Some(f)) => (bench::synthetic_graph(n, e, f, 0), format!("random graph {n} nodes {e} edges {f} features")),
                _ => (bench::cora()?, "cora".to_string()),
            };
            let result = bench::time_training(node_net, &graph, heads, &device, epochs, warmup);
            let peak = bench::peak_memory_mib().map_or("n/a".into(), |m| format!("{m:.0} MiB"));
            println!(
                "{} {workload} on {device_name} ({} threads): {:.2} ms/epoch mean, {:.2} ms min over {} epochs; setup {:.1} s; peak memory {peak}",
                format!("{model:?}").to_lowercase(),
                rayon::current_num_threads(),
                result.mean_ms,
                result.min_ms,
                result.epochs,
                result.setup_s
            );
            Ok(())
        }
    }
}

/// One query per non-empty line.
fn read_queries(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|err| anyhow::anyhow!("{}: cannot read queries: {err}", path.display()))?;
    let queries: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if queries.is_empty() {
        bail!("{}: no queries (expected one image path or id per line)", path.display());
    }
    Ok(queries)
}

pub fn open_device(flag: Option<&str>, config: &ConfigDoc) -> Result<Device> {
    let runtime: crate::config::RuntimeConfig = config.runtime()?;
    backend::configure_threads(runtime.threads);
    backend::open(&DeviceSpec::parse(flag.unwrap_or(&runtime.device))?)
}

fn train(config: Option<&Path>, device: Option<String>, overrides: &[String], out: Option<PathBuf>, resume: Option<&Path>, stop_after: Option<usize>) -> Result<()> {
    let (doc, run_dir) = match (config, resume) {
        (_, Some(run)) => {
            if !run.join(run_dir::STATE_FILE).is_file() {
                bail!("{}: not a resumable run directory (no {})", run.display(), run_dir::STATE_FILE);
            }
            (ConfigDoc::load(&run.join(run_dir::CONFIG_FILE), overrides)?, run.to_path_buf())
        }
        (Some(path), None) => {
            let doc = ConfigDoc::load(path, overrides)?;
            let runtime = doc.runtime()?;
            let name = runtime.name.clone().unwrap_or_else(|| path.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned()));
            let run_dir = new_run_dir(&out.unwrap_or(runtime.out_dir), &name)?;
            (doc, run_dir)
        }
        (None, None) => bail!("train needs --config FILE or --resume RUN_DIR"),
    };
    let device = open_device(device.as_deref(), &doc)?;
    let summary = tasks::family(doc.kind).train(TrainJob { config: &doc, run_dir: &run_dir, device: &device, resume: resume.is_some(), stop_after })?;
    match summary.best_epoch {
        Some(best) => {
            println!("run {} finished; best epoch {best}", summary.run_dir.display());
            print!("{}", summary.report.table());
        }
        None => println!(
            "run {} stopped after epoch {}; continue with: shopnet train --resume {}",
            summary.run_dir.display(),
            summary.epochs_done,
            summary.run_dir.display()
        ),
    }
    Ok(())
}

/// `<out>/<name>-<timestamp>`, made unique if two runs start within the same second.
fn new_run_dir(out: &Path, name: &str) -> Result<PathBuf> {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    std::fs::create_dir_all(out).map_err(|err| anyhow::anyhow!("{}: cannot create: {err}", out.display()))?;
    for attempt in 1.. {
        let candidate = if attempt == 1 { out.join(format!("{name}-{stamp}")) } else { out.join(format!("{name}-{stamp}-{attempt}")) };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => bail!("{}: cannot create: {err}", candidate.display()),
        }
    }
    unreachable!("the attempt counter is unbounded")
}
