//! Sparse node features in coordinate form: what a graph loader produces and a graph
//! net consumes, so it lives below both.

/// Sparse node features in coordinate form, rows ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseFeatures {
    pub rows: Vec<u32>,
    pub cols: Vec<u32>,
    pub values: Vec<f32>,
}
