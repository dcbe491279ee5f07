//! One function per subcommand: resolve the arguments, open the device, hand over to a
//! family (through `with_family!`) or to the layer that does the work.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;

use super::{Command, EvalSplit, SynthData, TokenizerCommand};
use crate::artifacts::bundle;
use crate::artifacts::embeddings::{self, EmbeddingIndex};
use crate::artifacts::manifest::{BUNDLE_WEIGHTS, MANIFEST_FILE};
use crate::artifacts::opened::Artifacts;
use crate::artifacts::run_dir::{
    BEST_WEIGHTS, CONFIG_FILE, LAST_WEIGHTS, METRICS_CSV, METRICS_JSONL, REPORT_FILE, RUN_FILE,
    STATE_FILE,
};
use crate::base::backend::{self, DeviceSpec};
use crate::base::config::{ConfigDoc, ModelKind};
use crate::base::files::check_output;
use crate::base::shard::Shard;
use crate::base::split::Split;
use crate::bench::{self, BenchArgs, RandomGraph};
use crate::data::{sequences, synth, text};
use crate::families::driver::{self, RunTarget, TrainJob};
use crate::families::family::{BatchJob, Embed, Recommend};
use crate::families::images::ImageFamily;
use crate::families::recommender::RecommenderFamily;
use crate::families::with_family;
use crate::report::{self, ReportArgs};
use crate::serve::{self, BatchPolicy, ServeArgs};

// long: one arm per subcommand, each a call with the arguments unpacked.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Train { config, device, overrides, out, resume, stop_after } => {
            train(TrainArgs { config, device, overrides, out, resume, stop_after })
        }
        Command::Eval { run, split, device } => eval(&run, split, device.as_deref()),
        Command::Score { run, input, output, shard, device } => {
            let job =
                BatchJob { input: &input, output: &output, shard: shard.unwrap_or(Shard::ALL) };
            score(&run, &job, device.as_deref())
        }
        Command::Recommend { run, users, k, output, shard, device } => {
            let job =
                BatchJob { input: &users, output: &output, shard: shard.unwrap_or(Shard::ALL) };
            recommend(&run, &job, k, device.as_deref())
        }
        Command::Embed { run, input, output, shard, device } => {
            let job =
                BatchJob { input: &input, output: &output, shard: shard.unwrap_or(Shard::ALL) };
            embed(&run, &job, device.as_deref())
        }
        Command::Similar { index, query, queries, k, output, run, device } => {
            let queries = match (query, queries) {
                (Some(query), _) => vec![query],
                (None, Some(file)) => read_queries(&file)?,
                (None, None) => bail!("similar needs --query IMAGE|ID or --queries FILE"),
            };
            similar(SimilarArgs { index, queries, k, output, run, device })
        }
        Command::Export { run, out } => export(&run, &out),
        Command::Report { run, compare, out, split, device } => {
            report_command(run, compare, out, split, device.as_deref())
        }
        Command::Serve {
            bundles,
            host,
            port,
            max_batch,
            max_delay_ms,
            queue,
            max_body_bytes,
            timeout_ms,
            device,
            threads,
        } => {
            let policy =
                BatchPolicy { max_batch, max_delay: Duration::from_millis(max_delay_ms), queue };
            let limits = ServeLimits { max_body_bytes, timeout_ms };
            serve(bundles, SocketAddr::new(host, port), policy, limits, &device, threads)
        }
        Command::Inspect { path } => {
            print!("{}", bundle::inspect(&Artifacts::open(&path)?)?);
            Ok(())
        }
        Command::Synth { what: SynthData::Events { users, seed, out } } => {
            synth_events(users, seed, &out)
        }
        Command::Tokenizer {
            command:
                TokenizerCommand::Train { input, column, vocab_size, min_frequency, cjk_words, out },
        } => {
            check_output("--out", &out, &[&input])?;
            if vocab_size < 10 {
                bail!("--vocab-size: must be at least 10, got {vocab_size}");
            }
            let cjk = if cjk_words { text::CjkPieces::Words } else { text::CjkPieces::Characters };
            let spec = text::TokenizerSpec { vocab_size, min_frequency, cjk };
            let size = text::train_tokenizer_from_csv(&input, &column, spec, &out)?;
            println!("wrote a tokenizer of {size} tokens to {}", out.display());
            Ok(())
        }
        Command::Bench {
            model,
            device,
            epochs,
            warmup,
            threads,
            heads,
            nodes,
            edges,
            features,
            weights,
            sentences,
            steps,
            composed_ops,
        } => {
            backend::set_fused_ops(!composed_ops);
            let random_graph = match (nodes, edges, features) {
                (Some(nodes), Some(edges), Some(features)) => {
                    Some(RandomGraph { nodes, edges, features })
                }
                _ => None,
            };
            let args = BenchArgs {
                model,
                device_name: device,
                epochs,
                warmup,
                heads,
                random_graph,
                weights,
                sentences,
                steps,
            };
            run_bench(&args, threads)
        }
    }
}

