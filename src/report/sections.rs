//! What each kind of outcome shows: classifiers, the purchase-intent scorer beside its
//! baseline, and the recommender's ranking. Every number is read through `base::metrics`,
//! the code `eval` uses.

use std::fmt::Write as _;

use anyhow::Result;

use super::charts::{Chart, Mark, Series};
use super::html::{Page, escape, number, table};
use crate::artifacts::findings::{
    BinaryOutcome, ClassOutcome, EmbeddingMap, Example, RankingOutcome,
};
use crate::base::metrics::{self, ConfusionMatrix};

/// Points a curve is drawn with at most; a longer one keeps an even sample and its end.
const CURVE_POINTS: usize = 600;
/// Bins of the score histograms and of the reliability diagram.
const SCORE_BINS: usize = 20;

/// A chart in a `<figure>`, with its series' last points as `<data>` elements.
pub fn figure(id: &str, chart: &Chart, caption: &str) -> Result<String> {
    let mut out = format!("<figure id=\"{id}\">\n{}\n", chart.svg()?);
    for series in &chart.series {
        if let Some(&(x, y)) = series.points.last() {
            let _ = writeln!(
                out,
                "<data class=\"last-point\" data-series=\"{}\" data-x=\"{x}\" value=\"{y}\"></data>",
                escape(&series.name)
            );
        }
    }
    let _ = writeln!(out, "<figcaption>{}</figcaption>\n</figure>", escape(caption));
    Ok(out)
}

fn thinned(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= CURVE_POINTS {
        return points;
    }
    let step = points.len().div_ceil(CURVE_POINTS);
    let last = *points.last().unwrap_or(&(0.0, 0.0));
    let mut kept: Vec<(f64, f64)> = points.into_iter().step_by(step).collect();
    if kept.last() != Some(&last) {
        kept.push(last);
    }
    kept
}

pub fn classes(page: &mut Page, outcome: &ClassOutcome, labels: &[String]) -> Result<()> {
    let matrix = ConfusionMatrix::new(&outcome.predicted, &outcome.truth, labels.len());
    page.section("confusion", "Confusion matrix");
    page.paragraph(&format!(
        "{} examples; rows are the true class, columns the predicted one; each cell gives the count and its share of the row.",
        matrix.total()
    ));
    page.raw(&confusion_table(&matrix, labels));
    page.end_section();

    page.section("per-class", "Per-class precision, recall and F1");
    let header: Vec<String> =
        ["class", "precision", "recall", "F1", "support"].map(String::from).to_vec();
    let rows: Vec<Vec<String>> = matrix
        .per_class()
        .iter()
        .zip(labels)
        .map(|(s, label)| {
            vec![
                label.clone(),
                number(s.precision),
                number(s.recall),
                number(s.f1),
                s.support.to_string(),
            ]
        })
        .collect();
    page.raw(&table("per-class-table", &header, &rows));
    page.end_section();

    misclassified(page, &outcome.misclassified, labels);
    if let Some(map) = &outcome.embedding {
        embedding(page, map, labels)?;
    }
    Ok(())
}

