//! Terminology: the code lists the record is read through (`value_sets`), a deployment's own
//! additions (`site`), and the order catalogue (`orders`). The files in `cds-hooks/codes/` are
//! the reviewable source of truth; they are embedded at build time and loaded once at start.

pub mod orders;
pub mod site;
pub mod value_sets;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use orders::{OrderCatalogue, OrderDefinition};
pub use value_sets::{CodeFacts, CodeList, ICD_10_CM, ValueSets};

use crate::knee::orders::OrderKind;
use crate::knee::question::{Question, Side};

/// A FHIR Coding as the code lists and the cards carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TerminologyError {
    #[error("code list file {file} is not valid: {detail}")]
    Invalid { file: String, detail: String },
    #[error("terminology.site_codes_file {file} cannot be read: {detail}")]
    SiteCodesUnreadable { file: String, detail: String },
    #[error("terminology.site_codes_file {file}, line {line}: {detail}")]
    SiteCodes { file: String, line: usize, detail: String },
}

macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../cds-hooks/codes/", $path))),)*]
    };
}

/// The shipped code list files (paths under `cds-hooks/codes/`). `ValueSets::load` refuses a
/// file embedded here that no list names, and a list naming a file not embedded here.
const FILES: value_sets::EmbeddedFiles = value_sets::EmbeddedFiles {
    lists: include_str!("../../cds-hooks/codes/lists.json"),
    families: include_str!("../../cds-hooks/codes/icd10cm-families.json"),
    value_sets: embedded![
        "vsac/valueset-2.16.840.1.113762.1.4.1045.152.json",
        "vsac/valueset-2.16.840.1.113762.1.4.1111.161.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.134.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.200.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.201.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.205.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.211.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.218.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.219.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.232.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.255.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.257.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.258.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.259.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.260.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.261.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.272.json",
        "vsac/valueset-2.16.840.1.113883.3.117.1.7.1.279.json",
        "vsac/valueset-2.16.840.1.113883.3.526.3.1010.json",
        "vsac/valueset-2.16.840.1.113883.3.526.3.371.json",
        "vsac/valueset-2.16.840.1.113883.3.526.3.378.json",
    ],
    reviews: embedded!["reviews/previous-dvt.json", "reviews/antithrombotic-anticoagulant.json"],
};

/// Every code list and the order catalogue.
#[derive(Debug, Clone)]
pub struct Terminology {
    pub value_sets: ValueSets,
    pub orders: OrderCatalogue,
}

impl Terminology {
    /// The shipped lists, plus a site's codes file when one is named.
    pub fn load(site_codes_file: Option<&Path>) -> Result<Terminology, TerminologyError> {
        let mut value_sets = ValueSets::load(&FILES)?;
        if let Some(path) = site_codes_file {
            for code in site::read(path)? {
                value_sets.add(code.list, &code.system, &code.code, code.side);
            }
        }
        Ok(Terminology { value_sets, orders: OrderCatalogue::embedded()? })
    }

    /// The shipped lists alone.
    pub fn embedded() -> Result<Terminology, TerminologyError> {
        Terminology::load(None)
    }

    pub fn order(&self, kind: OrderKind) -> &OrderDefinition {
        self.orders.order(kind)
    }

    pub fn laterality(&self, side: Side) -> &Coding {
        self.orders.laterality(side)
    }

    /// The verified code of a finding, for an order's reasonCode.
    pub fn reason_code(&self, question: Question) -> Option<&Coding> {
        self.orders.reason_code(question)
    }

    /// Which order a coding names, with the side the code implies.
    pub fn recognise_order(&self, system: &str, code: &str) -> Option<(OrderKind, Option<Side>)> {
        self.orders.recognise_order(system, code)
    }

