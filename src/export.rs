//! Serving bundles (`shopnet export`) and a readable summary of a run or bundle
//! (`shopnet inspect`).
//!
//! A bundle is self-contained: `model.safetensors`, the resolved `config.toml`, and
//! `manifest.json` with the model kind, input and output schema, label names, the
//! shopnet version and the sha256 of each file, so a serving system can verify what it
//! loads.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::run_dir::{self, Artifacts};
use crate::tasks;

pub const BUNDLE_FORMAT: &str = "shopnet-bundle/1";

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::with_capacity(64), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// Writes a bundle of `artifacts` into `out`, which must be new or empty.
pub fn export(artifacts: &Artifacts, out: &Path) -> Result<()> {
    if out.exists() && fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{}: already exists and is not empty; export into a new folder", out.display());
    }
    fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let weights = fs::read(&artifacts.weights).with_context(|| format!("{}: cannot read", artifacts.weights.display()))?;
    let config = artifacts.config.text.as_bytes();
    run_dir::write_atomic(&out.join(run_dir::BUNDLE_WEIGHTS), &weights)?;
    run_dir::write_atomic(&out.join(run_dir::CONFIG_FILE), config)?;
    let mut files = serde_json::Map::new();
    files.insert(run_dir::BUNDLE_WEIGHTS.into(), sha256_hex(&weights).into());
    files.insert(run_dir::CONFIG_FILE.into(), sha256_hex(config).into());
    // Text models also need their tokenizer.
    for extra in [tasks::sentiment::TOKENIZER_FILE] {
        let path = artifacts.dir.join(extra);
        if path.is_file() {
            let bytes = fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            run_dir::write_atomic(&out.join(extra), &bytes)?;
            files.insert(extra.into(), sha256_hex(&bytes).into());
        }
    }
    let metrics = run_dir::read_json::<serde_json::Value>(&artifacts.dir.join(run_dir::REPORT_FILE))
        .ok()
        .and_then(|report| report.get("metrics").cloned());
    let manifest = serde_json::json!({
        "format": BUNDLE_FORMAT,
        "model": artifacts.info,
        "schema": tasks::family(artifacts.info.kind).schema(artifacts),
        "metrics": metrics,
        "exported_by": format!("shopnet {}", env!("CARGO_PKG_VERSION")),
        "exported_at": chrono::Utc::now().to_rfc3339(),
        "files": files,
    });
    run_dir::write_json(&out.join(run_dir::MANIFEST_FILE), &manifest)
}

/// Checks every file a bundle's manifest lists against its sha256.
pub fn verify_bundle(dir: &Path) -> Result<()> {
    let manifest: serde_json::Value = run_dir::read_json(&dir.join(run_dir::MANIFEST_FILE))?;
    let files = manifest.get("files").and_then(|f| f.as_object()).cloned().unwrap_or_default();
    for (name, expected) in files {
        let path = dir.join(&name);
        let bytes = fs::read(&path).with_context(|| format!("{}: listed in the manifest but unreadable", path.display()))?;
        if Some(sha256_hex(&bytes).as_str()) != expected.as_str() {
            bail!("{}: sha256 does not match the manifest (the bundle was modified)", path.display());
        }
    }
    Ok(())
}

/// A human-readable summary: kind, size, best metrics and the full config.
pub fn inspect(artifacts: &Artifacts) -> Result<String> {
    let info = &artifacts.info;
    let mut out = String::new();
    writeln!(out, "path        {}", artifacts.dir.display())?;
    writeln!(out, "type        {}", if artifacts.is_bundle { "export bundle" } else { "training run" })?;
    writeln!(out, "model       {}", info.kind)?;
    writeln!(out, "parameters  {}", info.parameters)?;
    writeln!(out, "labels      {}", info.labels.join(", "))?;
    writeln!(out, "input       {}", info.input)?;
    writeln!(out, "shopnet     {}", info.shopnet_version)?;
    if !artifacts.is_bundle
        && let Ok(state) = run_dir::read_json::<run_dir::RunState>(&artifacts.dir.join(run_dir::STATE_FILE))
    {
        let best = state.best_epoch.map_or("-".to_string(), |e| e.to_string());
        let status = if state.finished { "finished" } else { "resumable" };
        writeln!(out, "epochs      {} ({status}), best epoch {best}", state.epochs_done)?;
    }
    let report = if artifacts.is_bundle {
        run_dir::read_json::<serde_json::Value>(&artifacts.dir.join(run_dir::MANIFEST_FILE))?.get("metrics").cloned()
    } else {
        run_dir::read_json::<serde_json::Value>(&artifacts.dir.join(run_dir::REPORT_FILE)).ok().and_then(|r| r.get("metrics").cloned())
    };
    if let Some(serde_json::Value::Object(metrics)) = report {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
