//! Clinical scenarios: each test states one behaviour of the rules of
//! `shared/spec/clinical-logic.md` (and the intake part of the questionnaire contract) and
//! checks it through the public entry point, `assess`. The order hooks' review of draft orders
//! has its own module, `order_review`.

mod order_review;

use time::OffsetDateTime;
use time::macros::{date, datetime};

use super::dvt::{DDimerReading, DvtAssessment, Pathway, SpecialPopulation};
use super::facts::{
    Answer, DDimerResult, DDimerUnit, DuplexOrder, Intake, IntakeState, OrderState, RecordEvidence, RecordFacts,
    RecordSource, Situation,
};
use super::finding::Evidence;
use super::orders::{OrderKind, Priority, ProposedOrder};
use super::patterns::{Pattern, PatternMatch};
use super::question::{Question, Side};
use super::red_flags::{RedFlag, RedFlagKind};
use super::thresholds::Thresholds;
use super::wells::{ItemSource, WELLS_ITEMS};
use super::{Assessment, Evaluation, Hazard, Urgency, assess};

/// A fixed moment: every scenario is evaluated "now".
const NOW: OffsetDateTime = datetime!(2025-03-14 10:30 UTC);

/// The red flag questions of the intake (DVT signs included).
const RED_FLAG_QUESTIONS: &[Question] = &[
    Question::UnilateralSwelling,
    Question::CalfPain,
    Question::Warmth,
    Question::Redness,
    Question::SuddenCalfSwelling,
    Question::BreathlessChestPain,
    Question::ColdPaleFoot,
    Question::SeverePainAfterInjury,
    Question::Fever,
    Question::SpreadingRedness,
    Question::PainAtRest,
    Question::FootWeakness,
    Question::ProgressiveNumbness,
    Question::SaddleBladderBowel,
    Question::PulsatileLump,
];

/// The questions that define the three patterns.
const PATTERN_QUESTIONS: &[Question] = &[
    Question::LumpFullness,
    Question::WorseFullBendStraighten,
    Question::KneeSwelling,
    Question::MechanicalSymptoms,
    Question::StiffnessAfterSitting,
    Question::PinpointInnerCorner,
    Question::WorseHillsStairsSpeed,
    Question::ResistedBendReproduces,
    Question::StretchReproduces,
    Question::RecentLoadIncrease,
    Question::BurningTinglingNumbness,
    Question::RadiatesBelowKnee,
    Question::SittingCoughChanges,
];

fn situation(intake: IntakeState, record: RecordFacts, age: Option<u32>) -> Situation {
    Situation { now: NOW, age_years: age, intake, record }
}

/// The thresholds shipped in `cds-hooks/rules.toml`.
fn thresholds() -> Thresholds {
    Thresholds::embedded().expect("rules.toml loads")
}

/// Assesses a situation with the shipped thresholds.
fn assess_with_shipped_rules(situation: &Situation) -> Assessment {
    assess(situation, &thresholds())
}

/// Evaluates a usable intake; panics when the rules did not evaluate it.
fn evaluate(intake: Intake, record: RecordFacts, age: Option<u32>) -> Evaluation {
    match assess_with_shipped_rules(&situation(IntakeState::Usable(intake), record, age)) {
        Assessment::Evaluated(evaluation) => *evaluation,
        other => panic!("a usable intake must be evaluated, got {other:?}"),
    }
}

/// An adult with no record facts.
fn evaluate_intake(intake: Intake) -> Evaluation {
    evaluate(intake, RecordFacts::default(), Some(45))
}

/// An intake on the left knee with every given question answered yes.
fn yes(questions: &[Question]) -> Intake {
    questions.iter().fold(Intake::default().with(Question::Side, Answer::Side(Side::Left)), |intake, q| {
        intake.with(*q, Answer::Yes)
    })
}

/// Adds "yes" answers to an intake.
fn and_yes(intake: Intake, questions: &[Question]) -> Intake {
    questions.iter().fold(intake, |intake, q| intake.with(*q, Answer::Yes))
}

/// Every Wells item answered "no" (left knee): a complete score of 0.
fn wells_all_no() -> Intake {
    wells_all_no_on(Side::Left)
}

/// Every Wells item answered "no", for the given knee.
fn wells_all_no_on(side: Side) -> Intake {
    WELLS_ITEMS
        .iter()
        .fold(Intake::default().with(Question::Side, Answer::Side(side)), |intake, (q, _)| intake.with(*q, Answer::No))
}

/// A complete Wells score of 2 (entire leg swollen, pitting oedema).
fn wells_likely() -> Intake {
    wells_all_no().with(Question::WellsEntireLegSwollen, Answer::Yes).with(Question::WellsPittingOedema, Answer::Yes)
}

fn weeks(intake: Intake, weeks: u32) -> Intake {
    intake.with(Question::DurationWeeks, Answer::Weeks(weeks))
}

fn evidence(reference: &str, description: &str) -> RecordEvidence {
    RecordEvidence::new(reference, description, Some(date!(2025 - 03 - 12)))
}

fn duplex(side: Option<Side>, state: OrderState) -> DuplexOrder {
    DuplexOrder { evidence: evidence("ServiceRequest/duplex", "US venous duplex"), side, state }
}

fn d_dimer(unit: DDimerUnit, micrograms_per_litre: f64) -> DDimerResult {
    DDimerResult {
        evidence: evidence("Observation/dd", "Fibrin D-dimer"),
        unit,
        micrograms_per_litre: Some(micrograms_per_litre),
    }
}

fn kinds(evaluation: &Evaluation) -> Vec<RedFlagKind> {
    evaluation.red_flags.iter().map(|f| f.kind).collect()
}

fn flag(evaluation: &Evaluation, kind: RedFlagKind) -> &RedFlag {
    evaluation
        .red_flags
        .iter()
        .find(|f| f.kind == kind)
        .unwrap_or_else(|| panic!("expected the {kind:?} flag, got {:?}", kinds(evaluation)))
}

fn has_flag(evaluation: &Evaluation, kind: RedFlagKind) -> bool {
    evaluation.red_flags.iter().any(|f| f.kind == kind)
}

fn dvt(evaluation: &Evaluation) -> &DvtAssessment {
    evaluation.dvt.as_ref().expect("the DVT assessment")
}

fn order(orders: &[ProposedOrder], kind: OrderKind) -> Option<&ProposedOrder> {
    orders.iter().find(|o| o.kind == kind)
}

fn has_order(orders: &[ProposedOrder], kind: OrderKind) -> bool {
    order(orders, kind).is_some()
}

fn pattern_kinds(evaluation: &Evaluation) -> Vec<Pattern> {
    evaluation.patterns.iter().map(|p| p.pattern).collect()
}

fn pattern(evaluation: &Evaluation, wanted: Pattern) -> &PatternMatch {
    evaluation
        .patterns
        .iter()
        .find(|p| p.pattern == wanted)
        .unwrap_or_else(|| panic!("expected the {wanted:?} pattern, got {:?}", pattern_kinds(evaluation)))
}

/// Every order proposed by any part of the evaluation.
fn all_orders(evaluation: &Evaluation) -> Vec<&ProposedOrder> {
    evaluation
        .red_flags
        .iter()
        .flat_map(|f| &f.orders)
        .chain(evaluation.dvt.iter().flat_map(|d| &d.orders))
        .chain(evaluation.patterns.iter().flat_map(|p| &p.orders))
        .collect()
}

mod red_flags {
    use super::*;

    #[test]
    fn an_intake_answering_no_to_every_red_flag_question_raises_no_red_flag_at_all() {
        let intake = RED_FLAG_QUESTIONS.iter().fold(wells_all_no(), |intake, q| intake.with(*q, Answer::No));
        let evaluation = evaluate_intake(intake);
        assert!(evaluation.red_flags.is_empty(), "{:?}", kinds(&evaluation));
        assert!(evaluation.dvt.is_none());
        assert!(!evaluation.has_red_flag());
    }

