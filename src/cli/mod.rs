//! The `shopnet` command line: the arguments here, one function per subcommand in
//! [`commands`]. Every command works the same for every model family; errors end in one
//! line on stderr and exit code 2.

mod commands;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::bench;

#[derive(Parser, Debug)]
#[command(
    name = "shopnet",
    version,
    about = "Train, evaluate, score and export e-commerce models (GCN, GAT, LightGCN, CNN+LSTM, ...) on CPU or GPU."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model from a config file, or resume a stopped run.
    #[command(
        after_help = "Examples:\n  shopnet train --config configs/gat_cora.toml\n  shopnet train --config configs/gcn_cora.toml --device wgpu --set train.seed=3 --set train.epochs=50\n  shopnet train --resume checkpoints/gat_cora-20261128-101500"
    )]
    Train {
        /// The run's TOML config.
        #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// cpu, wgpu, wgpu:cpu, wgpu:discrete:N, wgpu:integrated:N; a graphics API may follow
        /// wgpu (wgpu:vulkan, wgpu:gl, ...) (default: runtime.device).
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
        #[arg(long, value_name = "EPOCHS", allow_negative_numbers = true)]
        stop_after: Option<usize>,
    },
    /// Evaluate a trained model: metrics table on stdout, report.json in the run.
    #[command(
        after_help = "Example:\n  shopnet eval --run checkpoints/gat_cora-20261128-101500 --split test"
    )]
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
    #[command(
        after_help = "Example (graph models: one row per node with its predicted label and class probabilities):\n  shopnet score --run checkpoints/gat_cora-20261128-101500 --input my_graph/ --output predictions.csv"
    )]
    Score {
        #[arg(long = "run", value_name = "RUN_DIR|BUNDLE")]
        run: PathBuf,
        /// The data to score, in the model's input format (for a graph: a folder or builtin:cora).
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: PathBuf,
        /// Only this share of the examples, INDEX/COUNT (0-based): by a stable hash of each
        /// example's id, so COUNT jobs together write every row once (see README, Scale-out).
        #[arg(long, value_name = "INDEX/COUNT")]
        shard: Option<crate::base::shard::Shard>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Recommend the top K items to users with a trained recommender.
    #[command(
        after_help = "Examples:\n  shopnet recommend --run checkpoints/lightgcn_gowalla-20261128-101500 --users all --k 20 --output recs.csv\n  shopnet recommend --run RUN_DIR --users user_ids.txt --k 10 --output recs.csv"
    )]
    Recommend {
        #[arg(long = "run", value_name = "RUN_DIR|BUNDLE")]
        run: PathBuf,
        /// `all` (every user with training interactions) or a file with one user id per line.
        #[arg(long, default_value = "all")]
        users: String,
        #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
        k: usize,
        /// CSV of user_id,rank,item_id,score; training items are never recommended.
        #[arg(long)]
        output: PathBuf,
        /// Only this share of the examples, INDEX/COUNT (0-based): by a stable hash of each
        /// example's id, so COUNT jobs together write every row once (see README, Scale-out).
        #[arg(long, value_name = "INDEX/COUNT")]
        shard: Option<crate::base::shard::Shard>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Embed images with a trained image model: an index of L2-normalised embeddings.
    #[command(
        after_help = "Example:\n  shopnet embed --run checkpoints/vgg_fashion-20261128-101500 --input catalogue/ --output catalogue.safetensors\n\nWrites catalogue.safetensors (an F32 [N, D] matrix `embeddings`, with the run and its weights' sha256 as metadata) and catalogue.ids.csv (row,id,label)."
    )]
    Embed {
        #[arg(long = "run", value_name = "RUN_DIR|BUNDLE")]
        run: PathBuf,
        /// A folder of images (optionally one sub-folder per class), a CSV with a path column, or an IDX image file.
        #[arg(long, value_name = "DIR|CSV|IDX")]
        input: String,
        #[arg(long)]
        output: PathBuf,
        /// Only this share of the examples, INDEX/COUNT (0-based): by a stable hash of each
        /// example's id, so COUNT jobs together write every row once (see README, Scale-out).
        #[arg(long, value_name = "INDEX/COUNT")]
        shard: Option<crate::base::shard::Shard>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Find the K most similar items of an embedding index (exact cosine search).
    #[command(
        after_help = "Examples:\n  shopnet similar --index catalogue.safetensors --query photo.png --k 10\n  shopnet similar --index catalogue.safetensors --query test1000/2/0000.png --k 5     # an id in the index\n  shopnet similar --index catalogue.safetensors --queries queries.txt --k 10 --output neighbours.csv"
    )]
    Similar {
        /// An index written by shopnet embed.
        #[arg(long, value_name = "EMBEDDINGS")]
        index: PathBuf,
        /// An image file, or the id of an item in the index (which is then left out of its own answer).
        #[arg(
            long,
            value_name = "IMAGE|ID",
            required_unless_present = "queries",
            conflicts_with = "queries"
        )]
        query: Option<String>,
        /// A file with one query (image path or id) per line.
        #[arg(long, value_name = "FILE", requires = "output")]
        queries: Option<PathBuf>,
        #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
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
    #[command(
        after_help = "Example:\n  shopnet export --run checkpoints/gat_cora-20261128-101500 --out bundles/gat_cora"
    )]
    Export {
        #[arg(long = "run", value_name = "RUN_DIR")]
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Draw a run as one self-contained HTML page: curves, metrics and what the model got wrong.
    #[command(
        after_help = "Examples:\n  shopnet report --run checkpoints/gat_cora-20261128-101500            # writes report.html in the run\n  shopnet report --run bundles/sentiment_zh --split test --out sentiment.html\n  shopnet report --compare checkpoints/gat_cora-A checkpoints/gat_cora-B --out gat.html"
    )]
    Report {
        /// A run directory or an export bundle.
        #[arg(
            long = "run",
            value_name = "RUN_DIR|BUNDLE",
            required_unless_present = "compare",
            conflicts_with = "compare"
        )]
        run: Option<PathBuf>,
        /// Several run directories: their curves and final metrics on one page.
        #[arg(long, value_name = "RUN_DIR", num_args = 2..)]
        compare: Vec<PathBuf>,
        /// The HTML file (default: report.html in the run; comparison.html for --compare).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = EvalSplit::Test)]
        split: EvalSplit,
        /// For evaluating a run that keeps no findings for the split (default: runtime.device).
        #[arg(long)]
        device: Option<String>,
    },
    /// Serve export bundles over HTTP with the Open Inference Protocol (KServe v2 REST).
    #[command(
        after_help = "Examples:\n  shopnet serve --bundle bundles/sentiment_zh --bundle bundles/intent --port 8080\n  curl -s localhost:8080/v2/models/sentiment_zh/infer -d '{\"inputs\": [{\"name\": \"text\", \"shape\": [1], \"datatype\": \"BYTES\", \"data\": [\"很好用\"]}]}'\n\nEach bundle is served under its folder's name. See README, Serving."
    )]
    Serve {
        /// An export bundle (repeatable).
        #[arg(long = "bundle", value_name = "BUNDLE", required = true)]
        bundles: Vec<PathBuf>,
        /// The address to listen on (loopback unless told otherwise).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// 0 picks a free port (the one chosen is printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Examples gathered into one batch per model.
        #[arg(long, default_value_t = 32)]
        max_batch: usize,
        /// How long the first request of a batch waits for others, in milliseconds.
        #[arg(long, default_value_t = 5)]
        max_delay_ms: u64,
        /// Requests waiting per model; more are answered 503 at once.
        #[arg(long, default_value_t = 256)]
        queue: usize,
        /// The largest request body, in bytes.
        #[arg(long, default_value_t = 8 << 20)]
        max_body_bytes: usize,
        /// A request not answered in this many milliseconds gets 504.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// CPU threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
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
    #[command(
        after_help = "Examples:\n  shopnet bench --model gat --threads 2\n  shopnet bench --model gcn --nodes 1000000 --edges 10000000 --features 64 --epochs 1 --warmup 0\n  shopnet bench --model intent --threads 2   # one epoch over 20,000 sequences, then inference\n  shopnet bench --model vgg --threads 2      # one epoch over 2,048 images, then inference\n  shopnet bench --model bert --weights \"$(scripts/install_minilm.sh)\" --threads 2"
    )]
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
        /// Compose every op from Burn ops instead of shopnet's fused CPU kernels (what
        /// `runtime.fused_ops = false` does to a run), to compare the two.
        #[arg(long)]
        composed_ops: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SynthData {
    /// A Taobao-format event log (user_id,item_id,category_id,behavior,timestamp) whose
    /// purchases after 2017-12-02 16:00 UTC follow a documented signal (see README).
    #[command(
        after_help = "Example:\n  shopnet synth events --users 50000 --seed 1 --out synth_events.csv"
    )]
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
pub enum TokenizerCommand {
    /// Train a BERT-style tokenizer (BERT normaliser and pre-tokeniser, WordPiece with one
    /// token per Chinese character, or with --cjk-words multi-character pieces) on one
    /// column of a CSV and write tokenizer.json.
    #[command(
        after_help = "Example:\n  shopnet tokenizer train --input ../shared/data/online_shopping_10_cats/online_shopping_10_cats.csv --column review --vocab-size 8000 --out zh_tokenizer.json"
    )]
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
        /// Learn Chinese (CJK) words and phrases as tokens instead of one token per
        /// character (model.tokenizer_cjk = "words").
        #[arg(long)]
        cjk_words: bool,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EvalSplit {
    Val,
    Test,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return argument_error(err),
    };
    match commands::run(cli.command) {
        Ok(()) => 0,
        Err(err) => {
            let line = crate::base::quote::bounded_line(&one_line(&err));
            // Errors about an argument (`--k: must be at least 1`) point at the usage too.
            let pointer =
                if line.starts_with("--") { format!(" {HELP_POINTER}") } else { String::new() };
            eprintln!("error: {line}{pointer}");
            2
        }
    }
}

