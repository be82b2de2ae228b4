//! `context.draftOrders` of the order hooks: a Bundle of ServiceRequests and MedicationRequests,
//! read leniently (a malformed entry is skipped and reported) and classified for the rules.

use serde_json::value::RawValue;

use super::page::{self, Entry, SkipReason, SkippedResource, Value};
use super::reference::{codings, describe, laterality};
use super::views::{CodeableConcept, MedicationRequest, ServiceRequest};
use crate::knee::order_review::{DraftKind, DraftOrder};
use crate::knee::orders::OrderKind;
use crate::terminology::{CodeList, Terminology};

/// The draft orders, and the entries that could not be read.
#[derive(Debug, Default)]
pub struct Drafts {
    pub orders: Vec<DraftOrder>,
    pub skipped: Vec<SkippedResource>,
    /// The value was not a Bundle or resource at all.
    pub unreadable: bool,
}

/// Whether a concept concerns the knee: a code of the knee-pain value set, or "knee" in its
/// text or a display.
fn mentions_knee(concept: &CodeableConcept, terminology: &Terminology) -> bool {
    let text = concept.text.as_deref().unwrap_or_default().to_lowercase();
    text.contains("knee")
        || concept.coding.iter().any(|c| c.display.as_deref().is_some_and(|d| d.to_lowercase().contains("knee")))
        || codings(concept).any(|(system, code)| terminology.value_sets.contains(CodeList::KneePain, system, code))
}

/// What the clinician sees a drafted order as: the EHR's text or display, else the catalogue's
/// name for a code it knows (EHRs often send a bare code: the Sandbox drafts `CPT 73721` alone),
/// else the code.
fn draft_description(concept: &CodeableConcept, known: Option<&str>) -> String {
    let worded = concept.text.is_some() || concept.coding.first().is_some_and(|c| c.display.is_some());
    match known {
        Some(name) if !worded => name.to_owned(),
        _ => describe(concept),
    }
}

fn service_request(request: &ServiceRequest, selections: &[String], terminology: &Terminology) -> DraftOrder {
    let concept = request.code.as_ref();
    let recognised = concept.and_then(|c| {
        codings(c).find_map(|(system, code)| {
            let (kind, side) = terminology.recognise_order(system, code)?;
            Some((kind, side, terminology.known_order_coding(system, code)))
        })
    });
    let kind = recognised.map_or(DraftKind::Other, |(kind, _, _)| DraftKind::Order(kind));
    let side = recognised.and_then(|(_, side, _)| side).or_else(|| laterality(&request.body_site, terminology));
    // A code broader than the knee (MRI of any lower-extremity joint) concerns the knee only when
    // the draft says so.
    let knee_code = matches!(kind, DraftKind::Order(OrderKind::KneeMri | OrderKind::KneeUltrasound))
        && !recognised.and_then(|(_, _, known)| known).is_some_and(|known| known.broader);
    let concerns_knee = knee_code
        || concept.is_some_and(|c| mentions_knee(c, terminology))
        || request.body_site.iter().chain(&request.reason_code).any(|c| mentions_knee(c, terminology));
    let known_name = recognised.and_then(|(_, _, known)| known?.display);
    DraftOrder {
        kind,
        side,
        selected: is_selected("ServiceRequest", request.id.as_deref(), selections),
        concerns_knee,
        description: concept.map(|c| draft_description(c, known_name)).unwrap_or_default(),
    }
}

fn medication_request(request: &MedicationRequest, selections: &[String], terminology: &Terminology) -> DraftOrder {
    let concept = request.medication_codeable_concept.as_ref();
    let description = concept
        .map(describe)
        .or_else(|| request.medication_reference.as_ref().and_then(|reference| reference.display.clone()));
    let names_nsaid = |text: &str| terminology.value_sets.names_in(CodeList::Nsaids, text);
    let nsaid = description.as_deref().is_some_and(names_nsaid)
        || concept.is_some_and(|c| c.coding.iter().any(|coding| coding.display.as_deref().is_some_and(names_nsaid)))
        || concept.is_some_and(|c| {
            codings(c).any(|(system, code)| terminology.value_sets.contains(CodeList::Nsaids, system, code))
        });
    DraftOrder {
        kind: if nsaid { DraftKind::Nsaid } else { DraftKind::Other },
        side: None,
        selected: is_selected("MedicationRequest", request.id.as_deref(), selections),
        concerns_knee: request.reason_code.iter().any(|c| mentions_knee(c, terminology)),
        description: description.unwrap_or_default(),
    }
}

/// order-select names the newly selected orders; order-sign signs them all.
fn is_selected(resource_type: &str, id: Option<&str>, selections: &[String]) -> bool {
    selections.is_empty() || id.is_some_and(|id| selections.iter().any(|s| *s == format!("{resource_type}/{id}")))
}

/// Reads `context.draftOrders`: a Bundle of ServiceRequests and MedicationRequests (or one of
/// them). Other resources are ignored; unreadable ones (or ones with a modifier extension) are
/// skipped and counted.
pub fn read(value: Option<&RawValue>, selections: &[String], terminology: &Terminology) -> Drafts {
    let mut drafts = Drafts::default();
    let resources: Vec<(usize, &RawValue)> = match value.map(page::classify) {
        Some(Value::Bundle(bundle)) => {
            drafts.skipped.extend(bundle.bad_entries.iter().map(|&position| SkippedResource {
                resource_type: "entry".into(),
                id: None,
                position,
                reason: SkipReason::Unreadable,
            }));
            bundle.resources
        }
        Some(Value::Resource(resource)) => vec![(0, resource)],
        Some(Value::Nothing | Value::Failed(_)) | None => {
            drafts.unreadable = true;
            return drafts;
        }
    };
    for (position, raw) in resources {
        match page::read_entry::<ServiceRequest>(raw, "ServiceRequest", position) {
            Entry::Read(request) => drafts.orders.push(service_request(&request, selections, terminology)),
            Entry::Skipped(skipped) => drafts.skipped.push(skipped),
            Entry::Outcome => {}
            Entry::Other(resource_type) if resource_type == "MedicationRequest" => {
                match page::read_entry::<MedicationRequest>(raw, "MedicationRequest", position) {
                    Entry::Read(request) => drafts.orders.push(medication_request(&request, selections, terminology)),
                    Entry::Skipped(skipped) => drafts.skipped.push(skipped),
                    Entry::Outcome | Entry::Other(_) => {}
                }
            }
            Entry::Other(_) => {}
        }
    }
    drafts
}
