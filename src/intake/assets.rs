//! The intake app's files, compiled into the binary: our pages, script and style
//! (`web/intake/`), and the libraries they use as published on npm (`web/vendor/`, checked
//! against the registry by `scripts/web/vendor.sh --check`). Nothing is loaded from another origin.

/// One file the app serves.
#[derive(Debug)]
pub struct Asset {
    /// The path under `/intake/` (`""` is the app's page).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A published library: cached by browsers for an hour (our own files are revalidated).
    pub library: bool,
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const PNG: &str = "image/png";

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:expr, $library:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../../web/", $file)),
            library: $library,
        }
    };
}

pub const ASSETS: &[Asset] = &[
    asset!("", "intake/index.html", HTML, false),
    asset!("launch", "intake/launch.html", HTML, false),
    asset!("app.js", "intake/app.js", JAVASCRIPT, false),
    asset!("launch.js", "intake/launch.js", JAVASCRIPT, false),
    asset!("call.js", "intake/call.js", JAVASCRIPT, false),
    asset!("intake.css", "intake/intake.css", CSS, false),
    asset!("vendor/fhirclient/fhir-client.min.js", "vendor/fhirclient/fhir-client.min.js", JAVASCRIPT, true),
    asset!("vendor/lforms/zone.min.js", "vendor/lforms/zone.min.js", JAVASCRIPT, true),
    asset!("vendor/lforms/lhc-forms.js", "vendor/lforms/lhc-forms.js", JAVASCRIPT, true),
    asset!("vendor/lforms/lformsFHIR.min.js", "vendor/lforms/lformsFHIR.min.js", JAVASCRIPT, true),
    asset!("vendor/lforms/styles.css", "vendor/lforms/styles.css", CSS, true),
    asset!("vendor/lforms/down_arrow_gray_10_10.png", "vendor/lforms/down_arrow_gray_10_10.png", PNG, true),
    asset!("vendor/lforms/magnifying_glass.png", "vendor/lforms/magnifying_glass.png", PNG, true),
];

/// The file served at `/intake/{path}`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_and_style_a_page_names_is_served() {
        for page in ASSETS.iter().filter(|asset| asset.content_type == HTML) {
            let html = std::str::from_utf8(page.body).expect("a page is UTF-8");
            for reference in html.split(['"', '\'']).filter(|part| part.ends_with(".js") || part.ends_with(".css")) {
                assert!(find(reference).is_some(), "{} names {reference}, which is not served", page.path);
            }
        }
    }

    #[test]
    fn pages_load_nothing_from_another_origin_and_hold_no_inline_script() {
        for page in ASSETS.iter().filter(|asset| asset.content_type == HTML) {
            let html = std::str::from_utf8(page.body).expect("a page is UTF-8");
            assert!(!html.contains("http://") && !html.contains("https://"), "{} names another origin", page.path);
            assert!(!html.contains("<script>"), "{} has an inline script", page.path);
            let handler = html.split(" on").skip(1).find(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(handler.is_none(), "{} has an inline event handler", page.path);
        }
    }
}