struct ServeLimits {
    max_body_bytes: usize,
    timeout_ms: u64,
}

fn serve(
    bundles: Vec<PathBuf>,
    addr: SocketAddr,
    policy: BatchPolicy,
    limits: ServeLimits,
    device: &str,
    threads: usize,
) -> Result<()> {
    for (flag, value) in [("--max-batch", policy.max_batch), ("--queue", policy.queue)] {
        if value == 0 {
            bail!("{flag}: must be at least 1");
        }
    }
    if limits.max_body_bytes < 1024 || limits.timeout_ms == 0 {
        bail!("--max-body-bytes: at least 1024, and --timeout-ms: at least 1");
    }
    backend::configure_threads(threads);
    let device = backend::open(&DeviceSpec::parse(device).context("--device")?)?;
    serve::run(ServeArgs {
        bundles,
        addr,
        policy,
        body_limit: limits.max_body_bytes,
        timeout: Duration::from_millis(limits.timeout_ms),
        device,
    })
}

struct TrainArgs {
    config: Option<PathBuf>,
    device: Option<String>,
    overrides: Vec<String>,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    stop_after: Option<usize>,
}

fn train(args: TrainArgs) -> Result<()> {
    if args.stop_after == Some(0) {
        bail!("--stop-after: must be at least 1");
    }
    let (doc, target) = match (&args.config, args.resume) {
        (_, Some(run)) => {
            if !run.join(RUN_FILE).is_file() || !run.join(CONFIG_FILE).is_file() {
                bail!(
                    "{}: not a resumable run directory (no {RUN_FILE} and {CONFIG_FILE})",
                    run.display()
                );
            }
            (ConfigDoc::load(&run.join(CONFIG_FILE), &args.overrides)?, RunTarget::Resume(run))
        }
        (Some(path), None) => {
            let doc = ConfigDoc::load(path, &args.overrides)?;
            let runtime = doc.runtime()?;
            let stem = path.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
            let name = runtime.name.clone().unwrap_or(stem);
            if let Some(out) = args.out.as_ref().filter(|out| out.exists() && !out.is_dir()) {
                bail!("--out {}: is a file; name a folder for the run directories", out.display());
            }
            (doc, RunTarget::New { out: args.out.unwrap_or(runtime.out_dir), name })
        }
        (None, None) => bail!("train needs --config FILE or --resume RUN_DIR"),
    };
    let kind = doc.kind()?;
    let devices = backend::open_all_for_run(args.device.as_deref(), &doc)?;
    let device_label = match &args.device {
        Some(flag) => flag.clone(),
        None => doc.runtime()?.device,
    };
    let job = TrainJob {
        config: &doc,
        target,
        device: &devices[0],
        device_label: &device_label,
        replicas: &devices[1..],
        stop_after: args.stop_after,
    };
    let summary = with_family!(kind, F => driver::train::<F>(job))?;
    let dir = summary.run_dir.display();
    match summary.best_epoch {
        Some(best) => {
            println!("run {dir} finished after {} epochs; best epoch {best}", summary.epochs_done);
            print!("{}", summary.report.table());
            report_finished_run(&summary.run_dir, &device_label);
        }
        None => println!(
            "run {dir} stopped after epoch {}; continue with: shopnet train --resume {dir}",
            summary.epochs_done
        ),
    }
    Ok(())
}

