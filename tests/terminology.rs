//! Every ICD-10-CM code of the project's code lists is in the CMS tabular list: the check
//! `scripts/terminology/verify_icd10cm.py` (PyPI `simple-icd-10-cm`, which ships the list) runs
//! here, and so does its self-test, which proves the check fails on an invented code, a dropped
//! family member or an undeclared retired code.
//!
//! The interpreter is `POPLITEAL_PYTHON` (`.ci/run` points it at a virtualenv with
//! `simple-icd-10-cm==1.5.0`), else `python3`. Without the package the check exits 2 and this
//! test fails, saying how to install it: the codes are never taken as verified unchecked.

use std::path::Path;
use std::process::Command;

fn python() -> String {
    std::env::var("POPLITEAL_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn run_check(arguments: &[&str]) -> (i32, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python())
        .arg(root.join("scripts/terminology/verify_icd10cm.py"))
        .args(arguments)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (set POPLITEAL_PYTHON, or run .ci/run): {e}", python()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

fn assert_ran(code: i32, text: &str) {
    assert_ne!(
        code,
        2,
        "simple-icd-10-cm is not installed for {}: `pip install simple-icd-10-cm==1.5.0` into it, or run .ci/run \
         (which makes a virtualenv and sets POPLITEAL_PYTHON)\n{text}",
        python()
    );
}

#[test]
fn every_icd_10_cm_code_of_the_lists_is_in_the_cms_tabular_list() {
    let (code, text) = run_check(&[]);
    assert_ran(code, &text);
    assert_eq!(code, 0, "{text}");
    let summary = text.lines().last().unwrap_or_default();
    assert!(summary.starts_with("verified ") && summary.contains("simple-icd-10-cm 1.5.0"), "{text}");
    let count: usize = summary.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(count > 3000, "the lists hold thousands of ICD-10-CM codes, the check saw {count}: {text}");
}

#[test]
fn the_icd_10_cm_check_fails_on_an_invented_code_a_dropped_family_member_and_an_undeclared_retired_code() {
    let (code, text) = run_check(&["--self-test"]);
    assert_ran(code, &text);
    assert_eq!(code, 0, "the self-test found a broken copy the check let through:\n{text}");
}
