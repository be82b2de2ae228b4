//! The card wording of `cds-hooks/cards.toml`, bound to typed sections so that the code and the
//! reviewable file cannot drift: each card topic is a [`Topic`], each section a struct whose
//! fields are the texts that topic needs. Loading refuses (naming it) a missing section or text,
//! an unknown key, a topic missing from `topic_order`, a finding without its wording, a cited
//! reference or override reason that is not defined, and a `{placeholder}` the service never
//! fills. Nothing is looked up by a string at request time.

use std::collections::HashMap;

use serde::Deserialize;

use crate::knee::question::Question;
use crate::terminology::Coding;

crate::coded::coded_enum! {
    /// The card topics (`source.topic.code`), one per kind of card.
    pub enum Topic (code, from_code) {
        DvtSuspected => "dvt-suspected",
        BakerCystRupture => "baker-cyst-rupture",
        PulmonaryEmbolism => "pulmonary-embolism",
        LimbIschaemia => "limb-ischaemia",
        Infection => "infection",
        NeuroDeficit => "neuro-deficit",
        CaudaEquina => "cauda-equina",
        PoplitealAneurysm => "popliteal-aneurysm",
        BakerCyst => "baker-cyst",
        HamstringTendinopathy => "hamstring-tendinopathy",
        NervePain => "nerve-pain",
        NoClearPattern => "no-clear-pattern",
        BookEvaluation => "book-evaluation",
        IntakeMissing => "intake-missing",
        DataUnavailable => "data-unavailable",
    }
}

impl Topic {
    /// The three patterns share one place in the order: they keep their ranking by evidence.
    pub fn is_pattern(self) -> bool {
        matches!(self, Topic::BakerCyst | Topic::HamstringTendinopathy | Topic::NervePain)
    }
}

/// The placeholders the service fills. A text with any other `{name}` is refused at load.
const PLACEHOLDERS: &[&str] = &[
    "age",
    "card",
    "count",
    "cutoff",
    "data",
    "date",
    "days",
    "entries",
    "entry",
    "finding",
    "hazards",
    "items",
    "line",
    "link_ids",
    "medications",
    "order",
    "orders",
    "plural",
    "reason",
    "reasons",
    "resource",
    "score",
    "side",
    "sources",
    "state",
    "value",
    "weeks",
    "what",
];

/// A text of the file, possibly with `{placeholders}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text with its placeholders filled by name.
    pub fn fill(&self, values: &[(&str, &str)]) -> String {
        let mut text = self.0.clone();
        for (name, value) in values {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    pub label: String,
    pub url: String,
}

/// The part every topic's section has.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub display: &'a str,
    pub references: &'a [String],
    pub override_reasons: &'a [String],
}

macro_rules! section {
    ($(#[$doc:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub display: String,
            pub references: Vec<String>,
            pub override_reasons: Vec<String>,
            $(pub $field: Text,)*
        }

        impl $name {
            pub fn header(&self) -> Header<'_> {
                Header { display: &self.display, references: &self.references, override_reasons: &self.override_reasons }
            }
        }
    };
}