/// Writes a finished run's report.html. The run is complete whatever happens here: a
/// report that cannot be drawn is a warning, and `shopnet report` can retry it.
fn report_finished_run(run_dir: &Path, device_label: &str) {
    let args =
        ReportArgs { run: run_dir, out: None, split: Split::Test, device: Some(device_label) };
    match report::write(&args) {
        Ok(path) => println!("report: {}", path.display()),
        Err(err) => eprintln!("warning: no report: {err:#}"),
    }
}

/// A run or bundle and the device to use it on; `output` may not overwrite the data the
/// run's config names.
fn open(run: &Path, device: Option<&str>, output: Option<&Path>) -> Result<(Artifacts, Device)> {
    let artifacts = Artifacts::open(run)?;
    if let Some(output) = output {
        let data = artifacts.config.data_paths();
        check_output("--output", output, &data.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    }
    let device = backend::open_for_run(device, &artifacts.config)?;
    Ok((artifacts, device))
}

fn eval(run: &Path, split: EvalSplit, device: Option<&str>) -> Result<()> {
    let (artifacts, device) = open(run, device, None)?;
    let split = match split {
        EvalSplit::Val => Split::Val,
        EvalSplit::Test => Split::Test,
    };
    let metrics =
        with_family!(artifacts.info.kind, F => driver::evaluate::<F>(artifacts, split, &device))?;
    print!("{}", metrics.table());
    Ok(())
}

fn score(run: &Path, job: &BatchJob<'_>, device: Option<&str>) -> Result<()> {
    let output = job.output;
    check_output("--output", output, &[Path::new(job.input), run])?;
    let (artifacts, device) = open(run, device, Some(output))?;
    let rows = with_family!(artifacts.info.kind, F => driver::score::<F>(artifacts, job, &device))?;
    println!("wrote {rows} rows{} to {}", shard_note(job.shard), output.display());
    Ok(())
}

/// ` (shard 1/4)` for a sharded job.
fn shard_note(shard: Shard) -> String {
    if shard == Shard::ALL { String::new() } else { format!(" (shard {shard})") }
}

fn recommend(run: &Path, job: &BatchJob<'_>, k: usize, device: Option<&str>) -> Result<()> {
    if k == 0 {
        bail!("--k: must be at least 1");
    }
    let output = job.output;
    check_output("--output", output, &[Path::new(job.input), run])?;
    let (artifacts, device) = open(run, device, Some(output))?;
    if artifacts.info.kind != ModelKind::Recommender {
        bail!(
            "{}: a {} model; only recommender models (model.kind = \"recommender\") recommend items",
            run.display(),
            artifacts.info.kind
        );
    }
    let trained = driver::open::<RecommenderFamily>(artifacts)?;
    let rows = RecommenderFamily::recommend(&trained, job, k, &device)?;
    println!("wrote {rows} recommendations{} to {}", shard_note(job.shard), output.display());
    Ok(())
}

fn embed(run: &Path, job: &BatchJob<'_>, device: Option<&str>) -> Result<()> {
    let output = job.output;
    for written in [output.to_path_buf(), embeddings::ids_path(output)] {
        check_output("--output", &written, &[Path::new(job.input), run])?;
    }
    let (artifacts, device) = open(run, device, Some(output))?;
    if artifacts.info.kind != ModelKind::Vgg {
        bail!(
            "{}: a {} model; only image models (model.kind = \"vgg\") make embeddings",
            run.display(),
            artifacts.info.kind
        );
    }
    let trained = driver::open::<ImageFamily>(artifacts)?;
    let rows = ImageFamily::embed(&trained, job, &device)?;
    println!(
        "wrote {rows} embeddings{} to {} (ids in {})",
        shard_note(job.shard),
        output.display(),
        embeddings::ids_path(output).display()
    );
    Ok(())
}

struct SimilarArgs {
    index: PathBuf,
    /// Image paths or index ids.
    queries: Vec<String>,
    k: usize,
    output: Option<PathBuf>,
    /// The run that embeds query images; by default the one that built the index.
    run: Option<PathBuf>,
    device: Option<String>,
}

/// Answers each query with its `k` most similar index items. A query that names an id
/// in the index uses that row (and never returns it); any other query must be an image
/// file, embedded with the model that built the index.
fn similar(args: SimilarArgs) -> Result<()> {
    if args.k == 0 {
        bail!("--k: must be at least 1");
    }
    if let Some(output) = &args.output {
        let ids = embeddings::ids_path(&args.index);
        let mut inputs: Vec<&Path> = args.queries.iter().map(Path::new).collect();
        inputs.extend([args.index.as_path(), ids.as_path()]);
        check_output("--output", output, &inputs)?;
    }
    let index = EmbeddingIndex::load(&args.index)?;
    let by_id = index.rows_by_id();
    let rows: Vec<Option<usize>> =
        args.queries.iter().map(|q| by_id.get(q.as_str()).copied()).collect();
    let mut vectors = vec![0.0f32; args.queries.len() * index.dim];
    for (q, row) in rows.iter().enumerate() {
        if let Some(r) = row {
            vectors[q * index.dim..(q + 1) * index.dim]
                .copy_from_slice(&index.values[r * index.dim..(r + 1) * index.dim]);
        }
    }
    let image_queries: Vec<usize> = (0..rows.len()).filter(|&q| rows[q].is_none()).collect();
    let device = match image_queries.is_empty() {
        true => backend::open(&DeviceSpec::parse(args.device.as_deref().unwrap_or("cpu"))?)?,
        false => embed_image_queries(&args, &index, &image_queries, &mut vectors)?,
    };
    // An id query skips its own row; an image query has none (usize::MAX never matches).
    let exclude: Vec<usize> = rows.iter().map(|r| r.unwrap_or(usize::MAX)).collect();
    let started = std::time::Instant::now();
    let neighbours = embeddings::search(&index.tensor(&device), &vectors, Some(&exclude), args.k)?;
    let search_seconds = started.elapsed().as_secs_f64();
    let written =
        embeddings::write_neighbours(&index, &args.queries, &neighbours, args.output.as_deref())?;
    if let Some(output) = &args.output {
        println!(
            "wrote {written} neighbours to {} (search {search_seconds:.3} s)",
            output.display()
        );
    }
    Ok(())
}

/// Embeds the image-file queries with the model that built the index (or `--run`, which
/// must be that model) into their rows of `vectors`; returns the device it used.
fn embed_image_queries(
    args: &SimilarArgs,
    index: &EmbeddingIndex,
    queries: &[usize],
    vectors: &mut [f32],
) -> Result<Device> {
    let built_by = index.metadata.get(embeddings::META_RUN).cloned().unwrap_or_default();
    let run_dir = args.run.clone().unwrap_or_else(|| PathBuf::from(&built_by));
    let artifacts = Artifacts::open(&run_dir)
        .with_context(|| format!("{}: the model that embeds query images", run_dir.display()))?;
    let stored = index.metadata.get(embeddings::META_WEIGHTS).cloned().unwrap_or_default();
    if artifacts.info.kind != ModelKind::Vgg
        || crate::base::files::sha256_file(&artifacts.weights)? != stored
    {
        let run = run_dir.display();
        bail!(
            "{}: the index was built by another model ({built_by}) than {run}; embed the catalogue again with shopnet embed --run {run}",
            args.index.display()
        );
    }
    let device = backend::open_for_run(args.device.as_deref(), &artifacts.config)?;
    let trained = driver::open::<ImageFamily>(artifacts)?;
    let files: Vec<String> = queries.iter().map(|&q| args.queries[q].clone()).collect();
    if let Some(missing) = files.iter().find(|f| !Path::new(f).is_file()) {
        bail!("{missing}: neither an id in {} nor an image file", args.index.display());
    }
    let embedded = ImageFamily::embed_files(&trained, &files, &device)?;
    if embedded.len() != files.len() * index.dim {
        let made = embedded.len() / files.len().max(1);
        bail!(
            "{}: the index holds {}-wide embeddings, the model makes {made}-wide ones",
            args.index.display(),
            index.dim
        );
    }
    for (row, &q) in embedded.chunks(index.dim).zip(queries) {
        vectors[q * index.dim..(q + 1) * index.dim].copy_from_slice(row);
    }
    Ok(device)
}

/// One query per non-empty line.
fn read_queries(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read queries", path.display()))?;
    let queries: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if queries.is_empty() {
        bail!("{}: no queries (expected one image path or id per line)", path.display());
    }
    Ok(queries)
}

fn export(run: &Path, out: &Path) -> Result<()> {
    let artifacts = Artifacts::open(run)?;
    if out.exists() && fs_contains(run, out) {
        bail!("--out {}: is the run itself or inside it; export into a new folder", out.display());
    }
    let kind = artifacts.info.kind;
    with_family!(kind, F => driver::export::<F>(artifacts, out))?;
    println!("exported {kind} model to {}", out.display());
    Ok(())
}

/// Whether `inner` is `outer` or lies inside it (both existing).
fn fs_contains(outer: &Path, inner: &Path) -> bool {
    match (outer.canonicalize(), inner.canonicalize()) {
        (Ok(outer), Ok(inner)) => inner.starts_with(outer),
        _ => false,
    }
}

fn synth_events(users: usize, seed: u64, out: &Path) -> Result<()> {
    let summary = synth::write_events(users, seed, out)?;
    let auc = |value: Option<f64>| value.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!(
        "wrote {} events of {} users ({} buy after the cut {}) to {}",
        summary.events,
        summary.users,
        summary.buyers,
        sequences::describe_time(synth::CUT),
        out.display()
    );
    println!(
        "planted signal: ROC-AUC {} for the true probabilities (the ceiling), {} for the cart-count baseline",
        auc(summary.oracle_roc_auc),
        auc(summary.cart_count_roc_auc)
    );
    Ok(())
}

fn run_bench(args: &BenchArgs, threads: usize) -> Result<()> {
    if threads > 4096 {
        bail!("--threads: must be at most 4096, got {threads}");
    }
    backend::configure_threads(threads);
    let device = backend::open(&DeviceSpec::parse(&args.device_name)?)?;
    println!("{}", bench::run(args, &device)?);
    Ok(())
}

/// What a run directory or bundle holds that a report written into it must not replace.
const RUN_OWN_FILES: &[&str] = &[
    CONFIG_FILE,
    RUN_FILE,
    STATE_FILE,
    METRICS_CSV,
    METRICS_JSONL,
    REPORT_FILE,
    BEST_WEIGHTS,
    LAST_WEIGHTS,
    MANIFEST_FILE,
    BUNDLE_WEIGHTS,
];

fn report_command(
    run: Option<PathBuf>,
    compare: Vec<PathBuf>,
    out: Option<PathBuf>,
    split: EvalSplit,
    device: Option<&str>,
) -> Result<()> {
    if let Some(out) = &out {
        // The runs' own files are never the report's target.
        let own: Vec<PathBuf> = run
            .iter()
            .chain(&compare)
            .flat_map(|dir| RUN_OWN_FILES.iter().map(move |file| dir.join(file)))
            .collect();
        check_output("--out", out, &own.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    }
    let path = match run {
        Some(run) => {
            let split = match split {
                EvalSplit::Val => Split::Val,
                EvalSplit::Test => Split::Test,
            };
            report::write(&ReportArgs { run: &run, out, split, device })?
        }
        None => {
            let out = out.unwrap_or_else(|| PathBuf::from("comparison.html"));
            report::compare(&compare, &out)?
        }
    };
    println!("wrote {}", path.display());
    Ok(())
}
