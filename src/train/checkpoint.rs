//! Resumable checkpoints: the last epoch's weights and optimiser state, then `state.json`
//! naming them, so that a run killed at any moment resumes from a complete checkpoint.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

use crate::artifacts::run_dir::{LAST_WEIGHTS, RunState, STATE_FILE};
use crate::artifacts::weights::save_weights;
use crate::base::config::ModelKind;
use crate::base::files::{read_json, write_atomic, write_json};
use crate::base::unwind::quietly;

/// Writes the last epoch's weights and resume records, then `state.json` naming them:
/// until that rename the previous checkpoint stays the valid one. Older resume records
/// are removed afterwards.
pub fn save<M: Module + Clone>(
    dir: &Path,
    model: &M,
    optimizer: &ModuleOptimizer,
    state: &RunState,
    kind: ModelKind,
) -> Result<()> {
    let (model_file, optim_file) = state.resume_files();
    let model_bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|err| anyhow!("cannot serialise the model: {err:?}"))?;
    write_atomic(&dir.join(&model_file), &model_bytes)?;
    let optim_bytes =
        optimizer.into_bytes().map_err(|err| anyhow!("cannot serialise the optimiser: {err:?}"))?;
    write_atomic(&dir.join(&optim_file), &optim_bytes)?;
    save_weights(model, kind, &dir.join(LAST_WEIGHTS))?;
    write_json(&dir.join(STATE_FILE), state)?;
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("resume-") && name != model_file && name != optim_file {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Removes the temporary files that writers killed mid-write left in `dir` (shopnet's
/// `.NAME.PID.tmp`, burn-store's `NAME.PID-N.tmp`); a run directory has one writer, so
/// none of them is still being written.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The state, model and optimiser of the checkpoint `state.json` names. `fresh` is an
/// initialised model the record is loaded into, `optimizer` a new optimiser to restore.
pub fn restore<M: Module>(
    dir: &Path,
    fresh: M,
    optimizer: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer, RunState)> {
    let state: RunState = read_json(&dir.join(STATE_FILE))?;
    let (model_file, optim_file) = state.resume_files();
    let read = |name: &str| -> Result<Bytes> {
        let path = dir.join(name);
        let bytes = fs::read(&path)
            .with_context(|| format!("{}: cannot read the resume checkpoint", path.display()))?;
        Ok(Bytes::from_bytes_vec(bytes))
    };
    let record = ModuleRecord::from_bytes(read(&model_file)?)
        .map_err(|err| anyhow!("{}: {err:?}", dir.join(&model_file).display()))?;
    // burn-core panics on a record of another net; that is a user's wrong directory.
    let model = quietly(move || fresh.load_record(record)).map_err(|reason| {
        anyhow!(
            "{}: a checkpoint of another net than this run's config describes ({reason})",
            dir.join(&model_file).display()
        )
    })?;
    let optimizer = optimizer
        .from_bytes(read(&optim_file)?)
        .map_err(|err| anyhow!("{}: {err:?}", dir.join(&optim_file).display()))?;
    Ok((model, optimizer, state))
}
