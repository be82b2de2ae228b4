//! CORS from a real browser: headless Chromium (Debian's `chromium`) loads a page served from one
//! loopback origin whose script calls the service on another (discovery, then a hook with
//! `Authorization` and `Content-Type`, so both go through a preflight), and writes what it got
//! into the page, which the test reads back from the dumped DOM. This is how a CDS Hooks Sandbox
//! run on this machine calls the service.
//!
//! Chromium must be installed (`apt-get install chromium`, or `bash .ci/run`, which installs it);
//! without it these tests fail, naming what to install. `POPLITEAL_CHROMIUM` names another binary.

mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use support::{TestApp, shipped_cors, spawn_app_with, vignette_request};

/// Longer than this and Chromium is taken to hang (it is killed, and the test fails).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// The page: calls discovery and the patient-view hook on `service`, then writes one line,
/// `discovery=<status|refused> services=<n> hook=<status|refused> cards=<n>`, into `#result`.
fn page(service: &str, request: &serde_json::Value) -> String {
    // A JSON value inside a script element: `</` would end the element.
    let request = serde_json::to_string(request).expect("serialisable").replace("</", "<\\/");
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>popliteal CORS check</title></head>
<body><pre id="result">pending</pre>
<script>
const SERVICE = "{service}";
const REQUEST = {request};
const HEADERS = {{ "Authorization": "Bearer a-browser-test-token" }};
async function call(path, init) {{
  try {{
    const response = await fetch(SERVICE + path, init);
    const body = await response.json();
    return [String(response.status), body];
  }} catch (error) {{
    return ["refused", null];
  }}
}}
(async () => {{
  const [discovery, catalogue] = await call("/cds-services", {{ headers: HEADERS }});
  const [hook, answer] = await call("/cds-services/posterior-knee-pain", {{
    method: "POST",
    headers: {{ ...HEADERS, "Content-Type": "application/json" }},
    body: JSON.stringify(REQUEST),
  }});
  const services = catalogue && catalogue.services ? catalogue.services.length : 0;
  const cards = answer && answer.cards ? answer.cards.length : 0;
  document.getElementById("result").textContent =
    `discovery=${{discovery}} services=${{services}} hook=${{hook}} cards=${{cards}}`;
}})();
</script></body></html>
"#
    )
}

/// A loopback HTTP server for the page, on a port of its own (another origin than the service's).
struct PageServer {
    listener: TcpListener,
}

impl PageServer {
    fn bind() -> PageServer {
        PageServer { listener: TcpListener::bind("127.0.0.1:0").expect("a loopback port") }
    }

    /// The page's origin, as the browser sends it in `Origin`.
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.listener.local_addr().expect("an address").port())
    }

    /// Serves `html` at `/page.html` and returns its URL.
    fn serve(self, html: String) -> String {
        let url = format!("{}/page.html", self.origin());
        let server = HttpServer::new(move || {
            let html = html.clone();
            App::new().route(
                "/page.html",
                web::get().to(move || {
                    let html = html.clone();
                    async move { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html) }
                }),
            )
        })
        .workers(1)
        .listen(self.listener)
        .expect("listening")
        .run();
        tokio::spawn(server);
        url
    }
}

fn chromium_binary() -> String {
    std::env::var("POPLITEAL_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Loads `url` in headless Chromium and returns the DOM once the page's script has run. The
/// flags keep Chromium from reaching for the network on its own (it hangs on a closed one).
fn dump_dom(url: &str) -> String {
    let binary = chromium_binary();
    let profile = tempfile::tempdir().expect("a temporary profile");
    let spawned = Command::new(&binary)
        .args(support::webdriver::CHROMIUM_FLAGS)
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot run {binary} ({error}): the browser CORS tests need headless Chromium. Install Debian's \
             chromium (apt-get install chromium) or run `bash .ci/run`, which installs it; POPLITEAL_CHROMIUM \
             names another binary"
        ),
    };
    let started = Instant::now();
    loop {
        if child.try_wait().expect("chromium's status").is_some() {
            break;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("chromium's output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the page wrote into `#result`.
fn result_line(dom: &str) -> String {
    let start = dom.find("<pre id=\"result\">").map(|at| at + "<pre id=\"result\">".len());
    let text = start.and_then(|start| dom[start..].split("</pre>").next());
    text.unwrap_or_else(|| panic!("no result in the page chromium dumped: {dom}")).trim().to_owned()
}

/// Serves the page calling `app` from `page_server`'s origin, loads it in Chromium and returns
/// what it wrote.
async fn browse(app: &TestApp, page_server: PageServer) -> String {
    let url = page_server.serve(page(&app.address, &vignette_request("dvt-unlikely-calf-pain-only")));
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url)).await.expect("chromium ran");
    result_line(&dom)
}

fn assert_called(result: &str) {
    let fields: Vec<&str> = result.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{result}");
    assert_eq!(fields[0], "discovery=200", "{result}");
    assert_eq!(fields[1], "services=3", "{result}");
    assert_eq!(fields[2], "hook=200", "{result}");
    assert!(fields[3].strip_prefix("cards=").and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n > 0), "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_page_on_another_loopback_port_calls_the_local_service_as_shipped() {
    let app = spawn_app_with(|settings| settings.cors = shipped_cors("local")).await;
    let result = browse(&app, PageServer::bind()).await;
    assert_called(&result);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_production_a_browser_page_is_refused_unless_its_origin_is_listed() {
    let refused = spawn_app_with(|settings| settings.cors = shipped_cors("production")).await;
    let result = browse(&refused, PageServer::bind()).await;
    assert_eq!(result, "discovery=refused services=0 hook=refused cards=0");

    let page_server = PageServer::bind();
    let origin = page_server.origin();
    let listed = spawn_app_with(move |settings| {
        settings.cors = shipped_cors("production");
        settings.cors.allowed_origins.push(origin.try_into().expect("an origin"));
    })
    .await;
    assert_called(&browse(&listed, page_server).await);
}
