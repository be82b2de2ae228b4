//! A deployment's own codes: local codes (and any others) added to the shipped lists by a file
//! the configuration names (`terminology.site_codes_file`), read once at start. One code per
//! line:
//!
//! ```text
//! # list            system                               code       [side=left|right|both] [display]
//! active-cancer     https://ehr.example.org/problem-list  ONC-0042   Colon cancer (local)
//! baker-support     https://ehr.example.org/problem-list  KNEE-OA-R  side=right  Osteoarthritis, right knee
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. A line naming a list the service does not
//! read, a system that is not an absolute URI, a malformed code (an ICD-10-CM code must look like
//! one) or an unknown side stops the service at start, naming the file and the line.

use std::path::Path;

use super::TerminologyError;
use super::value_sets::{CodeList, ICD_10_CM};
use crate::knee::question::Side;

/// One line of a site's codes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCode {
    pub list: CodeList,
    pub system: String,
    pub code: String,
    pub side: Option<Side>,
    pub display: Option<String>,
}

fn is_absolute_uri(system: &str) -> bool {
    let Some((scheme, rest)) = system.split_once(':') else {
        return false;
    };
    !rest.is_empty()
        && scheme.len() >= 2
        && scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// An ICD-10-CM code's shape: a letter, two characters, and after the dot up to four more
/// (`M17.11`, `S83.211A`, `C18`); the dot may be left out.
fn looks_like_icd_10_cm(code: &str) -> bool {
    let bytes = code.as_bytes();
    let undotted: Vec<u8> = bytes.iter().copied().filter(|b| *b != b'.').collect();
    let dot_ok = match code.find('.') {
        None => true,
        Some(3) => code.matches('.').count() == 1 && code.len() > 4,
        Some(_) => false,
    };
    dot_ok
        && (3..=7).contains(&undotted.len())
        && undotted[0].is_ascii_alphabetic()
        && undotted[1].is_ascii_digit()
        && undotted[1..].iter().all(|b| b.is_ascii_alphanumeric())
}

/// A FHIR code: no white space, not empty, at most 256 characters.
fn is_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 256 && !code.chars().any(char::is_whitespace)
}

fn known_lists() -> String {
    CodeList::ALL.iter().map(|list| list.key()).collect::<Vec<_>>().join(", ")
}

/// Parses a site's codes file. Errors name the file and the line.
pub fn parse(file: &str, text: &str) -> Result<Vec<SiteCode>, TerminologyError> {
    let mut codes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let fail = |detail: String| TerminologyError::SiteCodes { file: file.to_owned(), line: number, detail };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(list), Some(system), Some(code)) = (words.next(), words.next(), words.next()) else {
            return Err(fail("expected: <list> <system> <code> [side=left|right|both] [display]".into()));
        };
        let list = CodeList::from_key(list)
            .ok_or_else(|| fail(format!("unknown list \"{list}\" (the lists are: {})", known_lists())))?;
        if !is_absolute_uri(system) {
            return Err(fail(format!(
                "the system must be an absolute URI such as https://ehr.example.org/codes, not \"{system}\""
            )));
        }
        if !is_code(code) || (system == ICD_10_CM && !looks_like_icd_10_cm(code)) {
            return Err(fail(format!("\"{code}\" is not a valid code for {system}")));
        }
        let mut rest: Vec<&str> = words.collect();
        let side = match rest.first().and_then(|word| word.strip_prefix("side=")) {
            Some(value) => {
                rest.remove(0);
                Some(
                    Side::from_code(value)
                        .ok_or_else(|| fail(format!("side must be left, right or both, not \"{value}\"")))?,
                )
            }
            None => None,
        };
        let display = (!rest.is_empty()).then(|| rest.join(" "));
        codes.push(SiteCode { list, system: system.to_owned(), code: code.to_owned(), side, display });
    }
    Ok(codes)
}

/// Reads and parses a site's codes file.
pub fn read(path: &Path) -> Result<Vec<SiteCode>, TerminologyError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|error| TerminologyError::SiteCodesUnreadable { file: file.clone(), detail: error.to_string() })?;
    parse(&file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        parse("site.txt", text).expect_err("refused").to_string()
    }

    #[test]
    fn a_site_file_adds_codes_to_named_lists_with_optional_side_and_display() {
        let codes = parse(
            "site.txt",
            "# local codes\n\nactive-cancer https://ehr.example.org/pl ONC-42 Colon cancer (local)\n\
             baker-support http://hl7.org/fhir/sid/icd-10-cm M17.11 side=right\n",
        )
        .expect("valid");
        assert_eq!(codes.len(), 2);
        assert_eq!(codes[0].list, CodeList::ActiveCancer);
        assert_eq!(codes[0].display.as_deref(), Some("Colon cancer (local)"));
        assert_eq!((codes[1].side, codes[1].display.as_deref()), (Some(Side::Right), None));
    }

    #[test]
    fn an_unknown_list_is_refused_naming_the_file_the_line_and_the_lists() {
        let error = error_of("active-cancer https://x.org/c A1\ncancer https://x.org/c A2\n");
        assert!(error.contains("site.txt") && error.contains("line 2"), "{error}");
        assert!(error.contains("\"cancer\"") && error.contains("active-cancer"), "{error}");
    }

    #[test]
    fn a_malformed_line_is_refused_naming_the_line() {
        assert!(error_of("active-cancer https://x.org/c\n").contains("line 1"));
        assert!(error_of("\n\nactive-cancer not-a-uri A1\n").contains("line 3"));
        assert!(error_of("baker-support http://hl7.org/fhir/sid/icd-10-cm knee\n").contains("not a valid code"));
        assert!(error_of("baker-support https://x.org/c K1 side=middle\n").contains("side must be"));
    }

    #[test]
    fn icd_10_cm_codes_must_have_the_shape_of_one() {
        for good in ["M17", "M17.11", "M1711", "S83.211A", "C18.9", "I82.4Y1"] {
            assert!(looks_like_icd_10_cm(good), "{good}");
        }
        for bad in ["knee", "M", "17.11", "M17.", "M1.711", "M17.11.2", "M17.11234"] {
            assert!(!looks_like_icd_10_cm(bad), "{bad}");
        }
    }
}
