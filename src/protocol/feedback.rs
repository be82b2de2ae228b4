//! CDS Hooks 2.0 feedback (`POST {base}/cds-services/{id}/feedback`), read strictly: every item
//! is checked (invariants cds-fb-1..3 of the HL7 `CDSHooksFeedback` model), and an error names the
//! item's index and field, never what was sent.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::error::ApiError;
use crate::terminology::Coding;

/// The most items one request may carry.
pub const MAX_ITEMS: usize = 1000;
/// Limits on the free-text and code fields stored.
const MAX_CODE_CHARS: usize = 256;
const MAX_DISPLAY_CHARS: usize = 1024;
const MAX_COMMENT_CHARS: usize = 4000;
const MAX_SUGGESTIONS: usize = 100;

/// One feedback item after the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackItem {
    /// The `uuid` of the card the feedback is about.
    pub card: Uuid,
    pub outcome: FeedbackOutcome,
    /// When the clinician acted.
    pub outcome_timestamp: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackOutcome {
    /// The `id`s of the suggestions accepted (at least one).
    Accepted {
        suggestions: Vec<Uuid>,
    },
    Overridden {
        reason: Option<OverrideReason>,
    },
}

impl FeedbackOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            FeedbackOutcome::Accepted { .. } => "accepted",
            FeedbackOutcome::Overridden { .. } => "overridden",
        }
    }
}

/// Why a card was overridden: a reason the card offered, a comment, or both (cds-fb-3).
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideReason {
    pub reason: Option<Coding>,
    pub user_comment: Option<String>,
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// A stored string: not only white space (Unicode's White_Space, what `trim` removes), at most
/// `limit` characters, and without U+0000, which PostgreSQL cannot store in text.
fn non_empty_string<'a>(value: Option<&'a Value>, at: &str, limit: usize) -> Result<Option<&'a str>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.contains('\0') => Err(bad(format!("{at} must not contain U+0000"))),
        Some(Value::String(text)) if !text.trim().is_empty() && text.chars().count() <= limit => Ok(Some(text)),
        Some(_) => Err(bad(format!("{at} must be a non-empty string of at most {limit} characters"))),
    }
}

fn uuid_field(value: Option<&Value>, at: &str, what: &str) -> Result<Uuid, ApiError> {
    match value {
        None | Some(Value::Null) => Err(bad(format!("{at} is required"))),
        Some(Value::String(text)) => Uuid::parse_str(text).map_err(|_| bad(format!("{at} must be the uuid of {what}"))),
        Some(_) => Err(bad(format!("{at} must be the uuid of {what}"))),
    }
}

fn coding(value: &Value, at: &str) -> Result<Coding, ApiError> {
    let Value::Object(map) = value else {
        return Err(bad(format!("{at} must be a Coding object")));
    };
    let system = non_empty_string(map.get("system"), &format!("{at}.system"), MAX_CODE_CHARS)?
        .ok_or_else(|| bad(format!("{at}.system is required")))?;
    let code = non_empty_string(map.get("code"), &format!("{at}.code"), MAX_CODE_CHARS)?
        .ok_or_else(|| bad(format!("{at}.code is required")))?;
    let display = non_empty_string(map.get("display"), &format!("{at}.display"), MAX_DISPLAY_CHARS)?;
    Ok(Coding { system: system.to_owned(), code: code.to_owned(), display: display.map(str::to_owned) })
}

