//! Assessment -> CDS Hooks cards: wording (from `cds-hooks/cards.toml`), evidence, the Wells
//! extension, suggestions and links. Cards come most urgent first; an order is suggested once
//! per answer, on the most urgent card that needs it.

pub mod orders;
pub mod why;
pub mod wording;

use std::cmp::Reverse;

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ApiError;
use crate::fhir::intake::IntakeNotes;
use crate::fhir::record::{DataGaps, DataKey};
use crate::knee::dvt::{DDimerReading, DvtAssessment, Pathway, SpecialPopulation};
use crate::knee::facts::{OrderState, RecordEvidence};
use crate::knee::order_review::{OrderReview, Uncovered};
use crate::knee::orders::ProposedOrder;
use crate::knee::patterns::{Pattern, PatternMatch};
use crate::knee::question::Side;
use crate::knee::red_flags::{RedFlag, RedFlagKind};
use crate::knee::wells::WellsScore;
use crate::knee::{Assessment, Evaluation, Urgency};
use crate::protocol::card::{Card, Indicator, Link, LinkType, SelectionBehavior, Source};
use crate::terminology::{Coding, Terminology};
use orders::OrderContext;
use why::{evidence_lines, format_date, wells_extension, wells_table};
use wording::{Wording, fill};

/// What the card builder needs besides the assessment.
#[derive(Debug, Clone, Copy)]
pub struct CardContext<'a> {
    pub wording: &'a Wording,
    pub terminology: &'a Terminology,
    pub order: OrderContext<'a>,
    /// Where the Questionnaire is served (for the intake card's link).
    pub questionnaire_url: &'a str,
    pub stale_days: i64,
}

/// What could not be read, for the `data-unavailable` card.
#[derive(Debug, Clone, Copy)]
pub struct DataReport<'a> {
    pub gaps: &'a DataGaps,
    pub intake: &'a IntakeNotes,
    /// Entries of `context.draftOrders` that could not be read (order hooks).
    pub draft_orders_skipped: usize,
}

impl DataReport<'_> {
    fn is_empty(&self) -> bool {
        self.gaps.is_empty()
            && self.intake.other_patient_responses == 0
            && self.intake.wrong_type_answers.is_empty()
            && self.draft_orders_skipped == 0
    }

    /// Whether the EHR sent answers that could not be used: another patient's, or a
    /// QuestionnaireResponse that could not be read. Reported even when there is nothing else to
    /// say: silence would hide that the intake sent was not read.
    fn intake_not_read(&self) -> bool {
        self.intake.other_patient_responses > 0
            || self.gaps.skipped.iter().any(|(key, _)| *key == DataKey::QuestionnaireResponses)
    }
}

/// A card before ordering, de-duplication and rendering.
struct Draft {
    topic: &'static str,
    urgency: Urgency,
    summary: String,
    why: Vec<String>,
    wells: Option<WellsScore>,
    /// Whether `wells` is shown item by item (the DVT card) or as one line (other DVT-risk cards).
    wells_table: bool,
    action: String,
    notes: Vec<String>,
    orders: Vec<ProposedOrder>,
    links: Vec<Link>,
}

impl Draft {
    fn new(topic: &'static str, urgency: Urgency, summary: String, action: String) -> Draft {
        Draft {
            topic,
            urgency,
            summary,
            why: Vec::new(),
            wells: None,
            wells_table: false,
            action,
            notes: Vec::new(),
            orders: Vec::new(),
            links: Vec::new(),
        }
    }
}

fn side_text(wording: &Wording, side: Option<Side>) -> &str {
    match side {
        Some(Side::Left) => wording.phrase("side_left"),
        Some(Side::Right) => wording.phrase("side_right"),
        Some(Side::Both) => wording.phrase("side_both"),
        None => wording.phrase("side_unknown"),
    }
}

fn weeks_text(weeks: u32) -> String {
    if weeks == 1 { "1 week".to_owned() } else { format!("{weeks} weeks") }
}

fn describe_records(records: &[RecordEvidence]) -> String {
    records.iter().map(why::record_text).collect::<Vec<_>>().join("; ")
}

