//! A run as the report reads it: its files, without loading the net. A run killed before
//! its first epoch has no weights and no metrics yet and is still readable.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use crate::artifacts::manifest::MANIFEST_FILE;
use crate::artifacts::opened::Artifacts;
use crate::artifacts::run_dir::{
    BEST_WEIGHTS, CONFIG_FILE, METRICS_CSV, REPORT_FILE, RUN_FILE, RunInfo, RunState, STATE_FILE,
};
use crate::base::config::{ConfigDoc, EarlyStoppingConfig};
use crate::base::files::read_json;
use crate::base::metrics::Metrics;

pub struct RunView {
    pub dir: PathBuf,
    pub name: String,
    pub is_bundle: bool,
    pub info: RunInfo,
    pub config: ConfigDoc,
    pub early_stopping: EarlyStoppingConfig,
    /// `None` for a bundle.
    pub state: Option<RunState>,
    /// `None` when no epoch has finished (or for a bundle).
    pub history: Option<History>,
    /// The metrics `train` and `eval` recorded in report.json.
    pub recorded: Metrics,
    pub has_weights: bool,
}

impl RunView {
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: not a run directory or bundle (no such directory)", dir.display());
        }
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        if dir.join(MANIFEST_FILE).is_file() {
            let artifacts = Artifacts::open(dir)?;
            let early_stopping = early_stopping(&artifacts.config)?;
            return Ok(Self {
                dir: dir.to_path_buf(),
                name,
                is_bundle: true,
                info: artifacts.info,
                config: artifacts.config,
                early_stopping,
                state: None,
                history: None,
                recorded: Metrics::default(),
                has_weights: true,
            });
        }
        if !dir.join(RUN_FILE).is_file() || !dir.join(CONFIG_FILE).is_file() {
            bail!(
                "{}: not a run directory or bundle (expected {CONFIG_FILE} and {RUN_FILE} or {MANIFEST_FILE})",
                dir.display()
            );
        }
        let info: RunInfo = read_json(&dir.join(RUN_FILE))?;
        let config = ConfigDoc::load(&dir.join(CONFIG_FILE), &[])?;
        let state_path = dir.join(STATE_FILE);
        let state = if state_path.is_file() { Some(read_json(&state_path)?) } else { None };
        let metrics_path = dir.join(METRICS_CSV);
        let history = if metrics_path.is_file() { History::read(&metrics_path)? } else { None };
        Ok(Self {
            early_stopping: early_stopping(&config)?,
            dir: dir.to_path_buf(),
            name,
            is_bundle: false,
            info,
            config,
            state,
            history,
            recorded: recorded_metrics(&dir.join(REPORT_FILE))?,
            has_weights: dir.join(BEST_WEIGHTS).is_file(),
        })
    }

    pub fn best_epoch(&self) -> Option<usize> {
        self.state.as_ref().and_then(|s| s.best_epoch)
    }
}

fn early_stopping(config: &ConfigDoc) -> Result<EarlyStoppingConfig> {
    let typed = config.typed::<toml::Value, toml::Value>()?;
    Ok(typed.train.early_stopping)
}

fn recorded_metrics(path: &Path) -> Result<Metrics> {
    if !path.is_file() {
        return Ok(Metrics::default());
    }
    let report: serde_json::Value = read_json(path)?;
    let metrics = report.get("metrics").and_then(|m| m.as_object());
    Ok(Metrics(
        metrics
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| Some((name.clone(), value.as_f64()?)))
            .collect(),
    ))
}

/// `metrics.csv`: one row per epoch, every column a number.
pub struct History {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

impl History {
    /// `None` for a file with a header but no epoch yet.
    fn read(path: &Path) -> Result<Option<Self>> {
        let name = path.display();
        let file = File::open(path).map_err(|err| anyhow!("{name}: cannot open: {err}"))?;
        let mut reader = csv::Reader::from_reader(file);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|err| anyhow!("{name}: {err}"))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.map_err(|err| anyhow!("{name}:{line}: {err}"))?;
            let row = record
                .iter()
                .map(|cell| {
                    cell.trim()
                        .parse::<f64>()
                        .map_err(|_| anyhow!("{name}:{line}: {cell:?} is not a number"))
                })
                .collect::<Result<Vec<f64>>>()?;
            rows.push(row);
        }
        Ok((!rows.is_empty()).then_some(Self { columns, rows }))
    }

    /// `(epoch, value)` of one column.
    pub fn column(&self, name: &str) -> Option<Vec<(f64, f64)>> {
        let at = self.columns.iter().position(|c| c == name)?;
        let epoch = self.columns.iter().position(|c| c == "epoch")?;
        Some(self.rows.iter().map(|row| (row[epoch], row[at])).collect())
    }

    /// Wall time of the recorded epochs, in seconds.
    pub fn seconds(&self) -> f64 {
        self.column("seconds").map_or(0.0, |c| c.iter().map(|p| p.1).sum())
    }
}
