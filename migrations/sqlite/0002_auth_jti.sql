-- The jti table of PostgreSQL (../postgres/0002_auth_jti.sql), kept here so both backends have
-- the same tables and schema versions. With SQLite (one process) the service keeps its replay
-- cache in memory and does not use this table.
CREATE TABLE auth_jti (
    iss        TEXT NOT NULL,
    jti        TEXT NOT NULL,
    -- seconds since the Unix epoch after which the row may be forgotten (exp + clock skew)
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE INDEX auth_jti_expires_at ON auth_jti (expires_at);
