//! Weights files: safetensors written and read through burn-store, tagged with the model
//! kind so that a checkpoint of another net is refused by name, and the one reader of a
//! safetensors header that the rest of shopnet uses.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::base::config::ModelKind;

/// The safetensors metadata key that records which net a weights file belongs to.
const KIND_METADATA: &str = "shopnet.kind";

/// A header larger than this is not one shopnet (or any sane writer) produced.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// A safetensors header: its length in bytes and its JSON.
pub struct SafetensorsHeader {
    pub len: u64,
    pub json: serde_json::Value,
}

impl SafetensorsHeader {
    /// Reads the 8-byte length and the JSON header from the start of `source`. The error
    /// says why the bytes are not a safetensors file, for the caller to prefix with a name.
    pub fn read(source: &mut impl Read) -> Result<Self> {
        let mut len = [0u8; 8];
        source.read_exact(&mut len).map_err(|_| anyhow!("not a safetensors file (too short)"))?;
        let len = u64::from_le_bytes(len);
        if len > MAX_HEADER_BYTES {
            bail!("not a safetensors file (header of {len} bytes)");
        }
        let mut header = vec![0u8; len as usize];
        source
            .read_exact(&mut header)
            .map_err(|_| anyhow!("not a safetensors file (truncated header)"))?;
        let json = serde_json::from_slice(&header)
            .map_err(|_| anyhow!("not a safetensors file (bad header)"))?;
        Ok(Self { len, json })
    }

    /// The `__metadata__` string map (empty when absent).
    pub fn metadata(&self) -> HashMap<String, String> {
        self.json
            .get("__metadata__")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default()
    }

    /// Bytes before the tensor data.
    pub fn data_start(&self) -> u64 {
        8 + self.len
    }
}

/// Saves weights as safetensors, tagged with the model kind.
pub fn save_weights<M: Module>(model: &M, kind: ModelKind, path: &Path) -> Result<()> {
    let mut store =
        SafetensorsStore::from_file(path).metadata(KIND_METADATA, kind.to_string()).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|err| anyhow!("{}: cannot save weights: {err}", path.display()))
}

/// Loads weights saved by [`save_weights`] into `model`, refusing a file of another net
/// or one whose tensors do not match the model's (names the missing ones).
pub fn load_weights<M: Module>(mut model: M, kind: ModelKind, path: &Path) -> Result<M> {
    let mut file =
        fs::File::open(path).with_context(|| format!("{}: cannot open weights", path.display()))?;
    let header = SafetensorsHeader::read(&mut file).with_context(|| path.display().to_string())?;
    if let Some(found) = header.metadata().get(KIND_METADATA)
        && *found != kind.to_string()
    {
        bail!("{}: checkpoint of a {found} model, but this run is a {kind} model", path.display())
    }
    let mut store = SafetensorsStore::from_file(path).allow_partial(true).validate(true);
    let result = model
        .load_from(&mut store)
        .map_err(|err| anyhow!("{}: cannot load weights: {err}", path.display()))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).take(5).collect();
        let problem = if missing.is_empty() {
            format!("{}", result.errors[0])
        } else {
            format!(
                "missing tensors {}{}",
                missing.join(", "),
                if result.missing.len() > 5 { ", ..." } else { "" }
            )
        };
        bail!("{}: does not fit a {kind} model with this config: {problem}", path.display());
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes
    }

    #[test]
    fn reads_header_and_metadata() {
        let bytes = file(
            r#"{"__metadata__":{"shopnet.kind":"gcn"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        );
        let header = SafetensorsHeader::read(&mut bytes.as_slice()).unwrap();
        assert_eq!(header.metadata()["shopnet.kind"], "gcn");
        assert_eq!(header.data_start(), bytes.len() as u64);
    }

    #[test]
    fn refuses_what_is_not_safetensors() {
        let too_long = u64::MAX.to_le_bytes();
        for (bytes, why) in [
            (&b"abc"[..], "too short"),
            (&too_long[..], "header of"),
            (&file("{no json")[..], "bad header"),
        ] {
            let err = SafetensorsHeader::read(&mut &bytes[..]).err().unwrap().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
