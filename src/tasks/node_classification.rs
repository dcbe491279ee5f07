//! Node classification: a graph net over the whole graph, cross-entropy on the labelled
//! nodes of the train split, accuracy and macro-F1 on the others. Full batch: one
//! optimiser step per epoch, as in the GCN and GAT papers.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Family, TrainJob, TrainSummary};
use crate::config::{check_fraction, check_positive, ModelKind, RunConfig};
use crate::data::Split;
use crate::data::graph::{Graph, GraphDataConfig};
use crate::metrics::{self, Metrics};
use crate::models::gat::{Gat, GatConfig};
use crate::models::gcn::{Gcn, GcnConfig};
use crate::models::message_passing::GraphTensors;
use crate::models::random::HostRng;
use crate::run_dir::{self, Artifacts};
use crate::score::ClassScoreWriter;
use crate::train::Task;

/// A net that maps a graph to per-node class logits.
pub trait GraphNet: Module + Clone + 'static {
    type Config: Serialize + DeserializeOwned + Clone;
    const KIND: ModelKind;

    /// Checks the `[model]` values a config author can get wrong, naming the key.
    fn validate(config: &Self::Config) -> Result<()>;
    fn build(config: &Self::Config, num_features: usize, num_classes: usize, rng: &mut HostRng, device: &Device) -> Self;
    fn logits(&self, graph: &GraphTensors, rng: Option<&mut HostRng>) -> Tensor<2>;
}

impl GraphNet for Gcn {
    type Config = GcnConfig;
    const KIND: ModelKind = ModelKind::Gcn;

    fn validate(config: &GcnConfig) -> Result<()> {
        check_positive("model.hidden", config.hidden)?;
        check_positive("model.layers", config.layers)?;
        check_fraction("model.dropout", config.dropout)
    }

    fn build(config: &GcnConfig, num_features: usize, num_classes: usize, rng: &mut HostRng, device: &Device) -> Self {
        Gcn::new(config, num_features, num_classes, rng, device)
    }

    fn logits(&self, graph: &GraphTensors, rng: Option<&mut HostRng>) -> Tensor<2> {
        self.forward(graph, rng)
    }
}

impl GraphNet for Gat {
    type Config = GatConfig;
    const KIND: ModelKind = ModelKind::Gat;

    fn validate(config: &GatConfig) -> Result<()> {
        check_positive("model.hidden", config.hidden)?;
        check_positive("model.heads", config.heads)?;
        check_positive("model.out_heads", config.out_heads)?;
        check_fraction("model.dropout", config.dropout)?;
        check_fraction("model.attention_dropout", config.attention_dropout)
    }

    fn build(config: &GatConfig, num_features: usize, num_classes: usize, rng: &mut HostRng, device: &Device) -> Self {
        Gat::new(config, num_features, num_classes, rng, device)
    }

    fn logits(&self, graph: &GraphTensors, rng: Option<&mut HostRng>) -> Tensor<2> {
        self.forward(graph, rng)
    }
}

/// One graph, ready to train or evaluate a net on.
pub struct NodeClassification<N: GraphNet> {
    model_config: N::Config,
    num_classes: usize,
    graph: GraphTensors,
    labels: Vec<Option<u32>>,
    nodes: HashMap<Split, Vec<u32>>,
    train_index: Tensor<1, Int>,
    train_labels: Tensor<2, Int>,
}

impl<N: GraphNet> NodeClassification<N> {
    /// `num_features` is the net's input width: the graph's own when training, the trained
    /// net's when scoring a new graph (which may use fewer feature columns).
    pub fn new(model_config: N::Config, graph: &Graph, num_features: usize, device: &Device) -> Self {
        let mut tensors = GraphTensors::new(graph, device);
        tensors.num_features = num_features;
        let nodes: HashMap<Split, Vec<u32>> =
            [Split::Train, Split::Val, Split::Test].into_iter().map(|split| (split, graph.nodes_in(split))).collect();
        let train = &nodes[&Split::Train];
        let train_index = Tensor::from_data(TensorData::new(train.iter().map(|&n| n as i64).collect(), [train.len()]), device);
        let train_labels = Tensor::from_data(
            TensorData::new(train.iter().map(|&n| graph.labels[n as usize].expect("split nodes are labelled") as i64).collect(), [train.len(), 1]),
            device,
        );
        Self {
            model_config,
            num_classes: graph.label_names.len(),
            graph: tensors,
            labels: graph.labels.clone(),
            nodes,
            train_index,
            train_labels,
        }
    }

    /// Class probabilities of every node, `[N * C]` row-major, with the net in inference mode.
    pub fn probabilities(&self, model: &N) -> Vec<f32> {
        let logits = model.logits(&self.graph, None).into_data().try_to_vec::<f32>().expect("f32 logits");
        let mut probabilities = logits;
        for row in probabilities.chunks_mut(self.num_classes) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                total += *v;
            }
            row.iter_mut().for_each(|v| *v /= total);
        }
        probabilities
    }
}

