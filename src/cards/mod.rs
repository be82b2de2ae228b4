//! Assessment -> CDS Hooks cards: wording (from `cds-hooks/cards.toml`, typed), evidence, the
//! Wells extension, suggestions and links. Cards come most urgent first; each order is suggested
//! once per answer, on the most urgent card that needs it. Every summary states the plan its card
//! recommends; pattern cards beside a critical red flag wait for it to be excluded.

pub mod orders;
pub mod why;
pub mod wording;

use std::cmp::Reverse;

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ApiError;
use crate::fhir::intake::IntakeNotes;
use crate::fhir::page::SkippedResource;
use crate::fhir::record::{DataKey, Provenance};
use crate::knee::dvt::{DDimerReading, DvtAssessment, Pathway, SpecialPopulation};
use crate::knee::facts::{DuplexOrder, OrderState, RecordEvidence};
use crate::knee::finding::Evidence;
use crate::knee::order_review::{OrderReview, Uncovered};
use crate::knee::orders::{OrderKind, ProposedOrder};
use crate::knee::patterns::{Pattern, PatternMatch};
use crate::knee::question::{Question, Side};
use crate::knee::red_flags::{RedFlag, RedFlagKind};
use crate::knee::wells::WellsScore;
use crate::knee::{Assessment, Evaluation, Hazard, Urgency};
use crate::protocol::card::{Card, Indicator, Link, LinkType, SelectionBehavior, Source};
use crate::terminology::{Coding, Terminology};
use orders::OrderContext;
use why::{
    entries, entry, evidence_lines, format_date, join_with_and, laterality_text, records_of, side_text, weeks_text,
    wells_extension, wells_line, wells_table,
};
use wording::{RedFlagWording, Reference, Text, Topic, Wording};

/// What the card builder needs besides the assessment.
#[derive(Debug, Clone, Copy)]
pub struct CardContext<'a> {
    pub wording: &'a Wording,
    pub terminology: &'a Terminology,
    pub order: OrderContext<'a>,
    /// Where the Questionnaire is served (for the intake card's link).
    pub questionnaire_url: &'a str,
    /// The intake app's launch URL and the `appContext` its link carries (the intake card's
    /// `smart` link).
    pub intake_launch_url: &'a str,
    pub intake_app_context: &'a str,
    pub stale_days: i64,
}

/// What could not be read, for the `data-unavailable` card.
#[derive(Debug, Clone, Copy)]
pub struct DataReport<'a> {
    pub provenance: &'a [(DataKey, Provenance)],
    pub skipped: &'a [(DataKey, SkippedResource)],
    pub intake: &'a IntakeNotes,
    /// Entries of `context.draftOrders` that could not be read (order hooks).
    pub draft_orders_skipped: usize,
}

impl DataReport<'_> {
    fn is_empty(&self) -> bool {
        self.provenance.iter().all(|(_, p)| p.is_complete())
            && self.skipped.is_empty()
            && self.intake.other_patient_responses == 0
            && self.intake.wrong_type_answers.is_empty()
            && self.draft_orders_skipped == 0
    }

    /// Whether the EHR sent answers that could not be used: another patient's, or a
    /// QuestionnaireResponse that could not be read. Reported even when there is nothing else to
    /// say: silence would hide that the intake sent was not read.
    fn intake_not_read(&self) -> bool {
        self.intake.other_patient_responses > 0
            || self.skipped.iter().any(|(key, _)| *key == DataKey::QuestionnaireResponses)
    }
}

/// How a card shows the Wells score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WellsView {
    /// Item by item (the DVT card, or a DVT-risk card when there is no DVT card).
    Table,
    /// One line pointing to the DVT card.
    Line,
}

