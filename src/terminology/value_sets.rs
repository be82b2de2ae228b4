//! The code lists the record is read through (clinical-logic.md section 5), as value sets held
//! as data in `cds-hooks/codes/`: NLM VSAC expansions (whole, or a reviewed subset), ICD-10-CM
//! families expanded from the CMS tabular list, single codes verified in the spec, and ingredient
//! names. `lists.json` says which sources make each list. Everything is embedded at build time,
//! loaded once at start, and looked up by (system, code) in constant time: one hash lookup per
//! coding answers every list at once.

use std::collections::HashMap;

use serde::Deserialize;

use super::TerminologyError;
use crate::knee::question::Side;

/// ICD-10-CM, as FHIR names it.
pub const ICD_10_CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

crate::coded::coded_enum! {
    /// The code lists the rules read the record through. Each is a key of `lists.json` and of a
    /// site's codes file.
    pub enum CodeList (key, from_key) {
        /// Wells: active cancer (active Conditions).
        ActiveCancer => "active-cancer",
        /// Wells: previously documented DVT (any clinicalStatus).
        PreviousDvt => "previous-dvt",
        /// Wells: paralysis or paresis of the leg (active Conditions).
        LegParesis => "leg-paresis",
        /// Wells: major surgery within 12 weeks (completed Procedures).
        MajorSurgery => "major-surgery",
        /// Wells not validated: pregnancy (active Conditions, recent onset).
        Pregnancy => "pregnancy",
        /// Already anticoagulated (active MedicationRequests that order).
        Anticoagulants => "anticoagulants",
        /// Fever from the record (final Observations).
        BodyTemperature => "body-temperature",
        /// D-dimer in fibrinogen-equivalent units.
        DDimerFeu => "d-dimer-feu",
        /// D-dimer in D-dimer units (never compared with an FEU cut-off).
        DDimerDdu => "d-dimer-ddu",
        /// Baker pattern support: knee osteoarthritis, Baker cyst, meniscal tear.
        BakerSupport => "baker-support",
        /// Knee pain on the record (decides whether a missing intake is worth a card).
        KneePain => "knee-pain",
        /// Known lumbar radiculopathy or sciatica (nerve-pain pattern support).
        Radiculopathy => "radiculopathy",
        /// NSAIDs drafted beside a red flag (order hooks; names only).
        Nsaids => "nsaids",
    }
}

/// The lists a code belongs to, as one bit per [`CodeList`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ListSet(u32);

impl ListSet {
    fn with(self, list: CodeList) -> ListSet {
        ListSet(self.0 | 1 << list as u32)
    }

    fn contains(self, list: CodeList) -> bool {
        self.0 & (1 << list as u32) != 0
    }
}

/// What the lists know of one code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeFacts {
    lists: ListSet,
    /// The side the code itself names (`M17.11`: right knee), when it names one.
    pub side: Option<Side>,
}

impl CodeFacts {
    pub fn is_in(&self, list: CodeList) -> bool {
        self.lists.contains(list)
    }
}

/// Every code list, loaded once.
#[derive(Debug, Clone, Default)]
pub struct ValueSets {
    /// system -> code -> facts: a lookup borrows, never allocates.
    by_system: HashMap<String, HashMap<String, CodeFacts>>,
    /// Lower-case ingredient names, per list.
    names: HashMap<CodeList, Vec<String>>,
}

/// An ICD-10-CM code as FHIR writes it: upper case, a dot after the category (`C18.9`). EHRs
/// also send `C189`; both find the same entry.
fn normalise_icd_10_cm(code: &str) -> Option<String> {
    let code = code.trim();
    if code.contains('.') || code.len() <= 3 {
        return (code.bytes().any(|b| b.is_ascii_lowercase())).then(|| code.to_ascii_uppercase());
    }
    if !code.is_ascii() {
        return None;
    }
    let upper = code.to_ascii_uppercase();
    Some(format!("{}.{}", &upper[..3], &upper[3..]))
}

impl ValueSets {
    /// Adds a code to a list (with the side it names, when it names one).
    pub fn add(&mut self, list: CodeList, system: &str, code: &str, side: Option<Side>) {
        let code = if system == ICD_10_CM {
            normalise_icd_10_cm(code).unwrap_or_else(|| code.to_owned())
        } else {
            code.to_owned()
        };
        let facts = self.by_system.entry(system.to_owned()).or_default().entry(code).or_default();
        facts.lists = facts.lists.with(list);
        facts.side = facts.side.or(side);
    }

    pub fn add_names(&mut self, list: CodeList, names: &[String]) {
        self.names.entry(list).or_default().extend(names.iter().map(|n| n.to_lowercase()));
    }

    /// What the lists know of a code, in one lookup.
    pub fn lookup(&self, system: &str, code: &str) -> Option<&CodeFacts> {
        let codes = self.by_system.get(system)?;
        match codes.get(code) {
            Some(facts) => Some(facts),
            None if system == ICD_10_CM => codes.get(&normalise_icd_10_cm(code)?),
            None => None,
        }
    }

    pub fn contains(&self, list: CodeList, system: &str, code: &str) -> bool {
        self.lookup(system, code).is_some_and(|facts| facts.is_in(list))
    }

