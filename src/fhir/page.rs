//! Reading one FHIR JSON value: a prefetch value or a page fetched from the FHIR server. It may
//! be `null` (the read found nothing), a Bundle, a single resource, or an OperationOutcome (the
//! EHR's read failed). Inside a Bundle each entry is read on its own: one malformed resource, or
//! one carrying a `modifierExtension` the service does not understand, is skipped and reported;
//! the rest are kept.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::record::Cause;
use crate::json::ObjectOr;

/// What one value holds.
#[derive(Debug)]
pub enum Value<'a> {
    /// `null`: the EHR's read found nothing.
    Nothing,
    /// One resource (a Patient read, say).
    Resource(&'a RawValue),
    /// A Bundle page.
    Bundle(BundlePage<'a>),
    /// The EHR's read failed (an OperationOutcome), or the value is not a FHIR resource.
    Failed(Cause),
}

/// A Bundle's entries, each resource still raw (read on its own later), and its `next` link.
#[derive(Debug, Default)]
pub struct BundlePage<'a> {
    /// (position in the Bundle, resource).
    pub resources: Vec<(usize, &'a RawValue)>,
    /// Positions of entries that are not entries (an array, a number, a malformed `search`).
    pub bad_entries: Vec<usize>,
    /// The `next` link's URL, when more pages exist.
    pub next: Option<String>,
    /// How many entries the page has, of every kind.
    pub entry_count: usize,
}

/// Why a resource was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// An element the rules read has the wrong type, or a required one is missing.
    Unreadable,
    /// It carries a `modifierExtension` the service does not understand: FHIR forbids
    /// processing it as if the modifier were absent.
    ModifierExtension,
}

/// An entry that was skipped. It carries ids only, never content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedResource {
    pub resource_type: String,
    pub id: Option<String>,
    pub position: usize,
    pub reason: SkipReason,
}

/// One resource of a value, read.
#[derive(Debug)]
pub enum Entry<T> {
    /// A resource of the expected type.
    Read(T),
    /// A resource of the expected type that cannot be used.
    Skipped(SkippedResource),
    /// A resource of another type (an `_include`d Medication, say), with its type.
    Other(String),
    /// A search warning (an OperationOutcome entry): not data, not an error.
    Outcome,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// A value read once: its type, and when it is a Bundle its entries (each resource
/// borrowed raw, read on its own later) and links.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(default, borrow)]
    entry: Option<Vec<ObjectOr<EntryEnvelope<'a>>>>,
    #[serde(default, borrow)]
    link: Option<Vec<&'a RawValue>>,
}

/// An entry: its parts stay raw, so that nothing inside one entry can fail the Bundle (but a
/// member name given twice, which JSON parsers disagree on: then the whole key is unreadable).
#[derive(Deserialize)]
struct EntryEnvelope<'a> {
    #[serde(default, borrow)]
    resource: Option<&'a RawValue>,
    #[serde(default, borrow)]
    search: Option<&'a RawValue>,
}

impl EntryEnvelope<'_> {
    /// Whether the entry is a search outcome (warnings, not data); `Err` when `search` is not
    /// an object with a string `mode`.
    fn is_outcome(&self) -> Result<bool, ()> {
        match self.search {
            None => Ok(false),
            Some(raw) if !is_object(raw) => Err(()),
            Some(raw) => serde_json::from_str::<EntrySearch>(raw.get())
                .map(|search| search.mode.as_deref() == Some("outcome"))
                .map_err(|_| ()),
        }
    }
}

#[derive(Deserialize)]
struct EntrySearch {
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Deserialize)]
struct LinkEnvelope {
    #[serde(default)]
    relation: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// Whether a raw value is a JSON object. serde reads a struct from an array too (by position),
/// so `["Patient", "p1"]` must be refused before it is read as a resource.
fn is_object(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('{')
}

fn head(raw: &RawValue) -> Option<Head> {
    if !is_object(raw) {
        return None;
    }
    serde_json::from_str::<Head>(raw.get()).ok()
}

/// The resourceType when it is the first member, as FHIR JSON writers put it, without reading
/// the rest; `None` when it is not first (then the whole resource is read to find it).
fn leading_resource_type(raw: &RawValue) -> Option<&str> {
    let text = raw.get().trim_start().strip_prefix('{')?.trim_start();
    let text = text.strip_prefix("\"resourceType\"")?.trim_start().strip_prefix(':')?.trim_start();
    let text = text.strip_prefix('"')?;
    let end = text.find('"')?;
    let value = &text[..end];
    value.bytes().all(|b| b.is_ascii_alphabetic()).then_some(value)
}

/// A resource's type, cheaply when it leads.
pub fn resource_type_of(raw: &RawValue) -> Option<String> {
    match leading_resource_type(raw) {
        Some(resource_type) => Some(resource_type.to_owned()),
        None => head(raw).and_then(|h| h.resource_type),
    }
}

fn id_of(head: &Head) -> Option<String> {
    match &head.id {
        Some(serde_json::Value::String(id)) if is_safe_id(id) => Some(id.clone()),
        _ => None,
    }
}

/// A resource's id as written, for comparing it with the context (never echoed).
pub fn id_of_resource(raw: &RawValue) -> Option<String> {
    match head(raw)?.id {
        Some(serde_json::Value::String(id)) => Some(id),
        _ => None,
    }
}

/// A FHIR id: `[A-Za-z0-9\-\.]{1,64}`. Anything else is not echoed anywhere.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Reads what a value holds, in one pass over it. The resources stay raw: each is read on its
/// own by [`read_entry`].
pub fn classify(raw: &RawValue) -> Value<'_> {
    if raw.get().trim() == "null" {
        return Value::Nothing;
    }
    if !is_object(raw) {
        return Value::Failed(Cause::NotAResource);
    }
    let Ok(envelope) = serde_json::from_str::<Envelope<'_>>(raw.get()) else {
        return Value::Failed(Cause::NotAResource);
    };
    match envelope.resource_type.as_deref() {
        None => Value::Failed(Cause::NotAResource),
        Some("OperationOutcome") => Value::Failed(Cause::OperationOutcome),
        Some("Bundle") => Value::Bundle(bundle_page(envelope)),
        Some(_) => Value::Resource(raw),
    }
}