fn dvt_draft(dvt: &DvtAssessment, side: Option<Side>, w: &Wording) -> Draft {
    const T: &str = "dvt-suspected";
    let score = dvt.wells.score.to_string();
    let side_text = side_text(w, side);
    let summary_key = match dvt.pathway {
        Pathway::DuplexDirect => "summary_special",
        Pathway::ConsiderAlternative => "summary_negative_d_dimer",
        _ if dvt.wells.likely() && dvt.wells.complete => "summary_likely",
        _ if dvt.wells.likely() => "summary_incomplete_likely",
        _ if dvt.wells.complete => "summary_unlikely",
        _ => "summary_incomplete",
    };
    let summary = fill(w.text(T, summary_key), &[("side", side_text), ("score", &score)]);
    let action_key = match dvt.pathway {
        Pathway::DuplexDirect => "duplex-direct",
        Pathway::DuplexFirst => "duplex-first",
        Pathway::DuplexAnticoagulated => "duplex-anticoagulated",
        Pathway::DuplexAfterPositiveDDimer => "duplex-after-positive-d-dimer",
        Pathway::DDimerFirst => "d-dimer-first",
        Pathway::ConsiderAlternative => "consider-alternative",
        Pathway::CompleteTheScore => "complete-the-score",
    };
    let mut draft = Draft::new(T, dvt.urgency, summary, w.text(T, action_key).to_owned());
    draft.why = evidence_lines(&dvt.signs, w);
    draft.wells = Some(dvt.wells.clone());
    draft.wells_table = true;
    for population in &dvt.special_populations {
        draft.notes.push(match population {
            SpecialPopulation::PregnantOrPostpartum => w.phrase("special_pregnancy").to_owned(),
            SpecialPopulation::UnderEighteen(age) => fill(w.phrase("special_under_18"), &[("age", &age.to_string())]),
        });
    }
    if !dvt.anticoagulants.is_empty() {
        draft.notes.push(fill(w.phrase("anticoagulated"), &[("medications", &describe_records(&dvt.anticoagulants))]));
    }
    if let Some(d_dimer) = &dvt.d_dimer {
        let date = format_date(d_dimer.result.evidence.date);
        let result = why::record_text(&d_dimer.result.evidence);
        let note = match &d_dimer.reading {
            DDimerReading::Positive { cutoff, age_adjusted } | DDimerReading::Negative { cutoff, age_adjusted } => {
                let key = if matches!(d_dimer.reading, DDimerReading::Positive { .. }) {
                    "d_dimer_positive"
                } else {
                    "d_dimer_negative"
                };
                let adjusted = if *age_adjusted { w.phrase("age_adjusted") } else { "" };
                fill(
                    w.phrase(key),
                    &[
                        ("result", &result),
                        ("date", &date),
                        ("cutoff", &format!("{cutoff:.0}")),
                        ("adjusted", adjusted),
                    ],
                )
            }
            DDimerReading::NotComparable => {
                fill(w.phrase("d_dimer_not_comparable"), &[("result", &result), ("date", &date)])
            }
        };
        draft.notes.push(note);
    }
    if let Some(order) = &dvt.duplex_on_order {
        draft.notes.push(duplex_on_order_note(order, w));
    }
    for order in &dvt.other_duplex {
        let state = match order.state {
            OrderState::Pending => "on order",
            OrderState::Completed => "completed",
        };
        draft
            .notes
            .push(fill(w.phrase("duplex_other"), &[("order", &why::record_text(&order.evidence)), ("state", state)]));
        if order.state == OrderState::Completed {
            draft.notes.push(w.phrase("duplex_done_note").to_owned());
        }
    }
    draft.orders = dvt.orders.clone();
    draft
}

fn duplex_on_order_note(order: &crate::knee::facts::DuplexOrder, w: &Wording) -> String {
    fill(w.phrase("duplex_on_order"), &[("order", &why::record_text(&order.evidence))])
}

