//! The HTTP API, one module per feature.

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod auth;
mod card_decisions;
mod configuration;
mod cors;
mod database_tls;
mod discovery;
mod durability;
mod errors;
mod examples;
mod feedback;
mod fhir_fetch;
mod health;
mod hostile;
mod intake;
mod network_limits;
mod openapi;
mod patient_view;
mod questionnaire;
mod record_reading;
mod snapshots;
mod vignette_checker;
