//! The order catalogue of `cds-hooks/codes/orders.json`: the orders the service suggests (draft
//! ServiceRequests) and recognises on the record and among draft orders, the laterality
//! qualifiers, and the verified reason codes of findings.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Coding, TerminologyError};
use crate::knee::orders::OrderKind;
use crate::knee::question::{Question, Side};

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
    /// The code names a broader study that includes this order (CPT 73721: MRI of any joint of
    /// the lower extremity, the knee among them): recognised as the order, but not taken to
    /// concern the knee by itself.
    #[serde(default)]
    broader: bool,
}

/// How the catalogue knows a code: its display, and whether it names a broader study than its
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownCoding<'a> {
    pub display: Option<&'a str>,
    pub broader: bool,
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

    /// How this order's catalogue knows a code, when it does.
    fn known(&self, system: &str, code: &str) -> Option<KnownCoding<'_>> {
        let exact = self.code.iter().chain(self.by_side.values()).find(|c| c.system == system && c.code == code);
        if let Some(coding) = exact {
            return Some(KnownCoding { display: coding.display.as_deref(), broader: false });
        }
        self.also_recognised
            .iter()
            .find(|r| r.coding.system == system && r.coding.code == code)
            .map(|r| KnownCoding { display: r.coding.display.as_deref(), broader: r.broader })
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

/// The orders, laterality codes and reason codes.
#[derive(Debug, Clone)]
pub struct OrderCatalogue {
    orders: HashMap<&'static str, OrderDefinition>,
    laterality: HashMap<&'static str, Coding>,
    reason_codes: HashMap<Question, Coding>,
}

const ORDERS_FILE: &str = include_str!("../../cds-hooks/codes/orders.json");

const ORDER_KINDS: &[OrderKind] = &[
    OrderKind::VenousDuplex,
    OrderKind::DDimer,
    OrderKind::KneeUltrasound,
    OrderKind::KneeMri,
    OrderKind::LumbarSpineMri,
    OrderKind::PhysiotherapyReferral,
];

impl OrderCatalogue {
    /// Parses the catalogue shipped with the service: every order kind must be there, with a
    /// code or one per side.
    pub fn embedded() -> Result<OrderCatalogue, TerminologyError> {
        let invalid = |detail: String| TerminologyError::Invalid { file: "orders.json".into(), detail };
        let orders_file: OrdersFile = serde_json::from_str(ORDERS_FILE).map_err(|e| invalid(e.to_string()))?;
        let mut orders = HashMap::new();
        for kind in ORDER_KINDS {
            let definition = orders_file
                .orders
                .get(kind.key())
                .cloned()
                .ok_or_else(|| invalid(format!("order {} is missing", kind.key())))?;
            let has_all_sides = ["left", "right", "both"].iter().all(|s| definition.by_side.contains_key(*s));
            if definition.code.is_none() && !has_all_sides {
                return Err(invalid(format!("order {} needs a code or one per side", kind.key())));
            }
            orders.insert(kind.key(), definition);
        }
        let mut laterality = HashMap::new();
        for side in [Side::Left, Side::Right, Side::Both] {
            let coding = orders_file
                .laterality
                .get(side.code())
                .cloned()
                .ok_or_else(|| invalid(format!("laterality {} is missing", side.code())))?;
            laterality.insert(side.code(), coding);
        }
        let mut reason_codes = HashMap::new();
        for (link_id, coding) in orders_file.reason_codes.codes {
            let question = Question::from_link_id(&link_id)
                .ok_or_else(|| invalid(format!("reason code for unknown linkId {link_id}")))?;
            reason_codes.insert(question, coding);
        }
        Ok(OrderCatalogue { orders, laterality, reason_codes })
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

    /// How the catalogue names a code of one of its orders (for a draft that carries the code
    /// alone), and whether the code is broader than the order.
    pub fn known_coding(&self, system: &str, code: &str) -> Option<KnownCoding<'_>> {
        ORDER_KINDS.iter().find_map(|kind| self.order(*kind).known(system, code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_venous_duplex_code_follows_the_side_and_is_bilateral_when_the_side_is_unknown() {
        let catalogue = OrderCatalogue::embedded().expect("the shipped catalogue loads");
        let duplex = catalogue.order(OrderKind::VenousDuplex);
        assert_eq!(duplex.code_for(Some(Side::Left)).code, "39432-0");
        assert_eq!(duplex.code_for(Some(Side::Right)).code, "39443-7");
        assert_eq!(duplex.code_for(None).code, "39420-5");
        assert_eq!(
            catalogue.recognise_order("http://loinc.org", "39443-7"),
            Some((OrderKind::VenousDuplex, Some(Side::Right)))
        );
        assert_eq!(
            catalogue.recognise_order("http://www.ama-assn.org/go/cpt", "93971"),
            Some((OrderKind::VenousDuplex, None))
        );
    }

    #[test]
    fn lower_extremity_joint_mri_as_ehrs_draft_it_is_recognised_as_the_knee_mri_and_named() {
        let catalogue = OrderCatalogue::embedded().expect("the shipped catalogue loads");
        let cpt = "http://www.ama-assn.org/go/cpt";
        for code in ["73721", "73722", "73723"] {
            assert_eq!(catalogue.recognise_order(cpt, code), Some((OrderKind::KneeMri, None)), "{code}");
            let known = catalogue.known_coding(cpt, code).expect("known");
            assert!(known.broader, "{code} is any joint of the lower extremity");
            assert!(known.display.is_some_and(|d| d.starts_with("MRI of a lower-extremity joint")), "{code}");
        }
        let snomed = catalogue.known_coding("http://snomed.info/sct", "241641004").expect("known");
        assert!(!snomed.broader);
        assert_eq!(catalogue.recognise_order(cpt, "73718"), None, "MRI of the leg other than a joint");
    }
}
