//! Order hooks (order-select, order-sign): do the draft orders answer the red flags?
//!
//! When DVT is suspected and the drafts hold no venous duplex (or, when Wells says unlikely, no
//! D-dimer), the clinician is told to rule DVT out first, with the missing order suggested. When
//! the intake points to a nerve deficit and no lumbar spine MRI is drafted, likewise. Knee MRI,
//! physiotherapy or an NSAID drafted for such a patient is named on the card. When the drafts
//! already cover the red flag, nothing is said about it. An order already drafted is never
//! suggested again.

use super::Urgency;
use super::dvt::{Pathway, side_covers};
use super::orders::{OrderKind, Priority, ProposedOrder};
use super::question::Side;
use super::red_flags::{RedFlag, RedFlagKind};
use super::{Assessment, Evaluation};

/// What a draft order is, as far as these rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftKind {
    Order(OrderKind),
    Nsaid,
    /// Anything else (it may still concern the knee).
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DraftOrder {
    pub kind: DraftKind,
    pub side: Option<Side>,
    /// Whether the clinician selected it in this order-select call (always true for order-sign).
    pub selected: bool,
    /// Whether it concerns the knee (a knee code, or "knee" in its code text).
    pub concerns_knee: bool,
    /// What the clinician sees it as (the code's text or display; empty when it has neither).
    pub description: String,
}

impl DraftOrder {
    /// Knee MRI, physiotherapy or an NSAID: treatments of the knee that do not answer a red flag.
    pub fn treats_the_knee(&self) -> bool {
        matches!(self.kind, DraftKind::Order(OrderKind::KneeMri | OrderKind::PhysiotherapyReferral) | DraftKind::Nsaid)
    }
}

/// A red flag the drafts do not answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Uncovered {
    pub urgency: Urgency,
    /// The orders to add (never one already drafted).
    pub missing: Vec<ProposedOrder>,
    /// Knee treatments drafted for this patient.
    pub knee_treatments: Vec<DraftOrder>,
}

/// The review of a set of draft orders.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderReview {
    /// No usable intake, and knee pain is on the record or the drafts concern the knee.
    IntakeNeeded(Assessment),
    Reviewed {
        evaluation: Box<Evaluation>,
        dvt: Option<Uncovered>,
        nerve_deficit: Option<Uncovered>,
        /// Red flags no order can answer (PE, threatened circulation, infection, aneurysm):
        /// shown as on patient-view, never suppressed.
        other_red_flags: Vec<RedFlag>,
    },
    NothingToSay,
}

fn drafted(drafts: &[DraftOrder], kind: OrderKind) -> bool {
    drafts.iter().any(|d| d.kind == DraftKind::Order(kind))
}

/// Whether a draft is this proposed order: the same kind and, for a venous duplex, a scan that
/// examines the leg (one drafted for the other leg is not; an unstated side is the clinician's
/// to choose, so it is).
fn answers(draft: &DraftOrder, order: &ProposedOrder) -> bool {
    draft.kind == DraftKind::Order(order.kind)
        && (order.kind != OrderKind::VenousDuplex
            || draft.side.is_none()
            || order.side.is_none()
            || side_covers(draft.side, order.side))
}

fn dvt_review(evaluation: &Evaluation, drafts: &[DraftOrder]) -> Option<Uncovered> {
    let dvt = evaluation.dvt.as_ref()?;
    if dvt.duplex_on_order.is_some() || dvt.pathway == Pathway::ConsiderAlternative {
        return None;
    }
    // A drafted duplex covers the leg unless it names only the other one.
    let scan = ProposedOrder::new(OrderKind::VenousDuplex, evaluation.side, Priority::Urgent);
    let duplex_drafted = drafts.iter().any(|d| answers(d, &scan));
    let d_dimer_answers_it =
        matches!(dvt.pathway, Pathway::DDimerFirst | Pathway::CompleteTheScore | Pathway::ReadTheDDimer);
    if duplex_drafted || (d_dimer_answers_it && drafted(drafts, OrderKind::DDimer)) {
        return None;
    }
    let missing: Vec<ProposedOrder> =
        dvt.orders.iter().filter(|o| !drafts.iter().any(|d| answers(d, o))).cloned().collect();
    Some(Uncovered {
        urgency: Urgency::Critical,
        missing,
        knee_treatments: drafts.iter().filter(|d| d.treats_the_knee()).cloned().collect(),
    })
}

fn nerve_review(evaluation: &Evaluation, drafts: &[DraftOrder]) -> Option<Uncovered> {
    let flags: Vec<&RedFlag> = evaluation
        .red_flags
        .iter()
        .filter(|f| matches!(f.kind, RedFlagKind::NeuroDeficit | RedFlagKind::CaudaEquina))
        .collect();
    let urgency = flags.iter().map(|f| f.urgency).max()?;
    if drafted(drafts, OrderKind::LumbarSpineMri) {
        return None;
    }
    // One order per kind, at the most urgent flag's priority (cauda equina: same day).
    let mut missing: Vec<ProposedOrder> = flags.iter().flat_map(|f| f.orders.iter()).cloned().collect();
    missing.sort_by_key(|o| std::cmp::Reverse(o.priority));
    let mut seen = Vec::new();
    missing.retain(|o| {
        let first = !seen.contains(&o.kind);
        seen.push(o.kind);
        first
    });
    Some(Uncovered {
        urgency,
        missing,
        knee_treatments: drafts.iter().filter(|d| d.treats_the_knee()).cloned().collect(),
    })
}

/// Reviews draft orders against the patient's assessment.
#[tracing::instrument(name = "review draft orders", skip_all)]
pub fn review(assessment: Assessment, drafts: &[DraftOrder]) -> OrderReview {
    match assessment {
        Assessment::Evaluated(evaluation) => {
            let dvt = dvt_review(&evaluation, drafts);
            let nerve_deficit = nerve_review(&evaluation, drafts);
            let other_red_flags: Vec<RedFlag> = evaluation
                .red_flags
                .iter()
                .filter(|f| {
                    matches!(
                        f.kind,
                        RedFlagKind::PulmonaryEmbolism
                            | RedFlagKind::LimbIschaemia
                            | RedFlagKind::Infection
                            | RedFlagKind::PoplitealAneurysm
                    )
                })
                .cloned()
                .collect();
            if dvt.is_none() && nerve_deficit.is_none() && other_red_flags.is_empty() {
                return OrderReview::NothingToSay;
            }
            OrderReview::Reviewed { evaluation, dvt, nerve_deficit, other_red_flags }
        }
        needed @ Assessment::IntakeNeeded { .. } => OrderReview::IntakeNeeded(needed),
        Assessment::NothingToSay if drafts.iter().any(|d| d.concerns_knee) => {
            OrderReview::IntakeNeeded(Assessment::IntakeNeeded { stale: None, knee_pain_on_record: Vec::new() })
        }
        Assessment::NothingToSay => OrderReview::NothingToSay,
    }
}
