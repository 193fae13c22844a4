//! `halyardctl` (the real binary) against a real `halyard-server` run in-process on port 0 with a
//! temporary data directory and the embedded broker on port 0. The admin token is the one the
//! server writes on first start (`admin_token_path`), exactly what `--print-admin-token` prints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use halyard_ota::bundle;
use halyard_ota::hash::Sha256Digest;
use halyard_ota::keys::PrivateKey;
use halyard_ota::manifest::{Manifest, Payload};
use halyard_ota::root::{RootFile, RootSigned};
use halyard_server::background::Background;
use halyard_server::settings::{BrokerSettings, Settings};

struct Server {
    url: String,
    admin: String,
    // Before `dir`: the server stops before its data directory is removed.
    _bg: Background,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = BrokerSettings::Embedded {
            listen: "127.0.0.1:0".parse().expect("address"),
        };
        let bg = Background::start(Settings::new(dir.path().join("data"), broker)).expect("server starts");
        Self {
            url: bg.url(),
            admin: bg.admin_token.clone(),
            _bg: bg,
            dir,
        }
    }

    /// Runs halyardctl with the admin token.
    fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_as(Some(&self.admin), args)
    }

    fn ctl_as(&self, token: Option<&str>, args: &[&str]) -> Output {
        self.command(token, args).output().expect("halyardctl runs")
    }

    fn command(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_halyardctl"));
        cmd.args(args)
            .env("HALYARD_SERVER", &self.url)
            .env_remove("HALYARD_TOKEN");
        if let Some(token) = token {
            cmd.env("HALYARD_TOKEN", token);
        }
        cmd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts success and parses stdout as JSON.
fn ok_json(out: Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts exit `code` and returns stderr.
fn fails(out: Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

#[test]
fn tokens_sites_enroll_tokens_and_errors() {
    let server = Server::start();
    let (operator, operator_id) = operator_token(&server);
    roles_are_enforced(&server, &operator);
    sites(&server, &operator);
    enroll_tokens(&server);
    summaries(&server);
    revoke_and_unreachable(&server, &operator, &operator_id);
}

/// Creates an operator token; returns its secret and id.
fn operator_token(server: &Server) -> (String, String) {
    let created = ok_json(server.ctl(&["--json", "tokens", "create", "--name", "ci", "--role", "operator"]));
    let operator = created["token"].as_str().expect("token secret").to_owned();
    let operator_id = created["info"]["id"].as_str().expect("token id").to_owned();
    assert_eq!(created["info"]["role"], "operator");
    let listed = ok(server.ctl(&["tokens", "list"]));
    assert!(listed.starts_with("ID "), "{listed}");
    assert!(
        listed.contains("ci") && listed.contains("operator") && listed.contains("admin"),
        "{listed}"
    );
    (operator, operator_id)
}

/// Roles and authentication: refused by the server → exit 1 with its error text.
fn roles_are_enforced(server: &Server, operator: &str) {
    let err = fails(server.ctl_as(Some(operator), &["tokens", "list"]), 1);
    assert!(err.contains("403"), "{err}");
    let err = fails(server.ctl_as(None, &["sites", "list"]), 1);
    assert!(err.contains("401"), "{err}");
}

/// Sites: set with windows, list as table and JSON, delete.
fn sites(server: &Server, operator: &str) {
    ok(server.ctl_as(
        Some(operator),
        &[
            "sites",
            "set",
            "store-042",
            "--tz",
            "Europe/Berlin",
            "--window",
            "mon-fri 22:00-04:00",
            "--window",
            "sun 01:00-05:00",
            "--max-concurrent",
            "3",
        ],
    ));
    let table = ok(server.ctl(&["sites", "list"]));
    assert!(
        table.contains(
            "store-042  Europe/Berlin  3               mon,tue,wed,thu,fri 22:00-04:00; sun 01:00-05:00"
        ),
        "{table}"
    );
    let sites = ok_json(server.ctl(&["sites", "list", "--json"]));
    assert_eq!(
        sites[0]["windows"][1],
        serde_json::json!({"days": ["sun"], "start": "01:00", "end": "05:00"})
    );
    let err = fails(
        server.ctl(&["sites", "set", "x", "--tz", "UTC", "--window", "mon-fri 22:00"]),
        2,
    );
    assert!(err.contains("mon-fri 22:00"), "{err}");
    fails(
        server.ctl(&[
            "sites",
            "set",
            "x",
            "--tz",
            "Mars/Base",
            "--window",
            "22:00-23:00",
        ]),
        2,
    );
    ok(server.ctl_as(Some(operator), &["sites", "delete", "store-042"]));
    assert_eq!(
        ok_json(server.ctl(&["--json", "sites", "list"])),
        serde_json::json!([])
    );
}

/// Enrollment tokens.
fn enroll_tokens(server: &Server) {
    let enroll = ok_json(server.ctl(&[
        "enroll-tokens",
        "create",
        "--site",
        "store-042",
        "--tag",
        "beta",
        "--ttl",
        "600",
        "--json",
    ]));
    assert!(enroll["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(enroll["info"]["site"], "store-042");
    assert_eq!(enroll["info"]["tags"], serde_json::json!(["beta"]));
    let listed = ok(server.ctl(&["enroll-tokens", "list"]));
    let id = enroll["info"]["id"].as_str().expect("enroll token id");
    assert!(
        listed.lines().any(|l| l.starts_with(id) && l.contains("beta")),
        "{listed}"
    );
    // A batch: every secret once, one a line, each a distinct listed token of the site.
    let text = ok(server.ctl(&["enroll-tokens", "create", "--site", "store-7", "--count", "3"]));
    let secrets: Vec<&str> = text.lines().skip(1).collect();
    assert!(text.starts_with("created 3 enrollment tokens"), "{text}");
    assert_eq!(secrets.len(), 3, "{text}");
    assert!(secrets.iter().all(|s| s.starts_with("hly_enr_")), "{text}");
    assert_eq!(secrets.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
    let listed = ok(server.ctl(&["enroll-tokens", "list"]));
    assert_eq!(
        listed.lines().filter(|l| l.contains("store-7")).count(),
        3,
        "{listed}"
    );
    let many = ok_json(server.ctl(&["--json", "enroll-tokens", "create", "--count", "2"]));
    assert_eq!(many["tokens"].as_array().map(Vec::len), Some(2), "{many}");
    for bad in ["0", "1001"] {
        let err = fails(server.ctl(&["enroll-tokens", "create", "--count", bad]), 1);
        assert!(err.contains("count must be 1 to 1000"), "{err}");
    }
}

/// Fleet, devices, audit.
fn summaries(server: &Server) {
    assert!(ok(server.ctl(&["fleet"])).starts_with("devices: 0\n"));
    assert!(ok(server.ctl(&["devices", "list"])).contains("0 device(s)"));
    let audit = ok_json(server.ctl(&["audit", "--limit", "50", "--json"]));
    assert!(audit.as_array().is_some_and(|a| a.len() >= 4), "{audit}");
}

/// Revoking a token locks it out; a server nobody listens on exits with 3.
fn revoke_and_unreachable(server: &Server, operator: &str, operator_id: &str) {
    ok(server.ctl(&["tokens", "revoke", operator_id]));
    let err = fails(server.ctl_as(Some(operator), &["sites", "list"]), 1);
    assert!(err.contains("401"), "{err}");

    // Nobody listening → exit 3.
    let out = server.ctl(&["--server", "http://127.0.0.1:9", "fleet"]);
    assert!(fails(out, 3).contains("cannot reach server"));
}

/// A trust root and a signed full bundle, built with `halyard-ota` as a release pipeline would.
fn release_material(dir: &Path, version: &str, signer: u8) -> (PathBuf, PathBuf) {
    let root_key = PrivateKey::from_seed(&[7; 32]);
    let release_key = PrivateKey::from_seed(&[8; 32]);
    let signer = PrivateKey::from_seed(&[signer; 32]);
    let now = time::OffsetDateTime::now_utc();
    let signed = RootSigned::new(
        now + time::Duration::days(365),
        (&[root_key.public()], 1),
        (&[release_key.public()], 1),
    )
    .expect("root");
    let mut root = RootFile::unsigned(signed);
    root.sign(&root_key);
    let root_path = dir.join("root.json");
    std::fs::write(&root_path, root.to_json()).expect("write root");

    let image: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let payload = Payload::full(
        "rootfs".parse().expect("name"),
        image.len() as u64,
        Sha256Digest::of(&image),
    );
    let created = now - time::Duration::hours(1);
    let manifest = Manifest::new(
        "pos".parse().expect("product"),
        version.parse().expect("version"),
        1,
        created,
        vec![payload],
    )
    .expect("manifest");
    let sigs = bundle::sign_manifest(&manifest, std::slice::from_ref(&signer));
    let mut reader: &[u8] = &image;
    let mut sources: Vec<&mut dyn Read> = vec![&mut reader];
    let bundle_path = dir.join(format!("pos-{version}.bundle"));
    let mut file = std::fs::File::create(&bundle_path).expect("bundle file");
    bundle::write_bundle(&mut file, &manifest, &sigs, &mut sources, &mut |_| {}).expect("bundle");
    (root_path, bundle_path)
}

const POLICY: &str = r#"
version = "2.0.0"
selector = "hw=pos-x86"
seed = 7
[policy]
on_breach = "revert"
silent_after_secs = 1800
respect_windows = false
[[policy.waves]]
size = { percent = 50 }
soak_secs = 3600
failure_budget = { count = 0 }
[[policy.waves]]
size = { percent = 100 }
soak_secs = 3600
failure_budget = { percent = 10 }
"#;

#[test]
fn releases_and_rollouts() {
    let server = Server::start();
    releases(&server);
    let device = devices(&server);
    let policy = server.path("rollout.toml");
    std::fs::write(&policy, POLICY).expect("policy file");
    let policy = policy.to_str().expect("utf-8 path");
    quarantine(&server, policy);
    let id = create_rollout(&server, policy);
    rollout_commands(&server, &id);
    let device_view = ok(server.ctl(&["devices", "show", &device]));
    assert!(
        device_view.contains("hardware class: pos-x86") && device_view.contains("History:"),
        "{device_view}"
    );
}

/// Trust root and uploads: refused without a root, accepted once, refused twice or forged.
fn releases(server: &Server) {
    let (root, bundle) = release_material(server.dir.path(), "2.0.0", 8);
    let (_, forged) = release_material(server.dir.path(), "3.0.0", 9);
    let root = root.to_str().expect("utf-8 path");
    let bundle = bundle.to_str().expect("utf-8 path");

    // No trust root yet: the upload is refused (412).
    assert!(fails(server.ctl(&["releases", "upload", bundle]), 1).contains("412"));
    assert!(ok(server.ctl(&["trust-root", "set", root])).contains("version"));
    let shown = ok_json(server.ctl(&["trust-root", "show"]));
    assert!(shown.is_object(), "{shown}");
    let uploaded = ok(server.ctl(&["releases", "upload", bundle]));
    assert!(
        uploaded.contains("version:") && uploaded.contains("2.0.0"),
        "{uploaded}"
    );
    assert!(fails(server.ctl(&["releases", "upload", bundle]), 1).contains("409"));
    let forged = forged.to_str().expect("utf-8 path");
    let err = fails(server.ctl(&["releases", "upload", forged]), 1);
    assert!(err.contains("422"), "{err}");
    let releases = ok(server.ctl(&["releases", "list"]));
    assert!(
        releases.lines().nth(1).is_some_and(|l| l.starts_with("2.0.0")),
        "{releases}"
    );
}

/// A device for the rollout to target; label it and see it listed. Returns its id.
fn devices(server: &Server) -> String {
    let device = enroll_device(server, "pos-x86");
    let listed = ok(server.ctl(&["devices", "list", "--selector", "hw=pos-x86,site=store-1"]));
    assert!(
        listed.contains(&device) && listed.contains("1 device(s)"),
        "{listed}"
    );
    ok(server.ctl(&["devices", "label", &device, "--site", "store-2", "--tag", "beta"]));
    let listed = ok(server.ctl(&["devices", "list", "--selector", "tag=beta"]));
    assert!(listed.contains(&device) && listed.contains("store-2"), "{listed}");
    let empty = ok(server.ctl(&["devices", "list", "--selector", "site=store-1"]));
    assert!(empty.contains("0 device(s)"), "{empty}");
    assert!(ok(server.ctl(&["fleet"])).starts_with("devices: 1\n"));
    device
}

/// Quarantine blocks a rollout unless overridden.
fn quarantine(server: &Server, policy: &str) {
    ok(server.ctl(&[
        "releases",
        "quarantine",
        "2.0.0",
        "--hw",
        "pos-x86",
        "--reason",
        "bad on x86",
    ]));
    assert!(ok(server.ctl(&["releases", "list"])).contains("pos-x86 (bad on x86)"));
    let err = fails(server.ctl(&["rollouts", "create", policy]), 1);
    assert!(err.contains("409"), "{err}");
    ok(server.ctl(&["releases", "unquarantine", "2.0.0", "--hw", "pos-x86"]));
    assert!(!ok(server.ctl(&["releases", "list"])).contains("bad on x86"));
}

/// A policy the engine would refuse never leaves the machine. Then creates the rollout and returns its id.
fn create_rollout(server: &Server, policy: &str) -> String {
    let bad = server.path("bad.toml");
    std::fs::write(&bad, POLICY.replace("percent = 50", "percent = 0")).expect("bad policy");
    fails(
        server.ctl(&["rollouts", "create", bad.to_str().expect("utf-8 path")]),
        2,
    );

    let created = ok_json(server.ctl(&["--json", "rollouts", "create", policy]));
    let id = created["id"].as_str().expect("rollout id").to_owned();
    assert_eq!(created["version"], "2.0.0");
    let listed = ok(server.ctl(&["rollouts", "list"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("hw=pos-x86")),
        "{listed}"
    );
    let shown = ok(server.ctl(&["rollouts", "show", &id]));
    assert!(
        shown.contains(&format!("id:       {id}")) && shown.contains("Decisions:"),
        "{shown}"
    );

    id
}

/// pause → resume → abort while `rollouts watch` follows live; watch prints each decision once and
/// returns when the rollout is final.
fn rollout_commands(server: &Server, id: &str) {
    let watch = server
        .command(Some(&server.admin), &["rollouts", "watch", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let status = |out: Output| ok_json(out)["status"].as_str().unwrap_or_default().to_owned();
    assert_eq!(status(server.ctl(&["--json", "rollouts", "pause", id])), "paused");
    let err = fails(server.ctl(&["rollouts", "pause", id]), 1);
    assert!(err.contains("409"), "{err}");
    assert_eq!(
        ok(server.ctl(&["rollouts", "resume", id])),
        format!("rollout {id} is running\n")
    );
    assert_eq!(
        ok(server.ctl(&["rollouts", "abort", id])),
        format!("rollout {id} is aborted\n")
    );

    let watched = ok(wait_at_most(watch, Duration::from_secs(30)));
    assert!(
        watched.ends_with(&format!("rollout {id} is aborted\n")),
        "{watched}"
    );
    for kind in ["planned", "paused", "resumed", "aborted"] {
        let lines = watched
            .lines()
            .filter(|l| l.contains(&format!("  {kind}  ")))
            .count();
        assert_eq!(lines, 1, "{kind} should be printed once: {watched}");
    }
    let shown = ok(server.ctl(&["rollouts", "show", id]));
    assert!(shown.contains("status:   aborted"), "{shown}");

    // --json: one JSON decision per line, then the final rollout.
    let lines = ok(server.ctl(&["--json", "rollouts", "watch", id]));
    let values: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (last, decisions) = values.split_last().expect("some output");
    assert_eq!(last["status"], "aborted", "{lines}");
    assert!(
        decisions
            .iter()
            .all(|d| d["kind"].is_string() && d["rollout"] == id),
        "{lines}"
    );
}

/// Waits for a child, killing it after `limit`.
fn wait_at_most(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("halyardctl rollouts watch did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("watch output")
}

/// Enrolls a device the way an agent does (`POST /v1/enroll` with a one-time token).
fn enroll_device(server: &Server, hardware_class: &str) -> String {
    let enroll = ok_json(server.ctl(&["--json", "enroll-tokens", "create", "--site", "store-1"]));
    let key = PrivateKey::from_seed(&[42; 32]).public().to_raw();
    let body = serde_json::json!({
        "token": enroll["token"],
        "public_key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key),
        "product": "pos",
        "hardware_class": hardware_class,
        "agent_version": "0.1.0",
    });
    let mut answer = ureq::post(format!("{}/v1/enroll", server.url))
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("enrollment");
    let text = answer.body_mut().read_to_string().expect("enrollment answer");
    let answer: Value = serde_json::from_str(&text).expect("enrollment JSON");
    answer["device_id"].as_str().expect("device id").to_owned()
}

/// The server serves the OpenAPI file it embeds, and every documented operation is routed: with
/// placeholder path parameters and an empty body each answers something other than 405 or the
/// router's bare 404 (handler errors carry a body).
#[test]
fn openapi_routes_exist_on_the_server() {
    let server = Server::start();
    let mut answer = ureq::get(format!("{}/api/v1/openapi.json", server.url))
        .call()
        .expect("openapi.json is served without a token");
    let served: Value =
        serde_json::from_str(&answer.body_mut().read_to_string().expect("body")).expect("JSON");
    let doc: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).expect("openapi.json");
    assert_eq!(served, doc, "the server serves the file it embeds");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            let planned = op["summary"].as_str().is_some_and(|s| s.contains("planned"));
            if planned {
                continue;
            }
            let (status, body) = probe(&server, method, path);
            assert_ne!(status, 405, "{method} {path} is not routed for this method");
            assert!(status != 404 || !body.is_empty(), "{method} {path} is not routed");
        }
    }
}

/// One request on a fresh connection (a refused request may make the server close its connection,
/// and a pooled one could then race that close).
fn probe(server: &Server, method: &str, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let concrete: String = path
        .split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/");
    let request = ureq::http::Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(format!("{}{concrete}", server.url))
        .header("authorization", format!("Bearer {}", server.admin))
        .body(())
        .expect("request");
    let mut response = agent
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {concrete}: {e}"));
    let streaming = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    // A Server-Sent Events stream never ends on its own: its headers are the answer.
    let body = if streaming {
        "event stream".to_owned()
    } else {
        response.body_mut().read_to_string().unwrap_or_default()
    };
    (response.status().as_u16(), body)
}
