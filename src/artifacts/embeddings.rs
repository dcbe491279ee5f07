//! Embedding indexes and exact cosine search.
//!
//! An index is two files: `NAME.safetensors` with one `F32 [N, D]` tensor `embeddings`
//! (rows L2-normalised) and metadata naming the run and the weights (sha256) that made
//! it, and `NAME.ids.csv` (`row,id,label`). The safetensors file is written by hand,
//! header first and then rows as they are computed, so `shopnet embed` never holds more
//! than a batch. Search multiplies a batch of queries with the whole index on the device
//! and keeps each query's top K on the host.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::scores::CsvOutput;
use super::weights::SafetensorsHeader;
use crate::base::metrics;
use crate::base::tensor::to_host;

const TENSOR: &str = "embeddings";
pub const META_KIND: &str = "shopnet.kind";
pub const META_RUN: &str = "shopnet.run";
pub const META_WEIGHTS: &str = "shopnet.weights_sha256";
pub const META_IDS: &str = "shopnet.ids";

/// Queries multiplied with the index per device matmul: `QUERY_BATCH x N` scores at once.
const QUERY_BATCH: usize = 256;

/// Rows divided by their L2 norm (zero rows stay zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// The ids file beside an index: `catalog.safetensors` -> `catalog.ids.csv`.
pub fn ids_path(index: &Path) -> PathBuf {
    let stem = index.file_stem().and_then(|s| s.to_str()).unwrap_or("index");
    index.with_file_name(format!("{stem}.ids.csv"))
}

/// Streams `rows x dim` embeddings into an index.
pub struct IndexWriter {
    path: PathBuf,
    tmp: PathBuf,
    data: BufWriter<File>,
    ids: csv::Writer<BufWriter<File>>,
    ids_tmp: PathBuf,
    rows: usize,
    dim: usize,
    written: usize,
    /// Removes both temporary files unless the index was finished.
    unfinished: Unfinished,
}

/// Temporary files to remove when a writer is dropped before it finished (an image that
/// did not decode, a full disk), so a failed `embed` leaves nothing behind.
struct Unfinished(Vec<PathBuf>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl IndexWriter {
    pub fn create(
        path: &Path,
        rows: usize,
        dim: usize,
        metadata: &[(&str, String)],
    ) -> Result<Self> {
        let ids_final = ids_path(path);
        let mut meta: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| (k.to_string(), v.clone().into())).collect();
        meta.insert(
            META_IDS.into(),
            ids_final.file_name().and_then(|n| n.to_str()).unwrap_or_default().into(),
        );
        let header = serde_json::json!({
            TENSOR: { "dtype": "F32", "shape": [rows, dim], "data_offsets": [0, rows * dim * 4] },
            "__metadata__": meta,
        });
        let mut header = serde_json::to_vec(&header)?;
        // safetensors pads the header with spaces to a multiple of 8 bytes.
        header.resize(header.len().div_ceil(8) * 8, b' ');
        let tmp = path.with_extension("safetensors.tmp");
        // Read access too: `finish` may rewrite the header when images were skipped.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        let mut data = BufWriter::new(file);
        data.write_all(&(header.len() as u64).to_le_bytes())?;
        data.write_all(&header)?;
        let ids_tmp = ids_final.with_extension("csv.tmp");
        let ids_file = File::create(&ids_tmp)
            .with_context(|| format!("{}: cannot create", ids_final.display()))?;
        let mut ids = csv::Writer::from_writer(BufWriter::new(ids_file));
        ids.write_record(["row", "id", "label"])?;
        let unfinished = Unfinished(vec![tmp.clone(), ids_tmp.clone()]);
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            data,
            ids,
            ids_tmp,
            rows,
            dim,
            written: 0,
            unfinished,
        })
    }

    /// Appends rows (`values.len() == ids.len() * dim`).
    pub fn append(&mut self, ids: &[(&str, Option<&str>)], values: &[f32]) -> Result<()> {
        assert_eq!(values.len(), ids.len() * self.dim);
        for value in values {
            self.data.write_all(&value.to_le_bytes())?;
        }
        for (id, label) in ids {
            self.ids.write_record([self.written.to_string().as_str(), *id, label.unwrap_or("")])?;
            self.written += 1;
        }
        Ok(())
    }

    /// Fixes the row count if images were skipped, then renames both files into place.
    pub fn finish(mut self) -> Result<usize> {
        self.data.flush()?;
        self.ids.flush()?;
        let mut file = self
            .data
            .into_inner()
            .map_err(|err| anyhow!("{}: cannot write: {err}", self.path.display()))?;
        if self.written != self.rows {
            rewrite_row_count(&mut file, self.written, self.dim)?;
        }
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        let ids_final = ids_path(&self.path);
        std::fs::rename(&self.ids_tmp, &ids_final)
            .with_context(|| format!("{}: cannot write", ids_final.display()))?;
        self.unfinished.0.clear();
        Ok(self.written)
    }
}