/// A card before ordering, de-duplication and rendering.
struct Draft {
    topic: Topic,
    urgency: Urgency,
    summary: String,
    why: Vec<String>,
    wells: Option<(WellsScore, WellsView, bool)>,
    action: String,
    notes: Vec<String>,
    orders: Vec<ProposedOrder>,
    links: Vec<Link>,
    /// `ResourceType/id` of every record entry the card cites (never printed in its text).
    records: Vec<String>,
    extension: Vec<(&'static str, serde_json::Value)>,
}

impl Draft {
    fn new(topic: Topic, urgency: Urgency, summary: String, action: String) -> Draft {
        Draft {
            topic,
            urgency,
            summary,
            why: Vec::new(),
            wells: None,
            action,
            notes: Vec::new(),
            orders: Vec::new(),
            links: Vec::new(),
            records: Vec::new(),
            extension: Vec::new(),
        }
    }

    /// Notes that the card cites these record entries (their ids go to the extension).
    fn cite<'r>(&mut self, records: impl IntoIterator<Item = &'r RecordEvidence>) {
        for record in records {
            if !self.records.contains(&record.reference) {
                self.records.push(record.reference.clone());
            }
        }
    }

    /// The "Why" lines of a piece of evidence, citing its records.
    fn why_from(&mut self, evidence: &[Evidence], w: &Wording) {
        self.why.extend(evidence_lines(evidence, w));
        self.cite(records_of(evidence));
    }

    fn show_wells(&mut self, wells: &WellsScore, view: WellsView, validated: bool) {
        for item in &wells.items {
            self.cite(records_of(item.finding.evidence()));
        }
        self.wells = Some((wells.clone(), view, validated));
    }
}

fn red_flag_topic(kind: RedFlagKind) -> Topic {
    match kind {
        RedFlagKind::BakerCystRupture => Topic::BakerCystRupture,
        RedFlagKind::PulmonaryEmbolism => Topic::PulmonaryEmbolism,
        RedFlagKind::LimbIschaemia => Topic::LimbIschaemia,
        RedFlagKind::Infection => Topic::Infection,
        RedFlagKind::NeuroDeficit => Topic::NeuroDeficit,
        RedFlagKind::CaudaEquina => Topic::CaudaEquina,
        RedFlagKind::PoplitealAneurysm => Topic::PoplitealAneurysm,
    }
}

/// The wording of a red flag with one summary and one plan (all but the neurologic deficit).
fn red_flag_wording(kind: RedFlagKind, w: &Wording) -> Option<&RedFlagWording> {
    match kind {
        RedFlagKind::BakerCystRupture => Some(&w.rupture),
        RedFlagKind::PulmonaryEmbolism => Some(&w.pulmonary_embolism),
        RedFlagKind::LimbIschaemia => Some(&w.limb_ischaemia),
        RedFlagKind::Infection => Some(&w.infection),
        RedFlagKind::CaudaEquina => Some(&w.cauda_equina),
        RedFlagKind::PoplitealAneurysm => Some(&w.aneurysm),
        RedFlagKind::NeuroDeficit => None,
    }
}

/// "Once DVT and infection are excluded: ", naming the critical red flags a plan waits for.
fn once_excluded(hazards: &[Hazard], w: &Wording) -> String {
    let names: Vec<&str> = hazards
        .iter()
        .filter_map(|hazard| match hazard {
            Hazard::Dvt => Some(w.dvt.excluded.as_str()),
            Hazard::Flag(kind) => red_flag_wording(*kind, w).map(|r| r.excluded.as_str()),
        })
        .collect();
    let text = if names.len() == 1 { &w.phrases.once_excluded_one } else { &w.phrases.once_excluded_many };
    text.fill(&[("hazards", &join_with_and(&names, w))])
}

fn anticoagulated_note(draft: &mut Draft, medications: &[RecordEvidence], w: &Wording) {
    if !medications.is_empty() {
        draft.notes.push(w.phrases.anticoagulated.fill(&[("medications", &entries(medications, w))]));
        draft.cite(medications);
    }
}

fn duplex_on_order_note(draft: &mut Draft, order: &DuplexOrder, w: &Wording) {
    draft.notes.push(w.dvt.duplex_on_order.fill(&[("entry", &entry(&order.evidence, w))]));
    draft.cite([&order.evidence]);
}

