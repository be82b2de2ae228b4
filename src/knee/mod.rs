//! The clinical rules: facts in, assessment out. Pure functions: no HTTP, JSON, FHIR or
//! database. Source of truth: `../shared/spec/clinical-logic.md` and the article it cites.

pub mod dvt;
pub mod facts;
pub mod finding;
pub mod order_review;
pub mod orders;
pub mod patterns;
pub mod question;
pub mod red_flags;
pub mod wells;

#[cfg(test)]
mod scenarios;

use time::OffsetDateTime;

use dvt::DvtAssessment;
use facts::{IntakeState, Situation};
use finding::{Evidence, Findings};
use patterns::PatternMatch;
use question::{Question, Side};
use red_flags::RedFlag;

/// How urgently a finding needs the clinician.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    Info,
    Warning,
    Critical,
}

/// Time windows of the rules (clinical-logic.md and the questionnaire contract).
pub mod windows {
    /// A body temperature counts as current fever for this long.
    pub const FEVER_HOURS: i64 = 48;
    /// Major surgery within this many weeks scores a Wells point.
    pub const MAJOR_SURGERY_WEEKS: i64 = 12;
    /// A pending venous duplex authored this recently stops another being suggested.
    pub const DUPLEX_ORDER_DAYS: i64 = 7;
    /// A D-dimer this recent feeds the pathway.
    pub const D_DIMER_DAYS: i64 = 7;
}

/// Why the clinician should book an evaluation (seed, "When to stop self-care").
#[derive(Debug, Clone, PartialEq)]
pub struct BookEvaluation {
    pub urgency: Urgency,
    pub duration_weeks: Option<u32>,
    pub giving_way: bool,
}

/// What the rules concluded from a usable intake.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub side: Option<Side>,
    pub duration_weeks: Option<u32>,
    pub dvt: Option<DvtAssessment>,
    /// The Wells score, for the cards about DVT risk that are not the DVT card itself.
    pub wells: wells::WellsScore,
    pub red_flags: Vec<RedFlag>,
    pub patterns: Vec<PatternMatch>,
    pub pattern_questions_answered: bool,
    pub book_evaluation: Option<BookEvaluation>,
    /// Record facts worth saying on the cards they concern.
    pub anticoagulants: Vec<facts::RecordEvidence>,
}

/// The assessment of one patient.
#[derive(Debug, Clone, PartialEq)]
pub enum Assessment {
    /// A usable intake was evaluated.
    Evaluated(Box<Evaluation>),
    /// No usable intake; `stale` carries the date of a response too old to evaluate.
    IntakeNeeded { stale: Option<Option<OffsetDateTime>>, knee_pain_on_record: Vec<facts::RecordEvidence> },
    /// Nothing to say about this patient.
    NothingToSay,
}

/// Evaluates a patient's situation.
#[tracing::instrument(name = "evaluate rules", skip_all)]
pub fn assess(situation: &Situation) -> Assessment {
    let intake = match &situation.intake {
        IntakeState::Usable(intake) => intake,
        // Without usable answers, speak only where knee pain is on the record (contract).
        IntakeState::Stale { .. } | IntakeState::Missing if situation.record.knee_pain.is_empty() => {
            return Assessment::NothingToSay;
        }
        IntakeState::Stale { authored } => {
            return Assessment::IntakeNeeded {
                stale: Some(*authored),
                knee_pain_on_record: situation.record.knee_pain.clone(),
            };
        }
        IntakeState::Missing => {
            return Assessment::IntakeNeeded { stale: None, knee_pain_on_record: situation.record.knee_pain.clone() };
        }
    };
    let findings = Findings::new(intake, &situation.record);
    let side = intake.side();
    let duration_weeks = intake.duration_weeks();

    let giving_way = findings.present(Question::GivingWay);
    let persisting = duration_weeks.is_some_and(|w| w >= patterns::PERSISTING_PAIN_WEEKS);
    let book_evaluation = (giving_way || persisting).then(|| BookEvaluation {
        urgency: if giving_way { Urgency::Warning } else { Urgency::Info },
        duration_weeks: duration_weeks.filter(|_| persisting),
        giving_way,
    });

    let dvt = dvt::assess(&findings, situation.age_years, side);
    let mut red_flags = red_flags::assess(&findings, side);
    // A venous duplex already on order for this leg is never suggested again, by any card.
    if dvt.as_ref().is_some_and(|d| d.duplex_on_order.is_some()) {
        for flag in &mut red_flags {
            flag.orders.retain(|order| order.kind != orders::OrderKind::VenousDuplex);
        }
    }

    Assessment::Evaluated(Box::new(Evaluation {
        side,
        duration_weeks,
        dvt,
        wells: dvt::wells(&findings),
        red_flags,
        patterns: patterns::assess(&findings, side, duration_weeks),
        pattern_questions_answered: patterns::any_pattern_question_answered(&findings),
        book_evaluation,
        anticoagulants: situation.record.anticoagulants.clone(),
    }))
}

impl Evaluation {
    /// Whether any red flag (DVT included) was raised.
    pub fn has_red_flag(&self) -> bool {
        self.dvt.is_some() || !self.red_flags.is_empty()
    }

    /// The evidence of a finding, for wording that wants to quote it.
    pub fn mentions(evidence: &[Evidence], question: Question) -> bool {
        evidence.contains(&Evidence::Answered(question))
    }
}
