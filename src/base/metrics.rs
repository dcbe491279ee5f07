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

/// Counts of (true class, predicted class) pairs: what accuracy, macro-F1 and the report's
/// per-class table are all read from.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionMatrix {
    classes: usize,
    /// `[true][predicted]`, row-major.
    counts: Vec<usize>,
}

/// Precision, recall and F1 of one class, and how many examples truly belong to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

impl ConfusionMatrix {
    pub fn new(predicted: &[u32], labels: &[u32], classes: usize) -> Self {
        assert_eq!(predicted.len(), labels.len());
        let mut counts = vec![0; classes * classes];
        for (&p, &l) in predicted.iter().zip(labels) {
            counts[l as usize * classes + p as usize] += 1;
        }
        Self { classes, counts }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Examples of class `truth` predicted as `predicted`.
    pub fn count(&self, truth: usize, predicted: usize) -> usize {
        self.counts[truth * self.classes + predicted]
    }

    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    fn row_total(&self, truth: usize) -> usize {
        (0..self.classes).map(|p| self.count(truth, p)).sum()
    }

    fn column_total(&self, predicted: usize) -> usize {
        (0..self.classes).map(|t| self.count(t, predicted)).sum()
    }

    /// Precision, recall and F1 of each class; a ratio with nothing to divide by is 0.
    pub fn per_class(&self) -> Vec<ClassScores> {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        (0..self.classes)
            .map(|c| {
                let hits = self.count(c, c);
                let (support, predicted) = (self.row_total(c), self.column_total(c));
                ClassScores {
                    precision: ratio(hits, predicted),
                    recall: ratio(hits, support),
                    f1: ratio(2 * hits, support + predicted),
                    support,
                }
            })
            .collect()
    }

    /// Unweighted mean of the per-class F1 scores, over the classes present in the labels
    /// or the predictions (a class that never occurs in either is not counted).
    pub fn macro_f1(&self) -> f64 {
        let scores = self.per_class();
        let present: Vec<f64> = (0..self.classes)
            .filter(|&c| self.row_total(c) + self.column_total(c) > 0)
            .map(|c| scores[c].f1)
            .collect();
        if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 }
    }
}

