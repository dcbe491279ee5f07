//! Node classification: a graph net over the whole graph, cross-entropy on the labelled
//! nodes of the train split, accuracy and macro-F1 on the others. Full batch: one
//! optimiser step per epoch, as in the GCN and GAT papers.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::driver;
use super::family::{BatchJob, Config, Family, Prepared, Trained};
use super::online::{self, Datatype, Online, Request, Served, Signature, TensorSpec, Values};
use crate::artifacts::findings::{self, Findings, Outcome, Shown};
use crate::artifacts::scores::ClassScoreWriter;
use crate::base::config::{ModelKind, check_fraction, check_positive};
use crate::base::memory;
use crate::base::metrics::{self, Metrics};
use crate::base::quote::quoted;
use crate::base::rng::HostRng;
use crate::base::split::{Split, Splits};
use crate::base::tensor::{index_tensor, label_column, smoothed_cross_entropy, to_host};
use crate::data::graph::{Graph, GraphDataConfig, describe_source};
use crate::models::gat::{Gat, GatConfig};
use crate::models::gcn::{Gcn, GcnConfig};
use crate::models::message_passing::GraphTensors;
use crate::train::Task;

/// A net that maps a graph to per-node class logits.
pub trait GraphNet: Module + Clone + 'static {
    type Config: Serialize + DeserializeOwned + Clone;
    const KIND: ModelKind;

    /// Checks the `[model]` values a config author can get wrong, naming the key.
    fn validate(config: &Self::Config) -> Result<()>;
    fn build(
        config: &Self::Config,
        num_features: usize,
        num_classes: usize,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self;
    fn logits(&self, graph: &GraphTensors, rng: Option<&mut HostRng>) -> Tensor<2>;
    /// The widest hidden representation per node (all heads) and the number of layers:
    /// what the memory estimate scales with.
    fn width_and_depth(config: &Self::Config) -> (u128, u128);
    /// The keys that set that size, as a message names them.
    fn size_keys(config: &Self::Config) -> String;
}

impl GraphNet for Gcn {
    type Config = GcnConfig;
    const KIND: ModelKind = ModelKind::Gcn;

    fn validate(config: &GcnConfig) -> Result<()> {
        check_positive("model.hidden", config.hidden)?;
        check_positive("model.layers", config.layers)?;
        check_fraction("model.dropout", config.dropout)
    }

    fn build(
        config: &GcnConfig,
        num_features: usize,
        num_classes: usize,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        Gcn::new(config, num_features, num_classes, rng, device)
    }

    fn logits(&self, graph: &GraphTensors, rng: Option<&mut HostRng>) -> Tensor<2> {
        self.forward(graph, rng)
    }

    fn width_and_depth(config: &GcnConfig) -> (u128, u128) {
        (config.hidden as u128, config.layers as u128)
    }

    fn size_keys(config: &GcnConfig) -> String {
        format!("model.hidden = {}, model.layers = {}", config.hidden, config.layers)
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
        check_fraction("model.attention_dropout", config.attention_dropout)?;
        if !(config.negative_slope.is_finite() && config.negative_slope >= 0.0) {
            bail!(
                "model.negative_slope: must be a finite number of at least 0, got {}",
                config.negative_slope
            );
        }
        Ok(())
    }

    fn build(
        config: &GatConfig,
        num_features: usize,
        num_classes: usize,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        Gat::new(config, num_features, num_classes, rng, device)
    }

    fn logits(&self, graph: &GraphTensors, rng: Option<&mut HostRng>) -> Tensor<2> {
        self.forward(graph, rng)
    }

    fn width_and_depth(config: &GatConfig) -> (u128, u128) {
        ((config.hidden as u128).saturating_mul(config.heads.max(config.out_heads) as u128), 2)
    }

    fn size_keys(config: &GatConfig) -> String {
        let (hidden, heads, out_heads) = (config.hidden, config.heads, config.out_heads);
        format!("model.hidden = {hidden}, model.heads = {heads}, model.out_heads = {out_heads}")
    }
}