/// `--help` and `--version` print as clap writes them; a wrong or missing argument is
/// one line that points at `--help`, like every other user error.
fn argument_error(err: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // clap's usage line names the command that lacks its subcommand.
            let rendered = err.render().to_string();
            let usage = rendered.lines().find_map(|l| l.trim().strip_prefix("Usage: "));
            let command: Vec<&str> = usage
                .unwrap_or("shopnet")
                .split_whitespace()
                .take_while(|w| !w.starts_with(['<', '[']))
                .collect();
            let command = command.join(" ");
            eprintln!("error: `{command}` needs a command (see {command} --help)");
            2
        }
        _ => {
            eprintln!("error: {} {HELP_POINTER}", clap_message(&err.render().to_string()));
            2
        }
    }
}

/// Where an argument error points for the full usage.
const HELP_POINTER: &str = "(see shopnet --help, or shopnet COMMAND --help)";

/// clap's message on one line: the first line, with the arguments it lists below it
/// (`the following required arguments were not provided: --output <OUTPUT>`), without the
/// usage and tips that follow.
fn clap_message(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let listed: Vec<&str> =
        lines.take_while(|l| l.starts_with('-') || l.starts_with('<')).collect();
    if listed.is_empty() { first.to_string() } else { format!("{first} {}", listed.join(", ")) }
}

/// The error and its causes on one line, outermost first.
fn one_line(err: &anyhow::Error) -> String {
    err.chain().map(|e| e.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}
