//! CDS Hooks wire types only: requests, cards, discovery.

pub mod card;
pub mod request;
