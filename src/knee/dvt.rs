//! Possible DVT: the Wells score and the NICE NG158 pathway (likely: duplex; unlikely: D-dimer,
//! age-adjusted over 50; incomplete: ask for the missing items and offer both; anticoagulated:
//! said; pregnancy and under-18: Wells not validated, duplex directly; no second duplex while
//! one is on order).

use super::Urgency;
use super::facts::{DDimerResult, DDimerUnit, DuplexOrder, OrderState, RecordEvidence};
use super::finding::{Evidence, Findings};
use super::orders::{OrderKind, Priority, ProposedOrder};
use super::question::{Question, Side};
use super::thresholds::Thresholds;
use super::wells::WellsScore;

/// The signs that raise the DVT card [6][7][8]; sudden calf swelling is one too [2][9].
pub const DVT_SIGNS: &[Question] = &[
    Question::UnilateralSwelling,
    Question::CalfPain,
    Question::Warmth,
    Question::Redness,
    Question::SuddenCalfSwelling,
];

/// Groups in whom the Wells score is not validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialPopulation {
    PregnantOrPostpartum,
    UnderEighteen(u32),
}

/// The D-dimer cut-off that applies to this patient (µg/L FEU).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DDimerCutoff {
    pub value: f64,
    /// Over 50: age x 10.
    pub age_adjusted: bool,
}

/// How the latest D-dimer reads against the cut-off that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DDimerReading {
    Positive,
    Negative,
    /// DDU, or a unit that could not be converted: shown, never compared with an FEU cut-off.
    NotInterpreted,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DDimerFinding {
    pub result: DDimerResult,
    pub reading: DDimerReading,
}

/// The plan the DVT card recommends (NICE NG158, clinical-logic.md sections 2 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pathway {
    /// Wells is not validated here (pregnancy, under 18): venous duplex directly, no D-dimer.
    DuplexDirect,
    /// Likely (score >= 2, complete or not): proximal leg vein ultrasound within 4 hours.
    DuplexLikely,
    /// Not likely, but anticoagulated: the D-dimer is unreliable; image.
    DuplexAnticoagulated,
    /// Not likely with a positive D-dimer (FEU) on record: image within 4 hours.
    DuplexAfterPositiveDDimer,
    /// Unlikely: D-dimer first (duplex if positive, said in words).
    DDimerFirst,
    /// Unlikely with a negative D-dimer: consider an alternative diagnosis; safety-net advice.
    ConsiderAlternative,
    /// Unlikely with a D-dimer that is not interpreted (DDU): the clinician reads it with the
    /// laboratory's range; no fresh D-dimer because of it.
    ReadTheDDimer,
    /// Incomplete score below 2: complete the missing items; the tests are offered.
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
    /// Whether the intake says pregnant or postpartum.
    pub pregnancy_answered: bool,
    /// Pregnancy Conditions of the record that count.
    pub pregnancy: Vec<RecordEvidence>,
    pub anticoagulants: Vec<RecordEvidence>,
    pub d_dimer: Option<DDimerFinding>,
    /// The D-dimer cut-off for this patient (stated wherever a D-dimer is suggested).
    pub cutoff: DDimerCutoff,
    /// A pending duplex that already covers the leg: no other is suggested.
    pub duplex_on_order: Option<DuplexOrder>,
    /// A duplex of this leg completed within the window: its result is to be checked, and the
    /// duplex is offered, not recommended.
    pub completed_scan: Option<DuplexOrder>,
    /// Other duplex scans on the record worth mentioning (another leg, or older).
    pub other_duplex: Vec<DuplexOrder>,
    pub orders: Vec<ProposedOrder>,
}

/// The risk score reading shared by every card about DVT risk.
pub fn wells(findings: &Findings<'_>, thresholds: &Thresholds) -> WellsScore {
    WellsScore::evaluate(findings, thresholds.wells_likely_from.value)
}

