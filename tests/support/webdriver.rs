//! Headless Chromium driven through ChromeDriver (W3C WebDriver, with the `thirtyfour` crate), for
//! the end-to-end tests of the intake app: open a page, wait for an element or a text, read the
//! browser console (CSP violations appear there), take a screenshot, run axe-core.
//!
//! Debian's `chromium` and `chromium-driver` must be installed (`apt-get install chromium
//! chromium-driver`, or `bash .ci/run`); `POPLITEAL_CHROMEDRIVER` and `POPLITEAL_CHROMIUM` name
//! other binaries. Chromium runs with a fresh profile and without any of its background network
//! traffic (this machine's network is closed: it misbehaves otherwise); pages come from loopback.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;
use thirtyfour::{LoggingPrefsLogLevel, TimeoutConfiguration};

/// How long ChromeDriver may take to answer `/status` once started.
const DRIVER_STARTUP: Duration = Duration::from_secs(30);

/// How often [`Browser::wait_for`] and [`Browser::wait_for_text`] look again.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// How long a script run by [`Browser::run_axe`] (or any async script) may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The flags Chromium runs with in every browser test: headless, as root, and quiet on the
/// network (it hangs on a closed one when it reaches out on its own).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
];

/// The window the WebDriver sessions get (the screenshots' size).
const WINDOW_SIZE: &str = "--window-size=1280,1800";

/// A headless Chromium session. Owns the ChromeDriver process (killed on drop, with the browser)
/// and the browser's temporary profile. Prefer [`Browser::close`] at the end of a test; a dropped
/// `Browser` (a failed test) still cleans up.
pub struct Browser {
    // Field order is drop order: the session is ended while ChromeDriver still runs.
    driver: WebDriver,
    chromedriver: DriverProcess,
    /// Console messages drained from ChromeDriver so far (its log endpoint empties on each read).
    console: Mutex<Vec<String>>,
    _profile: tempfile::TempDir,
}

