//! `shopnet bench`: times training epochs of a net on a fixed workload.
//!
//! Each timed epoch is what `shopnet train` does per epoch minus evaluation: forward,
//! backward, optimiser step, and reading the loss back (which waits for the device).
//! `scripts/bench_graph_torch.py`, `scripts/intent_torch.py` and `scripts/vgg_torch.py`
//! time the same nets in PyTorch for the ratio.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::base::config::{OptimizerKind, TrainConfig};
use crate::base::memory;
use crate::base::rng::HostRng;
use crate::base::sparse::SparseFeatures;
use crate::base::split::{Split, Splits};
use crate::base::tensor::cross_entropy;
use crate::data::graph::{Graph, GraphDataConfig};
use crate::data::sequences::Examples;
use crate::families::intent::PurchaseIntent;
use crate::families::node::{GraphNet, NodeClassification};
use crate::models::bert::{Bert, BertClassifier, BertInput, ModelFiles};
use crate::models::gat::{Gat, GatConfig};
use crate::models::gcn::{Gcn, GcnConfig};
use crate::models::intent::IntentConfig;
use crate::models::vgg::{Vgg, VggConfig};
use crate::train::step::optimizer_step;
use crate::train::{Task, optim};

/// A random graph for scale benchmarks: `edges` directed edges drawn uniformly, dense
/// features, 8 classes, 10 % of nodes in the train split.
pub fn synthetic_graph(nodes: usize, edges: usize, features: usize, seed: u64) -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let classes = 8u32;
    let mut sparse = SparseFeatures {
        rows: Vec::with_capacity(nodes * features),
        cols: Vec::with_capacity(nodes * features),
        values: Vec::with_capacity(nodes * features),
    };
    for node in 0..nodes as u32 {
        for feature in 0..features as u32 {
            sparse.rows.push(node);
            sparse.cols.push(feature);
            sparse.values.push(rng.random_range(0.0..1.0));
        }
    }
    let edge_list = (0..edges)
        .map(|_| (rng.random_range(0..nodes as u32), rng.random_range(0..nodes as u32)))
        .collect();
    Graph {
        node_ids: (0..nodes).map(|i| i.to_string()).collect(),
        labels: (0..nodes).map(|_| Some(rng.random_range(0..classes))).collect(),
        label_names: (0..classes).map(|c| c.to_string()).collect(),
        splits: (0..nodes).map(|i| (i % 10 == 0).then_some(Split::Train)).collect(),
        num_features: features,
        features: sparse,
        edges: edge_list,
    }
}

/// The nets `shopnet bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchNet {
    Gcn,
    Gat,
    /// The purchase-intent CNN + LSTM (the reference `cnn_lstm` workload).
    Intent,
    /// The VGG-style image net (the reference `vgg` workload).
    Vgg,
    /// A Hugging Face BERT given by `--weights` (the reference `bert` workload:
    /// all-MiniLM-L6-v2).
    Bert,
}