fn red_flag_draft(flag: &RedFlag, evaluation: &Evaluation, w: &Wording) -> Draft {
    let topic = match flag.kind {
        RedFlagKind::BakerCystRupture => "baker-cyst-rupture",
        RedFlagKind::PulmonaryEmbolism => "pulmonary-embolism",
        RedFlagKind::LimbIschaemia => "limb-ischaemia",
        RedFlagKind::Infection => "infection",
        RedFlagKind::NeuroDeficit => "neuro-deficit",
        RedFlagKind::CaudaEquina => "cauda-equina",
        RedFlagKind::PoplitealAneurysm => "popliteal-aneurysm",
    };
    let summary_key = if flag.kind == RedFlagKind::NeuroDeficit && flag.urgency == Urgency::Critical {
        "summary_progressive"
    } else {
        "summary"
    };
    let summary = fill(w.text(topic, summary_key), &[("side", side_text(w, evaluation.side))]);
    let mut draft = Draft::new(topic, flag.urgency, summary, w.text(topic, "action").to_owned());
    draft.why = evidence_lines(&flag.evidence, w);
    if flag.kind.concerns_dvt_risk() {
        draft.wells = Some(evaluation.wells.clone());
        // Item by item here unless the DVT card shows it.
        draft.wells_table = evaluation.dvt.is_none();
    }
    if flag.kind == RedFlagKind::BakerCystRupture {
        if let Some(order) = evaluation.dvt.as_ref().and_then(|d| d.duplex_on_order.as_ref()) {
            draft.notes.push(duplex_on_order_note(order, w));
        }
        if !evaluation.anticoagulants.is_empty() {
            draft.notes.push(fill(
                w.phrase("anticoagulated"),
                &[("medications", &describe_records(&evaluation.anticoagulants))],
            ));
        }
    }
    draft.orders = flag.orders.clone();
    draft
}

fn pattern_draft(found: &PatternMatch, evaluation: &Evaluation, w: &Wording) -> Draft {
    let topic = match found.pattern {
        Pattern::BakerCyst => "baker-cyst",
        Pattern::HamstringTendinopathy => "hamstring-tendinopathy",
        Pattern::NervePain => "nerve-pain",
    };
    let summary = fill(w.text(topic, "summary"), &[("side", side_text(w, evaluation.side))]);
    let mut draft = Draft::new(topic, found.urgency, summary, w.text(topic, "action").to_owned());
    draft.why = evidence_lines(&found.cardinal, w);
    draft.why.extend(evidence_lines(&found.supporting, w));
    for line in evidence_lines(&found.against, w) {
        draft.why.push(format!("against: {line}"));
    }
    if let Some(weeks) = evaluation.duration_weeks {
        draft.why.push(format!(
            "{}: {} (intake)",
            w.finding(crate::knee::question::Question::DurationWeeks),
            weeks_text(weeks)
        ));
    }
    if found.pattern == Pattern::BakerCyst && evaluation.dvt.is_some() {
        draft.notes.push(w.phrase("coexist").to_owned());
    }
    draft.orders = found.orders.clone();
    draft
}

fn evaluation_drafts(evaluation: &Evaluation, w: &Wording) -> Vec<Draft> {
    let mut drafts = Vec::new();
    if let Some(dvt) = &evaluation.dvt {
        drafts.push(dvt_draft(dvt, evaluation.side, w));
    }
    drafts.extend(evaluation.red_flags.iter().map(|flag| red_flag_draft(flag, evaluation, w)));
    drafts.extend(evaluation.patterns.iter().map(|found| pattern_draft(found, evaluation, w)));

    if let Some(book) = &evaluation.book_evaluation {
        const T: &str = "book-evaluation";
        let mut reasons = Vec::new();
        if let Some(weeks) = book.duration_weeks {
            reasons.push(fill(w.text(T, "reason_duration"), &[("weeks", &weeks_text(weeks))]));
        }
        if book.giving_way {
            reasons.push(w.text(T, "reason_giving_way").to_owned());
        }
        let summary = fill(w.text(T, "summary"), &[("reasons", &reasons.join("; "))]);
        let mut draft = Draft::new(T, book.urgency, summary, w.text(T, "action").to_owned());
        draft.why = reasons.iter().map(|r| format!("{r} (intake)")).collect();
        drafts.push(draft);
    }

    if evaluation.patterns.is_empty() {
        const T: &str = "no-clear-pattern";
        if evaluation.pattern_questions_answered {
            drafts.push(Draft::new(T, Urgency::Info, w.text(T, "summary").to_owned(), w.text(T, "action").to_owned()));
        } else if drafts.is_empty() {
            let mut draft =
                Draft::new(T, Urgency::Info, w.text(T, "summary").to_owned(), w.text(T, "action").to_owned());
            draft.why.push(w.text(T, "unanswered").to_owned());
            drafts.push(draft);
        }
    }
    drafts
}

