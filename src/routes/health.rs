use std::time::Duration;

use actix_web::{HttpResponse, web};

use crate::catalogue::ServiceKind;
use crate::error::ApiError;
use crate::startup::AppState;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process answers.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the catalogue is loaded and the database answers (within 2 s). Otherwise 503 with an
/// OperationOutcome (`transient`, `Retry-After: 5`; the reason is logged, not sent). Hook calls
/// would still be answered, but feedback would not: a load balancer should wait. The body counts
/// this process's audit records: written, the spool's backlog (records and bytes waiting for the
/// database), lost (a spool that could not be written) and rejected, so an operator sees a
/// database falling behind before anything is lost.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !ServiceKind::ALL.iter().all(|kind| state.catalogue.find(kind.id()).is_some()) {
        return Err(ApiError::Unavailable("readiness: the service catalogue is not loaded".into()));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {
            let audit = state.auditor.counts();
            Ok(HttpResponse::Ok().json(serde_json::json!({
                "status": "ready",
                "audit": {
                    "written": audit.written,
                    "backlog": { "records": audit.backlog_records, "bytes": audit.backlog_bytes },
                    "lost": audit.lost,
                    "rejected": audit.rejected,
                },
            })))
        }
        Ok(Err(error)) => Err(ApiError::Unavailable(format!("readiness: {error}"))),
        Err(_) => Err(ApiError::Unavailable("readiness: the database did not answer within 2 s".into())),
    }
}
