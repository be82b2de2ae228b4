//! What the rules read: the intake answers and the facts taken from the record, already
//! interpreted into clinical terms. Nothing here knows about FHIR, JSON or HTTP.

use std::collections::{BTreeSet, HashMap};

use time::{Date, OffsetDateTime};

use super::question::{Question, Side};

/// One answer of the intake form, already checked against the question's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    Weeks(u32),
    Side(Side),
}

/// The answers of the one QuestionnaireResponse that counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Intake {
    /// `QuestionnaireResponse/{id}` when the response has an id.
    pub reference: Option<String>,
    pub authored: Option<OffsetDateTime>,
    answers: HashMap<Question, Answer>,
}

impl Intake {
    pub fn new(reference: Option<String>, authored: Option<OffsetDateTime>) -> Intake {
        Intake { reference, authored, answers: HashMap::new() }
    }

    /// Records an answer. When the same question is answered more than once, the answers are
    /// merged towards safety: any "yes" wins over "no", the longest duration wins, and two
    /// different sides mean both.
    pub fn record(&mut self, question: Question, answer: Answer) {
        let merged = match (self.answers.get(&question).copied(), answer) {
            (None, new) => new,
            (Some(Answer::Yes), _) | (_, Answer::Yes) => Answer::Yes,
            (Some(Answer::Weeks(old)), Answer::Weeks(new)) => Answer::Weeks(old.max(new)),
            (Some(Answer::Side(old)), Answer::Side(new)) if old != new => Answer::Side(Side::Both),
            (Some(old), _) => old,
        };
        self.answers.insert(question, merged);
    }

    /// A builder-style [`Intake::record`], handy for scenarios.
    pub fn with(mut self, question: Question, answer: Answer) -> Intake {
        self.record(question, answer);
        self
    }

    pub fn answer(&self, question: Question) -> Option<Answer> {
        self.answers.get(&question).copied()
    }

    pub fn side(&self) -> Option<Side> {
        match self.answer(Question::Side) {
            Some(Answer::Side(side)) => Some(side),
            _ => None,
        }
    }

    pub fn duration_weeks(&self) -> Option<u32> {
        match self.answer(Question::DurationWeeks) {
            Some(Answer::Weeks(weeks)) => Some(weeks),
            _ => None,
        }
    }

    /// `Some(true)` for yes, `Some(false)` for no, `None` when not asked.
    pub fn yes_no(&self, question: Question) -> Option<bool> {
        match self.answer(question) {
            Some(Answer::Yes) => Some(true),
            Some(Answer::No) => Some(false),
            _ => None,
        }
    }
}

/// Where the intake stands for this patient.
#[derive(Debug, Clone, PartialEq)]
pub enum IntakeState {
    /// A completed or amended response, recent enough to evaluate.
    Usable(Intake),
    /// The latest response is too old (or undated) to evaluate.
    Stale { authored: Option<OffsetDateTime> },
    /// No response to our questionnaire for this patient.
    Missing,
}

/// The part of the record a fact came from: one prefetch key of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordSource {
    Conditions,
    Observations,
    Medications,
    ServiceRequests,
    Procedures,
}

/// One resource of the record that supports a finding, described for the clinician.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvidence {
    /// `ResourceType/id` (or just the resource type when it has no id): for machines, never
    /// printed in a card's text.
    pub reference: String,
    /// What it says: the code's text or display.
    pub description: String,
    /// When it was recorded, authored or measured, when known.
    pub date: Option<Date>,
    /// The side it names (its code's side, else its body site's laterality), when it names one.
    pub side: Option<Side>,
    /// A measured value worth quoting (a temperature, a D-dimer), already formatted.
    pub value: Option<String>,
}

impl RecordEvidence {
    pub fn new(reference: impl Into<String>, description: impl Into<String>, date: Option<Date>) -> RecordEvidence {
        RecordEvidence { reference: reference.into(), description: description.into(), date, side: None, value: None }
    }

    pub fn on_side(mut self, side: Option<Side>) -> RecordEvidence {
        self.side = side;
        self
    }

    pub fn with_value(mut self, value: String) -> RecordEvidence {
        self.value = Some(value);
        self
    }
}

/// A D-dimer result, with its unit family kept apart: FEU and DDU are never compared.
#[derive(Debug, Clone, PartialEq)]
pub struct DDimerResult {
    pub evidence: RecordEvidence,
    pub unit: DDimerUnit,
    /// The value in micrograms per litre, when the unit could be converted.
    pub micrograms_per_litre: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DDimerUnit {
    /// Fibrinogen-equivalent units (LOINC 48065-7).
    Feu,
    /// D-dimer units (LOINC 48066-5).
    Ddu,
}

/// A venous duplex already on the record.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplexOrder {
    pub evidence: RecordEvidence,
    /// The leg(s) it examines, when the code or body site says so.
    pub side: Option<Side>,
    pub state: OrderState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// Active, draft or on hold: it will happen.
    Pending,
    /// Done.
    Completed,
}

/// Facts taken from the record, already selected by the code lists and the time windows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordFacts {
    pub active_cancer: Vec<RecordEvidence>,
    pub previous_dvt: Vec<RecordEvidence>,
    pub leg_paresis: Vec<RecordEvidence>,
    pub recent_major_surgery: Vec<RecordEvidence>,
    /// Active pregnancy Conditions with a recent onset: Wells is not validated.
    pub pregnancy: Vec<RecordEvidence>,
    /// Body temperatures of 38.0 C or more in the last 48 hours.
    pub recent_fever: Vec<RecordEvidence>,
    pub d_dimers: Vec<DDimerResult>,
    pub anticoagulants: Vec<RecordEvidence>,
    /// Venous duplex orders of the last 7 days and completed scans.
    pub duplex_orders: Vec<DuplexOrder>,
    pub knee_pain: Vec<RecordEvidence>,
    pub radiculopathy: Vec<RecordEvidence>,
    /// Knee osteoarthritis, Baker cyst or meniscal tear, with the side each names: the rules
    /// keep those of the symptomatic side or without side.
    pub baker_support: Vec<RecordEvidence>,
    /// Parts of the record that could not be read in full: their findings are "not assessed".
    pub unavailable: BTreeSet<RecordSource>,
}

/// Everything the rules evaluate for one patient at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Situation {
    pub now: OffsetDateTime,
    /// Age in whole years, when the birth date is known.
    pub age_years: Option<u32>,
    pub intake: IntakeState,
    pub record: RecordFacts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_question_answered_yes_once_counts_as_yes() {
        let intake = Intake::default()
            .with(Question::CalfPain, Answer::No)
            .with(Question::CalfPain, Answer::Yes)
            .with(Question::CalfPain, Answer::No);
        assert_eq!(intake.yes_no(Question::CalfPain), Some(true));
    }

    #[test]
    fn two_different_sides_mean_both_legs() {
        let intake = Intake::default()
            .with(Question::Side, Answer::Side(Side::Left))
            .with(Question::Side, Answer::Side(Side::Right));
        assert_eq!(intake.side(), Some(Side::Both));
    }

    #[test]
    fn an_unasked_question_is_neither_yes_nor_no() {
        assert_eq!(Intake::default().yes_no(Question::Fever), None);
    }
}