section!(
    /// `dvt-suspected`: the summary is a lead (the score) and the plan the card recommends.
    DvtWording {
        excluded, lead_likely, lead_incomplete_likely, lead_unlikely, lead_incomplete, lead_not_validated,
        plan_duplex, plan_duplex_direct, plan_duplex_anticoagulated, plan_duplex_positive_d_dimer,
        plan_d_dimer_first, plan_consider_alternative, plan_read_d_dimer, plan_complete_score,
        plan_duplex_on_order, plan_duplex_done, action_duplex_direct, action_duplex_likely,
        action_duplex_anticoagulated, action_duplex_positive_d_dimer, action_d_dimer_first,
        action_consider_alternative, action_read_d_dimer, action_complete_score, cutoff, cutoff_age_adjusted,
        d_dimer_positive, d_dimer_negative, d_dimer_not_interpreted, d_dimer_anticoagulated, special_pregnancy,
        special_under_18, duplex_on_order, duplex_done, duplex_other_leg, state_on_order, state_completed,
        order_summary, order_summary_d_dimer, order_action, order_knee_treatments,
    }
);
section!(
    /// A red flag card with one summary and one plan; `excluded` names it in "once ... is excluded".
    RedFlagWording { excluded, summary, action }
);
section!(
    /// `neuro-deficit`, which also speaks at order time.
    NeuroWording { summary, summary_progressive, action, order_summary, order_action, order_knee_treatments }
);
section!(
    /// `baker-cyst`.
    BakerWording { summary, summary_after_red_flags, action, action_after_red_flags, action_after_aneurysm, safety_net }
);
section!(
    /// `hamstring-tendinopathy`.
    TendonWording {
        summary, summary_window_passed, summary_after_red_flags, action, action_window_passed,
        action_after_red_flags, safety_net,
    }
);
section!(
    /// `nerve-pain`.
    NerveWording { summary, summary_after_red_flags, action, action_after_red_flags, safety_net }
);
section!(
    /// `no-clear-pattern`.
    NoPatternWording { summary, action, unanswered }
);
section!(
    /// `book-evaluation`.
    BookWording { summary, reason_duration, reason_giving_way, reason_line, reason_separator, action }
);
section!(
    /// `intake-missing`.
    IntakeWording {
        summary_missing, summary_stale, summary_stale_undated, summary_orders, action, knee_pain, stale, app_link_label,
        link_label,
    }
);
section!(
    /// `data-unavailable`.
    DataWording {
        summary, unavailable, partial, skipped, modifier, other_patient, draft_orders_skipped, wrong_type,
        not_assessed,
    }
);

/// Words every card shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phrases {
    pub why: Text,
    pub what_to_do: Text,
    pub side_left: Text,
    pub side_right: Text,
    pub side_both: Text,
    pub side_unknown: Text,
    pub laterality_left: Text,
    pub laterality_right: Text,
    pub laterality_both: Text,
    pub weeks_one: Text,
    pub weeks_many: Text,
    pub date_unknown: Text,
    pub uncoded: Text,
    pub answered_yes: Text,
    pub answered_duration: Text,
    pub recorded: Text,
    pub record_entry: Text,
    pub record_entry_with_value: Text,
    pub against: Text,
    pub order_label: Text,
    pub order_description: Text,
    pub see_other_card: Text,
    pub once_excluded_one: Text,
    pub once_excluded_many: Text,
    pub list_and: Text,
    pub list_comma: Text,
    pub wells_heading: Text,
    pub wells_likely: Text,
    pub wells_unlikely: Text,
    pub wells_incomplete: Text,
    pub wells_not_validated: Text,
    pub wells_table_header: Text,
    pub wells_missing: Text,
    pub wells_see_dvt_card: Text,
    pub wells_source_questionnaire: Text,
    pub wells_source_record: Text,
    pub wells_source_not_assessed: Text,
    pub cancer_from_record: Text,
    pub coexist: Text,
    pub anticoagulated: Text,
    pub other_side: Text,
}