fn accepted_suggestions(value: Option<&Value>, at: &str) -> Result<Vec<Uuid>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Err(bad(format!("{at} is required when the outcome is accepted"))),
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_SUGGESTIONS => items,
        Some(_) => {
            return Err(bad(format!("{at} must be an array of 1 to {MAX_SUGGESTIONS} objects with an id")));
        }
    };
    let mut ids = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(bad(format!("{at}[{index}] must be an object with an id")));
        };
        let id = uuid_field(map.get("id"), &format!("{at}[{index}].id"), "a suggestion of the card")?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn override_reason(value: Option<&Value>, at: &str) -> Result<Option<OverrideReason>, ApiError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(bad(format!("{at} must be an object with a reason, a userComment, or both"))),
    };
    let reason = match map.get("reason") {
        None | Some(Value::Null) => None,
        Some(value) => Some(coding(value, &format!("{at}.reason"))?),
    };
    let user_comment = non_empty_string(map.get("userComment"), &format!("{at}.userComment"), MAX_COMMENT_CHARS)?;
    if reason.is_none() && user_comment.is_none() {
        return Err(bad(format!("{at} must contain a reason, a userComment, or both")));
    }
    Ok(Some(OverrideReason { reason, user_comment: user_comment.map(str::to_owned) }))
}

fn item(value: &Value, index: usize) -> Result<FeedbackItem, ApiError> {
    let at = format!("feedback[{index}]");
    let Value::Object(map) = value else {
        return Err(bad(format!("{at} must be an object")));
    };
    let card = uuid_field(map.get("card"), &format!("{at}.card"), "a card this service returned")?;
    let outcome_timestamp = match map.get("outcomeTimestamp") {
        None | Some(Value::Null) => return Err(bad(format!("{at}.outcomeTimestamp is required"))),
        Some(Value::String(text)) => OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| bad(format!("{at}.outcomeTimestamp must be an RFC 3339 date-time with an offset")))?,
        Some(_) => return Err(bad(format!("{at}.outcomeTimestamp must be an RFC 3339 date-time with an offset"))),
    };
    let suggestions_at = format!("{at}.acceptedSuggestions");
    let reason_at = format!("{at}.overrideReason");
    let outcome = match map.get("outcome") {
        Some(Value::String(text)) if text == "accepted" => {
            if map.get("overrideReason").is_some_and(|v| !v.is_null()) {
                return Err(bad(format!("{reason_at} is only for an overridden outcome")));
            }
            FeedbackOutcome::Accepted {
                suggestions: accepted_suggestions(map.get("acceptedSuggestions"), &suggestions_at)?,
            }
        }
        Some(Value::String(text)) if text == "overridden" => {
            match map.get("acceptedSuggestions") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) if items.is_empty() => {}
                Some(_) => return Err(bad(format!("{suggestions_at} is only for an accepted outcome"))),
            }
            FeedbackOutcome::Overridden { reason: override_reason(map.get("overrideReason"), &reason_at)? }
        }
        None | Some(Value::Null) => return Err(bad(format!("{at}.outcome is required"))),
        Some(_) => return Err(bad(format!("{at}.outcome must be accepted or overridden"))),
    };
    Ok(FeedbackItem { card, outcome, outcome_timestamp })
}

