//! Which QuestionnaireResponse counts, and its answers (found by linkId at any depth).
//!
//! The latest `authored` response to our Questionnaire (canonical, with or without `|version`),
//! status `completed` or `amended`, for this patient. A response about another patient is
//! ignored and reported. A response older than the staleness window is not evaluated.

use time::{Duration, OffsetDateTime};

use super::page::is_safe_id;
use super::reference;
use super::time::{earliest, latest};
use super::views::{AnswerValue, QuestionnaireResponse, QuestionnaireResponseItem};
use crate::knee::facts::{Answer, Intake, IntakeState};
use crate::knee::question::{Question, Side};

/// The Questionnaire as published (`cds-hooks/questionnaire/`; its `url` is set from the
/// configuration when served).
pub const QUESTIONNAIRE_JSON: &str = include_str!("../../cds-hooks/questionnaire/posterior-knee-pain.json");

/// The published Questionnaire's `version`.
pub fn questionnaire_version() -> Option<String> {
    let questionnaire: serde_json::Value = serde_json::from_str(QUESTIONNAIRE_JSON).ok()?;
    questionnaire["version"].as_str().map(str::to_owned)
}

/// The CodeSystem of the `side` answer.
pub const SIDE_SYSTEM: &str = "https://popliteal.dev/CodeSystem/side";

/// How the intake is chosen.
#[derive(Debug, Clone)]
pub struct IntakePolicy {
    /// Our Questionnaire's canonical URL.
    pub canonical: String,
    /// Responses older than this are stale.
    pub stale_after: Duration,
}

/// What was noticed while choosing and reading the intake (linkIds and counts, no content).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntakeNotes {
    pub other_patient_responses: usize,
    /// linkIds whose answer had the wrong value type (and so counts as not asked).
    pub wrong_type_answers: Vec<&'static str>,
}

fn is_ours(response: &QuestionnaireResponse, canonical: &str) -> bool {
    response
        .questionnaire
        .as_deref()
        .is_some_and(|q| q.split('|').next().unwrap_or(q).trim_end_matches('/') == canonical.trim_end_matches('/'))
}

fn counts(response: &QuestionnaireResponse) -> bool {
    matches!(response.status.as_str(), "completed" | "amended")
}

/// Chooses the response that counts and reads it.
pub fn select(
    responses: &[QuestionnaireResponse],
    patient_id: &str,
    policy: &IntakePolicy,
    now: OffsetDateTime,
) -> (IntakeState, IntakeNotes) {
    let mut notes = IntakeNotes::default();
    let mut candidates: Vec<&QuestionnaireResponse> = Vec::new();
    for response in responses.iter().filter(|r| is_ours(r, &policy.canonical) && counts(r)) {
        if reference::belongs_to(response.subject.as_ref(), patient_id) {
            candidates.push(response);
        } else {
            notes.other_patient_responses += 1;
        }
    }
    // Latest authored first; an undated response sorts last.
    let latest_response = candidates.into_iter().max_by_key(|r| r.authored.as_ref().and_then(latest));
    let Some(response) = latest_response else {
        return (IntakeState::Missing, notes);
    };
    let authored = response.authored.as_ref().and_then(earliest);
    let fresh = response.authored.as_ref().and_then(latest).is_some_and(|instant| instant >= now - policy.stale_after);
    if !fresh {
        return (IntakeState::Stale { authored }, notes);
    }
    let reference = response.id.as_deref().filter(|id| is_safe_id(id)).map(|id| format!("QuestionnaireResponse/{id}"));
    let mut intake = Intake::new(reference, authored);
    read_items(&response.item, &mut intake, &mut notes);
    (IntakeState::Usable(intake), notes)
}

fn read_items(items: &[QuestionnaireResponseItem], intake: &mut Intake, notes: &mut IntakeNotes) {
    for item in items {
        if let Some(question) = Question::from_link_id(&item.link_id) {
            for answer in &item.answer {
                match answer.value().map(|value| interpret(question, value)) {
                    Some(Some(value)) => intake.record(question, value),
                    Some(None) if !notes.wrong_type_answers.contains(&question.link_id()) => {
                        notes.wrong_type_answers.push(question.link_id());
                    }
                    Some(None) | None => {}
                }
            }
        }
        read_items(&item.item, intake, notes);
        for answer in &item.answer {
            read_items(&answer.item, intake, notes);
        }
    }
}