fn confusion_table(matrix: &ConfusionMatrix, labels: &[String]) -> String {
    let mut out = String::from(
        "<table id=\"confusion-table\" class=\"confusion\">\n<tr><th class=\"name\">true \\ predicted</th>",
    );
    for label in labels {
        let _ = write!(out, "<th>{}</th>", escape(label));
    }
    out.push_str("</tr>\n");
    for (t, label) in labels.iter().enumerate() {
        let row_total: usize = (0..labels.len()).map(|p| matrix.count(t, p)).sum();
        let _ = write!(out, "<tr><th class=\"name\">{}</th>", escape(label));
        for p in 0..labels.len() {
            let count = matrix.count(t, p);
            let share = if row_total == 0 { 0.0 } else { count as f64 / row_total as f64 };
            let hue = if t == p { "44,160,44" } else { "214,39,40" };
            let _ = write!(
                out,
                "<td data-count=\"{count}\" style=\"background: rgba({hue},{:.3})\">{count}<br><small>{:.1}%</small></td>",
                share * 0.8,
                share * 100.0
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

fn misclassified(page: &mut Page, examples: &[Example], labels: &[String]) {
    page.section("misclassified", "Misclassified examples");
    if examples.is_empty() {
        page.paragraph("None: every example of the split is classified right.");
        page.end_section();
        return;
    }
    page.paragraph(&format!(
        "The {} most confident mistakes (at most {}).",
        examples.len(),
        crate::artifacts::findings::MISCLASSIFIED_SAMPLE
    ));
    if examples.iter().any(|e| e.image.is_some()) {
        page.raw(&example_grid(examples, labels));
    } else {
        page.raw(&example_table(examples, labels));
    }
    page.end_section();
}

fn class_name(labels: &[String], class: u32) -> String {
    labels.get(class as usize).cloned().unwrap_or_else(|| class.to_string())
}

/// Pictures with their id, true and predicted class.
fn example_grid(examples: &[Example], labels: &[String]) -> String {
    let mut out = String::from("<div class=\"examples\" id=\"misclassified-examples\">\n");
    for example in examples {
        let _ = writeln!(
            out,
            "<div class=\"example\"><img src=\"{}\" alt=\"{}\"><div>{}</div><div>true {} / predicted {} ({:.2})</div></div>",
            example.image.as_deref().unwrap_or_default(),
            escape(&example.id),
            escape(&example.id),
            escape(&class_name(labels, example.truth)),
            escape(&class_name(labels, example.predicted)),
            example.score
        );
    }
    out.push_str("</div>\n");
    out
}

/// One row per example: id, true and predicted class, confidence, and the text if any.
fn example_table(examples: &[Example], labels: &[String]) -> String {
    let with_text = examples.iter().any(|e| e.text.is_some());
    let mut header: Vec<String> =
        ["id", "true", "predicted", "confidence"].map(String::from).to_vec();
    if with_text {
        header.push("text".into());
    }
    let mut out = String::from("<table id=\"misclassified-table\">\n<tr>");
    for cell in &header {
        let _ = write!(out, "<th class=\"name\">{}</th>", escape(cell));
    }
    out.push_str("</tr>\n");
    for example in examples {
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{:.3}</td>",
            escape(&example.id),
            escape(&class_name(labels, example.truth)),
            escape(&class_name(labels, example.predicted)),
            example.score
        );
        if with_text {
            let text = example.text.as_deref().unwrap_or_default();
            let _ = write!(out, "<td class=\"text\">{}</td>", escape(text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

fn embedding(page: &mut Page, map: &EmbeddingMap, labels: &[String]) -> Result<()> {
    page.section("embedding", "Embedding space");
    let x_label = format!("PC 1 ({:.1}% of variance)", map.explained[0] * 100.0);
    let y_label = format!("PC 2 ({:.1}% of variance)", map.explained[1] * 100.0);
    let mut chart =
        Chart::new("Test embeddings, first two principal components", &x_label, &y_label);
    for (class, label) in labels.iter().enumerate() {
        let points: Vec<(f64, f64)> = map
            .points
            .iter()
            .zip(&map.classes)
            .filter(|(_, c)| **c as usize == class)
            .map(|(p, _)| (p[0] as f64, p[1] as f64))
            .collect();
        if !points.is_empty() {
            chart.series.push(Series {
                name: label.clone(),
                points,
                mark: Mark::Points,
                color: class,
            });
        }
    }
    let caption = format!(
        "{} examples projected by PCA; a class that forms its own cloud is one the embedding separates.",
        map.points.len()
    );
    page.raw(&figure("chart-embedding", &chart, &caption)?);
    page.end_section();

    page.section("neighbours", "Nearest neighbours");
    page.paragraph("Queries spread over the split (framed), each with its nearest others by cosine similarity.");
    let label = |class: u32| class_name(labels, class);
    let mut out = String::new();
    for group in &map.neighbours {
        out.push_str("<div class=\"neighbours\">");
        let cell = |example: &Example, class: &str, caption: String| {
            format!(
                "<div class=\"example {class}\"><img src=\"{}\" alt=\"{}\"><div>{}</div></div>",
                example.image.as_deref().unwrap_or_default(),
                escape(&example.id),
                escape(&caption)
            )
        };
        out.push_str(&cell(&group.query, "query", label(group.query.truth)));
        for found in &group.found {
            out.push_str(&cell(found, "", format!("{} {:.2}", label(found.truth), found.score)));
        }
        out.push_str("</div>\n");
    }
    page.raw(&out);
    page.end_section();
    Ok(())
}

// long: four charts and their table, each a few lines of data and a caption.
pub fn binary(page: &mut Page, outcome: &BinaryOutcome) -> Result<()> {
    let (scores, labels, baseline) = (&outcome.scores, &outcome.labels, &outcome.baseline);
    let name = &outcome.baseline_name;
    page.section("curves", "ROC and precision-recall curves");
    let areas = |s: &[f32]| (metrics::roc_auc(s, labels), metrics::pr_auc(s, labels));
    let (net_roc, net_pr) = areas(scores);
    let (base_roc, base_pr) = areas(baseline);
    let show = |v: Option<f64>| v.map_or("undefined".to_string(), number);
    let header: Vec<String> = ["scorer", "ROC-AUC", "PR-AUC"].map(String::from).to_vec();
    let rows = vec![
        vec!["net".to_string(), show(net_roc), show(net_pr)],
        vec![format!("baseline: {name}"), show(base_roc), show(base_pr)],
    ];
    page.raw(&table("areas-table", &header, &rows));
    let mut roc = Chart::new("ROC curve", "false-positive rate", "true-positive rate");
    roc.legend_low = true;
    roc.x_range = Some((0.0, 1.0));
    roc.y_range = Some((0.0, 1.0));
    let mut pr = Chart::new("Precision-recall curve", "recall", "precision");
    pr.x_range = Some((0.0, 1.0));
    pr.y_range = Some((0.0, 1.0));
    for (i, (label, s)) in [("net", scores), (name.as_str(), baseline)].into_iter().enumerate() {
        if let Some(curve) = metrics::roc_curve(s, labels) {
            roc.series.push(Series::line(label, thinned(curve), i));
        }
        if let Some(curve) = metrics::pr_curve(s, labels) {
            pr.series.push(Series::line(label, thinned(curve), i));
        }
    }
    let chance = vec![(0.0, 0.0), (1.0, 1.0)];
    roc.series.push(Series { name: "chance".into(), points: chance, mark: Mark::Dashed, color: 7 });
    let rate = labels.iter().filter(|&&l| l).count() as f64 / labels.len().max(1) as f64;
    let base_rate = vec![(0.0, rate), (1.0, rate)];
    pr.series.push(Series {
        name: "positive rate".into(),
        points: base_rate,
        mark: Mark::Dashed,
        color: 7,
    });
    let mut charts = String::from("<div class=\"charts\">\n");
    charts.push_str(&figure(
        "chart-roc",
        &roc,
        &format!("The net against the {name} baseline; the dashed line is chance."),
    )?);
    charts.push_str(&figure(
        "chart-pr",
        &pr,
        "The dashed line is the share of positives: what a random ranking reaches.",
    )?);
    charts.push_str("</div>\n");
    page.raw(&charts);
    page.end_section();

    page.section("calibration", "Calibration and score distribution");
    let mut reliability =
        Chart::new("Reliability diagram", "mean predicted probability", "observed positive rate");
    reliability.x_range = Some((0.0, 1.0));
    reliability.y_range = Some((0.0, 1.0));
    let bins = metrics::calibration(scores, labels, SCORE_BINS);
    let observed = bins.iter().map(|b| (b.mean_predicted, b.observed_rate)).collect();
    reliability.series.push(Series::line("net", observed, 0));
    reliability.series.push(Series {
        name: "perfect".into(),
        points: vec![(0.0, 0.0), (1.0, 1.0)],
        mark: Mark::Dashed,
        color: 7,
    });
    let mut histogram =
        Chart::new("Scores by true class", "predicted probability", "share of the class");
    histogram.x_range = Some((0.0, 1.0));
    for (class, (name, color)) in [(false, ("negatives", 0)), (true, ("positives", 3))] {
        histogram.series.push(Series {
            name: name.into(),
            points: score_shares(scores, labels, class),
            mark: Mark::Bars { width: 1.0 / SCORE_BINS as f64 },
            color,
        });
    }
    let mut charts = String::from("<div class=\"charts\">\n");
    charts.push_str(&figure("chart-calibration", &reliability, &format!("{SCORE_BINS} equal-width bins; a net on the dashed line means what its probabilities say."))?);
    charts.push_str(&figure(
        "chart-histogram",
        &histogram,
        "Each class's scores in bins; the less the two overlap, the better the net separates them.",
    )?);
    charts.push_str("</div>\n");
    page.raw(&charts);
    page.end_section();
    Ok(())
}

/// Share of the examples of one class in each of [`SCORE_BINS`] score bins, by bin centre.
fn score_shares(scores: &[f32], labels: &[bool], class: bool) -> Vec<(f64, f64)> {
    let mut counts = [0usize; SCORE_BINS];
    for (&s, _) in scores.iter().zip(labels).filter(|(_, l)| **l == class) {
        counts[((s as f64 * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1)] += 1;
    }
    let total = counts.iter().sum::<usize>().max(1) as f64;
    let width = 1.0 / SCORE_BINS as f64;
    counts.iter().enumerate().map(|(i, &c)| ((i as f64 + 0.5) * width, c as f64 / total)).collect()
}

pub fn ranking(page: &mut Page, outcome: &RankingOutcome) -> Result<()> {
    page.section("ranking", "Recall@K and NDCG@K");
    let by_k = |values: &[f64]| -> Vec<(f64, f64)> {
        values.iter().enumerate().map(|(i, &v)| ((i + 1) as f64, v)).collect()
    };
    let mut chart = Chart::new("Ranking quality by cut-off", "K", "mean over test users");
    chart.whole_x = true;
    chart.legend_low = true;
    chart.series.push(Series::line("Recall@K", by_k(&outcome.recall), 0));
    chart.series.push(Series::line("NDCG@K", by_k(&outcome.ndcg), 1));
    let caption = format!(
        "K = 1..{} over {} test users, their training items excluded.",
        outcome.recall.len(),
        outcome.users
    );
    page.raw(&figure("chart-ranking", &chart, &caption)?);
    page.end_section();

    page.section("long-tail", "Popularity of what is recommended");
    let groups = outcome.popularity.len();
    let mut chart =
        Chart::new("Items by training popularity", "item group, most popular first", "share");
    chart.whole_x = true;
    let at = |i: usize| (i + 1) as f64;
    let interactions =
        outcome.popularity.iter().enumerate().map(|(i, g)| (at(i), g.interactions)).collect();
    let recommended =
        outcome.popularity.iter().enumerate().map(|(i, g)| (at(i), g.recommended)).collect();
    chart.series.push(Series {
        name: "training interactions".into(),
        points: interactions,
        mark: Mark::Bars { width: 0.8 },
        color: 7,
    });
    chart.series.push(Series::line(
        format!("top-{} recommendations", outcome.recommended_k),
        recommended,
        3,
    ));
    let head = groups.div_ceil(10);
    let head_share: f64 = outcome.popularity.iter().take(head).map(|g| g.recommended).sum();
    let head_items: usize = outcome.popularity.iter().take(head).map(|g| g.items).sum();
    let caption = format!(
        "{groups} groups of items of equal size. The {head_items} most popular items get {:.1}% of the recommendations; a line above the bars on the right is a recommender that reaches into the long tail.",
        head_share * 100.0
    );
    page.raw(&figure("chart-long-tail", &chart, &caption)?);
    page.end_section();
    Ok(())
}