    /// How the order catalogue knows a code (its display, whether it is broader than its order).
    pub fn known_order_coding(&self, system: &str, code: &str) -> Option<orders::KnownCoding<'_>> {
        self.orders.known_coding(system, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNOMED: &str = "http://snomed.info/sct";
    const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

    fn terminology() -> Terminology {
        Terminology::embedded().expect("the shipped code lists load")
    }

    #[test]
    fn specific_cancers_of_the_vsac_value_sets_are_active_cancer_and_a_malaria_code_is_not() {
        let t = terminology();
        for code in ["363346000", "363406005", "254637007"] {
            assert!(t.value_sets.contains(CodeList::ActiveCancer, SNOMED, code), "{code}");
        }
        assert!(t.value_sets.contains(CodeList::ActiveCancer, ICD_10_CM, "C18.9"));
        assert!(!t.value_sets.contains(CodeList::ActiveCancer, SNOMED, "41333006"));
    }

    #[test]
    fn the_previous_dvt_list_keeps_leg_veins_and_leaves_out_pulmonary_embolism() {
        let t = terminology();
        for (system, code) in
            [(SNOMED, "404223003"), (SNOMED, "128053003"), (ICD_10_CM, "I82.401"), (ICD_10_CM, "Z86.718")]
        {
            assert!(t.value_sets.contains(CodeList::PreviousDvt, system, code), "{code}");
        }
        for (system, code) in [(SNOMED, "59282003"), (ICD_10_CM, "I26.99"), (ICD_10_CM, "I82.220")] {
            assert!(!t.value_sets.contains(CodeList::PreviousDvt, system, code), "{code}");
        }
    }

    #[test]
    fn product_codes_are_anticoagulants_and_antiplatelets_are_not() {
        let t = terminology();
        assert!(t.value_sets.contains(CodeList::Anticoagulants, RXNORM, "855332"), "warfarin 5 mg tablet");
        assert!(t.value_sets.contains(CodeList::Anticoagulants, RXNORM, "1364430"), "apixaban ingredient");
        assert!(!t.value_sets.contains(CodeList::Anticoagulants, RXNORM, "309362"), "clopidogrel");
        assert!(t.value_sets.names_in(CodeList::Anticoagulants, "apixaban 5 MG Oral Tablet [Eliquis]"));
    }

    #[test]
    fn the_icd_10_cm_families_carry_the_side_their_codes_name() {
        let t = terminology();
        let right = t.value_sets.lookup(ICD_10_CM, "M17.11").expect("M17.11 listed");
        assert!(right.is_in(CodeList::BakerSupport) && right.is_in(CodeList::KneePain));
        assert_eq!(right.side, Some(Side::Right));
        assert_eq!(t.value_sets.lookup(ICD_10_CM, "M17.0").and_then(|f| f.side), Some(Side::Both));
        assert!(t.value_sets.contains(CodeList::BakerSupport, ICD_10_CM, "S83.211A"));
        assert!(t.value_sets.contains(CodeList::Pregnancy, ICD_10_CM, "Z33.1"));
    }

    #[test]
    fn every_list_the_rules_read_has_codes_or_names() {
        let t = terminology();
        for list in CodeList::ALL {
            if *list == CodeList::Nsaids {
                assert!(t.value_sets.names_in(*list, "ibuprofen 400 MG Oral Tablet"), "{} has no names", list.key());
            } else {
                assert!(t.value_sets.size(*list) > 0, "{} is empty", list.key());
            }
        }
        assert!(t.value_sets.size(CodeList::MajorSurgery) > 4000);
        assert!(t.value_sets.size(CodeList::BodyTemperature) >= 7);
    }

    #[test]
    fn site_codes_are_added_to_their_list_and_a_bad_file_is_refused_naming_the_key() {
        let directory = tempfile::tempdir().expect("a directory");
        let path = directory.path().join("site-codes.txt");
        std::fs::write(&path, "active-cancer https://ehr.example.org/pl ONC-42 Colon cancer (local)\n")
            .expect("written");
        let t = Terminology::load(Some(&path)).expect("loads");
        assert!(t.value_sets.contains(CodeList::ActiveCancer, "https://ehr.example.org/pl", "ONC-42"));
        let missing = Terminology::load(Some(&directory.path().join("none.txt"))).expect_err("refused");
        assert!(missing.to_string().starts_with("terminology.site_codes_file"), "{missing}");
    }
}
