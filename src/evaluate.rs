//! One hook call, end to end, without HTTP: request -> record -> facts -> assessment -> cards.

use time::{Duration, OffsetDateTime};

use crate::cards::orders::OrderContext;
use crate::cards::wording::Wording;
use crate::cards::{self, CardContext, DataReport};
use crate::catalogue::ServiceKind;
use crate::error::ApiError;
use crate::fhir;
use crate::fhir::intake::{self, IntakePolicy};
use crate::fhir::interpret;
use crate::fhir::record::{DataKey, DataOrigin, PatientRecord};
use crate::fhir::time::age_in_years;
use crate::knee::facts::Situation;
use crate::knee::{self, Assessment, order_review};
use crate::protocol::card::Card;
use crate::protocol::request::HookRequest;
use crate::terminology::Terminology;

/// The knowledge loaded once at start: code lists and card wording.
#[derive(Debug, Clone)]
pub struct Knowledge {
    pub terminology: Terminology,
    pub wording: Wording,
}

/// The settings the evaluation reads.
#[derive(Debug, Clone)]
pub struct EvaluationSettings {
    pub questionnaire_canonical: String,
    pub questionnaire_url: String,
    pub stale_after_days: i64,
}

/// What the service read from `fhirServer` to complete the prefetch.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Keys read from the FHIR server.
    pub keys: Vec<DataKey>,
    /// Keys whose Bundle had more pages than were read.
    pub unfinished_pages: Vec<DataKey>,
}

/// What an evaluation produced, with counts for the log (no content).
#[derive(Debug)]
pub struct Outcome {
    pub cards: Vec<Card>,
    pub skipped_resources: usize,
    pub unavailable_keys: Vec<&'static str>,
    /// Where each prefetch key's data came from (for the audit trail).
    pub data_sources: Vec<(DataKey, DataOrigin)>,
}

/// Evaluates a hook request for a service.
pub fn evaluate(
    service: ServiceKind,
    request: &HookRequest,
    knowledge: &Knowledge,
    settings: &EvaluationSettings,
    now: OffsetDateTime,
    fetched: &Fetched,
) -> Result<Outcome, ApiError> {
    if request.hook != service.hook() {
        return Err(ApiError::BadRequest(format!(
            "service {} answers the {} hook, not the hook sent",
            service.id(),
            service.hook()
        )));
    }
    let mut record = PatientRecord::from_prefetch(&request.prefetch);
    if let Some(key) = record.missing_required() {
        return Err(ApiError::PreconditionFailed(format!(
            "prefetch key {} is absent, failed or unreadable, and could not be read from fhirServer",
            key.prefetch_key()
        )));
    }
    for key in &fetched.unfinished_pages {
        if !record.gaps.more_pages.contains(key) {
            record.gaps.more_pages.push(*key);
        }
    }
    let patient_id = request.context.patient_id.as_str();
    let patient = record.patient.as_ref();
    if patient.and_then(|p| p.id.as_deref()).is_some_and(|id| id != patient_id) {
        return Err(ApiError::BadRequest("prefetch.patient is not the patient named by context.patientId".into()));
    }
    let age_years = patient.and_then(|p| p.birth_date.as_ref()).and_then(|birth| age_in_years(birth, now.date()));
    let policy = IntakePolicy {
        canonical: settings.questionnaire_canonical.clone(),
        stale_after: Duration::days(settings.stale_after_days),
    };
    let (intake, intake_notes) = intake::select(&record.questionnaire_responses, patient_id, &policy, now);
    let situation = Situation {
        now,
        age_years,
        intake,
        record: interpret::record_facts(&record, patient_id, &knowledge.terminology, now),
    };
    let assessment: Assessment = knee::assess(&situation);
    let drafts = if service.reviews_orders() {
        if request.context.draft_orders.is_none() {
            return Err(ApiError::BadRequest(format!(
                "context.draftOrders is required by the {} hook",
                service.hook()
            )));
        }
        let drafts = fhir::drafts::read(
            request.context.draft_orders.as_deref(),
            &request.context.selections,
            &knowledge.terminology,
        );
        if drafts.unreadable {
            return Err(ApiError::BadRequest("context.draftOrders must be a Bundle of orders".into()));
        }
        Some(drafts)
    } else {
        None
    };
    let context = CardContext {
        wording: &knowledge.wording,
        terminology: &knowledge.terminology,
        order: OrderContext {
            patient_id,
            user_id: &request.context.user_id,
            encounter_id: request.context.encounter_id.as_deref(),
        },
        questionnaire_url: &settings.questionnaire_url,
        stale_days: settings.stale_after_days,
    };
    let report = DataReport {
        gaps: &record.gaps,
        intake: &intake_notes,
        draft_orders_skipped: drafts.as_ref().map_or(0, |d| d.skipped.len()),
    };
    let cards = match &drafts {
        Some(drafts) => {
            let review = order_review::review(assessment, &drafts.orders);
            cards::build_order_review(&review, &report, &context)?
        }
        None => cards::build(&assessment, &report, &context)?,
    };
    Ok(Outcome {
        cards,
        skipped_resources: record.gaps.skipped.len(),
        unavailable_keys: record.gaps.unavailable.iter().map(|(key, _)| DataKey::prefetch_key(*key)).collect(),
        data_sources: record
            .origins()
            .into_iter()
            .map(|(key, origin)| match origin {
                DataOrigin::Prefetch if fetched.keys.contains(&key) => (key, DataOrigin::Fetched),
                other => (key, other),
            })
            .collect(),
    })
}
