//! Possible DVT: the Wells score and the NICE NG158 pathway (likely: duplex; unlikely: D-dimer,
//! age-adjusted over 50; incomplete: ask for the missing items and offer both; anticoagulated:
//! said; pregnancy and under-18: Wells not validated, duplex directly; no second duplex while
//! one is on order).

use super::Urgency;
use super::facts::{DDimerResult, DDimerUnit, DuplexOrder, OrderState, RecordEvidence};
use super::finding::{Evidence, Findings};
use super::orders::{Condition, OrderKind, Priority, ProposedOrder};
use super::question::{Question, Side};
use super::wells::WellsScore;

/// The signs that raise the DVT card [6][7][8]; sudden calf swelling is one too [2][9].
pub const DVT_SIGNS: &[Question] = &[
    Question::UnilateralSwelling,
    Question::CalfPain,
    Question::Warmth,
    Question::Redness,
    Question::SuddenCalfSwelling,
];

/// The D-dimer assay cut-off in ug/L FEU, and the age above which it is age-adjusted
/// (age x 10 ug/L FEU).
pub const D_DIMER_CUTOFF_FEU: f64 = 500.0;
pub const AGE_ADJUSTMENT_FROM: u32 = 50;

/// Groups in whom the Wells score is not validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialPopulation {
    PregnantOrPostpartum,
    UnderEighteen(u32),
}

