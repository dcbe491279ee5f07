//! `shopnet report`: what a run learned, drawn as one self-contained HTML page (inline
//! SVG charts, inline styles, images as `data:` URIs, no script, no network), and
//! `--compare` for several runs' curves and metrics side by side.
//!
//! The page reads the run's files (config, run.json, state.json, metrics.csv, report.json)
//! and the split's findings ([`crate::artifacts::findings`]): kept by `train` and `eval`,
//! or computed here from the weights and the run's data when the run has none.

pub mod charts;
mod history;
mod html;
mod sections;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::artifacts::findings::{self, Findings, Outcome};
use crate::artifacts::opened::Artifacts;
use crate::base::backend;
use crate::base::files::write_atomic;
use crate::base::metrics::Metrics;
use crate::base::split::Split;
use crate::families::driver;
use crate::families::with_family;
use charts::{Chart, Series};
use history::{History, RunView};
use html::{Page, escape, number, table};
use sections::figure;

/// The file a report goes to by default, inside the run.
pub const REPORT_HTML: &str = "report.html";

pub struct ReportArgs<'a> {
    pub run: &'a Path,
    /// Default: `report.html` in the run (for a bundle: in the working directory).
    pub out: Option<PathBuf>,
    pub split: Split,
    /// For computing findings the run does not keep.
    pub device: Option<&'a str>,
}

/// Writes the report of one run or bundle; returns where.
pub fn write(args: &ReportArgs<'_>) -> Result<PathBuf> {
    let view = RunView::open(args.run)?;
    let findings = findings_for(&view, args.split, args.device)?;
    let page = render(&view, findings.as_ref(), args.split)?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None if view.is_bundle => PathBuf::from(format!("{}-report.html", view.name)),
        None => view.dir.join(REPORT_HTML),
    };
    write_atomic(&out, page.as_bytes())?;
    Ok(out)
}

/// The split's findings: the run's own, or computed from its weights; `None` before any
/// epoch has finished.
fn findings_for(view: &RunView, split: Split, device: Option<&str>) -> Result<Option<Findings>> {
    if !view.is_bundle
        && let Some(kept) = findings::load(&view.dir, split)?
    {
        return Ok(Some(kept));
    }
    if !view.has_weights {
        return Ok(None);
    }
    let artifacts = Artifacts::open(&view.dir)?;
    let device = backend::open_for_run(device, &artifacts.config)?;
    let kind = artifacts.info.kind;
    with_family!(kind, F => driver::findings::<F>(artifacts, split, &device)).map(Some)
}

fn render(view: &RunView, findings: Option<&Findings>, split: Split) -> Result<String> {
    let title = format!("shopnet report: {}", view.name);
    let subtitle = format!("{} model, {} split", view.info.kind, split);
    let mut page = Page::new(&title, &subtitle);
    overview(&mut page, view);
    training(&mut page, view)?;
    match findings {
        Some(findings) => {
            metrics_section(&mut page, view, findings);
            match &findings.outcome {
                Outcome::Classes(outcome) => {
                    sections::classes(&mut page, outcome, &view.info.labels)?
                }
                Outcome::Binary(outcome) => sections::binary(&mut page, outcome)?,
                Outcome::Ranking(outcome) => sections::ranking(&mut page, outcome)?,
            }
        }
        None => {
            page.section("metrics", "Metrics");
            page.note("No epoch has finished yet, so there are no weights to evaluate: this page shows the run's settings only.");
            page.end_section();
        }
    }
    page.section("config", "Config");
    page.raw(&format!(
        "<details><summary>{} (resolved, defaults included)</summary><pre>{}</pre></details>\n",
        escape(&view.config.origin),
        escape(&view.config.text)
    ));
    page.end_section();
    Ok(page.finish(&title))
}

fn overview(page: &mut Page, view: &RunView) {
    page.section("overview", "Run");
    let mut rows = vec![
        ("model".to_string(), view.info.kind.to_string()),
        ("parameters".to_string(), view.info.parameters.to_string()),
        ("shopnet".to_string(), view.info.shopnet_version.clone()),
        ("directory".to_string(), view.dir.display().to_string()),
    ];
    if !view.info.labels.is_empty() {
        rows.push(("classes".into(), view.info.labels.join(", ")));
    }
    if let Some(state) = &view.state {
        rows.push(("epochs trained".into(), state.epochs_done.to_string()));
        rows.push(("finished".into(), if state.finished { "yes" } else { "no" }.into()));
        if let Some(device) = &state.device {
            rows.push(("device".into(), device.clone()));
        }
    }
    if let Some(best) = view.best_epoch() {
        rows.push(("best epoch".into(), best.to_string()));
    }
    if let Some(history) = &view.history {
        rows.push(("training wall time".into(), format!("{:.1} s", history.seconds())));
    }
    // The family's description of its data: split sizes, vocabulary, input shape.
    if let Some(input) = view.info.input.as_object() {
        for (key, value) in input {
            rows.push((format!("data: {key}"), compact_json(value)));
        }
    }
    page.key_values("overview-table", &rows);
    page.end_section();
}

fn compact_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => {
            let text = other.to_string();
            if text.len() > 200 {
                format!("{}...", &text[..text.floor_char_boundary(200)])
            } else {
                text
            }
        }
    }
}

