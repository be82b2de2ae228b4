//! The "Why" of a card: the answers and records behind it, and the Wells table.

use serde_json::json;
use time::Date;

use super::wording::{Wording, fill};
use crate::fhir::intake::IntakeNotes;
use crate::fhir::record::DataGaps;
use crate::knee::facts::RecordEvidence;
use crate::knee::finding::Evidence;
use crate::knee::question::Question;
use crate::knee::wells::{ItemSource, WellsScore};

pub fn format_date(date: Option<Date>) -> String {
    date.map_or_else(|| "date unknown".to_owned(), |d| d.to_string())
}

/// `description (Reference, date)`.
pub fn record_text(evidence: &RecordEvidence) -> String {
    format!("{} ({}, {})", evidence.description, evidence.reference, format_date(evidence.date))
}

/// One line per piece of evidence.
pub fn evidence_lines(evidence: &[Evidence], w: &Wording) -> Vec<String> {
    evidence
        .iter()
        .map(|e| match e {
            Evidence::Answered(question) => format!("{}: yes ({})", w.finding(*question), w.phrase("intake")),
            Evidence::Recorded(record) => format!("{} ({})", record_text(record), w.phrase("record")),
        })
        .collect()
}

fn source_text(item: &crate::knee::wells::WellsItem, w: &Wording) -> String {
    match item.source {
        ItemSource::Questionnaire => w.phrase("wells_source_questionnaire").to_owned(),
        ItemSource::NotAssessed => w.phrase("wells_source_not_assessed").to_owned(),
        ItemSource::Record => {
            let records: Vec<String> = item
                .finding
                .evidence()
                .iter()
                .filter_map(|e| match e {
                    Evidence::Recorded(r) => Some(record_text(r)),
                    Evidence::Answered(_) => None,
                })
                .collect();
            let mut text = format!("{}: {}", w.phrase("wells_source_record"), records.join("; "));
            if item.question == Question::WellsActiveCancer {
                text.push_str(&format!(" ({})", w.phrase("cancer_from_record")));
            }
            text
        }
    }
}

fn wells_reading(wells: &WellsScore, w: &Wording) -> String {
    let score = wells.score.to_string();
    if !wells.complete {
        fill(w.phrase("wells_incomplete"), &[("score", &score)])
    } else if wells.likely() {
        fill(w.phrase("wells_likely"), &[("score", &score)])
    } else {
        fill(w.phrase("wells_unlikely"), &[("score", &score)])
    }
}

/// The Wells score in one line, for DVT-risk cards other than the DVT card.
pub fn wells_line(wells: &WellsScore, w: &Wording) -> String {
    format!("**{}: {}.** {}", w.phrase("wells_heading"), wells_reading(wells, w), w.phrase("wells_see_dvt_card"))
}

/// The Wells score as markdown: heading with the reading, one row per item, missing items named.
pub fn wells_table(wells: &WellsScore, w: &Wording) -> String {
    let reading = wells_reading(wells, w);
    let mut text =
        format!("**{}: {}**\n\n| Item | Points | Source |\n|---|---|---|", w.phrase("wells_heading"), reading);
    for item in &wells.items {
        text.push_str(&format!("\n| {} | {} | {} |", w.finding(item.question), item.points, source_text(item, w)));
    }
    let missing: Vec<&str> = wells.missing().map(|q| w.finding(q)).collect();
    if !missing.is_empty() {
        text.push_str("\n\n");
        text.push_str(&fill(w.phrase("wells_missing"), &[("items", &missing.join("; "))]));
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

/// What could not be read, line by line (keys, counts and ids; never content).
pub fn data_report_lines(gaps: &DataGaps, intake: &IntakeNotes, w: &Wording) -> Vec<String> {
    const T: &str = "data-unavailable";
    let mut lines = Vec::new();
    if !gaps.unavailable.is_empty() {
        let data: Vec<&str> = gaps.unavailable.iter().map(|(key, _)| key.description()).collect();
        lines.push(fill(w.text(T, "unavailable"), &[("data", &data.join(", "))]));
    }
    let mut keys: Vec<_> = gaps.skipped.iter().map(|(key, _)| *key).collect();
    keys.dedup();
    for key in keys {
        let skipped: Vec<_> = gaps.skipped.iter().filter(|(k, _)| *k == key).map(|(_, s)| s).collect();
        let ids: Vec<String> =
            skipped.iter().filter_map(|s| s.id.as_ref().map(|id| format!("{}/{id}", s.resource_type))).collect();
        let ids = if ids.is_empty() { String::new() } else { format!(": {}", ids.join(", ")) };
        let count = skipped.len();
        lines.push(fill(
            w.text(T, "skipped"),
            &[
                ("count", &count.to_string()),
                ("resource", key.resource_type()),
                ("plural", if count == 1 { "y" } else { "ies" }),
                ("data", key.description()),
                ("ids", &ids),
            ],
        ));
    }
    if !gaps.more_pages.is_empty() {
        let data: Vec<&str> = gaps.more_pages.iter().map(|key| key.description()).collect();
        lines.push(fill(w.text(T, "more_pages"), &[("data", &data.join(", "))]));
    }
    if intake.other_patient_responses > 0 {
        lines.push(fill(w.text(T, "other_patient"), &[("count", &intake.other_patient_responses.to_string())]));
    }
    if !intake.wrong_type_answers.is_empty() {
        lines.push(fill(w.text(T, "wrong_type"), &[("link_ids", &intake.wrong_type_answers.join(", "))]));
    }
    lines
}