/// The plan (for the summary) and the action (for the detail) of a DVT pathway.
fn pathway_texts(pathway: Pathway, w: &Wording) -> (&Text, &Text) {
    let d = &w.dvt;
    match pathway {
        Pathway::DuplexDirect => (&d.plan_duplex_direct, &d.action_duplex_direct),
        Pathway::DuplexLikely => (&d.plan_duplex, &d.action_duplex_likely),
        Pathway::DuplexAnticoagulated => (&d.plan_duplex_anticoagulated, &d.action_duplex_anticoagulated),
        Pathway::DuplexAfterPositiveDDimer => (&d.plan_duplex_positive_d_dimer, &d.action_duplex_positive_d_dimer),
        Pathway::DDimerFirst => (&d.plan_d_dimer_first, &d.action_d_dimer_first),
        Pathway::ConsiderAlternative => (&d.plan_consider_alternative, &d.action_consider_alternative),
        Pathway::ReadTheDDimer => (&d.plan_read_d_dimer, &d.action_read_d_dimer),
        Pathway::CompleteTheScore => (&d.plan_complete_score, &d.action_complete_score),
    }
}

/// The plan of the DVT card's summary: what the card recommends now.
fn dvt_plan(dvt: &DvtAssessment, w: &Wording) -> String {
    let d = &w.dvt;
    if dvt.duplex_on_order.is_some() && dvt.pathway != Pathway::ConsiderAlternative {
        return d.plan_duplex_on_order.to_string();
    }
    if let Some(scan) = &dvt.completed_scan {
        return d.plan_duplex_done.fill(&[("date", &format_date(scan.evidence.date, w))]);
    }
    pathway_texts(dvt.pathway, w).0.to_string()
}

fn dvt_draft(dvt: &DvtAssessment, side: Option<Side>, w: &Wording) -> Draft {
    let d = &w.dvt;
    let score = dvt.wells.score.to_string();
    let validated = dvt.special_populations.is_empty();
    let lead: &Text = if !validated {
        &d.lead_not_validated
    } else if dvt.wells.likely() && dvt.wells.complete {
        &d.lead_likely
    } else if dvt.wells.likely() {
        &d.lead_incomplete_likely
    } else if dvt.wells.complete {
        &d.lead_unlikely
    } else {
        &d.lead_incomplete
    };
    let summary = format!("{} {}", lead.fill(&[("side", side_text(side, w)), ("score", &score)]), dvt_plan(dvt, w));
    let (_, action) = pathway_texts(dvt.pathway, w);
    let mut draft = Draft::new(Topic::DvtSuspected, dvt.urgency, summary, action.to_string());
    draft.why_from(&dvt.signs, w);
    draft.show_wells(&dvt.wells, WellsView::Table, validated);
    for population in &dvt.special_populations {
        let note = match population {
            SpecialPopulation::PregnantOrPostpartum => {
                d.special_pregnancy.fill(&[("sources", &pregnancy_sources(dvt, w))])
            }
            SpecialPopulation::UnderEighteen(age) => d.special_under_18.fill(&[("age", &age.to_string())]),
        };
        draft.notes.push(note);
    }
    draft.cite(&dvt.pregnancy);
    anticoagulated_note(&mut draft, &dvt.anticoagulants, w);
    let cutoff = format!("{:.0}", dvt.cutoff.value);
    if let Some(d_dimer) = &dvt.d_dimer {
        let result = entry(&d_dimer.result.evidence, w);
        let text = match d_dimer.reading {
            _ if !dvt.anticoagulants.is_empty() => &d.d_dimer_anticoagulated,
            DDimerReading::Positive => &d.d_dimer_positive,
            DDimerReading::Negative => &d.d_dimer_negative,
            DDimerReading::NotInterpreted => &d.d_dimer_not_interpreted,
        };
        draft.notes.push(text.fill(&[("entry", &result), ("cutoff", &cutoff)]));
        draft.cite([&d_dimer.result.evidence]);
    }
    if dvt.orders.iter().any(|order| order.kind == OrderKind::DDimer) {
        let text = if dvt.cutoff.age_adjusted { &d.cutoff_age_adjusted } else { &d.cutoff };
        draft.notes.push(text.fill(&[("cutoff", &cutoff)]));
    }
    if let Some(order) = &dvt.duplex_on_order {
        duplex_on_order_note(&mut draft, order, w);
    }
    if let Some(scan) = &dvt.completed_scan {
        draft.notes.push(d.duplex_done.fill(&[("entry", &entry(&scan.evidence, w))]));
        draft.cite([&scan.evidence]);
    }
    for order in &dvt.other_duplex {
        let state = match order.state {
            OrderState::Pending => &d.state_on_order,
            OrderState::Completed => &d.state_completed,
        };
        draft.notes.push(d.duplex_other_leg.fill(&[("entry", &entry(&order.evidence, w)), ("state", state.as_str())]));
        draft.cite([&order.evidence]);
    }
    draft.orders = dvt.orders.clone();
    draft
}

