//! The patient record: assembled from the prefetch and the FHIR server (`assembly`, `fetch`),
//! read leniently into views of the elements the rules use (`page`, `views`), one provenance per
//! key (`record`), then interpreted through the value sets into the facts the rules read
//! (`interpret`, `intake`, `drafts`).

pub mod address;
pub mod assembly;
pub mod budget;
pub mod drafts;
pub mod fetch;
pub mod intake;
pub mod interpret;
pub mod page;
pub mod record;
#[cfg(test)]
mod record_scenarios;
pub mod reference;
pub mod time;
pub mod views;
