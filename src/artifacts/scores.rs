//! Batch outputs: CSV rows written as they are produced, into a temporary file that is
//! renamed into place only when the job completes.

use std::path::Path;

use anyhow::{Context, Result};

use crate::base::files::PendingFile;
use crate::base::metrics;

/// A CSV output with a header; counts its rows.
pub struct CsvOutput {
    writer: csv::Writer<PendingFile>,
    rows: usize,
}

impl CsvOutput {
    pub fn create<S: AsRef<str>>(path: &Path, header: &[S]) -> Result<Self> {
        let mut writer = csv::Writer::from_writer(PendingFile::create(path)?);
        writer
            .write_record(header.iter().map(AsRef::as_ref))
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(Self { writer, rows: 0 })
    }

    pub fn row<S: AsRef<[u8]>>(&mut self, record: impl IntoIterator<Item = S>) -> Result<()> {
        let path = self.writer.get_ref().path().display().to_string();
        self.writer.write_record(record).with_context(|| format!("{path}: cannot write"))?;
        self.rows += 1;
        Ok(())
    }

    /// Completes the file and returns the number of rows written.
    pub fn finish(self) -> Result<usize> {
        let rows = self.rows;
        let pending = self
            .writer
            .into_inner()
            .map_err(|err| anyhow::anyhow!("cannot write: {}", err.error()))?;
        pending.commit()?;
        Ok(rows)
    }
}

/// `id,predicted,prob_<label>...`: a classifier's output per example.
pub struct ClassScoreWriter {
    out: CsvOutput,
    labels: Vec<String>,
}

impl ClassScoreWriter {
    /// The header: the id column, `predicted`, then `prob_<label>` per class.
    pub fn columns(id_column: &str, labels: &[String]) -> Vec<String> {
        let mut columns = vec![id_column.to_string(), "predicted".to_string()];
        columns.extend(labels.iter().map(|l| format!("prob_{l}")));
        columns
    }

    pub fn create(path: &Path, id_column: &str, labels: &[String]) -> Result<Self> {
        Ok(Self {
            out: CsvOutput::create(path, &Self::columns(id_column, labels))?,
            labels: labels.to_vec(),
        })
    }

    pub fn write(&mut self, id: &str, probabilities: &[f32]) -> Result<()> {
        let best = metrics::argmax_rows(probabilities, probabilities.len())[0] as usize;
        let mut record = vec![id.to_string(), self.labels[best].clone()];
        record.extend(probabilities.iter().map(|p| format!("{p:.6}")));
        self.out.row(&record)
    }

    pub fn finish(self) -> Result<usize> {
        self.out.finish()
    }
}

/// `user_id,probability`: the purchase-intent output.
pub struct ProbabilityWriter(CsvOutput);

impl ProbabilityWriter {
    pub const COLUMNS: [&str; 2] = ["user_id", "probability"];

    pub fn create(path: &Path) -> Result<Self> {
        Ok(Self(CsvOutput::create(path, &Self::COLUMNS)?))
    }

    pub fn write(&mut self, user: u64, probability: f32) -> Result<()> {
        self.0.row([user.to_string(), format!("{probability:.6}")])
    }

    pub fn finish(self) -> Result<usize> {
        self.0.finish()
    }
}

/// `user_id,rank,item_id,score`: a recommender's top K per user.
pub struct RecommendationWriter(CsvOutput);

impl RecommendationWriter {
    pub const COLUMNS: [&str; 4] = ["user_id", "rank", "item_id", "score"];

    pub fn create(path: &Path) -> Result<Self> {
        Ok(Self(CsvOutput::create(path, &Self::COLUMNS)?))
    }

    pub fn write(&mut self, user: u64, rank: usize, item: u64, score: f32) -> Result<()> {
        self.0.row([user.to_string(), rank.to_string(), item.to_string(), format!("{score:.6}")])
    }

    pub fn finish(self) -> Result<usize> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_scores_name_the_most_probable_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.csv");
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let mut writer = ClassScoreWriter::create(&path, "id", &labels).unwrap();
        writer.write("r1", &[0.25, 0.75]).unwrap();
        writer.write("r2", &[0.9, 0.1]).unwrap();
        assert!(!path.exists(), "written only when complete");
        assert_eq!(writer.finish().unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "id,predicted,prob_neg,prob_pos\nr1,pos,0.250000,0.750000\nr2,neg,0.900000,0.100000\n"
        );
    }
}
