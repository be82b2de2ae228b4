//! The code lists of `cds-hooks/codes/*.json`, embedded at build time and parsed once at start.
//! The files are the reviewable source of truth; this module only gives them types.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

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
    #[error("code list file {file} is not valid: {source}")]
    Invalid { file: &'static str, source: serde_json::Error },
    #[error("code list {0} is missing")]
    MissingList(&'static str),
    #[error("order {0} is missing from orders.json")]
    MissingOrder(&'static str),
}

#[derive(Deserialize)]
struct ListFile {
    lists: HashMap<String, ListEntry>,
}

#[derive(Deserialize)]
struct ListEntry {
    codes: Vec<Coding>,
    #[serde(default)]
    names: Vec<String>,
}

/// A set of codes (system + code), and optionally ingredient names matched as whole words in
/// displays and texts.
#[derive(Debug, Clone, Default)]
pub struct CodeList {
    codes: HashSet<(String, String)>,
    names: Vec<String>,
}

impl CodeList {
    pub fn from_codings(codings: &[Coding], names: &[String]) -> CodeList {
        CodeList {
            codes: codings.iter().map(|c| (c.system.clone(), c.code.clone())).collect(),
            names: names.iter().map(|n| n.to_lowercase()).collect(),
        }
    }

    pub fn contains(&self, system: &str, code: &str) -> bool {
        // Avoids allocating: the set is small, and this runs for every coding of the record.
        self.codes.iter().any(|(s, c)| s == system && c == code)
    }

    /// Whether a free text (a display or a CodeableConcept.text) names one of the list's names.
    pub fn names_in(&self, text: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let lower = text.to_lowercase();
        lower.split(|c: char| !c.is_alphanumeric()).any(|word| self.names.iter().any(|name| name == word))
    }
}

/// One order of the catalogue: its label and codes.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderDefinition {
    pub label: String,
    #[serde(default)]
    code: Option<Coding>,
    #[serde(default)]
    by_side: HashMap<String, Coding>,
    #[serde(default)]
    also_recognised: Vec<RecognisedCoding>,
}

#[derive(Debug, Clone, Deserialize)]
struct RecognisedCoding {
    #[serde(flatten)]
    coding: Coding,
    #[serde(default)]
    side: Option<String>,
}

impl OrderDefinition {
    /// The code to order with: the side-specific code when the catalogue has one (bilateral
    /// when the side is unknown), else the single code.
    pub fn code_for(&self, side: Option<Side>) -> &Coding {
        let by_side = self.by_side.get(side.unwrap_or(Side::Both).code());
        by_side.or(self.code.as_ref()).unwrap_or_else(|| {
            // Checked when the catalogue is loaded: every order has a code or all three sides.
            unreachable!("order without code")
        })
    }

    /// Whether a coding names this order, and which side it examines when the code says so.
    pub fn recognise(&self, system: &str, code: &str) -> Option<Option<Side>> {
        for (side, coding) in &self.by_side {
            if coding.system == system && coding.code == code {
                return Some(Side::from_code(side));
            }
        }
        if self.code.as_ref().is_some_and(|c| c.system == system && c.code == code) {
            return Some(None);
        }
        self.also_recognised
            .iter()
            .find(|r| r.coding.system == system && r.coding.code == code)
            .map(|r| r.side.as_deref().and_then(Side::from_code))
    }

    /// Every code this order is known by (for recognising it in draft orders and records).
    pub fn codings(&self) -> impl Iterator<Item = &Coding> {
        self.code.iter().chain(self.by_side.values()).chain(self.also_recognised.iter().map(|r| &r.coding))
    }
}

#[derive(Deserialize)]
struct OrdersFile {
    orders: HashMap<String, OrderDefinition>,
    laterality: HashMap<String, Coding>,
    reason_codes: ReasonCodes,
}

#[derive(Deserialize)]
struct ReasonCodes {
    codes: HashMap<String, Coding>,
}

/// Every code list the service uses.
#[derive(Debug, Clone)]
pub struct Terminology {
    pub dvt: CodeList,
    pub malignancy: CodeList,
    pub leg_paresis: CodeList,
    pub knee_pain: CodeList,
    pub radiculopathy: CodeList,
    pub major_surgery: CodeList,
    pub anticoagulants: CodeList,
    pub nsaids: CodeList,
    pub body_temperature: CodeList,
    pub d_dimer_feu: CodeList,
    pub d_dimer_ddu: CodeList,
    orders: HashMap<&'static str, OrderDefinition>,
    laterality: HashMap<&'static str, Coding>,
    reason_codes: HashMap<Question, Coding>,
}

const FILES: &[(&str, &str)] = &[
    ("conditions.json", include_str!("../cds-hooks/codes/conditions.json")),
    ("procedures.json", include_str!("../cds-hooks/codes/procedures.json")),
    ("medications.json", include_str!("../cds-hooks/codes/medications.json")),
    ("observations.json", include_str!("../cds-hooks/codes/observations.json")),
];
const ORDERS_FILE: &str = include_str!("../cds-hooks/codes/orders.json");

const ORDER_KINDS: &[OrderKind] = &[
    OrderKind::VenousDuplex,
    OrderKind::DDimer,
    OrderKind::KneeUltrasound,
    OrderKind::KneeMri,
    OrderKind::LumbarSpineMri,
    OrderKind::PhysiotherapyReferral,
];

impl Terminology {
    /// Parses the code lists shipped with the service.
    pub fn embedded() -> Result<Terminology, TerminologyError> {
        let mut lists: HashMap<String, CodeList> = HashMap::new();
        for (file, text) in FILES {
            let parsed: ListFile =
                serde_json::from_str(text).map_err(|source| TerminologyError::Invalid { file, source })?;
            for (name, entry) in parsed.lists {
                lists.insert(name, CodeList::from_codings(&entry.codes, &entry.names));
            }
        }
        let mut take = |name: &'static str| lists.remove(name).ok_or(TerminologyError::MissingList(name));
        let orders_file: OrdersFile = serde_json::from_str(ORDERS_FILE)
            .map_err(|source| TerminologyError::Invalid { file: "orders.json", source })?;
        let mut orders = HashMap::new();
        for kind in ORDER_KINDS {
            let definition =
                orders_file.orders.get(kind.key()).cloned().ok_or(TerminologyError::MissingOrder(kind.key()))?;
            let has_all_sides = ["left", "right", "both"].iter().all(|s| definition.by_side.contains_key(*s));
            if definition.code.is_none() && !has_all_sides {
                return Err(TerminologyError::MissingOrder(kind.key()));
            }
            orders.insert(kind.key(), definition);
        }
        let mut laterality = HashMap::new();
        for side in [Side::Left, Side::Right, Side::Both] {
            let coding =
                orders_file.laterality.get(side.code()).cloned().ok_or(TerminologyError::MissingList("laterality"))?;
            laterality.insert(side.code(), coding);
        }
        let reason_codes = orders_file
            .reason_codes
            .codes
            .into_iter()
            .filter_map(|(link_id, coding)| Question::from_link_id(&link_id).map(|q| (q, coding)))
            .collect();
        Ok(Terminology {
            dvt: take("dvt")?,
            malignancy: take("malignancy")?,
            leg_paresis: take("leg-paresis")?,
            knee_pain: take("knee-pain")?,
            radiculopathy: take("radiculopathy")?,
            major_surgery: take("major-surgery")?,
            anticoagulants: take("anticoagulants")?,
            nsaids: take("nsaids")?,
            body_temperature: take("body-temperature")?,
            d_dimer_feu: take("d-dimer-feu")?,
            d_dimer_ddu: take("d-dimer-ddu")?,
            orders,
            laterality,
            reason_codes,
        })
    }

    pub fn order(&self, kind: OrderKind) -> &OrderDefinition {
        // Every kind is checked present in `embedded`.
        &self.orders[kind.key()]
    }

    pub fn laterality(&self, side: Side) -> &Coding {
        &self.laterality[side.code()]
    }

    /// The verified code of a finding, for an order's reasonCode.
    pub fn reason_code(&self, question: Question) -> Option<&Coding> {
        self.reason_codes.get(&question)
    }

    /// Which order a coding names, with the side the code implies.
    pub fn recognise_order(&self, system: &str, code: &str) -> Option<(OrderKind, Option<Side>)> {
        ORDER_KINDS.iter().find_map(|kind| self.order(*kind).recognise(system, code).map(|side| (*kind, side)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminology() -> Terminology {
        Terminology::embedded().expect("the shipped code lists load")
    }

    #[test]
    fn the_shipped_code_lists_load_and_hold_the_verified_codes() {
        let t = terminology();
        assert!(t.dvt.contains("http://snomed.info/sct", "404223003"));
        assert!(t.malignancy.contains("http://snomed.info/sct", "363346000"));
        assert!(t.anticoagulants.contains("http://www.nlm.nih.gov/research/umls/rxnorm", "1364430"));
        assert!(!t.malignancy.contains("http://snomed.info/sct", "41333006"));
    }

    #[test]
    fn a_venous_duplex_code_follows_the_side_and_is_bilateral_when_the_side_is_unknown() {
        let t = terminology();
        let duplex = t.order(OrderKind::VenousDuplex);
        assert_eq!(duplex.code_for(Some(Side::Left)).code, "39432-0");
        assert_eq!(duplex.code_for(Some(Side::Right)).code, "39443-7");
        assert_eq!(duplex.code_for(None).code, "39420-5");
        assert_eq!(
            t.recognise_order("http://loinc.org", "39443-7"),
            Some((OrderKind::VenousDuplex, Some(Side::Right)))
        );
        assert_eq!(t.recognise_order("http://www.ama-assn.org/go/cpt", "93971"), Some((OrderKind::VenousDuplex, None)));
    }

    #[test]
    fn anticoagulant_names_match_whole_words_in_product_descriptions() {
        let t = terminology();
        assert!(t.anticoagulants.names_in("apixaban 5 MG Oral Tablet [Eliquis]"));
        assert!(t.anticoagulants.names_in("Heparin sodium 5000 UNT/ML"));
        assert!(!t.anticoagulants.names_in("heparinoid cream"));
        assert!(!t.anticoagulants.names_in("paracetamol"));
    }
}
