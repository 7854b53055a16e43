//! A minimal W3C WebDriver client over HTTP (ureq), for driving the system's headless
//! Chromium through chromedriver: start chromedriver on a free 127.0.0.1 port, open a
//! session, find elements, click, type, run a script, read the browser log, take a
//! screenshot. [`Browser`]'s `Drop` ends the session and kills chromedriver, whatever
//! the test did. Every wait is bounded.
#![allow(dead_code)] // a client: the test uses the parts it needs

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key W3C WebDriver gives an element reference under.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver, and then the browser, may take to start.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Longest a single WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(100);

/// A WebDriver error: the protocol's error code and message, or a transport failure.
#[derive(Debug)]
pub struct WdError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for WdError {}

type Result<T> = std::result::Result<T, WdError>;

/// A headless Chromium session. Dropping it quits the browser and kills chromedriver.
pub struct Browser {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    driver: Option<Child>,
    driver_log: PathBuf,
}

/// An element found in the page.
#[derive(Debug, Clone)]
pub struct Element {
    id: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width`x`height`,
    /// logging chromedriver's output to `log_dir`. Panics with what to install when the
    /// browser or driver is missing: the test must not pass without them.
    pub fn start(log_dir: &Path, width: u32, height: u32) -> Browser {
        for (path, what) in [(CHROMEDRIVER, "chromedriver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{what} is not installed at {path}: the browser test needs Debian's Chromium and \
                 its driver; install them with `apt-get install chromium chromium-driver`"
            );
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(COMMAND_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .build()
            .into();
        let driver_log = log_dir.join("chromedriver.log");
        let (driver, base) = start_driver(&agent, &driver_log);
        let mut browser = Browser {
            agent,
            session: String::new(),
            driver: Some(driver),
            driver_log,
        };
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-background-networking",
                            "--no-first-run",
                            "--disable-extensions",
                            format!("--window-size={width},{height}"),
                        ],
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "timeouts": { "pageLoad": 30000, "script": 30000, "implicit": 0 },
                }
            }
        });
        let answer = browser
            .call("POST", &format!("{base}/session"), Some(capabilities))
            .unwrap_or_else(|err| {
                panic!(
                    "chromedriver could not start Chromium: {err}\nchromedriver log:\n{}",
                    browser.driver_log_tail()
                )
            });
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a new session without a sessionId: {answer}"));
        browser.session = format!("{base}/session/{id}");
        browser
    }

    /// Sends one WebDriver command; its `value`, or the protocol's error.
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value> {
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            (_, body) => self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let mut response = sent.map_err(|err| WdError {
            code: "transport".into(),
            message: format!("{method} {url}: {err}"),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|err| WdError {
                code: "transport".into(),
                message: format!("reading the answer to {method} {url}: {err}"),
            })?;
        let answer: Value = serde_json::from_str(&text).map_err(|err| WdError {
            code: "protocol".into(),
            message: format!("{method} {url} answered {status} with no JSON ({err}): {text}"),
        })?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 {
            return Err(WdError {
                code: value["error"].as_str().unwrap_or("unknown error").into(),
                message: value["message"].as_str().unwrap_or(&text).into(),
            });
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        self.call(method, &format!("{}{path}", self.session), body)
    }

    /// Panics naming `what` when `result` is an error.
    fn must<T>(&self, what: &str, result: Result<T>) -> T {
        result.unwrap_or_else(|err| panic!("WebDriver: {what}: {err}"))
    }

    pub fn goto(&self, url: &str) {
        let result = self.session_call("POST", "/url", Some(json!({ "url": url })));
        self.must(&format!("open {url}"), result);
    }

    pub fn current_url(&self) -> String {
        let result = self.session_call("GET", "/url", None);
        self.must("read the URL", result)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        let result = self.session_call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
        self.must("resize the window", result);
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let result = self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        );
        self.must("run a script", result)
    }

    /// Elements matching a CSS selector, now.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.try_find_all(css).unwrap_or_default()
    }

    fn try_find_all(&self, css: &str) -> Result<Vec<Element>> {
        let found = self.session_call(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        Ok(found
            .as_array()
            .map(|items| items.iter().filter_map(element_of).collect())
            .unwrap_or_default())
    }

    /// Waits (bounded) for the first element matching `css` and returns it.
    pub fn wait_for(&self, css: &str, limit: Duration) -> Element {
        self.wait_until(&format!("an element {css}"), limit, || {
            self.try_find_all(css)
                .ok()
                .and_then(|found| found.into_iter().next())
        })
    }

    /// Waits (bounded) for an element matching `css` whose text contains `text`.
    pub fn wait_for_text(&self, css: &str, text: &str, limit: Duration) -> Element {
        self.wait_until(&format!("{css} showing {text:?}"), limit, || {
            self.try_find_all(css).ok()?.into_iter().find(|element| {
                self.try_text(element)
                    .map(|shown| shown.contains(text))
                    .unwrap_or(false)
            })
        })
    }

    /// Polls `check` until it gives a value or `limit` passes; then panics naming `what`,
    /// with the page's text, so a failure shows what the page did show.
    pub fn wait_until<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = check() {
                return value;
            }
            if Instant::now() >= deadline {
                let shown = self
                    .session_call(
                        "POST",
                        "/execute/sync",
                        Some(json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] })),
                    )
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .unwrap_or_else(|err| format!("(could not read the page: {err})"));
                panic!(
                    "timed out after {limit:?} waiting for {what} at {}\nthe page shows:\n{shown}",
                    self.current_url()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn try_text(&self, element: &Element) -> Result<String> {
        let text = self.session_call("GET", &format!("/element/{}/text", element.id), None)?;
        Ok(text.as_str().unwrap_or_default().to_string())
    }

    pub fn text(&self, element: &Element) -> String {
        let result = self.try_text(element);
        self.must("read an element's text", result)
    }

    /// The texts of every element matching `css`. Elements the page replaced while they
    /// were read are looked up again (a bounded number of times).
    pub fn texts(&self, css: &str) -> Vec<String> {
        let mut last_error = None;
        for _ in 0..10 {
            let read: Result<Vec<String>> = self
                .try_find_all(css)
                .and_then(|found| found.iter().map(|e| self.try_text(e)).collect());
            match read {
                Ok(texts) => return texts,
                Err(err) if err.code == "stale element reference" => last_error = Some(err),
                Err(err) => panic!("WebDriver: read the texts of {css}: {err}"),
            }
            std::thread::sleep(POLL);
        }
        panic!("WebDriver: {css} kept being replaced while read: {last_error:?}");
    }

    pub fn click(&self, element: &Element) {
        let result = self.session_call(
            "POST",
            &format!("/element/{}/click", element.id),
            Some(json!({})),
        );
        self.must("click", result);
    }

    /// Clears an input and types `text` into it.
    pub fn type_into(&self, element: &Element, text: &str) {
        let cleared = self.session_call(
            "POST",
            &format!("/element/{}/clear", element.id),
            Some(json!({})),
        );
        self.must("clear an input", cleared);
        let typed = self.session_call(
            "POST",
            &format!("/element/{}/value", element.id),
            Some(json!({ "text": text })),
        );
        self.must("type into an input", typed);
    }

    /// A DOM property of an element (`value`, `disabled`, ...).
    pub fn property(&self, element: &Element, name: &str) -> Value {
        let result = self.session_call(
            "GET",
            &format!("/element/{}/property/{name}", element.id),
            None,
        );
        self.must(&format!("read property {name}"), result)
    }

    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let result = self.session_call(
            "GET",
            &format!("/element/{}/attribute/{name}", element.id),
            None,
        );
        self.must(&format!("read attribute {name}"), result)
            .as_str()
            .map(str::to_string)
    }

    /// Elements matching `css` inside `element`.
    pub fn find_in(&self, element: &Element, css: &str) -> Vec<Element> {
        self.session_call(
            "POST",
            &format!("/element/{}/elements", element.id),
            Some(json!({ "using": "css selector", "value": css })),
        )
        .ok()
        .and_then(|found| {
            found
                .as_array()
                .map(|items| items.iter().filter_map(element_of).collect())
        })
        .unwrap_or_default()
    }

    /// The browser console since the last call (chromedriver's `se/log`), as
    /// (level, message) pairs.
    pub fn browser_log(&self) -> Vec<(String, String)> {
        let result = self.session_call("POST", "/se/log", Some(json!({ "type": "browser" })));
        self.must("read the browser log", result)
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let result = self.session_call("GET", "/screenshot", None);
        let encoded = self.must("take a screenshot", result);
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap_or_else(|err| panic!("a screenshot that is not base64: {err}"))
    }

    /// Saves a screenshot as `<name>.png` when `POSTHORN_SCREENSHOTS` names a directory.
    pub fn save_screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("POSTHORN_SCREENSHOTS") {
            let path = std::path::Path::new(&dir).join(format!("{name}.png"));
            std::fs::write(&path, self.screenshot())
                .unwrap_or_else(|err| panic!("could not save {}: {err}", path.display()));
        }
    }

    fn driver_log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.driver_log).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        log.get(start..).unwrap_or(&log).to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.session, None);
        }
        if let Some(mut driver) = self.driver.take() {
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}

fn element_of(value: &Value) -> Option<Element> {
    value[ELEMENT_KEY]
        .as_str()
        .map(|id| Element { id: id.to_string() })
}

/// Starts chromedriver on a free 127.0.0.1 port and waits (bounded) until it says it is
/// ready; the child and its base URL. A port taken in between is tried again.
fn start_driver(agent: &ureq::Agent, log: &Path) -> (Child, String) {
    let mut last_problem = String::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port on 127.0.0.1");
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("could not start {CHROMEDRIVER}: {err}"));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                last_problem = format!(
                    "chromedriver exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
                break;
            }
            let ready = agent
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|status| status["value"]["ready"] == json!(true));
            if ready {
                return (child, base);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver did not get ready on port {port} within {START_LIMIT:?}");
            }
            std::thread::sleep(POLL);
        }
    }
    panic!("chromedriver would not start: {last_problem}");
}
