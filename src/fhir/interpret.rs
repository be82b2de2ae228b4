//! From FHIR resources to the facts the rules read: which Conditions, Observations, orders and
//! medications matter, chosen by the code lists and the rules' time windows.

use time::{Duration, OffsetDateTime};

use super::prefetch::is_safe_id;
use super::record::{DataKey, PatientRecord};
use super::reference::{belongs_to, codings, describe, first_code, laterality};
use super::time::{day, earliest, latest};
use super::views::{CodeableConcept, Condition, MedicationRequest, Observation, Quantity, ServiceRequest};
use crate::knee::facts::{DDimerResult, DDimerUnit, DuplexOrder, OrderState, RecordEvidence, RecordFacts};
use crate::knee::orders::OrderKind;
use crate::knee::windows;
use crate::terminology::{CodeList, Terminology};

/// Completed duplex scans this recent are mentioned on the DVT card.
const COMPLETED_DUPLEX_DAYS: i64 = 14;
/// Fever: 38.0 C or more.
const FEVER_CELSIUS: f64 = 38.0;

fn reference_to(resource_type: &str, id: Option<&str>) -> String {
    match id.filter(|id| is_safe_id(id)) {
        Some(id) => format!("{resource_type}/{id}"),
        None => resource_type.to_owned(),
    }
}

fn in_list(concept: Option<&CodeableConcept>, list: &CodeList) -> bool {
    concept.is_some_and(|c| codings(c).any(|(system, code)| list.contains(system, code)))
}

/// Whether a Condition is active (a missing clinicalStatus is read as active: safer).
fn is_active(condition: &Condition) -> bool {
    matches!(first_code(condition.clinical_status.as_ref()), None | Some("active" | "recurrence" | "relapse"))
}

fn is_refuted(condition: &Condition) -> bool {
    matches!(first_code(condition.verification_status.as_ref()), Some("refuted" | "entered-in-error"))
}

fn condition_evidence(condition: &Condition) -> RecordEvidence {
    let date = condition.recorded_date.as_ref().or(condition.onset_date_time.as_ref()).and_then(day);
    RecordEvidence {
        reference: reference_to("Condition", condition.id.as_deref()),
        description: condition.code.as_ref().map(describe).unwrap_or_else(|| "Condition".into()),
        date,
    }
}

