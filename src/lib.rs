//! Popliteal: a CDS Hooks 2.0 service for posterior knee pain.
//!
//! Data flows one way: request -> record (`fhir`) -> facts -> assessment (`knee`) -> cards
//! (`cards`) -> response. The rules never see HTTP or JSON; the routes decide nothing clinical.

pub mod audit;
pub mod auth;
pub mod body;
pub mod cards;
pub mod catalogue;
mod coded;
pub mod configuration;
pub mod connections;
pub mod cors;
pub mod error;
pub mod evaluate;
pub mod fhir;
pub mod intake;
pub mod json;
pub mod knee;
pub mod limits;
pub mod log_throttle;
pub mod middleware;
pub mod protocol;
pub mod retention;
pub mod routes;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod terminology;
