//! The CDS Hooks 2.0 request, read strictly enough to answer 400 with a clear message, and
//! leniently enough that the prefetch is read key by key (see `fhir::prefetch`). Error messages
//! name fields, never echo their content.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::catalogue::ServiceKind;
use crate::error::ApiError;
use crate::fhir::page::{self, Value};
use crate::json::ObjectOr;

/// A hook request after the envelope checks.
#[derive(Debug)]
pub struct HookRequest {
    pub hook: String,
    pub hook_instance: String,
    pub context: HookContext,
    pub prefetch: HashMap<String, Box<RawValue>>,
    pub fhir_server: Option<String>,
    pub fhir_authorization: Option<FhirAuthorization>,
}

/// `fhirAuthorization`: the token to read the EHR's FHIR server with. Never logged or stored.
#[derive(Deserialize)]
pub struct FhirAuthorization {
    pub access_token: AccessToken,
    #[serde(default)]
    pub token_type: Option<String>,
}

/// A bearer token whose Debug output never shows it.
#[derive(Deserialize, Clone)]
#[serde(transparent)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl std::fmt::Debug for FhirAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirAuthorization").field("access_token", &self.access_token).finish_non_exhaustive()
    }
}

/// The context fields this service reads.
#[derive(Debug)]
pub struct HookContext {
    pub user_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    /// order-select and order-sign: the Bundle of draft orders (read by `fhir::drafts`).
    pub draft_orders: Option<Box<RawValue>>,
    /// order-select: the ids (`ResourceType/id`) of the orders just selected.
    pub selections: Vec<String>,
}

#[derive(Deserialize)]
struct Envelope {
    hook: Option<serde_json::Value>,
    #[serde(rename = "hookInstance")]
    hook_instance: Option<serde_json::Value>,
    context: Option<HashMap<String, Box<RawValue>>>,
    /// Split into its keys in the envelope's one pass over the body; each value stays raw
    /// (`fhir::prefetch` reads each on its own).
    prefetch: Option<ObjectOr<HashMap<String, Box<RawValue>>>>,
    #[serde(rename = "fhirServer")]
    fhir_server: Option<serde_json::Value>,
    #[serde(rename = "fhirAuthorization")]
    fhir_authorization: Option<Box<RawValue>>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// The sanitiser of what may be logged as an id: a hook name and a hookInstance are held to it,
/// and `telemetry` logs other ids sent by clients only when they pass it.
pub fn is_safe_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn context_string(
    context: &HashMap<String, Box<RawValue>>,
    field: &str,
    required: bool,
) -> Result<Option<String>, ApiError> {
    match context.get(field) {
        None if required => Err(bad(format!("context.{field} is required"))),
        None => Ok(None),
        Some(raw) => match serde_json::from_str::<Option<String>>(raw.get()) {
            Ok(Some(value)) if !value.trim().is_empty() => Ok(Some(value)),
            Ok(None) if !required => Ok(None),
            _ => Err(bad(format!("context.{field} must be a non-empty string"))),
        },
    }
}

impl HookRequest {
    /// Parses a request body. Syntax errors report their position only.
    pub fn parse(body: &[u8]) -> Result<HookRequest, ApiError> {
        // serde reads a struct from an array too (by position): the request must be an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'[') {
            return Err(bad("the request body is not a CDS Hooks request object: it must be a JSON object"));
        }
        let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
            let what = if e.is_syntax() || e.is_eof() {
                "the request body is not valid JSON"
            } else {
                "the request body is not a CDS Hooks request object"
            };
            bad(format!("{what} (line {}, column {})", e.line(), e.column()))
        })?;
        let hook = match envelope.hook {
            Some(serde_json::Value::String(hook)) if is_safe_token(&hook) => hook,
            Some(_) => return Err(bad("hook must be a hook name such as patient-view")),
            None => return Err(bad("hook is required")),
        };
        let hook_instance = match envelope.hook_instance {
            Some(serde_json::Value::String(id)) if is_safe_token(&id) => id,
            Some(_) => return Err(bad("hookInstance must be a UUID")),
            None => return Err(bad("hookInstance is required")),
        };
        let mut context = envelope.context.ok_or_else(|| bad("context is required and must be an object"))?;
        let prefetch = match envelope.prefetch {
            None => HashMap::new(),
            Some(ObjectOr::Object(keys)) => keys,
            Some(ObjectOr::NotAnObject) => {
                return Err(bad("prefetch must be an object whose keys are the service's prefetch keys"));
            }
        };
        let fhir_server = match envelope.fhir_server {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(url)) => Some(url),
            Some(_) => return Err(bad("fhirServer must be a URL")),
        };
        let fhir_authorization = match envelope.fhir_authorization {
            None => None,
            Some(raw) if raw.get().trim() == "null" => None,
            Some(raw) if !raw.get().trim_start().starts_with('{') => {
                return Err(bad("fhirAuthorization must be an object with an access_token string"));
            }
            Some(raw) => Some(
                serde_json::from_str::<FhirAuthorization>(raw.get())
                    .map_err(|_| bad("fhirAuthorization must be an object with an access_token string"))?,
            ),
        };
        if fhir_authorization
            .as_ref()
            .and_then(|a| a.token_type.as_deref())
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(bad("fhirAuthorization.token_type must be Bearer"));
        }
        Ok(HookRequest {
            hook,
            fhir_authorization,
            hook_instance,
            context: HookContext {
                user_id: context_string(&context, "userId", true)?.unwrap_or_default(),
                patient_id: context_string(&context, "patientId", true)?.unwrap_or_default(),
                encounter_id: context_string(&context, "encounterId", false)?,
                selections: match context.get("selections") {
                    None => Vec::new(),
                    Some(raw) => serde_json::from_str::<Vec<String>>(raw.get())
                        .map_err(|_| bad("context.selections must be an array of resource ids"))?,
                },
                draft_orders: context.remove("draftOrders").filter(|raw| raw.get().trim() != "null"),
            },
            prefetch,
            fhir_server,
        })
    }
}

