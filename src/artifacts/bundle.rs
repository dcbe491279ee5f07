//! Serving bundles (`shopnet export`) and a readable summary of a run or bundle
//! (`shopnet inspect`).
//!
//! A bundle is self-contained: `model.safetensors`, the resolved `config.toml`, the run's
//! own files that scoring needs (a vocabulary, a tokenizer) and `manifest.json` with the
//! model kind, input and output schema, label names, the shopnet version, the metrics and
//! the sha256 of each file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::manifest::{BUNDLE_FORMAT, BUNDLE_WEIGHTS, MANIFEST_FILE, Manifest};
use super::opened::Artifacts;
use super::run_dir::{CONFIG_FILE, REPORT_FILE, RunState, STATE_FILE};
use crate::base::files::{read_json, sha256_hex, write_atomic, write_json};

/// Writes a bundle of `artifacts` into `out`, which must be new or empty. `schema` is the
/// family's input and output description; `run_files` the run's own files to carry.
pub fn export(
    artifacts: &Artifacts,
    schema: serde_json::Value,
    run_files: &[&str],
    out: &Path,
) -> Result<()> {
    if out.exists() && fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{}: already exists and is not empty; export into a new folder", out.display());
    }
    fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut files = BTreeMap::new();
    let mut copy = |name: &str, bytes: &[u8]| -> Result<()> {
        write_atomic(&out.join(name), bytes)?;
        files.insert(name.to_string(), sha256_hex(bytes));
        Ok(())
    };
    let weights = fs::read(&artifacts.weights)
        .with_context(|| format!("{}: cannot read", artifacts.weights.display()))?;
    copy(BUNDLE_WEIGHTS, &weights)?;
    copy(CONFIG_FILE, artifacts.config.text.as_bytes())?;
    for name in run_files {
        let path = artifacts.file(name);
        let bytes = fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        copy(name, &bytes)?;
    }
    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        model: artifacts.info.clone(),
        schema,
        metrics: best_metrics(artifacts),
        exported_by: format!("shopnet {}", env!("CARGO_PKG_VERSION")),
        exported_at: chrono::Utc::now().to_rfc3339(),
        files,
    };
    write_json(&out.join(MANIFEST_FILE), &manifest)
}

/// The metrics of the run's report (or of the bundle's manifest).
fn best_metrics(artifacts: &Artifacts) -> Option<serde_json::Value> {
    match &artifacts.manifest {
        Some(manifest) => manifest.metrics.clone(),
        None => read_json::<serde_json::Value>(&artifacts.file(REPORT_FILE))
            .ok()?
            .get("metrics")
            .cloned(),
    }
}

/// A human-readable summary: kind, size, best metrics and the full config.
pub fn inspect(artifacts: &Artifacts) -> Result<String> {
    let info = &artifacts.info;
    let mut out = String::new();
    writeln!(out, "path        {}", artifacts.dir.display())?;
    writeln!(
        out,
        "type        {}",
        if artifacts.is_bundle() { "export bundle" } else { "training run" }
    )?;
    writeln!(out, "model       {}", info.kind)?;
    writeln!(out, "parameters  {}", info.parameters)?;
    writeln!(out, "labels      {}", info.labels.join(", "))?;
    writeln!(out, "input       {}", info.input)?;
    writeln!(out, "shopnet     {}", info.shopnet_version)?;
    if !artifacts.is_bundle()
        && let Ok(state) = read_json::<RunState>(&artifacts.file(STATE_FILE))
    {
        let best = state.best_epoch.map_or("-".to_string(), |e| e.to_string());
        let status = if state.finished { "finished" } else { "resumable" };
        writeln!(out, "epochs      {} ({status}), best epoch {best}", state.epochs_done)?;
    }
    if let Some(serde_json::Value::Object(metrics)) = best_metrics(artifacts) {
        writeln!(out, "best metrics")?;
        for (name, value) in metrics {
            writeln!(out, "  {name:<18} {:.4}", value.as_f64().unwrap_or(f64::NAN))?;
        }
    }
    writeln!(out, "config")?;
    for line in artifacts.config.text.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(out)
}