    /// Whether a free text (a display or a CodeableConcept.text) names one of the list's
    /// ingredient names, as a whole word.
    pub fn names_in(&self, list: CodeList, text: &str) -> bool {
        let Some(names) = self.names.get(&list).filter(|n| !n.is_empty()) else {
            return false;
        };
        let lower = text.to_lowercase();
        lower.split(|c: char| !c.is_alphanumeric()).any(|word| names.iter().any(|name| name == word))
    }

    /// How many codes a list holds (all systems).
    pub fn size(&self, list: CodeList) -> usize {
        self.by_system.values().flat_map(|codes| codes.values()).filter(|facts| facts.is_in(list)).count()
    }

    /// The codes of a list in one system (for checking the queries that fetch them).
    pub fn codes_of(&self, list: CodeList, system: &str) -> Vec<&str> {
        let mut codes: Vec<&str> = self
            .by_system
            .get(system)
            .into_iter()
            .flat_map(|codes| codes.iter())
            .filter(|(_, facts)| facts.is_in(list))
            .map(|(code, _)| code.as_str())
            .collect();
        codes.sort_unstable();
        codes
    }
}

// ---------------------------------------------------------------------------------------------
// The shipped files.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListsFile {
    #[allow(dead_code)]
    about: String,
    lists: HashMap<String, ListDefinition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDefinition {
    #[allow(dead_code)]
    title: String,
    #[allow(dead_code)]
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    value_sets: Vec<ValueSetReference>,
    #[serde(default)]
    icd10cm_families: Vec<String>,
    #[serde(default)]
    codes: Vec<ListedCode>,
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueSetReference {
    oid: String,
    #[serde(default)]
    review: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListedCode {
    system: String,
    code: String,
    #[allow(dead_code)]
    display: String,
    #[serde(default)]
    side: Option<SideCode>,
    #[allow(dead_code)]
    source: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SideCode {
    Left,
    Right,
    Both,
}

impl From<SideCode> for Side {
    fn from(side: SideCode) -> Side {
        match side {
            SideCode::Left => Side::Left,
            SideCode::Right => Side::Right,
            SideCode::Both => Side::Both,
        }
    }
}

/// A VSAC ValueSet: only what is read of it.
#[derive(Deserialize)]
struct VsacValueSet<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    expansion: VsacExpansion<'a>,
}

#[derive(Deserialize)]
struct VsacExpansion<'a> {
    #[serde(borrow)]
    contains: Vec<VsacCode<'a>>,
}

#[derive(Deserialize)]
struct VsacCode<'a> {
    #[serde(borrow)]
    system: &'a str,
    #[serde(borrow)]
    code: &'a str,
}

#[derive(Deserialize)]
struct ReviewFile<'a> {
    #[serde(borrow)]
    value_set: ReviewedSet<'a>,
    #[serde(borrow)]
    kept: Vec<VsacCode<'a>>,
    #[serde(borrow)]
    left_out: Vec<VsacCode<'a>>,
}

#[derive(Deserialize)]
struct ReviewedSet<'a> {
    #[serde(borrow)]
    oid: &'a str,
}

#[derive(Deserialize)]
struct FamiliesFile {
    families: HashMap<String, Family>,
}

#[derive(Deserialize)]
struct Family {
    codes: Vec<FamilyCode>,
}

#[derive(Deserialize)]
struct FamilyCode {
    code: String,
    side: Option<SideCode>,
}

/// The embedded files, by their path under `cds-hooks/codes/`.
pub struct EmbeddedFiles {
    pub lists: &'static str,
    pub families: &'static str,
    pub value_sets: &'static [(&'static str, &'static str)],
    pub reviews: &'static [(&'static str, &'static str)],
}

fn invalid(file: &str, detail: impl std::fmt::Display) -> TerminologyError {
    TerminologyError::Invalid { file: file.to_owned(), detail: detail.to_string() }
}