fn intake_draft(stale: Option<Option<OffsetDateTime>>, knee_pain: &[RecordEvidence], ctx: &CardContext<'_>) -> Draft {
    const T: &str = "intake-missing";
    let w = ctx.wording;
    let summary = match stale {
        None => w.text(T, "summary_missing").to_owned(),
        Some(Some(authored)) => fill(w.text(T, "summary_stale"), &[("date", &format_date(Some(authored.date())))]),
        Some(None) => w.text(T, "summary_stale_undated").to_owned(),
    };
    let mut draft = Draft::new(T, Urgency::Info, summary, w.text(T, "action").to_owned());
    if !knee_pain.is_empty() {
        draft.why.push(fill(w.text(T, "knee_pain"), &[("conditions", &describe_records(knee_pain))]));
    }
    if let Some(authored) = stale {
        draft.why.push(fill(
            w.text(T, "stale"),
            &[("date", &format_date(authored.map(|a| a.date()))), ("days", &ctx.stale_days.to_string())],
        ));
    }
    draft.links.push(Link {
        label: w.text(T, "link_label").to_owned(),
        url: ctx.questionnaire_url.to_owned(),
        link_type: LinkType::Absolute,
    });
    draft
}

fn data_draft(report: &DataReport<'_>, w: &Wording) -> Draft {
    const T: &str = "data-unavailable";
    let mut draft = Draft::new(T, Urgency::Info, w.text(T, "summary").to_owned(), String::new());
    draft.why = why::data_report_lines(report.gaps, report.intake, w);
    if report.draft_orders_skipped > 0 {
        draft.why.push(fill(w.text(T, "draft_orders_skipped"), &[("count", &report.draft_orders_skipped.to_string())]));
    }
    draft.action = fill(
        w.phrase("not_assessed_record"),
        &[("data", &report.gaps.unavailable.iter().map(|(key, _)| key.description()).collect::<Vec<_>>().join(", "))],
    );
    if report.gaps.unavailable.is_empty() {
        draft.action.clear();
    }
    draft
}

/// Suggests each order once, on the first (most urgent) card that needs it.
fn suggest_each_order_once(drafts: &mut [Draft], ctx: &CardContext<'_>) {
    let mut suggested: Vec<(ProposedOrder, &'static str)> = Vec::new();
    for draft in drafts.iter_mut() {
        let mut kept = Vec::new();
        for order in std::mem::take(&mut draft.orders) {
            let earlier = suggested.iter().find(|(o, _)| o.kind == order.kind && o.side == order.side);
            match earlier {
                Some((_, topic)) => {
                    let label = orders::label(&order, ctx.terminology, ctx.wording);
                    let card = ctx.wording.topic(topic).display.clone();
                    draft.notes.push(fill(ctx.wording.phrase("see_other_card"), &[("order", &label), ("card", &card)]));
                }
                None => {
                    suggested.push((order.clone(), draft.topic));
                    kept.push(order);
                }
            }
        }
        draft.orders = kept;
    }
}

fn indicator(urgency: Urgency) -> Indicator {
    match urgency {
        Urgency::Info => Indicator::Info,
        Urgency::Warning => Indicator::Warning,
        Urgency::Critical => Indicator::Critical,
    }
}

/// Summaries are one sentence under 140 characters: cut at a word boundary if wording ever
/// grows past it (a test keeps the shipped wording inside the limit).
fn limit_summary(summary: String) -> String {
    const MAX: usize = 139;
    if summary.chars().count() <= MAX {
        return summary;
    }
    let cut: String = summary.chars().take(MAX - 1).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head).to_owned();
    format!("{cut}…")
}

