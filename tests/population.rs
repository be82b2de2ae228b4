//! The 29 Synthea R4 patients of ../shared/fhir-data/synthea/population, whole records as EHRs
//! hold them, through the HTTP API: every record is answered, the service stays silent without an
//! intake, and with a DVT-signs intake that leaves the record-fed Wells items unanswered, each of
//! them is credited to the record exactly when this test's own reading of the record says so.
//!
//! The reading here is independent of the service: it builds each list from the files under
//! `cds-hooks/codes/` itself and applies the status rules of clinical-logic.md section 5 itself
//! (it never calls `popliteal::terminology` or `popliteal::fhir`).
//!
//! Synthea records end years ago: every date of a record is moved by the same number of whole days
//! so that its last Encounter is yesterday.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};
use support::{TestApp, card, protocol_problems, spawn_app, suggested_resources, topics};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset};

const SERVICE: &str = "/cds-services/posterior-knee-pain";
const QUESTIONNAIRE: &str = "http://cds.example.org/fhir/Questionnaire/posterior-knee-pain";
const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
/// The README of the population says so: 5 of the 29 carry an active malignant neoplasm.
const PATIENTS_WITH_ACTIVE_CANCER: usize = 5;
const PATIENT_COUNT: usize = 29;

/// The Wells items the record feeds, each with the list that feeds it.
const RECORD_ITEMS: [(&str, &str); 4] = [
    ("wells-active-cancer", "active-cancer"),
    ("wells-previous-dvt", "previous-dvt"),
    ("wells-paralysis-cast", "leg-paresis"),
    ("wells-bedridden-surgery", "major-surgery"),
];
/// The Wells items only the clinician can answer: the intake answers them "no".
const FORM_ONLY_WELLS_ITEMS: &[&str] = &[
    "wells-deep-vein-tenderness",
    "wells-entire-leg-swollen",
    "wells-calf-swelling-3cm",
    "wells-pitting-oedema",
    "wells-collateral-veins",
    "wells-alternative-dx",
];
/// The red flags the intake answers "no" (all but the two DVT signs it answers "yes", and
/// `rf-fever`, left unanswered so that the record could speak).
const RED_FLAGS_ANSWERED_NO: &[&str] = &[
    "rf-warmth",
    "rf-redness",
    "rf-sudden-calf-swelling",
    "rf-breathless-chest-pain",
    "rf-cold-pale-foot",
    "rf-severe-pain-after-injury",
    "rf-spreading-redness",
    "rf-pain-at-rest",
    "rf-foot-weakness",
    "rf-progressive-numbness",
    "rf-saddle-bladder-bowel",
];
const D_DIMER_CODES: &[&str] = &["48065-7", "48066-5"];
const ACTIVE_CLINICAL_STATUSES: &[&str] = &["active", "recurrence", "relapse"];
const ORDERING_INTENTS: &[&str] = &["order", "original-order", "reflex-order", "filler-order", "instance-order"];

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn population_directory() -> PathBuf {
    repository().join("../shared/fhir-data/synthea/population")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{} must be readable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} must be JSON: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// FHIR dates, read and moved by this test.

/// A FHIR date, dateTime or instant: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a full dateTime with
/// seconds and an offset (a time is only allowed after a whole date).
static FHIR_DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?P<y>\d{4})(?:-(?P<m>0[1-9]|1[0-2])(?:-(?P<d>0[1-9]|[12]\d|3[01])",
        r"(?P<t>T(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d+)?(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d))?)?)?$",
    ))
    .expect("the FHIR date pattern compiles")
});

/// The calendar parts of a FHIR date string: year, month and day when given, and the time part.
struct DateParts<'a> {
    year: i32,
    month: Option<Month>,
    day: Option<u8>,
    time: Option<&'a str>,
}

fn date_parts(text: &str) -> Option<DateParts<'_>> {
    let caps = FHIR_DATE.captures(text)?;
    let year = caps["y"].parse().ok()?;
    let month = match caps.name("m") {
        Some(m) => Some(Month::try_from(m.as_str().parse::<u8>().ok()?).ok()?),
        None => None,
    };
    let day = match caps.name("d") {
        Some(d) => Some(d.as_str().parse().ok()?),
        None => None,
    };
    Some(DateParts { year, month, day, time: caps.name("t").map(|t| t.as_str()) })
}

