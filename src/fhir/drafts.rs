//! `context.draftOrders` of the order hooks: a Bundle of ServiceRequests and MedicationRequests,
//! read leniently (a malformed entry is skipped and reported) and classified for the rules.

use serde_json::value::RawValue;

use super::prefetch::{self, PrefetchValue, SkippedResource};
use super::reference::{codings, describe, laterality};
use super::views::{CodeableConcept, MedicationRequest, ServiceRequest};
use crate::knee::order_review::{DraftKind, DraftOrder};
use crate::knee::orders::OrderKind;
use crate::terminology::Terminology;

/// The draft orders, and the entries that could not be read.
#[derive(Debug, Default)]
pub struct Drafts {
    pub orders: Vec<DraftOrder>,
    pub skipped: Vec<SkippedResource>,
    /// The value was not a Bundle or resource at all.
    pub unreadable: bool,
}

const KNEE_PAIN_ICD: &[&str] = &["M25.561", "M25.562", "M25.569"];

fn mentions_knee(concept: &CodeableConcept) -> bool {
    let text = concept.text.as_deref().unwrap_or_default().to_lowercase();
    text.contains("knee")
        || concept.coding.iter().any(|c| {
            c.display.as_deref().is_some_and(|d| d.to_lowercase().contains("knee"))
                || c.code.as_deref().is_some_and(|code| KNEE_PAIN_ICD.contains(&code))
        })
}

fn service_request(request: &ServiceRequest, selections: &[String], terminology: &Terminology) -> DraftOrder {
    let concept = request.code.as_ref();
    let recognised =
        concept.and_then(|c| codings(c).find_map(|(system, code)| terminology.recognise_order(system, code)));
    let kind = recognised.map_or(DraftKind::Other, |(kind, _)| DraftKind::Order(kind));
    let side = recognised.and_then(|(_, side)| side).or_else(|| laterality(&request.body_site, terminology));
    let concerns_knee = matches!(kind, DraftKind::Order(OrderKind::KneeMri | OrderKind::KneeUltrasound))
        || concept.is_some_and(mentions_knee)
        || request.reason_code.iter().any(mentions_knee);
    DraftOrder {
        kind,
        side,
        selected: is_selected("ServiceRequest", request.id.as_deref(), selections),
        concerns_knee,
        description: concept.map_or_else(|| "ServiceRequest".to_owned(), describe),
    }
}

fn medication_request(request: &MedicationRequest, selections: &[String], terminology: &Terminology) -> DraftOrder {
    let concept = request.medication_codeable_concept.as_ref();
    let description = concept
        .map(describe)
        .or_else(|| request.medication_reference.as_ref().and_then(|reference| reference.display.clone()));
    let nsaid = description.as_deref().is_some_and(|text| terminology.nsaids.names_in(text))
        || concept.is_some_and(|c| {
            c.coding.iter().any(|coding| coding.display.as_deref().is_some_and(|d| terminology.nsaids.names_in(d)))
        });
    DraftOrder {
        kind: if nsaid { DraftKind::Nsaid } else { DraftKind::Other },
        side: None,
        selected: is_selected("MedicationRequest", request.id.as_deref(), selections),
        concerns_knee: request.reason_code.iter().any(mentions_knee),
        description: description.unwrap_or_else(|| "MedicationRequest".to_owned()),
    }
}

/// order-select names the newly selected orders; order-sign signs them all.
fn is_selected(resource_type: &str, id: Option<&str>, selections: &[String]) -> bool {
    selections.is_empty() || id.is_some_and(|id| selections.iter().any(|s| *s == format!("{resource_type}/{id}")))
}

/// Reads `context.draftOrders`.
pub fn read(value: Option<&RawValue>, selections: &[String], terminology: &Terminology) -> Drafts {
    let mut drafts = Drafts::default();
    match prefetch::read::<ServiceRequest>(value, "ServiceRequest") {
        PrefetchValue::Read(read) => {
            drafts.orders.extend(read.resources.iter().map(|r| service_request(r, selections, terminology)));
            drafts.skipped.extend(read.skipped);
            for (position, other) in read.others.iter().enumerate() {
                match prefetch::read::<MedicationRequest>(Some(other), "MedicationRequest") {
                    PrefetchValue::Read(meds) => {
                        drafts
                            .orders
                            .extend(meds.resources.iter().map(|m| medication_request(m, selections, terminology)));
                        drafts.skipped.extend(meds.skipped.into_iter().map(|s| SkippedResource { position, ..s }));
                    }
                    PrefetchValue::Absent | PrefetchValue::Failed(_) => {}
                }
            }
        }
        PrefetchValue::Absent | PrefetchValue::Failed(_) => drafts.unreadable = true,
    }
    drafts
}
