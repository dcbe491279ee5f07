//! The model families, one file each, behind the traits of [`family`] and the generic
//! commands of [`driver`]. `with_family!` picks the family that
//! `model.kind` names.

pub mod driver;
pub mod family;
pub mod images;
pub mod intent;
pub mod node;
pub mod online;
pub mod recommender;
pub mod sentiment;

/// Runs `$body` with the type alias `$family` naming the family of `$kind` (a
/// `ModelKind`): the one place a kind meets its Rust type.
macro_rules! with_family {
    ($kind:expr, $family:ident => $body:expr) => {{
        use $crate::base::config::ModelKind;
        match $kind {
            ModelKind::Gcn => {
                type $family = $crate::families::node::NodeFamily<$crate::models::gcn::Gcn>;
                $body
            }
            ModelKind::Gat => {
                type $family = $crate::families::node::NodeFamily<$crate::models::gat::Gat>;
                $body
            }
            ModelKind::Recommender => {
                type $family = $crate::families::recommender::RecommenderFamily;
                $body
            }
            ModelKind::Intent => {
                type $family = $crate::families::intent::IntentFamily;
                $body
            }
            ModelKind::Vgg => {
                type $family = $crate::families::images::ImageFamily;
                $body
            }
            ModelKind::Bert => {
                type $family = $crate::families::sentiment::SentimentFamily;
                $body
            }
        }
    }};
}

pub(crate) use with_family;
