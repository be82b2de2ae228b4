//! The service catalogue (`cds-hooks/services.json`, served as discovery) and the typed registry
//! of the handlers behind it, checked against each other at start so they cannot drift.

use std::collections::HashMap;

use serde::Deserialize;

use crate::fhir::record::DataKey;

/// The services this build can evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// `posterior-knee-pain` on `patient-view`.
    PatientView,
    /// `posterior-knee-pain-order-select` on `order-select`.
    OrderSelect,
    /// `posterior-knee-pain-order-sign` on `order-sign`.
    OrderSign,
}

impl ServiceKind {
    pub const ALL: &'static [ServiceKind] =
        &[ServiceKind::PatientView, ServiceKind::OrderSelect, ServiceKind::OrderSign];

    pub fn id(self) -> &'static str {
        match self {
            ServiceKind::PatientView => "posterior-knee-pain",
            ServiceKind::OrderSelect => "posterior-knee-pain-order-select",
            ServiceKind::OrderSign => "posterior-knee-pain-order-sign",
        }
    }

    pub fn hook(self) -> &'static str {
        match self {
            ServiceKind::PatientView => "patient-view",
            ServiceKind::OrderSelect => "order-select",
            ServiceKind::OrderSign => "order-sign",
        }
    }

    /// Whether the hook carries `context.draftOrders`.
    pub fn reviews_orders(self) -> bool {
        matches!(self, ServiceKind::OrderSelect | ServiceKind::OrderSign)
    }
}

#[derive(Debug, Deserialize)]
struct Discovery {
    services: Vec<ServiceDefinition>,
}

#[derive(Debug, Deserialize)]
struct ServiceDefinition {
    id: String,
    hook: String,
    #[serde(default)]
    prefetch: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("services.json is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("services.json and the handlers disagree: {0}")]
    Drift(String),
}

const SERVICES_FILE: &str = include_str!("../cds-hooks/services.json");

/// The discovery document and the registry.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The discovery document, served as is.
    pub discovery: bytes::Bytes,
    /// Each service's prefetch query templates, by key (also used to fetch what is missing).
    templates: HashMap<&'static str, HashMap<String, String>>,
}

impl Catalogue {
    pub fn embedded() -> Result<Catalogue, CatalogueError> {
        let discovery: Discovery = serde_json::from_str(SERVICES_FILE)?;
        let mut templates = HashMap::new();
        for kind in ServiceKind::ALL {
            let definition = discovery
                .services
                .iter()
                .find(|s| s.id == kind.id())
                .ok_or_else(|| CatalogueError::Drift(format!("{} is not listed", kind.id())))?;
            if definition.hook != kind.hook() {
                return Err(CatalogueError::Drift(format!("{} is not on hook {}", kind.id(), kind.hook())));
            }
            for key in DataKey::ALL {
                if !definition.prefetch.contains_key(key.prefetch_key()) {
                    return Err(CatalogueError::Drift(format!(
                        "{} lacks prefetch key {}",
                        kind.id(),
                        key.prefetch_key()
                    )));
                }
            }
            if definition.prefetch.len() != DataKey::ALL.len() {
                return Err(CatalogueError::Drift(format!(
                    "{} has prefetch keys the handler does not read",
                    kind.id()
                )));
            }
            templates.insert(kind.id(), definition.prefetch.clone());
        }
        for service in &discovery.services {
            if !ServiceKind::ALL.iter().any(|k| k.id() == service.id) {
                return Err(CatalogueError::Drift(format!("{} has no handler", service.id)));
            }
        }
        // Re-serialise compactly: the file is for people, the wire for machines.
        let value: serde_json::Value = serde_json::from_str(SERVICES_FILE)?;
        Ok(Catalogue { discovery: bytes::Bytes::from(serde_json::to_vec(&value)?), templates })
    }

    /// The prefetch query templates of a service, by key.
    pub fn templates(&self, kind: ServiceKind) -> &HashMap<String, String> {
        &self.templates[kind.id()]
    }

    pub fn find(&self, id: &str) -> Option<ServiceKind> {
        ServiceKind::ALL.iter().copied().find(|k| k.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_observation_query_asks_for_every_code_of_the_observation_value_sets() {
        use crate::terminology::{CodeList, Terminology};
        let catalogue = Catalogue::embedded().expect("services.json matches the registry");
        let terminology = Terminology::embedded().expect("the code lists load");
        for kind in ServiceKind::ALL {
            let query = &catalogue.templates(*kind)["observations"];
            for list in [CodeList::BodyTemperature, CodeList::DDimerFeu, CodeList::DDimerDdu] {
                let codes = terminology.value_sets.codes_of(list, "http://loinc.org");
                assert!(!codes.is_empty(), "{}", list.key());
                for code in codes {
                    assert!(query.contains(&format!("http://loinc.org|{code}")), "{} lacks {code}", kind.id());
                }
            }
        }
    }

    #[test]
    fn the_shipped_catalogue_matches_the_handlers() {
        let catalogue = Catalogue::embedded().expect("services.json matches the registry");
        assert_eq!(catalogue.find("posterior-knee-pain"), Some(ServiceKind::PatientView));
        assert_eq!(catalogue.find("posterior-knee-pain-order-sign"), Some(ServiceKind::OrderSign));
        assert_eq!(catalogue.find("nope"), None);
    }
}
