//! The two-level Wells score for DVT (NICE NG158, table 1; adapted from Wells 2003).
//! Unknown items count 0 and make the score incomplete; an incomplete score is never "unlikely".

use super::finding::{Finding, Findings};
use super::question::Question;

/// The items of the score, in the order of NICE NG158 table 1, with their points.
pub const WELLS_ITEMS: &[(Question, i32)] = &[
    (Question::WellsActiveCancer, 1),
    (Question::WellsParalysisCast, 1),
    (Question::WellsBedriddenSurgery, 1),
    (Question::WellsDeepVeinTenderness, 1),
    (Question::WellsEntireLegSwollen, 1),
    (Question::WellsCalfSwelling3cm, 1),
    (Question::WellsPittingOedema, 1),
    (Question::WellsCollateralVeins, 1),
    (Question::WellsPreviousDvt, 1),
    (Question::WellsAlternativeDx, -2),
];

/// Where a Wells item's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemSource {
    Questionnaire,
    Record,
    NotAssessed,
}

impl ItemSource {
    pub fn code(self) -> &'static str {
        match self {
            ItemSource::Questionnaire => "questionnaire",
            ItemSource::Record => "record",
            ItemSource::NotAssessed => "not-assessed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WellsItem {
    pub question: Question,
    /// Points this item adds now (0 when absent or not assessed).
    pub points: i32,
    /// Points it would add when present.
    pub weight: i32,
    pub finding: Finding,
    pub source: ItemSource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WellsScore {
    pub items: Vec<WellsItem>,
    pub score: i32,
    pub complete: bool,
    /// The score from which DVT is likely (`cds-hooks/rules.toml`).
    likely_from: i32,
}

impl WellsScore {
    pub fn evaluate(findings: &Findings<'_>, likely_from: i32) -> WellsScore {
        let items: Vec<WellsItem> = WELLS_ITEMS
            .iter()
            .map(|&(question, weight)| {
                // The alternative diagnosis is a clinician's judgement: only the answer counts.
                let finding = if question == Question::WellsAlternativeDx {
                    match findings.intake().yes_no(question) {
                        Some(true) => Finding::Present(vec![super::finding::Evidence::Answered(question)]),
                        Some(false) => Finding::Absent,
                        None => Finding::NotAssessed,
                    }
                } else {
                    findings.get(question)
                };
                let (points, source) = match &finding {
                    Finding::Present(_) if finding.from_record() => (weight, ItemSource::Record),
                    Finding::Present(_) => (weight, ItemSource::Questionnaire),
                    Finding::Absent => (0, ItemSource::Questionnaire),
                    Finding::NotAssessed => (0, ItemSource::NotAssessed),
                };
                WellsItem { question, points, weight, finding, source }
            })
            .collect();
        let score = items.iter().map(|item| item.points).sum();
        let complete = items.iter().all(|item| item.source != ItemSource::NotAssessed);
        WellsScore { items, score, complete, likely_from }
    }

    /// DVT likely: a score of 2 or more (already reached by the assessed items alone).
    pub fn likely(&self) -> bool {
        self.score >= self.likely_from
    }

    pub fn missing(&self) -> impl Iterator<Item = Question> + '_ {
        self.items.iter().filter(|item| item.source == ItemSource::NotAssessed).map(|item| item.question)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knee::facts::{Answer, Intake, RecordEvidence, RecordFacts};

    fn all_answered_no() -> Intake {
        WELLS_ITEMS.iter().fold(Intake::default(), |intake, (q, _)| intake.with(*q, Answer::No))
    }

    fn score_of(intake: &Intake, record: &RecordFacts) -> WellsScore {
        WellsScore::evaluate(&Findings::new(intake, record), 2)
    }

    #[test]
    fn each_positive_item_alone_adds_its_own_points_to_a_complete_score() {
        for &(question, weight) in WELLS_ITEMS {
            let intake = all_answered_no().with(question, Answer::Yes);
            let wells = score_of(&intake, &RecordFacts::default());
            assert!(wells.complete, "{question:?}");
            assert_eq!(wells.score, weight, "{question:?}");
            let item = wells.items.iter().find(|i| i.question == question).expect("item listed");
            assert_eq!(item.points, weight);
            assert_eq!(item.source, ItemSource::Questionnaire);
            assert_eq!(wells.likely(), weight >= 2);
        }
    }

    #[test]
    fn two_positive_items_make_dvt_likely() {
        let intake = all_answered_no()
            .with(Question::WellsEntireLegSwollen, Answer::Yes)
            .with(Question::WellsPittingOedema, Answer::Yes);
        let wells = score_of(&intake, &RecordFacts::default());
        assert_eq!(wells.score, 2);
        assert!(wells.likely());
    }

    #[test]
    fn an_unanswered_item_leaves_the_score_incomplete_and_is_named() {
        let intake = all_answered_no();
        let mut intake_missing_one = Intake::default();
        for &(q, _) in WELLS_ITEMS.iter().filter(|(q, _)| *q != Question::WellsCollateralVeins) {
            intake_missing_one.record(q, intake.answer(q).expect("answered"));
        }
        let wells = score_of(&intake_missing_one, &RecordFacts::default());
        assert!(!wells.complete);
        assert_eq!(wells.missing().collect::<Vec<_>>(), vec![Question::WellsCollateralVeins]);
    }

    #[test]
    fn a_record_item_is_attributed_to_the_record() {
        let record =
            RecordFacts { previous_dvt: vec![RecordEvidence::new("Condition/d", "DVT", None)], ..Default::default() };
        let wells = score_of(&all_answered_no(), &record);
        let item = wells.items.iter().find(|i| i.question == Question::WellsPreviousDvt).expect("item");
        assert_eq!((item.points, item.source), (1, ItemSource::Record));
    }

    #[test]
    fn the_alternative_diagnosis_is_never_taken_from_anything_but_the_answer() {
        let wells = score_of(&Intake::default(), &RecordFacts::default());
        let item = wells.items.iter().find(|i| i.question == Question::WellsAlternativeDx).expect("item");
        assert_eq!(item.source, ItemSource::NotAssessed);
        assert_eq!(wells.score, 0);
    }
}
