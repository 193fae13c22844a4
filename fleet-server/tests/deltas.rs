//! Server-side deltas end to end: a real `halyard-server` (in-process, port 0, temp data directory)
//! receives two signed releases, computes the delta between their images in the background, stores it
//! content-addressed and records it; the artifact downloaded over `GET /v1/artifacts/{sha}` is the new
//! release's signed header followed by a patch that turns the old image into exactly the new one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::time::{Duration, Instant};

use base64::Engine as _;
use halyard_ota::bundle::format::{BundleHeader, CountingReader};
use halyard_ota::bundle::{self, VerifyPolicy};
use halyard_ota::hash::Sha256Digest;
use halyard_ota::keys::PrivateKey;
use halyard_ota::limits::Limits;
use halyard_ota::manifest::{Manifest, Payload};
use halyard_ota::root::{RootFile, RootSigned, TrustedRoot};
use halyard_protocol::{
    AgentState, DeltaOffer, Desired, DesiredAction, DeviceId, Envelope, Kind, Report, Sha256, Slot,
    SlotReport,
};
use halyard_server::background::Background;
use halyard_server::deltas;
use halyard_server::model::{Delta, EnrollToken, NewDevice, Release};
use halyard_server::settings::{BrokerSettings, Settings};
use halyard_server::store::sqlite::SqliteStore;
use halyard_server::store::{Ingest, Store};
use time::macros::datetime;

const PRODUCT: &str = "demo-box";

