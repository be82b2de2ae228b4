//! What the record already answers of the intake, for the intake app to prefill (each answer
//! shown as coming from the record, for the user to confirm or change). The same facts the rules
//! read (clinical-logic.md section 5): the record only ever says "yes" (a finding it holds) or
//! which side; it never says "no", so a question it does not answer stays unanswered.

use super::facts::{RecordEvidence, RecordFacts};
use super::question::{Question, Side};

/// A prefilled answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefilledAnswer {
    Yes,
    Side(Side),
}

/// One question the record answers, with the records that say so.
#[derive(Debug, Clone, PartialEq)]
pub struct Prefilled {
    pub question: Question,
    pub answer: PrefilledAnswer,
    pub evidence: Vec<RecordEvidence>,
    /// What the user must check before confirming, when the record cannot tell it.
    pub verify: Option<&'static str>,
}

/// The side the knee-pain (and Baker cyst) Conditions name: one side, or both when they name
/// both; none when none names a side.
fn side_from(knee_pain: &[RecordEvidence]) -> Option<(Side, Vec<RecordEvidence>)> {
    let sided: Vec<RecordEvidence> = knee_pain.iter().filter(|e| e.side.is_some()).cloned().collect();
    let side = sided.iter().filter_map(|e| e.side).reduce(|a, b| if a == b { a } else { Side::Both })?;
    Some((side, sided))
}

/// The questions `facts` answer, in questionnaire order.
pub fn prefill(facts: &RecordFacts) -> Vec<Prefilled> {
    let mut answers = Vec::new();
    if let Some((side, evidence)) = side_from(&facts.knee_pain) {
        answers.push(Prefilled {
            question: Question::Side,
            answer: PrefilledAnswer::Side(side),
            evidence,
            verify: None,
        });
    }
    let yes: [(Question, &Vec<RecordEvidence>, Option<&'static str>); 6] = [
        (Question::Fever, &facts.recent_fever, None),
        (Question::PregnantOrPostpartum, &facts.pregnancy, None),
        (
            Question::WellsActiveCancer,
            &facts.active_cancer,
            Some("verify treatment within the last 6 months or palliative care"),
        ),
        (Question::WellsParalysisCast, &facts.leg_paresis, None),
        (Question::WellsBedriddenSurgery, &facts.recent_major_surgery, None),
        (Question::WellsPreviousDvt, &facts.previous_dvt, None),
    ];
    for (question, evidence, verify) in yes {
        if !evidence.is_empty() {
            answers.push(Prefilled { question, answer: PrefilledAnswer::Yes, evidence: evidence.clone(), verify });
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(id: &str, side: Option<Side>) -> RecordEvidence {
        RecordEvidence::new(format!("Condition/{id}"), "Pain in knee", None).on_side(side)
    }

    #[test]
    fn a_record_with_nothing_relevant_prefills_nothing() {
        assert!(prefill(&RecordFacts::default()).is_empty());
    }

    #[test]
    fn left_knee_pain_on_the_record_prefills_the_left_side_citing_the_condition() {
        let facts = RecordFacts { knee_pain: vec![condition("kp", Some(Side::Left))], ..RecordFacts::default() };
        let answers = prefill(&facts);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].question, Question::Side);
        assert_eq!(answers[0].answer, PrefilledAnswer::Side(Side::Left));
        assert_eq!(answers[0].evidence[0].reference, "Condition/kp");
    }

    #[test]
    fn knee_pain_on_both_sides_prefills_both_knees() {
        let facts = RecordFacts {
            knee_pain: vec![condition("l", Some(Side::Left)), condition("r", Some(Side::Right))],
            ..RecordFacts::default()
        };
        assert_eq!(prefill(&facts)[0].answer, PrefilledAnswer::Side(Side::Both));
    }

    #[test]
    fn knee_pain_without_a_side_leaves_the_side_for_the_user() {
        let facts = RecordFacts { knee_pain: vec![condition("kp", None)], ..RecordFacts::default() };
        assert!(prefill(&facts).is_empty());
    }

    #[test]
    fn cancer_on_the_record_prefills_the_wells_item_and_asks_to_verify_treatment() {
        let facts = RecordFacts {
            active_cancer: vec![RecordEvidence::new("Condition/c", "Malignant neoplasm of breast", None)],
            previous_dvt: vec![RecordEvidence::new("Condition/d", "Deep vein thrombosis", None)],
            ..RecordFacts::default()
        };
        let answers = prefill(&facts);
        let questions: Vec<Question> = answers.iter().map(|a| a.question).collect();
        assert_eq!(questions, vec![Question::WellsActiveCancer, Question::WellsPreviousDvt]);
        assert!(answers[0].verify.is_some_and(|v| v.contains("6 months")));
        assert!(answers.iter().all(|a| a.answer == PrefilledAnswer::Yes));
    }

    #[test]
    fn a_recent_fever_on_the_record_prefills_the_fever_question() {
        let facts = RecordFacts {
            recent_fever: vec![RecordEvidence::new("Observation/t", "Body temperature", None)],
            ..RecordFacts::default()
        };
        assert_eq!(prefill(&facts)[0].question, Question::Fever);
    }
}
