//! Graph input: the CSV layout users bring their own graphs in.
//!
//! A graph is a folder of three CSV files, each with a header row:
//! - `nodes.csv`: `node_id,label,split`. Ids are any strings; `label` may be empty for
//!   unlabelled nodes; `split` is `train`, `val`, `test` or `none` (or empty).
//! - `features.csv`: `node_id,feature_index[,value]`, one row per non-zero feature
//!   (value 1 when the column is absent). Feature indices start at 0.
//! - `edges.csv`: `src,dst`, by node id. With `undirected = true` each row is used in both
//!   directions (Cora lists each undirected edge once).
//!
//! `builtin:cora` is the Planetoid Cora split compiled into the binary.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::records::CsvSource;
use crate::base::sparse::SparseFeatures;
use crate::base::split::Split;

pub const BUILTIN_CORA: &str = "builtin:cora";

const CORA_NODES: &[u8] = include_bytes!("../../data/cora/nodes.csv");
const CORA_FEATURES: &[u8] = include_bytes!("../../data/cora/features.csv");
const CORA_EDGES: &[u8] = include_bytes!("../../data/cora/edges.csv");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphDataConfig {
    /// `builtin:cora` or a folder holding nodes.csv, features.csv and edges.csv.
    pub source: String,
    /// Scale each node's features to sum to 1, as the GCN and GAT papers do.
    pub normalize_features: bool,
    /// Use each edge row in both directions.
    pub undirected: bool,
}

impl Default for GraphDataConfig {
    fn default() -> Self {
        Self { source: BUILTIN_CORA.into(), normalize_features: true, undirected: true }
    }
}

/// A graph as loaded from disk, before any tensor exists.
#[derive(Debug, Clone)]
pub struct Graph {
    pub node_ids: Vec<String>,
    /// Index into `label_names`, `None` for an unlabelled node.
    pub labels: Vec<Option<u32>>,
    pub label_names: Vec<String>,
    /// `None` for a node in no split.
    pub splits: Vec<Option<Split>>,
    pub num_features: usize,
    pub features: SparseFeatures,
    /// Directed (src, dst) pairs by node index, without self-loops.
    pub edges: Vec<(u32, u32)>,
}

/// The three files of a graph, from disk or from the binary.
struct GraphFiles {
    nodes: (String, Box<dyn Read>),
    features: (String, Box<dyn Read>),
    edges: (String, Box<dyn Read>),
}

impl GraphFiles {
    fn open(source: &str) -> Result<Self> {
        if source == BUILTIN_CORA {
            return Ok(Self {
                nodes: ("builtin:cora/nodes.csv".into(), Box::new(CORA_NODES)),
                features: ("builtin:cora/features.csv".into(), Box::new(CORA_FEATURES)),
                edges: ("builtin:cora/edges.csv".into(), Box::new(CORA_EDGES)),
            });
        }
        if let Some(name) = source.strip_prefix("builtin:") {
            bail!("data.source: unknown built-in dataset {name:?} (built in: cora)");
        }
        let dir = PathBuf::from(source);
        if !dir.is_dir() {
            bail!(
                "{source}: graph folder not found (expected a folder with nodes.csv, features.csv, edges.csv)"
            );
        }
        let open = |file: &str| -> Result<(String, Box<dyn Read>)> {
            let path = dir.join(file);
            let handle =
                File::open(&path).with_context(|| format!("{}: cannot open", path.display()))?;
            Ok((path.display().to_string(), Box::new(std::io::BufReader::new(handle))))
        };
        Ok(Self {
            nodes: open("nodes.csv")?,
            features: open("features.csv")?,
            edges: open("edges.csv")?,
        })
    }
}