/// The first and last instants a FHIR date or dateTime may mean (a date without a zone read as
/// UTC).
fn bounds(text: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let parts = date_parts(text)?;
    if parts.time.is_some() {
        let instant = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        return Some((instant, instant));
    }
    let first_month = parts.month.unwrap_or(Month::January);
    let last_month = parts.month.unwrap_or(Month::December);
    let first = Date::from_calendar_date(parts.year, first_month, parts.day.unwrap_or(1)).ok()?;
    let last =
        Date::from_calendar_date(parts.year, last_month, parts.day.unwrap_or_else(|| last_month.length(parts.year)))
            .ok()?;
    let end_of_day = Time::from_hms_nano(23, 59, 59, 999_999_999).ok()?;
    Some((first.with_time(Time::MIDNIGHT).assume_utc(), last.with_time(end_of_day).assume_utc()))
}

/// Keys of FHIR elements whose type is date, dateTime or instant (for the ambiguous `YYYY` and
/// `YYYY-MM` forms: a four-digit string elsewhere, such as a postal code, is not a date).
fn is_date_element(key: &str) -> bool {
    key.ends_with("Date")
        || key.ends_with("DateTime")
        || key.ends_with("Instant")
        || matches!(
            key,
            "date" | "start" | "end" | "issued" | "authored" | "authoredOn" | "created" | "recorded" | "started"
        )
}

/// `text` moved by `days` whole days, in its own format and precision (a partial date is moved
/// by its first day), or None when it is not a FHIR date.
fn shifted(text: &str, days: i64, date_element: bool) -> Option<String> {
    let parts = date_parts(text)?;
    if parts.day.is_none() && !date_element {
        return None;
    }
    let first = Date::from_calendar_date(parts.year, parts.month.unwrap_or(Month::January), parts.day.unwrap_or(1))
        .ok()?
        .checked_add(Duration::days(days))?;
    let (year, month, day) = (first.year(), u8::from(first.month()), first.day());
    Some(match (parts.month, parts.day) {
        (None, _) => format!("{year:04}"),
        (Some(_), None) => format!("{year:04}-{month:02}"),
        (Some(_), Some(_)) => format!("{year:04}-{month:02}-{day:02}{}", parts.time.unwrap_or_default()),
    })
}

/// Moves every date, dateTime and instant string of `value` by `days` days.
fn shift_dates(value: &mut Value, key: &str, days: i64) {
    match value {
        Value::String(text) => {
            if let Some(moved) = shifted(text, days, is_date_element(key)) {
                *text = moved;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| shift_dates(item, key, days)),
        Value::Object(map) => map.iter_mut().for_each(|(key, item)| shift_dates(item, key, days)),
        _ => {}
    }
}

/// Points every reference to the patient's bundle entry (`urn:uuid:...`) at `Patient/<id>`.
fn point_at_patient(value: &mut Value, full_url: &str, reference: &str) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| point_at_patient(item, full_url, reference)),
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "reference" && item.as_str() == Some(full_url) {
                    *item = Value::String(reference.to_owned());
                } else {
                    point_at_patient(item, full_url, reference);
                }
            }
        }
        _ => {}
    }
}

/// `months` calendar months before `now`, the day clamped to that month's length.
fn months_before(now: OffsetDateTime, months: i32) -> OffsetDateTime {
    let index = now.year() * 12 + i32::from(u8::from(now.month())) - 1 - months;
    let year = index.div_euclid(12);
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).expect("a month number")).expect("a month");
    let day = now.day().min(month.length(year));
    now.replace_date(Date::from_calendar_date(year, month, day).expect("a clamped date"))
}

// ---------------------------------------------------------------------------------------------
// The code lists, read from cds-hooks/codes by this test.

#[derive(Default)]
struct CodeList {
    codes: HashSet<(String, String)>,
    names: Vec<String>,
}

/// A (system, code) pair as the lists compare it: ICD-10-CM also without its dot.
fn code_key(system: &str, code: &str) -> (String, String) {
    let code = if system == ICD10CM { code.replace('.', "") } else { code.to_owned() };
    (system.to_owned(), code)
}