/// Refuses, before any tensor exists, a net that cannot fit: its weights trained with
/// Adam, and per layer the nodes' hidden rows and the edges' messages, kept for backward.
fn ensure_fits<N: GraphNet>(
    config: &N::Config,
    graph: &Graph,
    num_features: usize,
    source: &str,
) -> Result<()> {
    let (width, depth) = N::width_and_depth(config);
    let (nodes, edges) =
        (graph.num_nodes() as u128, (graph.edges.len() + graph.num_nodes()) as u128);
    let classes = graph.label_names.len() as u128;
    let weights = width.saturating_mul(
        (num_features as u128).saturating_add(width.saturating_mul(depth)).saturating_add(classes),
    );
    let activations = nodes
        .saturating_add(edges)
        .saturating_mul(width)
        .saturating_mul(depth)
        .saturating_mul(4 * 4);
    let bytes = weights.saturating_mul(memory::TRAINED_F32).saturating_add(activations);
    let what = format!(
        "{} ({}) on {nodes} nodes with {num_features} features ({}: features.csv)",
        N::size_keys(config),
        N::KIND,
        describe_source(source)
    );
    memory::ensure_fits(&what, bytes)
}

/// One graph, ready to train or evaluate a net on.
pub struct NodeClassification<N: GraphNet> {
    model_config: N::Config,
    num_classes: usize,
    graph: GraphTensors,
    labels: Vec<Option<u32>>,
    /// For naming the nodes a report shows.
    node_ids: Vec<String>,
    nodes: Splits<Vec<u32>>,
    label_smoothing: f64,
    train_index: Tensor<1, Int>,
    train_labels: Tensor<2, Int>,
}

impl<N: GraphNet> NodeClassification<N> {
    /// `num_features` is the net's input width: the graph's own when training, the trained
    /// net's when scoring a new graph (which may use fewer feature columns).
    pub fn new(
        model_config: N::Config,
        graph: &Graph,
        num_features: usize,
        device: &Device,
    ) -> Self {
        let tensors = GraphTensors::new(
            graph.num_nodes(),
            num_features,
            &graph.edges,
            &graph.features,
            device,
        );
        let nodes = Splits::from_fn(|split| graph.nodes_in(split));
        let train_index = index_tensor(nodes.train.iter().map(|&n| i64::from(n)), device);
        let train_labels =
            label_column(nodes.train.iter().filter_map(|&n| graph.labels[n as usize]), device);
        Self {
            model_config,
            num_classes: graph.label_names.len(),
            graph: tensors,
            labels: graph.labels.clone(),
            node_ids: graph.node_ids.clone(),
            nodes,
            label_smoothing: 0.0,
            train_index,
            train_labels,
        }
    }

    /// Class probabilities of every node, `[N * C]` row-major, with the net in inference mode.
    pub fn probabilities(&self, model: &N) -> Result<Vec<f32>> {
        let mut probabilities = to_host(model.logits(&self.graph, None))?;
        for row in probabilities.chunks_mut(self.num_classes) {
            softmax_in_place(row);
        }
        Ok(probabilities)
    }
}

/// A numerically stable softmax of one row of logits.
fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        total += *v;
    }
    row.iter_mut().for_each(|v| *v /= total);
}

impl<N: GraphNet> Task for NodeClassification<N> {
    type Model = N;
    type Batch = ();

    fn kind(&self) -> ModelKind {
        N::KIND
    }

    fn init_model(&self, seed: u64, device: &Device) -> Result<N> {
        Ok(N::build(
            &self.model_config,
            self.graph.num_features,
            self.num_classes,
            &mut HostRng::new(seed),
            device,
        ))
    }

    fn batches_per_epoch(&self) -> usize {
        usize::from(!self.nodes.train.is_empty())
    }

    fn train_batches(&self, _rng: &mut HostRng) -> Result<Vec<()>> {
        Ok(vec![()])
    }

