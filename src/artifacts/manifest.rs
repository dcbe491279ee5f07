//! An export bundle's `manifest.json`: what the bundle holds and the sha256 of each file,
//! so a serving system (and `shopnet` itself) can verify what it loads.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::run_dir::{CONFIG_FILE, RunInfo};
use crate::base::files::{read_json, sha256_hex};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const BUNDLE_WEIGHTS: &str = "model.safetensors";
pub const BUNDLE_FORMAT: &str = "shopnet-bundle/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub model: RunInfo,
    /// The family's input and output formats.
    pub schema: serde_json::Value,
    pub metrics: Option<serde_json::Value>,
    pub exported_by: String,
    pub exported_at: String,
    /// File name -> sha256, for every file of the bundle.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads the manifest of the bundle in `dir` and checks every file it lists against
    /// its sha256. The weights and the config must be listed: a manifest stripped of its
    /// list would otherwise vouch for nothing.
    pub fn verified(dir: &Path) -> Result<Self> {
        let manifest: Manifest = read_json(&dir.join(MANIFEST_FILE))?;
        manifest.require(dir, &[BUNDLE_WEIGHTS, CONFIG_FILE])?;
        for (name, expected) in &manifest.files {
            if name.contains('/') || name.contains('\\') || name.starts_with('.') {
                bail!(
                    "{}: files: {name:?} is not a file name of the bundle",
                    dir.join(MANIFEST_FILE).display()
                );
            }
            let file = dir.join(name);
            let bytes = fs::read(&file).with_context(|| {
                format!("{}: listed in the manifest but unreadable", file.display())
            })?;
            if sha256_hex(&bytes) != *expected {
                bail!(
                    "{}: sha256 does not match the manifest (the bundle was modified)",
                    file.display()
                );
            }
        }
        Ok(manifest)
    }

    /// Fails unless every one of `names` is listed (and so verified).
    pub fn require(&self, dir: &Path, names: &[&str]) -> Result<()> {
        match names.iter().find(|name| !self.files.contains_key(**name)) {
            Some(name) => bail!(
                "{}: files: {name} is not listed, so the bundle cannot be verified",
                dir.join(MANIFEST_FILE).display()
            ),
            None => Ok(()),
        }
    }
}