/// Where the pregnancy comes from: the intake, the record (its entries), or both.
fn pregnancy_sources(dvt: &DvtAssessment, w: &Wording) -> String {
    let mut sources = Vec::new();
    if dvt.pregnancy_answered {
        sources.push(w.phrases.wells_source_questionnaire.to_string());
    }
    if !dvt.pregnancy.is_empty() {
        sources.push(w.phrases.wells_source_record.fill(&[("entries", &entries(&dvt.pregnancy, w))]));
    }
    sources.join("; ")
}

fn red_flag_draft(flag: &RedFlag, evaluation: &Evaluation, w: &Wording) -> Draft {
    let topic = red_flag_topic(flag.kind);
    let side = side_text(evaluation.side, w);
    let (summary, action) = match red_flag_wording(flag.kind, w) {
        Some(wording) => (wording.summary.fill(&[("side", side)]), wording.action.to_string()),
        None => {
            let summary =
                if flag.urgency == Urgency::Critical { &w.neuro.summary_progressive } else { &w.neuro.summary };
            (summary.fill(&[("side", side)]), w.neuro.action.to_string())
        }
    };
    let mut draft = Draft::new(topic, flag.urgency, summary, action);
    draft.why_from(&flag.evidence, w);
    if flag.kind.concerns_dvt_risk() {
        let validated = evaluation.dvt.as_ref().is_none_or(|d| d.special_populations.is_empty());
        // Item by item here unless the DVT card shows it.
        let view = if evaluation.dvt.is_none() { WellsView::Table } else { WellsView::Line };
        draft.show_wells(&evaluation.wells, view, validated);
    }
    if flag.kind == RedFlagKind::BakerCystRupture {
        if let Some(order) = evaluation.dvt.as_ref().and_then(|d| d.duplex_on_order.as_ref()) {
            duplex_on_order_note(&mut draft, order, w);
        }
        anticoagulated_note(&mut draft, &evaluation.anticoagulants, w);
    }
    draft.orders = flag.orders.clone();
    draft
}

