//! The card wording of `cds-hooks/cards.toml`, embedded at build time and checked at start.

use std::collections::HashMap;

use serde::Deserialize;

use crate::knee::question::Question;
use crate::terminology::Coding;

#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TopicWording {
    pub display: String,
    pub references: Vec<String>,
    pub override_reasons: Vec<String>,
    #[serde(flatten)]
    texts: HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Wording {
    pub topic_system: String,
    pub override_system: String,
    pub source_label: String,
    pub topic_order: Vec<String>,
    references: HashMap<String, Reference>,
    override_reasons: HashMap<String, String>,
    findings: HashMap<String, String>,
    phrases: HashMap<String, String>,
    #[serde(flatten)]
    topics: HashMap<String, TopicWording>,
}

#[derive(Debug, thiserror::Error)]
pub enum WordingError {
    #[error("cards.toml is not valid: {0}")]
    Invalid(#[from] toml::de::Error),
    #[error("cards.toml: {0}")]
    Incomplete(String),
}

const CARDS_FILE: &str = include_str!("../../cds-hooks/cards.toml");

/// Fills `{name}` placeholders.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

impl Wording {
    pub fn embedded() -> Result<Wording, WordingError> {
        let wording: Wording = toml::from_str(CARDS_FILE)?;
        for topic in &wording.topic_order {
            let t =
                wording.topics.get(topic).ok_or_else(|| WordingError::Incomplete(format!("no section [{topic}]")))?;
            for reference in &t.references {
                if !wording.references.contains_key(reference) {
                    return Err(WordingError::Incomplete(format!("[{topic}] cites unknown reference {reference}")));
                }
            }
            for reason in &t.override_reasons {
                if !wording.override_reasons.contains_key(reason) {
                    return Err(WordingError::Incomplete(format!("[{topic}] names unknown override reason {reason}")));
                }
            }
        }
        for question in Question::ALL {
            if !wording.findings.contains_key(question.link_id()) {
                return Err(WordingError::Incomplete(format!("[findings] lacks {}", question.link_id())));
            }
        }
        Ok(wording)
    }

    pub fn topic(&self, topic: &str) -> &TopicWording {
        // Every topic the builder uses is listed in topic_order, checked at load.
        &self.topics[topic]
    }

    /// A text of a topic's section; a missing one shows as a visible marker (tests look for it).
    pub fn text(&self, topic: &str, key: &str) -> &str {
        self.topics.get(topic).and_then(|t| t.texts.get(key)).map_or("[missing wording]", String::as_str)
    }

    pub fn phrase(&self, key: &str) -> &str {
        self.phrases.get(key).map_or("[missing wording]", String::as_str)
    }

    pub fn finding(&self, question: Question) -> &str {
        self.findings.get(question.link_id()).map_or(question.link_id(), String::as_str)
    }

    pub fn reference(&self, key: &str) -> Option<&Reference> {
        self.references.get(key)
    }

    pub fn override_reason(&self, code: &str) -> Coding {
        Coding {
            system: self.override_system.clone(),
            code: code.to_owned(),
            display: self.override_reasons.get(code).cloned(),
        }
    }

    /// The position of a topic in the display order.
    pub fn rank(&self, topic: &str) -> usize {
        self.topic_order.iter().position(|t| t == topic).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_wording_loads_and_covers_every_topic_and_finding() {
        let wording = Wording::embedded().expect("cards.toml is complete");
        assert_eq!(wording.topic_order.len(), 15);
        assert_eq!(wording.finding(Question::CalfPain), "calf pain or tenderness");
    }

    #[test]
    fn placeholders_are_filled_by_name() {
        assert_eq!(fill("Wells {score}{side}", &[("score", "3"), ("side", " (left leg)")]), "Wells 3 (left leg)");
    }
}
