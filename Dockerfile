# Multi-stage build: the service is one static-ish binary; the cds-hooks/ data (catalogue,
# Questionnaire, code lists, card wording) and the migrations are embedded in it at compile time.
# Only the configuration files are read at run time (from /app/config).
#
# The builder is the Debian bookworm variant of rust:1.95 so the binary links against the same
# glibc as the runtime image.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin popliteal \
 && cp target/release/popliteal /usr/local/bin/popliteal

FROM debian:bookworm-slim
# ca-certificates for https (EHR key sets, FHIR servers); curl for the container healthcheck.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin popliteal \
 && mkdir -p /var/lib/popliteal/spool && chown -R popliteal:popliteal /var/lib/popliteal
WORKDIR /app
COPY --from=builder /usr/local/bin/popliteal /usr/local/bin/popliteal
COPY config /app/config
USER popliteal:popliteal
ENV APP_ENVIRONMENT=production APP_CONFIG_DIR=/app/config
# The audit spool (records wait here for the database): mount a volume that outlives the container.
ENV POPLITEAL__AUDIT__SPOOL_DIR=/var/lib/popliteal/spool
VOLUME /var/lib/popliteal
EXPOSE 8080
# Liveness here; compose (and an orchestrator) should gate traffic on /ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
# SIGTERM: in-flight requests finish, the audit spool is synced and drained (5 s), telemetry is flushed.
STOPSIGNAL SIGTERM
CMD ["popliteal"]