/// An answer of the type the contract gives the question, or `None` (wrong type: not asked).
fn interpret(question: Question, value: AnswerValue<'_>) -> Option<Answer> {
    use AnswerValue as V;
    match (question, value) {
        (Question::Side, V::Coding(coding)) => {
            let system_ok = coding.system.as_deref().is_none_or(|s| s == SIDE_SYSTEM);
            coding.code.as_deref().filter(|_| system_ok).and_then(Side::from_code).map(Answer::Side)
        }
        (Question::DurationWeeks, V::Integer(weeks)) => u32::try_from(weeks).ok().map(Answer::Weeks),
        (Question::Side | Question::DurationWeeks, _) => None,
        (_, V::Boolean(true)) => Some(Answer::Yes),
        (_, V::Boolean(false)) => Some(Answer::No),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const CANONICAL: &str = "http://cds.example.org/fhir/Questionnaire/posterior-knee-pain";
    const NOW: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

    fn policy() -> IntakePolicy {
        IntakePolicy { canonical: CANONICAL.into(), stale_after: Duration::days(14) }
    }

    fn response(
        id: &str,
        status: &str,
        authored: &str,
        patient: &str,
        items: serde_json::Value,
    ) -> QuestionnaireResponse {
        serde_json::from_value(json!({
            "resourceType": "QuestionnaireResponse", "id": id, "status": status,
            "questionnaire": format!("{CANONICAL}|1.0.0"), "subject": {"reference": format!("Patient/{patient}")},
            "authored": authored, "item": items
        }))
        .expect("valid QuestionnaireResponse")
    }

    fn yes(link_id: &str) -> serde_json::Value {
        json!({"linkId": link_id, "answer": [{"valueBoolean": true}]})
    }

    #[test]
    fn the_latest_completed_response_counts_and_in_progress_ones_are_ignored() {
        let responses = vec![
            response("old", "completed", "2026-11-20T10:00:00Z", "p", json!([yes("rf-calf-pain")])),
            response("new", "amended", "2026-11-23T10:00:00Z", "p", json!([yes("rf-fever")])),
            response("draft", "in-progress", "2026-11-24T10:00:00Z", "p", json!([yes("rf-warmth")])),
        ];
        let (state, _) = select(&responses, "p", &policy(), NOW);
        let IntakeState::Usable(intake) = state else { panic!("usable intake expected") };
        assert_eq!(intake.reference.as_deref(), Some("QuestionnaireResponse/new"));
        assert_eq!(intake.yes_no(Question::Fever), Some(true));
        assert_eq!(intake.yes_no(Question::CalfPain), None);
        assert_eq!(intake.yes_no(Question::Warmth), None);
    }

    #[test]
    fn answers_are_found_at_any_depth() {
        let items = json!([{"linkId": "grp-safety", "item": [
            {"linkId": "rf-calf-pain", "answer": [{"valueBoolean": true, "item": [yes("rf-warmth")]}]}
        ]}]);
        let (state, _) = select(&[response("r", "completed", "2026-11-24T08:00:00Z", "p", items)], "p", &policy(), NOW);
        let IntakeState::Usable(intake) = state else { panic!("usable") };
        assert_eq!(intake.yes_no(Question::CalfPain), Some(true));
        assert_eq!(intake.yes_no(Question::Warmth), Some(true));
    }

    #[test]
    fn a_response_about_another_patient_is_ignored_and_reported() {
        let responses = vec![response("r", "completed", "2026-11-24T08:00:00Z", "someone-else", json!([]))];
        let (state, notes) = select(&responses, "p", &policy(), NOW);
        assert_eq!(state, IntakeState::Missing);
        assert_eq!(notes.other_patient_responses, 1);
    }

    #[test]
    fn a_response_older_than_the_window_is_stale() {
        let responses = vec![response("r", "completed", "2026-11-01T08:00:00Z", "p", json!([]))];
        assert!(matches!(select(&responses, "p", &policy(), NOW).0, IntakeState::Stale { authored: Some(_) }));
    }

    #[test]
    fn an_answer_of_the_wrong_type_is_not_assessed_and_reported() {
        let items = json!([
            {"linkId": "rf-calf-pain", "answer": [{"valueString": "yes"}]},
            {"linkId": "duration-weeks", "answer": [{"valueInteger": -3}]},
            {"linkId": "side", "answer": [{"valueCoding": {"system": SIDE_SYSTEM, "code": "left"}}]}
        ]);
        let (state, notes) =
            select(&[response("r", "completed", "2026-11-24T08:00:00Z", "p", items)], "p", &policy(), NOW);
        let IntakeState::Usable(intake) = state else { panic!("usable") };
        assert_eq!(intake.yes_no(Question::CalfPain), None);
        assert_eq!(intake.duration_weeks(), None);
        assert_eq!(intake.side(), Some(Side::Left));
        assert_eq!(notes.wrong_type_answers, vec!["rf-calf-pain", "duration-weeks"]);
    }
}