    #[test]
    fn sudden_calf_swelling_after_a_pop_raises_a_critical_rupture_card_and_the_dvt_card_too() {
        let evaluation = evaluate_intake(yes(&[Question::SuddenCalfSwelling]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::BakerCystRupture]);
        let rupture = flag(&evaluation, RedFlagKind::BakerCystRupture);
        assert_eq!(rupture.urgency, Urgency::Critical);
        assert!(rupture.evidence.contains(&Evidence::Answered(Question::SuddenCalfSwelling)));
        let scan = order(&rupture.orders, OrderKind::VenousDuplex).expect("the rupture card proposes a duplex");
        assert!(scan.recommended);
        assert_eq!(scan.side, Some(Side::Left));
        // Rupture and DVT look alike and may coexist: sudden calf swelling is a DVT sign.
        let dvt = dvt(&evaluation);
        assert!(dvt.signs.contains(&Evidence::Answered(Question::SuddenCalfSwelling)));
        assert!(RedFlagKind::BakerCystRupture.concerns_dvt_risk());
    }

    #[test]
    fn the_rupture_card_quotes_the_lump_behind_the_knee_when_there_is_one() {
        let evaluation = evaluate_intake(yes(&[Question::SuddenCalfSwelling, Question::LumpFullness]));
        let rupture = flag(&evaluation, RedFlagKind::BakerCystRupture);
        assert!(rupture.evidence.contains(&Evidence::Answered(Question::LumpFullness)));
    }

    #[test]
    fn breathlessness_or_chest_pain_alone_raises_a_critical_pulmonary_embolism_flag_carrying_the_wells_score() {
        let evaluation = evaluate_intake(yes(&[Question::BreathlessChestPain]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::PulmonaryEmbolism]);
        assert_eq!(flag(&evaluation, RedFlagKind::PulmonaryEmbolism).urgency, Urgency::Critical);
        assert!(evaluation.dvt.is_none(), "breathlessness is not a DVT sign");
        assert!(RedFlagKind::PulmonaryEmbolism.concerns_dvt_risk());
        assert_eq!(evaluation.wells.items.len(), WELLS_ITEMS.len());
    }

    #[test]
    fn a_cold_pale_foot_alone_raises_critical_limb_ischaemia() {
        let evaluation = evaluate_intake(yes(&[Question::ColdPaleFoot]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::LimbIschaemia]);
        let ischaemia = flag(&evaluation, RedFlagKind::LimbIschaemia);
        assert_eq!(ischaemia.urgency, Urgency::Critical);
        assert_eq!(ischaemia.evidence, vec![Evidence::Answered(Question::ColdPaleFoot)]);
        assert!(evaluation.dvt.is_none());
    }

    #[test]
    fn severe_sudden_pain_after_an_injury_alone_raises_critical_limb_ischaemia() {
        let evaluation = evaluate_intake(yes(&[Question::SeverePainAfterInjury]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::LimbIschaemia]);
        let ischaemia = flag(&evaluation, RedFlagKind::LimbIschaemia);
        assert_eq!(ischaemia.urgency, Urgency::Critical);
        assert_eq!(ischaemia.evidence, vec![Evidence::Answered(Question::SeverePainAfterInjury)]);
    }

    #[test]
    fn rapidly_spreading_redness_alone_raises_a_critical_infection_flag() {
        let evaluation = evaluate_intake(yes(&[Question::SpreadingRedness]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::Infection]);
        let infection = flag(&evaluation, RedFlagKind::Infection);
        assert_eq!(infection.urgency, Urgency::Critical);
        assert!(infection.evidence.contains(&Evidence::Answered(Question::SpreadingRedness)));
    }

    #[test]
    fn severe_constant_pain_at_rest_alone_raises_a_critical_infection_flag() {
        let evaluation = evaluate_intake(yes(&[Question::PainAtRest]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::Infection]);
        assert_eq!(flag(&evaluation, RedFlagKind::Infection).urgency, Urgency::Critical);
    }

    fn assert_fever_with_local_sign_raises_infection(local: Question) {
        let evaluation = evaluate_intake(yes(&[Question::Fever, local]));
        let infection = flag(&evaluation, RedFlagKind::Infection);
        assert_eq!(infection.urgency, Urgency::Critical);
        assert!(infection.evidence.contains(&Evidence::Answered(Question::Fever)));
        assert!(infection.evidence.contains(&Evidence::Answered(local)));
    }

    #[test]
    fn a_fever_with_warm_skin_raises_a_critical_infection_flag() {
        assert_fever_with_local_sign_raises_infection(Question::Warmth);
    }

    #[test]
    fn a_fever_with_redness_of_the_leg_raises_a_critical_infection_flag() {
        assert_fever_with_local_sign_raises_infection(Question::Redness);
    }

    #[test]
    fn a_fever_with_a_swollen_knee_raises_a_critical_infection_flag() {
        assert_fever_with_local_sign_raises_infection(Question::KneeSwelling);
        // Knee swelling is not a DVT sign: the infection flag stands alone.
        let evaluation = evaluate_intake(yes(&[Question::Fever, Question::KneeSwelling]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::Infection]);
        assert!(evaluation.dvt.is_none());
    }

    #[test]
    fn a_recorded_temperature_of_38_with_a_swollen_knee_raises_infection_citing_the_observation() {
        let temperature = evidence("Observation/t1", "Body temperature 38.6 Cel");
        let record = RecordFacts { recent_fever: vec![temperature.clone()], ..Default::default() };
        let evaluation = evaluate(yes(&[Question::KneeSwelling]), record, Some(45));
        let infection = flag(&evaluation, RedFlagKind::Infection);
        assert_eq!(infection.urgency, Urgency::Critical);
        assert!(infection.evidence.contains(&Evidence::Recorded(temperature)));
        assert!(infection.evidence.contains(&Evidence::Answered(Question::KneeSwelling)));
    }

    #[test]
    fn a_recorded_fever_wins_over_a_no_to_fever_on_the_form() {
        let record = RecordFacts {
            recent_fever: vec![evidence("Observation/t1", "Body temperature 38.2 Cel")],
            ..Default::default()
        };
        let intake = yes(&[Question::KneeSwelling]).with(Question::Fever, Answer::No);
        let evaluation = evaluate(intake, record, Some(45));
        assert!(has_flag(&evaluation, RedFlagKind::Infection));
    }

    #[test]
    fn fever_alone_raises_no_infection_flag() {
        let evaluation = evaluate_intake(yes(&[Question::Fever]));
        assert!(!has_flag(&evaluation, RedFlagKind::Infection));
        assert!(evaluation.red_flags.is_empty());
        assert!(evaluation.dvt.is_none());
    }

    #[test]
    fn a_recorded_fever_alone_raises_no_infection_flag() {
        let record = RecordFacts {
            recent_fever: vec![evidence("Observation/t1", "Body temperature 39.0 Cel")],
            ..Default::default()
        };
        let evaluation = evaluate(yes(&[]), record, Some(45));
        assert!(!has_flag(&evaluation, RedFlagKind::Infection));
    }

    #[test]
    fn a_local_sign_without_fever_raises_no_infection_flag() {
        for local in [Question::Warmth, Question::Redness, Question::KneeSwelling] {
            let evaluation = evaluate_intake(yes(&[local]).with(Question::Fever, Answer::No));
            assert!(!has_flag(&evaluation, RedFlagKind::Infection), "{local:?}");
            let evaluation = evaluate_intake(yes(&[local]));
            assert!(!has_flag(&evaluation, RedFlagKind::Infection), "{local:?} with fever not asked");
        }
    }

    #[test]
    fn new_foot_weakness_alone_is_a_warning_neuro_deficit_proposing_a_lumbar_spine_mri() {
        let evaluation = evaluate_intake(yes(&[Question::FootWeakness]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::NeuroDeficit]);
        let neuro = flag(&evaluation, RedFlagKind::NeuroDeficit);
        assert_eq!(neuro.urgency, Urgency::Warning);
        let mri = order(&neuro.orders, OrderKind::LumbarSpineMri).expect("a lumbar spine MRI");
        assert!(mri.recommended);
    }

