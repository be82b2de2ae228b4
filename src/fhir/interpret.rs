//! From FHIR resources to the facts the rules read: which Conditions, Observations, orders,
//! medications and procedures matter, chosen by the value sets (`terminology`), the FHIR status
//! rules of clinical-logic.md section 5 and the rules' time windows (`cds-hooks/rules.toml`).
//!
//! Status rules, for every resource read here:
//! - a Condition whose verificationStatus is refuted or entered-in-error counts for nothing;
//! - a Condition is active when its clinicalStatus is active, recurrence or relapse (or absent)
//!   and it has no `abatement[x]`; a previous DVT counts whatever its clinicalStatus;
//! - an Observation counts only with status final, amended or corrected;
//! - a MedicationRequest is treatment only when active with an ordering intent (not a plan or a
//!   proposal);
//! - a Procedure counts only when completed.
//!
//! (A resource carrying a `modifierExtension` never gets here: `page` skips and reports it.)

use time::{Duration, OffsetDateTime};

use super::page::is_safe_id;
use super::record::PatientRecord;
use super::reference::{belongs_to, codings, describe, first_code, laterality};
use super::time::{day, earliest, latest, months_before};
use super::views::{CodeableConcept, Condition, MedicationRequest, Observation, Quantity, ServiceRequest};
use crate::knee::facts::{DDimerResult, DDimerUnit, DuplexOrder, OrderState, RecordEvidence, RecordFacts};
use crate::knee::orders::OrderKind;
use crate::knee::question::Side;
use crate::knee::thresholds::Thresholds;
use crate::terminology::{CodeFacts, CodeList, Terminology, ValueSets};

/// Observation statuses whose value is a result (never preliminary, registered, cancelled...).
const RESULT_STATUSES: &[&str] = &["final", "amended", "corrected"];
/// MedicationRequest intents that order treatment (a `plan` or a `proposal` does not).
const ORDERING_INTENTS: &[&str] = &["order", "original-order", "reflex-order", "filler-order", "instance-order"];
/// Condition clinical statuses that are active (an absent one is read as active: safer).
const ACTIVE_STATUSES: &[&str] = &["active", "recurrence", "relapse"];

fn reference_to(resource_type: &str, id: Option<&str>) -> String {
    match id.filter(|id| is_safe_id(id)) {
        Some(id) => format!("{resource_type}/{id}"),
        None => resource_type.to_owned(),
    }
}

/// What the value sets know of a concept's codings, together: the lists any coding is in, and
/// the first side a coding names.
#[derive(Debug, Default)]
struct Listed {
    facts: Vec<CodeFacts>,
}

impl Listed {
    fn of(concept: Option<&CodeableConcept>, sets: &ValueSets) -> Listed {
        let facts = concept
            .into_iter()
            .flat_map(codings)
            .filter_map(|(system, code)| sets.lookup(system, code).copied())
            .collect();
        Listed { facts }
    }

    fn is_in(&self, list: CodeList) -> bool {
        self.facts.iter().any(|f| f.is_in(list))
    }

    fn side(&self) -> Option<Side> {
        self.facts.iter().find_map(|f| f.side)
    }
}

fn is_refuted(condition: &Condition) -> bool {
    matches!(first_code(condition.verification_status.as_ref()), Some("refuted" | "entered-in-error"))
}

/// Active: clinicalStatus active, recurrence or relapse (or absent), and not abated.
fn is_active(condition: &Condition) -> bool {
    first_code(condition.clinical_status.as_ref()).is_none_or(|status| ACTIVE_STATUSES.contains(&status))
        && !condition.abated()
}

fn condition_evidence(condition: &Condition, side: Option<Side>) -> RecordEvidence {
    let date = condition.recorded_date.as_ref().or(condition.onset()).and_then(day);
    RecordEvidence::new(
        reference_to("Condition", condition.id.as_deref()),
        condition.code.as_ref().map(describe).unwrap_or_default(),
        date,
    )
    .on_side(side)
}

