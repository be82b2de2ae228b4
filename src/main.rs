use popliteal::configuration::Settings;
use popliteal::startup::Application;
use popliteal::telemetry;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("popliteal: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log);
    let application = match Application::build(&settings) {
        Ok(application) => application,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(
        host = %settings.server.host,
        port = application.port(),
        environment = settings.environment.as_str(),
        "popliteal listening"
    );
    match application.run_until_stopped().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
