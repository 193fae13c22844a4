//! The HTTP polling fallback: with the broker unreachable (a closed loopback port) for longer than
//! `http_fallback_secs`, the agent polls `GET /v1/devices/{id}/desired`, verifies the envelope like
//! an MQTT one (server key, sequence guard), installs the release it names, and posts its signed
//! events and reports to `POST …/events` and `POST …/report` (the current report once when polling
//! starts, like on an MQTT connect). A forged desired is ignored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_protocol::{AgentState, Artifact, Desired, Envelope, Kind, Report, Sha256};
use support::agent::{AgentBox, closed_port};
use support::api_server::ApiServer;
use support::http_server::ArtifactServer;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn config(api: &ApiServer) -> String {
    format!(
        "[server]\nbroker = \"mqtt://127.0.0.1:{}\"\nurl = \"{}\"\n\
         [poll]\ntick_secs = 1\nhttp_fallback_secs = 1\nhttp_poll_secs = 1\n",
        closed_port(),
        api.url()
    )
}

fn envelopes(api: &ApiServer, route: &str, key: &VerifyingKey) -> Vec<Envelope> {
    api.bodies(route)
        .iter()
        .map(|b| {
            let env = Envelope::decode(b).unwrap();
            env.verify(key).unwrap();
            env
        })
        .collect()
}

#[test]
fn polls_desired_over_http_installs_and_posts_signed_events_and_reports() {
    let api = ApiServer::start();
    let b = AgentBox::new(&config(&api));
    let identity = b.identity();
    let device = identity.device_id().clone();
    let device_key = VerifyingKey::from_bytes(&identity.public_key()).unwrap();
    let mut v2 = b.v1.clone();
    v2[100..9000].fill(0x5A);
    let bundle = full_bundle("2.0.0", 1, &v2);
    let artifacts = ArtifactServer::start();
    artifacts.put("v2.hyd", bundle.clone());
    let desired = Desired {
        rollout: Some("r-http".into()),
        action: install(
            "2.0.0",
            &Artifact {
                url: artifacts.url("v2.hyd"),
                sha256: Sha256::of(&bundle),
                size: bundle.len() as u64,
            },
            vec![],
        ),
    };
    let route = format!("GET /v1/devices/{device}/desired");
    // First a forged one (wrong key), then the real one.
    let forged = Envelope::seal(&desired, &device, 5, &SigningKey::from_bytes(&[9; 32])).unwrap();
    api.route(&route, 200, forged.encode());
    let mut agent = b.spawn(&b.log_path("agent.log"));
    agent.wait_log("ignored a message", WAIT);
    assert_eq!(artifacts.bytes_sent(), 0, "nothing fetched for a forged desired");
    let real = Envelope::seal(&desired, &device, 6, &SigningKey::from_bytes(&[42; 32])).unwrap();
    api.route(&route, 200, real.encode());
    let status = agent.wait(WAIT);
    assert!(status.success(), "{}", agent.log());
    assert!(agent.log().contains("reboot requested"), "{}", agent.log());

    let events = envelopes(&api, &format!("POST /v1/devices/{device}/events"), &device_key);
    assert!(events.iter().all(|e| e.device == device));
    // A lone event travels as `event`; the transitions of one settle as one `events` envelope.
    let numbered: Vec<(u64, halyard_protocol::Event)> = events
        .iter()
        .flat_map(|e| match e.kind {
            Kind::Event => vec![(e.seq, e.open(&device_key).unwrap())],
            Kind::Events => e
                .open::<halyard_protocol::Events>(&device_key)
                .unwrap()
                .numbered(e.seq)
                .unwrap(),
            other => panic!("{other:?} on the events topic"),
        })
        .collect();
    assert!(
        events.iter().any(|e| e.kind == Kind::Events),
        "the install's transitions in one envelope"
    );
    let states: Vec<AgentState> = numbered.iter().map(|(_, e)| e.to.clone()).collect();
    let reached = |f: fn(&AgentState) -> bool| states.iter().any(f);
    assert!(
        reached(|s| matches!(s, AgentState::Downloading { .. })),
        "{states:?}"
    );
    assert!(
        reached(|s| matches!(s, AgentState::Rebooting { .. })),
        "{states:?}"
    );
    let reports = envelopes(&api, &format!("POST /v1/devices/{device}/report"), &device_key);
    let last: Report = reports.last().unwrap().open(&device_key).unwrap();
    assert_eq!(last.slot_b.version.as_deref(), Some("2.0.0"));
    let seqs: Vec<u64> = numbered
        .iter()
        .map(|(seq, _)| *seq)
        .chain(reports.iter().map(|e| e.seq))
        .collect();
    let mut unique = seqs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        seqs.len(),
        "every message has its own sequence number"
    );
}

#[test]
fn no_desired_is_204_and_the_agent_keeps_waiting() {
    let api = ApiServer::start();
    let b = AgentBox::new(&config(&api));
    let device = b.identity().device_id().clone();
    let route = format!("GET /v1/devices/{device}/desired");
    api.route(&route, 204, Vec::new());
    let mut agent = b.spawn(&b.log_path("agent.log"));
    let start = std::time::Instant::now();
    while api.bodies(&route).len() < 2 {
        assert!(start.elapsed() < WAIT, "{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.term();
    assert!(agent.wait(WAIT).success(), "{}", agent.log());
    assert!(
        !agent.log().contains("polling desired over HTTP"),
        "{}",
        agent.log()
    );
    let key = VerifyingKey::from_bytes(&b.identity().public_key()).unwrap();
    let reports = envelopes(&api, &format!("POST /v1/devices/{device}/report"), &key);
    assert_eq!(
        reports.len(),
        1,
        "the state is posted once when the fallback starts"
    );
    let report: Report = reports[0].open(&key).unwrap();
    assert_eq!(report.state, AgentState::Idle);
}