/// Builds the record facts for `patient_id` at `now`.
pub fn record_facts(
    record: &PatientRecord,
    patient_id: &str,
    terminology: &Terminology,
    thresholds: &Thresholds,
    now: OffsetDateTime,
) -> RecordFacts {
    let sets = &terminology.value_sets;
    let mut facts = RecordFacts::default();
    for (key, _) in record.incomplete_keys() {
        if let Some(source) = key.record_source() {
            facts.unavailable.insert(source);
        }
    }

    let pregnancy_since = months_before(now, thresholds.pregnancy_window_months.value);
    for condition in record.conditions.iter().filter(|c| belongs_to(Some(&c.subject), patient_id)) {
        if is_refuted(condition) {
            continue;
        }
        let listed = Listed::of(condition.code.as_ref(), sets);
        if listed.facts.is_empty() {
            continue;
        }
        let side = listed.side().or_else(|| laterality(&condition.body_site, terminology));
        let evidence = || condition_evidence(condition, side);
        if listed.is_in(CodeList::PreviousDvt) {
            facts.previous_dvt.push(evidence());
        }
        if !is_active(condition) {
            continue;
        }
        let lists: [(CodeList, &mut Vec<RecordEvidence>); 6] = [
            (CodeList::ActiveCancer, &mut facts.active_cancer),
            (CodeList::LegParesis, &mut facts.leg_paresis),
            (CodeList::KneePain, &mut facts.knee_pain),
            (CodeList::Radiculopathy, &mut facts.radiculopathy),
            (CodeList::BakerSupport, &mut facts.baker_support),
            (CodeList::Pregnancy, &mut facts.pregnancy),
        ];
        for (list, found) in lists {
            if !listed.is_in(list) {
                continue;
            }
            if list == CodeList::Pregnancy {
                // A pregnancy counts while it can still be going on: a recent onset (or record).
                let dated = condition.onset().or(condition.recorded_date.as_ref());
                if dated.and_then(latest).is_none_or(|t| t < pregnancy_since) {
                    continue;
                }
            }
            found.push(evidence());
        }
    }

    for observation in record.observations.iter().filter(|o| belongs_to(o.subject.as_ref(), patient_id)) {
        read_observation(observation, sets, thresholds, now, &mut facts);
    }

    for request in record.medication_requests.iter().filter(|m| belongs_to(Some(&m.subject), patient_id)) {
        let treatment = request.status == "active" && ORDERING_INTENTS.contains(&request.intent.as_str());
        if treatment && let Some(description) = anticoagulant(request, record, sets) {
            let date = request.authored_on.as_ref().and_then(day);
            facts.anticoagulants.push(RecordEvidence::new(
                reference_to("MedicationRequest", request.id.as_deref()),
                description,
                date,
            ));
        }
    }

    for order in record.service_requests.iter().filter(|s| belongs_to(Some(&s.subject), patient_id)) {
        if let Some(duplex) = duplex_order(order, terminology, thresholds, now) {
            facts.duplex_orders.push(duplex);
        }
    }

    let surgery_since = now - Duration::days(thresholds.major_surgery_window_days.value);
    for procedure in record.procedures.iter().filter(|p| belongs_to(Some(&p.subject), patient_id)) {
        if procedure.status != "completed" || !Listed::of(procedure.code.as_ref(), sets).is_in(CodeList::MajorSurgery) {
            continue;
        }
        let performed = procedure.performed();
        let recent = performed.and_then(latest).is_some_and(|t| t >= surgery_since)
            && performed.and_then(earliest).is_some_and(|t| t <= now);
        if recent {
            facts.recent_major_surgery.push(RecordEvidence::new(
                reference_to("Procedure", procedure.id.as_deref()),
                procedure.code.as_ref().map(describe).unwrap_or_default(),
                performed.and_then(day),
            ));
        }
    }
    facts
}

fn effective_instant(observation: &Observation) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let value = observation.effective()?;
    Some((earliest(value)?, latest(value)?))
}

fn read_observation(
    observation: &Observation,
    sets: &ValueSets,
    thresholds: &Thresholds,
    now: OffsetDateTime,
    facts: &mut RecordFacts,
) {
    if !RESULT_STATUSES.contains(&observation.status.as_str()) {
        return;
    }
    let listed = Listed::of(Some(&observation.code), sets);
    if listed.facts.is_empty() {
        return;
    }
    let (Some((first, last)), Some(quantity)) = (effective_instant(observation), observation.value_quantity.as_ref())
    else {
        return;
    };
    let evidence = || {
        RecordEvidence::new(
            reference_to("Observation", observation.id.as_deref()),
            describe(&observation.code),
            Some(first.date()),
        )
    };
    if listed.is_in(CodeList::BodyTemperature) {
        let fever_since = now - Duration::hours(thresholds.fever_window_hours.value);
        if let Some(celsius) = celsius(quantity)
            && celsius >= thresholds.fever_celsius.value
            && last >= fever_since
            && first <= now + Duration::minutes(5)
        {
            facts.recent_fever.push(evidence().with_value(format!("{celsius:.1} °C")));
        }
        return;
    }
    let unit = if listed.is_in(CodeList::DDimerFeu) {
        DDimerUnit::Feu
    } else if listed.is_in(CodeList::DDimerDdu) {
        DDimerUnit::Ddu
    } else {
        return;
    };
    if last < now - Duration::days(thresholds.d_dimer_window_days.value) || first > now + Duration::minutes(5) {
        return;
    }
    let Some(value) = quantity.value else {
        return;
    };
    let shown_unit = quantity.unit.clone().or_else(|| quantity.code.clone()).unwrap_or_default();
    facts.d_dimers.push(DDimerResult {
        evidence: evidence().with_value(format!("{value} {shown_unit}").trim().to_owned()),
        unit,
        micrograms_per_litre: micrograms_per_litre(quantity),
    });
}

