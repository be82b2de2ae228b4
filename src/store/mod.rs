//! Feedback and audit persistence: the only module with SQL.
//!
//! One implementation on sqlx's `Any` driver serves both backends: SQLite (the embedded default,
//! a file in WAL mode with `synchronous = FULL`, created on start whether or not the URL says
//! `mode=rwc`; its folder must exist, or the start stops) and PostgreSQL (when
//! `database.url` is `postgres://...`). The statements are portable: `$1` placeholders (SQLite
//! reads them too), times as integer microseconds since the Unix epoch, uuids and codes as text,
//! no booleans. Only the DDL differs, so each backend has its own migrations folder
//! (`migrations/sqlite`, `migrations/postgres`), embedded in the binary.
//!
//! The pool connects lazily: the service starts, and answers hook calls, while the database is
//! down. Migrations run at start and again before the first statement after a failure, so a
//! database that comes back later is set up then. Errors that mean "not now" (connection refused,
//! no such database, locked, read-only, disk full, timeouts) are [`StoreError::Unavailable`]
//! (a 503); the rest are [`StoreError::Failed`] (a 500).

mod audit;
mod feedback;
mod jti;
mod retention;
mod summary;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::{Any, Executor, SqlSafeStr, Transaction};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::configuration::DatabaseSettings;
use crate::error::ApiError;

pub use feedback::{FeedbackReceipt, StoredFeedback};
pub use retention::Purged;
pub use summary::{OverrideReasonCount, Summary, TopicSummary};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or written for now: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a broken database.
    #[error("database failure: {0}")]
    Failed(String),
    /// The URL is not one this service can use.
    #[error("database.url must start with sqlite: or postgres://")]
    UnsupportedUrl,
    /// The URL has the right scheme but cannot be read (the reason never quotes the URL).
    #[error("database.url cannot be used: {0}")]
    InvalidUrl(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// SQLite primary result codes that mean "not now": BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
const SQLITE_UNAVAILABLE: &[i64] = &[5, 6, 8, 10, 13, 14];

/// PostgreSQL SQLSTATEs (or their classes) that mean "not now".
fn postgres_unavailable(state: &str) -> bool {
    // 08 connection exception, 53 insufficient resources, 57P0x shutdown / cannot connect now,
    // 3D000 no such database, 28 authorization (a misconfigured or rotated password), 25006
    // read-only transaction (a standby), 40001 / 40P01 serialization failure / deadlock.
    ["08", "53", "57P", "28"].iter().any(|class| state.starts_with(class))
        || ["3D000", "25006", "40001", "40P01"].contains(&state)
}

impl StoreError {
    fn of(error: sqlx::Error) -> StoreError {
        let detail = error.to_string();
        let unavailable = match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::BeginFailed => true,
            sqlx::Error::Database(database) => match database.code() {
                Some(code) => match code.parse::<i64>() {
                    Ok(sqlite) => SQLITE_UNAVAILABLE.contains(&(sqlite & 0xff)),
                    Err(_) => postgres_unavailable(&code),
                },
                None => false,
            },
            _ => false,
        };
        if unavailable { StoreError::Unavailable(detail) } else { StoreError::Failed(detail) }
    }

    fn of_migration(error: MigrateError) -> StoreError {
        match error {
            MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _) => StoreError::of(error),
            other => StoreError::Failed(format!("migrations: {other}")),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        StoreError::of(error)
    }
}

