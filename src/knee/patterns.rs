//! The three patterns of posterior knee pain (clinical-logic.md section 3), ranked by the number
//! of features that support them. A pattern is raised by its cardinal feature or by at least
//! two of its other features; a single minor feature raises nothing.

use super::Urgency;
use super::finding::{Evidence, Findings};
use super::orders::{OrderKind, Priority, ProposedOrder};
use super::question::{Question, Side};

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

/// Nerve pain lasting longer than this many weeks justifies a lumbar spine MRI.
pub const NERVE_PAIN_IMAGING_AFTER_WEEKS: u32 = 6;
/// Tendon pain not better after this many weeks justifies imaging, and pain this long books an
/// evaluation (seed: "persists beyond 2-4 weeks").
pub const PERSISTING_PAIN_WEEKS: u32 = 4;

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
) -> (Urgency, Vec<ProposedOrder>) {
    let persisting = weeks.is_some_and(|w| w >= PERSISTING_PAIN_WEEKS);
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
            let mut orders = vec![
                ProposedOrder::new(OrderKind::PhysiotherapyReferral, side, Priority::Routine)
                    .recommended()
                    .because(&[Question::PinpointInnerCorner]),
            ];
            let mechanical = findings.present(Question::MechanicalSymptoms) || findings.present(Question::GivingWay);
            if persisting {
                orders.push(
                    ProposedOrder::new(OrderKind::KneeUltrasound, side, Priority::Routine)
                        .because(&[Question::DurationWeeks]),
                );
            }
            let urgency = if persisting || mechanical { Urgency::Warning } else { Urgency::Info };
            (urgency, orders)
        }
        Pattern::NervePain => {
            let mut orders = vec![ProposedOrder::new(OrderKind::PhysiotherapyReferral, None, Priority::Routine)];
            let long = weeks.is_some_and(|w| w > NERVE_PAIN_IMAGING_AFTER_WEEKS);
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

/// The patterns that hold, strongest first.
pub fn assess(findings: &Findings<'_>, side: Option<Side>, weeks: Option<u32>) -> Vec<PatternMatch> {
    let mut matches: Vec<PatternMatch> = PATTERNS
        .iter()
        .filter_map(|&pattern| {
            let f = features(pattern);
            let cardinal = findings.evidence_of(f.cardinal);
            let mut supporting = findings.evidence_of(f.other);
            let mut minor_features = f.other.iter().filter(|q| findings.present(**q)).count();
            if pattern == Pattern::NervePain && !findings.record().radiculopathy.is_empty() {
                supporting.extend(findings.record().radiculopathy.iter().cloned().map(Evidence::Recorded));
                minor_features += 1;
            }
            if cardinal.is_empty() && minor_features < 2 {
                return None;
            }
            let cardinal_features = f.cardinal.iter().filter(|q| findings.present(**q)).count();
            let against = findings.evidence_of(f.against);
            let (urgency, orders) = plan(pattern, findings, side, weeks);
            Some(PatternMatch {
                pattern,
                cardinal,
                supporting,
                against,
                urgency,
                orders,
                strength: cardinal_features + minor_features,
            })
        })
        .collect();
    // Stable sort: equal strength keeps the contract's order.
    matches.sort_by_key(|m| std::cmp::Reverse(m.strength));
    matches
}