    #[test]
    fn progressive_numbness_is_a_critical_neuro_deficit() {
        let evaluation = evaluate_intake(yes(&[Question::ProgressiveNumbness]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::NeuroDeficit]);
        let neuro = flag(&evaluation, RedFlagKind::NeuroDeficit);
        assert_eq!(neuro.urgency, Urgency::Critical);
        assert!(has_order(&neuro.orders, OrderKind::LumbarSpineMri));
    }

    #[test]
    fn foot_weakness_with_progressive_numbness_is_critical() {
        let evaluation = evaluate_intake(yes(&[Question::FootWeakness, Question::ProgressiveNumbness]));
        assert_eq!(flag(&evaluation, RedFlagKind::NeuroDeficit).urgency, Urgency::Critical);
    }

    #[test]
    fn saddle_numbness_or_bladder_disturbance_raises_critical_cauda_equina_with_a_stat_lumbar_mri() {
        let evaluation = evaluate_intake(yes(&[Question::SaddleBladderBowel]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::CaudaEquina]);
        let cauda = flag(&evaluation, RedFlagKind::CaudaEquina);
        assert_eq!(cauda.urgency, Urgency::Critical);
        let mri = order(&cauda.orders, OrderKind::LumbarSpineMri).expect("a lumbar spine MRI");
        assert_eq!(mri.priority, Priority::Stat);
        assert!(mri.recommended);
    }

    #[test]
    fn a_pulsatile_lump_behind_the_knee_raises_a_popliteal_aneurysm_warning() {
        let evaluation = evaluate_intake(yes(&[Question::PulsatileLump]));
        assert_eq!(kinds(&evaluation), vec![RedFlagKind::PoplitealAneurysm]);
        assert_eq!(flag(&evaluation, RedFlagKind::PoplitealAneurysm).urgency, Urgency::Warning);
        assert!(evaluation.dvt.is_none());
    }

    fn assert_dvt_sign_alone_raises_the_dvt_assessment(sign: Question) {
        let evaluation = evaluate_intake(yes(&[sign]));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.signs, vec![Evidence::Answered(sign)], "{sign:?}");
        assert!(dvt.urgency >= Urgency::Warning);
        assert!(!has_flag(&evaluation, RedFlagKind::Infection), "{sign:?} without fever is not infection");
    }

    #[test]
    fn one_sided_leg_swelling_alone_raises_the_dvt_assessment() {
        assert_dvt_sign_alone_raises_the_dvt_assessment(Question::UnilateralSwelling);
    }

    #[test]
    fn calf_pain_alone_raises_the_dvt_assessment() {
        assert_dvt_sign_alone_raises_the_dvt_assessment(Question::CalfPain);
    }

    #[test]
    fn warm_skin_alone_raises_the_dvt_assessment() {
        assert_dvt_sign_alone_raises_the_dvt_assessment(Question::Warmth);
    }

    #[test]
    fn redness_of_the_leg_alone_raises_the_dvt_assessment() {
        assert_dvt_sign_alone_raises_the_dvt_assessment(Question::Redness);
    }

    #[test]
    fn sudden_calf_swelling_alone_raises_the_dvt_assessment() {
        assert_dvt_sign_alone_raises_the_dvt_assessment(Question::SuddenCalfSwelling);
    }

    #[test]
    fn a_strong_baker_cyst_pattern_never_hides_the_dvt_card_for_calf_pain() {
        let intake = and_yes(
            wells_all_no(),
            &[
                Question::LumpFullness,
                Question::WorseFullBendStraighten,
                Question::KneeSwelling,
                Question::MechanicalSymptoms,
                Question::StiffnessAfterSitting,
                Question::CalfPain,
            ],
        );
        let evaluation = evaluate_intake(intake);
        assert_eq!(pattern_kinds(&evaluation)[0], Pattern::BakerCyst);
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.signs, vec![Evidence::Answered(Question::CalfPain)]);
        // The cyst is not taken as the "alternative diagnosis at least as likely" (-2).
        assert_eq!(dvt.wells.score, 0);
        assert_eq!(dvt.pathway, Pathway::DDimerFirst);
        assert!(order(&dvt.orders, OrderKind::DDimer).expect("a D-dimer").recommended);
    }

    #[test]
    fn a_cyst_pattern_without_the_alternative_diagnosis_answer_leaves_that_wells_item_not_assessed() {
        let intake = yes(&[Question::LumpFullness, Question::KneeSwelling, Question::CalfPain]);
        let evaluation = evaluate_intake(intake);
        let item = dvt(&evaluation)
            .wells
            .items
            .iter()
            .find(|i| i.question == Question::WellsAlternativeDx)
            .expect("the alternative diagnosis item");
        assert_eq!(item.source, ItemSource::NotAssessed);
        assert_eq!(item.points, 0);
    }

    #[test]
    fn a_duplex_already_on_order_for_the_same_leg_removes_the_duplex_suggestion_but_keeps_the_critical_dvt_card() {
        let record =
            RecordFacts { duplex_orders: vec![duplex(Some(Side::Left), OrderState::Pending)], ..Default::default() };
        let evaluation = evaluate(and_yes(wells_likely(), &[Question::CalfPain]), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.urgency, Urgency::Critical);
        assert_eq!(dvt.pathway, Pathway::DuplexLikely);
        assert!(!has_order(&dvt.orders, OrderKind::VenousDuplex));
        assert_eq!(dvt.duplex_on_order.as_ref().map(|d| d.state), Some(OrderState::Pending));
    }

    #[test]
    fn a_duplex_already_on_order_keeps_the_warning_dvt_card_offering_its_d_dimer_without_pressing_it() {
        let record =
            RecordFacts { duplex_orders: vec![duplex(Some(Side::Left), OrderState::Pending)], ..Default::default() };
        let evaluation = evaluate(and_yes(wells_all_no(), &[Question::CalfPain]), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.urgency, Urgency::Warning);
        assert!(dvt.duplex_on_order.is_some());
        assert!(!has_order(&dvt.orders, OrderKind::VenousDuplex));
        assert!(!order(&dvt.orders, OrderKind::DDimer).expect("the D-dimer offered").recommended);
    }

    #[test]
    fn a_duplex_already_on_order_also_removes_the_rupture_cards_duplex_but_the_rupture_stays_critical() {
        let record =
            RecordFacts { duplex_orders: vec![duplex(Some(Side::Left), OrderState::Pending)], ..Default::default() };
        let evaluation = evaluate(yes(&[Question::SuddenCalfSwelling]), record, Some(45));
        let rupture = flag(&evaluation, RedFlagKind::BakerCystRupture);
        assert_eq!(rupture.urgency, Urgency::Critical);
        assert!(!has_order(&rupture.orders, OrderKind::VenousDuplex));
        assert!(dvt(&evaluation).duplex_on_order.is_some());
        assert!(all_orders(&evaluation).iter().all(|o| o.kind != OrderKind::VenousDuplex));
    }

    #[test]
    fn every_red_flag_at_once_is_raised_together() {
        let evaluation = evaluate_intake(yes(RED_FLAG_QUESTIONS));
        for kind in [
            RedFlagKind::BakerCystRupture,
            RedFlagKind::PulmonaryEmbolism,
            RedFlagKind::LimbIschaemia,
            RedFlagKind::Infection,
            RedFlagKind::NeuroDeficit,
            RedFlagKind::CaudaEquina,
            RedFlagKind::PoplitealAneurysm,
        ] {
            assert!(has_flag(&evaluation, kind), "{kind:?}");
        }
        assert_eq!(dvt(&evaluation).signs.len(), 5);
    }
}

mod dvt_pathway {
    use super::*;

    fn calf_pain(intake: Intake) -> Intake {
        intake.with(Question::CalfPain, Answer::Yes)
    }

    #[test]
    fn a_complete_likely_score_is_critical_and_recommends_the_duplex_without_a_d_dimer() {
        let evaluation = evaluate_intake(calf_pain(wells_likely()));
        let dvt = dvt(&evaluation);
        assert!(dvt.wells.complete);
        assert_eq!(dvt.wells.score, 2);
        assert_eq!(dvt.urgency, Urgency::Critical);
        assert_eq!(dvt.pathway, Pathway::DuplexLikely);
        let scan = order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex");
        assert!(scan.recommended);
        assert_eq!(scan.side, Some(Side::Left));
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
    }