/// Parses a feedback request body: `{"feedback": [item, ...]}`.
pub fn parse(body: &[u8]) -> Result<Vec<FeedbackItem>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the request body is not valid JSON (line {}, column {})", e.line(), e.column())))?;
    let items = match value.get("feedback") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_ITEMS => items,
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(bad("feedback must list at least one item".into()));
        }
        Some(Value::Array(_)) => return Err(bad(format!("feedback may list at most {MAX_ITEMS} items"))),
        Some(_) => return Err(bad("feedback must be an array of feedback items".into())),
        None => return Err(bad("feedback is required: the request body is {\"feedback\": [...]}".into())),
    };
    items.iter().enumerate().map(|(index, value)| item(value, index)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CARD: &str = "5a0c2a4e-3bc4-4bd0-9a51-b0b7b3f5f9a1";
    const SUGGESTION: &str = "0d3f1f2e-7d2a-4c55-8f63-5e5ad0f2c0b7";

    fn message(body: serde_json::Value) -> String {
        match parse(&serde_json::to_vec(&body).expect("JSON")) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    fn accepted() -> serde_json::Value {
        json!({"card": CARD, "outcome": "accepted", "acceptedSuggestions": [{"id": SUGGESTION}],
               "outcomeTimestamp": "2026-11-24T12:00:00Z"})
    }

    fn overridden() -> serde_json::Value {
        json!({"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-11-24T13:00:00+01:00",
               "overrideReason": {"reason": {"system": "https://popliteal.dev/CodeSystem/override-reason",
                                             "code": "already-done", "display": "Already done"},
                                  "userComment": "duplex yesterday"}})
    }

    #[test]
    fn the_two_outcomes_of_the_spec_are_read() {
        let items = parse(&serde_json::to_vec(&json!({"feedback": [accepted(), overridden()]})).expect("JSON"))
            .expect("valid feedback");
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].outcome,
            FeedbackOutcome::Accepted { suggestions: vec![SUGGESTION.parse().expect("uuid")] }
        );
        assert_eq!(items[0].outcome_timestamp, items[1].outcome_timestamp);
        let FeedbackOutcome::Overridden { reason: Some(reason) } = &items[1].outcome else { panic!("a reason") };
        assert_eq!(reason.reason.as_ref().map(|c| c.code.as_str()), Some("already-done"));
    }

    #[test]
    fn an_override_without_a_reason_is_allowed() {
        let mut item = overridden();
        item.as_object_mut().expect("object").remove("overrideReason");
        assert!(parse(&serde_json::to_vec(&json!({"feedback": [item]})).expect("JSON")).is_ok());
    }

    #[test]
    fn each_error_names_the_item_and_the_field() {
        let mut item = accepted();
        item["card"] = json!("Jane Doe");
        let text = message(json!({"feedback": [accepted(), item]}));
        assert_eq!(text, "feedback[1].card must be the uuid of a card this service returned");
        assert!(!text.contains("Jane"));

        let cases = [
            ("outcome", json!("ignored"), "feedback[0].outcome must be accepted or overridden"),
            ("outcomeTimestamp", json!("yesterday"), "feedback[0].outcomeTimestamp must be an RFC 3339"),
            ("outcomeTimestamp", json!("2026-11-24T12:00:00"), "feedback[0].outcomeTimestamp must be an RFC 3339"),
            ("acceptedSuggestions", json!([]), "feedback[0].acceptedSuggestions must be an array"),
            ("acceptedSuggestions", json!([{"id": "x"}]), "feedback[0].acceptedSuggestions[0].id must be the uuid"),
            ("overrideReason", json!({"userComment": "x"}), "feedback[0].overrideReason is only for an overridden"),
        ];
        for (field, value, expected) in cases {
            let mut item = accepted();
            item[field] = value;
            let text = message(json!({"feedback": [item]}));
            assert!(text.starts_with(expected), "{field}: {text}");
        }
        let mut item = accepted();
        item.as_object_mut().expect("object").remove("acceptedSuggestions");
        assert_eq!(
            message(json!({"feedback": [item]})),
            "feedback[0].acceptedSuggestions is required when the outcome is accepted"
        );
    }

    #[test]
    fn an_override_reason_must_hold_a_reason_or_a_comment_and_a_reason_is_a_full_coding() {
        let mut item = overridden();
        item["overrideReason"] = json!({});
        assert!(message(json!({"feedback": [item]})).contains("must contain a reason, a userComment, or both"));
        let mut item = overridden();
        item["overrideReason"]["reason"] = json!({"code": "already-done"});
        assert_eq!(message(json!({"feedback": [item]})), "feedback[0].overrideReason.reason.system is required");
        let mut item = overridden();
        item["acceptedSuggestions"] = json!([{"id": SUGGESTION}]);
        assert!(message(json!({"feedback": [item]})).contains("only for an accepted outcome"));
    }

    #[test]
    fn the_envelope_is_checked() {
        assert!(message(json!({})).starts_with("feedback is required"));
        assert!(message(json!({"feedback": []})).contains("at least one item"));
        assert!(message(json!({"feedback": {"card": CARD}})).contains("must be an array"));
        assert!(message(json!({"feedback": ["Jane"]})).starts_with("feedback[0] must be an object"));
        match parse(b"{\"feedback\": [") {
            Err(ApiError::BadRequest(text)) => assert!(text.starts_with("the request body is not valid JSON")),
            other => panic!("{other:?}"),
        }
    }
}
