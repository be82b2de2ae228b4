//! The "Why" of a card: the answers and records behind it, the Wells table, and what could not
//! be read. Record entries are named by their display and date only; their ids go to the card's
//! `dev.popliteal.records` extension.

use serde_json::json;
use time::Date;

use super::DataReport;
use super::wording::{Text, Wording};
use crate::fhir::page::SkipReason;
use crate::fhir::record::{DataKey, Provenance};
use crate::knee::facts::RecordEvidence;
use crate::knee::finding::Evidence;
use crate::knee::question::{Question, Side};
use crate::knee::wells::{ItemSource, WellsScore};

pub fn format_date(date: Option<Date>, w: &Wording) -> String {
    date.map_or_else(|| w.phrases.date_unknown.to_string(), |d| d.to_string())
}

/// ` (left leg)`, ` (right leg)`, ` (both legs)` or nothing.
pub fn side_text(side: Option<Side>, w: &Wording) -> &str {
    match side {
        Some(Side::Left) => w.phrases.side_left.as_str(),
        Some(Side::Right) => w.phrases.side_right.as_str(),
        Some(Side::Both) => w.phrases.side_both.as_str(),
        None => w.phrases.side_unknown.as_str(),
    }
}

/// `left`, `right` or `both legs`.
pub fn laterality_text(side: Side, w: &Wording) -> &str {
    match side {
        Side::Left => w.phrases.laterality_left.as_str(),
        Side::Right => w.phrases.laterality_right.as_str(),
        Side::Both => w.phrases.laterality_both.as_str(),
    }
}

pub fn weeks_text(weeks: u32, w: &Wording) -> String {
    if weeks == 1 {
        w.phrases.weeks_one.to_string()
    } else {
        w.phrases.weeks_many.fill(&[("weeks", &weeks.to_string())])
    }
}

/// `a`, `a and b`, `a, b and c`.
pub fn join_with_and(items: &[&str], w: &Wording) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{}{}{last}", rest.join(w.phrases.list_comma.as_str()), w.phrases.list_and),
    }
}

/// A record entry as a clinician reads it: its display (and value) and its date.
pub fn entry(evidence: &RecordEvidence, w: &Wording) -> String {
    let what = if evidence.description.trim().is_empty() { w.phrases.uncoded.as_str() } else { &evidence.description };
    let date = format_date(evidence.date, w);
    match &evidence.value {
        Some(value) => w.phrases.record_entry_with_value.fill(&[("what", what), ("value", value), ("date", &date)]),
        None => w.phrases.record_entry.fill(&[("what", what), ("date", &date)]),
    }
}

/// Several record entries, `; `-separated.
pub fn entries(records: &[RecordEvidence], w: &Wording) -> String {
    records.iter().map(|r| entry(r, w)).collect::<Vec<_>>().join("; ")
}

/// One line per piece of evidence.
pub fn evidence_lines(evidence: &[Evidence], w: &Wording) -> Vec<String> {
    evidence
        .iter()
        .map(|e| match e {
            Evidence::Answered(question) => w.phrases.answered_yes.fill(&[("finding", w.finding(*question))]),
            Evidence::Recorded(record) => w.phrases.recorded.fill(&[("entry", &entry(record, w))]),
        })
        .collect()
}

/// The record entries among a piece of evidence (for the card's `dev.popliteal.records`).
pub fn records_of(evidence: &[Evidence]) -> impl Iterator<Item = &RecordEvidence> {
    evidence.iter().filter_map(|e| match e {
        Evidence::Recorded(record) => Some(record),
        Evidence::Answered(_) => None,
    })
}

fn source_text(item: &crate::knee::wells::WellsItem, w: &Wording) -> String {
    match item.source {
        ItemSource::Questionnaire => w.phrases.wells_source_questionnaire.to_string(),
        ItemSource::NotAssessed => w.phrases.wells_source_not_assessed.to_string(),
        ItemSource::Record => {
            let records: Vec<RecordEvidence> = records_of(item.finding.evidence()).cloned().collect();
            let mut text = w.phrases.wells_source_record.fill(&[("entries", &entries(&records, w))]);
            if item.question == Question::WellsActiveCancer {
                text.push_str(&format!(" ({})", w.phrases.cancer_from_record));
            }
            text
        }
    }
}

/// The verdict of a score: likely, unlikely, or incomplete (never "unlikely" then).
fn wells_reading(wells: &WellsScore, w: &Wording) -> String {
    let score = wells.score.to_string();
    let text: &Text = if !wells.complete {
        &w.phrases.wells_incomplete
    } else if wells.likely() {
        &w.phrases.wells_likely
    } else {
        &w.phrases.wells_unlikely
    };
    text.fill(&[("score", &score)])
}

/// The Wells score in one line, for DVT-risk cards other than the DVT card.
pub fn wells_line(wells: &WellsScore, validated: bool, w: &Wording) -> String {
    let reading = if validated { wells_reading(wells, w) } else { w.phrases.wells_not_validated.to_string() };
    format!("**{}: {}.** {}", w.phrases.wells_heading, reading, w.phrases.wells_see_dvt_card)
}