struct Server {
    url: String,
    admin: String,
    enroll_token: String,
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
            enroll_token: bg.started.enroll_token.clone(),
            _bg: bg,
            dir,
        }
    }

    fn send(&self, method: &str, path: &str, body: &[u8]) -> serde_json::Value {
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {}", self.admin);
        let mut resp = match method {
            "PUT" => ureq::put(&url).header("Authorization", &auth).send(body),
            _ => ureq::post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        serde_json::from_slice(&resp.body_mut().read_to_vec().expect("body")).expect("JSON")
    }

    /// Enrolls a device of `PRODUCT` with key seed `n` and posts a signed report with `active` in slot
    /// A (the active one); returns the device's signing key and id.
    fn device_running(&self, n: u8, active: &[u8]) -> (ed25519_dalek::SigningKey, DeviceId) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[n; 32]);
        let public = key.verifying_key().to_bytes();
        let id = DeviceId::from_public_key(&public);
        let body = serde_json::json!({
            "token": self.enroll_token,
            "public_key": base64::engine::general_purpose::STANDARD.encode(public),
            "product": PRODUCT,
            "hardware_class": "hw1",
            "agent_version": "0.1.0",
        });
        ureq::post(&format!("{}/v1/enroll", self.url))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .expect("enroll");
        let slot = |image: Option<Sha256>| SlotReport {
            version: image.map(|_| "1.0.0".to_owned()),
            image_sha256: image,
            bootable: true,
            successful: true,
        };
        let report = Report {
            at: 1,
            agent_version: "0.1.0".into(),
            product: PRODUCT.into(),
            hardware_class: "hw1".into(),
            active: Slot::A,
            slot_a: slot(Some(Sha256::of(active))),
            slot_b: slot(None),
            state: AgentState::Idle,
            last_error: None,
            health: None,
        };
        let env = Envelope::seal(&report, &id, 1, &key).expect("seal");
        ureq::post(&format!("{}/v1/devices/{id}/report", self.url))
            .header("Content-Type", "application/json")
            .send(&env.encode()[..])
            .expect("report");
        (key, id)
    }

    /// Waits (bounded) for the device's `desired` envelope and returns its action.
    fn desired(&self, id: &DeviceId) -> DesiredAction {
        let url = format!("{}/v1/devices/{id}/desired", self.url);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut resp = ureq::get(&url).call().expect("desired GET");
            if resp.status() == 200 {
                let bytes = resp.body_mut().read_to_vec().expect("body");
                let env = Envelope::decode(&bytes).expect("envelope");
                let desired: Desired = serde_json::from_str(&env.body).expect("desired body");
                return desired.action;
            }
            assert!(Instant::now() < deadline, "no desired state for {id}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn artifact(&self, sha256: &str) -> Vec<u8> {
        let url = format!("{}/v1/artifacts/{sha256}", self.url);
        let mut resp = ureq::get(&url).call().expect("artifact GET");
        resp.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .expect("artifact body")
    }

    /// Waits (bounded) until the background job has recorded `count` deltas towards `version`.
    fn deltas(&self, version: &str, count: usize) -> Vec<Delta> {
        let store = SqliteStore::open(&self.dir.path().join("data/halyard.db")).expect("store");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let found = store.deltas(version).expect("deltas");
            if found.len() >= count || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_seed(&[n; 32])
}

fn root_json() -> Vec<u8> {
    let signed = RootSigned::new(
        datetime!(2031-01-01 00:00 UTC),
        (&[key(1).public()], 1),
        (&[key(10).public()], 1),
    )
    .unwrap();
    let mut file = RootFile::unsigned(signed);
    file.sign(&key(1));
    file.to_json()
}

fn full_bundle(version: &str, image: &[u8]) -> Vec<u8> {
    let payload = Payload::full(
        "rootfs".parse().unwrap(),
        image.len() as u64,
        Sha256Digest::of(image),
    );
    let manifest = Manifest::new(
        PRODUCT.parse().unwrap(),
        version.parse().unwrap(),
        1,
        datetime!(2026-05-01 00:00 UTC),
        vec![payload],
    )
    .unwrap();
    let sigs = bundle::sign_manifest(&manifest, &[key(10)]);
    let mut reader: &[u8] = image;
    let mut sources: Vec<&mut dyn Read> = vec![&mut reader];
    let mut out = Vec::new();
    bundle::write_bundle(&mut out, &manifest, &sigs, &mut sources, &mut |_| {}).unwrap();
    out
}

fn header_len(bundle: &[u8]) -> usize {
    let mut r = CountingReader::new(bundle);
    BundleHeader::read(&mut r, &Limits::DEFAULT).unwrap();
    r.offset() as usize
}

/// The new release's image: the old one with a changed region and an appended tail.
fn images() -> (Vec<u8>, Vec<u8>) {
    let v1 = halyard_ota::fuzzing::pseudo_random_image(2 << 20, 7);
    let mut v2 = v1.clone();
    v2[100_000..104_000].fill(0xAB);
    v2.extend_from_slice(&halyard_ota::fuzzing::pseudo_random_image(64 << 10, 9));
    (v1, v2)
}

#[test]
fn a_new_release_gets_a_delta_from_the_previous_image_that_rebuilds_it() {
    let server = Server::start();
    let _ = server.send("PUT", "/api/v1/trust-root", &root_json());
    let (v1, v2) = images();
    let (b1, b2) = (full_bundle("1.0.0", &v1), full_bundle("2.0.0", &v2));
    let _ = server.send("POST", "/api/v1/releases", &b1);
    let _ = server.send("POST", "/api/v1/releases", &b2);

    let deltas = server.deltas("2.0.0", 1);
    assert_eq!(deltas.len(), 1, "{deltas:?}");
    let d = &deltas[0];
    assert_eq!(d.source_sha256, Sha256Digest::of(&v1).to_hex());
    let artifact = server.artifact(&d.artifact_sha256);
    assert_eq!(artifact.len() as u64, d.size);
    assert_eq!(Sha256Digest::of(&artifact).to_hex(), d.artifact_sha256);
    eprintln!(
        "image {} bytes, full bundle {} bytes, server-side delta {} bytes ({:.2} %)",
        v2.len(),
        b2.len(),
        artifact.len(),
        100.0 * artifact.len() as f64 / b2.len() as f64
    );
    assert!(
        artifact.len() * 10 < b2.len(),
        "delta {} vs full {}",
        artifact.len(),
        b2.len()
    );

    // The signed header is the release's own, byte for byte; a patch follows it.
    let h = header_len(&b2);
    assert_eq!(artifact[..h], b2[..h]);
    assert_eq!(artifact[h..h + 8], halyard_ota::delta::MAGIC);

    // What the agent does: verify the header, then apply the patch to the old image.
    let root =
        TrustedRoot::from_bytes(&root_json(), datetime!(2026-06-01 00:00 UTC), &Limits::DEFAULT).unwrap();
    let policy = VerifyPolicy {
        product: Some(PRODUCT.parse().unwrap()),
        min_security_version: 1,
        now: datetime!(2026-06-01 00:00 UTC),
        active_source_sha256: Some(Sha256Digest::of(&v1)),
    };
    let verified = bundle::open(&artifact[..], &root, &policy, &Limits::DEFAULT).unwrap();
    let payload = verified.manifest().payloads[0].clone();
    let patch = verified.into_tail().unwrap();
    let mut out = Vec::new();
    let stats = bundle::install_from_external_delta(&payload, &v1, patch, &mut out).unwrap();
    assert_eq!(out, v2);
    assert_eq!(stats.target_sha256, Sha256Digest::of(&v2));

    // The first release had nothing to diff against. A third release gets one delta from each
    // earlier image, and the second release's delta is not computed again.
    assert!(server.deltas("1.0.0", 0).is_empty());
    let mut v3 = v2.clone();
    v3[500_000..500_100].fill(0x11);
    let _ = server.send("POST", "/api/v1/releases", &full_bundle("3.0.0", &v3));
    let mut sources: Vec<_> = server
        .deltas("3.0.0", 2)
        .into_iter()
        .map(|d| d.source_sha256)
        .collect();
    sources.sort();
    let mut expected = vec![Sha256Digest::of(&v1).to_hex(), Sha256Digest::of(&v2).to_hex()];
    expected.sort();
    assert_eq!(sources, expected);
    assert_eq!(server.deltas("2.0.0", 1), deltas);
}

fn release(version: &str, product: &str, image: &str) -> Release {
    Release {
        version: version.into(),
        product: product.into(),
        security_version: 1,
        bundle_sha256: format!("bundle-{version}"),
        bundle_size: 1000,
        image_sha256: image.into(),
        image_size: 900,
        created_at: 0,
    }
}

fn hash(n: u8) -> String {
    Sha256::of(&[n]).to_hex()
}

/// A device of `product` whose last report has `active` on slot B and another image on slot A.
fn device_running(store: &SqliteStore, n: u8, product: &str, active: &str) {
    let token = EnrollToken {
        id: format!("t{n}"),
        site: None,
        tags: vec![],
        created_at: 0,
        expires_at: None,
        used_by: None,
    };
    store.put_enroll_token(&format!("h{n}"), &token).unwrap();
    let id = DeviceId::from_public_key(&[n; 32]);
    let new = NewDevice {
        id: id.clone(),
        public_key: hex::encode([n; 32]),
        product: product.into(),
        hardware_class: "hw".into(),
    };
    store.enroll(&format!("h{n}"), &new, 1).unwrap();
    let slot = |image: Sha256| SlotReport {
        version: None,
        image_sha256: Some(image),
        bootable: true,
        successful: true,
    };
    let report = Report {
        at: 1,
        agent_version: "0.1.0".into(),
        product: product.into(),
        hardware_class: "hw".into(),
        active: Slot::B,
        slot_a: slot(Sha256::parse(&hash(5)).unwrap()),
        slot_b: slot(Sha256::parse(active).unwrap()),
        state: AgentState::Idle,
        last_error: None,
        health: None,
    };
    assert!(
        store
            .ingest(&id, Kind::Report, 1, &Ingest::Report(Box::new(report)), 2)
            .unwrap()
    );
}

#[test]
fn sources_are_the_images_devices_run_and_the_three_releases_below() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db")).unwrap();
    for n in 1..=6u8 {
        store
            .put_release(&release(&format!("{n}.0.0"), PRODUCT, &hash(n)))
            .unwrap();
    }
    store
        .put_release(&release("9.0.0", "other-box", &hash(9)))
        .unwrap();
    store
        .put_release(&release("0.9.0", "other-box", &hash(1)))
        .unwrap();
    // Runs 1.0.0 (slot A holds 5.0.0, inactive); a device of another product; an unknown image.
    device_running(&store, 1, PRODUCT, &hash(1));
    device_running(&store, 2, "other-box", &hash(2));
    device_running(&store, 3, PRODUCT, &hash(42));
    let target = store.release("6.0.0").unwrap().unwrap();
    let sources = deltas::sources(&store, &target).unwrap();
    let versions: Vec<_> = sources
        .values()
        .map(|r| r.version.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(versions, ["1.0.0", "3.0.0", "4.0.0", "5.0.0"]);
    assert!(
        sources
            .iter()
            .all(|(image, r)| *image == r.image_sha256 && r.product == PRODUCT)
    );
}

#[test]
fn a_rollout_offers_the_delta_to_a_device_running_its_source() {
    let server = Server::start();
    let _ = server.send("PUT", "/api/v1/trust-root", &root_json());
    let (v1, v2) = images();
    let _ = server.send("POST", "/api/v1/releases", &full_bundle("1.0.0", &v1));
    let (_, id) = server.device_running(21, &v1);
    let b2 = full_bundle("2.0.0", &v2);
    let _ = server.send("POST", "/api/v1/releases", &b2);
    let delta = server.deltas("2.0.0", 1).pop().expect("a delta");
    let rollout = serde_json::json!({
        "version": "2.0.0",
        "selector": "hw=hw1",
        "seed": 7,
        "policy": {
            "on_breach": "revert",
            "silent_after_secs": 1800,
            "respect_windows": false,
            "waves": [{"size": {"percent": 100}, "soak_secs": 60, "failure_budget": {"count": 0}}],
        },
    });
    let _ = server.send("POST", "/api/v1/rollouts", rollout.to_string().as_bytes());
    let DesiredAction::Install { bundle, deltas, .. } = server.desired(&id) else {
        panic!("not an install");
    };
    assert_eq!(bundle.sha256, Sha256::of(&b2));
    let [offer]: [DeltaOffer; 1] = deltas.try_into().expect("one delta offer");
    assert_eq!(offer.source_sha256, Sha256::of(&v1));
    assert_eq!(offer.artifact.sha256.to_hex(), delta.artifact_sha256);
    assert_eq!(offer.artifact.size, delta.size);
    let path = format!("/v1/artifacts/{}", delta.artifact_sha256);
    assert!(offer.artifact.url.ends_with(&path), "{}", offer.artifact.url);
}