fn add_expansion(contains: &Value, codes: &mut HashSet<(String, String)>) {
    for entry in contains.as_array().into_iter().flatten() {
        if let (Some(system), Some(code)) = (entry["system"].as_str(), entry["code"].as_str()) {
            codes.insert(code_key(system, code));
        }
        add_expansion(&entry["contains"], codes);
    }
}

fn load_code_lists() -> HashMap<String, CodeList> {
    let directory = repository().join("cds-hooks/codes");
    let lists = read_json(&directory.join("lists.json"));
    let families = read_json(&directory.join("icd10cm-families.json"));
    let family_system = families["source"]["system"].as_str().expect("the families name their system");
    let mut loaded = HashMap::new();
    for (name, list) in lists["lists"].as_object().expect("lists.json has lists") {
        let mut codes = HashSet::new();
        for value_set in list["value_sets"].as_array().into_iter().flatten() {
            if let Some(review) = value_set["review"].as_str() {
                let kept = read_json(&directory.join(review))["kept"].clone();
                assert!(kept.as_array().is_some_and(|k| !k.is_empty()), "{review} keeps no code");
                add_expansion(&kept, &mut codes);
            } else {
                let oid = value_set["oid"].as_str().expect("a value set names its OID");
                let expansion = read_json(&directory.join(format!("vsac/valueset-{oid}.json")));
                add_expansion(&expansion["expansion"]["contains"], &mut codes);
            }
        }
        for root in list["icd10cm_families"].as_array().into_iter().flatten() {
            let root = root.as_str().expect("a family root");
            let family = &families["families"][root]["codes"];
            assert!(family.as_array().is_some_and(|f| !f.is_empty()), "no ICD-10-CM family {root}");
            for code in family.as_array().into_iter().flatten() {
                codes.insert(code_key(family_system, code["code"].as_str().expect("a family code")));
            }
        }
        for code in list["codes"].as_array().into_iter().flatten() {
            let (Some(system), Some(code)) = (code["system"].as_str(), code["code"].as_str()) else {
                panic!("list {name}: a code without system or code: {code}");
            };
            codes.insert(code_key(system, code));
        }
        let names = list["names"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| n.as_str().expect("a name").to_lowercase())
            .collect();
        loaded.insert(name.clone(), CodeList { codes, names });
    }
    for (_, list) in RECORD_ITEMS {
        assert!(loaded.get(list).is_some_and(|l| !l.codes.is_empty()), "lists.json must have a list {list}");
    }
    loaded
}

struct Lists(HashMap<String, CodeList>);

impl Lists {
    fn list(&self, name: &str) -> &CodeList {
        self.0.get(name).unwrap_or_else(|| panic!("lists.json has no list {name}"))
    }

    /// Whether one of the concept's codings is in the list.
    fn coded_in(&self, concept: &Value, name: &str) -> bool {
        let list = self.list(name);
        concept["coding"].as_array().into_iter().flatten().any(|coding| {
            match (coding["system"].as_str(), coding["code"].as_str()) {
                (Some(system), Some(code)) => list.codes.contains(&code_key(system, code)),
                _ => false,
            }
        })
    }

    /// Whether the concept's text or a coding's display names one of the list's ingredients.
    fn named_in(&self, concept: &Value, name: &str) -> bool {
        let list = self.list(name);
        let names_one = |text: &str| {
            let lower = text.to_lowercase();
            lower.split(|c: char| !c.is_alphanumeric()).any(|word| list.names.iter().any(|n| n == word))
        };
        concept["text"].as_str().is_some_and(names_one)
            || concept["coding"].as_array().into_iter().flatten().any(|c| c["display"].as_str().is_some_and(names_one))
    }
}

// ---------------------------------------------------------------------------------------------
// The population, dates moved, and what this test reads in each record.

/// What the record should give, by this test's reading.
#[derive(Debug, Default, Clone, Copy)]
struct Reading {
    active_cancer: bool,
    previous_dvt: bool,
    leg_paresis: bool,
    recent_major_surgery: bool,
    pregnancy: bool,
    knee_pain: bool,
    anticoagulated: bool,
}