fn pattern_draft(found: &PatternMatch, evaluation: &Evaluation, w: &Wording) -> Draft {
    let side = side_text(evaluation.side, w);
    let weeks = evaluation.duration_weeks.map(|weeks| weeks_text(weeks, w)).unwrap_or_default();
    let waits = !found.after.is_empty();
    let once = once_excluded(&found.after, w);
    let aneurysm = found.after.contains(&Hazard::Flag(RedFlagKind::PoplitealAneurysm));
    let (topic, summary, action, safety_net) = match found.pattern {
        Pattern::BakerCyst => {
            let b = &w.baker;
            let summary = if waits { &b.summary_after_red_flags } else { &b.summary };
            let action = match (waits, aneurysm) {
                (true, true) => format!("{once}{}", b.action_after_aneurysm),
                (true, false) => format!("{once}{}", b.action_after_red_flags),
                (false, _) => b.action.to_string(),
            };
            (Topic::BakerCyst, summary.fill(&[("side", side)]), action, &b.safety_net)
        }
        Pattern::HamstringTendinopathy => {
            let t = &w.tendon;
            let (summary, action) = match (waits, found.window_passed) {
                (true, _) => (&t.summary_after_red_flags, format!("{once}{}", t.action_after_red_flags)),
                (false, true) => (&t.summary_window_passed, t.action_window_passed.fill(&[("weeks", &weeks)])),
                (false, false) => (&t.summary, t.action.to_string()),
            };
            (Topic::HamstringTendinopathy, summary.fill(&[("side", side), ("weeks", &weeks)]), action, &t.safety_net)
        }
        Pattern::NervePain => {
            let n = &w.nerve;
            let (summary, action) = if waits {
                (&n.summary_after_red_flags, format!("{once}{}", n.action_after_red_flags))
            } else {
                (&n.summary, n.action.to_string())
            };
            (Topic::NervePain, summary.fill(&[("side", side)]), action, &n.safety_net)
        }
    };
    let mut draft = Draft::new(topic, found.urgency, summary, action);
    draft.why_from(&found.cardinal, w);
    draft.why_from(&found.supporting, w);
    for line in evidence_lines(&found.against, w) {
        draft.why.push(w.phrases.against.fill(&[("line", &line)]));
    }
    draft.cite(records_of(&found.against));
    if evaluation.duration_weeks.is_some() {
        draft.why.push(
            w.phrases.answered_duration.fill(&[("finding", w.finding(Question::DurationWeeks)), ("weeks", &weeks)]),
        );
    }
    if found.pattern == Pattern::BakerCyst && evaluation.dvt.is_some() {
        draft.notes.push(w.phrases.coexist.to_string());
    }
    if let (Some(intake_side), false) = (evaluation.side, found.other_side.is_empty()) {
        draft.notes.push(
            w.phrases
                .other_side
                .fill(&[("side", laterality_text(intake_side, w)), ("entries", &entries(&found.other_side, w))]),
        );
        draft.cite(&found.other_side);
    }
    draft.notes.push(safety_net.to_string());
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
        let b = &w.book;
        let mut reasons = Vec::new();
        if let Some(weeks) = book.duration_weeks {
            reasons.push(b.reason_duration.fill(&[("weeks", &weeks_text(weeks, w))]));
        }
        if book.giving_way {
            reasons.push(b.reason_giving_way.to_string());
        }
        let summary = b.summary.fill(&[("reasons", &reasons.join(b.reason_separator.as_str()))]);
        let mut draft = Draft::new(Topic::BookEvaluation, book.urgency, summary, b.action.to_string());
        draft.why = reasons.iter().map(|reason| b.reason_line.fill(&[("reason", reason)])).collect();
        drafts.push(draft);
    }

    if evaluation.patterns.is_empty() {
        let n = &w.no_pattern;
        let draft = || Draft::new(Topic::NoClearPattern, Urgency::Info, n.summary.to_string(), n.action.to_string());
        if evaluation.pattern_questions_answered {
            drafts.push(draft());
        } else if drafts.is_empty() {
            let mut draft = draft();
            draft.why.push(n.unanswered.to_string());
            drafts.push(draft);
        }
    }
    drafts
}

fn intake_draft(stale: Option<Option<OffsetDateTime>>, knee_pain: &[RecordEvidence], ctx: &CardContext<'_>) -> Draft {
    let w = ctx.wording;
    let i = &w.intake;
    let summary = match stale {
        None => i.summary_missing.to_string(),
        Some(Some(authored)) => i.summary_stale.fill(&[("date", &format_date(Some(authored.date()), w))]),
        Some(None) => i.summary_stale_undated.to_string(),
    };
    let mut draft = Draft::new(Topic::IntakeMissing, Urgency::Info, summary, i.action.to_string());
    if !knee_pain.is_empty() {
        draft.why.push(i.knee_pain.fill(&[("entries", &entries(knee_pain, w))]));
        draft.cite(knee_pain);
    }
    if let Some(authored) = stale {
        draft.why.push(
            i.stale
                .fill(&[("date", &format_date(authored.map(|a| a.date()), w)), ("days", &ctx.stale_days.to_string())]),
        );
    }
    draft.links.push(Link {
        label: i.app_link_label.to_string(),
        url: ctx.intake_launch_url.to_owned(),
        link_type: LinkType::Smart,
        app_context: Some(ctx.intake_app_context.to_owned()),
    });
    draft.links.push(Link {
        label: i.link_label.to_string(),
        url: ctx.questionnaire_url.to_owned(),
        link_type: LinkType::Absolute,
        app_context: None,
    });
    draft
}