/// What `shopnet bench` was asked: the net and the knobs of its workload.
pub struct BenchArgs {
    pub model: BenchNet,
    /// The device as the user named it, for the report line.
    pub device_name: String,
    /// Graph nets: timed and untimed full-batch epochs, GAT heads, a random graph's size.
    pub epochs: usize,
    pub warmup: usize,
    pub heads: usize,
    pub random_graph: Option<RandomGraph>,
    /// BERT: the Hugging Face folder or repo id, sentences to embed, fine-tuning steps.
    pub weights: Option<String>,
    pub sentences: usize,
    pub steps: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct RandomGraph {
    pub nodes: usize,
    pub edges: usize,
    pub features: usize,
}

/// Runs the workload and returns its report line(s).
pub fn run(args: &BenchArgs, device: &Device) -> Result<String> {
    let threads = rayon::current_num_threads();
    let on = format!("on {} ({threads} threads)", args.device_name);
    match args.model {
        BenchNet::Gcn | BenchNet::Gat => graph_report(args, device, &on),
        BenchNet::Intent => {
            let (sequences, batch) = (20_000, 32);
            let t = time_intent(sequences, batch, device)?;
            Ok(format!(
                "intent {sequences} sequences of 50 {on}: train epoch {:.2} s ({} steps of {batch}), inference {:.2} s (batch 256); peak memory {} after training, {} with inference",
                t.train_s,
                t.steps,
                t.inference_s,
                memory_text(t.train_peak_mib),
                peak_memory_text()
            ))
        }
        BenchNet::Vgg => {
            let images = 2_048;
            let t = time_vgg(
                &VggBench { images, train_batch: 64, infer_batch: 256, classes: 10 },
                device,
            )?;
            Ok(format!(
                "vgg {images} images 3x32x32 {on}: train epoch {:.3} s (batch 64), inference {:.3} s (batch 256); peak memory {}",
                t.train_s,
                t.infer_s,
                peak_memory_text()
            ))
        }
        BenchNet::Bert => bert_report(args, device, &on),
    }
}

fn peak_memory_text() -> String {
    memory_text(peak_memory_mib())
}

fn memory_text(mib: Option<f64>) -> String {
    mib.map_or("n/a".into(), |m| format!("{m:.0} MiB"))
}

fn graph_report(args: &BenchArgs, device: &Device, on: &str) -> Result<String> {
    if args.heads == 0 {
        bail!("--heads: must be at least 1");
    }
    if args.epochs == 0 {
        bail!("--epochs: must be at least 1");
    }
    let (graph, workload) = match args.random_graph {
        Some(RandomGraph { nodes, edges, features }) => {
            if nodes == 0 || features == 0 {
                bail!("--nodes and --features: must be at least 1");
            }
            // Dense random features (coordinates and value) and the edge list.
            let bytes = (nodes as u128).saturating_mul(features as u128).saturating_mul(12 * 2);
            let bytes = bytes.saturating_add((edges as u128).saturating_mul(8 * 8));
            memory::ensure_fits(
                &format!("--nodes {nodes} --edges {edges} --features {features}"),
                bytes,
            )?;
            (
                synthetic_graph(nodes, edges, features, 0),
                format!("random graph {nodes} nodes {edges} edges {features} features"),
            )
        }
        None => (Graph::load(&GraphDataConfig::default(), None)?, "cora".to_string()),
    };
    let timing = match args.model {
        BenchNet::Gat => {
            let config = GatConfig { heads: args.heads, ..GatConfig::default() };
            time_net::<Gat>(config, &graph, device, args, 0.005)?
        }
        _ => time_net::<Gcn>(GcnConfig::default(), &graph, device, args, 0.01)?,
    };
    Ok(format!(
        "{} {workload} {on}: {:.2} ms/epoch mean, {:.2} ms min over {} epochs; setup {:.1} s; peak memory {}",
        format!("{:?}", args.model).to_lowercase(),
        timing.mean_ms,
        timing.min_ms,
        args.epochs,
        timing.setup_s,
        peak_memory_text()
    ))
}

struct EpochTimes {
    mean_ms: f64,
    min_ms: f64,
    setup_s: f64,
}

/// Times `args.epochs` full-batch training epochs after `args.warmup` untimed ones.
fn time_net<N: GraphNet>(
    config: N::Config,
    graph: &Graph,
    device: &Device,
    args: &BenchArgs,
    lr: f64,
) -> Result<EpochTimes> {
    let setup = Instant::now();
    let task = NodeClassification::<N>::new(config, graph, graph.num_features, device);
    let mut model = task.init_model(0, &device.clone().autodiff())?;
    let mut optimizer =
        optim::build(&TrainConfig { lr, weight_decay: 5e-4, ..TrainConfig::default() });
    let setup_s = setup.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(args.epochs);
    for epoch in 0..args.warmup + args.epochs {
        let started = Instant::now();
        let loss = task.train_loss(&model, &(), &mut HostRng::for_epoch(0, epoch))?;
        model = optimizer_step(model, loss, &mut optimizer, lr).0;
        let _ = device.sync();
        if epoch >= args.warmup {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mean_ms = times.iter().sum::<f64>() / times.len().max(1) as f64;
    Ok(EpochTimes { mean_ms, min_ms: times.iter().copied().fold(f64::INFINITY, f64::min), setup_s })
}

/// Seconds for one purchase-intent training epoch and for inference over the same
/// sequences: the reference `cnn_lstm` workload.
pub struct IntentTiming {
    pub train_s: f64,
    pub inference_s: f64,
    pub steps: usize,
    /// The process's peak memory when training ends, before inference adds its own.
    pub train_peak_mib: Option<f64>,
}

/// The reference `cnn_lstm` workload on random full-length sequences of a 10,000-token
/// vocabulary (a fifth of them buyers): one training epoch at `batch_size`, then
/// inference over the same sequences at 256.
pub fn time_intent(sequences: usize, batch_size: usize, device: &Device) -> Result<IntentTiming> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (length, vocabulary) = (50, 10_000);
    let examples = Examples {
        sequence_length: length,
        users: (0..sequences as u64).collect(),
        tokens: (0..sequences * length).map(|_| rng.random_range(2..vocabulary as u32)).collect(),
        labels: (0..sequences).map(|_| rng.random_bool(0.2)).collect(),
        carts: vec![0; sequences],
    };
    let splits = Splits { train: examples.clone(), ..Splits::default() };
    let task = PurchaseIntent::new(IntentConfig::default(), vocabulary, batch_size, splits, device);
    let mut model = task.init_model(0, &device.clone().autodiff())?;
    let mut optimizer = optim::build(&TrainConfig::default());
    let started = Instant::now();
    let mut host_rng = HostRng::for_epoch(0, 0);
    let batches = task.train_batches(&mut host_rng)?;
    for batch in &batches {
        let loss = task.train_loss(&model, batch, &mut host_rng)?;
        model = optimizer_step(model, loss, &mut optimizer, 1e-3).0;
    }
    let _ = device.sync();
    let train_s = started.elapsed().as_secs_f64();
    let train_peak_mib = peak_memory_mib();
    let started = Instant::now();
    task.probabilities(&model.valid(), &examples)?;
    Ok(IntentTiming {
        train_s,
        inference_s: started.elapsed().as_secs_f64(),
        steps: batches.len(),
        train_peak_mib,
    })
}

pub struct VggBench {
    pub images: usize,
    pub train_batch: usize,
    pub infer_batch: usize,
    pub classes: usize,
}

pub struct VggTimes {
    pub train_s: f64,
    pub infer_s: f64,
}

/// Random images and labels for the VGG workload, cut into tensors on demand.
struct RandomImages {
    side: usize,
    pixels: Vec<f32>,
    labels: Vec<u32>,
}

impl RandomImages {
    fn new(images: usize, side: usize, classes: usize) -> Self {
        let mut rng = HostRng::new(0);
        let pixels =
            (0..images * 3 * side * side).map(|_| rng.inner().random_range(-1.0..1.0)).collect();
        let labels = (0..images).map(|_| rng.inner().random_range(0..classes as u32)).collect();
        Self { side, pixels, labels }
    }

    fn batch(&self, device: &Device, start: usize, len: usize) -> (Tensor<4>, Tensor<2, Int>) {
        let per_image = 3 * self.side * self.side;
        let values = self.pixels[start * per_image..(start + len) * per_image].to_vec();
        let x =
            Tensor::<4>::from_data(TensorData::new(values, [len, 3, self.side, self.side]), device);
        (
            x,
            crate::base::tensor::label_column(
                self.labels[start..start + len].iter().copied(),
                device,
            ),
        )
    }
}

/// Times one epoch of training and one pass of inference of the reference net.
pub fn time_vgg(bench: &VggBench, device: &Device) -> Result<VggTimes> {
    let spec = VggConfig::default().spec();
    let data = RandomImages::new(bench.images, spec.input_size, bench.classes);
    let train_device = device.clone().autodiff();
    let mut model = Vgg::new(&spec, bench.classes, &mut HostRng::new(0), &train_device);
    let config = TrainConfig::default();
    let mut optimizer = optim::build(&config);
    let started = Instant::now();
    for start in (0..bench.images).step_by(bench.train_batch) {
        let (x, y) = data.batch(&train_device, start, bench.train_batch.min(bench.images - start));
        let (_, logits) = model.forward(x, None);
        model = optimizer_step(model, cross_entropy(logits, y), &mut optimizer, config.lr).0;
    }
    let _ = device.sync();
    let train_s = started.elapsed().as_secs_f64();

    let model = model.valid();
    let started = Instant::now();
    for start in (0..bench.images).step_by(bench.infer_batch) {
        let (x, _) = data.batch(device, start, bench.infer_batch.min(bench.images - start));
        let (embedding, _) = model.forward(x, None);
        let _ = embedding.into_data();
    }
    Ok(VggTimes { train_s, infer_s: started.elapsed().as_secs_f64() })
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The reference `bert` workload: inference over `sentences` random sequences of exactly
/// `length` tokens in batches of `batch`, then `steps` fine-tuning steps at `train_batch`.
pub struct BertWorkload {
    pub sentences: usize,
    pub length: usize,
    pub batch: usize,
    pub steps: usize,
    pub train_batch: usize,
}

impl BertWorkload {
    pub const LENGTH: usize = 128;
    pub const BATCH: usize = 32;
    pub const TRAIN_BATCH: usize = 16;
}

/// What `shopnet bench --model bert` measured.
pub struct BertBench {
    pub inference_s: f64,
    pub finetune_s: f64,
}

fn bert_report(args: &BenchArgs, device: &Device, on: &str) -> Result<String> {
    let Some(weights) = &args.weights else {
        bail!("--weights: required with --model bert");
    };
    if args.sentences == 0 {
        bail!("--sentences: must be at least 1");
    }
    let workload = BertWorkload {
        sentences: args.sentences,
        length: BertWorkload::LENGTH,
        batch: BertWorkload::BATCH,
        steps: args.steps,
        train_batch: BertWorkload::TRAIN_BATCH,
    };
    let timing = time_bert(&ModelFiles::resolve(weights)?, device, &workload)?;
    Ok(format!(
        "shopnet bert inference {on}: {} sentences x {} tokens, batch {}: {:.3} s\nshopnet bert finetune {on}: {} steps, batch {} x {} tokens: {:.3} s; peak memory {}",
        workload.sentences,
        workload.length,
        workload.batch,
        timing.inference_s,
        workload.steps,
        workload.train_batch,
        workload.length,
        timing.finetune_s,
        peak_memory_text()
    ))
}

/// Random token ids of the BERT workload, above the special tokens of a BERT vocabulary.
fn random_sequence(rng: &mut ChaCha8Rng, length: usize, vocab_size: usize) -> Vec<u32> {
    (0..length).map(|_| rng.random_range(1000..vocab_size as u32)).collect()
}

/// Times the BERT workload: inference, then fine-tuning steps (classifier head,
/// cross-entropy, AdamW). One untimed batch of each warms up first.
/// `scripts/bert_torch.py` does the same in PyTorch.
pub fn time_bert(
    files: &ModelFiles,
    device: &Device,
    workload: &BertWorkload,
) -> Result<BertBench> {
    let (config, bert) = files.load(device)?;
    if workload.length > config.max_position_embeddings {
        bail!(
            "--length {}: exceeds the model's {} positions",
            workload.length,
            config.max_position_embeddings
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let data: Vec<Vec<u32>> = (0..workload.sentences)
        .map(|_| random_sequence(&mut rng, workload.length, config.vocab_size))
        .collect();
    let run_inference = |bert: &Bert, rows: &[Vec<u32>]| {
        let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
        let _ = bert.forward(BertInput::from_ids(&refs, 0, device)).into_data();
    };
    run_inference(&bert, &data[..workload.batch.min(workload.sentences)]);
    let started = Instant::now();
    for rows in data.chunks(workload.batch) {
        run_inference(&bert, rows);
    }
    let inference_s = started.elapsed().as_secs_f64();

    let train_device = device.clone().autodiff();
    let (_, bert) = files.load(&train_device)?;
    let mut model = BertClassifier::new(bert, &config, 2, 0.1, &train_device);
    let lr = 2e-5;
    let mut optimizer = optim::build(&TrainConfig {
        lr,
        optimizer: OptimizerKind::Adamw,
        weight_decay: 0.01,
        ..TrainConfig::default()
    });
    let mut step = |model: BertClassifier, rng: &mut ChaCha8Rng| -> BertClassifier {
        let rows: Vec<Vec<u32>> = (0..workload.train_batch)
            .map(|_| random_sequence(rng, workload.length, config.vocab_size))
            .collect();
        let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
        let labels: Vec<u32> = (0..workload.train_batch).map(|_| rng.random_range(0..2)).collect();
        let labels = crate::base::tensor::label_column(labels, &train_device);
        let logits = model.forward(BertInput::from_ids(&refs, 0, &train_device));
        optimizer_step(model, cross_entropy(logits, labels), &mut optimizer, lr).0
    };
    model = step(model, &mut rng);
    let started = Instant::now();
    for _ in 0..workload.steps {
        model = step(model, &mut rng);
    }
    let _ = device.sync();
    let finetune_s = started.elapsed().as_secs_f64();
    drop(model);
    Ok(BertBench { inference_s, finetune_s })
}