/// Rewrites the header for `rows` rows in place; the data that follows is truncated to them.
fn rewrite_row_count(file: &mut File, rows: usize, dim: usize) -> Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let header = SafetensorsHeader::read(file)?;
    let header_len = header.len as usize;
    let mut json = header.json;
    json[TENSOR]["shape"] = serde_json::json!([rows, dim]);
    json[TENSOR]["data_offsets"] = serde_json::json!([0, rows * dim * 4]);
    let mut new_header = serde_json::to_vec(&json)?;
    if new_header.len() > header_len {
        bail!("internal: the index header grew when fixing its row count");
    }
    new_header.resize(header_len, b' ');
    file.seek(SeekFrom::Start(8))?;
    file.write_all(&new_header)?;
    file.set_len((8 + header_len + rows * dim * 4) as u64)?;
    Ok(())
}

/// An index loaded for search.
pub struct EmbeddingIndex {
    pub path: PathBuf,
    pub metadata: HashMap<String, String>,
    pub rows: usize,
    pub dim: usize,
    pub values: Vec<f32>,
    pub ids: Vec<String>,
    pub labels: Vec<String>,
}

impl EmbeddingIndex {
    pub fn load(path: &Path) -> Result<Self> {
        let name = path.display();
        let bytes = std::fs::read(path).with_context(|| format!("{name}: cannot read index"))?;
        let bad = |why: &str| {
            anyhow!("{name}: not a shopnet embedding index ({why}); make one with shopnet embed")
        };
        let header =
            SafetensorsHeader::read(&mut bytes.as_slice()).map_err(|err| bad(&err.to_string()))?;
        let tensor = header.json.get(TENSOR).ok_or_else(|| bad("no embeddings tensor"))?;
        if tensor["dtype"] != "F32" {
            return Err(bad("embeddings are not F32"));
        }
        let shape: Vec<usize> =
            serde_json::from_value(tensor["shape"].clone()).map_err(|_| bad("bad shape"))?;
        let [rows, dim] = shape[..] else { return Err(bad("embeddings are not a matrix")) };
        let start = header.data_start() as usize;
        let end =
            rows.checked_mul(dim).and_then(|n| n.checked_mul(4)).and_then(|n| n.checked_add(start));
        let data =
            end.and_then(|end| bytes.get(start..end)).ok_or_else(|| bad("truncated data"))?;
        let values: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let metadata = header.metadata();
        let ids_file = ids_path(path);
        let mut reader = csv::Reader::from_path(&ids_file)
            .with_context(|| format!("{}: cannot open the index's ids", ids_file.display()))?;
        let mut ids = Vec::with_capacity(rows);
        let mut labels = Vec::with_capacity(rows);
        for record in reader.records() {
            let record = record.map_err(|err| anyhow!("{}: {err}", ids_file.display()))?;
            ids.push(record.get(1).unwrap_or_default().to_string());
            labels.push(record.get(2).unwrap_or_default().to_string());
        }
        if ids.len() != rows {
            bail!("{}: {} ids for an index of {rows} rows", ids_file.display(), ids.len());
        }
        Ok(Self { path: path.to_path_buf(), metadata, rows, dim, values, ids, labels })
    }

    /// Rows by id, for looking up many queries.
    pub fn rows_by_id(&self) -> HashMap<&str, usize> {
        self.ids.iter().enumerate().map(|(row, id)| (id.as_str(), row)).collect()
    }

    pub fn tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.values.clone(), [self.rows, self.dim]), device)
    }
}

/// The `k` most cosine-similar index rows of each query, best first, as `(row, score)`.
/// `index` holds normalised rows `[N, D]`; `queries` is `[Q, D]` row-major (normalised
/// here); `exclude[q]` is a row query `q` may not return (itself, when it is in the index).
pub fn search(
    index: &Tensor<2>,
    queries: &[f32],
    exclude: Option<&[usize]>,
    k: usize,
) -> Result<Vec<Vec<(u32, f32)>>> {
    let [rows, dim] = index.dims();
    let device = index.device();
    let index_t = index.clone().transpose();
    let count = queries.len() / dim.max(1);
    if rows == 0 {
        return Ok(vec![Vec::new(); count]);
    }
    let mut out = Vec::with_capacity(count);
    for start in (0..count).step_by(QUERY_BATCH) {
        let end = (start + QUERY_BATCH).min(count);
        let batch = Tensor::<2>::from_data(
            TensorData::new(queries[start * dim..end * dim].to_vec(), [end - start, dim]),
            &device,
        );
        let Ok(mut scores) = to_host(l2_normalize(batch).matmul(index_t.clone())) else {
            return Err(anyhow!("reading search scores back from the device"));
        };
        let tops: Vec<Vec<(u32, f32)>> = scores
            .par_chunks_mut(rows)
            .enumerate()
            .map(|(j, row)| {
                if let Some(&skip) = exclude.and_then(|e| e.get(start + j)).filter(|&&s| s < rows) {
                    row[skip] = f32::NEG_INFINITY;
                }
                metrics::top_k(row, k).into_iter().map(|r| (r, row[r as usize])).collect()
            })
            .collect();
        out.extend(tops);
    }
    Ok(out)
}

