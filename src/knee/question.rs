//! The intake questions, one variant per linkId of the public questionnaire contract
//! (`../shared/spec/questionnaire-contract.md`). The linkIds are a public interface: never rename.

/// Which knee (and so which leg) the complaint concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Left,
    Right,
    Both,
}

impl Side {
    /// The code used in `https://popliteal.dev/CodeSystem/side`.
    pub fn code(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
            Side::Both => "both",
        }
    }

    pub fn from_code(code: &str) -> Option<Side> {
        match code {
            "left" => Some(Side::Left),
            "right" => Some(Side::Right),
            "both" => Some(Side::Both),
            _ => None,
        }
    }

    /// Whether an examination of `self` also examines `wanted`.
    pub fn covers(self, wanted: Side) -> bool {
        self == Side::Both || self == wanted
    }
}

crate::coded::coded_enum! {
    /// One item of the intake questionnaire (its linkId: a public contract, never renamed).
    pub enum Question (link_id, from_link_id) {
        Side => "side",
        DurationWeeks => "duration-weeks",
        UnilateralSwelling => "rf-unilateral-swelling",
        CalfPain => "rf-calf-pain",
        Warmth => "rf-warmth",
        Redness => "rf-redness",
        SuddenCalfSwelling => "rf-sudden-calf-swelling",
        BreathlessChestPain => "rf-breathless-chest-pain",
        ColdPaleFoot => "rf-cold-pale-foot",
        SeverePainAfterInjury => "rf-severe-pain-after-injury",
        Fever => "rf-fever",
        SpreadingRedness => "rf-spreading-redness",
        PainAtRest => "rf-pain-at-rest",
        FootWeakness => "rf-foot-weakness",
        ProgressiveNumbness => "rf-progressive-numbness",
        LumpFullness => "lump-fullness",
        WorseFullBendStraighten => "worse-full-bend-straighten",
        KneeSwelling => "knee-swelling",
        MechanicalSymptoms => "mechanical-symptoms",
        StiffnessAfterSitting => "stiffness-after-sitting",
        PinpointInnerCorner => "pinpoint-inner-corner",
        WorseHillsStairsSpeed => "worse-hills-stairs-speed",
        ResistedBendReproduces => "resisted-bend-reproduces",
        StretchReproduces => "stretch-reproduces",
        RecentLoadIncrease => "recent-load-increase",
        BurningTinglingNumbness => "burning-tingling-numbness",
        RadiatesBelowKnee => "radiates-below-knee",
        SittingCoughChanges => "sitting-cough-changes",
        GivingWay => "giving-way",
        SaddleBladderBowel => "rf-saddle-bladder-bowel",
        PulsatileLump => "pulsatile-lump",
        PregnantOrPostpartum => "pregnant-or-postpartum",
        WellsActiveCancer => "wells-active-cancer",
        WellsParalysisCast => "wells-paralysis-cast",
        WellsBedriddenSurgery => "wells-bedridden-surgery",
        WellsDeepVeinTenderness => "wells-deep-vein-tenderness",
        WellsEntireLegSwollen => "wells-entire-leg-swollen",
        WellsCalfSwelling3cm => "wells-calf-swelling-3cm",
        WellsPittingOedema => "wells-pitting-oedema",
        WellsCollateralVeins => "wells-collateral-veins",
        WellsPreviousDvt => "wells-previous-dvt",
        WellsAlternativeDx => "wells-alternative-dx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_id_maps_back_to_its_question() {
        for question in Question::ALL {
            assert_eq!(Question::from_link_id(question.link_id()), Some(*question));
        }
        assert_eq!(Question::ALL.len(), 42);
    }

    #[test]
    fn a_bilateral_examination_covers_either_side_but_not_the_reverse() {
        assert!(Side::Both.covers(Side::Left));
        assert!(Side::Right.covers(Side::Right));
        assert!(!Side::Left.covers(Side::Both));
        assert!(!Side::Left.covers(Side::Right));
    }
}
