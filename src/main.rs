use popliteal::configuration::Settings;
use popliteal::startup::Application;
use popliteal::telemetry::Telemetry;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("popliteal: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let telemetry = match Telemetry::start(&settings) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("popliteal: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    telemetry.install_subscriber(&settings.log);
    match popliteal::startup::raise_open_file_limit() {
        Ok(limit) => tracing::info!(open_files_limit = limit, "open-file limit raised to the hard limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let application = match Application::build(&settings) {
        Ok(application) => application,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            telemetry.shutdown();
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(
        host = %settings.server.host,
        port = application.port(),
        environment = settings.environment.as_str(),
        otlp_export = telemetry.is_exporting(),
        "popliteal listening"
    );
    // SIGTERM / SIGINT: actix lets in-flight requests finish, then the audit queue is written out
    // (inside run_until_stopped), then the spans and metrics still buffered are exported.
    let result = application.run_until_stopped().await;
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