/// Writes `query,rank,id,label,score` for each query's neighbours (from [`search`]) to
/// `output`, or to stdout without one; returns the row count.
pub fn write_neighbours(
    index: &EmbeddingIndex,
    queries: &[String],
    neighbours: &[Vec<(u32, f32)>],
    output: Option<&Path>,
) -> Result<usize> {
    let header = ["query", "rank", "id", "label", "score"];
    let rows = queries.iter().zip(neighbours).flat_map(|(query, found)| {
        found.iter().enumerate().map(move |(rank, &(row, score))| {
            let row = row as usize;
            [
                query.clone(),
                (rank + 1).to_string(),
                index.ids[row].clone(),
                index.labels[row].clone(),
                format!("{score:.6}"),
            ]
        })
    });
    match output {
        Some(path) => {
            let mut out = CsvOutput::create(path, &header)?;
            for row in rows {
                out.row(&row)?;
            }
            out.finish()
        }
        None => {
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record(header)?;
            let mut written = 0;
            for row in rows {
                out.write_record(&row)?;
                written += 1;
            }
            out.flush()?;
            Ok(written)
        }
    }
}

/// Recall@K for retrieval: the fraction of queries whose K nearest neighbours hold at
/// least one item of the query's class.
pub fn recall_at_k(
    neighbours: &[Vec<(u32, f32)>],
    query_labels: &[u32],
    index_labels: &[u32],
    k: usize,
) -> f64 {
    if neighbours.is_empty() {
        return 0.0;
    }
    let hits = neighbours
        .iter()
        .zip(query_labels)
        .filter(|(found, label)| {
            found.iter().take(k).any(|&(row, _)| index_labels[row as usize] == **label)
        })
        .count();
    hits as f64 / neighbours.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_ranks_by_cosine_and_excludes_self() {
        let device = Device::flex();
        let rows = vec![1.0, 0.0, 0.6, 0.8, 0.0, 1.0, -1.0, 0.0];
        let index = l2_normalize(Tensor::from_data(TensorData::new(rows.clone(), [4, 2]), &device));
        // Query (2, 0) is row 0's direction: cosines 1, 0.6, 0, -1.
        let found = search(&index, &[2.0, 0.0], None, 3).unwrap();
        assert_eq!(found[0].iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!((found[0][1].1 - 0.6).abs() < 1e-6);
        // Row 1 as its own query, excluded: row 2 (0.8) then row 0 (0.6).
        let found = search(&index, &rows[2..4], Some(&[1]), 2).unwrap();
        assert_eq!(found[0].iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 0]);
    }

    #[test]
    fn recall_counts_queries_with_a_same_class_neighbour() {
        let neighbours =
            vec![vec![(1, 0.9), (2, 0.8)], vec![(0, 0.9), (2, 0.5)], vec![(1, 0.7), (0, 0.1)]];
        let labels = [0, 1, 0];
        // Query 0 (class 0): rank 2 hits; query 1 (class 1): none; query 2 (class 0): rank 2.
        assert_eq!(recall_at_k(&neighbours, &labels, &labels, 1), 0.0);
        assert!((recall_at_k(&neighbours, &labels, &labels, 2) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn index_round_trips_and_fixes_row_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.safetensors");
        let mut writer = IndexWriter::create(&path, 3, 2, &[(META_RUN, "runs/x".into())]).unwrap();
        writer.append(&[("a.png", Some("shirt")), ("b.png", None)], &[1.0, 0.0, 0.0, 1.0]).unwrap();
        assert_eq!(writer.finish().unwrap(), 2);
        let index = EmbeddingIndex::load(&path).unwrap();
        assert_eq!((index.rows, index.dim), (2, 2));
        assert_eq!(index.values, vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(index.ids, vec!["a.png", "b.png"]);
        assert_eq!(index.labels, vec!["shirt", ""]);
        assert_eq!(index.metadata[META_RUN], "runs/x");
        assert_eq!(index.metadata[META_IDS], "catalog.ids.csv");
    }
}