/// The ChromeDriver child process, in a process group of its own, which is killed on drop.
struct DriverProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        // The group holds ChromeDriver and the Chromium it started; a browser that outlives its
        // driver would keep the machine's two cores busy.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: the end-to-end browser tests need Debian's Chromium and ChromeDriver. Install them \
         with `apt-get install chromium chromium-driver` (or run `bash .ci/run`, which installs them); \
         {variable} names another binary",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a loopback port").local_addr().expect("an address").port()
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and opens a headless Chromium session through
    /// it (window 1280x1800, browser console captured at every level).
    pub async fn start() -> Browser {
        let chromedriver_binary = binary("POPLITEAL_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium_binary = binary("POPLITEAL_CHROMIUM", "/usr/bin/chromium");
        let profile = tempfile::tempdir().expect("a temporary Chromium profile");
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&chromedriver_binary)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|error| panic!("cannot run {}: {error}", chromedriver_binary.display()))
        };
        let chromedriver = DriverProcess { child, log };
        let server = format!("http://127.0.0.1:{port}");
        wait_until_ready(&server, &chromedriver).await;

        let mut capabilities = DesiredCapabilities::chrome();
        capabilities.set_binary(&chromium_binary.to_string_lossy()).expect("a binary capability");
        for flag in CHROMIUM_FLAGS.iter().chain([&WINDOW_SIZE]) {
            capabilities.add_arg(flag).expect("a Chromium flag");
        }
        capabilities.add_arg(&format!("--user-data-dir={}", profile.path().display())).expect("a Chromium flag");
        capabilities.set_browser_log_level(LoggingPrefsLogLevel::All).expect("goog:loggingPrefs");
        let driver = match WebDriver::new(&server, capabilities).await {
            Ok(driver) => driver,
            Err(error) => panic!(
                "ChromeDriver could not start Chromium ({error}); its log:\n{}",
                std::fs::read_to_string(&chromedriver.log).unwrap_or_default()
            ),
        };
        driver
            .update_timeouts(TimeoutConfiguration::new(
                Some(SCRIPT_TIMEOUT),
                Some(Duration::from_secs(60)),
                Some(Duration::ZERO),
            ))
            .await
            .expect("the session's timeouts are set");
        Browser { driver, chromedriver, console: Mutex::new(Vec::new()), _profile: profile }
    }

    /// The WebDriver session, for anything not wrapped here (clicks, typing, cookies...).
    pub fn client(&self) -> &WebDriver {
        &self.driver
    }

    /// Opens `url` and waits for its load event.
    pub async fn goto(&self, url: &str) {
        self.driver.goto(url).await.unwrap_or_else(|error| panic!("cannot open {url}: {error}"));
    }

    /// The first element matching `css`, once there is one; polls until `within` has passed, then
    /// panics with the page's URL and the start of its text.
    pub async fn wait_for(&self, css: &str, within: Duration) -> WebElement {
        let started = Instant::now();
        loop {
            if let Ok(element) = self.driver.find(By::Css(css)).await {
                return element;
            }
            if started.elapsed() > within {
                self.give_up(&format!("no element matches {css:?} after {within:?}")).await;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// The text of the first element matching `css` once it contains `needle`; polls until
    /// `within` has passed, then panics with the text last seen, the page's URL and its text.
    pub async fn wait_for_text(&self, css: &str, needle: &str, within: Duration) -> String {
        let started = Instant::now();
        let mut last_seen = None;
        loop {
            if let Ok(element) = self.driver.find(By::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if text.contains(needle) {
                    return text;
                }
                last_seen = Some(text);
            }
            if started.elapsed() > within {
                self.give_up(&format!(
                    "{css:?} did not come to contain {needle:?} within {within:?} (last seen: {last_seen:?})"
                ))
                .await;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    async fn give_up(&self, what: &str) -> ! {
        let url = self.current_url().await;
        let body = self
            .driver
            .execute("return document.body ? document.body.innerText : '(no body)';", Vec::new())
            .await
            .ok()
            .and_then(|answer| answer.json().as_str().map(str::to_owned))
            .unwrap_or_else(|| "(could not be read)".to_owned());
        let body: String = body.chars().take(2000).collect();
        panic!("{what}\npage: {url}\nbody text:\n{body}");
    }

    /// The address of the page shown now.
    pub async fn current_url(&self) -> String {
        self.driver.current_url().await.map(|url| url.to_string()).unwrap_or_else(|error| format!("(unknown: {error})"))
    }

    /// Saves a PNG of the viewport at `path`, creating its folders.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.driver.screenshot_as_png().await.expect("a screenshot");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("the screenshot's folder");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }

    /// Every browser console message so far (console calls, uncaught errors, CSP violations,
    /// failed loads), each as `LEVEL message`, where ChromeDriver writes a message as `<source
    /// URL> <line>:<column> <text>`.
    pub async fn console(&self) -> Vec<String> {
        let drained = self.driver.browser_log().await.expect("ChromeDriver's browser log");
        let mut console = self.console.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        console.extend(drained.into_iter().map(|entry| format!("{} {}", entry.level, entry.message)));
        console.clone()
    }

    /// Injects axe-core (`axe_source`, the text of `axe.min.js`) into the page and returns the
    /// result of `await axe.run(document)`: assert on its `violations[].impact`.
    pub async fn run_axe(&self, axe_source: &str) -> serde_json::Value {
        self.driver.execute(axe_source, Vec::new()).await.expect("axe-core's source runs in the page");
        let script = r#"
            const done = arguments[arguments.length - 1];
            axe.run(document).then(
                (result) => done(JSON.parse(JSON.stringify(result))),
                (error) => done({ axeError: String(error) }),
            );
        "#;
        let answer = self.driver.execute_async(script, Vec::new()).await.expect("axe.run answers");
        let result = answer.json().clone();
        assert!(result.get("axeError").is_none(), "axe.run failed: {}", result["axeError"]);
        result
    }

    /// Ends the session (Chromium exits) and stops ChromeDriver.
    pub async fn close(self) {
        let Browser { driver, chromedriver, .. } = self;
        let _ = driver.quit().await;
        drop(chromedriver);
    }
}

/// Waits until ChromeDriver at `server` says it is ready, or panics with its log.
async fn wait_until_ready(server: &str, chromedriver: &DriverProcess) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let status = client.get(format!("{server}/status")).timeout(Duration::from_secs(2)).send().await;
        if let Ok(response) = status
            && let Ok(body) = response.json::<serde_json::Value>().await
            && body["value"]["ready"] == true
        {
            return;
        }
        if started.elapsed() > DRIVER_STARTUP {
            panic!(
                "ChromeDriver did not become ready within {DRIVER_STARTUP:?}; its log:\n{}",
                std::fs::read_to_string(&chromedriver.log).unwrap_or_default()
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