fn bundle_page(envelope: Envelope<'_>) -> BundlePage<'_> {
    let next = envelope.link.unwrap_or_default().iter().find_map(|link| {
        serde_json::from_str::<LinkEnvelope>(link.get())
            .ok()
            .filter(|l| l.relation.as_deref() == Some("next"))
            .and_then(|l| l.url)
    });
    let entries = envelope.entry.unwrap_or_default();
    let mut page = BundlePage { next, entry_count: entries.len(), ..BundlePage::default() };
    for (position, entry) in entries.into_iter().enumerate() {
        let ObjectOr::Object(entry) = entry else {
            page.bad_entries.push(position);
            continue;
        };
        match (entry.is_outcome(), entry.resource) {
            (Ok(true), _) | (Ok(false), None) => {}
            (Ok(false), Some(resource)) => page.resources.push((position, resource)),
            (Err(()), _) => page.bad_entries.push(position),
        }
    }
    page
}

/// Reads one resource expecting the type `expected` (the FHIR resourceType).
pub fn read_entry<T: DeserializeOwned>(raw: &RawValue, expected: &str, position: usize) -> Entry<T> {
    let skipped = |reason| {
        Entry::Skipped(SkippedResource {
            resource_type: expected.to_owned(),
            id: head(raw).as_ref().and_then(id_of),
            position,
            reason,
        })
    };
    match resource_type_of(raw).as_deref() {
        Some(t) if t == expected => {
            if carries_modifier_extension(raw) {
                return skipped(SkipReason::ModifierExtension);
            }
            match serde_json::from_str::<T>(raw.get()) {
                Ok(resource) => Entry::Read(resource),
                Err(_) => skipped(SkipReason::Unreadable),
            }
        }
        Some("OperationOutcome") => Entry::Outcome,
        Some(other) => Entry::Other(other.to_owned()),
        None => Entry::Skipped(SkippedResource {
            resource_type: "unknown".into(),
            id: None,
            position,
            reason: SkipReason::Unreadable,
        }),
    }
}

/// Whether a resource carries a `modifierExtension` anywhere (on itself, a backbone element or a
/// contained resource). The service understands none, so such a resource is not read at all. A
/// search, not a parse: the full walk runs only when the name (or an escape that could spell
/// it) is in the text.
pub fn carries_modifier_extension(raw: &RawValue) -> bool {
    let text = raw.get().as_bytes();
    if memchr::memmem::find(text, b"modifierExtension").is_none() && memchr::memmem::find(text, b"\\u").is_none() {
        return false;
    }
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(value) => has_modifier(&value),
        // Not JSON the walk can read: the resource's own reading decides.
        Err(_) => false,
    }
}

