//! Red flags other than DVT itself (clinical-logic.md section 1). They are checked first and
//! nothing else in the assessment can remove them.

use super::Urgency;
use super::finding::{Evidence, Findings};
use super::orders::{OrderKind, Priority, ProposedOrder};
use super::question::{Question, Side};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedFlagKind {
    /// Sudden calf pain/swelling after a "pop": pseudo-thrombophlebitis [2][9].
    BakerCystRupture,
    /// Breathlessness or chest pain with leg symptoms (NHS DVT page).
    PulmonaryEmbolism,
    /// Cold, pale or bluish foot; severe sudden pain after injury.
    LimbIschaemia,
    /// Spreading redness, severe pain at rest, or fever with a local sign.
    Infection,
    /// New or worsening foot weakness; progressive numbness [4].
    NeuroDeficit,
    /// Saddle numbness, bladder or bowel disturbance, symptoms in both legs.
    CaudaEquina,
    /// A pulsatile lump behind the knee.
    PoplitealAneurysm,
}

impl RedFlagKind {
    /// Whether pattern plans wait for this flag to be excluded (clinical-logic.md section 6):
    /// every critical flag of the article and the aneurysm; not a nerve deficit, whose own
    /// workup does not conflict with them.
    pub fn waits_pattern_plans(self) -> bool {
        !matches!(self, RedFlagKind::NeuroDeficit)
    }

    /// Whether the card carries the Wells score (cards about DVT risk).
    pub fn concerns_dvt_risk(self) -> bool {
        matches!(self, RedFlagKind::BakerCystRupture | RedFlagKind::PulmonaryEmbolism)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedFlag {
    pub kind: RedFlagKind,
    pub urgency: Urgency,
    pub evidence: Vec<Evidence>,
    pub orders: Vec<ProposedOrder>,
}

/// Local signs that, together with fever, point to infection.
const LOCAL_SIGNS: &[Question] = &[Question::Warmth, Question::Redness, Question::KneeSwelling, Question::PainAtRest];

fn flag(kind: RedFlagKind, urgency: Urgency, evidence: Vec<Evidence>) -> RedFlag {
    RedFlag { kind, urgency, evidence, orders: Vec::new() }
}

pub fn assess(findings: &Findings<'_>, side: Option<Side>) -> Vec<RedFlag> {
    let mut flags = Vec::new();

    if findings.present(Question::SuddenCalfSwelling) {
        let mut rupture = flag(
            RedFlagKind::BakerCystRupture,
            Urgency::Critical,
            findings.evidence_of(&[Question::SuddenCalfSwelling, Question::LumpFullness]),
        );
        rupture.orders.push(
            ProposedOrder::new(OrderKind::VenousDuplex, side, Priority::Urgent)
                .recommended()
                .because(&[Question::SuddenCalfSwelling]),
        );
        flags.push(rupture);
    }

    if findings.present(Question::BreathlessChestPain) {
        flags.push(flag(
            RedFlagKind::PulmonaryEmbolism,
            Urgency::Critical,
            findings.evidence_of(&[Question::BreathlessChestPain]),
        ));
    }

    let ischaemia = findings.evidence_of(&[Question::ColdPaleFoot, Question::SeverePainAfterInjury]);
    if !ischaemia.is_empty() {
        flags.push(flag(RedFlagKind::LimbIschaemia, Urgency::Critical, ischaemia));
    }

    let mut infection = findings.evidence_of(&[Question::SpreadingRedness, Question::PainAtRest]);
    let fever = findings.get(Question::Fever);
    let local = findings.evidence_of(LOCAL_SIGNS);
    if fever.is_present() && !local.is_empty() {
        infection.extend(fever.evidence().iter().cloned());
        infection.extend(local.into_iter().filter(|e| *e != Evidence::Answered(Question::PainAtRest)));
    }
    if !infection.is_empty() {
        flags.push(flag(RedFlagKind::Infection, Urgency::Critical, infection));
    }

    let deficit = findings.evidence_of(&[Question::FootWeakness, Question::ProgressiveNumbness]);
    if !deficit.is_empty() {
        // Progressive numbness is progressive by definition; weakness alone is "new or worsening"
        // and cannot be told apart, so it is a warning.
        let urgency =
            if findings.present(Question::ProgressiveNumbness) { Urgency::Critical } else { Urgency::Warning };
        let mut neuro = flag(RedFlagKind::NeuroDeficit, urgency, deficit);
        neuro.orders.push(
            ProposedOrder::new(OrderKind::LumbarSpineMri, None, Priority::Urgent)
                .recommended()
                .because(&[Question::FootWeakness, Question::ProgressiveNumbness]),
        );
        flags.push(neuro);
    }

    if findings.present(Question::SaddleBladderBowel) {
        let mut cauda =
            flag(RedFlagKind::CaudaEquina, Urgency::Critical, findings.evidence_of(&[Question::SaddleBladderBowel]));
        cauda.orders.push(
            ProposedOrder::new(OrderKind::LumbarSpineMri, None, Priority::Stat)
                .recommended()
                .because(&[Question::SaddleBladderBowel]),
        );
        flags.push(cauda);
    }

    if findings.present(Question::PulsatileLump) {
        flags.push(flag(
            RedFlagKind::PoplitealAneurysm,
            Urgency::Warning,
            findings.evidence_of(&[Question::PulsatileLump]),
        ));
    }

    flags
}