    #[test]
    fn a_complete_unlikely_score_is_a_warning_suggesting_only_the_d_dimer_the_duplex_if_positive_being_advice() {
        let evaluation = evaluate_intake(calf_pain(wells_all_no().with(Question::WellsPreviousDvt, Answer::Yes)));
        let dvt = dvt(&evaluation);
        assert!(dvt.wells.complete);
        assert_eq!(dvt.wells.score, 1);
        assert_eq!(dvt.urgency, Urgency::Warning);
        assert_eq!(dvt.pathway, Pathway::DDimerFirst);
        assert!(order(&dvt.orders, OrderKind::DDimer).expect("a D-dimer").recommended);
        assert!(!has_order(&dvt.orders, OrderKind::VenousDuplex), "no duplex drafted before the D-dimer is back");
    }

    #[test]
    fn an_incomplete_score_already_at_two_is_critical_and_recommends_the_duplex() {
        let intake = yes(&[Question::CalfPain, Question::WellsActiveCancer, Question::WellsPreviousDvt]);
        let evaluation = evaluate_intake(intake);
        let dvt = dvt(&evaluation);
        assert!(!dvt.wells.complete);
        assert_eq!(dvt.wells.score, 2);
        assert_eq!(dvt.urgency, Urgency::Critical);
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
    }

    #[test]
    fn an_incomplete_score_below_two_asks_for_the_missing_items_and_offers_both_tests_recommending_neither() {
        let intake = yes(&[Question::CalfPain, Question::WellsActiveCancer]);
        let evaluation = evaluate_intake(intake);
        let dvt = dvt(&evaluation);
        assert!(!dvt.wells.complete);
        assert_eq!(dvt.urgency, Urgency::Warning);
        assert_eq!(dvt.pathway, Pathway::CompleteTheScore);
        let scan = order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex offered");
        let test = order(&dvt.orders, OrderKind::DDimer).expect("a D-dimer offered");
        assert!(!scan.recommended && !test.recommended);
        let missing: Vec<Question> = dvt.wells.missing().collect();
        assert_eq!(missing.len(), WELLS_ITEMS.len() - 1);
        assert!(!missing.contains(&Question::WellsActiveCancer));
        assert!(missing.contains(&Question::WellsAlternativeDx));
    }

    #[test]
    fn an_anticoagulated_patient_with_an_unlikely_score_is_imaged_directly_without_a_d_dimer() {
        let warfarin = evidence("MedicationRequest/m1", "warfarin 5 mg");
        let record = RecordFacts { anticoagulants: vec![warfarin.clone()], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.pathway, Pathway::DuplexAnticoagulated);
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
        assert_eq!(dvt.anticoagulants, vec![warfarin.clone()]);
        assert_eq!(evaluation.anticoagulants, vec![warfarin]);
    }

    #[test]
    fn an_unlikely_score_with_a_positive_feu_d_dimer_on_record_goes_to_the_duplex() {
        let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Feu, 900.0)], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.pathway, Pathway::DuplexAfterPositiveDDimer);
        assert_eq!(dvt.urgency, Urgency::Critical, "unlikely with a positive D-dimer is critical (section 6)");
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
    }

    #[test]
    fn an_unlikely_score_with_a_negative_d_dimer_considers_another_diagnosis_and_orders_nothing() {
        let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Feu, 300.0)], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.pathway, Pathway::ConsiderAlternative);
        assert!(dvt.orders.is_empty(), "{:?}", dvt.orders);
        assert_eq!(dvt.urgency, Urgency::Warning);
    }

    #[test]
    fn a_70_year_old_with_600_feu_reads_negative_against_the_age_adjusted_cut_off_of_700() {
        let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Feu, 600.0)], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(70));
        let dvt = dvt(&evaluation);
        let reading = &dvt.d_dimer.as_ref().expect("the D-dimer").reading;
        assert_eq!(*reading, DDimerReading::Negative);
        assert_eq!((dvt.cutoff.value, dvt.cutoff.age_adjusted), (700.0, true));
        assert_eq!(dvt.pathway, Pathway::ConsiderAlternative);
    }

    #[test]
    fn a_40_year_old_with_600_feu_reads_positive_against_the_cut_off_of_500() {
        let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Feu, 600.0)], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(40));
        let dvt = dvt(&evaluation);
        let reading = &dvt.d_dimer.as_ref().expect("the D-dimer").reading;
        assert_eq!(*reading, DDimerReading::Positive);
        assert_eq!((dvt.cutoff.value, dvt.cutoff.age_adjusted), (500.0, false));
        assert_eq!(dvt.pathway, Pathway::DuplexAfterPositiveDDimer);
    }

    #[test]
    fn the_cut_off_is_adjusted_only_over_50() {
        let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Feu, 505.0)], ..Default::default() };
        let at_50 = evaluate(calf_pain(wells_all_no()), record.clone(), Some(50));
        assert_eq!(dvt(&at_50).d_dimer.as_ref().expect("the D-dimer").reading, DDimerReading::Positive);
        assert_eq!((dvt(&at_50).cutoff.value, dvt(&at_50).cutoff.age_adjusted), (500.0, false));
        let at_51 = evaluate(calf_pain(wells_all_no()), record, Some(51));
        assert_eq!(dvt(&at_51).d_dimer.as_ref().expect("the D-dimer").reading, DDimerReading::Negative);
        assert_eq!((dvt(&at_51).cutoff.value, dvt(&at_51).cutoff.age_adjusted), (510.0, true));
    }

    #[test]
    fn a_ddu_d_dimer_is_shown_for_the_clinician_to_read_never_compared_and_no_fresh_d_dimer_is_suggested() {
        let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Ddu, 100.0)], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.d_dimer.as_ref().expect("the D-dimer").reading, DDimerReading::NotInterpreted);
        assert_eq!(dvt.pathway, Pathway::ReadTheDDimer);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer), "no fresh D-dimer because of its unit");
        assert!(!order(&dvt.orders, OrderKind::VenousDuplex).expect("the duplex offered").recommended);
        assert_eq!(dvt.urgency, Urgency::Warning);
    }

    #[test]
    fn the_latest_d_dimer_is_the_one_read() {
        let mut older = d_dimer(DDimerUnit::Feu, 900.0);
        older.evidence.date = Some(date!(2025 - 03 - 09));
        let mut newer = d_dimer(DDimerUnit::Feu, 200.0);
        newer.evidence.date = Some(date!(2025 - 03 - 13));
        let record = RecordFacts { d_dimers: vec![newer, older], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(45));
        assert_eq!(dvt(&evaluation).pathway, Pathway::ConsiderAlternative);
    }

    #[test]
    fn pregnancy_skips_the_wells_pathway_and_recommends_the_duplex_directly() {
        let intake = calf_pain(wells_all_no()).with(Question::PregnantOrPostpartum, Answer::Yes);
        let evaluation = evaluate_intake(intake);
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.pathway, Pathway::DuplexDirect);
        assert_eq!(dvt.urgency, Urgency::Critical, "critical whatever the score (section 6)");
        assert!(dvt.pregnancy_answered && dvt.pregnancy.is_empty());
        assert_eq!(dvt.special_populations, vec![SpecialPopulation::PregnantOrPostpartum]);
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
    }

    #[test]
    fn a_16_year_old_is_imaged_directly_because_wells_is_not_validated_under_18() {
        let evaluation = evaluate(calf_pain(wells_all_no()), RecordFacts::default(), Some(16));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.pathway, Pathway::DuplexDirect);
        assert_eq!(dvt.special_populations, vec![SpecialPopulation::UnderEighteen(16)]);
        assert_eq!(dvt.urgency, Urgency::Critical);
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
    }

    #[test]
    fn an_18_year_old_follows_the_ordinary_wells_pathway() {
        let evaluation = evaluate(calf_pain(wells_all_no()), RecordFacts::default(), Some(18));
        let dvt = dvt(&evaluation);
        assert!(dvt.special_populations.is_empty());
        assert_eq!(dvt.pathway, Pathway::DDimerFirst);
    }

    #[test]
    fn a_no_to_cancer_on_the_form_does_not_cancel_cancer_on_the_record() {
        let record = RecordFacts {
            active_cancer: vec![evidence("Condition/c1", "Malignant neoplastic disease")],
            ..Default::default()
        };
        let intake = calf_pain(wells_all_no()).with(Question::WellsActiveCancer, Answer::No);
        let evaluation = evaluate(intake, record, Some(45));
        let wells = &dvt(&evaluation).wells;
        assert_eq!(wells.score, 1);
        let item = wells.items.iter().find(|i| i.question == Question::WellsActiveCancer).expect("the cancer item");
        assert_eq!((item.points, item.source), (1, ItemSource::Record));
    }

    #[test]
    fn record_items_alone_can_make_dvt_likely() {
        let record = RecordFacts {
            previous_dvt: vec![evidence("Condition/d1", "Deep venous thrombosis")],
            recent_major_surgery: vec![evidence("Procedure/p1", "Total hip replacement")],
            ..Default::default()
        };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.wells.score, 2);
        assert_eq!(dvt.urgency, Urgency::Critical);
        assert_eq!(dvt.pathway, Pathway::DuplexLikely);
    }

    #[test]
    fn an_alternative_diagnosis_alone_scores_minus_two_complete_and_unlikely() {
        let intake = calf_pain(wells_all_no()).with(Question::WellsAlternativeDx, Answer::Yes);
        let evaluation = evaluate_intake(intake);
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.wells.score, -2);
        assert!(dvt.wells.complete);
        assert!(!dvt.wells.likely());
        assert_eq!(dvt.pathway, Pathway::DDimerFirst);
        assert_eq!(dvt.urgency, Urgency::Warning);
    }

    #[test]
    fn a_duplex_ordered_for_the_other_leg_does_not_stop_the_suggestion() {
        let record =
            RecordFacts { duplex_orders: vec![duplex(Some(Side::Right), OrderState::Pending)], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_likely()), record, Some(45));
        let dvt = dvt(&evaluation);
        assert!(dvt.duplex_on_order.is_none());
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
        assert_eq!(dvt.other_duplex.len(), 1);
    }

    #[test]
    fn a_pending_bilateral_duplex_covers_either_leg() {
        for side in [Side::Left, Side::Right] {
            let record = RecordFacts {
                duplex_orders: vec![duplex(Some(Side::Both), OrderState::Pending)],
                ..Default::default()
            };
            let intake = and_yes(
                wells_all_no_on(side),
                &[Question::CalfPain, Question::WellsEntireLegSwollen, Question::WellsPittingOedema],
            );
            let evaluation = evaluate(intake, record, Some(45));
            assert_eq!(evaluation.side, Some(side));
            let dvt = dvt(&evaluation);
            assert!(dvt.duplex_on_order.is_some(), "{side:?}");
            assert!(!has_order(&dvt.orders, OrderKind::VenousDuplex), "{side:?}");
            assert_eq!(dvt.urgency, Urgency::Critical);
        }
    }

    #[test]
    fn a_duplex_completed_this_week_is_named_and_another_is_offered_not_recommended_with_a_d_dimer_when_likely() {
        let record =
            RecordFacts { duplex_orders: vec![duplex(Some(Side::Left), OrderState::Completed)], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_likely()), record, Some(45));
        let dvt = dvt(&evaluation);
        assert!(dvt.duplex_on_order.is_none());
        assert_eq!(dvt.completed_scan.as_ref().map(|d| d.state), Some(OrderState::Completed));
        assert_eq!(dvt.urgency, Urgency::Critical, "the indicator follows the score");
        assert!(!order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex offered").recommended);
        // NG158: a negative scan with DVT likely goes on with a D-dimer.
        assert!(!order(&dvt.orders, OrderKind::DDimer).expect("a D-dimer offered").recommended);
        assert!(dvt.other_duplex.is_empty());
    }
}

