-- The jti of every accepted EHR token until it expires (PostgreSQL): one table all replicas
-- share, so a token replayed to another replica is refused. The SQLite twin is
-- ../sqlite/0002_auth_jti.sql (SQLite keeps the in-process cache; the table keeps the schema
-- versions equal). Expired rows are purged with the retention purge.
CREATE TABLE auth_jti (
    iss        TEXT NOT NULL,
    jti        TEXT NOT NULL,
    -- seconds since the Unix epoch after which the row may be forgotten (exp + clock skew)
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE INDEX auth_jti_expires_at ON auth_jti (expires_at);
