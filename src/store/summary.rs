//! The feedback summary: cards shown in a time window, by topic and indicator, and what the
//! clinicians did with them (accepted, overridden and why), so override rates per topic can be read.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Store, StoreError, micros};
use crate::terminology::Coding;

/// Counts for cards shown in `[from, to)` and the feedback on them. Feedback is counted by the
/// card it answers, whenever it came; feedback about cards the audit trail does not hold is
/// counted apart, by its outcomeTimestamp.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub service_id: String,
    pub from: String,
    pub to: String,
    /// Hook calls answered.
    pub invocations: i64,
    /// Cards shown.
    pub cards: i64,
    pub accepted: i64,
    pub overridden: i64,
    pub feedback_on_unknown_cards: i64,
    /// Most urgent first, then by number of cards.
    pub topics: Vec<TopicSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicSummary {
    pub topic: String,
    pub indicator: String,
    pub cards: i64,
    pub accepted: i64,
    pub overridden: i64,
    /// overridden / (accepted + overridden); absent without feedback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_rate: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub override_reasons: Vec<OverrideReasonCount>,
    /// Overrides with a comment only, or nothing.
    pub overridden_without_reason: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverrideReasonCount {
    pub reason: Coding,
    pub count: i64,
}

fn rank(indicator: &str) -> u8 {
    match indicator {
        "critical" => 0,
        "warning" => 1,
        "info" => 2,
        _ => 3,
    }
}

fn rfc3339(instant: OffsetDateTime) -> String {
    instant.format(&Rfc3339).unwrap_or_default()
}

impl Store {
    pub async fn summary(
        &self,
        service_id: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Summary, StoreError> {
        self.migrate().await?;
        let (start, end) = (micros(from), micros(to));
        let invocations: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_invocation WHERE service_id = $1 AND invoked_at >= $2 AND invoked_at < $3",
        )
        .bind(service_id)
        .bind(start)
        .bind(end)
        .fetch_one(&self.pool)
        .await?;
        let mut topics: BTreeMap<(String, String), TopicSummary> = BTreeMap::new();
        let card_rows = sqlx::query(
            "SELECT topic, indicator, COUNT(*) AS cards FROM audit_card \
             WHERE service_id = $1 AND shown_at >= $2 AND shown_at < $3 GROUP BY topic, indicator",
        )
        .bind(service_id)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        for row in card_rows {
            let (topic, indicator): (String, String) = (row.try_get("topic")?, row.try_get("indicator")?);
            topics.insert(
                (topic.clone(), indicator.clone()),
                TopicSummary {
                    topic,
                    indicator,
                    cards: row.try_get("cards")?,
                    accepted: 0,
                    overridden: 0,
                    override_rate: None,
                    override_reasons: Vec::new(),
                    overridden_without_reason: 0,
                },
            );
        }
        let outcome_rows = sqlx::query(
            "SELECT c.topic, c.indicator, f.outcome, COUNT(*) AS items FROM feedback f \
             JOIN audit_card c ON c.card_uuid = f.card_uuid \
             WHERE c.service_id = $1 AND c.shown_at >= $2 AND c.shown_at < $3 \
             GROUP BY c.topic, c.indicator, f.outcome",
        )
        .bind(service_id)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        for row in outcome_rows {
            let key: (String, String) = (row.try_get("topic")?, row.try_get("indicator")?);
            let outcome: String = row.try_get("outcome")?;
            let items: i64 = row.try_get("items")?;
            if let Some(summary) = topics.get_mut(&key) {
                match outcome.as_str() {
                    "accepted" => summary.accepted += items,
                    _ => summary.overridden += items,
                }
            }
        }
        let reason_rows = sqlx::query(
            "SELECT c.topic, c.indicator, f.reason_system, f.reason_code, MAX(f.reason_display) AS display, \
             COUNT(*) AS items FROM feedback f JOIN audit_card c ON c.card_uuid = f.card_uuid \
             WHERE c.service_id = $1 AND c.shown_at >= $2 AND c.shown_at < $3 \
             AND f.outcome = 'overridden' AND f.reason_code IS NOT NULL \
             GROUP BY c.topic, c.indicator, f.reason_system, f.reason_code",
        )
        .bind(service_id)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        for row in reason_rows {
            let key: (String, String) = (row.try_get("topic")?, row.try_get("indicator")?);
            if let Some(summary) = topics.get_mut(&key) {
                summary.override_reasons.push(OverrideReasonCount {
                    reason: Coding {
                        system: row.try_get::<Option<String>, _>("reason_system")?.unwrap_or_default(),
                        code: row.try_get("reason_code")?,
                        display: row.try_get("display")?,
                    },
                    count: row.try_get("items")?,
                });
            }
        }
        let unknown: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM feedback f WHERE f.service_id = $1 AND f.outcome_at >= $2 AND f.outcome_at < $3 \
             AND NOT EXISTS (SELECT 1 FROM audit_card c WHERE c.card_uuid = f.card_uuid)",
        )
        .bind(service_id)
        .bind(start)
        .bind(end)
        .fetch_one(&self.pool)
        .await?;
        let mut topics: Vec<TopicSummary> = topics.into_values().collect();
        for topic in &mut topics {
            topic
                .override_reasons
                .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.code.cmp(&b.reason.code)));
            let with_reason: i64 = topic.override_reasons.iter().map(|r| r.count).sum();
            topic.overridden_without_reason = topic.overridden - with_reason;
            let answered = topic.accepted + topic.overridden;
            if answered > 0 {
                // Counts are far below 2^52: exact as f64.
                #[allow(clippy::cast_precision_loss)]
                let rate = topic.overridden as f64 / answered as f64;
                topic.override_rate = Some((rate * 1000.0).round() / 1000.0);
            }
        }
        topics.sort_by(|a, b| {
            rank(&a.indicator)
                .cmp(&rank(&b.indicator))
                .then_with(|| b.cards.cmp(&a.cards))
                .then_with(|| a.topic.cmp(&b.topic))
        });
        Ok(Summary {
            service_id: service_id.to_owned(),
            from: rfc3339(from),
            to: rfc3339(to),
            invocations,
            cards: topics.iter().map(|t| t.cards).sum(),
            accepted: topics.iter().map(|t| t.accepted).sum(),
            overridden: topics.iter().map(|t| t.overridden).sum(),
            feedback_on_unknown_cards: unknown,
            topics,
        })
    }
}