mod patterns {
    use super::*;

    #[test]
    fn a_lump_behind_the_knee_alone_raises_the_baker_cyst_pattern_with_a_knee_ultrasound() {
        let evaluation = evaluate_intake(yes(&[Question::LumpFullness]));
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::BakerCyst]);
        let baker = pattern(&evaluation, Pattern::BakerCyst);
        assert_eq!(baker.cardinal, vec![Evidence::Answered(Question::LumpFullness)]);
        assert!(order(&baker.orders, OrderKind::KneeUltrasound).expect("a knee ultrasound").recommended);
        assert!(!has_order(&baker.orders, OrderKind::KneeMri));
    }

    #[test]
    fn pinpoint_pain_at_the_inner_back_corner_alone_raises_the_tendon_pattern() {
        let evaluation = evaluate_intake(yes(&[Question::PinpointInnerCorner]));
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::HamstringTendinopathy]);
    }

    #[test]
    fn burning_or_tingling_alone_raises_the_nerve_pattern() {
        let evaluation = evaluate_intake(yes(&[Question::BurningTinglingNumbness]));
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::NervePain]);
    }

    #[test]
    fn pain_radiating_below_the_knee_alone_raises_the_nerve_pattern() {
        let evaluation = evaluate_intake(yes(&[Question::RadiatesBelowKnee]));
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::NervePain]);
    }

    #[test]
    fn two_minor_cyst_features_raise_the_baker_cyst_pattern_without_the_lump() {
        let evaluation = evaluate_intake(yes(&[Question::WorseFullBendStraighten, Question::StiffnessAfterSitting]));
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::BakerCyst]);
        let baker = pattern(&evaluation, Pattern::BakerCyst);
        assert!(baker.cardinal.is_empty());
        assert_eq!(baker.supporting.len(), 2);
    }

    #[test]
    fn two_minor_tendon_features_raise_the_tendon_pattern_without_pinpoint_pain() {
        let evaluation = evaluate_intake(yes(&[Question::WorseHillsStairsSpeed, Question::RecentLoadIncrease]));
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::HamstringTendinopathy]);
    }

    #[test]
    fn a_single_minor_feature_raises_no_pattern() {
        for minor in [
            Question::WorseFullBendStraighten,
            Question::KneeSwelling,
            Question::MechanicalSymptoms,
            Question::StiffnessAfterSitting,
            Question::WorseHillsStairsSpeed,
            Question::ResistedBendReproduces,
            Question::StretchReproduces,
            Question::RecentLoadIncrease,
            Question::SittingCoughChanges,
        ] {
            let evaluation = evaluate_intake(yes(&[minor]));
            assert!(evaluation.patterns.is_empty(), "{minor:?} raised {:?}", pattern_kinds(&evaluation));
        }
    }

    #[test]
    fn minor_features_of_different_patterns_do_not_add_up() {
        let evaluation = evaluate_intake(yes(&[Question::KneeSwelling, Question::StretchReproduces]));
        assert!(evaluation.patterns.is_empty(), "{:?}", pattern_kinds(&evaluation));
    }

    #[test]
    fn known_radiculopathy_on_the_record_counts_as_a_supporting_nerve_feature() {
        let sciatica = evidence("Condition/r1", "Sciatica");
        let record = RecordFacts { radiculopathy: vec![sciatica.clone()], ..Default::default() };
        let evaluation = evaluate(yes(&[Question::SittingCoughChanges]), record, Some(45));
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::NervePain]);
        let nerve = pattern(&evaluation, Pattern::NervePain);
        assert!(nerve.supporting.contains(&Evidence::Recorded(sciatica)));
        assert!(nerve.supporting.contains(&Evidence::Answered(Question::SittingCoughChanges)));
    }

    #[test]
    fn known_radiculopathy_on_the_record_alone_raises_no_pattern() {
        let record = RecordFacts { radiculopathy: vec![evidence("Condition/r1", "Sciatica")], ..Default::default() };
        let evaluation = evaluate(yes(&[]), record, Some(45));
        assert!(evaluation.patterns.is_empty());
    }

    #[test]
    fn known_radiculopathy_coded_twice_on_the_record_is_still_one_minor_feature_and_raises_no_pattern() {
        let record = RecordFacts {
            radiculopathy: vec![
                evidence("Condition/r1", "Radiculopathy, lumbosacral region"),
                evidence("Condition/r2", "Sciatica, left side"),
            ],
            ..Default::default()
        };
        let evaluation = evaluate(yes(&[]), record, Some(45));
        assert!(evaluation.patterns.is_empty(), "{:?}", pattern_kinds(&evaluation));
    }

    #[test]
    fn patterns_are_ranked_by_the_number_of_supporting_features() {
        let intake = yes(&[
            Question::LumpFullness,
            Question::BurningTinglingNumbness,
            Question::RadiatesBelowKnee,
            Question::SittingCoughChanges,
        ]);
        let evaluation = evaluate_intake(intake);
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::NervePain, Pattern::BakerCyst]);
        assert_eq!(pattern(&evaluation, Pattern::NervePain).strength, 3);
        assert_eq!(pattern(&evaluation, Pattern::BakerCyst).strength, 1);
    }

    #[test]
    fn a_stronger_tendon_pattern_ranks_above_a_weaker_cyst_pattern_and_notes_the_lump_against_it() {
        let intake = yes(&[
            Question::LumpFullness,
            Question::PinpointInnerCorner,
            Question::WorseHillsStairsSpeed,
            Question::ResistedBendReproduces,
        ]);
        let evaluation = evaluate_intake(intake);
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::HamstringTendinopathy, Pattern::BakerCyst]);
        let tendon = pattern(&evaluation, Pattern::HamstringTendinopathy);
        assert_eq!(tendon.against, vec![Evidence::Answered(Question::LumpFullness)]);
    }

    #[test]
    fn a_cyst_with_mechanical_symptoms_suggests_a_knee_mri_without_recommending_it() {
        let evaluation = evaluate_intake(yes(&[Question::LumpFullness, Question::MechanicalSymptoms]));
        let baker = pattern(&evaluation, Pattern::BakerCyst);
        let mri = order(&baker.orders, OrderKind::KneeMri).expect("a knee MRI");
        assert!(!mri.recommended);
        assert_eq!(mri.side, Some(Side::Left));
    }

    #[test]
    fn a_cyst_with_a_knee_that_gives_way_suggests_a_knee_mri() {
        let evaluation = evaluate_intake(yes(&[Question::LumpFullness, Question::GivingWay]));
        let baker = pattern(&evaluation, Pattern::BakerCyst);
        assert!(!order(&baker.orders, OrderKind::KneeMri).expect("a knee MRI").recommended);
    }

    #[test]
    fn a_cyst_without_mechanical_symptoms_or_giving_way_suggests_no_knee_mri() {
        let intake = yes(&[Question::LumpFullness, Question::KneeSwelling, Question::StiffnessAfterSitting])
            .with(Question::MechanicalSymptoms, Answer::No)
            .with(Question::GivingWay, Answer::No);
        let evaluation = evaluate_intake(intake);
        assert!(all_orders(&evaluation).iter().all(|o| o.kind != OrderKind::KneeMri));
    }

    #[test]
    fn giving_way_without_a_cyst_pattern_suggests_no_knee_mri() {
        let intake = yes(&[Question::PinpointInnerCorner, Question::GivingWay]);
        let evaluation = evaluate_intake(intake);
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::HamstringTendinopathy]);
        assert!(all_orders(&evaluation).iter().all(|o| o.kind != OrderKind::KneeMri));
    }

    #[test]
    fn the_tendon_pattern_recommends_physiotherapy_and_no_mri() {
        let evaluation = evaluate_intake(weeks(yes(&[Question::PinpointInnerCorner, Question::StretchReproduces]), 2));
        let tendon = pattern(&evaluation, Pattern::HamstringTendinopathy);
        assert!(order(&tendon.orders, OrderKind::PhysiotherapyReferral).expect("physiotherapy").recommended);
        assert!(!has_order(&tendon.orders, OrderKind::KneeMri));
        assert!(!has_order(&tendon.orders, OrderKind::LumbarSpineMri));
        assert!(!has_order(&tendon.orders, OrderKind::KneeUltrasound), "no imaging before 2-4 weeks");
    }

    #[test]
    fn nerve_pain_lasting_8_weeks_proposes_a_lumbar_spine_mri() {
        let evaluation = evaluate_intake(weeks(yes(&[Question::BurningTinglingNumbness]), 8));
        let nerve = pattern(&evaluation, Pattern::NervePain);
        assert!(has_order(&nerve.orders, OrderKind::LumbarSpineMri));
    }

    #[test]
    fn nerve_pain_lasting_2_weeks_proposes_no_lumbar_spine_mri() {
        let evaluation = evaluate_intake(weeks(yes(&[Question::BurningTinglingNumbness]), 2));
        assert!(all_orders(&evaluation).iter().all(|o| o.kind != OrderKind::LumbarSpineMri));
    }

    #[test]
    fn nerve_pain_of_exactly_6_weeks_is_not_yet_over_6_weeks() {
        let evaluation = evaluate_intake(weeks(yes(&[Question::RadiatesBelowKnee]), 6));
        assert!(all_orders(&evaluation).iter().all(|o| o.kind != OrderKind::LumbarSpineMri));
    }

    #[test]
    fn every_pattern_question_answered_no_gives_no_pattern_after_a_completed_intake() {
        let intake = PATTERN_QUESTIONS.iter().fold(yes(&[]), |intake, q| intake.with(*q, Answer::No));
        let evaluation = evaluate_intake(intake);
        assert!(evaluation.patterns.is_empty());
        assert!(evaluation.pattern_questions_answered);
    }
}