fn has_modifier(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(members) => members.iter().any(|(name, member)| {
            let present = match member {
                serde_json::Value::Null => false,
                serde_json::Value::Array(items) => !items.is_empty(),
                _ => true,
            };
            (name == "modifierExtension" && present) || has_modifier(member)
        }),
        serde_json::Value::Array(items) => items.iter().any(has_modifier),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::views::Condition;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    fn entries<'a>(value: &Value<'a>) -> Vec<Entry<Condition>> {
        let Value::Bundle(page) = value else { panic!("a Bundle: {value:?}") };
        page.resources.iter().map(|(position, raw)| read_entry::<Condition>(raw, "Condition", *position)).collect()
    }

    #[test]
    fn a_malformed_entry_is_skipped_and_the_others_are_kept() {
        let bundle = raw(r#"{"resourceType":"Bundle","type":"searchset","entry":[
            {"resource":{"resourceType":"Condition","id":"bad","code":"malignant","subject":{"reference":"Patient/p"}}},
            {"resource":{"resourceType":"Condition","id":"good","subject":{"reference":"Patient/p"}}},
            42]}"#);
        let value = classify(&bundle);
        let read = entries(&value);
        assert!(
            matches!(&read[0], Entry::Skipped(s) if s.id.as_deref() == Some("bad") && s.reason == SkipReason::Unreadable)
        );
        assert!(matches!(&read[1], Entry::Read(c) if c.id.as_deref() == Some("good")));
        let Value::Bundle(page) = value else { unreachable!() };
        assert_eq!(page.bad_entries, vec![2]);
    }

    #[test]
    fn a_resource_with_a_modifier_extension_anywhere_is_skipped_and_says_why() {
        let bundle = raw(r#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"Condition","id":"top","subject":{"reference":"Patient/p"},
                "modifierExtension":[{"url":"https://ehr.example.org/not-this-patient","valueBoolean":true}]}},
            {"resource":{"resourceType":"Condition","id":"deep","subject":{"reference":"Patient/p"},
                "stage":[{"modifierExtension":[{"url":"x","valueCode":"y"}]}]}},
            {"resource":{"resourceType":"Condition","id":"escaped","subject":{"reference":"Patient/p"},
                "modifier\u0045xtension":[{"url":"x","valueCode":"y"}]}},
            {"resource":{"resourceType":"Condition","id":"empty","subject":{"reference":"Patient/p"},
                "modifierExtension":[]}}]}"#);
        let read = entries(&classify(&bundle));
        for (index, id) in ["top", "deep", "escaped"].iter().enumerate() {
            assert!(
                matches!(&read[index], Entry::Skipped(s) if s.id.as_deref() == Some(*id) && s.reason == SkipReason::ModifierExtension),
                "{id}: {:?}",
                read[index]
            );
        }
        assert!(matches!(&read[3], Entry::Read(_)), "an empty modifierExtension modifies nothing");
    }

    #[test]
    fn an_array_is_never_read_as_a_resource_or_an_entry() {
        assert!(matches!(classify(&raw(r#"["Condition", "c1"]"#)), Value::Failed(Cause::NotAResource)));
        let bundle = raw(r#"{"resourceType":"Bundle","entry":[[{"resourceType":"Condition","id":"c1"}]]}"#);
        let Value::Bundle(page) = classify(&bundle) else { panic!("the bundle is read") };
        assert!(page.resources.is_empty());
        assert_eq!(page.bad_entries, vec![0]);
    }

    #[test]
    fn null_is_nothing_and_an_operation_outcome_is_a_failure() {
        assert!(matches!(classify(&raw("null")), Value::Nothing));
        let outcome = raw(r#"{"resourceType":"OperationOutcome","issue":[]}"#);
        assert!(matches!(classify(&outcome), Value::Failed(Cause::OperationOutcome)));
        assert!(matches!(classify(&raw("\"text\"")), Value::Failed(Cause::NotAResource)));
        assert!(matches!(classify(&raw(r#"{"id":"x"}"#)), Value::Failed(Cause::NotAResource)));
        assert!(matches!(classify(&raw(r#"{"resourceType":"Patient","id":"p"}"#)), Value::Resource(_)));
    }

    #[test]
    fn a_next_link_is_noticed_with_its_url() {
        let bundle = raw(
            r#"{"resourceType":"Bundle","link":[{"relation":"self","url":"https://x/a"},{"relation":"next","url":"https://x/y"}],"entry":[]}"#,
        );
        let Value::Bundle(page) = classify(&bundle) else { panic!("read") };
        assert_eq!(page.next.as_deref(), Some("https://x/y"));
        let escaped = raw(r#"{"resourceType":"Bundle","link":[{"relation":"\u006eext","url":"https://x/c"}]}"#);
        let Value::Bundle(page) = classify(&escaped) else { panic!("read") };
        assert_eq!(page.next.as_deref(), Some("https://x/c"));
    }

    #[test]
    fn other_resource_types_and_search_warnings_are_told_apart() {
        let bundle = raw(r#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"Medication","id":"m"}},
            {"resource":{"resourceType":"OperationOutcome","issue":[]}},
            {"resource":{"resourceType":"OperationOutcome","issue":[]},"search":{"mode":"outcome"}}]}"#);
        let read = entries(&classify(&bundle));
        assert!(matches!(&read[0], Entry::Other(t) if t == "Medication"));
        assert!(matches!(&read[1], Entry::Outcome));
        assert_eq!(read.len(), 2, "a search outcome entry is not a resource");
    }

    #[test]
    fn a_leading_resource_type_is_read_without_the_rest_and_a_later_one_is_still_found() {
        assert_eq!(leading_resource_type(&raw(r#" { "resourceType" : "Condition", "id": "x"}"#)), Some("Condition"));
        assert_eq!(leading_resource_type(&raw(r#"{"id": "x", "resourceType": "Condition"}"#)), None);
        assert_eq!(resource_type_of(&raw(r#"{"id": "x", "resourceType": "Condition"}"#)).as_deref(), Some("Condition"));
        assert_eq!(leading_resource_type(&raw(r#"{"resourceType": "Con\u0064ition"}"#)), None);
    }

    #[test]
    fn an_unsafe_id_is_never_reported() {
        assert!(is_safe_id("c-bad.1"));
        assert!(!is_safe_id("John Smith"));
        assert!(!is_safe_id(""));
    }
}