impl<N: GraphNet> Task for NodeClassification<N> {
    type Model = N;
    type Batch = ();

    fn kind(&self) -> ModelKind {
        N::KIND
    }

    fn init_model(&self, seed: u64, device: &Device) -> N {
        N::build(&self.model_config, self.graph.num_features, self.num_classes, &mut HostRng::new(seed), device)
    }

    fn batches_per_epoch(&self) -> usize {
        usize::from(!self.nodes[&Split::Train].is_empty())
    }

    fn train_batches(&self, _rng: &mut HostRng) -> Vec<()> {
        vec![()]
    }

    fn train_loss(&self, model: &N, _batch: &(), rng: &mut HostRng) -> Tensor<1> {
        let logits = model.logits(&self.graph, Some(rng)).select(0, self.train_index.clone());
        let log_probs = log_softmax(logits, 1).gather(1, self.train_labels.clone());
        log_probs.mean().neg()
    }

    fn evaluate(&self, model: &N, split: Split) -> Result<Metrics> {
        let nodes = &self.nodes[&split];
        if nodes.is_empty() {
            bail!("the {split} split has no labelled nodes");
        }
        let probabilities = self.probabilities(model);
        let c = self.num_classes;
        let labels: Vec<u32> = nodes.iter().map(|&n| self.labels[n as usize].expect("split nodes are labelled")).collect();
        let rows: Vec<f32> = nodes.iter().flat_map(|&n| probabilities[n as usize * c..(n as usize + 1) * c].to_vec()).collect();
        Ok(metrics::classification(&rows, &labels, c))
    }
}

/// The CLI's entry to node classification with net `N`.
pub struct NodeFamily<N>(PhantomData<N>);

impl<N> Default for NodeFamily<N> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

type NodeConfig<N> = RunConfig<<N as GraphNet>::Config, GraphDataConfig>;

impl<N: GraphNet> NodeFamily<N> {
    fn config(doc: &crate::config::ConfigDoc) -> Result<NodeConfig<N>> {
        let config: NodeConfig<N> = doc.typed()?;
        N::validate(&config.model)?;
        Ok(config)
    }

    /// The trained net and a task over `data`, labels and input width taken from the run.
    fn restore(artifacts: &Artifacts, data: &GraphDataConfig, device: &Device) -> Result<(N, NodeClassification<N>, Graph)> {
        let config = Self::config(&artifacts.config)?;
        let graph = Graph::load(data, Some(&artifacts.info.labels))?;
        let num_features = artifacts.info.input.get("num_features").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        if graph.num_features > num_features {
            bail!(
                "{}: feature index {} is beyond the model's {num_features} input features",
                crate::data::graph::describe_source(&data.source),
                graph.num_features - 1
            );
        }
        let task = NodeClassification::<N>::new(config.model, &graph, num_features, device);
        let model = run_dir::load_weights(task.init_model(config.train.seed, device), N::KIND, &artifacts.weights)?;
        Ok((model, task, graph))
    }
}

impl<N: GraphNet> Family for NodeFamily<N> {
    fn train(&self, job: TrainJob<'_>) -> Result<TrainSummary> {
        let config = Self::config(job.config)?;
        let graph = Graph::load(&config.data, None)?;
        let task = NodeClassification::<N>::new(config.model.clone(), &graph, graph.num_features, job.device);
        let input = serde_json::json!({ "num_features": graph.num_features });
        super::train_task(&job, &config, &task, graph.label_names.clone(), input)
    }

    fn evaluate(&self, artifacts: &Artifacts, split: Split, device: &Device) -> Result<Metrics> {
        let config = Self::config(&artifacts.config)?;
        let (model, task, _) = Self::restore(artifacts, &config.data, device)?;
        task.evaluate(&model, split)
    }

    fn score(&self, artifacts: &Artifacts, input: &str, output: &Path, device: &Device) -> Result<usize> {
        let config = Self::config(&artifacts.config)?;
        let data = GraphDataConfig { source: input.to_string(), ..config.data };
        let (model, task, graph) = Self::restore(artifacts, &data, device)?;
        let probabilities = task.probabilities(&model);
        let mut writer = ClassScoreWriter::create(output, "node_id", &artifacts.info.labels)?;
        for (node, row) in graph.node_ids.iter().zip(probabilities.chunks(artifacts.info.labels.len())) {
            writer.write(node, row)?;
        }
        writer.finish()
    }

    fn schema(&self, artifacts: &Artifacts) -> serde_json::Value {
        serde_json::json!({
            "input": {
                "format": "graph folder: nodes.csv (node_id,label,split), features.csv (node_id,feature_index[,value]), edges.csv (src,dst)",
                "num_features": artifacts.info.input.get("num_features"),
            },
            "output": ClassScoreWriter::columns("node_id", &artifacts.info.labels),
        })
    }
}