/// How the latest D-dimer reads against the cut-off that applies.
#[derive(Debug, Clone, PartialEq)]
pub enum DDimerReading {
    Positive {
        cutoff: f64,
        age_adjusted: bool,
    },
    Negative {
        cutoff: f64,
        age_adjusted: bool,
    },
    /// DDU, or a unit that could not be converted: never compared with an FEU cut-off.
    NotComparable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DDimerFinding {
    pub result: DDimerResult,
    pub reading: DDimerReading,
}

/// The step of the pathway that applies now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pathway {
    /// Wells is not validated here: image directly.
    DuplexDirect,
    /// Likely (score >= 2): proximal leg vein ultrasound with the result within 4 hours.
    DuplexFirst,
    /// Unlikely, but anticoagulated: the D-dimer is unreliable; image.
    DuplexAnticoagulated,
    /// Unlikely with a positive D-dimer: image.
    DuplexAfterPositiveDDimer,
    /// Unlikely: D-dimer first, duplex if positive.
    DDimerFirst,
    /// Unlikely with a negative D-dimer: consider an alternative diagnosis; safety-net advice.
    ConsiderAlternative,
    /// Incomplete score below 2: complete the missing items; both tests offered.
    CompleteTheScore,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DvtAssessment {
    /// The DVT signs present.
    pub signs: Vec<Evidence>,
    pub wells: WellsScore,
    pub urgency: Urgency,
    pub pathway: Pathway,
    pub special_populations: Vec<SpecialPopulation>,
    pub anticoagulants: Vec<RecordEvidence>,
    pub d_dimer: Option<DDimerFinding>,
    /// A pending duplex that already covers the leg: no other is suggested.
    pub duplex_on_order: Option<DuplexOrder>,
    /// Other duplex scans on the record worth mentioning (completed, or another leg).
    pub other_duplex: Vec<DuplexOrder>,
    pub orders: Vec<ProposedOrder>,
}

/// The risk score reading shared by every card about DVT risk.
pub fn wells(findings: &Findings<'_>) -> WellsScore {
    WellsScore::evaluate(findings)
}

pub fn special_populations(findings: &Findings<'_>, age_years: Option<u32>) -> Vec<SpecialPopulation> {
    let mut populations = Vec::new();
    if findings.present(Question::PregnantOrPostpartum) {
        populations.push(SpecialPopulation::PregnantOrPostpartum);
    }
    if let Some(age) = age_years.filter(|age| *age < 18) {
        populations.push(SpecialPopulation::UnderEighteen(age));
    }
    populations
}

/// Whether a pending duplex examines the leg in question. An order whose side is unknown, or
/// a patient whose side is unknown, is covered only by a bilateral scan.
pub fn duplex_covers(order: &DuplexOrder, side: Option<Side>) -> bool {
    side_covers(order.side, side)
}

/// Whether a scan of `ordered` examines `wanted` (unknown on either side: only bilateral does).
pub fn side_covers(ordered: Option<Side>, wanted: Option<Side>) -> bool {
    match (ordered, wanted) {
        (Some(Side::Both), _) => true,
        (Some(ordered), Some(wanted)) => ordered.covers(wanted),
        _ => false,
    }
}

fn read_d_dimer(result: &DDimerResult, age_years: Option<u32>) -> DDimerReading {
    let (DDimerUnit::Feu, Some(value)) = (result.unit, result.micrograms_per_litre) else {
        return DDimerReading::NotComparable;
    };
    let (cutoff, age_adjusted) = match age_years {
        Some(age) if age > AGE_ADJUSTMENT_FROM => (f64::from(age) * 10.0, true),
        _ => (D_DIMER_CUTOFF_FEU, false),
    };
    if value >= cutoff {
        DDimerReading::Positive { cutoff, age_adjusted }
    } else {
        DDimerReading::Negative { cutoff, age_adjusted }
    }
}

/// The DVT assessment, when any DVT sign is present.
pub fn assess(findings: &Findings<'_>, age_years: Option<u32>, side: Option<Side>) -> Option<DvtAssessment> {
    let signs = findings.evidence_of(DVT_SIGNS);
    if signs.is_empty() {
        return None;
    }
    let sign_questions: Vec<Question> = DVT_SIGNS.iter().copied().filter(|q| findings.present(*q)).collect();
    let record = findings.record();
    let wells = wells(findings);
    let special_populations = special_populations(findings, age_years);
    let anticoagulants = record.anticoagulants.clone();
    let d_dimer = record
        .d_dimers
        .iter()
        .max_by_key(|d| d.evidence.date)
        .map(|result| DDimerFinding { result: result.clone(), reading: read_d_dimer(result, age_years) });

    let pathway = if !special_populations.is_empty() {
        Pathway::DuplexDirect
    } else if wells.likely() {
        Pathway::DuplexFirst
    } else if !wells.complete {
        Pathway::CompleteTheScore
    } else if !anticoagulants.is_empty() {
        Pathway::DuplexAnticoagulated
    } else {
        match d_dimer.as_ref().map(|d| &d.reading) {
            Some(DDimerReading::Positive { .. }) => Pathway::DuplexAfterPositiveDDimer,
            Some(DDimerReading::Negative { .. }) => Pathway::ConsiderAlternative,
            _ => Pathway::DDimerFirst,
        }
    };
    let urgency = if wells.likely() { Urgency::Critical } else { Urgency::Warning };

    let duplex = || ProposedOrder::new(OrderKind::VenousDuplex, side, Priority::Urgent).because(&sign_questions);
    let d_dimer_test = || ProposedOrder::new(OrderKind::DDimer, None, Priority::Urgent).because(&sign_questions);
    let mut orders = match pathway {
        Pathway::DuplexDirect
        | Pathway::DuplexFirst
        | Pathway::DuplexAnticoagulated
        | Pathway::DuplexAfterPositiveDDimer => vec![duplex().recommended()],
        Pathway::DDimerFirst => {
            vec![d_dimer_test().recommended(), duplex().only_if(Condition::IfDDimerPositive)]
        }
        Pathway::ConsiderAlternative => Vec::new(),
        Pathway::CompleteTheScore if !anticoagulants.is_empty() => vec![duplex()],
        Pathway::CompleteTheScore => vec![duplex(), d_dimer_test()],
    };

    let (covering, other): (Vec<&DuplexOrder>, Vec<&DuplexOrder>) =
        record.duplex_orders.iter().partition(|order| order.state == OrderState::Pending && duplex_covers(order, side));
    let duplex_on_order = covering.into_iter().max_by_key(|order| order.evidence.date).cloned();
    if duplex_on_order.is_some() {
        orders.retain(|order| order.kind != OrderKind::VenousDuplex);
    }

    Some(DvtAssessment {
        signs,
        wells,
        urgency,
        pathway,
        special_populations,
        anticoagulants,
        d_dimer,
        duplex_on_order,
        other_duplex: other.into_iter().cloned().collect(),
        orders,
    })
}