impl ValueSets {
    /// Loads the lists of `lists.json` from the embedded files. Every list of [`CodeList`] must be
    /// defined, every value set and review it names must be embedded, and every embedded file
    /// must be used (the data and the code cannot drift).
    pub fn load(files: &EmbeddedFiles) -> Result<ValueSets, TerminologyError> {
        let lists: ListsFile = serde_json::from_str(files.lists).map_err(|e| invalid("lists.json", e))?;
        let families: FamiliesFile =
            serde_json::from_str(files.families).map_err(|e| invalid("icd10cm-families.json", e))?;
        let mut sets = ValueSets::default();
        let mut used_value_sets = Vec::new();
        let mut used_reviews = Vec::new();
        for key in lists.lists.keys() {
            if CodeList::from_key(key).is_none() {
                return Err(invalid("lists.json", format!("list {key} is not one the service reads")));
            }
        }
        for list in CodeList::ALL {
            let definition = lists
                .lists
                .get(list.key())
                .ok_or_else(|| invalid("lists.json", format!("list {} is missing", list.key())))?;
            for reference in &definition.value_sets {
                let file_name = format!("vsac/valueset-{}.json", reference.oid);
                let text =
                    files.value_sets.iter().find(|(name, _)| *name == file_name).map(|(_, text)| *text).ok_or_else(
                        || invalid("lists.json", format!("{} names {file_name}, which is not embedded", list.key())),
                    )?;
                used_value_sets.push(file_name.clone());
                let value_set: VsacValueSet<'_> = serde_json::from_str(text).map_err(|e| invalid(&file_name, e))?;
                if value_set.id != reference.oid {
                    return Err(invalid(&file_name, format!("its id is {}, not {}", value_set.id, reference.oid)));
                }
                match &reference.review {
                    None => {
                        for code in &value_set.expansion.contains {
                            sets.add(*list, code.system, code.code, None);
                        }
                    }
                    Some(review_name) => {
                        let text = files
                            .reviews
                            .iter()
                            .find(|(name, _)| name == review_name)
                            .map(|(_, text)| *text)
                            .ok_or_else(|| invalid("lists.json", format!("{review_name} is not embedded")))?;
                        used_reviews.push(review_name.clone());
                        let review: ReviewFile<'_> = serde_json::from_str(text).map_err(|e| invalid(review_name, e))?;
                        if review.value_set.oid != reference.oid {
                            return Err(invalid(
                                review_name,
                                format!("it reviews {}, not {}", review.value_set.oid, reference.oid),
                            ));
                        }
                        let mut reviewed: Vec<(&str, &str)> =
                            review.kept.iter().chain(&review.left_out).map(|c| (c.system, c.code)).collect();
                        let mut published: Vec<(&str, &str)> =
                            value_set.expansion.contains.iter().map(|c| (c.system, c.code)).collect();
                        reviewed.sort_unstable();
                        published.sort_unstable();
                        if reviewed != published {
                            return Err(invalid(
                                review_name,
                                format!("kept and left_out must list every code of {} exactly once", reference.oid),
                            ));
                        }
                        for code in &review.kept {
                            sets.add(*list, code.system, code.code, None);
                        }
                    }
                }
            }
            for root in &definition.icd10cm_families {
                let family = families.families.get(root).ok_or_else(|| {
                    invalid("icd10cm-families.json", format!("family {root} (named by {}) is missing", list.key()))
                })?;
                for code in &family.codes {
                    sets.add(*list, ICD_10_CM, &code.code, code.side.map(Side::from));
                }
            }
            for code in &definition.codes {
                sets.add(*list, &code.system, &code.code, code.side.map(Side::from));
            }
            if !definition.names.is_empty() {
                sets.add_names(*list, &definition.names);
            }
        }
        for (name, _) in files.value_sets {
            if !used_value_sets.iter().any(|used| used == name) {
                return Err(invalid(name, "embedded but named by no list in lists.json"));
            }
        }
        for (name, _) in files.reviews {
            if !used_reviews.iter().any(|used| used == name) {
                return Err(invalid(name, "embedded but named by no list in lists.json"));
            }
        }
        Ok(sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_icd_10_cm_code_without_its_dot_or_in_lower_case_finds_the_same_entry() {
        let mut sets = ValueSets::default();
        sets.add(CodeList::ActiveCancer, ICD_10_CM, "C18.9", None);
        assert!(sets.contains(CodeList::ActiveCancer, ICD_10_CM, "C18.9"));
        assert!(sets.contains(CodeList::ActiveCancer, ICD_10_CM, "C189"));
        assert!(sets.contains(CodeList::ActiveCancer, ICD_10_CM, "c18.9"));
        assert!(!sets.contains(CodeList::ActiveCancer, ICD_10_CM, "C18"));
        assert!(!sets.contains(CodeList::ActiveCancer, "http://snomed.info/sct", "C18.9"));
    }

    #[test]
    fn one_lookup_answers_every_list_a_code_is_in_and_the_side_it_names() {
        let mut sets = ValueSets::default();
        sets.add(CodeList::BakerSupport, ICD_10_CM, "M17.11", Some(Side::Right));
        sets.add(CodeList::KneePain, ICD_10_CM, "M17.11", Some(Side::Right));
        let facts = sets.lookup(ICD_10_CM, "M17.11").expect("listed");
        assert!(facts.is_in(CodeList::BakerSupport) && facts.is_in(CodeList::KneePain));
        assert!(!facts.is_in(CodeList::ActiveCancer));
        assert_eq!(facts.side, Some(Side::Right));
    }

    #[test]
    fn every_list_key_maps_back_to_its_list() {
        for list in CodeList::ALL {
            assert_eq!(CodeList::from_key(list.key()), Some(*list));
        }
        assert!(CodeList::ALL.len() < 32, "one bit per list");
    }

    #[test]
    fn names_match_whole_words_only() {
        let mut sets = ValueSets::default();
        sets.add_names(CodeList::Anticoagulants, &["heparin".to_owned()]);
        assert!(sets.names_in(CodeList::Anticoagulants, "Heparin sodium 5000 UNT/ML"));
        assert!(!sets.names_in(CodeList::Anticoagulants, "heparinoid cream"));
        assert!(!sets.names_in(CodeList::Nsaids, "heparin"));
    }
}