    fn train_loss(&self, model: &N, _batch: &(), rng: &mut HostRng) -> Result<Tensor<1>> {
        let logits = model.logits(&self.graph, Some(rng)).select(0, self.train_index.clone());
        Ok(smoothed_cross_entropy(logits, self.train_labels.clone(), self.label_smoothing))
    }

    fn evaluate(&self, model: &N, split: Split) -> Result<Metrics> {
        let (_, rows, labels) = self.split_probabilities(model, split)?;
        Ok(metrics::classification(&rows, &labels, self.num_classes))
    }

    fn findings(&self, model: &N, split: Split) -> Result<Findings> {
        let (nodes, rows, labels) = self.split_probabilities(model, split)?;
        let (metrics, outcome) = findings::classifier(&rows, &labels, self.num_classes, |row| {
            Ok(Shown::id(&self.node_ids[nodes[row] as usize]))
        })?;
        Ok(Findings { split, metrics, outcome: Outcome::Classes(outcome) })
    }
}

impl<N: GraphNet> NodeClassification<N> {
    /// The labelled nodes of `split`, their class probabilities (row-major) and labels.
    fn split_probabilities(&self, model: &N, split: Split) -> Result<(&[u32], Vec<f32>, Vec<u32>)> {
        let nodes = self.nodes.get(split);
        if nodes.is_empty() {
            bail!("the {split} split has no labelled nodes");
        }
        let probabilities = self.probabilities(model)?;
        let c = self.num_classes;
        let labels: Vec<u32> = nodes.iter().filter_map(|&n| self.labels[n as usize]).collect();
        let rows: Vec<f32> = nodes
            .iter()
            .flat_map(|&n| probabilities[n as usize * c..(n as usize + 1) * c].to_vec())
            .collect();
        Ok((nodes, rows, labels))
    }
}

/// Node classification with net `N`.
pub struct NodeFamily<N>(PhantomData<N>);

/// What `run.json` keeps: the net's input width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInput {
    pub num_features: usize,
}

impl<N: GraphNet> NodeFamily<N> {
    /// A task over `data` for a trained net: its labels and input width.
    fn task_over(
        trained: &Trained<Self>,
        data: &GraphDataConfig,
        device: &Device,
    ) -> Result<(NodeClassification<N>, Graph)> {
        let graph = Graph::load(data, Some(trained.labels()))?;
        let num_features = trained.input.num_features;
        ensure_fits::<N>(&trained.config.model, &graph, num_features, &data.source)?;
        if graph.num_features > num_features {
            let index = graph.num_features - 1;
            bail!(
                "{}: features.csv: feature index {index} is beyond the model's {num_features} input features",
                describe_source(&data.source)
            );
        }
        let task = NodeClassification::<N>::new(
            trained.config.model.settings.clone(),
            &graph,
            num_features,
            device,
        );
        Ok((task, graph))
    }
}

impl<N: GraphNet> Family for NodeFamily<N> {
    const KIND: ModelKind = N::KIND;
    type Model = N::Config;
    type Data = GraphDataConfig;
    type Input = NodeInput;
    type Task = NodeClassification<N>;

    fn validate(config: &Config<Self>) -> Result<()> {
        N::validate(&config.model)
    }

    fn metric_names(_config: &Config<Self>) -> Vec<String> {
        metrics::CLASSIFICATION.map(String::from).to_vec()
    }

    fn prepare(
        config: &Config<Self>,
        device: &Device,
        _resume_from: Option<&Path>,
    ) -> Result<Prepared<Self>> {
        let graph = Graph::load(&config.data, None)?;
        for split in Split::ALL {
            if graph.nodes_in(split).is_empty() {
                bail!(
                    "{}: the {split} split has no labelled nodes",
                    describe_source(&config.data.source)
                );
            }
        }
        ensure_fits::<N>(&config.model, &graph, graph.num_features, &config.data.source)?;
        let mut task = NodeClassification::<N>::new(
            config.model.settings.clone(),
            &graph,
            graph.num_features,
            device,
        );
        task.label_smoothing = config.train.label_smoothing;
        let input = NodeInput { num_features: graph.num_features };
        Ok(Prepared { task, labels: graph.label_names.clone(), input, run_files: Vec::new() })
    }

