//! The clinical rules: facts in, assessment out. Pure functions: no HTTP, JSON, FHIR or
//! database. Source of truth: `../shared/spec/clinical-logic.md` and the article it cites.

pub mod dvt;
pub mod facts;
pub mod finding;
pub mod order_review;
pub mod orders;
pub mod patterns;
pub mod prefill;
pub mod question;
pub mod red_flags;
pub mod thresholds;
pub mod wells;

#[cfg(test)]
mod scenarios;

use time::OffsetDateTime;

use dvt::DvtAssessment;
use facts::{IntakeState, Situation};
use finding::{Evidence, Findings};
use patterns::PatternMatch;
use question::{Question, Side};
use red_flags::{RedFlag, RedFlagKind};
use thresholds::Thresholds;

/// How urgently a finding needs the clinician.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    Info,
    Warning,
    Critical,
}

/// A critical red flag that the plans of the pattern cards wait for (clinical-logic.md
/// section 6): DVT when critical, a ruptured cyst, PE, threatened circulation, infection, cauda
/// equina, a popliteal aneurysm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hazard {
    Dvt,
    Flag(RedFlagKind),
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
pub fn assess(situation: &Situation, thresholds: &Thresholds) -> Assessment {
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
    let persisting = duration_weeks.is_some_and(|w| w >= thresholds.persisting_pain_weeks.value);
    let book_evaluation = (giving_way || persisting).then(|| BookEvaluation {
        urgency: if giving_way { Urgency::Warning } else { Urgency::Info },
        duration_weeks: duration_weeks.filter(|_| persisting),
        giving_way,
    });

    let dvt = dvt::assess(&findings, situation.age_years, side, thresholds);
    let mut red_flags = red_flags::assess(&findings, side);
    // A venous duplex already on order for this leg is never suggested again, by any card.
    if dvt.as_ref().is_some_and(|d| d.duplex_on_order.is_some()) {
        for flag in &mut red_flags {
            flag.orders.retain(|order| order.kind != orders::OrderKind::VenousDuplex);
        }
    }
    let hazards: Vec<Hazard> = dvt
        .iter()
        .filter(|d| d.urgency == Urgency::Critical)
        .map(|_| Hazard::Dvt)
        .chain(red_flags.iter().filter(|f| f.kind.waits_pattern_plans()).map(|f| Hazard::Flag(f.kind)))
        .collect();

    Assessment::Evaluated(Box::new(Evaluation {
        side,
        duration_weeks,
        dvt,
        wells: dvt::wells(&findings, thresholds),
        red_flags,
        patterns: patterns::assess(&findings, side, duration_weeks, thresholds, &hazards),
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