/// Unweighted mean of the per-class F1 scores; see [`ConfusionMatrix::macro_f1`].
pub fn macro_f1(predicted: &[u32], labels: &[u32], num_classes: usize) -> f64 {
    ConfusionMatrix::new(predicted, labels, num_classes).macro_f1()
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

/// Cumulative (true positives, false positives) at each distinct score, highest score
/// first: the thresholds every ROC and precision-recall figure is read from.
fn threshold_counts(scores: &[f32], labels: &[bool]) -> Vec<(usize, usize)> {
    assert_eq!(scores.len(), labels.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut true_positives, mut false_positives) = (0, 0);
    let mut steps = Vec::new();
    for (at, &i) in order.iter().enumerate() {
        if labels[i] {
            true_positives += 1;
        } else {
            false_positives += 1;
        }
        let last_of_tie = order.get(at + 1).is_none_or(|&next| scores[next] != scores[i]);
        if last_of_tie {
            steps.push((true_positives, false_positives));
        }
    }
    steps
}

/// The ROC curve as (false-positive rate, true-positive rate) points from (0, 0) to (1, 1),
/// one per distinct score. `None` when the labels hold only one class.
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Option<Vec<(f64, f64)>> {
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let rates = threshold_counts(scores, labels)
        .into_iter()
        .map(|(tp, fp)| (fp as f64 / negatives as f64, tp as f64 / positives as f64));
    Some(std::iter::once((0.0, 0.0)).chain(rates).collect())
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann-Whitney statistic, as scikit-learn computes
/// it; the trapezoids of [`roc_curve`] give exactly that). `None` when the labels hold
/// only one class, where the area is undefined.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let curve = roc_curve(scores, labels)?;
    Some(curve.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum())
}

/// The precision-recall curve as (recall, precision) points, one per distinct score,
/// highest score first. `None` without positives.
pub fn pr_curve(scores: &[f32], labels: &[bool]) -> Option<Vec<(f64, f64)>> {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let points = threshold_counts(scores, labels)
        .into_iter()
        .map(|(tp, fp)| (tp as f64 / positives as f64, tp as f64 / (tp + fp) as f64));
    Some(points.collect())
}

/// Area under the precision-recall curve as average precision: the precision at each
/// distinct score threshold weighted by the recall it adds (scikit-learn's
/// `average_precision_score`). `None` without positives.
pub fn pr_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let curve = pr_curve(scores, labels)?;
    let mut previous_recall = 0.0;
    let mut area = 0.0;
    for (recall, precision) in curve {
        area += (recall - previous_recall) * precision;
        previous_recall = recall;
    }
    Some(area)
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationBin {
    pub mean_predicted: f64,
    pub observed_rate: f64,
    pub count: usize,
}

/// Predicted probabilities cut into `bins` equal-width bins over [0, 1], each with its mean
/// prediction and the share of positives in it; empty bins are left out.
pub fn calibration(probabilities: &[f32], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut sums = vec![(0.0f64, 0usize, 0usize); bins];
    for (&p, &l) in probabilities.iter().zip(labels) {
        let bin = ((p as f64 * bins as f64) as usize).min(bins - 1);
        sums[bin].0 += p as f64;
        sums[bin].1 += usize::from(l);
        sums[bin].2 += 1;
    }
    sums.into_iter()
        .filter(|&(_, _, count)| count > 0)
        .map(|(sum, positives, count)| CalibrationBin {
            mean_predicted: sum / count as f64,
            observed_rate: positives as f64 / count as f64,
            count,
        })
        .collect()
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

    #[test]
    fn confusion_matrix_by_hand() {
        // Labels 0, 0, 1, 2 predicted 0, 1, 1, 1.
        let matrix = ConfusionMatrix::new(&[0, 1, 1, 1], &[0, 0, 1, 2], 3);
        assert_eq!((matrix.count(0, 0), matrix.count(0, 1), matrix.count(2, 1)), (1, 1, 1));
        assert_eq!(matrix.total(), 4);
        let scores = matrix.per_class();
        // Class 1: predicted 3 times, right once; 1 true example, found.
        assert!((scores[1].precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((scores[1].recall, scores[1].support), (1.0, 1));
        assert!((scores[1].f1 - 0.5).abs() < 1e-12);
        // Class 2: never predicted: precision and F1 are 0, not NaN.
        assert_eq!((scores[2].precision, scores[2].f1), (0.0, 0.0));
    }

    #[test]
    fn roc_and_pr_curves_by_hand() {
        let scores = [0.9, 0.8, 0.3, 0.4, 0.4];
        let labels = [true, false, false, true, false];
        let roc = roc_curve(&scores, &labels).unwrap();
        // Thresholds 0.9, 0.8, 0.4 (one positive and one negative tied), 0.3.
        assert_eq!(
            roc,
            vec![(0.0, 0.0), (0.0, 0.5), (1.0 / 3.0, 0.5), (2.0 / 3.0, 1.0), (1.0, 1.0)]
        );
        let pr = pr_curve(&scores, &labels).unwrap();
        assert_eq!(pr[0], (0.5, 1.0));
        assert_eq!(pr[2], (1.0, 0.5));
    }

    #[test]
    fn calibration_bins_by_hand() {
        let bins = calibration(&[0.05, 0.15, 0.95, 0.9, 1.0], &[false, true, true, false, true], 2);
        assert_eq!(bins.len(), 2);
        assert!((bins[0].mean_predicted - 0.1).abs() < 1e-6);
        assert_eq!((bins[0].observed_rate, bins[0].count), (0.5, 2));
        // 1.0 falls in the last bin, not past it.
        assert_eq!(bins[1].count, 3);
        assert!((bins[1].observed_rate - 2.0 / 3.0).abs() < 1e-12);
    }
}