/// How the data-unavailable card names the parts of the record (one per prefetch key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataKeys {
    pub patient: Text,
    pub questionnaire_responses: Text,
    pub conditions: Text,
    pub observations: Text,
    pub medications: Text,
    pub service_requests: Text,
    pub procedures: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wording {
    pub topic_system: String,
    pub override_system: String,
    pub source_label: String,
    topic_order: Vec<String>,
    references: HashMap<String, Reference>,
    override_reasons: HashMap<String, String>,
    findings: HashMap<String, String>,
    pub phrases: Phrases,
    pub data_keys: DataKeys,
    #[serde(rename = "dvt-suspected")]
    pub dvt: DvtWording,
    #[serde(rename = "baker-cyst-rupture")]
    pub rupture: RedFlagWording,
    #[serde(rename = "pulmonary-embolism")]
    pub pulmonary_embolism: RedFlagWording,
    #[serde(rename = "limb-ischaemia")]
    pub limb_ischaemia: RedFlagWording,
    pub infection: RedFlagWording,
    #[serde(rename = "neuro-deficit")]
    pub neuro: NeuroWording,
    #[serde(rename = "cauda-equina")]
    pub cauda_equina: RedFlagWording,
    #[serde(rename = "popliteal-aneurysm")]
    pub aneurysm: RedFlagWording,
    #[serde(rename = "baker-cyst")]
    pub baker: BakerWording,
    #[serde(rename = "hamstring-tendinopathy")]
    pub tendon: TendonWording,
    #[serde(rename = "nerve-pain")]
    pub nerve: NerveWording,
    #[serde(rename = "no-clear-pattern")]
    pub no_pattern: NoPatternWording,
    #[serde(rename = "book-evaluation")]
    pub book: BookWording,
    #[serde(rename = "intake-missing")]
    pub intake: IntakeWording,
    #[serde(rename = "data-unavailable")]
    pub data: DataWording,
    /// The display rank of each topic (from `topic_order`), filled at load.
    #[serde(skip)]
    ranks: HashMap<Topic, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum WordingError {
    #[error("cds-hooks/cards.toml is not valid: {0}")]
    Invalid(#[from] toml::de::Error),
    #[error("cds-hooks/cards.toml: {0}")]
    Incomplete(String),
}

const CARDS_FILE: &str = include_str!("../../cds-hooks/cards.toml");

/// Every `{name}` of every string in a TOML document that is not a placeholder the service fills.
fn unknown_placeholders(value: &toml::Value, path: &str, found: &mut Vec<String>) {
    match value {
        toml::Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find('{') {
                let after = &rest[start + 1..];
                let Some(end) = after.find('}') else { break };
                let name = &after[..end];
                if !PLACEHOLDERS.contains(&name) {
                    found.push(format!("{path} uses the unknown placeholder {{{name}}}"));
                }
                rest = &after[end + 1..];
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table {
                unknown_placeholders(item, &format!("{path}.{key}"), found);
            }
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                unknown_placeholders(item, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

impl Wording {
    /// The wording shipped with the service.
    pub fn embedded() -> Result<Wording, WordingError> {
        Wording::parse(CARDS_FILE)
    }

    /// Parses and checks a wording file.
    pub fn parse(text: &str) -> Result<Wording, WordingError> {
        let mut wording: Wording = toml::from_str(text)?;
        let raw: toml::Value = toml::from_str(text)?;
        let mut problems = Vec::new();
        unknown_placeholders(&raw, "", &mut problems);
        for (rank, code) in wording.topic_order.iter().enumerate() {
            match Topic::from_code(code) {
                Some(topic) if wording.ranks.insert(topic, rank).is_some() => {
                    problems.push(format!("topic_order lists {code} twice"));
                }
                Some(_) => {}
                None => problems.push(format!("topic_order lists {code}, which is not a card topic")),
            }
        }
        for topic in Topic::ALL {
            if !wording.ranks.contains_key(topic) {
                problems.push(format!("topic_order lacks {}", topic.code()));
            }
            let header = wording.header(*topic);
            for reference in header.references {
                if !wording.references.contains_key(reference) {
                    problems.push(format!("[{}] cites unknown reference {reference}", topic.code()));
                }
            }
            for reason in header.override_reasons {
                if !wording.override_reasons.contains_key(reason) {
                    problems.push(format!("[{}] names unknown override reason {reason}", topic.code()));
                }
            }
        }
        for question in Question::ALL {
            if !wording.findings.contains_key(question.link_id()) {
                problems.push(format!("[findings] lacks {}", question.link_id()));
            }
        }
        for link_id in wording.findings.keys() {
            if Question::from_link_id(link_id).is_none() {
                problems.push(format!("[findings] has {link_id}, which is not a question of the intake"));
            }
        }
        if problems.is_empty() { Ok(wording) } else { Err(WordingError::Incomplete(problems.join("; "))) }
    }

    /// The display, references and override reasons of a topic.
    pub fn header(&self, topic: Topic) -> Header<'_> {
        match topic {
            Topic::DvtSuspected => self.dvt.header(),
            Topic::BakerCystRupture => self.rupture.header(),
            Topic::PulmonaryEmbolism => self.pulmonary_embolism.header(),
            Topic::LimbIschaemia => self.limb_ischaemia.header(),
            Topic::Infection => self.infection.header(),
            Topic::NeuroDeficit => self.neuro.header(),
            Topic::CaudaEquina => self.cauda_equina.header(),
            Topic::PoplitealAneurysm => self.aneurysm.header(),
            Topic::BakerCyst => self.baker.header(),
            Topic::HamstringTendinopathy => self.tendon.header(),
            Topic::NervePain => self.nerve.header(),
            Topic::NoClearPattern => self.no_pattern.header(),
            Topic::BookEvaluation => self.book.header(),
            Topic::IntakeMissing => self.intake.header(),
            Topic::DataUnavailable => self.data.header(),
        }
    }

    /// How a finding reads (checked complete at load).
    pub fn finding(&self, question: Question) -> &str {
        self.findings.get(question.link_id()).map_or(question.link_id(), String::as_str)
    }

    pub fn reference(&self, key: &str) -> Option<&Reference> {
        self.references.get(key)
    }

    pub fn override_reason(&self, code: &str) -> Coding {
        Coding {
            system: self.override_system.clone(),
            code: code.to_owned(),
            display: self.override_reasons.get(code).cloned(),
        }
    }

    /// The position of a topic in the display order (checked complete at load).
    pub fn rank(&self, topic: Topic) -> usize {
        self.ranks.get(&topic).copied().unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_wording_loads_and_covers_every_topic_and_finding() {
        let wording = Wording::embedded().expect("cards.toml is complete");
        assert_eq!(wording.ranks.len(), Topic::ALL.len());
        assert_eq!(wording.finding(Question::CalfPain), "calf pain or tenderness");
        assert_eq!(wording.header(Topic::DvtSuspected).display, "Possible deep vein thrombosis");
    }

    #[test]
    fn placeholders_are_filled_by_name() {
        let text = Text("Wells {score}{side}".into());
        assert_eq!(text.fill(&[("score", "3"), ("side", " (left leg)")]), "Wells 3 (left leg)");
    }

    #[test]
    fn a_missing_text_stops_the_load_naming_it() {
        let without = CARDS_FILE.replace("plan_duplex_done = ", "# plan_duplex_done = ");
        let error = Wording::parse(&without).expect_err("refused").to_string();
        assert!(error.contains("plan_duplex_done"), "{error}");
    }

    #[test]
    fn an_unknown_text_or_placeholder_stops_the_load_naming_it() {
        let extra = CARDS_FILE.replace("[baker-cyst]\n", "[baker-cyst]\nsummary_typo = \"x\"\n");
        assert!(Wording::parse(&extra).expect_err("refused").to_string().contains("summary_typo"));
        let placeholder = CARDS_FILE.replace("Wells {score}, DVT likely.", "Wells {scor}, DVT likely.");
        assert!(Wording::parse(&placeholder).expect_err("refused").to_string().contains("{scor}"));
    }

    #[test]
    fn a_topic_missing_from_the_order_or_a_finding_without_wording_stops_the_load() {
        let order = CARDS_FILE.replace("\"book-evaluation\", ", "");
        assert!(Wording::parse(&order).expect_err("refused").to_string().contains("topic_order lacks book-evaluation"));
        let finding = CARDS_FILE.replace("rf-calf-pain = \"calf pain or tenderness\"\n", "");
        assert!(Wording::parse(&finding).expect_err("refused").to_string().contains("rf-calf-pain"));
    }
}