mod intake_and_silence {
    use super::*;

    fn knee_pain() -> RecordEvidence {
        evidence("Condition/k1", "Pain in left knee")
    }

    #[test]
    fn no_intake_and_no_knee_pain_on_the_record_says_nothing() {
        let assessment = assess_with_shipped_rules(&situation(IntakeState::Missing, RecordFacts::default(), Some(45)));
        assert_eq!(assessment, Assessment::NothingToSay);
    }

    #[test]
    fn no_intake_with_knee_pain_on_the_record_asks_for_the_intake() {
        let record = RecordFacts { knee_pain: vec![knee_pain()], ..Default::default() };
        let assessment = assess_with_shipped_rules(&situation(IntakeState::Missing, record, Some(45)));
        assert_eq!(assessment, Assessment::IntakeNeeded { stale: None, knee_pain_on_record: vec![knee_pain()] });
    }

    #[test]
    fn a_stale_intake_is_not_evaluated_and_the_request_says_when_it_was_authored() {
        let authored = datetime!(2025-01-02 09:00 UTC);
        let record = RecordFacts { knee_pain: vec![knee_pain()], ..Default::default() };
        let assessment =
            assess_with_shipped_rules(&situation(IntakeState::Stale { authored: Some(authored) }, record, Some(45)));
        assert_eq!(
            assessment,
            Assessment::IntakeNeeded { stale: Some(Some(authored)), knee_pain_on_record: vec![knee_pain()] }
        );
    }

    #[test]
    fn an_undated_stale_intake_is_still_reported_as_stale() {
        let record = RecordFacts { knee_pain: vec![knee_pain()], ..Default::default() };
        let assessment = assess_with_shipped_rules(&situation(IntakeState::Stale { authored: None }, record, Some(45)));
        assert!(matches!(assessment, Assessment::IntakeNeeded { stale: Some(None), .. }), "{assessment:?}");
    }

    #[test]
    fn a_stale_intake_with_no_knee_pain_on_the_record_says_nothing() {
        let stale = IntakeState::Stale { authored: Some(datetime!(2025-01-02 09:00 UTC)) };
        let assessment = assess_with_shipped_rules(&situation(stale, RecordFacts::default(), Some(45)));
        assert_eq!(assessment, Assessment::NothingToSay);
    }

