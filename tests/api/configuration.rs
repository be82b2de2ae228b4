//! Starting the service: where its configuration comes from, and what stops the start (and says
//! why) instead of a service that runs but cannot work.

use std::path::Path;
use std::process::{Command, Stdio};

use popliteal::startup::Application;

use crate::support::test_settings;

/// Runs the service binary in `folder` with `variables`; it must exit at once. Its exit status
/// and what it wrote on stderr.
fn start_and_fail(folder: &Path, variables: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_popliteal"))
        .current_dir(folder)
        .env_remove("APP_CONFIG_DIR")
        .env("APP_ENVIRONMENT", "test")
        .env("POPLITEAL__SERVER__PORT", "0")
        .envs(variables.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the service binary runs");
    assert!(!output.status.success(), "the service must refuse to start");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A copy of the shipped configuration folder in `folder`.
fn copy_configuration(folder: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for entry in std::fs::read_dir(shipped).expect("the shipped config folder") {
        let entry = entry.expect("an entry");
        std::fs::copy(entry.path(), folder.join(entry.file_name())).expect("copied");
    }
}

#[test]
fn the_service_run_outside_its_repository_without_app_config_dir_refuses_naming_the_variable() {
    let elsewhere = tempfile::tempdir().expect("a temporary folder");
    let stderr = start_and_fail(elsewhere.path(), &[]);
    assert!(stderr.contains("APP_CONFIG_DIR"), "{stderr}");
    assert!(stderr.contains("default.toml"), "{stderr}");
}

#[test]
fn the_configuration_folder_comes_from_app_config_dir_and_a_misspelt_key_in_it_is_named_with_its_file() {
    let elsewhere = tempfile::tempdir().expect("a temporary folder");
    let folder = tempfile::tempdir().expect("a configuration folder");
    copy_configuration(folder.path());
    let test_file = folder.path().join("test.toml");
    let mut text = std::fs::read_to_string(&test_file).expect("test.toml");
    text.push_str("\n[fhir]\nalowed_origins = [\"https://ehr.example.org\"]\n");
    std::fs::write(&test_file, text).expect("written");
    let directory = folder.path().to_str().expect("a UTF-8 path");
    let stderr = start_and_fail(elsewhere.path(), &[("APP_CONFIG_DIR", directory)]);
    assert!(stderr.contains("fhir.alowed_origins"), "the key is named: {stderr}");
    assert!(stderr.contains(&test_file.display().to_string()), "the file is named: {stderr}");
}

#[test]
fn a_zero_from_a_variable_is_refused_naming_the_key_and_the_variable() {
    let crate_folder = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stderr = start_and_fail(crate_folder, &[("POPLITEAL__LIMITS__BURST", "0")]);
    assert!(stderr.contains("limits.burst"), "{stderr}");
    assert!(stderr.contains("POPLITEAL__LIMITS__BURST"), "{stderr}");
}

#[tokio::test]
async fn a_sqlite_file_in_a_folder_that_does_not_exist_stops_the_start_naming_database_url() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let missing = folder.path().join("not-there").join("popliteal.db");
    let settings = test_settings(|settings| {
        settings.database.url = format!("sqlite://{}", missing.display()).into();
    });
    let error = Application::build(&settings).err().expect("the start is refused").to_string();
    assert!(error.contains("database.url"), "{error}");
    assert!(error.contains("not-there"), "the path is named: {error}");
}
