//! The nets, one file each, plus the building blocks they share.

pub mod bert;
pub mod gat;
pub mod gcn;
pub mod intent;
pub mod message_passing;
pub mod recommender;
pub mod vgg;