impl Reading {
    fn credits(&self, item: &str) -> bool {
        match item {
            "wells-active-cancer" => self.active_cancer,
            "wells-previous-dvt" => self.previous_dvt,
            "wells-paralysis-cast" => self.leg_paresis,
            "wells-bedridden-surgery" => self.recent_major_surgery,
            other => panic!("{other} is not fed by the record"),
        }
    }
}

struct Patient {
    file: String,
    id: String,
    patient: Value,
    /// The record by resource type, dates moved, references to the patient as `Patient/<id>`.
    resources: BTreeMap<String, Vec<Value>>,
    /// Every resource id of the record (none may appear in a card's text).
    resource_ids: Vec<String>,
    reading: Reading,
}

impl Patient {
    fn of_type(&self, resource_type: &str) -> &[Value] {
        self.resources.get(resource_type).map_or(&[], Vec::as_slice)
    }
}

fn first_code(concept: &Value) -> Option<&str> {
    concept["coding"].as_array()?.iter().find_map(|c| c["code"].as_str())
}

fn refuted(condition: &Value) -> bool {
    matches!(first_code(&condition["verificationStatus"]), Some("refuted" | "entered-in-error"))
}

fn active(condition: &Value) -> bool {
    let status_active = first_code(&condition["clinicalStatus"]).is_none_or(|s| ACTIVE_CLINICAL_STATUSES.contains(&s));
    let abated = condition.as_object().is_some_and(|c| c.keys().any(|k| k.starts_with("abatement")));
    status_active && !abated
}

/// The first and last instants a `performed[x]` (dateTime or Period) may mean.
fn performed(procedure: &Value) -> Option<(OffsetDateTime, OffsetDateTime)> {
    if let Some(text) = procedure["performedDateTime"].as_str() {
        return bounds(text);
    }
    let period = &procedure["performedPeriod"];
    let start = period["start"].as_str().and_then(bounds);
    let end = period["end"].as_str().and_then(bounds);
    match (start, end) {
        (Some(start), Some(end)) => Some((start.0, end.1)),
        (Some(only), None) | (None, Some(only)) => Some(only),
        (None, None) => None,
    }
}

/// The medication a MedicationRequest names: its concept, a contained or included Medication's
/// code, or the reference's display.
fn medication_concept(request: &Value, included: &[Value]) -> Option<Value> {
    if request["medicationCodeableConcept"].is_object() {
        return Some(request["medicationCodeableConcept"].clone());
    }
    let reference = &request["medicationReference"];
    let target = reference["reference"].as_str().unwrap_or_default();
    let medication = if let Some(local) = target.strip_prefix('#') {
        request["contained"].as_array().into_iter().flatten().find(|m| m["id"] == local)
    } else {
        let id = target.rsplit(['/', ':']).next().unwrap_or_default();
        included.iter().find(|m| m["id"] == id)
    };
    medication
        .map(|m| m["code"].clone())
        .filter(Value::is_object)
        .or_else(|| reference["display"].as_str().map(|d| json!({ "text": d })))
}

/// This test's reading of a record at `now` (clinical-logic.md section 5).
fn read_record(patient: &Patient, lists: &Lists, windows: &Windows, now: OffsetDateTime) -> Reading {
    let mut reading = Reading::default();
    let pregnancy_since = months_before(now, windows.pregnancy_months);
    for condition in patient.of_type("Condition") {
        if refuted(condition) {
            continue;
        }
        let code = &condition["code"];
        reading.previous_dvt |= lists.coded_in(code, "previous-dvt");
        if !active(condition) {
            continue;
        }
        reading.active_cancer |= lists.coded_in(code, "active-cancer");
        reading.leg_paresis |= lists.coded_in(code, "leg-paresis");
        reading.knee_pain |= lists.coded_in(code, "knee-pain");
        if lists.coded_in(code, "pregnancy") {
            let dated = condition["onsetDateTime"]
                .as_str()
                .or(condition["onsetPeriod"]["start"].as_str())
                .or(condition["recordedDate"].as_str());
            reading.pregnancy |= dated.and_then(bounds).is_some_and(|(_, last)| last >= pregnancy_since);
        }
    }
    let surgery_since = now - Duration::days(windows.major_surgery_days);
    for procedure in patient.of_type("Procedure") {
        if procedure["status"] != "completed" || !lists.coded_in(&procedure["code"], "major-surgery") {
            continue;
        }
        reading.recent_major_surgery |=
            performed(procedure).is_some_and(|(first, last)| last >= surgery_since && first <= now);
    }
    let included = patient.of_type("Medication");
    for request in patient.of_type("MedicationRequest") {
        let intent = request["intent"].as_str().unwrap_or_default();
        if request["status"] != "active" || !ORDERING_INTENTS.contains(&intent) {
            continue;
        }
        if let Some(concept) = medication_concept(request, included) {
            reading.anticoagulated |=
                lists.coded_in(&concept, "anticoagulants") || lists.named_in(&concept, "anticoagulants");
        }
    }
    reading
}

