//! Order hooks (order-select, order-sign): when the draft orders answer the red flags and the
//! service stays silent, and when it speaks, with what it suggests. Checked through
//! `assess` then `order_review::review`, as the hooks do.

use super::*;
use crate::knee::order_review::{DraftKind, DraftOrder, OrderReview, Uncovered, review};

fn draft(kind: DraftKind, side: Option<Side>) -> DraftOrder {
    DraftOrder {
        kind,
        side,
        selected: true,
        concerns_knee: matches!(kind, DraftKind::Order(OrderKind::KneeMri | OrderKind::KneeUltrasound)),
        description: format!("{kind:?}"),
    }
}

fn ordered(kind: OrderKind, side: Option<Side>) -> DraftOrder {
    draft(DraftKind::Order(kind), side)
}

/// Reviews `drafts` for the evaluation of a usable left-knee intake.
fn reviewed(intake: Intake, record: RecordFacts, drafts: &[DraftOrder]) -> OrderReview {
    let assessment = assess_with_shipped_rules(&situation(IntakeState::Usable(intake), record, Some(45)));
    review(assessment, drafts)
}

fn dvt_gap(review: &OrderReview) -> Option<&Uncovered> {
    match review {
        OrderReview::Reviewed { dvt, .. } => dvt.as_ref(),
        _ => None,
    }
}

fn nerve_gap(review: &OrderReview) -> Option<&Uncovered> {
    match review {
        OrderReview::Reviewed { nerve_deficit, .. } => nerve_deficit.as_ref(),
        _ => None,
    }
}

fn missing_kinds(gap: &Uncovered) -> Vec<OrderKind> {
    gap.missing.iter().map(|o| o.kind).collect()
}

fn likely_dvt() -> Intake {
    and_yes(wells_likely(), &[Question::CalfPain])
}

fn unlikely_dvt() -> Intake {
    and_yes(wells_all_no(), &[Question::CalfPain])
}

#[test]
fn likely_dvt_with_only_a_knee_mri_drafted_is_a_critical_gap_suggesting_the_duplex_and_naming_the_mri() {
    let review = reviewed(likely_dvt(), RecordFacts::default(), &[ordered(OrderKind::KneeMri, Some(Side::Left))]);
    let gap = dvt_gap(&review).expect("DVT is not answered");
    assert_eq!(gap.urgency, Urgency::Critical);
    assert_eq!(missing_kinds(gap), vec![OrderKind::VenousDuplex]);
    assert!(gap.missing[0].recommended);
    assert_eq!(gap.knee_treatments.len(), 1);
}

#[test]
fn a_duplex_drafted_for_the_same_leg_answers_dvt_and_nothing_is_said() {
    let review = reviewed(likely_dvt(), RecordFacts::default(), &[ordered(OrderKind::VenousDuplex, Some(Side::Left))]);
    assert_eq!(review, OrderReview::NothingToSay);
}

#[test]
fn a_duplex_drafted_for_the_other_leg_does_not_answer_dvt_of_this_leg() {
    let review = reviewed(likely_dvt(), RecordFacts::default(), &[ordered(OrderKind::VenousDuplex, Some(Side::Right))]);
    let gap = dvt_gap(&review).expect("the left leg is still not imaged");
    assert_eq!(missing_kinds(gap), vec![OrderKind::VenousDuplex]);
    assert_eq!(gap.missing[0].side, Some(Side::Left));
}

#[test]
fn a_bilateral_duplex_or_one_whose_side_the_clinician_left_open_answers_either_leg() {
    for side in [Some(Side::Both), None] {
        let review = reviewed(likely_dvt(), RecordFacts::default(), &[ordered(OrderKind::VenousDuplex, side)]);
        assert_eq!(review, OrderReview::NothingToSay, "{side:?}");
    }
}

#[test]
fn a_d_dimer_drafted_answers_an_unlikely_score_but_not_a_likely_one() {
    let d_dimer = [ordered(OrderKind::DDimer, None)];
    assert_eq!(reviewed(unlikely_dvt(), RecordFacts::default(), &d_dimer), OrderReview::NothingToSay);
    let review = reviewed(likely_dvt(), RecordFacts::default(), &d_dimer);
    let gap = dvt_gap(&review).expect("DVT likely needs the scan");
    assert_eq!(missing_kinds(gap), vec![OrderKind::VenousDuplex], "the D-dimer already drafted is not suggested again");
}

#[test]
fn an_unlikely_score_with_nothing_drafted_suggests_the_d_dimer_alone() {
    let review = reviewed(unlikely_dvt(), RecordFacts::default(), &[ordered(OrderKind::PhysiotherapyReferral, None)]);
    let gap = dvt_gap(&review).expect("DVT unlikely still needs the D-dimer");
    assert_eq!(missing_kinds(gap), vec![OrderKind::DDimer], "no duplex drafted before the D-dimer");
    assert_eq!(gap.knee_treatments.len(), 1, "the physiotherapy referral is named");
}