/// Builds the record facts for `patient_id` at `now`.
pub fn record_facts(
    record: &PatientRecord,
    patient_id: &str,
    terminology: &Terminology,
    now: OffsetDateTime,
) -> RecordFacts {
    let mut facts = RecordFacts::default();
    for key in DataKey::ALL {
        if record.gaps.is_unavailable(*key)
            && let Some(source) = key.record_source()
        {
            facts.unavailable.insert(source);
        }
    }

    for condition in record.conditions.iter().filter(|c| belongs_to(Some(&c.subject), patient_id)) {
        if is_refuted(condition) {
            continue;
        }
        let code = condition.code.as_ref();
        let active = is_active(condition);
        if in_list(code, &terminology.dvt) {
            facts.previous_dvt.push(condition_evidence(condition));
        }
        let lists: [(&CodeList, &mut Vec<RecordEvidence>); 4] = [
            (&terminology.malignancy, &mut facts.active_cancer),
            (&terminology.leg_paresis, &mut facts.leg_paresis),
            (&terminology.knee_pain, &mut facts.knee_pain),
            (&terminology.radiculopathy, &mut facts.radiculopathy),
        ];
        for (list, found) in lists {
            if active && in_list(code, list) {
                found.push(condition_evidence(condition));
            }
        }
    }

    for observation in record.observations.iter().filter(|o| belongs_to(o.subject.as_ref(), patient_id)) {
        read_observation(observation, terminology, now, &mut facts);
    }

    for request in record.medication_requests.iter().filter(|m| belongs_to(Some(&m.subject), patient_id)) {
        if request.status == "active"
            && let Some(description) = anticoagulant(request, record, &terminology.anticoagulants)
        {
            facts.anticoagulants.push(RecordEvidence {
                reference: reference_to("MedicationRequest", request.id.as_deref()),
                description,
                date: request.authored_on.as_ref().and_then(day),
            });
        }
    }

    for order in record.service_requests.iter().filter(|s| belongs_to(Some(&s.subject), patient_id)) {
        if let Some(duplex) = duplex_order(order, terminology, now) {
            facts.duplex_orders.push(duplex);
        }
    }

    let surgery_since = now - Duration::weeks(windows::MAJOR_SURGERY_WEEKS);
    for procedure in record.procedures.iter().filter(|p| belongs_to(Some(&p.subject), patient_id)) {
        let performed = procedure.performed();
        let recent = performed.and_then(latest).is_some_and(|t| t >= surgery_since && t <= now);
        if procedure.status == "completed" && recent && in_list(procedure.code.as_ref(), &terminology.major_surgery) {
            facts.recent_major_surgery.push(RecordEvidence {
                reference: reference_to("Procedure", procedure.id.as_deref()),
                description: procedure.code.as_ref().map(describe).unwrap_or_default(),
                date: performed.and_then(day),
            });
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
    terminology: &Terminology,
    now: OffsetDateTime,
    facts: &mut RecordFacts,
) {
    if !matches!(observation.status.as_str(), "final" | "amended" | "corrected" | "preliminary") {
        return;
    }
    let code = Some(&observation.code);
    let Some((first, last)) = effective_instant(observation) else {
        return;
    };
    let Some(quantity) = observation.value_quantity.as_ref() else {
        return;
    };
    let evidence = |description: String| RecordEvidence {
        reference: reference_to("Observation", observation.id.as_deref()),
        description,
        date: Some(first.date()),
    };
    if in_list(code, &terminology.body_temperature) {
        let fever_since = now - Duration::hours(windows::FEVER_HOURS);
        if let Some(celsius) = celsius(quantity)
            && celsius >= FEVER_CELSIUS
            && last >= fever_since
            && first <= now + Duration::minutes(5)
        {
            facts.recent_fever.push(evidence(format!("Body temperature {celsius:.1} °C")));
        }
        return;
    }
    let unit = if in_list(code, &terminology.d_dimer_feu) {
        DDimerUnit::Feu
    } else if in_list(code, &terminology.d_dimer_ddu) {
        DDimerUnit::Ddu
    } else {
        return;
    };
    if last < now - Duration::days(windows::D_DIMER_DAYS) {
        return;
    }
    let Some(value) = quantity.value else {
        return;
    };
    let shown_unit = quantity.unit.clone().or_else(|| quantity.code.clone()).unwrap_or_default();
    let family = match unit {
        DDimerUnit::Feu => "FEU",
        DDimerUnit::Ddu => "DDU",
    };
    facts.d_dimers.push(DDimerResult {
        evidence: evidence(format!("D-dimer {value} {shown_unit} ({family})")),
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

/// The description of an anticoagulant when this request is for one.
fn anticoagulant(request: &MedicationRequest, record: &PatientRecord, list: &CodeList) -> Option<String> {
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
    let by_code = codings(&concept).any(|(system, code)| list.contains(system, code));
    let by_name = concept.text.as_deref().is_some_and(|t| list.names_in(t))
        || concept.coding.iter().any(|c| c.display.as_deref().is_some_and(|d| list.names_in(d)));
    (by_code || by_name).then(|| describe(&concept))
}

fn duplex_order(order: &ServiceRequest, terminology: &Terminology, now: OffsetDateTime) -> Option<DuplexOrder> {
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
            let since = now - Duration::days(windows::DUPLEX_ORDER_DAYS);
            // Only an order surely inside the window suppresses a new suggestion.
            if authored.and_then(earliest).is_none_or(|t| t < since) {
                return None;
            }
            OrderState::Pending
        }
        "completed" => {
            let since = now - Duration::days(COMPLETED_DUPLEX_DAYS);
            if authored.and_then(latest).is_none_or(|t| t < since) {
                return None;
            }
            OrderState::Completed
        }
        _ => return None,
    };
    Some(DuplexOrder {
        evidence: RecordEvidence {
            reference: reference_to("ServiceRequest", order.id.as_deref()),
            description: describe(concept),
            date: authored.and_then(day),
        },
        side,
        state,
    })
}

/// The patient's id as the record names it (for matching subjects).
pub fn patient_reference_id(record: &PatientRecord) -> Option<&str> {
    record.patient.as_ref()?.id.as_deref()
}