/// A temperature in degrees Celsius, from Cel or [degF] (UCUM) or their common spellings.
fn celsius(quantity: &Quantity) -> Option<f64> {
    let value = quantity.value?;
    let unit = quantity.code.as_deref().or(quantity.unit.as_deref())?;
    match unit {
        "Cel" | "°C" | "C" | "degC" => Some(value),
        "[degF]" | "°F" | "F" | "degF" => Some((value - 32.0) * 5.0 / 9.0),
        _ => None,
    }
}

/// A mass concentration in ug/L; annotations such as `{FEU}` are ignored.
fn micrograms_per_litre(quantity: &Quantity) -> Option<f64> {
    let value = quantity.value?;
    let unit = quantity.code.as_deref().or(quantity.unit.as_deref())?;
    let bare: String = unit
        .split('{')
        .next()
        .unwrap_or(unit)
        .trim()
        .trim_end_matches("FEU")
        .trim_end_matches("DDU")
        .trim()
        .replace('µ', "u");
    let factor = match bare.as_str() {
        "ug/L" | "ng/mL" => 1.0,
        "mg/L" | "ug/mL" => 1000.0,
        "ng/L" => 0.001,
        _ => return None,
    };
    Some(value * factor)
}

/// The description of an anticoagulant when this request is for one: its medication (a code,
/// a contained or included Medication, or a reference's display) is in the anticoagulant value
/// sets, or a display or text names an ingredient.
fn anticoagulant(request: &MedicationRequest, record: &PatientRecord, sets: &ValueSets) -> Option<String> {
    let concept = match (&request.medication_codeable_concept, &request.medication_reference) {
        (Some(concept), _) => Some(concept.clone()),
        (None, Some(reference)) => {
            let target = reference.reference.as_deref().unwrap_or_default();
            if let Some(local) = target.strip_prefix('#') {
                request.contained_medication(local).and_then(|m| m.code)
            } else {
                let id = target.rsplit('/').next().unwrap_or_default();
                record.medications.iter().find(|m| m.id.as_deref() == Some(id)).and_then(|m| m.code.clone())
            }
            // A display on the reference is all some EHRs send.
            .or_else(|| reference.display.as_deref().map(CodeableConcept::text))
        }
        (None, None) => None,
    }?;
    let list = CodeList::Anticoagulants;
    let by_code = Listed::of(Some(&concept), sets).is_in(list);
    let by_name = concept.text.as_deref().is_some_and(|t| sets.names_in(list, t))
        || concept.coding.iter().any(|c| c.display.as_deref().is_some_and(|d| sets.names_in(list, d)));
    (by_code || by_name).then(|| describe(&concept))
}

fn duplex_order(
    order: &ServiceRequest,
    terminology: &Terminology,
    thresholds: &Thresholds,
    now: OffsetDateTime,
) -> Option<DuplexOrder> {
    let concept = order.code.as_ref()?;
    let side_from_code =
        codings(concept).find_map(|(system, code)| match terminology.recognise_order(system, code) {
            Some((OrderKind::VenousDuplex, side)) => Some(side),
            _ => None,
        })?;
    let side = side_from_code.or_else(|| laterality(&order.body_site, terminology));
    let authored = order.authored_on.as_ref();
    let state = match order.status.as_str() {
        "active" | "draft" | "on-hold" => {
            let since = now - Duration::days(thresholds.duplex_order_window_days.value);
            // Only an order surely inside the window suppresses a new suggestion.
            if authored.and_then(earliest).is_none_or(|t| t < since) {
                return None;
            }
            OrderState::Pending
        }
        "completed" => {
            let since = now - Duration::days(thresholds.completed_duplex_window_days.value);
            if authored.and_then(latest).is_none_or(|t| t < since) {
                return None;
            }
            OrderState::Completed
        }
        _ => return None,
    };
    Some(DuplexOrder {
        evidence: RecordEvidence::new(
            reference_to("ServiceRequest", order.id.as_deref()),
            describe(concept),
            authored.and_then(day),
        )
        .on_side(side),
        side,
        state,
    })
}
