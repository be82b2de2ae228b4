//! Combines the form and the record into findings. A finding is positive when either says so;
//! a "no" on the form never cancels a positive record; a finding nobody assessed is
//! "not assessed", never "no".

use super::facts::{Intake, RecordEvidence, RecordFacts, RecordSource};
use super::question::Question;

/// Why a finding is held: an answer of the intake, or a resource of the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    Answered(Question),
    Recorded(RecordEvidence),
}

/// The state of one clinical finding.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    Present(Vec<Evidence>),
    Absent,
    NotAssessed,
}

impl Finding {
    pub fn is_present(&self) -> bool {
        matches!(self, Finding::Present(_))
    }

    pub fn evidence(&self) -> &[Evidence] {
        match self {
            Finding::Present(evidence) => evidence,
            _ => &[],
        }
    }

    /// Whether the record (not only the form) supports it.
    pub fn from_record(&self) -> bool {
        self.evidence().iter().any(|e| matches!(e, Evidence::Recorded(_)))
    }
}

/// Reads findings from one intake and the record facts.
#[derive(Debug, Clone, Copy)]
pub struct Findings<'a> {
    intake: &'a Intake,
    record: &'a RecordFacts,
}

impl<'a> Findings<'a> {
    pub fn new(intake: &'a Intake, record: &'a RecordFacts) -> Findings<'a> {
        Findings { intake, record }
    }

    pub fn intake(&self) -> &'a Intake {
        self.intake
    }

    pub fn record(&self) -> &'a RecordFacts {
        self.record
    }

    /// The record facts that can raise this question's finding, and the part of the record
    /// they come from.
    fn record_support(&self, question: Question) -> Option<(RecordSource, &'a [RecordEvidence])> {
        let record = self.record;
        let support = match question {
            Question::WellsActiveCancer => (RecordSource::Conditions, &record.active_cancer),
            Question::WellsPreviousDvt => (RecordSource::Conditions, &record.previous_dvt),
            Question::WellsParalysisCast => (RecordSource::Conditions, &record.leg_paresis),
            Question::WellsBedriddenSurgery => (RecordSource::Procedures, &record.recent_major_surgery),
            Question::Fever => (RecordSource::Observations, &record.recent_fever),
            Question::PregnantOrPostpartum => (RecordSource::Conditions, &record.pregnancy),
            _ => return None,
        };
        Some((support.0, support.1.as_slice()))
    }

    /// The finding for one yes/no question.
    pub fn get(&self, question: Question) -> Finding {
        let mut evidence = Vec::new();
        if self.intake.yes_no(question) == Some(true) {
            evidence.push(Evidence::Answered(question));
        }
        let mut record_unreadable = false;
        if let Some((source, facts)) = self.record_support(question) {
            evidence.extend(facts.iter().cloned().map(Evidence::Recorded));
            record_unreadable = self.record.unavailable.contains(&source);
        }
        if !evidence.is_empty() {
            Finding::Present(evidence)
        } else if self.intake.yes_no(question) == Some(false) && !record_unreadable {
            Finding::Absent
        } else {
            Finding::NotAssessed
        }
    }

    pub fn present(&self, question: Question) -> bool {
        self.get(question).is_present()
    }

    /// The evidence of every present finding among `questions`, in order.
    pub fn evidence_of(&self, questions: &[Question]) -> Vec<Evidence> {
        questions.iter().flat_map(|q| self.get(*q).evidence().to_vec()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knee::facts::Answer;

    fn cancer_on_record() -> RecordEvidence {
        RecordEvidence::new("Condition/c1", "Malignant neoplastic disease", None)
    }

    #[test]
    fn a_no_on_the_form_never_cancels_a_positive_record() {
        let intake = Intake::default().with(Question::WellsActiveCancer, Answer::No);
        let record = RecordFacts { active_cancer: vec![cancer_on_record()], ..Default::default() };
        let finding = Findings::new(&intake, &record).get(Question::WellsActiveCancer);
        assert!(finding.is_present());
        assert!(finding.from_record());
    }

    #[test]
    fn an_unanswered_question_is_not_assessed() {
        let intake = Intake::default();
        let record = RecordFacts::default();
        assert_eq!(Findings::new(&intake, &record).get(Question::CalfPain), Finding::NotAssessed);
    }

    #[test]
    fn a_no_is_not_assessed_when_the_record_that_could_contradict_it_was_unreadable() {
        let intake = Intake::default().with(Question::WellsActiveCancer, Answer::No);
        let mut record = RecordFacts::default();
        record.unavailable.insert(RecordSource::Conditions);
        let findings = Findings::new(&intake, &record);
        assert_eq!(findings.get(Question::WellsActiveCancer), Finding::NotAssessed);
        // A question the record does not feed keeps its "no".
        let intake = intake.with(Question::CalfPain, Answer::No);
        assert_eq!(Findings::new(&intake, &record).get(Question::CalfPain), Finding::Absent);
    }
}
