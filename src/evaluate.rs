//! One hook call's evaluation, without HTTP or I/O: a request already checked against its
//! service and the record already assembled -> facts -> assessment -> cards.

use time::{Duration, OffsetDateTime};

use crate::cards::orders::OrderContext;
use crate::cards::wording::Wording;
use crate::cards::{self, CardContext, DataReport};
use crate::catalogue::ServiceKind;
use crate::error::ApiError;
use crate::fhir;
use crate::fhir::intake::{self, IntakePolicy};
use crate::fhir::interpret;
use crate::fhir::record::{DataKey, PatientRecord, Provenance};
use crate::fhir::time::age_in_years;
use crate::knee::facts::Situation;
use crate::knee::thresholds::Thresholds;
use crate::knee::{self, Assessment, order_review};
use crate::protocol::card::Card;
use crate::protocol::request::HookRequest;
use crate::terminology::Terminology;

/// The knowledge loaded once at start: code lists, clinical thresholds and card wording.
#[derive(Debug, Clone)]
pub struct Knowledge {
    pub terminology: Terminology,
    pub thresholds: Thresholds,
    pub wording: Wording,
}

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Terminology(#[from] crate::terminology::TerminologyError),
    #[error(transparent)]
    Thresholds(#[from] crate::knee::thresholds::ThresholdsError),
    #[error(transparent)]
    Wording(#[from] crate::cards::wording::WordingError),
}

impl Knowledge {
    /// The shipped code lists (plus a site's codes file when one is named), thresholds and
    /// wording, each checked.
    pub fn load(site_codes_file: Option<&std::path::Path>) -> Result<Knowledge, KnowledgeError> {
        Ok(Knowledge {
            terminology: Terminology::load(site_codes_file)?,
            thresholds: Thresholds::embedded()?,
            wording: Wording::embedded()?,
        })
    }

    /// What ships with the service, without site codes (tests, benchmarks, fuzzing).
    pub fn embedded() -> Result<Knowledge, KnowledgeError> {
        Knowledge::load(None)
    }
}

/// The settings the evaluation reads.
#[derive(Debug, Clone)]
pub struct EvaluationSettings {
    pub questionnaire_canonical: String,
    pub questionnaire_url: String,
    pub stale_after_days: i64,
    /// The intake app's launch URL (`{public_url}/intake/launch`).
    pub intake_launch_url: String,
    /// The `appContext` of the intake card's `smart` link: the Questionnaire to fill in
    /// (`{"questionnaire": "<canonical>|<version>"}`).
    pub intake_app_context: String,
}

impl EvaluationSettings {
    pub fn from_settings(settings: &crate::configuration::Settings) -> EvaluationSettings {
        let canonical = settings.questionnaire_canonical();
        let version = intake::questionnaire_version().map(|v| format!("|{v}")).unwrap_or_default();
        EvaluationSettings {
            intake_app_context: serde_json::json!({ "questionnaire": format!("{canonical}{version}") }).to_string(),
            questionnaire_canonical: canonical,
            questionnaire_url: settings.questionnaire_public_url(),
            stale_after_days: i64::from(settings.questionnaire.stale_after_days.get()),
            intake_launch_url: format!("{}/intake/launch", settings.server.public_url.as_str().trim_end_matches('/')),
        }
    }
}

/// What an evaluation produced, with counts for the log (no content).
#[derive(Debug)]
pub struct Outcome {
    pub cards: Vec<Card>,
    pub skipped_resources: usize,
    /// Keys that could not be read in full.
    pub incomplete_keys: Vec<&'static str>,
    /// Where each prefetch key's data came from (for the audit trail).
    pub provenance: Vec<(DataKey, Provenance)>,
}

/// Evaluates a hook call for a service. `request` was checked with [`HookRequest::check_for`]
/// and `record` assembled from it.
pub fn evaluate(
    service: ServiceKind,
    request: &HookRequest,
    record: &PatientRecord,
    knowledge: &Knowledge,
    settings: &EvaluationSettings,
    now: OffsetDateTime,
) -> Result<Outcome, ApiError> {
    if let Some(key) = record.missing_required() {
        return Err(ApiError::PreconditionFailed(format!(
            "prefetch key {} is absent, failed or unreadable, and could not be read from fhirServer",
            key.prefetch_key()
        )));
    }
    let patient_id = request.context.patient_id.as_str();
    let age_years =
        record.patient.as_ref().and_then(|p| p.birth_date.as_ref()).and_then(|b| age_in_years(b, now.date()));
    let policy = IntakePolicy {
        canonical: settings.questionnaire_canonical.clone(),
        stale_after: Duration::days(settings.stale_after_days),
    };
    let (intake, intake_notes) = intake::select(&record.questionnaire_responses, patient_id, &policy, now);
    let situation = Situation {
        now,
        age_years,
        intake,
        record: interpret::record_facts(record, patient_id, &knowledge.terminology, &knowledge.thresholds, now),
    };
    let assessment: Assessment = knee::assess(&situation, &knowledge.thresholds);
    let drafts = service.reviews_orders().then(|| {
        fhir::drafts::read(request.context.draft_orders.as_deref(), &request.context.selections, &knowledge.terminology)
    });
    if drafts.as_ref().is_some_and(|d| d.unreadable) {
        return Err(ApiError::BadRequest("context.draftOrders must be a Bundle of orders".into()));
    }
    let context = CardContext {
        wording: &knowledge.wording,
        terminology: &knowledge.terminology,
        order: OrderContext {
            patient_id,
            user_id: &request.context.user_id,
            encounter_id: request.context.encounter_id.as_deref(),
        },
        questionnaire_url: &settings.questionnaire_url,
        intake_launch_url: &settings.intake_launch_url,
        intake_app_context: &settings.intake_app_context,
        stale_days: settings.stale_after_days,
    };
    let report = DataReport {
        provenance: &record.provenance,
        skipped: &record.skipped,
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
        skipped_resources: record.skipped.len(),
        incomplete_keys: record.incomplete_keys().map(|(key, _)| key.prefetch_key()).collect(),
        provenance: record.provenance.clone(),
    })
}
