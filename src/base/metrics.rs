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

/// The names [`classification`] reports.
pub const CLASSIFICATION: [&str; 3] = ["loss", "accuracy", "macro_f1"];

/// Cross-entropy (`loss`), `accuracy` and `macro_f1` of class probabilities,
/// `[labels.len(), classes]` row-major, against the true labels.
pub fn classification(probabilities: &[f32], labels: &[u32], classes: usize) -> Metrics {
    let loss = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| -(probabilities[i * classes + l as usize].max(1e-12) as f64).ln())
        .sum::<f64>()
        / labels.len() as f64;
    let predicted = argmax_rows(probabilities, classes);
    let mut out = Metrics::default();
    out.push("loss", loss);
    out.push("accuracy", accuracy(&predicted, labels));
    out.push("macro_f1", macro_f1(&predicted, labels, classes));
    out
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
    let mut candidates: Vec<u32> =
        (0..scores.len() as u32).filter(|&i| scores[i as usize] != f32::NEG_INFINITY).collect();
    let order =
        |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b));
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

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann-Whitney statistic, as scikit-learn computes
/// it). `None` when the labels hold only one class, where the area is undefined.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (tie-averaged, 1-based) ranks of the positives.
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        let average_rank = (start + end) as f64 / 2.0 + 1.0;
        positive_rank_sum +=
            average_rank * order[start..=end].iter().filter(|&&i| labels[i]).count() as f64;
        start = end + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Area under the precision-recall curve as average precision: the mean, over the
/// positives, of the precision at each distinct score threshold (scikit-learn's
/// `average_precision_score`). `None` without positives.
pub fn pr_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut true_positives, mut seen, mut area, mut start) = (0usize, 0usize, 0.0, 0);
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        let new_positives = order[start..=end].iter().filter(|&&i| labels[i]).count();
        true_positives += new_positives;
        seen += end - start + 1;
        area += new_positives as f64 / positives as f64 * (true_positives as f64 / seen as f64);
        start = end + 1;
    }
    Some(area)
}

/// Mean binary cross-entropy of probabilities, clamped away from 0 and 1 as scikit-learn does.
pub fn log_loss(probabilities: &[f32], labels: &[bool]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let eps = 1e-7;
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &l)| {
            let p = (p as f64).clamp(eps, 1.0 - eps);
            -if l { p.ln() } else { (1.0 - p).ln() }
        })
        .sum();
    total / labels.len() as f64
}

/// Fraction of examples whose probability is on the side of 0.5 their label is on.
pub fn binary_accuracy(probabilities: &[f32], labels: &[bool]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    probabilities.iter().zip(labels).filter(|&(&p, &l)| (p >= 0.5) == l).count() as f64
        / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[0, 1, 2, 2], &[0, 1, 1, 2]), 0.75);
    }

    #[test]
    fn classification_metrics_by_hand() {
        // Rows predict 1, 0, 1 for labels 1, 1, 0: one right.
        let metrics = classification(&[0.2, 0.8, 0.6, 0.4, 0.5, 0.5001], &[1, 1, 0], 2);
        let loss = -(0.8f32.ln() as f64 + 0.4f32.ln() as f64 + 0.5f32.ln() as f64) / 3.0;
        assert!((metrics.get("loss").unwrap() - loss).abs() < 1e-6);
        assert!((metrics.get("accuracy").unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // Class 0: tp 0, fp 1, fn 1 -> F1 0; class 1: tp 1, fp 1, fn 1 -> F1 0.5.
        assert!((metrics.get("macro_f1").unwrap() - 0.25).abs() < 1e-12);
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

    #[test]
    fn roc_auc_by_hand() {
        // Positives score 0.9 and 0.4; negatives 0.8, 0.3, 0.4. Pairs won: 0.9 beats all 3;
        // 0.4 beats 0.3, ties 0.4 (half) and loses to 0.8: (3 + 1.5) / 6 = 0.75.
        let auc = roc_auc(&[0.9, 0.8, 0.3, 0.4, 0.4], &[true, false, false, true, false]).unwrap();
        assert!((auc - 0.75).abs() < 1e-12, "{auc}");
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1, 0.2], &[false, true]), Some(1.0));
    }

    #[test]
    fn pr_auc_by_hand() {
        // Ranked 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): precision 1 at the first
        // positive, 2/3 at the second; AP = (1 + 2/3) / 2.
        let ap = pr_auc(&[0.1, 0.7, 0.8, 0.9], &[false, true, false, true]).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-12, "{ap}");
        // A tie between a positive and a negative counts as one threshold: precision 1/2.
        let tied = pr_auc(&[0.5, 0.5], &[true, false]).unwrap();
        assert!((tied - 0.5).abs() < 1e-12, "{tied}");
        assert_eq!(pr_auc(&[0.3], &[false]), None);
    }

    #[test]
    fn log_loss_and_accuracy_by_hand() {
        let loss = log_loss(&[0.8, 0.4], &[true, false]);
        assert!((loss - (-(0.8f64.ln()) - 0.6f64.ln()) / 2.0).abs() < 1e-6, "{loss}");
        assert!(log_loss(&[0.0], &[true]) < 16.2, "clamped, not infinite");
        assert_eq!(binary_accuracy(&[0.8, 0.4, 0.5, 0.2], &[true, true, true, false]), 0.75);
    }
}