#[test]
fn an_incomplete_score_with_nothing_drafted_offers_both_tests_and_either_answers_it() {
    let intake = yes(&[Question::CalfPain]);
    let review = reviewed(intake.clone(), RecordFacts::default(), &[]);
    let gap = dvt_gap(&review).expect("not answered");
    assert_eq!(missing_kinds(gap), vec![OrderKind::VenousDuplex, OrderKind::DDimer]);
    for answer in [OrderKind::VenousDuplex, OrderKind::DDimer] {
        assert_eq!(
            reviewed(intake.clone(), RecordFacts::default(), &[ordered(answer, None)]),
            OrderReview::NothingToSay
        );
    }
}

#[test]
fn a_duplex_already_on_order_on_the_record_leaves_nothing_to_add_at_order_time() {
    let record =
        RecordFacts { duplex_orders: vec![duplex(Some(Side::Left), OrderState::Pending)], ..Default::default() };
    assert_eq!(reviewed(likely_dvt(), record, &[ordered(OrderKind::KneeMri, None)]), OrderReview::NothingToSay);
}

#[test]
fn a_negative_d_dimer_on_record_with_an_unlikely_score_leaves_nothing_to_add() {
    let record = RecordFacts { d_dimers: vec![d_dimer(DDimerUnit::Feu, 200.0)], ..Default::default() };
    assert_eq!(reviewed(unlikely_dvt(), record, &[]), OrderReview::NothingToSay);
}

#[test]
fn an_nsaid_drafted_beside_possible_dvt_is_named_as_a_knee_treatment() {
    let review = reviewed(likely_dvt(), RecordFacts::default(), &[draft(DraftKind::Nsaid, None)]);
    assert_eq!(dvt_gap(&review).expect("not answered").knee_treatments.len(), 1);
}

#[test]
fn a_nerve_deficit_without_a_lumbar_spine_mri_is_a_gap_and_a_drafted_one_answers_it() {
    let intake = yes(&[Question::FootWeakness]);
    let review = reviewed(intake.clone(), RecordFacts::default(), &[ordered(OrderKind::PhysiotherapyReferral, None)]);
    let gap = nerve_gap(&review).expect("the deficit is not answered");
    assert_eq!(gap.urgency, Urgency::Warning);
    assert_eq!(missing_kinds(gap), vec![OrderKind::LumbarSpineMri]);
    assert_eq!(
        reviewed(intake, RecordFacts::default(), &[ordered(OrderKind::LumbarSpineMri, None)]),
        OrderReview::NothingToSay
    );
}

#[test]
fn cauda_equina_asks_for_the_lumbar_spine_mri_the_same_day() {
    let review = reviewed(yes(&[Question::SaddleBladderBowel, Question::FootWeakness]), RecordFacts::default(), &[]);
    let gap = nerve_gap(&review).expect("not answered");
    assert_eq!(gap.urgency, Urgency::Critical);
    assert_eq!(gap.missing.len(), 1, "one MRI, not one per flag");
    assert_eq!(gap.missing[0].priority, Priority::Stat);
}

#[test]
fn red_flags_no_order_can_answer_are_shown_whatever_is_drafted() {
    for (question, kind) in [
        (Question::BreathlessChestPain, RedFlagKind::PulmonaryEmbolism),
        (Question::ColdPaleFoot, RedFlagKind::LimbIschaemia),
        (Question::SpreadingRedness, RedFlagKind::Infection),
        (Question::PulsatileLump, RedFlagKind::PoplitealAneurysm),
    ] {
        let review = reviewed(yes(&[question]), RecordFacts::default(), &[ordered(OrderKind::VenousDuplex, None)]);
        let OrderReview::Reviewed { other_red_flags, .. } = review else { panic!("{question:?}: {review:?}") };
        assert!(other_red_flags.iter().any(|f| f.kind == kind), "{question:?}");
    }
}

#[test]
fn without_an_intake_knee_orders_ask_for_one_and_unrelated_orders_are_met_with_silence() {
    let missing = assess_with_shipped_rules(&situation(IntakeState::Missing, RecordFacts::default(), Some(45)));
    let knee = review(missing.clone(), &[ordered(OrderKind::KneeMri, Some(Side::Left))]);
    assert!(matches!(knee, OrderReview::IntakeNeeded(_)));
    assert_eq!(review(missing, &[draft(DraftKind::Other, None)]), OrderReview::NothingToSay);
}

#[test]
fn a_usable_intake_without_red_flags_says_nothing_at_order_time() {
    let intake = yes(&[Question::LumpFullness, Question::KneeSwelling]);
    assert_eq!(
        reviewed(intake, RecordFacts::default(), &[ordered(OrderKind::KneeMri, None)]),
        OrderReview::NothingToSay
    );
}
