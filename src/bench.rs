//! `shopnet bench`: times training epochs of a net on a fixed workload.
//!
//! Each timed epoch is what `shopnet train` does per epoch minus evaluation: forward,
//! backward, optimiser step, and reading the loss back (which waits for the device).
//! `scripts/bench_graph_torch.py`, `scripts/intent_torch.py` and `scripts/vgg_torch.py`
//! time the same nets in PyTorch for the ratio.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::TrainConfig;
use crate::data::Split;
use crate::data::graph::{Graph, GraphDataConfig, SparseFeatures};
use crate::data::sequences::Examples;
use crate::models::gat::{Gat, GatConfig};
use crate::models::gcn::{Gcn, GcnConfig};
use crate::models::intent::IntentConfig;
use crate::models::vgg::{Vgg, VggConfig};
use crate::models::random::HostRng;
use crate::tasks::node_classification::{GraphNet, NodeClassification};
use crate::tasks::purchase_intent::PurchaseIntent;
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
        splits: (0..nodes).map(|i| if i % 10 == 0 { Split::Train } else { Split::None }).collect(),
        num_features: features,
        features: sparse,
        edges: edge_list,
    }
}

pub struct BenchResult {
    pub epochs: usize,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub setup_s: f64,
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

/// The node-classification nets, timed per full-batch epoch.
#[derive(Debug, Clone, Copy)]
pub enum NodeNet {
    Gcn,
    Gat,
}

/// Times `epochs` training epochs after `warmup` untimed ones.
pub fn time_training(net: NodeNet, graph: &Graph, gat_heads: usize, device: &Device, epochs: usize, warmup: usize) -> BenchResult {
    match net {
        NodeNet::Gcn => time_net::<Gcn>(GcnConfig::default(), graph, device, epochs, warmup, 0.01),
        NodeNet::Gat => time_net::<Gat>(GatConfig { heads: gat_heads, ..GatConfig::default() }, graph, device, epochs, warmup, 0.005),
    }
}

fn time_net<N: GraphNet>(config: N::Config, graph: &Graph, device: &Device, epochs: usize, warmup: usize, lr: f64) -> BenchResult {
    let setup = Instant::now();
    let task = NodeClassification::<N>::new(config, graph, graph.num_features, device);
    let train_device = device.clone().autodiff();
    let mut model = task.init_model(0, &train_device);
    let mut optimizer = optim::build(&TrainConfig { lr, weight_decay: 5e-4, ..TrainConfig::default() });
    let setup_s = setup.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(epochs);
    for epoch in 0..warmup + epochs {
        let started = Instant::now();
        let mut rng = HostRng::for_epoch(0, epoch);
        let loss = task.train_loss(&model, &(), &mut rng);
        let _: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(lr, model, grads);
        let _ = device.sync();
        if epoch >= warmup {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    BenchResult {
        epochs,
        mean_ms: times.iter().sum::<f64>() / times.len().max(1) as f64,
        min_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
        setup_s,
    }
}

/// Seconds for one purchase-intent training epoch and for inference over the same
/// sequences: the reference `cnn_lstm` workload.
pub struct IntentTiming {
    pub train_s: f64,
    pub inference_s: f64,
    pub steps: usize,
}

/// The reference `cnn_lstm` workload on random full-length sequences of a 10,000-token
/// vocabulary (a fifth of them buyers): one training epoch at `batch_size`, then
/// inference over the same sequences at 256.
pub fn time_intent(sequences: usize, batch_size: usize, device: &Device) -> Result<IntentTiming> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let config = IntentConfig::default();
    let (length, vocabulary) = (50, 10_000);
    let examples = Examples {
        sequence_length: length,
        users: (0..sequences as u64).collect(),
        tokens: (0..sequences * length).map(|_| rng.random_range(2..vocabulary as u32)).collect(),
        labels: (0..sequences).map(|_| rng.random_bool(0.2)).collect(),
        carts: vec![0; sequences],
    };
    let splits = HashMap::from([(Split::Train, examples.clone())]);
    let task = PurchaseIntent::new(config, vocabulary, batch_size, splits, device);
    let mut model = task.init_model(0, &device.clone().autodiff());
    let mut optimizer = optim::build(&TrainConfig::default());
    let started = Instant::now();
    let mut host_rng = HostRng::for_epoch(0, 0);
    let batches = task.train_batches(&mut host_rng);
    for batch in &batches {
        let loss = task.train_loss(&model, batch, &mut host_rng);
        let _: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-3, model, grads);
    }
    let _ = device.sync();
    let train_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    task.probabilities(&model.valid(), &examples)?;
    Ok(IntentTiming { train_s, inference_s: started.elapsed().as_secs_f64(), steps: batches.len() })
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

/// Times one epoch of training and one pass of inference of the reference net.
pub fn time_vgg(bench: &VggBench, device: &Device) -> VggTimes {
    let spec = VggConfig::default().spec();
    let side = spec.input_size;
    let per_image = 3 * side * side;
    let mut rng = HostRng::new(0);
    let pixels: Vec<f32> = (0..bench.images * per_image).map(|_| rng.inner().random_range(-1.0..1.0)).collect();
    let labels: Vec<i64> = (0..bench.images).map(|_| rng.inner().random_range(0..bench.classes as i64)).collect();
    let batch = |device: &Device, start: usize, len: usize| {
        let x = Tensor::<4>::from_data(TensorData::new(pixels[start * per_image..(start + len) * per_image].to_vec(), [len, 3, side, side]), device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(labels[start..start + len].to_vec(), [len, 1]), device);
        (x, y)
    };

    let train_device = device.clone().autodiff();
    let mut model = Vgg::new(&spec, bench.classes, &mut HostRng::new(0), &train_device);
    let config = TrainConfig::default();
    let mut optimizer = optim::build(&config);
    let started = Instant::now();
    for start in (0..bench.images).step_by(bench.train_batch) {
        let len = bench.train_batch.min(bench.images - start);
        let (x, y) = batch(&train_device, start, len);
        let (_, logits) = model.forward(x, None);
        let loss = log_softmax(logits, 1).gather(1, y).mean().neg();
        let _: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(config.lr, model, grads);
    }
    let _ = device.sync();
    let train_s = started.elapsed().as_secs_f64();

    let model = model.valid();
    let started = Instant::now();
    for start in (0..bench.images).step_by(bench.infer_batch) {
        let len = bench.infer_batch.min(bench.images - start);
        let (x, _) = batch(device, start, len);
        let (embedding, _) = model.forward(x, None);
        let _ = embedding.into_data();
    }
    VggTimes { train_s, infer_s: started.elapsed().as_secs_f64() }
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn cora() -> Result<Graph> {
    Graph::load(&GraphDataConfig::default(), None)
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

/// Times the BERT workload: inference, then fine-tuning steps (classifier head,
/// cross-entropy, AdamW). One untimed batch of each warms up first.
/// `scripts/bert_torch.py` does the same in PyTorch.
pub fn time_bert(files: &crate::models::bert::ModelFiles, device: &Device, workload: &BertWorkload) -> Result<BertBench> {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Int, Tensor, TensorData};
    use crate::models::bert::{BertClassifier, BertInput};

    let BertWorkload { sentences, length, batch, steps, train_batch } = *workload;
    let (config, bert) = files.load(device)?;
    if length > config.max_position_embeddings {
        anyhow::bail!("--length {length} exceeds the model's {} positions", config.max_position_embeddings);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let sequence = |rng: &mut ChaCha8Rng| -> Vec<u32> {
        (0..length).map(|_| rng.random_range(1000..config.vocab_size as u32)).collect()
    };
    let run_inference = |bert: &crate::models::bert::Bert, rows: &[Vec<u32>]| {
        let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
        let hidden = bert.forward(BertInput::from_ids(&refs, 0, device));
        let _ = hidden.into_data();
    };
    let data: Vec<Vec<u32>> = (0..sentences).map(|_| sequence(&mut rng)).collect();
    run_inference(&bert, &data[..batch.min(sentences)]);
    let started = Instant::now();
    for rows in data.chunks(batch) {
        run_inference(&bert, rows);
    }
    let inference_s = started.elapsed().as_secs_f64();

    let train_device = device.clone().autodiff();
    let (_, bert) = files.load(&train_device)?;
    let mut model = BertClassifier::new(bert, &config, 2, 0.1, &train_device);
    let lr = 2e-5;
    let mut optimizer = optim::build(&TrainConfig { lr, optimizer: crate::config::OptimizerKind::Adamw, weight_decay: 0.01, ..TrainConfig::default() });
    let mut step = |model: BertClassifier, rng: &mut ChaCha8Rng| -> BertClassifier {
        let rows: Vec<Vec<u32>> = (0..train_batch).map(|_| sequence(rng)).collect();
        let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
        let labels: Vec<i64> = (0..train_batch).map(|_| rng.random_range(0..2)).collect();
        let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [train_batch, 1]), &train_device);
        let logits = model.forward(BertInput::from_ids(&refs, 0, &train_device));
        let loss = log_softmax(logits, 1).gather(1, labels).mean().neg();
        let _: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optimizer.step(lr, model, grads)
    };
    model = step(model, &mut rng);
    let started = Instant::now();
    for _ in 0..steps {
        model = step(model, &mut rng);
    }
    let _ = device.sync();
    let finetune_s = started.elapsed().as_secs_f64();
    drop(model);
    Ok(BertBench { inference_s, finetune_s })
}
