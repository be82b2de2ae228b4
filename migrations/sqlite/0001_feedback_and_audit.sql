-- Feedback and the audit trail of hook calls (SQLite). The PostgreSQL twin is
-- ../postgres/0001_feedback_and_audit.sql: same tables, columns and meaning.
-- Times are microseconds since the Unix epoch (UTC). No patient data: the patient is a keyed hash.

-- One row per evaluated hook call.
CREATE TABLE audit_invocation (
    invocation_id TEXT PRIMARY KEY,
    hook_instance TEXT NOT NULL,
    service_id    TEXT NOT NULL,
    hook          TEXT NOT NULL,
    invoked_at    INTEGER NOT NULL,
    rules_version TEXT NOT NULL,
    -- hex HMAC-SHA256 of context.patientId under audit.patient_hash_key
    patient_hash  TEXT NOT NULL,
    latency_us    INTEGER NOT NULL
);
CREATE INDEX audit_invocation_service_time ON audit_invocation (service_id, invoked_at);
CREATE INDEX audit_invocation_hook_instance ON audit_invocation (hook_instance);

-- Where each prefetch key's data came from: prefetch | fetched | absent | failed.
CREATE TABLE audit_data_source (
    invocation_id TEXT NOT NULL REFERENCES audit_invocation (invocation_id) ON DELETE CASCADE,
    data_key      TEXT NOT NULL,
    origin        TEXT NOT NULL,
    PRIMARY KEY (invocation_id, data_key)
);

-- Every card answered, in order; feedback joins here on card_uuid.
CREATE TABLE audit_card (
    card_uuid     TEXT PRIMARY KEY,
    invocation_id TEXT NOT NULL REFERENCES audit_invocation (invocation_id) ON DELETE CASCADE,
    service_id    TEXT NOT NULL,
    position      INTEGER NOT NULL,
    topic         TEXT NOT NULL,
    indicator     TEXT NOT NULL,
    shown_at      INTEGER NOT NULL
);
CREATE INDEX audit_card_service_time ON audit_card (service_id, shown_at);
CREATE INDEX audit_card_invocation ON audit_card (invocation_id);

CREATE TABLE audit_suggestion (
    suggestion_uuid TEXT PRIMARY KEY,
    card_uuid       TEXT NOT NULL REFERENCES audit_card (card_uuid) ON DELETE CASCADE
);
CREATE INDEX audit_suggestion_card ON audit_suggestion (card_uuid);

-- One row per feedback item; the same item (card, outcome, outcome time) is stored once. An item
-- whose card_uuid is not in audit_card is about a card the trail does not hold: marked when read
-- (a join, so an audit record written after its feedback clears the mark).
CREATE TABLE feedback (
    feedback_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id     TEXT NOT NULL,
    card_uuid      TEXT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    outcome_at     INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    reason_system  TEXT,
    reason_code    TEXT,
    reason_display TEXT,
    user_comment   TEXT,
    UNIQUE (card_uuid, outcome, outcome_at)
);
CREATE INDEX feedback_service_time ON feedback (service_id, outcome_at);
CREATE INDEX feedback_received ON feedback (received_at);

CREATE TABLE feedback_suggestion (
    feedback_id   INTEGER NOT NULL REFERENCES feedback (feedback_id) ON DELETE CASCADE,
    suggestion_id TEXT NOT NULL,
    PRIMARY KEY (feedback_id, suggestion_id)
);