    fn net(trained: &Trained<Self>, device: &Device) -> Result<N> {
        let seed = trained.config.train.seed;
        let (features, classes) = (trained.input.num_features, trained.labels().len());
        Ok(N::build(&trained.config.model, features, classes, &mut HostRng::new(seed), device))
    }

    fn restore(trained: &Trained<Self>, device: &Device) -> Result<NodeClassification<N>> {
        Ok(Self::task_over(trained, &trained.config.data, device)?.0)
    }

    /// The whole graph runs through the net (a node's neighbours are in any shard); only
    /// the shard's nodes are written.
    fn score(trained: &Trained<Self>, job: &BatchJob<'_>, device: &Device) -> Result<usize> {
        let data = GraphDataConfig { source: job.input.to_string(), ..trained.config.data.clone() };
        let (task, graph) = Self::task_over(trained, &data, device)?;
        let probabilities = task.probabilities(&driver::load_net(trained, device)?)?;
        let labels = trained.labels();
        let mut writer = ClassScoreWriter::create(job.output, "node_id", labels)?;
        for (node, row) in graph.node_ids.iter().zip(probabilities.chunks(labels.len())) {
            if job.shard.holds(node) {
                writer.write(node, row)?;
            }
        }
        writer.finish()
    }

    fn schema(trained: &Trained<Self>) -> serde_json::Value {
        serde_json::json!({
            "input": {
                "format": "graph folder: nodes.csv (node_id,label,split), features.csv (node_id,feature_index[,value]), edges.csv (src,dst)",
                "num_features": trained.input.num_features,
            },
            "output": ClassScoreWriter::columns("node_id", trained.labels()),
        })
    }

    /// The trained graph is fixed: every node's probabilities are computed once, and a
    /// request looks its nodes up.
    fn online(trained: Trained<Self>, device: &Device) -> Result<Box<dyn Served>> {
        let (task, graph) = Self::task_over(&trained, &trained.config.data, device)?;
        let probabilities = task.probabilities(&driver::load_net(&trained, device)?)?;
        let labels = trained.labels().to_vec();
        let signature = Signature {
            inputs: vec![TensorSpec::new("node_id", Datatype::Bytes, &[-1])],
            outputs: online::class_outputs(labels.len()),
            parameters: Vec::new(),
        };
        let rows = graph.node_ids.into_iter().enumerate().map(|(row, id)| (id, row)).collect();
        Ok(Box::new(OnlineNodes { signature, probabilities, rows, labels }))
    }
}

/// Node ids of the trained graph, answered with their class probabilities.
struct OnlineNodes {
    signature: Signature,
    /// `[nodes * classes]`, row-major.
    probabilities: Vec<f32>,
    rows: HashMap<String, usize>,
    labels: Vec<String>,
}

impl Online for OnlineNodes {
    /// The node's row.
    type Example = usize;

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn parse(&self, request: &Request) -> std::result::Result<Vec<usize>, String> {
        online::texts(request.input("node_id"), 1024)?
            .into_iter()
            .map(|id| {
                self.rows
                    .get(id.trim())
                    .copied()
                    .ok_or_else(|| format!("node {} is not in the trained graph", quoted(id)))
            })
            .collect()
    }

    fn predict(&self, rows: &[usize]) -> Result<Vec<Vec<Values>>> {
        let classes = self.labels.len();
        Ok(rows
            .iter()
            .map(|&row| {
                let p = &self.probabilities[row * classes..(row + 1) * classes];
                online::class_prediction(p, &self.labels)
            })
            .collect())
    }

    fn warmup_example(&self) -> usize {
        0
    }
}
