//! Lenient reading of prefetch values. A prefetch key may be absent, `null` (the read found
//! nothing), a Bundle, a single resource, or an OperationOutcome (the EHR's read failed). Inside
//! a Bundle, each entry is read on its own: one malformed resource is skipped and reported, the
//! rest are kept.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::json::ObjectOr;

/// The state of one prefetch key after reading it.
#[derive(Debug)]
pub enum PrefetchValue<T> {
    /// The EHR did not send this key.
    Absent,
    /// The EHR's read failed (an OperationOutcome) or the value is not a FHIR resource.
    Failed(FailureKind),
    /// The resources read, with the entries that had to be skipped.
    Read(ReadResources<T>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    OperationOutcome,
    NotAResource,
}

#[derive(Debug)]
pub struct ReadResources<T> {
    pub resources: Vec<T>,
    /// Entries of the expected type that could not be read.
    pub skipped: Vec<SkippedResource>,
    /// Resources of other types (an `_include`d Medication, say), kept as raw JSON for the
    /// caller that wants them.
    pub others: Vec<Box<RawValue>>,
    /// The Bundle's `next` link, when it has one (more pages exist).
    pub next_page: bool,
}

/// An entry that was skipped. It carries ids only, never content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedResource {
    pub resource_type: String,
    pub id: Option<String>,
    pub position: usize,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// A prefetch value read once: its type, and when it is a Bundle its entries (each resource
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

/// A FHIR id: `[A-Za-z0-9\-\.]{1,64}`. Anything else is not echoed anywhere.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Reads one prefetch value expecting resources of type `expected` (the FHIR resourceType).
pub fn read<T: DeserializeOwned>(value: Option<&RawValue>, expected: &str) -> PrefetchValue<T> {
    let Some(raw) = value else {
        return PrefetchValue::Absent;
    };
    if raw.get().trim() == "null" {
        return PrefetchValue::Read(ReadResources {
            resources: Vec::new(),
            skipped: Vec::new(),
            others: Vec::new(),
            next_page: false,
        });
    }
    if !is_object(raw) {
        return PrefetchValue::Failed(FailureKind::NotAResource);
    }
    let Ok(envelope) = serde_json::from_str::<Envelope<'_>>(raw.get()) else {
        return PrefetchValue::Failed(FailureKind::NotAResource);
    };
    let Some(resource_type) = envelope.resource_type.as_deref() else {
        return PrefetchValue::Failed(FailureKind::NotAResource);
    };
    match resource_type {
        "OperationOutcome" => PrefetchValue::Failed(FailureKind::OperationOutcome),
        "Bundle" if expected != "Bundle" => read_bundle(envelope, expected),
        _ => {
            let mut read =
                ReadResources { resources: Vec::new(), skipped: Vec::new(), others: Vec::new(), next_page: false };
            collect(raw, expected, 0, &mut read);
            PrefetchValue::Read(read)
        }
    }
}

fn read_bundle<T: DeserializeOwned>(envelope: Envelope<'_>, expected: &str) -> PrefetchValue<T> {
    let next_page = envelope.link.unwrap_or_default().iter().any(|link| {
        serde_json::from_str::<LinkEnvelope>(link.get()).is_ok_and(|l| l.relation.as_deref() == Some("next"))
    });
    let mut read = ReadResources { resources: Vec::new(), skipped: Vec::new(), others: Vec::new(), next_page };
    for (position, entry) in envelope.entry.unwrap_or_default().into_iter().enumerate() {
        let ObjectOr::Object(entry) = entry else {
            read.skipped.push(SkippedResource { resource_type: "entry".into(), id: None, position });
            continue;
        };
        match (entry.is_outcome(), entry.resource) {
            (Ok(true), _) | (Ok(false), None) => {}
            (Ok(false), Some(resource)) => collect(resource, expected, position, &mut read),
            (Err(()), _) => read.skipped.push(SkippedResource { resource_type: "entry".into(), id: None, position }),
        }
    }
    PrefetchValue::Read(read)
}

fn collect<T: DeserializeOwned>(raw: &RawValue, expected: &str, position: usize, read: &mut ReadResources<T>) {
    let resource_type = resource_type_of(raw);
    match resource_type.as_deref() {
        Some(t) if t == expected => match serde_json::from_str::<T>(raw.get()) {
            Ok(resource) => read.resources.push(resource),
            Err(_) => read.skipped.push(SkippedResource {
                resource_type: expected.to_owned(),
                id: head(raw).as_ref().and_then(id_of),
                position,
            }),
        },
        // Search warnings travel as OperationOutcome entries: not data, not an error.
        Some("OperationOutcome") => {}
        Some(_) => read.others.push(raw.to_owned()),
        None => read.skipped.push(SkippedResource { resource_type: "unknown".into(), id: None, position }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::views::Condition;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    #[test]
    fn a_malformed_entry_is_skipped_and_the_others_are_kept() {
        let bundle = raw(r#"{"resourceType":"Bundle","type":"searchset","entry":[
            {"resource":{"resourceType":"Condition","id":"bad","code":"malignant","subject":{"reference":"Patient/p"}}},
            {"resource":{"resourceType":"Condition","id":"good","subject":{"reference":"Patient/p"}}},
            42]}"#);
        let PrefetchValue::Read(read) = read::<Condition>(Some(&bundle), "Condition") else {
            panic!("the bundle is read");
        };
        assert_eq!(read.resources.len(), 1);
        assert_eq!(read.skipped.len(), 2);
        assert_eq!(read.skipped[0].id.as_deref(), Some("bad"));
    }

    #[test]
    fn an_array_is_never_read_as_a_resource_or_an_entry() {
        assert!(matches!(
            read::<Condition>(Some(&raw(r#"["Condition", "c1"]"#)), "Condition"),
            PrefetchValue::Failed(FailureKind::NotAResource)
        ));
        let bundle = raw(r#"{"resourceType":"Bundle","entry":[[{"resourceType":"Condition","id":"c1"}]]}"#);
        let PrefetchValue::Read(read) = read::<Condition>(Some(&bundle), "Condition") else {
            panic!("the bundle is read");
        };
        assert!(read.resources.is_empty());
        assert_eq!(read.skipped.len(), 1);
    }

    #[test]
    fn null_is_an_empty_read_and_an_operation_outcome_is_a_failure() {
        assert!(
            matches!(read::<Condition>(Some(&raw("null")), "Condition"), PrefetchValue::Read(r) if r.resources.is_empty())
        );
        let outcome = raw(r#"{"resourceType":"OperationOutcome","issue":[]}"#);
        assert!(matches!(
            read::<Condition>(Some(&outcome), "Condition"),
            PrefetchValue::Failed(FailureKind::OperationOutcome)
        ));
        assert!(matches!(read::<Condition>(None, "Condition"), PrefetchValue::Absent));
        assert!(matches!(
            read::<Condition>(Some(&raw("\"text\"")), "Condition"),
            PrefetchValue::Failed(FailureKind::NotAResource)
        ));
    }

    #[test]
    fn a_next_link_is_noticed() {
        let bundle = raw(r#"{"resourceType":"Bundle","link":[{"relation":"next","url":"https://x/y"}],"entry":[]}"#);
        let PrefetchValue::Read(read) = read::<Condition>(Some(&bundle), "Condition") else {
            panic!("read");
        };
        assert!(read.next_page);
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