impl HookRequest {
    /// Checks the request against the service it was sent to, before any I/O: the hook is the
    /// service's, an order hook carries its draft orders as a Bundle or a resource, and a
    /// Patient sent in the prefetch is the patient the context names.
    pub fn check_for(&self, service: ServiceKind) -> Result<(), ApiError> {
        if self.hook != service.hook() {
            return Err(bad(format!(
                "service {} answers the {} hook, not the hook sent",
                service.id(),
                service.hook()
            )));
        }
        if service.reviews_orders() {
            let Some(drafts) = self.context.draft_orders.as_deref() else {
                return Err(bad(format!("context.draftOrders is required by the {} hook", service.hook())));
            };
            if !matches!(page::classify(drafts), Value::Bundle(_) | Value::Resource(_)) {
                return Err(bad("context.draftOrders must be a Bundle of orders"));
            }
        }
        if let Some(patient) = self.prefetch.get("patient")
            && let Value::Resource(resource) = page::classify(patient)
            && page::resource_type_of(resource).as_deref() == Some("Patient")
            && page::id_of_resource(resource).is_some_and(|id| id != self.context.patient_id)
        {
            return Err(bad("prefetch.patient is not the patient named by context.patientId"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> String {
        match HookRequest::parse(body.as_bytes()) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_hook_instance_is_named_in_the_error() {
        assert_eq!(message(r#"{"hook":"patient-view","context":{}}"#), "hookInstance is required");
    }

    #[test]
    fn a_missing_patient_id_is_named_in_the_error() {
        let body = r#"{"hook":"patient-view","hookInstance":"a-1","context":{"userId":"Practitioner/1"}}"#;
        assert_eq!(message(body), "context.patientId is required");
    }

    #[test]
    fn a_type_error_never_echoes_the_value_sent() {
        let body = r#"{"hook":"patient-view","hookInstance":"a-1","context":"Jane Doe, born 1950"}"#;
        let text = message(body);
        assert!(!text.contains("Jane"), "{text}");
    }

    #[test]
    fn the_access_token_never_shows_in_debug_output() {
        let body = r#"{"hook":"patient-view","hookInstance":"a-1","context":{"userId":"u","patientId":"p"},
            "fhirServer":"https://ehr.example/fhir","fhirAuthorization":{"access_token":"s3cr3t","token_type":"Bearer"}}"#;
        let request = HookRequest::parse(body.as_bytes()).expect("valid");
        assert!(!format!("{request:?}").contains("s3cr3t"));
        assert_eq!(request.fhir_authorization.expect("present").access_token.expose(), "s3cr3t");
    }

    #[test]
    fn an_array_shaped_like_the_envelope_is_not_a_request() {
        let text = message(r#"["patient-view", "a-1", {"userId": "u", "patientId": "p"}]"#);
        assert!(text.contains("must be a JSON object"), "{text}");
        let body = r#"{"hook":"patient-view","hookInstance":"a-1","context":{"userId":"u","patientId":"p"},
            "fhirAuthorization":["s3cr3t", "Bearer"]}"#;
        assert!(message(body).starts_with("fhirAuthorization must be an object"));
    }

    #[test]
    fn a_prefetch_that_is_not_an_object_is_named_in_the_error() {
        for prefetch in ["[]", "[1, {\"a\": 2}]", "\"patient\"", "42", "-1.5", "true"] {
            let body = format!(
                r#"{{"hook":"patient-view","hookInstance":"a-1","context":{{"userId":"u","patientId":"p"}},"prefetch":{prefetch}}}"#
            );
            assert!(message(&body).starts_with("prefetch must be an object"), "{prefetch}");
        }
    }

    #[test]
    fn a_null_prefetch_is_no_prefetch_and_each_key_stays_raw() {
        let base = r#"{"hook":"patient-view","hookInstance":"a-1","context":{"userId":"u","patientId":"p"}"#;
        let none = HookRequest::parse(format!(r#"{base},"prefetch":null}}"#).as_bytes()).expect("valid");
        assert!(none.prefetch.is_empty());
        let some = HookRequest::parse(
            format!(r#"{base},"prefetch":{{"patient":{{"resourceType":"Patient"}},"x":null}}}}"#).as_bytes(),
        )
        .expect("valid");
        assert_eq!(some.prefetch["patient"].get(), r#"{"resourceType":"Patient"}"#);
        assert_eq!(some.prefetch["x"].get(), "null");
    }

    fn request(body: &str) -> HookRequest {
        HookRequest::parse(body.as_bytes()).expect("a well-formed request")
    }

    #[test]
    fn a_request_is_checked_against_its_service_before_anything_is_read() {
        let view = request(r#"{"hook":"patient-view","hookInstance":"a-1","context":{"userId":"u","patientId":"p"}}"#);
        assert!(view.check_for(ServiceKind::PatientView).is_ok());
        let Err(ApiError::BadRequest(message)) = view.check_for(ServiceKind::OrderSign) else { panic!("400") };
        assert!(message.contains("order-sign"), "{message}");
        let sign = request(r#"{"hook":"order-sign","hookInstance":"a-1","context":{"userId":"u","patientId":"p"}}"#);
        let Err(ApiError::BadRequest(message)) = sign.check_for(ServiceKind::OrderSign) else { panic!("400") };
        assert!(message.contains("draftOrders is required"), "{message}");
        let outcome = request(
            r#"{"hook":"order-sign","hookInstance":"a-1","context":{"userId":"u","patientId":"p",
                "draftOrders":{"resourceType":"OperationOutcome"}}}"#,
        );
        assert!(outcome.check_for(ServiceKind::OrderSign).is_err());
    }

    #[test]
    fn a_prefetched_patient_that_is_not_the_context_patient_is_refused() {
        let body = |id: &str| {
            format!(
                r#"{{"hook":"patient-view","hookInstance":"a-1","context":{{"userId":"u","patientId":"p"}},
                   "prefetch":{{"patient":{{"resourceType":"Patient","id":"{id}"}}}}}}"#
            )
        };
        assert!(request(&body("p")).check_for(ServiceKind::PatientView).is_ok());
        assert!(request(&body("someone-else")).check_for(ServiceKind::PatientView).is_err());
    }

    #[test]
    fn malformed_json_reports_its_position() {
        assert!(message("{\"hook\": ").starts_with("the request body is not valid JSON"));
    }
}