impl Graph {
    /// Loads a graph. `known_labels` fixes the label order (a trained model's classes) so
    /// that a graph scored later maps its labels onto the same outputs.
    pub fn load(config: &GraphDataConfig, known_labels: Option<&[String]>) -> Result<Self> {
        let files = GraphFiles::open(&config.source)?;
        let nodes_name = files.nodes.0.clone();
        let (node_ids, raw_labels, splits) = read_nodes(files.nodes)?;
        let index: HashMap<&str, u32> =
            node_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i as u32)).collect();
        let (label_names, labels) = encode_labels(&raw_labels, known_labels)
            .map_err(|err| anyhow!("{nodes_name}: {err}"))?;
        let (num_features, mut features) = read_features(files.features, &index)?;
        if config.normalize_features {
            row_normalize(&mut features, node_ids.len());
        }
        let edges = read_edges(files.edges, &index, config.undirected)?;
        Ok(Self { node_ids, labels, label_names, splits, num_features, features, edges })
    }

    pub fn num_nodes(&self) -> usize {
        self.node_ids.len()
    }

    pub fn nodes_in(&self, split: Split) -> Vec<u32> {
        (0..self.num_nodes() as u32)
            .filter(|&i| {
                self.splits[i as usize] == Some(split) && self.labels[i as usize].is_some()
            })
            .collect()
    }
}

/// Node ids, raw labels and splits, in file order.
type NodeRows = (Vec<String>, Vec<String>, Vec<Option<Split>>);

fn read_nodes((name, input): (String, Box<dyn Read>)) -> Result<NodeRows> {
    let mut csv = CsvSource::new(name, input, &["node_id", "label", "split"])?;
    let (id_col, label_col, split_col) = (
        csv.column("node_id").unwrap(),
        csv.column("label").unwrap(),
        csv.column("split").unwrap(),
    );
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    let mut splits = Vec::new();
    let mut seen = HashMap::new();
    csv.for_each(|row| {
        let id = row.text(id_col, "node_id")?;
        if id.is_empty() {
            return Err(row.error("node_id is empty"));
        }
        if let Some(first) = seen.insert(id.to_string(), row.line) {
            return Err(row.error(format!("node {id:?} is listed twice (first on line {first})")));
        }
        let split_raw = row.text(split_col, "split")?;
        let split = Split::parse(split_raw).map_err(|_| {
            row.error(format!("split: expected train, val, test or none, got {split_raw:?}"))
        })?;
        let label = row.text(label_col, "label")?;
        if label.is_empty() && split.is_some() {
            return Err(
                row.error(format!("node {id:?} is in the {split_raw} split but has no label"))
            );
        }
        ids.push(id.to_string());
        labels.push(label.to_string());
        splits.push(split);
        Ok(())
    })?;
    if ids.is_empty() {
        bail!("{}: no nodes", csv.name);
    }
    Ok((ids, labels, splits))
}

/// Label names in a stable order: numeric labels numerically, others alphabetically.
fn encode_labels(
    raw: &[String],
    known: Option<&[String]>,
) -> Result<(Vec<String>, Vec<Option<u32>>)> {
    let names: Vec<String> = match known {
        Some(known) => known.to_vec(),
        None => {
            let mut names: Vec<String> = raw.iter().filter(|l| !l.is_empty()).cloned().collect();
            names.sort_by(|a, b| match (a.parse::<i64>(), b.parse::<i64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(b),
            });
            names.dedup();
            names
        }
    };
    let lookup: HashMap<&str, u32> =
        names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let mut labels = Vec::with_capacity(raw.len());
    for label in raw {
        if label.is_empty() {
            labels.push(None);
        } else {
            match lookup.get(label.as_str()) {
                Some(&i) => labels.push(Some(i)),
                None => bail!(
                    "label {label:?} is not one of the model's classes ({})",
                    names.join(", ")
                ),
            }
        }
    }
    Ok((names, labels))
}