fn data_draft(report: &DataReport<'_>, w: &Wording) -> Draft {
    let d = &w.data;
    let incomplete = why::incomplete_data(report, w);
    let action = if incomplete.is_empty() { String::new() } else { d.not_assessed.fill(&[("data", &incomplete)]) };
    let mut draft = Draft::new(Topic::DataUnavailable, Urgency::Info, d.summary.to_string(), action);
    draft.why = why::data_report_lines(report, w);
    if let Some(skipped) = why::skipped_extension(report) {
        draft.extension.push(("dev.popliteal.skipped", skipped));
    }
    draft
}

/// Suggests each order once, on the first (most urgent) card that needs it; later cards say
/// where it is.
fn suggest_each_order_once(drafts: &mut [Draft], ctx: &CardContext<'_>) {
    let w = ctx.wording;
    let mut suggested: Vec<(OrderKind, Topic)> = Vec::new();
    for draft in drafts.iter_mut() {
        let mut kept = Vec::new();
        for order in std::mem::take(&mut draft.orders) {
            match suggested.iter().find(|(kind, _)| *kind == order.kind) {
                Some((_, topic)) => {
                    let name = orders::name(&order, ctx.terminology, w);
                    let card = w.header(*topic).display;
                    draft.notes.push(w.phrases.see_other_card.fill(&[("order", &name), ("card", card)]));
                }
                None => {
                    suggested.push((order.kind, draft.topic));
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
    let header = w.header(draft.topic);
    let mut detail = Vec::new();
    if !draft.why.is_empty() {
        detail.push(format!(
            "**{}**\n\n{}",
            w.phrases.why,
            draft.why.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n")
        ));
    }
    if let Some((wells, view, validated)) = &draft.wells {
        detail.push(match view {
            WellsView::Table => wells_table(wells, *validated, w),
            WellsView::Line => wells_line(wells, *validated, w),
        });
    }
    if !draft.action.is_empty() {
        detail.push(format!("**{}**\n\n{}", w.phrases.what_to_do, draft.action));
    }
    detail.extend(draft.notes);
    let references: Vec<_> = header.references.iter().filter_map(|r| w.reference(r)).collect();
    let topic = topic_coding(draft.topic, w);
    let source = match references.first() {
        Some(primary) => Source { label: primary.label.clone(), url: Some(primary.url.clone()), topic },
        None => Source { label: w.source_label.clone(), url: None, topic },
    };
    let links = links(draft.links, &references, &source);
    let suggestions = draft
        .orders
        .iter()
        .map(|order| orders::suggestion(order, header.display, ctx.order, ctx.terminology, w))
        .collect::<Result<Vec<_>, _>>()?;
    let mut extension = serde_json::Map::new();
    if let Some((wells, _, _)) = &draft.wells {
        extension.insert("dev.popliteal.wells".to_owned(), wells_extension(wells));
    }
    if !draft.records.is_empty() {
        extension.insert("dev.popliteal.records".to_owned(), json!(draft.records));
    }
    for (key, value) in draft.extension {
        extension.insert(key.to_owned(), value);
    }
    Ok(Card {
        uuid: Uuid::new_v4(),
        summary: limit_summary(draft.summary),
        detail: (!detail.is_empty()).then(|| detail.join("\n\n")),
        indicator: indicator(draft.urgency),
        source,
        selection_behavior: (!suggestions.is_empty()).then_some(SelectionBehavior::Any),
        suggestions,
        override_reasons: header.override_reasons.iter().map(|r| w.override_reason(r)).collect(),
        links,
        extension: (!extension.is_empty()).then_some(extension),
    })
}

/// A card's links: its own (the intake app and the Questionnaire), then its references after the primary one,
/// which is the card's `source`. Each URL once, never the source's. The detail carries no
/// markdown link: a link inside `detail` would navigate the EHR's own frame away.
fn links(own: Vec<Link>, references: &[&Reference], source: &Source) -> Vec<Link> {
    let mut links: Vec<Link> = Vec::new();
    let others = references.iter().skip(1).map(|r| Link {
        label: r.label.clone(),
        url: r.url.clone(),
        link_type: LinkType::Absolute,
        app_context: None,
    });
    for link in own.into_iter().chain(others) {
        if source.url.as_deref() != Some(link.url.as_str()) && !links.iter().any(|l| l.url == link.url) {
            links.push(link);
        }
    }
    links
}

fn topic_coding(topic: Topic, w: &Wording) -> Coding {
    Coding {
        system: w.topic_system.clone(),
        code: topic.code().to_owned(),
        display: Some(w.header(topic).display.to_owned()),
    }
}

/// Most urgent first; within an indicator, the order of `topic_order` (the three patterns share
/// one place and keep their ranking by evidence).
fn sort(drafts: &mut [Draft], w: &Wording) {
    let pattern_rank = w.rank(Topic::BakerCyst);
    drafts.sort_by_key(|d| (Reverse(d.urgency), if d.topic.is_pattern() { pattern_rank } else { w.rank(d.topic) }));
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
    sort(&mut drafts, ctx.wording);
    if !report.is_empty() {
        drafts.push(data_draft(report, ctx.wording));
    }
    suggest_each_order_once(&mut drafts, ctx);
    drafts.into_iter().map(|draft| render(draft, ctx)).collect()
}

fn order_draft(
    topic: Topic,
    summary: String,
    action: &Text,
    knee_note: &Text,
    uncovered: &Uncovered,
    w: &Wording,
) -> Draft {
    let mut draft = Draft::new(topic, uncovered.urgency, summary, action.to_string());
    if !uncovered.knee_treatments.is_empty() {
        let orders: Vec<&str> = uncovered
            .knee_treatments
            .iter()
            .map(|d| if d.description.trim().is_empty() { w.phrases.uncoded.as_str() } else { d.description.as_str() })
            .collect();
        draft.notes.push(knee_note.fill(&[("orders", &orders.join("; "))]));
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
                draft.summary = w.intake.summary_orders.to_string();
            }
            vec![draft]
        }
        OrderReview::IntakeNeeded(_) => Vec::new(),
        OrderReview::Reviewed { evaluation, dvt, nerve_deficit, other_red_flags } => {
            let mut drafts = Vec::new();
            if let (Some(uncovered), Some(assessment)) = (dvt, evaluation.dvt.as_ref()) {
                let summary = if uncovered.missing.iter().any(|o| o.kind == OrderKind::DDimer) {
                    &w.dvt.order_summary_d_dimer
                } else {
                    &w.dvt.order_summary
                };
                let summary = summary
                    .fill(&[("side", side_text(evaluation.side, w)), ("score", &assessment.wells.score.to_string())]);
                let mut draft = order_draft(
                    Topic::DvtSuspected,
                    summary,
                    &w.dvt.order_action,
                    &w.dvt.order_knee_treatments,
                    uncovered,
                    w,
                );
                draft.why_from(&assessment.signs, w);
                draft.show_wells(&assessment.wells, WellsView::Table, assessment.special_populations.is_empty());
                drafts.push(draft);
            }
            if let Some(uncovered) = nerve_deficit {
                let mut draft = order_draft(
                    Topic::NeuroDeficit,
                    w.neuro.order_summary.to_string(),
                    &w.neuro.order_action,
                    &w.neuro.order_knee_treatments,
                    uncovered,
                    w,
                );
                for flag in evaluation
                    .red_flags
                    .iter()
                    .filter(|f| matches!(f.kind, RedFlagKind::NeuroDeficit | RedFlagKind::CaudaEquina))
                {
                    draft.why_from(&flag.evidence, w);
                }
                drafts.push(draft);
            }
            drafts.extend(other_red_flags.iter().map(|flag| red_flag_draft(flag, evaluation, w)));
            drafts
        }
    };
    sort(&mut drafts, w);
    if !report.is_empty() {
        drafts.push(data_draft(report, w));
    }
    suggest_each_order_once(&mut drafts, ctx);
    drafts.into_iter().map(|draft| render(draft, ctx)).collect()
}

/// The response for an assessment, as JSON (used by tests and snapshots).
pub fn to_json(cards: &[Card]) -> serde_json::Value {
    json!({ "cards": cards })
}
