//! The three patterns of posterior knee pain (clinical-logic.md section 3), ranked by the number
//! of features that support them. A pattern is raised by its cardinal feature or by at least
//! two of its other features; a single minor feature raises nothing.

use super::facts::RecordEvidence;
use super::finding::{Evidence, Findings};
use super::orders::{OrderKind, Priority, ProposedOrder};
use super::question::{Question, Side};
use super::red_flags::RedFlagKind;
use super::thresholds::Thresholds;
use super::{Hazard, Urgency};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Baker (popliteal) cyst [2][10][11].
    BakerCyst,
    /// Distal hamstring (semimembranosus) tendinopathy [1][3].
    HamstringTendinopathy,
    /// Nerve pain: lumbosacral radiculopathy [4]; tibial nerve entrapment [5].
    NervePain,
}

/// The questions that define each pattern.
pub struct PatternFeatures {
    pub cardinal: &'static [Question],
    pub other: &'static [Question],
    pub against: &'static [Question],
}

pub fn features(pattern: Pattern) -> PatternFeatures {
    match pattern {
        Pattern::BakerCyst => PatternFeatures {
            cardinal: &[Question::LumpFullness],
            other: &[
                Question::WorseFullBendStraighten,
                Question::KneeSwelling,
                Question::MechanicalSymptoms,
                Question::StiffnessAfterSitting,
            ],
            against: &[],
        },
        Pattern::HamstringTendinopathy => PatternFeatures {
            cardinal: &[Question::PinpointInnerCorner],
            other: &[
                Question::WorseHillsStairsSpeed,
                Question::ResistedBendReproduces,
                Question::StretchReproduces,
                Question::RecentLoadIncrease,
            ],
            against: &[Question::LumpFullness],
        },
        Pattern::NervePain => PatternFeatures {
            cardinal: &[Question::BurningTinglingNumbness, Question::RadiatesBelowKnee],
            other: &[Question::SittingCoughChanges],
            against: &[],
        },
    }
}

pub const PATTERNS: &[Pattern] = &[Pattern::BakerCyst, Pattern::HamstringTendinopathy, Pattern::NervePain];

#[derive(Debug, Clone, PartialEq)]
pub struct PatternMatch {
    pub pattern: Pattern,
    pub cardinal: Vec<Evidence>,
    pub supporting: Vec<Evidence>,
    pub against: Vec<Evidence>,
    pub urgency: Urgency,
    pub orders: Vec<ProposedOrder>,
    /// The number of distinct features that support it (the ranking key). Several records of
    /// the same condition are one feature.
    pub strength: usize,
    /// Records that would support it but name the other side: not counted, and named on the card.
    pub other_side: Vec<RecordEvidence>,
    /// The pain has outlasted the window the plan gives itself (tendon: 2-4 weeks): imaging and an
    /// in-person evaluation are due, not a new load plan.
    pub window_passed: bool,
    /// The critical red flags to exclude before this plan: while there are any, the plan starts
    /// "once ... is excluded" and suggests no physiotherapy, self-care or load plan.
    pub after: Vec<Hazard>,
}

/// Whether a record naming `recorded` supports a complaint of the `wanted` side: the same side,
/// both, or a side one of them does not say.
fn same_side(recorded: Option<Side>, wanted: Option<Side>) -> bool {
    match (recorded, wanted) {
        (Some(recorded), Some(wanted)) => recorded == Side::Both || wanted == Side::Both || recorded == wanted,
        _ => true,
    }
}

/// Whether the intake answered at least one of the patterns' questions.
pub fn any_pattern_question_answered(findings: &Findings<'_>) -> bool {
    PATTERNS.iter().any(|p| {
        let f = features(*p);
        f.cardinal.iter().chain(f.other).any(|q| findings.intake().yes_no(*q).is_some())
    })
}