/// The time windows of cds-hooks/rules.toml the record items use.
struct Windows {
    major_surgery_days: i64,
    pregnancy_months: i32,
}

fn load_windows() -> Windows {
    let path = repository().join("cds-hooks/rules.toml");
    let text = std::fs::read_to_string(&path).expect("cds-hooks/rules.toml is readable");
    let rules: toml::Table = toml::from_str(&text).expect("cds-hooks/rules.toml is TOML");
    let integer = |key: &str| {
        rules.get(key).and_then(|rule| rule.get("value")).and_then(toml::Value::as_integer).unwrap_or_else(|| {
            panic!("cds-hooks/rules.toml must have an integer {key}.value");
        })
    };
    Windows {
        major_surgery_days: integer("major_surgery_window_days"),
        pregnancy_months: i32::try_from(integer("pregnancy_window_months")).expect("a month count"),
    }
}

/// The UTC day of the last Encounter (its latest `period.end`, else `period.start`).
fn last_encounter_day<'a>(resources: impl Iterator<Item = &'a Value>) -> Option<Date> {
    resources
        .filter(|r| r["resourceType"] == "Encounter")
        .filter_map(|r| r["period"]["end"].as_str().or(r["period"]["start"].as_str()).and_then(bounds))
        .map(|(_, last)| last)
        .max()
        .map(|last| last.to_offset(UtcOffset::UTC).date())
}

/// One Synthea transaction Bundle as a record whose last Encounter was yesterday.
fn load_patient(path: &Path, now: OffsetDateTime) -> Patient {
    let file = path.file_name().expect("a file name").to_string_lossy().into_owned();
    let bundle = read_json(path);
    let entries = bundle["entry"].as_array().unwrap_or_else(|| panic!("{file}: a Bundle with entries"));
    let patient_entry = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap_or_else(|| panic!("{file}: no Patient"));
    let id = patient_entry["resource"]["id"].as_str().expect("the Patient has an id").to_owned();
    let full_url = patient_entry["fullUrl"].as_str().unwrap_or_default().to_owned();

    let last_encounter = last_encounter_day(entries.iter().map(|e| &e["resource"]))
        .unwrap_or_else(|| panic!("{file}: no dated Encounter"));
    let yesterday = (now - Duration::days(1)).date();
    let days = (yesterday - last_encounter).whole_days();

    let mut resources: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut resource_ids = Vec::new();
    for entry in entries {
        let mut resource = entry["resource"].clone();
        shift_dates(&mut resource, "", days);
        if !full_url.is_empty() {
            point_at_patient(&mut resource, &full_url, &format!("Patient/{id}"));
        }
        if let Some(resource_id) = resource["id"].as_str() {
            resource_ids.push(resource_id.to_owned());
        }
        let resource_type = resource["resourceType"].as_str().expect("a resourceType").to_owned();
        resources.entry(resource_type).or_default().push(resource);
    }
    let moved = last_encounter_day(resources.get("Encounter").into_iter().flatten());
    assert_eq!(moved, Some(yesterday), "{file}: after the date shift the last Encounter must be yesterday");
    let patient = resources["Patient"][0].clone();
    Patient { file, id, patient, resources, resource_ids, reading: Reading::default() }
}

// ---------------------------------------------------------------------------------------------
// Requests.

