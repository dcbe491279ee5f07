//! Input formats, one loader per format, and synthetic data with a planted signal.

pub mod events;
pub mod graph;
pub mod images;
pub mod interactions;
pub mod records;
pub mod sequences;
pub mod synth;
pub mod text;
