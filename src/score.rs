//! Batch scoring outputs: one CSV row per example, written as it is produced.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct ClassScoreWriter {
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
    labels: Vec<String>,
    rows: usize,
}

impl ClassScoreWriter {
    /// The header: the id column, `predicted`, then `prob_<label>` per class.
    pub fn columns(id_column: &str, labels: &[String]) -> Vec<String> {
        let mut columns = vec![id_column.to_string(), "predicted".to_string()];
        columns.extend(labels.iter().map(|l| format!("prob_{l}")));
        columns
    }

    pub fn create(path: &Path, id_column: &str, labels: &[String]) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut writer = csv::Writer::from_writer(BufWriter::new(file));
        writer.write_record(Self::columns(id_column, labels))?;
        Ok(Self { path: path.to_path_buf(), writer, labels: labels.to_vec(), rows: 0 })
    }

    pub fn write(&mut self, id: &str, probabilities: &[f32]) -> Result<()> {
        let best = crate::metrics::argmax_rows(probabilities, probabilities.len())[0] as usize;
        let mut record = vec![id.to_string(), self.labels[best].clone()];
        record.extend(probabilities.iter().map(|p| format!("{p:.6}")));
        self.writer.write_record(&record).with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.rows += 1;
        Ok(())
    }

    /// Flushes the file and returns the number of rows written.
    pub fn finish(mut self) -> Result<usize> {
        self.writer.flush().with_context(|| format!("{}: cannot write", self.path.display()))?;
        Ok(self.rows)
    }
}

/// Writes `user_id,probability` rows (the scoring output).
pub struct ProbabilityWriter {
    path: PathBuf,
    out: BufWriter<File>,
    rows: usize,
}

impl ProbabilityWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "user_id,probability").with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(Self { path: path.to_path_buf(), out, rows: 0 })
    }

    pub fn write(&mut self, user: u64, probability: f32) -> Result<()> {
        writeln!(self.out, "{user},{probability:.6}").with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.rows += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<usize> {
        self.out.flush().with_context(|| format!("{}: cannot write", self.path.display()))?;
        Ok(self.rows)
    }
}