/// The watched validation metrics, in config order.
fn watched(view: &RunView) -> Vec<String> {
    let stopping = &view.early_stopping;
    std::iter::once(stopping.metric.clone())
        .chain(stopping.also.iter().map(|w| w.metric.clone()))
        .collect()
}

fn training(page: &mut Page, view: &RunView) -> Result<()> {
    page.section("training", "Training curves");
    let Some(history) = &view.history else {
        page.note(if view.is_bundle {
            "A bundle carries no training history: report on the run directory to see its curves."
        } else {
            "No epoch has finished yet: metrics.csv has no rows."
        });
        page.end_section();
        return Ok(());
    };
    let best = view.best_epoch().map(|b| (b as f64, format!("best epoch {b}")));
    let mut charts = String::from("<div class=\"charts\">\n");
    let mut loss = Chart::new("Loss", "epoch", "loss");
    loss.whole_x = true;
    for (i, name) in ["train_loss", "val_loss"].into_iter().enumerate() {
        if let Some(points) = history.column(name) {
            loss.series.push(Series::line(name, points, i));
        }
    }
    loss.marker = best.clone();
    charts.push_str(&figure(
        "chart-loss",
        &loss,
        "Training loss against validation loss: a gap that widens is over-fitting.",
    )?);
    let watched = watched(view);
    let mut validation = Chart::new("Validation metrics", "epoch", "value");
    validation.whole_x = true;
    validation.legend_low = true;
    let others = history.columns.iter().filter(|c| c.starts_with("val_") && *c != "val_loss");
    for (i, name) in others.enumerate() {
        if let Some(points) = history.column(name) {
            validation.series.push(Series::line(name.as_str(), points, i + 2));
        }
    }
    validation.marker = best;
    let caption = format!(
        "Early stopping watches {} (patience {}).",
        watched.join(" and "),
        view.early_stopping.patience
    );
    charts.push_str(&figure("chart-validation", &validation, &caption)?);
    if let Some(points) = history.column("lr") {
        let mut lr = Chart::new("Learning rate", "epoch", "lr");
        lr.whole_x = true;
        lr.series.push(Series::line("lr", points, 4));
        charts.push_str(&figure(
            "chart-lr",
            &lr,
            "The schedule's rate at each epoch's last step.",
        )?);
    }
    charts.push_str("</div>\n");
    page.raw(&charts);
    page.end_section();
    Ok(())
}

fn metrics_section(page: &mut Page, view: &RunView, findings: &Findings) {
    page.section("metrics", &format!("Metrics on the {} split", findings.split));
    let header = vec!["metric".to_string(), "value".to_string()];
    let rows: Vec<Vec<String>> =
        findings.metrics.0.iter().map(|(name, value)| vec![name.clone(), number(*value)]).collect();
    page.raw(&table("metrics-table", &header, &rows));
    let prefix = format!("{}_", findings.split);
    let others: Metrics = Metrics(
        view.recorded.0.iter().filter(|(name, _)| !name.starts_with(&prefix)).cloned().collect(),
    );
    if !others.0.is_empty() {
        page.paragraph("Recorded for the run's other split (report.json):");
        let rows: Vec<Vec<String>> =
            others.0.iter().map(|(name, value)| vec![name.clone(), number(*value)]).collect();
        page.raw(&table("recorded-table", &header, &rows));
    }
    page.end_section();
}

/// Writes one page comparing the curves and final metrics of several runs.
pub fn compare(runs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    if runs.len() < 2 {
        bail!("--compare: name at least two run directories");
    }
    let views = runs.iter().map(|run| RunView::open(run)).collect::<Result<Vec<_>>>()?;
    let title = format!("shopnet comparison of {} runs", views.len());
    let mut page =
        Page::new(&title, &views.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "));
    page.section("training", "Training curves");
    let mut charts = String::from("<div class=\"charts\">\n");
    let first = watched(&views[0]).remove(0);
    for (id, column) in [
        ("chart-val-loss", "val_loss".to_string()),
        ("chart-train-loss", "train_loss".into()),
        ("chart-watched", first),
    ] {
        let mut chart = Chart::new(column.as_str(), "epoch", column.as_str());
        chart.whole_x = true;
        for (i, view) in views.iter().enumerate() {
            if let Some(points) = view.history.as_ref().and_then(|h: &History| h.column(&column)) {
                chart.series.push(Series::line(view.name.as_str(), points, i));
            }
        }
        charts.push_str(&figure(id, &chart, &format!("{column} of each run, by epoch."))?);
    }
    charts.push_str("</div>\n");
    page.raw(&charts);
    page.end_section();
    page.section("comparison", "Final metrics");
    let mut names: Vec<String> = Vec::new();
    for view in &views {
        for name in view.recorded.names() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    let mut header = vec!["run".to_string(), "model".into(), "epochs".into(), "best epoch".into()];
    header.extend(names.iter().cloned());
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let mut row = vec![
                view.name.clone(),
                view.info.kind.to_string(),
                view.state.as_ref().map_or("-".into(), |s| s.epochs_done.to_string()),
                view.best_epoch().map_or("-".into(), |b| b.to_string()),
            ];
            row.extend(names.iter().map(|n| view.recorded.get(n).map_or("-".into(), number)));
            row
        })
        .collect();
    page.raw(&table("comparison-table", &header, &rows));
    page.end_section();
    write_atomic(out, page.finish(&title).as_bytes())?;
    Ok(out.to_path_buf())
}
