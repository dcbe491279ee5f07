//! What a trained net did on one split, example by example, as `shopnet report` draws it:
//! computed by the family from the same predictions as `eval`'s metrics, and kept in the
//! run as `findings-<split>.json` so that a report renders without running the net again.
//! Samples of examples are capped (see the constants) so that a report stays small for
//! any data size.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::base::files::{read_json, write_atomic};
use crate::base::metrics::{self, Metrics};
use crate::base::split::Split;

/// Misclassified examples kept per split: the most confident mistakes.
pub const MISCLASSIFIED_SAMPLE: usize = 24;
/// Embeddings drawn in the 2-D projection.
pub const PROJECTED_POINTS: usize = 2_000;
/// Query images shown with their nearest neighbours, and neighbours per query.
pub const NEIGHBOUR_QUERIES: usize = 6;
pub const NEIGHBOURS_SHOWN: usize = 8;
/// The largest K of the recommender's Recall@K and NDCG@K curves.
pub const RANKING_CURVE_K: usize = 50;
/// Popularity groups of the recommender's long-tail plot.
pub const POPULARITY_GROUPS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Findings {
    pub split: Split,
    /// Exactly what `eval` reports for the split.
    pub metrics: Metrics,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    Classes(ClassOutcome),
    Binary(BinaryOutcome),
    Ranking(RankingOutcome),
}

/// A classifier's predictions: node classes, review sentiment, image classes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassOutcome {
    pub truth: Vec<u32>,
    pub predicted: Vec<u32>,
    /// At most [`MISCLASSIFIED_SAMPLE`], most confident first.
    pub misclassified: Vec<Example>,
    /// Image models: where the examples lie in embedding space.
    pub embedding: Option<EmbeddingMap>,
}

/// One example as a person looks at it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub id: String,
    pub truth: u32,
    pub predicted: u32,
    /// The predicted class's probability (a neighbour's cosine similarity).
    pub score: f32,
    /// A review's text.
    pub text: Option<String>,
    /// An image as a `data:image/png;base64,...` URI.
    pub image: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingMap {
    /// Principal-component coordinates and class of at most [`PROJECTED_POINTS`] examples.
    pub points: Vec<[f32; 2]>,
    pub classes: Vec<u32>,
    /// Share of the variance along each axis.
    pub explained: [f64; 2],
    pub neighbours: Vec<Neighbours>,
}

/// A query and its nearest neighbours among the split's other examples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Neighbours {
    pub query: Example,
    pub found: Vec<Example>,
}

/// A binary scorer (purchase intent) beside the simple baseline it must beat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BinaryOutcome {
    pub scores: Vec<f32>,
    pub labels: Vec<bool>,
    pub baseline_name: String,
    pub baseline: Vec<f32>,
}

/// A recommender's ranking quality by K, and how popular what it recommends is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankingOutcome {
    pub users: usize,
    /// Recall@K and NDCG@K for K = 1..=[`RANKING_CURVE_K`].
    pub recall: Vec<f64>,
    pub ndcg: Vec<f64>,
    /// The K of the recommendations counted in `popularity`.
    pub recommended_k: usize,
    /// Items by training popularity, most popular first, cut into groups of equal size.
    pub popularity: Vec<PopularityGroup>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PopularityGroup {
    pub items: usize,
    /// Share of the training interactions on these items.
    pub interactions: f64,
    /// Share of the recommendations that are these items.
    pub recommended: f64,
}

/// What identifies an example to a person: an id, and its text or image when it has one.
pub struct Shown {
    pub id: String,
    pub text: Option<String>,
    pub image: Option<String>,
}

impl Shown {
    pub fn id(id: impl Into<String>) -> Self {
        Self { id: id.into(), text: None, image: None }
    }
}

/// A classifier's metrics (those `eval` reports) and outcome from its class probabilities,
/// `[truth.len(), classes]` row-major; `show(row)` describes the mistakes sampled.
pub fn classifier(
    probabilities: &[f32],
    truth: &[u32],
    classes: usize,
    show: impl Fn(usize) -> Result<Shown>,
) -> Result<(Metrics, ClassOutcome)> {
    let metrics = metrics::classification(probabilities, truth, classes);
    let predicted = metrics::argmax_rows(probabilities, classes);
    let confidence = |row: usize| probabilities[row * classes + predicted[row] as usize];
    let mut wrong: Vec<usize> = (0..truth.len()).filter(|&r| predicted[r] != truth[r]).collect();
    wrong.sort_by(|&a, &b| confidence(b).total_cmp(&confidence(a)).then(a.cmp(&b)));
    wrong.truncate(MISCLASSIFIED_SAMPLE);
    let misclassified = wrong
        .into_iter()
        .map(|row| {
            let shown = show(row)?;
            Ok(Example {
                id: shown.id,
                truth: truth[row],
                predicted: predicted[row],
                score: confidence(row),
                text: shown.text,
                image: shown.image,
            })
        })
        .collect::<Result<_>>()?;
    let outcome = ClassOutcome { truth: truth.to_vec(), predicted, misclassified, embedding: None };
    Ok((metrics, outcome))
}

pub fn findings_path(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("findings-{split}.json"))
}

/// Written compactly: a split of many users holds one score per user, which pretty JSON
/// would spread over a line each.
pub fn save(dir: &Path, findings: &Findings) -> Result<()> {
    write_atomic(&findings_path(dir, findings.split), &serde_json::to_vec(findings)?)
}

/// The findings a run keeps for `split`, if it has them.
pub fn load(dir: &Path, split: Split) -> Result<Option<Findings>> {
    let path = findings_path(dir, split);
    if !path.is_file() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_samples_the_most_confident_mistakes() {
        // Rows: right (0.9), wrong at 0.6, wrong at 0.8, right.
        let probabilities = [0.9, 0.1, 0.4, 0.6, 0.8, 0.2, 0.3, 0.7];
        let (metrics, outcome) =
            classifier(&probabilities, &[0, 0, 1, 1], 2, |row| Ok(Shown::id(format!("n{row}"))))
                .unwrap();
        assert_eq!(metrics.get("accuracy"), Some(0.5));
        assert_eq!(outcome.predicted, vec![0, 1, 0, 1]);
        let ids: Vec<&str> = outcome.misclassified.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["n2", "n1"]);
        assert_eq!((outcome.misclassified[0].truth, outcome.misclassified[0].predicted), (1, 0));
        assert!((outcome.misclassified[0].score - 0.8).abs() < 1e-6);
    }
}
