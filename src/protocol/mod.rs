//! CDS Hooks wire types only: requests, cards, feedback.

pub mod card;
pub mod feedback;
pub mod request;