fn searchset(matches: &[Value], included: &[Value]) -> Value {
    let entry = |resource: &Value, mode: &str| {
        let full_url = format!("urn:uuid:{}", resource["id"].as_str().unwrap_or_default());
        json!({ "fullUrl": full_url, "resource": resource, "search": { "mode": mode } })
    };
    let entries: Vec<Value> =
        matches.iter().map(|r| entry(r, "match")).chain(included.iter().map(|r| entry(r, "include"))).collect();
    json!({ "resourceType": "Bundle", "type": "searchset", "total": matches.len(), "entry": entries })
}

fn boolean_item(link_id: &str, value: bool) -> Value {
    json!({ "linkId": link_id, "answer": [{ "valueBoolean": value }] })
}

/// DVT signs on the left; red flags and form-only Wells items answered "no"; the record-fed Wells
/// items, `rf-fever` and `pregnant-or-postpartum` left unanswered.
fn dvt_signs_intake(patient_id: &str, now: OffsetDateTime) -> Value {
    let side = json!({ "system": "https://popliteal.dev/CodeSystem/side", "code": "left", "display": "Left" });
    let mut items = vec![
        json!({ "linkId": "side", "answer": [{ "valueCoding": side }] }),
        boolean_item("rf-unilateral-swelling", true),
        boolean_item("rf-calf-pain", true),
    ];
    items.extend(RED_FLAGS_ANSWERED_NO.iter().map(|link| boolean_item(link, false)));
    items.extend(FORM_ONLY_WELLS_ITEMS.iter().map(|link| boolean_item(link, false)));
    let authored = (now - Duration::hours(2)).replace_nanosecond(0).expect("valid").format(&Rfc3339).expect("formats");
    json!({
        "resourceType": "QuestionnaireResponse",
        "id": uuid::Uuid::new_v4().to_string(),
        "status": "completed",
        "questionnaire": QUESTIONNAIRE,
        "subject": { "reference": format!("Patient/{patient_id}") },
        "authored": authored,
        "item": items,
    })
}

