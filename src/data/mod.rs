//! Input formats, one loader per format.

pub mod events;
pub mod graph;
pub mod images;
pub mod interactions;
pub mod records;
pub mod sequences;
pub mod text;

use serde::{Deserialize, Serialize};

/// Which part of the data an example belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
    None,
}

impl Split {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.to_ascii_lowercase().as_str() {
            "train" => Split::Train,
            "val" | "valid" | "validation" => Split::Val,
            "test" => Split::Test,
            "" | "none" | "unlabeled" | "unlabelled" => Split::None,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
            Split::None => "none",
        })
    }
}