fn render(draft: Draft, ctx: &CardContext<'_>) -> Result<Card, ApiError> {
    let w = ctx.wording;
    let topic = w.topic(draft.topic);
    let mut detail = Vec::new();
    if !draft.why.is_empty() {
        detail.push(format!(
            "**{}**\n\n{}",
            w.phrase("why"),
            draft.why.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n")
        ));
    }
    if let Some(wells) = &draft.wells {
        detail.push(if draft.wells_table { wells_table(wells, w) } else { why::wells_line(wells, w) });
    }
    if !draft.action.is_empty() {
        detail.push(format!("**{}**\n\n{}", w.phrase("what_to_do"), draft.action));
    }
    detail.extend(draft.notes);
    let references: Vec<_> = topic.references.iter().filter_map(|r| w.reference(r)).collect();
    let source = match references.first() {
        Some(primary) => {
            Source { label: primary.label.clone(), url: Some(primary.url.clone()), topic: topic_coding(draft.topic, w) }
        }
        None => Source { label: w.source_label.clone(), url: None, topic: topic_coding(draft.topic, w) },
    };
    if let Some(primary) = references.first() {
        detail.push(format!("Source: [{}]({})", primary.label, primary.url));
    }
    let mut links = draft.links;
    links.extend(references.iter().map(|r| Link {
        label: r.label.clone(),
        url: r.url.clone(),
        link_type: LinkType::Absolute,
    }));
    let default_reason = topic.display.clone();
    let suggestions = draft
        .orders
        .iter()
        .map(|order| orders::suggestion(order, &default_reason, ctx.order, ctx.terminology, w))
        .collect::<Result<Vec<_>, _>>()?;
    let extension = draft.wells.as_ref().map(|wells| {
        let mut map = serde_json::Map::new();
        map.insert("dev.popliteal.wells".to_owned(), wells_extension(wells));
        map
    });
    Ok(Card {
        uuid: Uuid::new_v4(),
        summary: limit_summary(draft.summary),
        detail: (!detail.is_empty()).then(|| detail.join("\n\n")),
        indicator: indicator(draft.urgency),
        source,
        selection_behavior: (!suggestions.is_empty()).then_some(SelectionBehavior::Any),
        suggestions,
        override_reasons: topic.override_reasons.iter().map(|r| w.override_reason(r)).collect(),
        links,
        extension,
    })
}

fn topic_coding(topic: &str, w: &Wording) -> Coding {
    Coding { system: w.topic_system.clone(), code: topic.to_owned(), display: Some(w.topic(topic).display.clone()) }
}

/// Builds the cards for an assessment, most urgent first.
#[tracing::instrument(name = "build cards", skip_all)]
pub fn build(assessment: &Assessment, report: &DataReport<'_>, ctx: &CardContext<'_>) -> Result<Vec<Card>, ApiError> {
    let mut drafts = match assessment {
        // Silence for patients we have nothing to say about, unless the EHR sent answers that
        // could not be used (another patient's, or unreadable): that must be reported.
        Assessment::NothingToSay if !report.intake_not_read() => return Ok(Vec::new()),
        Assessment::NothingToSay => Vec::new(),
        Assessment::IntakeNeeded { stale, knee_pain_on_record } => vec![intake_draft(*stale, knee_pain_on_record, ctx)],
        Assessment::Evaluated(evaluation) => evaluation_drafts(evaluation, ctx.wording),
    };
    // Patterns keep their ranking among themselves: they share one rank.
    let pattern_rank = ctx.wording.rank("baker-cyst");
    let rank = |topic: &str| match topic {
        "baker-cyst" | "hamstring-tendinopathy" | "nerve-pain" => pattern_rank,
        other => ctx.wording.rank(other),
    };
    drafts.sort_by_key(|d| (Reverse(d.urgency), rank(d.topic)));
    if !report.is_empty() {
        drafts.push(data_draft(report, ctx.wording));
    }
    suggest_each_order_once(&mut drafts, ctx);
    drafts.into_iter().map(|draft| render(draft, ctx)).collect()
}