/// The embedded migrations: (version, description, SQL) per backend. A test checks that this list
/// matches the files in `migrations/`.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "feedback and audit", include_str!("../../migrations/sqlite/0001_feedback_and_audit.sql")),
    (2, "auth jti", include_str!("../../migrations/sqlite/0002_auth_jti.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "feedback and audit", include_str!("../../migrations/postgres/0001_feedback_and_audit.sql")),
    (2, "auth jti", include_str!("../../migrations/postgres/0002_auth_jti.sql")),
];

fn migrator(backend: Backend) -> Migrator {
    let list = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    Migrator::with_migrations(
        list.iter()
            .map(|(version, description, sql)| {
                Migration::new(*version, Cow::Borrowed(*description), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

/// How often `migrate` runs the migrator when it fails for another reason than unavailability.
const MIGRATION_ATTEMPTS: u32 = 3;

/// Microseconds since the Unix epoch: how times are stored.
pub(crate) fn micros(instant: OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_micros(value: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(value) * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The store: a connection pool and whether the schema is known to be in place.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    migrated: Arc<OnceCell<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish_non_exhaustive()
    }
}

fn is_memory(url: &str) -> bool {
    url == "sqlite::memory:" || url.starts_with("sqlite::memory:?") || url.contains("mode=memory")
}

/// The file a SQLite URL names (`sqlite://path`, `sqlite:path`; a query string after `?`).
fn sqlite_path(url: &str) -> &Path {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    Path::new(rest.split('?').next().unwrap_or(rest))
}

/// A SQLite file URL that names no `mode` gets `mode=rwc`: the file is created when missing
/// (without it SQLite only opens an existing file, and every write would be a 503).
fn creating_when_missing(url: &str) -> Cow<'_, str> {
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or_default();
    if query.split('&').any(|pair| pair.starts_with("mode=")) {
        Cow::Borrowed(url)
    } else if url.contains('?') {
        Cow::Owned(format!("{url}&mode=rwc"))
    } else {
        Cow::Owned(format!("{url}?mode=rwc"))
    }
}

/// The folder of a SQLite file must exist and be writable: a missing one is a mistake in
/// `database.url`, not a database that is down for now, so the start stops and says so.
fn check_sqlite_folder(file: &Path) -> Result<(), StoreError> {
    let folder = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let metadata = std::fs::metadata(folder).map_err(|error| {
        StoreError::InvalidUrl(format!("the folder of the SQLite file {} cannot be used: {error}", file.display()))
    })?;
    if !metadata.is_dir() {
        return Err(StoreError::InvalidUrl(format!("{} is not a folder", folder.display())));
    }
    if metadata.permissions().readonly() {
        return Err(StoreError::InvalidUrl(format!(
            "the folder of the SQLite file {} is not writable",
            file.display()
        )));
    }
    Ok(())
}

impl Store {
    /// A pool for `database.url`. Connects lazily: this fails only on a URL it cannot use, or a
    /// SQLite file whose folder is missing or read-only (I/O, so checked here at start rather than
    /// when the settings load). Must be called inside a tokio runtime (the pool starts its
    /// maintenance task).
    pub fn connect(settings: &DatabaseSettings) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let url = settings.url.expose_secret();
        let backend = Backend::of_url(url).ok_or(StoreError::UnsupportedUrl)?;
        let timeout = Duration::from_millis(settings.timeout_ms.get());
        let mut options =
            AnyPoolOptions::new().max_connections(settings.max_connections.get()).acquire_timeout(timeout);
        let memory = backend == Backend::Sqlite && is_memory(url);
        let url = if backend == Backend::Sqlite && !memory {
            check_sqlite_folder(sqlite_path(url))?;
            creating_when_missing(url)
        } else {
            Cow::Borrowed(url)
        };
        if backend == Backend::Sqlite {
            let busy_ms = settings.timeout_ms.get();
            options = options.after_connect(move |connection, _| {
                Box::pin(async move {
                    // WAL: readers never wait for the writer. FULL: a commit is on disk when it
                    // returns, so an acknowledged item survives a crash or a power cut.
                    connection.execute("PRAGMA journal_mode = WAL").await?;
                    connection.execute("PRAGMA synchronous = FULL").await?;
                    connection.execute("PRAGMA foreign_keys = ON").await?;
                    let busy = format!("PRAGMA busy_timeout = {busy_ms}");
                    connection.execute(sqlx::AssertSqlSafe(busy)).await?;
                    if memory {
                        // Each connection to `sqlite::memory:` is a new, private database: set
                        // it up now (it lives as long as the connection; no migration history).
                        for (_, _, sql) in SQLITE_MIGRATIONS {
                            sqlx::raw_sql(*sql).execute(&mut *connection).await?;
                        }
                    }
                    Ok(())
                })
            });
        }
        if memory {
            // One connection, kept for the life of the pool: it is the database.
            options = options.max_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = match backend {
            Backend::Sqlite => options.connect_lazy(&url),
            Backend::Postgres => {
                tracing::info!(sslmode = settings.effective_sslmode().as_str(), "database: PostgreSQL");
                let url = settings.connect_url().map_err(StoreError::InvalidUrl)?;
                options.connect_lazy(url.expose_secret())
            }
        }
        .map_err(|error| StoreError::InvalidUrl(error.to_string()))?;
        let migrated = Arc::new(OnceCell::new());
        if memory {
            let _ = migrated.set(());
        }
        Ok(Store { pool, backend, migrated })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs the migrations once the database answers; later calls return at once. A failure is
    /// not remembered: the next call tries again.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| async {
                let migrator = migrator(self.backend);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match migrator.run(&self.pool).await.map_err(StoreError::of_migration) {
                        Ok(()) => break,
                        // SQLite has no migration lock: two processes (or pools) starting on a new
                        // file race, and the loser's migration fails ("table ... already exists",
                        // or the version row taken). Its transaction rolled back; run again, and
                        // the version is then found applied.
                        Err(StoreError::Failed(_)) if attempt < MIGRATION_ATTEMPTS => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(error) => return Err(error),
                    }
                }
                tracing::info!(backend = self.backend.as_str(), "database schema is up to date");
                Ok::<(), StoreError>(())
            })
            .await
            .map(|_| ())
    }

    /// A transaction that writes. SQLite takes the write lock at once (`BEGIN IMMEDIATE`), so the
    /// busy timeout applies instead of a mid-transaction "database is locked".
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        self.migrate().await?;
        let transaction = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(transaction)
    }

    /// Whether the database answers now (for readiness checks and tests).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.migrate().await?;
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether a connection of this pool to the database is encrypted (TLS): PostgreSQL's
    /// `pg_stat_ssl` for the connection that asks; SQLite, a file, is never.
    pub async fn encrypted(&self) -> Result<bool, StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(false);
        }
        let encrypted: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl")
                .fetch_one(&self.pool)
                .await?;
        Ok(encrypted == 1)
    }

    /// Closes the pool: waits for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(folder: &str) -> Vec<String> {
        let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(folder);
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .expect("the migrations folder")
            .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_migration_file_is_embedded_for_both_backends() {
        for (folder, list) in [("sqlite", SQLITE_MIGRATIONS), ("postgres", POSTGRES_MIGRATIONS)] {
            let embedded: Vec<String> = list
                .iter()
                .map(|(version, description, _)| format!("{version:04}_{}.sql", description.replace(' ', "_")))
                .collect();
            assert_eq!(files(folder), embedded, "{folder}");
        }
        assert_eq!(SQLITE_MIGRATIONS.len(), POSTGRES_MIGRATIONS.len(), "the backends keep the same schema versions");
    }

    #[test]
    fn a_sqlite_file_url_without_a_mode_creates_the_file_and_one_with_a_mode_keeps_it() {
        assert_eq!(creating_when_missing("sqlite://data/p.db"), "sqlite://data/p.db?mode=rwc");
        assert_eq!(creating_when_missing("sqlite://p.db?cache=shared"), "sqlite://p.db?cache=shared&mode=rwc");
        assert_eq!(creating_when_missing("sqlite://p.db?mode=ro"), "sqlite://p.db?mode=ro");
        assert_eq!(sqlite_path("sqlite:///var/lib/p.db?mode=rwc"), Path::new("/var/lib/p.db"));
        assert_eq!(sqlite_path("sqlite:p.db"), Path::new("p.db"));
    }

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of_url("sqlite://popliteal.db?mode=rwc"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://postgres@127.0.0.1:5432/test"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("mysql://x"), None);
    }

    #[test]
    fn connection_and_lock_errors_are_unavailable_and_others_are_failures() {
        assert!(matches!(StoreError::of(sqlx::Error::PoolTimedOut), StoreError::Unavailable(_)));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(StoreError::of(sqlx::Error::Io(refused)), StoreError::Unavailable(_)));
        assert!(matches!(StoreError::of(sqlx::Error::RowNotFound), StoreError::Failed(_)));
        assert!(postgres_unavailable("08006") && postgres_unavailable("3D000") && postgres_unavailable("57P01"));
        assert!(!postgres_unavailable("23505") && !postgres_unavailable("42P01"));
    }

    #[test]
    fn times_round_trip_through_microseconds() {
        let instant = time::macros::datetime!(2026-11-24 12:34:56.789012 UTC);
        assert_eq!(from_micros(micros(instant)), instant);
    }
}
