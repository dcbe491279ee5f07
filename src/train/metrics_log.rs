//! `metrics.csv` and `metrics.jsonl`, one row per epoch, and the epoch line or progress
//! bar a user watches.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::artifacts::run_dir::{METRICS_CSV, METRICS_JSONL};
use crate::base::files::write_atomic;
use crate::base::metrics::Metrics;
use crate::base::progress::Progress;

pub struct MetricsLog {
    csv: fs::File,
    jsonl: fs::File,
    has_header: bool,
}

impl MetricsLog {
    /// Opens the logs for appending. On resume, rows past the last checkpoint (written by
    /// an epoch whose checkpoint never landed) are dropped.
    pub fn open(dir: &Path, epochs_done: usize) -> Result<Self> {
        let csv_path = dir.join(METRICS_CSV);
        let jsonl_path = dir.join(METRICS_JSONL);
        let csv_epoch = |line: &str| line.split(',').next()?.parse::<usize>().ok();
        let json_epoch = |line: &str| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()?
                .get("epoch")?
                .as_u64()
                .map(|e| e as usize)
        };
        let csv_text = kept_lines(&csv_path, |l| {
            l.starts_with("epoch,") || csv_epoch(l).is_some_and(|e| e <= epochs_done)
        });
        let jsonl_text =
            kept_lines(&jsonl_path, |l| json_epoch(l).is_some_and(|e| e <= epochs_done));
        write_atomic(&csv_path, csv_text.as_bytes())?;
        write_atomic(&jsonl_path, jsonl_text.as_bytes())?;
        let append = |path: &Path| {
            fs::OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(|| format!("{}: cannot open", path.display()))
        };
        Ok(Self {
            csv: append(&csv_path)?,
            jsonl: append(&jsonl_path)?,
            has_header: !csv_text.is_empty(),
        })
    }

    pub fn append(&mut self, row: &Metrics) -> Result<()> {
        if !self.has_header {
            writeln!(self.csv, "{}", row.names().collect::<Vec<_>>().join(","))?;
            self.has_header = true;
        }
        let values: Vec<String> = row
            .0
            .iter()
            .map(|(n, v)| if n == "epoch" { format!("{v}") } else { format!("{v:.6}") })
            .collect();
        writeln!(self.csv, "{}", values.join(","))?;
        let mut json = row.to_json();
        json.insert("epoch".into(), serde_json::json!(row.get("epoch").unwrap_or_default() as u64));
        writeln!(self.jsonl, "{}", serde_json::Value::Object(json))?;
        Ok(())
    }
}

fn kept_lines(path: &Path, keep: impl Fn(&str) -> bool) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines().filter(|line| keep(line)).map(|line| format!("{line}\n")).collect()
}

/// Shows an epoch: on the bar's message on a terminal, as one line otherwise.
pub fn show_epoch(progress: &Progress, row: &Metrics, total_epochs: usize, improved: bool) {
    let summary: Vec<String> = row
        .0
        .iter()
        .filter(|(n, _)| n != "epoch" && !n.ends_with("seconds"))
        .map(|(n, v)| if n == "lr" { format!("{n} {v:.2e}") } else { format!("{n} {v:.4}") })
        .collect();
    let summary = summary.join("  ");
    let mark = if improved { " *" } else { "" };
    if progress.is_drawn() {
        progress.advance(1, Some(format!("{summary}{mark}")));
    } else {
        let epoch = row.get("epoch").unwrap_or_default() as usize;
        let seconds = row.get("seconds").unwrap_or_default();
        eprintln!("epoch {epoch:>4}/{total_epochs}  {summary}  {seconds:.2}s{mark}");
    }
}
