//! The operator dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! started here on a free loopback port and killed at the end) against a real server with
//! simulated devices. The fleet page shows the server's counts; a bad release's rollout shows wave 1
//! failing and the rollout reverted live, without a reload; a viewer token sees no mutating buttons;
//! pages fit a phone viewport; a stopped server shows a clear message.
//!
//! Skips (with a message) only when `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing
//! (`HALYARD_CHROMIUM` / `HALYARD_CHROMEDRIVER` override the paths). Screenshots are written to
//! `$CARGO_TARGET_TMPDIR/browser-shots/`; two of them are kept in `docs/img/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use halyard_sim::control::Control;
use halyard_sim::device::Behavior;
use halyard_sim::harness::embedded_settings;
use serde_json::{Value, json};
use support::*;

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// Starts chromedriver, or `None` (with a message) when Chromium or chromedriver is not installed.
fn driver() -> Option<(Driver, PathBuf)> {
    let chromium = tool("HALYARD_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("HALYARD_CHROMEDRIVER", "/usr/bin/chromedriver");
    for p in [&chromium, &chromedriver] {
        if !p.exists() {
            eprintln!(
                "SKIPPED: {} not found; install Debian's chromium and chromium-driver (.ci/run does)",
                p.display()
            );
            return None;
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let d = Driver { child, port };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((d, chromium))
}

/// A browser session with blocking helpers (the fleet and server run on their own threads).
struct Browser {
    rt: tokio::runtime::Runtime,
    c: Client,
    base: String,
    shots: PathBuf,
    _driver: Driver,
}

impl Browser {
    fn start(base: &str, test: &str) -> Option<Self> {
        let (driver, chromium) = driver()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let caps = json!({"goog:chromeOptions": {"binary": chromium, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,800", "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US"]}});
        let url = format!("http://127.0.0.1:{}", driver.port);
        let c = rt
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.as_object().unwrap().clone())
                    .connect(&url),
            )
            .expect("WebDriver session with headless Chromium");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("browser-shots")
            .join(test);
        std::fs::create_dir_all(&shots).unwrap();
        let b = Self {
            rt,
            c,
            base: base.to_owned(),
            shots,
            _driver: driver,
        };
        b.viewport(1280, 800);
        Some(b)
    }

    fn goto(&self, path: &str) {
        self.rt
            .block_on(self.c.goto(&format!("{}{path}", self.base)))
            .unwrap();
    }

    /// Changes the hash route from inside the page (no reload).
    fn route(&self, hash: &str) {
        self.js(&format!("location.hash = {}; return true;", json!(hash)));
    }

    fn js(&self, script: &str) -> Value {
        self.rt.block_on(self.c.execute(script, vec![])).unwrap()
    }

    fn click(&self, css: &str) {
        self.rt
            .block_on(async { self.c.find(Locator::Css(css)).await?.click().await })
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    fn type_into(&self, css: &str, text: &str) {
        self.rt
            .block_on(async { self.c.find(Locator::Css(css)).await?.send_keys(text).await })
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Sets the window so that the page's viewport is `w`×`h` CSS pixels.
    fn viewport(&self, w: u32, h: u32) {
        let chrome = self.js("return [outerWidth - innerWidth, outerHeight - innerHeight];");
        let (dw, dh) = (chrome[0].as_u64().unwrap_or(0), chrome[1].as_u64().unwrap_or(0));
        self.rt
            .block_on(self.c.set_window_size(w + dw as u32, h + dh as u32))
            .unwrap();
    }

    fn shot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c.screenshot()).unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits until the JS expression is truthy; on timeout fails with the page's text and a screenshot.
    fn until(&self, what: &str, expr: &str, secs: u64) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(&format!(
                "try {{ return ({expr}); }} catch (e) {{ return null; }}"
            ));
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let shot = self.shot(&format!("timeout-{}", what.replace(' ', "-")));
                let text = self.js("return document.body.innerText;");
                panic!(
                    "timed out after {secs} s waiting for {what} ({expr}); screenshot {}\npage:\n{}",
                    shot.display(),
                    text.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn sign_in(&self, token: &str) {
        self.until("the sign-in form", "!document.getElementById('login').hidden", 10);
        self.type_into("#token", token);
        self.click("#login-form button[type=submit]");
        self.until("signed in", "!document.getElementById('nav').hidden", 10);
    }

    /// True when nothing is wider than the viewport (no sideways scrolling).
    fn fits(&self) -> bool {
        self.js("return document.documentElement.scrollWidth <= window.innerWidth + 1;") == json!(true)
    }

    fn close(self) {
        let _ = self.rt.block_on(self.c.close());
    }
}

fn token(control: &Control, name: &str, role: &str) -> String {
    let t: Value = control
        .post("/api/v1/tokens", &json!({"name": name, "role": role}))
        .unwrap();
    t["token"].as_str().unwrap().to_owned()
}

/// The numbers the fleet page shows, in the shape of `GET /api/v1/fleet`'s breakdowns.
const PAGE_COUNTS: &str = "const g = (n) => Object.fromEntries([...document.querySelectorAll(
    `[data-group=${n}] li`)].map((li) => [li.dataset.key, Number(li.dataset.count)]));
  return {devices: Number(document.querySelector('[data-count=devices] .value').textContent),
    online: Number(document.querySelector('[data-count=online] .value').textContent),
    by_version: g('version'), by_state: g('state'), by_site: g('site'), by_hardware_class: g('hw')};";

fn fleet_page_matches_the_api(b: &Browser, w: &World) {
    b.until(
        "8 devices on the fleet page",
        "document.querySelector('[data-count=devices] .value').textContent === '8'",
        30,
    );
    b.until(
        "the device table",
        "document.querySelectorAll('[data-table=devices] tbody tr').length === 8",
        30,
    );
    let api = fleet(&w.line);
    let page = b.js(PAGE_COUNTS);
    for key in [
        "devices",
        "online",
        "by_version",
        "by_state",
        "by_site",
        "by_hardware_class",
    ] {
        assert_eq!(
            page[key], api[key],
            "fleet page {key} differs from the API: page {page} api {api}"
        );
    }
    assert_eq!(page["by_version"], json!({"1.0.0": 8}));
    assert_eq!(page["by_site"], json!({"store-berlin": 4, "store-nyc": 4}));
    assert_eq!(page["by_hardware_class"], json!({"pos-arm": 4, "pos-x86": 4}));
    // the selector search goes through the API's selector syntax
    b.type_into("#selector", "hw=pos-arm,site=store-nyc");
    b.click("form.search button[type=submit]");
    b.until(
        "2 devices matching the selector",
        "document.querySelectorAll('[data-table=devices] tbody tr').length === 2",
        10,
    );
    b.click("form.search button.quiet");
    b.until(
        "the whole fleet again",
        "document.querySelectorAll('[data-table=devices] tbody tr').length === 8",
        10,
    );
}

#[test]
fn fleet_counts_and_a_bad_rollout_reverting_live() {
    let w = world(2, &[("2.1.0", "pos-arm", Behavior::Unhealthy)], embedded_settings);
    let Some(b) = Browser::start(&w.server.url(), "rollout") else {
        return;
    };
    let ops = token(&w.line.control, "ops", "operator");
    b.goto("/");
    b.sign_in(&ops);
    fleet_page_matches_the_api(&b, &w);
    b.until(
        "the live stream",
        "document.getElementById('live').dataset.mode === 'live'",
        10,
    );
    b.shot("fleet");

    // From here on the page is never reloaded: a marker on `window` must survive to the end.
    b.js("window.__noReload = 42; return true;");
    b.route("#/rollouts");
    b.until(
        "the empty rollouts page",
        "document.getElementById('r-list').textContent.includes('No rollouts')",
        10,
    );
    w.line.upload("2.1.0", 1).unwrap();
    let _: Value = w
        .line
        .control
        .post("/api/v1/rollouts", &three_waves("2.1.0", "r-bad"))
        .unwrap();
    b.until(
        "the new rollout listed",
        "document.querySelector('[data-rollout-link=\"r-bad\"]')",
        20,
    );
    b.click("[data-rollout-link=\"r-bad\"]");
    b.until(
        "wave 1 with a failed device",
        "Number(document.querySelector('[data-wave=\"1\"]').dataset.failed) > 0",
        180,
    );
    b.shot("rollout-failing");
    b.until(
        "the rollout reverted",
        "document.querySelector('.rollout-status').dataset.status === 'reverted'",
        240,
    );
    b.until(
        "every wave-1 device failed or reverted",
        "(() => { const w = document.querySelector('[data-wave=\"1\"]').dataset; \
           const all = ['healthy', 'soaking', 'updating', 'pending', 'failed', 'reverted']\
             .reduce((n, k) => n + Number(w[k]), 0); \
           return all > 0 && Number(w.failed) + Number(w.reverted) === all; })()",
        30,
    );
    assert_eq!(
        b.js("return window.__noReload;"),
        json!(42),
        "the page was reloaded"
    );
    let waves = b.js("return [...document.querySelectorAll('[data-wave]')].map((w) => ({...w.dataset}));");
    assert_eq!(waves.as_array().unwrap().len(), 3, "{waves}");
    for later in &waves.as_array().unwrap()[1..] {
        assert_eq!(later["updating"], "0", "a later wave was touched: {waves}");
        assert_eq!(later["healthy"], "0", "a later wave was touched: {waves}");
    }
    assert!(
        b.js(
            "return [...document.querySelectorAll('#ro-log li')].some((li) => li.dataset.kind === 'breach');"
        ) == json!(true),
        "no breach in the decision log"
    );
    let budget = b.js("return document.querySelector('[data-wave=\"1\"] .budget').textContent;");
    assert!(budget.as_str().unwrap().contains("breached"), "{budget}");
    b.shot("rollout-reverted");

    b.viewport(390, 844);
    b.until("the phone layout", "window.innerWidth < 500", 5);
    assert!(b.fits(), "the rollout page scrolls sideways on a phone");
    b.shot("rollout-phone");
    b.route("#/fleet");
    b.until(
        "the fleet page",
        "document.querySelector('[data-count=devices]')",
        10,
    );
    assert!(b.fits(), "the fleet page scrolls sideways on a phone");
    b.shot("fleet-phone");
    b.viewport(1280, 800);

    let World {
        mut line,
        server,
        dir,
    } = w;
    line.shutdown();
    server.stop();
    b.until(
        "the unreachable message",
        "!document.getElementById('banner').hidden && \
        document.getElementById('banner').textContent.includes('Cannot reach the Halyard server')",
        30,
    );
    b.shot("unreachable");
    b.close();
    drop(dir);
}

#[test]
fn viewer_token_sees_no_mutating_buttons() {
    let w = world(1, &[], embedded_settings);
    let Some(b) = Browser::start(&w.server.url(), "viewer") else {
        return;
    };
    let (ops, viewer) = (
        token(&w.line.control, "ops", "operator"),
        token(&w.line.control, "audit", "viewer"),
    );
    w.line.upload("2.0.0", 1).unwrap();
    let wave = |size: Value| json!({"size": size, "soak_secs": 3600, "failure_budget": {"count": 0}});
    let body = json!({"id": "r-slow", "version": "2.0.0", "selector": "", "seed": 1, "policy": {
        "waves": [wave(json!({"count": 1})), wave(json!({"percent": 100}))],
        "on_breach": "pause", "silent_after_secs": 600, "respect_windows": false}});
    let _: Value = w.line.control.post("/api/v1/rollouts", &body).unwrap();

    b.goto("/#/rollouts/r-slow");
    b.sign_in(&ops);
    b.until(
        "the operator's pause button",
        "document.querySelector('button[data-command=pause]')",
        20,
    );
    b.click("button[data-command=pause]");
    b.until(
        "the rollout paused",
        "document.querySelector('.rollout-status').dataset.status === 'paused'",
        20,
    );
    b.until(
        "the resume button",
        "document.querySelector('button[data-command=resume]')",
        10,
    );
    b.shot("operator");

    b.click("#logout");
    b.sign_in(&viewer);
    b.route("#/rollouts/r-slow");
    b.until(
        "the waves for the viewer",
        "document.querySelector('[data-wave=\"1\"]')",
        20,
    );
    b.until("the read-only note", "document.querySelector('.read-only')", 10);
    let buttons = b.js("return document.querySelectorAll('button[data-command]').length;");
    assert_eq!(buttons, json!(0), "a viewer sees mutating buttons");
    let me = b.js("return document.getElementById('me').textContent;");
    assert_eq!(me, json!("audit · viewer"));
    b.shot("viewer");
    // and the API refuses the viewer anyway
    let refused =
        Control::new(&w.server.url(), &viewer).post::<Value>("/api/v1/rollouts/r-slow/resume", &json!({}));
    assert!(
        refused.is_err_and(|e| e.reason.contains("403")),
        "viewer could resume"
    );
    b.close();
}