/// The Wells score as markdown: heading with the reading (or, where Wells is not validated, a
/// heading that says so and gives no verdict), one row per item, missing items named.
pub fn wells_table(wells: &WellsScore, validated: bool, w: &Wording) -> String {
    let mut text = if validated {
        format!("**{}: {}**", w.phrases.wells_heading, wells_reading(wells, w))
    } else {
        format!("**{}**", w.phrases.wells_not_validated)
    };
    text.push_str("\n\n");
    text.push_str(w.phrases.wells_table_header.as_str());
    for item in &wells.items {
        text.push_str(&format!("\n| {} | {} | {} |", w.finding(item.question), item.points, source_text(item, w)));
    }
    let missing: Vec<&str> = wells.missing().map(|q| w.finding(q)).collect();
    if validated && !missing.is_empty() {
        text.push_str("\n\n");
        text.push_str(&w.phrases.wells_missing.fill(&[("items", &missing.join("; "))]));
    }
    text
}

/// The `dev.popliteal.wells` extension.
pub fn wells_extension(wells: &WellsScore) -> serde_json::Value {
    json!({
        "score": wells.score,
        "complete": wells.complete,
        "likely": wells.likely(),
        "items": wells.items.iter().map(|item| json!({
            "item": item.question.link_id(),
            "points": item.points,
            "source": item.source.code(),
        })).collect::<Vec<_>>(),
    })
}

/// How the card names a part of the record.
pub fn key_text(key: DataKey, w: &Wording) -> &str {
    let keys = &w.data_keys;
    match key {
        DataKey::Patient => keys.patient.as_str(),
        DataKey::QuestionnaireResponses => keys.questionnaire_responses.as_str(),
        DataKey::Conditions => keys.conditions.as_str(),
        DataKey::Observations => keys.observations.as_str(),
        DataKey::Medications => keys.medications.as_str(),
        DataKey::ServiceRequests => keys.service_requests.as_str(),
        DataKey::Procedures => keys.procedures.as_str(),
    }
}

/// The parts of the record that could not be read in full, as the card names them.
pub fn incomplete_data(report: &DataReport<'_>, w: &Wording) -> String {
    let keys: Vec<&str> =
        report.provenance.iter().filter(|(_, p)| !p.is_complete()).map(|(key, _)| key_text(*key, w)).collect();
    keys.join(", ")
}

/// What could not be read, line by line (keys and counts; never content, never ids: those go to
/// the `dev.popliteal.skipped` extension).
pub fn data_report_lines(report: &DataReport<'_>, w: &Wording) -> Vec<String> {
    let d = &w.data;
    let mut lines = Vec::new();
    let named = |filter: fn(Provenance) -> bool| -> Vec<&str> {
        report.provenance.iter().filter(|(_, p)| filter(*p)).map(|(key, _)| key_text(*key, w)).collect()
    };
    let missing = named(Provenance::is_missing);
    if !missing.is_empty() {
        lines.push(d.unavailable.fill(&[("data", &missing.join(", "))]));
    }
    let partial = named(|p| matches!(p, Provenance::Partial(_)));
    if !partial.is_empty() {
        lines.push(d.partial.fill(&[("data", &partial.join(", "))]));
    }
    for key in DataKey::ALL {
        for (reason, text) in [(SkipReason::Unreadable, &d.skipped), (SkipReason::ModifierExtension, &d.modifier)] {
            let skipped: Vec<_> =
                report.skipped.iter().filter(|(k, s)| k == key && s.reason == reason).map(|(_, s)| s).collect();
            if skipped.is_empty() {
                continue;
            }
            let count = skipped.len();
            lines.push(text.fill(&[
                ("count", &count.to_string()),
                ("resource", key.resource_type()),
                ("plural", if count == 1 { "y" } else { "ies" }),
                ("data", key_text(*key, w)),
            ]));
        }
    }
    if report.intake.other_patient_responses > 0 {
        lines.push(d.other_patient.fill(&[("count", &report.intake.other_patient_responses.to_string())]));
    }
    if !report.intake.wrong_type_answers.is_empty() {
        lines.push(d.wrong_type.fill(&[("link_ids", &report.intake.wrong_type_answers.join(", "))]));
    }
    if report.draft_orders_skipped > 0 {
        lines.push(d.draft_orders_skipped.fill(&[("count", &report.draft_orders_skipped.to_string())]));
    }
    lines
}

/// The `dev.popliteal.skipped` extension: which resources were skipped, and why (ids only).
pub fn skipped_extension(report: &DataReport<'_>) -> Option<serde_json::Value> {
    if report.skipped.is_empty() {
        return None;
    }
    Some(serde_json::Value::Array(
        report
            .skipped
            .iter()
            .map(|(key, skipped)| {
                let resource = match &skipped.id {
                    Some(id) => format!("{}/{id}", skipped.resource_type),
                    None => skipped.resource_type.clone(),
                };
                let reason = match skipped.reason {
                    SkipReason::Unreadable => "unreadable",
                    SkipReason::ModifierExtension => "modifier-extension",
                };
                json!({"key": key.prefetch_key(), "resource": resource, "reason": reason})
            })
            .collect(),
    ))
}
