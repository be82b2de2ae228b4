//! The HTTP API, one module per feature.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod discovery;
mod errors;
mod examples;
mod fhir_examples;
mod fhir_fetch;
mod health;
mod patient_view;
mod questionnaire;
mod snapshots;
mod vignette_checker;
