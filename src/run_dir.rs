//! The on-disk layout of a run and of an exported bundle, and crash-safe writes.
//!
//! A run directory (`checkpoints/<name>-<timestamp>/`):
//! - `config.toml`: the fully resolved config the run was started with
//! - `run.json`: model kind, label names and input sizes: what rebuilds the net
//! - `best.safetensors`, `last.safetensors`: weights of the best and the last epoch
//! - `resume-<epoch>.model.bpk`, `resume-<epoch>.optim.bpk`: the last epoch's burn records
//!   (parameter ids included, which the optimiser state is keyed by), for `--resume`
//! - `state.json`: progress; written last, so it always names a complete checkpoint
//! - `metrics.csv`, `metrics.jsonl`: one row per epoch; `report.json`: final metrics
//!
//! An export bundle holds `model.safetensors`, `config.toml` and `manifest.json`.
//! Every file is written to a temporary sibling and renamed into place.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigDoc, ModelKind};

pub const CONFIG_FILE: &str = "config.toml";
pub const RUN_FILE: &str = "run.json";
pub const STATE_FILE: &str = "state.json";
pub const BEST_WEIGHTS: &str = "best.safetensors";
pub const LAST_WEIGHTS: &str = "last.safetensors";
pub const REPORT_FILE: &str = "report.json";
pub const METRICS_CSV: &str = "metrics.csv";
pub const METRICS_JSONL: &str = "metrics.jsonl";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const BUNDLE_WEIGHTS: &str = "model.safetensors";

/// The safetensors metadata key that records which net a weights file belongs to.
const KIND_METADATA: &str = "shopnet.kind";

/// What a trained model needs besides its weights: written at the start of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub kind: ModelKind,
    pub shopnet_version: String,
    /// Class names, in output order.
    pub labels: Vec<String>,
    /// Family-specific input sizes (for a graph: `num_features`).
    pub input: serde_json::Value,
    pub parameters: usize,
}

/// Training progress, rewritten after every epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub epochs_done: usize,
    pub steps_done: usize,
    pub best_epoch: Option<usize>,
    pub best_value: Option<f64>,
    pub epochs_without_improvement: usize,
    pub finished: bool,
}

impl RunState {
    pub fn resume_files(&self) -> (String, String) {
        (format!("resume-{:06}.model.bpk", self.epochs_done), format!("resume-{:06}.optim.bpk", self.epochs_done))
    }
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so a reader never
/// sees a half-written file and a crash leaves the previous version intact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", path.display()))
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).map_err(|err| anyhow!("{}:{}: {err}", path.display(), err.line()))
}

/// Saves weights as safetensors, tagged with the model kind.
pub fn save_weights<M: Module>(model: &M, kind: ModelKind, path: &Path) -> Result<()> {
    let mut store = SafetensorsStore::from_file(path).metadata(KIND_METADATA, kind.name()).overwrite(true);
    model.save_into(&mut store).map_err(|err| anyhow!("{}: cannot save weights: {err}", path.display()))
}

/// Loads weights saved by [`save_weights`] into `model`, refusing a file of another net
/// or one whose tensors do not match the model's (names the missing ones).
pub fn load_weights<M: Module>(mut model: M, kind: ModelKind, path: &Path) -> Result<M> {
    let stored_kind = safetensors_metadata(path)?.and_then(|m| m.get(KIND_METADATA).cloned());
    match stored_kind.as_deref() {
        Some(found) if found != kind.name() => {
            bail!("{}: checkpoint of a {found} model, but this run is a {kind} model", path.display())
        }
        _ => {}
    }
    let mut store = SafetensorsStore::from_file(path).allow_partial(true).validate(true);
    let result = model.load_from(&mut store).map_err(|err| anyhow!("{}: cannot load weights: {err}", path.display()))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).take(5).collect();
        let problem = if missing.is_empty() {
            format!("{}", result.errors[0])
        } else {
            format!("missing tensors {}{}", missing.join(", "), if result.missing.len() > 5 { ", ..." } else { "" })
        };
        bail!("{}: does not fit a {kind} model with this config: {problem}", path.display());
    }
    Ok(model)
}

/// Reads the `__metadata__` of a safetensors header without loading any tensor.
fn safetensors_metadata(path: &Path) -> Result<Option<std::collections::HashMap<String, String>>> {
    use std::io::Read;
    let mut file = fs::File::open(path).with_context(|| format!("{}: cannot open weights", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| anyhow!("{}: not a safetensors file (too short)", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!("{}: not a safetensors file (header of {len} bytes)", path.display());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|_| anyhow!("{}: not a safetensors file (truncated header)", path.display()))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| anyhow!("{}: not a safetensors file (bad header)", path.display()))?;
    Ok(header.get("__metadata__").and_then(|m| serde_json::from_value(m.clone()).ok()))
}

/// A finished run or an export bundle, opened for `eval`, `score`, `export` or `inspect`.
pub struct Artifacts {
    pub dir: PathBuf,
    pub is_bundle: bool,
    pub config: ConfigDoc,
    pub info: RunInfo,
    pub weights: PathBuf,
}

impl Artifacts {
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: not a run directory or bundle (no such directory)", dir.display());
        }
        let config_path = dir.join(CONFIG_FILE);
        let manifest = dir.join(MANIFEST_FILE);
        let is_bundle = manifest.is_file();
        let info_path = if is_bundle { manifest } else { dir.join(RUN_FILE) };
        if !config_path.is_file() || !info_path.is_file() {
            bail!("{}: not a run directory or bundle (expected {CONFIG_FILE} and {RUN_FILE} or {MANIFEST_FILE})", dir.display());
        }
        if is_bundle {
            crate::export::verify_bundle(dir)?;
        }
        let info: RunInfo = if is_bundle {
            let manifest: serde_json::Value = read_json(&info_path)?;
            serde_json::from_value(manifest.get("model").cloned().unwrap_or_default())
                .map_err(|err| anyhow!("{}: model: {err}", info_path.display()))?
        } else {
            read_json(&info_path)?
        };
        let config = ConfigDoc::load(&config_path, &[])?;
        if config.kind != info.kind {
            bail!("{}: model.kind is {} but {} says {}", config_path.display(), config.kind, info_path.display(), info.kind);
        }
        let weights = dir.join(if is_bundle { BUNDLE_WEIGHTS } else { BEST_WEIGHTS });
        if !weights.is_file() {
            bail!("{}: no weights yet ({} is missing)", dir.display(), weights.display());
        }
        Ok(Self { dir: dir.to_path_buf(), is_bundle, config, info, weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("shopnet-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