fn read_features(
    (name, input): (String, Box<dyn Read>),
    index: &HashMap<&str, u32>,
) -> Result<(usize, SparseFeatures)> {
    let mut csv = CsvSource::new(name, input, &["node_id", "feature_index"])?;
    let (id_col, feature_col, value_col) =
        (csv.column("node_id").unwrap(), csv.column("feature_index").unwrap(), csv.column("value"));
    let mut entries: Vec<(u32, u32, f32)> = Vec::new();
    csv.for_each(|row| {
        let id = row.text(id_col, "node_id")?;
        let node = *index
            .get(id)
            .ok_or_else(|| row.error(format!("unknown node {id:?} (not in nodes.csv)")))?;
        let feature: u32 = row.parse(feature_col, "feature_index", "a non-negative integer")?;
        let value = match value_col {
            Some(col) => row.finite(col, "value")?,
            None => 1.0,
        };
        entries.push((node, feature, value));
        Ok(())
    })?;
    entries.sort_unstable_by_key(|&(node, feature, _)| (node, feature));
    let num_features = entries.iter().map(|&(_, f, _)| f as usize + 1).max().unwrap_or(0);
    if num_features == 0 {
        bail!("{}: no features", csv.name);
    }
    let mut features = SparseFeatures::default();
    for (node, feature, value) in entries {
        features.rows.push(node);
        features.cols.push(feature);
        features.values.push(value);
    }
    Ok((num_features, features))
}

fn row_normalize(features: &mut SparseFeatures, num_nodes: usize) {
    let mut sums = vec![0.0f32; num_nodes];
    for (&row, &value) in features.rows.iter().zip(&features.values) {
        sums[row as usize] += value;
    }
    for (&row, value) in features.rows.iter().zip(features.values.iter_mut()) {
        let sum = sums[row as usize];
        if sum != 0.0 {
            *value /= sum;
        }
    }
}

fn read_edges(
    (name, input): (String, Box<dyn Read>),
    index: &HashMap<&str, u32>,
    undirected: bool,
) -> Result<Vec<(u32, u32)>> {
    let mut csv = CsvSource::new(name, input, &["src", "dst"])?;
    let (src_col, dst_col) = (csv.column("src").unwrap(), csv.column("dst").unwrap());
    let mut edges = Vec::new();
    csv.for_each(|row| {
        let endpoint = |col: usize, column: &str| -> Result<u32> {
            let id = row.text(col, column)?;
            index.get(id).copied().ok_or_else(|| {
                row.error(format!("{column}: unknown node {id:?} (not in nodes.csv)"))
            })
        };
        let (src, dst) = (endpoint(src_col, "src")?, endpoint(dst_col, "dst")?);
        // Self-loops are added once by the layers that want them.
        if src != dst {
            edges.push((src, dst));
            if undirected {
                edges.push((dst, src));
            }
        }
        Ok(())
    })?;
    edges.sort_unstable();
    edges.dedup();
    Ok(edges)
}

/// A graph folder path for error messages and manifests.
pub fn describe_source(source: &str) -> String {
    if source.starts_with("builtin:") {
        source.to_string()
    } else {
        Path::new(source).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_cora_matches_the_published_counts() {
        let graph = Graph::load(&GraphDataConfig::default(), None).unwrap();
        assert_eq!(graph.num_nodes(), 2708);
        assert_eq!(graph.num_features, 1433);
        assert_eq!(graph.edges.len(), 10556);
        assert_eq!(graph.features.values.len(), 49216);
        assert_eq!(graph.label_names.len(), 7);
        assert_eq!(graph.nodes_in(Split::Train).len(), 140);
        assert_eq!(graph.nodes_in(Split::Val).len(), 500);
        assert_eq!(graph.nodes_in(Split::Test).len(), 1000);
        // Row normalisation: node 0 has 9 non-zero features, each 1/9.
        let first: Vec<f32> = graph.features.values[..9].to_vec();
        assert!(first.iter().all(|&v| (v - 1.0 / 9.0).abs() < 1e-7), "{first:?}");
    }

    #[test]
    fn known_labels_fix_the_order_and_reject_new_ones() {
        let raw = vec!["b".to_string(), "".to_string(), "a".to_string()];
        let (names, labels) = encode_labels(&raw, None).unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(labels, [Some(1), None, Some(0)]);
        let known = vec!["b".to_string(), "a".to_string()];
        assert_eq!(encode_labels(&raw, Some(&known)).unwrap().1, [Some(0), None, Some(1)]);
        assert!(encode_labels(&["c".to_string()], Some(&known)).is_err());
    }
}
