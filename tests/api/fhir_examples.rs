//! The official HL7 FHIR R4 examples of every resource type the service reads are read without
//! being skipped (R4 data through fhir-sdk's R4B types).

use fhir_sdk::r4b::resources::{
    Condition, MedicationRequest, Patient, Procedure, QuestionnaireResponse, ServiceRequest,
};
use popliteal::fhir::prefetch::{PrefetchValue, read};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

fn examples(prefix: &str) -> Vec<(String, Box<RawValue>)> {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir-data/r4-examples");
    let mut found: Vec<(String, Box<RawValue>)> = std::fs::read_dir(directory)
        .expect("the R4 examples beside the repository")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            (p.display().to_string(), RawValue::from_string(text).expect("JSON"))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn all_read<T: DeserializeOwned>(resource_type: &str) -> usize {
    let files = examples(&format!("{resource_type}-"));
    assert!(!files.is_empty(), "no {resource_type} examples");
    for (name, raw) in &files {
        match read::<T>(Some(raw), resource_type) {
            PrefetchValue::Read(read) => {
                assert_eq!(read.resources.len(), 1, "{name} was not read");
                assert!(read.skipped.is_empty(), "{name} was skipped");
            }
            PrefetchValue::Absent => panic!("{name}: absent"),
            PrefetchValue::Failed(kind) => panic!("{name}: {kind:?}"),
        }
    }
    files.len()
}

#[test]
fn every_official_r4_example_of_the_types_we_read_is_read() {
    let read = all_read::<Condition>("Condition")
        + all_read::<ServiceRequest>("ServiceRequest")
        + all_read::<QuestionnaireResponse>("QuestionnaireResponse")
        + all_read::<MedicationRequest>("MedicationRequest")
        + all_read::<Procedure>("Procedure")
        + all_read::<Patient>("Patient");
    assert!(read >= 40, "{read}");
}
