//! A finished run or an export bundle, opened for `eval`, `score`, `export` or `inspect`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::manifest::{BUNDLE_WEIGHTS, MANIFEST_FILE, Manifest};
use super::run_dir::{BEST_WEIGHTS, CONFIG_FILE, RUN_FILE, RunInfo};
use crate::base::config::ConfigDoc;
use crate::base::files::read_json;

#[derive(Clone)]
pub struct Artifacts {
    pub dir: PathBuf,
    /// The manifest, for a bundle; `None` for a run directory.
    pub manifest: Option<Manifest>,
    pub config: ConfigDoc,
    pub info: RunInfo,
    pub weights: PathBuf,
}

impl Artifacts {
    /// Opens `dir`; a bundle is verified against its manifest.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: not a run directory or bundle (no such directory)", dir.display());
        }
        let config_path = dir.join(CONFIG_FILE);
        let is_bundle = dir.join(MANIFEST_FILE).is_file();
        if !config_path.is_file() || !(is_bundle || dir.join(RUN_FILE).is_file()) {
            bail!(
                "{}: not a run directory or bundle (expected {CONFIG_FILE} and {RUN_FILE} or {MANIFEST_FILE})",
                dir.display()
            );
        }
        let manifest = if is_bundle { Some(Manifest::verified(dir)?) } else { None };
        let info: RunInfo = match &manifest {
            Some(manifest) => manifest.model.clone(),
            None => read_json(&dir.join(RUN_FILE))?,
        };
        let config = ConfigDoc::load(&config_path, &[])?;
        let kind = config.kind()?;
        if kind != info.kind {
            let info_file = if is_bundle { MANIFEST_FILE } else { RUN_FILE };
            bail!(
                "{}: model.kind is {kind} but {info_file} says {}",
                config_path.display(),
                info.kind
            );
        }
        let weights = dir.join(if is_bundle { BUNDLE_WEIGHTS } else { BEST_WEIGHTS });
        if !weights.is_file() {
            bail!("{}: no weights yet ({} is missing)", dir.display(), weights.display());
        }
        Ok(Self { dir: dir.to_path_buf(), manifest, config, info, weights })
    }

    pub fn is_bundle(&self) -> bool {
        self.manifest.is_some()
    }

    /// The path of one of the run's own files (a vocabulary, a tokenizer).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
