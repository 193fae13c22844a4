//! SIGTERM during a download: the agent stops at the next chunk boundary and exits 0 with the
//! journal in `Downloading` at a durable offset; the next start resumes from that offset (no second
//! request from byte 0) and finishes the update.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use halyard_node::faults::NoCrash;
use halyard_node::fsm::State;
use halyard_node::journal::Journal;
use halyard_protocol::{Artifact, Desired, Envelope, Sha256};
use support::agent::{AgentBox, closed_port};
use support::api_server::ApiServer;
use support::http_server::ArtifactServer;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn sigterm_pauses_a_download_which_the_next_start_resumes() {
    let api = ApiServer::start();
    let b = AgentBox::new(&format!(
        "[server]\nbroker = \"mqtt://127.0.0.1:{}\"\nurl = \"{}\"\n\
         [poll]\ntick_secs = 1\nhttp_fallback_secs = 1\nhttp_poll_secs = 1\n\
         [update]\nchunk_bytes = 16384\n",
        closed_port(),
        api.url()
    ));
    let device = b.identity().device_id().clone();
    let mut v2 = b.v1.clone();
    v2[100..50_000].fill(0x77);
    let bundle = full_bundle("2.0.0", 1, &v2);
    let artifacts = ArtifactServer::start();
    artifacts.put("v2.hyd", bundle.clone());
    artifacts.delay(Duration::from_millis(200));
    let desired = Desired {
        rollout: Some("r-stop".into()),
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
    let env = Envelope::seal(&desired, &device, 1, &SigningKey::from_bytes(&[42; 32])).unwrap();
    api.route(&format!("GET /v1/devices/{device}/desired"), 200, env.encode());

    let mut agent = b.spawn(&b.log_path("first.log"));
    let start = Instant::now();
    while artifacts.requests().len() < 3 {
        assert!(start.elapsed() < WAIT, "{}", agent.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.term();
    let stopped = Instant::now();
    assert!(agent.wait(WAIT).success(), "{}", agent.log());
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "stopped at a chunk boundary"
    );
    assert!(agent.log().contains("download paused"), "{}", agent.log());
    let journal = Journal::new(&b.data(), Arc::new(NoCrash));
    let done = match journal.load().unwrap().unwrap().state {
        State::Downloading { done, .. } => done,
        other => panic!("journal says {other:?}"),
    };
    assert!(done > 0 && done < bundle.len() as u64, "paused at {done}");

    artifacts.delay(Duration::ZERO);
    let before = artifacts.requests().len();
    let mut again = b.spawn(&b.log_path("second.log"));
    assert!(again.wait(WAIT).success(), "{}", again.log());
    assert!(again.log().contains("reboot requested"), "{}", again.log());
    let second = artifacts.requests()[before..].to_vec();
    assert!(second[0].contains(&format!("bytes={done}-")), "{second:?}");
    assert!(!second.iter().any(|r| r.contains("bytes=0-")), "{second:?}");
}