pub fn special_populations(
    findings: &Findings<'_>,
    age_years: Option<u32>,
    thresholds: &Thresholds,
) -> Vec<SpecialPopulation> {
    let mut populations = Vec::new();
    if findings.present(Question::PregnantOrPostpartum) {
        populations.push(SpecialPopulation::PregnantOrPostpartum);
    }
    if let Some(age) = age_years.filter(|age| *age < thresholds.wells_not_validated_under_years.value) {
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

fn read_d_dimer(result: &DDimerResult, cutoff: DDimerCutoff) -> DDimerReading {
    match (result.unit, result.micrograms_per_litre) {
        (DDimerUnit::Feu, Some(value)) if value >= cutoff.value => DDimerReading::Positive,
        (DDimerUnit::Feu, Some(_)) => DDimerReading::Negative,
        _ => DDimerReading::NotInterpreted,
    }
}

/// The DVT assessment, when any DVT sign is present.
pub fn assess(
    findings: &Findings<'_>,
    age_years: Option<u32>,
    side: Option<Side>,
    thresholds: &Thresholds,
) -> Option<DvtAssessment> {
    let signs = findings.evidence_of(DVT_SIGNS);
    if signs.is_empty() {
        return None;
    }
    let sign_questions: Vec<Question> = DVT_SIGNS.iter().copied().filter(|q| findings.present(*q)).collect();
    let record = findings.record();
    let wells = wells(findings, thresholds);
    let special_populations = special_populations(findings, age_years, thresholds);
    let anticoagulants = record.anticoagulants.clone();
    let anticoagulated = !anticoagulants.is_empty();
    let (value, age_adjusted) = thresholds.d_dimer_cutoff(age_years);
    let cutoff = DDimerCutoff { value, age_adjusted };
    let d_dimer = record
        .d_dimers
        .iter()
        .max_by_key(|d| d.evidence.date)
        .map(|result| DDimerFinding { result: result.clone(), reading: read_d_dimer(result, cutoff) });
    // Anticoagulation makes the D-dimer unreliable: it is shown, never read.
    let reading = d_dimer.as_ref().filter(|_| !anticoagulated).map(|d| d.reading);

    let pathway = if !special_populations.is_empty() {
        Pathway::DuplexDirect
    } else if wells.likely() {
        Pathway::DuplexLikely
    } else if anticoagulated {
        Pathway::DuplexAnticoagulated
    } else if reading == Some(DDimerReading::Positive) {
        Pathway::DuplexAfterPositiveDDimer
    } else if !wells.complete {
        Pathway::CompleteTheScore
    } else {
        match reading {
            Some(DDimerReading::Negative) => Pathway::ConsiderAlternative,
            Some(DDimerReading::NotInterpreted) => Pathway::ReadTheDDimer,
            _ => Pathway::DDimerFirst,
        }
    };
    let urgency = match pathway {
        Pathway::DuplexDirect | Pathway::DuplexLikely | Pathway::DuplexAfterPositiveDDimer => Urgency::Critical,
        _ => Urgency::Warning,
    };

    let (covering, other): (Vec<&DuplexOrder>, Vec<&DuplexOrder>) =
        record.duplex_orders.iter().partition(|order| duplex_covers(order, side));
    let latest = |state: OrderState| {
        covering
            .iter()
            .filter(|order| order.state == state)
            .max_by_key(|order| order.evidence.date)
            .map(|o| (*o).clone())
    };
    let duplex_on_order = latest(OrderState::Pending);
    let completed_scan = latest(OrderState::Completed);
    let other_duplex: Vec<DuplexOrder> = other.into_iter().cloned().collect();

    let duplex = || ProposedOrder::new(OrderKind::VenousDuplex, side, Priority::Urgent).because(&sign_questions);
    let d_dimer_test = || ProposedOrder::new(OrderKind::DDimer, None, Priority::Urgent).because(&sign_questions);
    let d_dimer_on_record = d_dimer.is_some();
    let mut orders = match pathway {
        Pathway::DuplexDirect
        | Pathway::DuplexLikely
        | Pathway::DuplexAnticoagulated
        | Pathway::DuplexAfterPositiveDDimer => vec![duplex().recommended()],
        // "Duplex if the D-dimer is positive" is advice, not an order drafted in advance.
        Pathway::DDimerFirst => vec![d_dimer_test().recommended()],
        Pathway::ConsiderAlternative => Vec::new(),
        Pathway::ReadTheDDimer => vec![duplex()],
        Pathway::CompleteTheScore if d_dimer_on_record => vec![duplex()],
        Pathway::CompleteTheScore => vec![duplex(), d_dimer_test()],
    };
    if duplex_on_order.is_some() {
        // The scan on order answers the question: no second one, and nothing else is pressed.
        orders.retain(|order| order.kind != OrderKind::VenousDuplex);
    } else if completed_scan.is_some() && pathway == Pathway::DuplexLikely && !anticoagulated && !d_dimer_on_record {
        // After a negative scan with DVT likely, NG158 goes on with a D-dimer.
        orders.push(d_dimer_test());
    }
    if duplex_on_order.is_some() || completed_scan.is_some() {
        // The scan on order, or just done, is to be read first: the rest is offered, not
        // recommended.
        for order in &mut orders {
            order.recommended = false;
        }
    }

    let pregnancy = findings.get(Question::PregnantOrPostpartum);
    Some(DvtAssessment {
        signs,
        wells,
        urgency,
        pathway,
        special_populations,
        pregnancy_answered: pregnancy.evidence().contains(&Evidence::Answered(Question::PregnantOrPostpartum)),
        pregnancy: pregnancy
            .evidence()
            .iter()
            .filter_map(|e| match e {
                Evidence::Recorded(record) => Some(record.clone()),
                Evidence::Answered(_) => None,
            })
            .collect(),
        anticoagulants,
        d_dimer,
        cutoff,
        duplex_on_order,
        completed_scan,
        other_duplex,
        orders,
    })
}
