//! Proposed orders -> CDS Hooks suggestions that create draft ServiceRequests (FHIR R4:
//! subject, status, intent, priority, code, reasonCode, bodySite laterality when known),
//! built with fhir-sdk's typed builders.

use fhir_sdk::r4b::codes::{RequestIntent, RequestPriority, RequestStatus};
use fhir_sdk::r4b::resources::ServiceRequest;
use fhir_sdk::r4b::types::{CodeableConcept, Coding as FhirCoding, Reference};
use uuid::Uuid;

use super::why::{laterality_text, side_text};
use super::wording::Wording;
use crate::error::ApiError;
use crate::knee::orders::{Priority, ProposedOrder};
use crate::protocol::card::{Action, ActionType, Suggestion};
use crate::terminology::{Coding, Terminology};

/// Who and where the order is for.
#[derive(Debug, Clone, Copy)]
pub struct OrderContext<'a> {
    pub patient_id: &'a str,
    /// `context.userId` when it is a Practitioner or PractitionerRole reference.
    pub user_id: &'a str,
    pub encounter_id: Option<&'a str>,
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("building a suggested ServiceRequest: {error}"))
}

fn coding(coding: &Coding) -> Result<FhirCoding, ApiError> {
    let mut builder = FhirCoding::builder().system(coding.system.clone()).code(coding.code.clone());
    if let Some(display) = &coding.display {
        builder = builder.display(display.clone());
    }
    builder.build().map_err(internal)
}

fn concept(codings: Vec<FhirCoding>, text: &str) -> Result<CodeableConcept, ApiError> {
    CodeableConcept::builder()
        .coding(codings.into_iter().map(Some).collect())
        .text(text.to_owned())
        .build()
        .map_err(internal)
}

fn reference(text: String) -> Result<Reference, ApiError> {
    Reference::builder().reference(text).build().map_err(internal)
}

/// The name a clinician sees for an order, with its side.
pub fn name(order: &ProposedOrder, terminology: &Terminology, wording: &Wording) -> String {
    format!("{}{}", terminology.order(order.kind).label, side_text(order.side, wording))
}

fn service_request(
    order: &ProposedOrder,
    default_reason: &str,
    context: OrderContext<'_>,
    terminology: &Terminology,
    wording: &Wording,
) -> Result<ServiceRequest, ApiError> {
    let definition = terminology.order(order.kind);
    let code = definition.code_for(order.side);
    let mut reasons = Vec::new();
    for question in &order.reasons {
        let codings = terminology.reason_code(*question).map(coding).transpose()?.into_iter().collect();
        reasons.push(Some(concept(codings, wording.finding(*question))?));
    }
    if reasons.is_empty() {
        reasons.push(Some(concept(Vec::new(), default_reason)?));
    }
    let priority = match order.priority {
        Priority::Routine => RequestPriority::Routine,
        Priority::Urgent => RequestPriority::Urgent,
        Priority::Stat => RequestPriority::Stat,
    };
    let mut builder = ServiceRequest::builder()
        .status(RequestStatus::Draft)
        .intent(RequestIntent::Order)
        .priority(priority)
        .subject(reference(format!("Patient/{}", context.patient_id))?)
        .code(concept(vec![coding(code)?], &definition.label)?)
        .reason_code(reasons);
    if let Some(side) = order.side {
        let text = laterality_text(side, wording);
        builder = builder.body_site(vec![Some(concept(vec![coding(terminology.laterality(side))?], text)?)]);
    }
    if context.user_id.starts_with("Practitioner/") || context.user_id.starts_with("PractitionerRole/") {
        builder = builder.requester(reference(context.user_id.to_owned())?);
    }
    if let Some(encounter) = context.encounter_id {
        let encounter = encounter.strip_prefix("Encounter/").unwrap_or(encounter);
        builder = builder.encounter(reference(format!("Encounter/{encounter}"))?);
    }
    builder.build().map_err(internal)
}

/// One suggestion creating a draft ServiceRequest.
pub fn suggestion(
    order: &ProposedOrder,
    default_reason: &str,
    context: OrderContext<'_>,
    terminology: &Terminology,
    wording: &Wording,
) -> Result<Suggestion, ApiError> {
    let values = [("order", terminology.order(order.kind).label.as_str()), ("side", side_text(order.side, wording))];
    let resource = service_request(order, default_reason, context, terminology, wording)?;
    Ok(Suggestion {
        uuid: Uuid::new_v4(),
        is_recommended: order.recommended,
        actions: vec![Action {
            action_type: ActionType::Create,
            description: wording.phrases.order_description.fill(&values),
            resource: serde_json::to_value(resource).map_err(internal)?,
        }],
        label: wording.phrases.order_label.fill(&values),
    })
}
