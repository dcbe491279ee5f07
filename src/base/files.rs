//! Crash-safe file writes, JSON files and sha256 digests.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

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

/// An output file written under a temporary name and renamed into place by
/// [`commit`](Self::commit): a reader never sees half of it, and a failed or killed job
/// leaves the previous file as it was. Dropped without a commit, the temporary file goes.
pub struct PendingFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<fs::File>>,
}

impl PendingFile {
    pub fn create(path: &Path) -> Result<Self> {
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("output");
        let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
        let file =
            fs::File::create(&tmp).with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(Self { path: path.to_path_buf(), tmp, writer: Some(BufWriter::new(file)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().context("output already committed")?;
        let written = writer
            .into_inner()
            .map_err(|err| std::io::Error::other(err.error().to_string()))
            .and_then(|file| file.sync_all())
            .and_then(|()| fs::rename(&self.tmp, &self.path));
        if written.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        written.with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

impl Write for PendingFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &mut self.writer {
            Some(writer) => writer.write(bytes),
            None => Err(std::io::Error::other("output already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.as_mut().map_or(Ok(()), BufWriter::flush)
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Refuses an `output` that would overwrite what a job reads: an existing file that is one
/// of `inputs`, or lies inside an input folder (a graph's nodes.csv, a run's run.json). The
/// paths are compared resolved, so a link or `./` spelling does not slip through.
pub fn check_output(flag: &str, output: &Path, inputs: &[&Path]) -> Result<()> {
    if output.is_dir() {
        bail!("{flag} {}: is a folder; name a file to write", output.display());
    }
    let Ok(target) = output.canonicalize() else { return Ok(()) };
    for input in inputs {
        let Ok(source) = input.canonicalize() else { continue };
        if target == source || (source.is_dir() && target.starts_with(&source)) {
            bail!(
                "{flag} {}: would overwrite the input {}; write the output to another path",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).map_err(|err| anyhow!("{}:{}: {err}", path.display(), err.line()))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::with_capacity(64), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The sha256 of a file, read in 1 MiB pieces so a large weights file is never held whole.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n =
            file.read(&mut buffer).with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn pending_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.csv");
        fs::write(&path, "old").unwrap();
        let mut pending = PendingFile::create(&path).unwrap();
        pending.write_all(b"new").unwrap();
        drop(pending);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let mut pending = PendingFile::create(&path).unwrap();
        pending.write_all(b"new").unwrap();
        pending.commit().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn outputs_that_are_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let graph = dir.path().join("graph");
        fs::create_dir_all(&graph).unwrap();
        fs::write(graph.join("nodes.csv"), "x").unwrap();
        let reviews = dir.path().join("r.csv");
        fs::write(&reviews, "x").unwrap();
        let aliased = dir.path().join("graph/../r.csv");
        let err = check_output("--output", &aliased, &[&reviews]).unwrap_err().to_string();
        assert!(err.starts_with("--output ") && err.contains("would overwrite the input"), "{err}");
        assert!(check_output("--output", &graph.join("nodes.csv"), &[&graph]).is_err());
        assert!(check_output("--output", &graph.join("new.csv"), &[&graph]).is_ok());
        assert!(check_output("--output", &dir.path().join("out.csv"), &[&reviews]).is_ok());
    }

    #[test]
    fn sha256_of_known_input() {
        let known = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), known);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), known);
    }
}
