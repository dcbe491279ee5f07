//! `shopnet bench`: times training epochs of a net on a fixed workload.
//!
//! Each timed epoch is what `shopnet train` does per epoch minus evaluation: forward,
//! backward, optimiser step, and reading the loss back (which waits for the device).
//! `scripts/bench_graph_torch.py` times the same nets in PyTorch + PyG for the ratio.

use std::time::Instant;

use anyhow::Result;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::TrainConfig;
use crate::data::Split;
use crate::data::graph::{Graph, GraphDataConfig, SparseFeatures};
use crate::models::gat::{Gat, GatConfig};
use crate::models::gcn::{Gcn, GcnConfig};
use crate::models::random::HostRng;
use crate::tasks::node_classification::{GraphNet, NodeClassification};
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

/// The node-classification nets `shopnet bench` times.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
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

/// What `shopnet bench-bert` measured.
pub struct BertBench {
    pub inference_s: f64,
    pub finetune_s: f64,
}

/// The BERT workload of the reference benchmark: inference over `sentences` random
/// sequences of exactly `length` tokens in batches of `batch`, then `steps` fine-tuning
/// steps (classifier head, cross-entropy, AdamW) at batch `train_batch`. One untimed
/// batch of each warms up first. `scripts/bert_torch.py` does the same in PyTorch.
pub fn time_bert(files: &crate::models::bert::ModelFiles, device: &Device, sentences: usize, length: usize, batch: usize, steps: usize, train_batch: usize) -> Result<BertBench> {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Int, Tensor, TensorData};
    use crate::models::bert::{BertClassifier, BertInput};

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