    #[test]
    fn a_usable_intake_is_evaluated_even_without_knee_pain_on_the_record() {
        let assessment = assess_with_shipped_rules(&situation(
            IntakeState::Usable(yes(&[Question::CalfPain])),
            RecordFacts::default(),
            Some(45),
        ));
        assert!(matches!(assessment, Assessment::Evaluated(_)));
    }

    #[test]
    fn an_unanswered_wells_item_leaves_the_score_incomplete_even_when_every_other_item_is_answered() {
        for &(left_out, _) in WELLS_ITEMS {
            let mut intake = Intake::default().with(Question::Side, Answer::Side(Side::Left));
            for &(q, _) in WELLS_ITEMS.iter().filter(|(q, _)| *q != left_out) {
                intake.record(q, Answer::No);
            }
            intake.record(Question::CalfPain, Answer::Yes);
            let evaluation = evaluate_intake(intake);
            let dvt = dvt(&evaluation);
            assert!(!dvt.wells.complete, "{left_out:?}");
            assert_eq!(dvt.wells.missing().collect::<Vec<_>>(), vec![left_out]);
            assert_eq!(dvt.pathway, Pathway::CompleteTheScore, "{left_out:?}: never shown as unlikely");
            assert!(order(&dvt.orders, OrderKind::DDimer).is_some_and(|o| !o.recommended));
        }
    }

    #[test]
    fn a_no_to_a_record_fed_wells_item_is_not_assessed_when_that_part_of_the_record_was_unreadable() {
        let mut record = RecordFacts::default();
        record.unavailable.insert(RecordSource::Conditions);
        let evaluation = evaluate(and_yes(wells_all_no(), &[Question::CalfPain]), record, Some(45));
        let dvt = dvt(&evaluation);
        assert!(!dvt.wells.complete);
        assert!(dvt.wells.missing().any(|q| q == Question::WellsActiveCancer));
        assert_eq!(dvt.pathway, Pathway::CompleteTheScore);
    }

    #[test]
    fn an_intake_that_asked_no_pattern_question_is_not_reported_as_having_no_pattern() {
        let evaluation = evaluate_intake(yes(&[Question::CalfPain]));
        assert!(evaluation.patterns.is_empty());
        assert!(!evaluation.pattern_questions_answered);
    }
}

mod book_evaluation {
    use super::*;

    #[test]
    fn pain_lasting_4_weeks_books_an_evaluation_for_information() {
        let evaluation = evaluate_intake(weeks(yes(&[]), 4));
        let book = evaluation.book_evaluation.expect("book an evaluation");
        assert_eq!(book.urgency, Urgency::Info);
        assert_eq!(book.duration_weeks, Some(4));
        assert!(!book.giving_way);
    }

    #[test]
    fn a_knee_that_gives_way_books_an_evaluation_as_a_warning() {
        let evaluation = evaluate_intake(weeks(yes(&[Question::GivingWay]), 1));
        let book = evaluation.book_evaluation.expect("book an evaluation");
        assert_eq!(book.urgency, Urgency::Warning);
        assert!(book.giving_way);
        assert_eq!(book.duration_weeks, None);
    }

    #[test]
    fn pain_of_3_weeks_without_giving_way_books_nothing() {
        let evaluation = evaluate_intake(weeks(yes(&[]), 3).with(Question::GivingWay, Answer::No));
        assert_eq!(evaluation.book_evaluation, None);
    }

    #[test]
    fn long_pain_and_giving_way_together_are_a_warning_naming_both() {
        let evaluation = evaluate_intake(weeks(yes(&[Question::GivingWay]), 6));
        let book = evaluation.book_evaluation.expect("book an evaluation");
        assert_eq!(book.urgency, Urgency::Warning);
        assert_eq!(book.duration_weeks, Some(6));
        assert!(book.giving_way);
    }
}

mod dvt_pathway_decisions {
    //! clinical-logic.md section 6: the plan each DVT card recommends.
    use super::*;

    fn calf_pain(intake: Intake) -> Intake {
        intake.with(Question::CalfPain, Answer::Yes)
    }

    fn on_warfarin() -> RecordFacts {
        RecordFacts { anticoagulants: vec![evidence("MedicationRequest/m1", "warfarin 5 mg")], ..Default::default() }
    }

    #[test]
    fn an_anticoagulated_patient_with_a_likely_score_is_critical_with_the_duplex_and_no_d_dimer() {
        let evaluation = evaluate(calf_pain(wells_likely()), on_warfarin(), Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.urgency, Urgency::Critical);
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
    }

    #[test]
    fn an_anticoagulated_patient_with_an_incomplete_score_gets_the_duplex_recommended_and_no_d_dimer() {
        let evaluation = evaluate(yes(&[Question::CalfPain]), on_warfarin(), Some(45));
        let dvt = dvt(&evaluation);
        assert!(!dvt.wells.complete);
        assert_eq!(dvt.pathway, Pathway::DuplexAnticoagulated);
        assert_eq!(dvt.urgency, Urgency::Warning, "the indicator is the score's");
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
    }

    #[test]
    fn an_anticoagulated_patients_d_dimer_is_not_read_as_negative() {
        let mut record = on_warfarin();
        record.d_dimers = vec![d_dimer(DDimerUnit::Feu, 200.0)];
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.pathway, Pathway::DuplexAnticoagulated, "not 'consider another diagnosis'");
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
    }

    #[test]
    fn an_incomplete_score_with_a_positive_d_dimer_goes_to_the_duplex_as_critical() {
        let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Feu, 1200.0)], ..Default::default() };
        let evaluation = evaluate(yes(&[Question::CalfPain]), record, Some(45));
        let dvt = dvt(&evaluation);
        assert!(!dvt.wells.complete);
        assert_eq!(dvt.pathway, Pathway::DuplexAfterPositiveDDimer);
        assert_eq!(dvt.urgency, Urgency::Critical);
        assert!(order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex").recommended);
    }

    #[test]
    fn an_incomplete_score_with_a_negative_d_dimer_offers_the_duplex_but_no_second_d_dimer() {
        let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Feu, 200.0)], ..Default::default() };
        let evaluation = evaluate(yes(&[Question::CalfPain]), record, Some(45));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.pathway, Pathway::CompleteTheScore);
        assert!(!order(&dvt.orders, OrderKind::VenousDuplex).expect("a duplex offered").recommended);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
    }

    #[test]
    fn the_d_dimer_cut_off_for_a_60_year_old_is_600_and_is_carried_with_the_d_dimer_first_plan() {
        let evaluation = evaluate(calf_pain(wells_all_no()), RecordFacts::default(), Some(60));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.pathway, Pathway::DDimerFirst);
        assert_eq!((dvt.cutoff.value, dvt.cutoff.age_adjusted), (600.0, true));
        let evaluation = evaluate(calf_pain(wells_all_no()), RecordFacts::default(), Some(45));
        assert_eq!((dvt_of(&evaluation).cutoff.value, dvt_of(&evaluation).cutoff.age_adjusted), (500.0, false));
    }

    fn dvt_of(evaluation: &Evaluation) -> &DvtAssessment {
        super::dvt(evaluation)
    }

    #[test]
    fn pregnancy_on_the_record_alone_makes_wells_not_validated_and_the_duplex_direct_and_critical() {
        let record =
            RecordFacts { pregnancy: vec![evidence("Condition/preg", "Normal pregnancy")], ..Default::default() };
        let evaluation = evaluate(calf_pain(wells_all_no()), record, Some(30));
        let dvt = dvt(&evaluation);
        assert_eq!(dvt.special_populations, vec![SpecialPopulation::PregnantOrPostpartum]);
        assert_eq!(dvt.pathway, Pathway::DuplexDirect);
        assert_eq!(dvt.urgency, Urgency::Critical);
        assert!(!dvt.pregnancy_answered);
        assert_eq!(dvt.pregnancy.len(), 1);
        assert!(!has_order(&dvt.orders, OrderKind::DDimer));
    }

    #[test]
    fn a_no_to_pregnancy_on_the_form_does_not_cancel_a_pregnancy_on_the_record() {
        let record =
            RecordFacts { pregnancy: vec![evidence("Condition/preg", "Normal pregnancy")], ..Default::default() };
        let intake = calf_pain(wells_all_no()).with(Question::PregnantOrPostpartum, Answer::No);
        let evaluation = evaluate(intake, record, Some(30));
        assert_eq!(dvt(&evaluation).pathway, Pathway::DuplexDirect);
    }
}