fn patient_view(patient: &Patient, intake: Option<Value>) -> Value {
    let medications = searchset(patient.of_type("MedicationRequest"), patient.of_type("Medication"));
    let responses: Vec<Value> = intake.into_iter().collect();
    json!({
        "hook": "patient-view",
        "hookInstance": uuid::Uuid::new_v4().to_string(),
        "context": { "userId": "Practitioner/dr-1", "patientId": patient.id },
        "prefetch": {
            "patient": patient.patient,
            "conditions": searchset(patient.of_type("Condition"), &[]),
            "observations": searchset(patient.of_type("Observation"), &[]),
            "medications": medications,
            "serviceRequests": searchset(patient.of_type("ServiceRequest"), &[]),
            "procedures": searchset(patient.of_type("Procedure"), &[]),
            "questionnaireResponses": searchset(&responses, &[]),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Shared: one service and one population for the tests of this binary.

struct Shared {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
    patients: Vec<Patient>,
    now: OffsetDateTime,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let app = runtime.block_on(spawn_app());
    let now = OffsetDateTime::now_utc();
    let lists = Lists(load_code_lists());
    let windows = load_windows();
    let directory = population_directory();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|e| panic!("the population must be at {}: {e}", directory.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut patients: Vec<Patient> = paths.iter().map(|path| load_patient(path, now)).collect();
    for patient in &mut patients {
        patient.reading = read_record(patient, &lists, &windows, now);
    }
    assert_eq!(patients.len(), PATIENT_COUNT, "the population has {PATIENT_COUNT} patients");
    Shared { runtime, app, patients, now }
});

async fn post(app: &TestApp, request: &Value) -> Result<Value, String> {
    let response = app.post_json(SERVICE, request).await;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("the body cannot be read: {e}"))?;
    if status != 200 {
        return Err(format!("status {status}, expected 200: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("the body is not JSON ({e}): {text}"))
}

/// A card's summary and detail that name a resource id of the record.
fn ids_in_text(body: &Value, patient: &Patient) -> Vec<String> {
    let mut found = Vec::new();
    for card in body["cards"].as_array().into_iter().flatten() {
        let topic = card["source"]["topic"]["code"].as_str().unwrap_or("?");
        let text = format!(
            "{}\n{}",
            card["summary"].as_str().unwrap_or_default(),
            card["detail"].as_str().unwrap_or_default()
        );
        for id in patient.resource_ids.iter().filter(|id| text.contains(id.as_str())) {
            found.push(format!("the {topic} card names the resource id {id}"));
        }
    }
    found
}

fn fail_with(mismatches: &[String], what: &str) {
    if mismatches.is_empty() {
        return;
    }
    let mut message = format!("{} mismatch(es) {what}:\n", mismatches.len());
    for mismatch in mismatches {
        let _ = writeln!(message, "- {mismatch}");
    }
    panic!("{message}");
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn every_synthea_patient_is_answered_and_silent_without_an_intake() {
    let shared = &*SHARED;
    let mut mismatches = Vec::new();
    shared.runtime.block_on(async {
        for patient in &shared.patients {
            let who = format!("{} (Patient/{})", patient.file, patient.id);
            let body = match post(&shared.app, &patient_view(patient, None)).await {
                Ok(body) => body,
                Err(problem) => {
                    mismatches.push(format!("{who}, no intake: {problem}"));
                    continue;
                }
            };
            if patient.reading.knee_pain {
                if topics(&body) != ["intake-missing"] {
                    mismatches.push(format!(
                        "{who}, no intake, knee pain on the record: expected exactly one intake-missing card, got {:?}",
                        topics(&body)
                    ));
                }
                mismatches.extend(protocol_problems(&body, &patient.id).into_iter().map(|p| format!("{who}: {p}")));
            } else if body != json!({ "cards": [] }) {
                mismatches.push(format!(
                    "{who}, no intake, no knee pain on the record: expected exactly {{\"cards\": []}}, got {body}"
                ));
            }
            mismatches.extend(ids_in_text(&body, patient).into_iter().map(|p| format!("{who}, no intake: {p}")));
        }
    });
    fail_with(&mismatches, "without an intake");
}

#[test]
fn each_wells_item_is_credited_to_the_record_exactly_when_the_value_sets_say_so() {
    let shared = &*SHARED;
    let mut mismatches = Vec::new();
    let mut service_credits: BTreeMap<&str, usize> = BTreeMap::new();
    shared.runtime.block_on(async {
        for patient in &shared.patients {
            let who = format!("{} (Patient/{})", patient.file, patient.id);
            let request = patient_view(patient, Some(dvt_signs_intake(&patient.id, shared.now)));
            let body = match post(&shared.app, &request).await {
                Ok(body) => body,
                Err(problem) => {
                    mismatches.push(format!("{who}, DVT intake: {problem}"));
                    continue;
                }
            };
            mismatches.extend(protocol_problems(&body, &patient.id).into_iter().map(|p| format!("{who}: {p}")));
            mismatches.extend(ids_in_text(&body, patient).into_iter().map(|p| format!("{who}: {p}")));
            if !topics(&body).iter().any(|t| t == "dvt-suspected") {
                mismatches.push(format!("{who}: no dvt-suspected card; topics {:?}", topics(&body)));
                continue;
            }
            let dvt = card(&body, "dvt-suspected");
            let wells = &dvt["extension"]["dev.popliteal.wells"];
            let mut credited = 0;
            for (item, _) in RECORD_ITEMS {
                let expected = patient.reading.credits(item);
                credited += i64::from(expected);
                let Some(found) = wells["items"].as_array().into_iter().flatten().find(|i| i["item"] == item) else {
                    mismatches.push(format!("{who}: {item} is missing from the Wells extension"));
                    continue;
                };
                let (source, points) = (found["source"].as_str().unwrap_or("?"), found["points"].as_i64());
                if source == "record" {
                    *service_credits.entry(item).or_default() += 1;
                }
                let (wanted_source, wanted_points) = if expected { ("record", 1) } else { ("not-assessed", 0) };
                if source != wanted_source || points != Some(wanted_points) {
                    mismatches.push(format!(
                        "{who}: {item}: the value sets say {}, so source {wanted_source} with {wanted_points} point(s); \
                         the service says source {source} with {points:?} point(s)",
                        if expected { "credited" } else { "not credited" },
                    ));
                }
            }
            if wells["score"].as_i64() != Some(credited) {
                mismatches.push(format!(
                    "{who}: Wells score {} but the record credits {credited} item(s) and the form answers every other item no",
                    wells["score"]
                ));
            }
            let detail = dvt["detail"].as_str().unwrap_or_default().to_lowercase();
            if patient.reading.pregnancy && !detail.contains("not validated") {
                mismatches.push(format!("{who}: pregnancy on the record, but the DVT card does not say Wells is not validated"));
            }
            if patient.reading.anticoagulated {
                let d_dimers: Vec<String> = suggested_resources(&body)
                    .into_iter()
                    .filter(|(_, resource)| {
                        support::codes_of(resource).iter().any(|code| D_DIMER_CODES.contains(&code.as_str()))
                    })
                    .map(|(topic, _)| topic)
                    .collect();
                if !d_dimers.is_empty() {
                    mismatches.push(format!("{who}: anticoagulated, yet a D-dimer is suggested on {d_dimers:?}"));
                }
                if !detail.contains("anticoagulated") {
                    mismatches.push(format!("{who}: anticoagulated, but the DVT card's detail does not say so"));
                }
            }
        }
    });

    let patients = &shared.patients;
    let count = |has: fn(&Reading) -> bool| patients.iter().filter(|p| has(&p.reading)).count();
    let by_reading: [(&str, usize); 4] = [
        ("wells-active-cancer", count(|r| r.active_cancer)),
        ("wells-previous-dvt", count(|r| r.previous_dvt)),
        ("wells-paralysis-cast", count(|r| r.leg_paresis)),
        ("wells-bedridden-surgery", count(|r| r.recent_major_surgery)),
    ];
    let total = patients.len();
    for (item, reading) in by_reading {
        let service = service_credits.get(item).copied().unwrap_or_default();
        println!("population: {item}: the record credits {reading} of {total} patients (the service: {service})");
    }
    let others: [(&str, usize); 3] = [
        ("pregnancy on the record", count(|r| r.pregnancy)),
        ("already anticoagulated", count(|r| r.anticoagulated)),
        ("knee pain on the record", count(|r| r.knee_pain)),
    ];
    for (what, reading) in others {
        println!("population: {what}: {reading} of {total} patients");
    }

    let all: usize = by_reading.iter().chain(others.iter()).map(|(_, n)| n).sum();
    assert!(all > 0, "the reading finds nothing in any record: the code lists or the date shift are broken");
    assert_eq!(
        by_reading[0].1, PATIENTS_WITH_ACTIVE_CANCER,
        "the population's README says {PATIENTS_WITH_ACTIVE_CANCER} patients carry an active malignant neoplasm"
    );
    fail_with(&mismatches, "between the record and the Wells items");
    assert_eq!(
        service_credits.get("wells-active-cancer").copied().unwrap_or_default(),
        PATIENTS_WITH_ACTIVE_CANCER,
        "the service must credit active cancer to the record for the {PATIENTS_WITH_ACTIVE_CANCER} patients that carry one"
    );
}

#[test]
fn dates_move_by_whole_days_in_their_own_precision_and_other_strings_stay() {
    assert_eq!(shifted("2005-05-25T15:23:38-04:00", 10, false).as_deref(), Some("2005-06-04T15:23:38-04:00"));
    assert_eq!(shifted("2007-03-27T19:08:38.458+00:00", -27, false).as_deref(), Some("2007-02-28T19:08:38.458+00:00"));
    assert_eq!(shifted("1936-08-18", 365, false).as_deref(), Some("1937-08-18"));
    assert_eq!(shifted("2005-05", 40, true).as_deref(), Some("2005-06"));
    assert_eq!(shifted("2005", 400, true).as_deref(), Some("2006"));
    assert_eq!(shifted("1907", 400, false), None, "a postal code is not a date");
    assert_eq!(shifted("8310-5", 1, true), None);
    let mut resource = json!({ "resourceType": "Patient", "birthDate": "1936-08-18",
        "address": [{ "postalCode": "1907", "period": { "start": "2000" } }] });
    shift_dates(&mut resource, "", 1);
    assert_eq!(resource["birthDate"], "1936-08-19");
    assert_eq!(resource["address"][0]["postalCode"], "1907");
    assert_eq!(resource["address"][0]["period"]["start"], "2000");
}