fn plan(
    pattern: Pattern,
    findings: &Findings<'_>,
    side: Option<Side>,
    weeks: Option<u32>,
    thresholds: &Thresholds,
) -> (Urgency, Vec<ProposedOrder>) {
    let persisting = weeks.is_some_and(|w| w >= thresholds.persisting_pain_weeks.value);
    match pattern {
        Pattern::BakerCyst => {
            let mut orders = vec![
                ProposedOrder::new(OrderKind::KneeUltrasound, side, Priority::Routine)
                    .recommended()
                    .because(&[Question::LumpFullness]),
            ];
            let derangement: Vec<Question> = [Question::MechanicalSymptoms, Question::GivingWay]
                .into_iter()
                .filter(|q| findings.present(*q))
                .collect();
            if !derangement.is_empty() {
                orders.push(ProposedOrder::new(OrderKind::KneeMri, side, Priority::Routine).because(&derangement));
            }
            orders.push(ProposedOrder::new(OrderKind::PhysiotherapyReferral, side, Priority::Routine));
            (Urgency::Info, orders)
        }
        Pattern::HamstringTendinopathy => {
            let mechanical = findings.present(Question::MechanicalSymptoms) || findings.present(Question::GivingWay);
            // Past the 2-4 week window imaging is due (and an in-person evaluation), not a new
            // 10-14 day load plan.
            let orders = if persisting {
                vec![
                    ProposedOrder::new(OrderKind::KneeUltrasound, side, Priority::Routine)
                        .recommended()
                        .because(&[Question::PinpointInnerCorner, Question::DurationWeeks]),
                ]
            } else {
                vec![
                    ProposedOrder::new(OrderKind::PhysiotherapyReferral, side, Priority::Routine)
                        .recommended()
                        .because(&[Question::PinpointInnerCorner]),
                ]
            };
            let urgency = if persisting || mechanical { Urgency::Warning } else { Urgency::Info };
            (urgency, orders)
        }
        Pattern::NervePain => {
            let mut orders = vec![ProposedOrder::new(OrderKind::PhysiotherapyReferral, None, Priority::Routine)];
            let long = weeks.is_some_and(|w| w > thresholds.nerve_pain_imaging_after_weeks.value);
            if long {
                orders.push(
                    ProposedOrder::new(OrderKind::LumbarSpineMri, None, Priority::Routine)
                        .because(&[Question::DurationWeeks]),
                );
            }
            (if long { Urgency::Warning } else { Urgency::Info }, orders)
        }
    }
}

/// The patterns that hold, strongest first. `hazards` are the critical red flags raised: the
/// patterns stay, but their plans wait for the red flags to be excluded.
pub fn assess(
    findings: &Findings<'_>,
    side: Option<Side>,
    weeks: Option<u32>,
    thresholds: &Thresholds,
    hazards: &[Hazard],
) -> Vec<PatternMatch> {
    let mut matches: Vec<PatternMatch> = PATTERNS
        .iter()
        .filter_map(|&pattern| {
            let f = features(pattern);
            let cardinal = findings.evidence_of(f.cardinal);
            let mut supporting = findings.evidence_of(f.other);
            let mut minor_features = f.other.iter().filter(|q| findings.present(**q)).count();
            let records = match pattern {
                Pattern::NervePain => findings.record().radiculopathy.as_slice(),
                Pattern::BakerCyst => findings.record().baker_support.as_slice(),
                Pattern::HamstringTendinopathy => &[],
            };
            let (same, other_side): (Vec<&RecordEvidence>, Vec<&RecordEvidence>) =
                records.iter().partition(|record| same_side(record.side, side));
            if !same.is_empty() {
                supporting.extend(same.into_iter().cloned().map(Evidence::Recorded));
                minor_features += 1;
            }
            if cardinal.is_empty() && minor_features < 2 {
                return None;
            }
            let cardinal_features = f.cardinal.iter().filter(|q| findings.present(**q)).count();
            let against = findings.evidence_of(f.against);
            let (urgency, mut orders) = plan(pattern, findings, side, weeks, thresholds);
            if !hazards.is_empty() {
                // No physiotherapy, self-care or load plan beside a critical red flag, and no knee
                // ultrasound before the vascular ultrasound of a pulsatile lump.
                orders.retain(|order| order.kind != OrderKind::PhysiotherapyReferral);
                if hazards.contains(&Hazard::Flag(RedFlagKind::PoplitealAneurysm)) {
                    orders.retain(|order| order.kind != OrderKind::KneeUltrasound);
                }
                // What the red flag asks for is the recommended action; these wait for it.
                for order in &mut orders {
                    order.recommended = false;
                }
            }
            let window_passed = pattern == Pattern::HamstringTendinopathy
                && weeks.is_some_and(|w| w >= thresholds.persisting_pain_weeks.value);
            Some(PatternMatch {
                pattern,
                cardinal,
                supporting,
                against,
                urgency,
                orders,
                strength: cardinal_features + minor_features,
                other_side: other_side.into_iter().cloned().collect(),
                window_passed,
                after: hazards.to_vec(),
            })
        })
        .collect();
    // Stable sort: equal strength keeps the contract's order.
    matches.sort_by_key(|m| std::cmp::Reverse(m.strength));
    matches
}