mod baker_support_from_the_record {
    //! clinical-logic.md section 5: knee osteoarthritis, a Baker cyst or a meniscal tear on the
    //! record supports the cyst pattern on the symptomatic side or without side.
    use super::*;

    fn arthritis(side: Option<Side>) -> RecordEvidence {
        evidence("Condition/oa", "Osteoarthritis of knee").on_side(side)
    }

    fn with_support(records: Vec<RecordEvidence>) -> RecordFacts {
        RecordFacts { baker_support: records, ..Default::default() }
    }

    #[test]
    fn osteoarthritis_of_the_symptomatic_knee_is_a_supporting_cyst_feature() {
        let evaluation =
            evaluate(yes(&[Question::KneeSwelling]), with_support(vec![arthritis(Some(Side::Left))]), Some(60));
        assert_eq!(pattern_kinds(&evaluation), vec![Pattern::BakerCyst]);
        let cyst = pattern(&evaluation, Pattern::BakerCyst);
        assert!(cyst.supporting.contains(&Evidence::Recorded(arthritis(Some(Side::Left)))));
        assert!(cyst.other_side.is_empty());
    }

    #[test]
    fn a_record_without_a_side_or_of_both_knees_supports_either_knee() {
        for side in [None, Some(Side::Both)] {
            let evaluation = evaluate(yes(&[Question::KneeSwelling]), with_support(vec![arthritis(side)]), Some(60));
            assert_eq!(pattern_kinds(&evaluation), vec![Pattern::BakerCyst], "{side:?}");
        }
    }

    #[test]
    fn a_record_of_the_other_knee_is_not_counted_and_is_kept_for_the_card_to_name() {
        let evaluation =
            evaluate(yes(&[Question::KneeSwelling]), with_support(vec![arthritis(Some(Side::Right))]), Some(60));
        assert!(evaluation.patterns.is_empty(), "the left knee's intake is not supported by the right knee's record");
        let evaluation =
            evaluate(yes(&[Question::LumpFullness]), with_support(vec![arthritis(Some(Side::Right))]), Some(60));
        let cyst = pattern(&evaluation, Pattern::BakerCyst);
        assert_eq!(cyst.other_side, vec![arthritis(Some(Side::Right))]);
        assert!(cyst.supporting.is_empty());
    }

    #[test]
    fn osteoarthritis_on_the_record_alone_raises_no_pattern() {
        let evaluation = evaluate(yes(&[]), with_support(vec![arthritis(Some(Side::Left))]), Some(60));
        assert!(evaluation.patterns.is_empty());
    }
}

mod plans_beside_red_flags {
    //! clinical-logic.md section 6: pattern cards beside a critical red flag stay, but wait for it
    //! to be excluded: no physiotherapy, self-care or load plan; with a pulsatile lump, no knee
    //! ultrasound before the vascular ultrasound.
    use super::*;

    fn physiotherapy_anywhere(evaluation: &Evaluation) -> bool {
        evaluation.patterns.iter().flat_map(|p| &p.orders).any(|o| o.kind == OrderKind::PhysiotherapyReferral)
    }

    #[test]
    fn a_cyst_beside_a_critical_dvt_card_waits_for_dvt_and_suggests_no_physiotherapy() {
        let evaluation = evaluate_intake(and_yes(wells_likely(), &[Question::CalfPain, Question::LumpFullness]));
        assert_eq!(dvt(&evaluation).urgency, Urgency::Critical);
        let cyst = pattern(&evaluation, Pattern::BakerCyst);
        assert_eq!(cyst.after, vec![Hazard::Dvt]);
        assert!(!physiotherapy_anywhere(&evaluation));
        assert!(cyst.orders.iter().all(|o| !o.recommended), "the duplex is what is recommended");
        assert!(has_order(&cyst.orders, OrderKind::KneeUltrasound), "once DVT is excluded the cyst is imaged");
    }

    #[test]
    fn a_cyst_beside_a_pulsatile_lump_suggests_no_knee_ultrasound_before_the_vascular_ultrasound() {
        let evaluation = evaluate_intake(yes(&[Question::LumpFullness, Question::PulsatileLump]));
        let cyst = pattern(&evaluation, Pattern::BakerCyst);
        assert_eq!(cyst.after, vec![Hazard::Flag(RedFlagKind::PoplitealAneurysm)]);
        assert!(!has_order(&cyst.orders, OrderKind::KneeUltrasound));
        assert!(!physiotherapy_anywhere(&evaluation));
    }

    #[test]
    fn the_tendon_and_nerve_patterns_beside_cauda_equina_or_infection_suggest_no_physiotherapy() {
        for flag_question in [Question::SaddleBladderBowel, Question::SpreadingRedness] {
            let evaluation = evaluate_intake(yes(&[
                Question::PinpointInnerCorner,
                Question::BurningTinglingNumbness,
                flag_question,
            ]));
            assert_eq!(evaluation.patterns.len(), 2, "{flag_question:?}");
            assert!(evaluation.patterns.iter().all(|p| !p.after.is_empty()), "{flag_question:?}");
            assert!(!physiotherapy_anywhere(&evaluation), "{flag_question:?}");
        }
    }

    #[test]
    fn every_critical_red_flag_of_the_spec_makes_the_plans_wait() {
        for (question, hazard) in [
            (Question::SuddenCalfSwelling, Hazard::Flag(RedFlagKind::BakerCystRupture)),
            (Question::BreathlessChestPain, Hazard::Flag(RedFlagKind::PulmonaryEmbolism)),
            (Question::ColdPaleFoot, Hazard::Flag(RedFlagKind::LimbIschaemia)),
            (Question::PainAtRest, Hazard::Flag(RedFlagKind::Infection)),
            (Question::SaddleBladderBowel, Hazard::Flag(RedFlagKind::CaudaEquina)),
            (Question::PulsatileLump, Hazard::Flag(RedFlagKind::PoplitealAneurysm)),
        ] {
            let evaluation = evaluate_intake(yes(&[Question::PinpointInnerCorner, question]));
            let tendon = pattern(&evaluation, Pattern::HamstringTendinopathy);
            assert!(tendon.after.contains(&hazard), "{question:?}: {:?}", tendon.after);
        }
    }

    #[test]
    fn a_warning_dvt_card_or_a_nerve_deficit_does_not_hold_the_plans_back() {
        let unlikely = evaluate_intake(and_yes(wells_all_no(), &[Question::CalfPain, Question::PinpointInnerCorner]));
        assert_eq!(dvt(&unlikely).urgency, Urgency::Warning);
        assert!(pattern(&unlikely, Pattern::HamstringTendinopathy).after.is_empty());
        assert!(physiotherapy_anywhere(&unlikely));
        let deficit = evaluate_intake(yes(&[Question::BurningTinglingNumbness, Question::FootWeakness]));
        assert!(pattern(&deficit, Pattern::NervePain).after.is_empty());
    }

    #[test]
    fn the_tendon_pattern_after_4_weeks_proposes_imaging_not_a_new_load_plan() {
        let evaluation = evaluate_intake(weeks(yes(&[Question::PinpointInnerCorner]), 6));
        let tendon = pattern(&evaluation, Pattern::HamstringTendinopathy);
        assert!(tendon.window_passed);
        assert!(order(&tendon.orders, OrderKind::KneeUltrasound).expect("imaging").recommended);
        assert!(!has_order(&tendon.orders, OrderKind::PhysiotherapyReferral));
        let early = evaluate_intake(weeks(yes(&[Question::PinpointInnerCorner]), 3));
        assert!(!pattern(&early, Pattern::HamstringTendinopathy).window_passed);
    }
}