fn order_draft(
    topic: &'static str,
    summary: String,
    uncovered: &Uncovered,
    evidence: Vec<String>,
    wells: Option<&WellsScore>,
    w: &Wording,
) -> Draft {
    let mut draft = Draft::new(topic, uncovered.urgency, summary, w.text(topic, "order_action").to_owned());
    draft.why = evidence;
    if let Some(wells) = wells {
        draft.wells = Some(wells.clone());
        draft.wells_table = true;
    }
    if !uncovered.knee_treatments.is_empty() {
        let orders: Vec<&str> = uncovered.knee_treatments.iter().map(|d| d.description.as_str()).collect();
        draft.notes.push(fill(w.text(topic, "order_knee_treatments"), &[("orders", &orders.join("; "))]));
    }
    draft.orders = uncovered.missing.clone();
    draft
}

/// Builds the cards of an order hook: open red flags the drafts do not answer.
#[tracing::instrument(name = "build order review cards", skip_all)]
pub fn build_order_review(
    review: &OrderReview,
    report: &DataReport<'_>,
    ctx: &CardContext<'_>,
) -> Result<Vec<Card>, ApiError> {
    let w = ctx.wording;
    let mut drafts = match review {
        OrderReview::NothingToSay if !report.intake_not_read() => return Ok(Vec::new()),
        OrderReview::NothingToSay => Vec::new(),
        OrderReview::IntakeNeeded(Assessment::IntakeNeeded { stale, knee_pain_on_record }) => {
            let mut draft = intake_draft(*stale, knee_pain_on_record, ctx);
            if stale.is_none() && knee_pain_on_record.is_empty() {
                draft.summary = w.text("intake-missing", "summary_orders").to_owned();
            }
            vec![draft]
        }
        OrderReview::IntakeNeeded(_) => Vec::new(),
        OrderReview::Reviewed { evaluation, dvt, nerve_deficit, other_red_flags } => {
            let mut drafts = Vec::new();
            if let (Some(uncovered), Some(assessment)) = (dvt, evaluation.dvt.as_ref()) {
                let key = if uncovered.missing.iter().any(|o| o.kind == crate::knee::orders::OrderKind::DDimer) {
                    "order_summary_d_dimer"
                } else {
                    "order_summary"
                };
                let summary = fill(
                    w.text("dvt-suspected", key),
                    &[("side", side_text(w, evaluation.side)), ("score", &assessment.wells.score.to_string())],
                );
                let evidence = evidence_lines(&assessment.signs, w);
                drafts.push(order_draft("dvt-suspected", summary, uncovered, evidence, Some(&assessment.wells), w));
            }
            if let Some(uncovered) = nerve_deficit {
                let evidence: Vec<String> = evaluation
                    .red_flags
                    .iter()
                    .filter(|f| matches!(f.kind, RedFlagKind::NeuroDeficit | RedFlagKind::CaudaEquina))
                    .flat_map(|f| evidence_lines(&f.evidence, w))
                    .collect();
                let summary = w.text("neuro-deficit", "order_summary").to_owned();
                drafts.push(order_draft("neuro-deficit", summary, uncovered, evidence, None, w));
            }
            drafts.extend(other_red_flags.iter().map(|flag| red_flag_draft(flag, evaluation, w)));
            drafts
        }
    };
    drafts.sort_by_key(|d| (Reverse(d.urgency), ctx.wording.rank(d.topic)));
    if !report.is_empty() {
        drafts.push(data_draft(report, ctx.wording));
    }
    suggest_each_order_once(&mut drafts, ctx);
    drafts.into_iter().map(|draft| render(draft, ctx)).collect()
}

/// The response for an assessment, as JSON (used by tests and snapshots).
pub fn to_json(cards: &[Card]) -> serde_json::Value {
    json!({ "cards": cards })
}
