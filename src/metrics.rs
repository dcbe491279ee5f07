//! Evaluation metrics, computed on the host from predictions.

use serde::{Deserialize, Serialize};

/// Named metric values in display order, e.g. `[("loss", 0.61), ("accuracy", 0.81)]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics(pub Vec<(String, f64)>);

impl Metrics {
    pub fn push(&mut self, name: impl Into<String>, value: f64) {
        self.0.push((name.into(), value));
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// The same values with every name prefixed (`val_` + `accuracy`).
    pub fn prefixed(&self, prefix: &str) -> Metrics {
        Metrics(self.0.iter().map(|(n, v)| (format!("{prefix}{n}"), *v)).collect())
    }

    pub fn extend(&mut self, other: Metrics) {
        self.0.extend(other.0);
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.0.iter().map(|(n, v)| (n.clone(), serde_json::json!(v))).collect()
    }

    /// A two-column table for the terminal.
    pub fn table(&self) -> String {
        let width = self.0.iter().map(|(n, _)| n.len()).max().unwrap_or(6).max(6);
        let mut out = format!("{:<width$}  value\n", "metric");
        for (name, value) in &self.0 {
            out.push_str(&format!("{name:<width$}  {value:.4}\n"));
        }
        out
    }
}

/// Fraction of predictions equal to their label.
pub fn accuracy(predicted: &[u32], labels: &[u32]) -> f64 {
    assert_eq!(predicted.len(), labels.len());
    if labels.is_empty() {
        return 0.0;
    }
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}

/// Unweighted mean of the per-class F1 scores, over the classes present in the labels or
/// the predictions (a class that never occurs in either is not counted).
pub fn macro_f1(predicted: &[u32], labels: &[u32], num_classes: usize) -> f64 {
    let mut tp = vec![0usize; num_classes];
    let mut fp = vec![0usize; num_classes];
    let mut fn_ = vec![0usize; num_classes];
    for (&p, &l) in predicted.iter().zip(labels) {
        if p == l {
            tp[p as usize] += 1;
        } else {
            fp[p as usize] += 1;
            fn_[l as usize] += 1;
        }
    }
    let scores: Vec<f64> = (0..num_classes)
        .filter(|&c| tp[c] + fp[c] + fn_[c] > 0)
        .map(|c| 2.0 * tp[c] as f64 / (2 * tp[c] + fp[c] + fn_[c]) as f64)
        .collect();
    if scores.is_empty() { 0.0 } else { scores.iter().sum::<f64>() / scores.len() as f64 }
}

/// Row-wise argmax of a `[rows, classes]` row-major matrix.
pub fn argmax_rows(values: &[f32], classes: usize) -> Vec<u32> {
    values
        .chunks(classes)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}

/// Indices of the `k` largest scores, best first; ties go to the lower index. Entries
/// equal to `f32::NEG_INFINITY` (masked) are never returned.
pub fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    let mut candidates: Vec<u32> = (0..scores.len() as u32).filter(|&i| scores[i as usize] != f32::NEG_INFINITY).collect();
    let order = |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b));
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k, order);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(order);
    candidates
}

/// Recall@K and NDCG@K of one ranked list against a user's relevant items (sorted).
///
/// Recall divides the hits by the number of relevant items; NDCG's ideal DCG places
/// `min(K, relevant)` hits first, as in LightGCN's evaluation.
pub fn recall_ndcg_at_k(ranked: &[u32], relevant: &[u32], k: usize) -> (f64, f64) {
    if relevant.is_empty() {
        return (0.0, 0.0);
    }
    let discount = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let mut hits = 0usize;
    let mut dcg = 0.0;
    for (rank, item) in ranked.iter().take(k).enumerate() {
        if relevant.binary_search(item).is_ok() {
            hits += 1;
            dcg += discount(rank);
        }
    }
    let ideal: f64 = (0..k.min(relevant.len())).map(discount).sum();
    (hits as f64 / relevant.len() as f64, dcg / ideal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[0, 1, 2, 2], &[0, 1, 1, 2]), 0.75);
    }

    #[test]
    fn macro_f1_by_hand() {
        // class 0: tp 1, fp 0, fn 1 -> F1 2/3; class 1: tp 1, fp 1, fn 0 -> 2/3;
        // class 2: tp 1, fp 0, fn 0 -> 1. Mean 7/9.
        let f1 = macro_f1(&[0, 1, 1, 2], &[0, 1, 0, 2], 4);
        assert!((f1 - 7.0 / 9.0).abs() < 1e-12, "{f1}");
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax_rows(&[0.1, 0.7, 0.2, 0.5, 0.5, 0.0], 3), vec![1, 0]);
    }

    #[test]
    fn top_k_orders_and_skips_masked() {
        let scores = [0.1, f32::NEG_INFINITY, 0.9, 0.5, 0.9, 0.3];
        assert_eq!(top_k(&scores, 3), vec![2, 4, 3]);
        assert_eq!(top_k(&scores, 10), vec![2, 4, 3, 5, 0]);
    }

    #[test]
    fn recall_and_ndcg_by_hand() {
        // Hits at ranks 0 and 2 of 3 relevant items, K = 3.
        let (recall, ndcg) = recall_ndcg_at_k(&[7, 1, 5], &[4, 5, 7], 3);
        assert!((recall - 2.0 / 3.0).abs() < 1e-12);
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((ndcg - dcg / ideal).abs() < 1e-12, "{ndcg}");
        // Fewer relevant items than K: the ideal list holds only those.
        let (recall, ndcg) = recall_ndcg_at_k(&[3, 9, 8, 2], &[9], 4);
        assert_eq!(recall, 1.0);
        assert!((ndcg - 1.0 / 3f64.log2()).abs() < 1e-12, "{ndcg}");
    }
}
