//! Health checks against real processes and loopback sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use halyard_node::health::{Check, ServerProbe, Verdict, first_failure, systemd_unit};

const T: Duration = Duration::from_secs(2);

fn command(program: &str, args: &[&str], timeout: Duration) -> Check {
    Check::Command {
        program: PathBuf::from(program),
        args: args.iter().map(|s| s.to_string()).collect(),
        timeout,
    }
}

#[test]
fn commands_pass_fail_and_time_out() {
    assert_eq!(command("/bin/true", &[], T).run().verdict, Verdict::Pass);
    let Verdict::Fail(reason) = command("/bin/sh", &["-c", "exit 3"], T).run().verdict else {
        panic!()
    };
    assert!(reason.contains('3'), "{reason}");
    let start = Instant::now();
    let Verdict::Fail(reason) = command("/bin/sleep", &["5"], Duration::from_millis(200))
        .run()
        .verdict
    else {
        panic!()
    };
    assert!(
        reason.contains("timed out") && start.elapsed() < Duration::from_secs(4),
        "{reason}"
    );
    let Verdict::Fail(reason) = command("/nonexistent/prog", &[], T).run().verdict else {
        panic!()
    };
    assert!(reason.contains("cannot start"), "{reason}");
}

#[test]
fn tcp_connects_or_names_the_refusal() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(Check::Tcp { addr, timeout: T }.run().verdict, Verdict::Pass);
    drop(listener);
    let check = Check::Tcp { addr, timeout: T };
    let failure = first_failure(&[command("/bin/true", &[], T), check]).unwrap();
    assert!(
        failure.starts_with(&format!("tcp:{addr}: connect failed")),
        "{failure}"
    );
}

/// A one-shot HTTP server answering `response` to the first request; the thread returns the request.
fn serve(response: &'static str) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        stream.write_all(response.as_bytes()).unwrap();
        // Close our side only after the whole request was read, so the client sees data, not a reset.
        // (The client may already have hung up after the status line: that is not a failure.)
        let _ = stream.shutdown(std::net::Shutdown::Write);
        request
    });
    (addr, server)
}

/// Run the HTTP check against a server answering `response`; also checks the request sent.
fn check_against(response: &'static str) -> Verdict {
    let (addr, server) = serve(response);
    let verdict = http(addr).run().verdict;
    let request = server.join().unwrap();
    assert!(
        request.starts_with(b"GET /healthz HTTP/1.1\r\nHost: device\r\n"),
        "{request:?}"
    );
    verdict
}

fn http(addr: SocketAddr) -> Check {
    Check::Http {
        addr,
        host: "device".into(),
        path: "/healthz".into(),
        expect: 200,
        timeout: T,
    }
}

#[test]
fn http_checks_the_status_code() {
    let ok = check_against("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(ok, Verdict::Pass);
    let down = check_against("HTTP/1.1 503 Service Unavailable\r\n\r\n");
    assert_eq!(down, Verdict::Fail("status 503, expected 200".into()));
    let Verdict::Fail(reason) = check_against("SSH-2.0-OpenSSH_9.2\r\n") else {
        panic!()
    };
    assert!(reason.contains("not an HTTP/1.x status line"), "{reason}");
}

#[test]
fn systemd_units_are_skipped_without_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("no-systemd");
    let Verdict::Skipped(reason) = systemd_unit(&absent, "sshd.service", T) else {
        panic!()
    };
    assert!(reason.contains("systemd is not running"), "{reason}");
    // With the marker present, systemctl decides; a unit that does not exist is never active.
    let verdict = systemd_unit(dir.path(), "halyard-no-such-unit.service", T);
    assert!(
        matches!(&verdict, Verdict::Fail(r) if r.contains("halyard-no-such-unit")),
        "{verdict:?}"
    );
}

fn server_check(probe: ServerProbe) -> Verdict {
    Check::Server { probe, timeout: T }.run().verdict
}

#[test]
fn server_reachability_through_the_broker_port_or_the_server_url() {
    let broker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = broker.local_addr().unwrap().port();
    let host = "localhost".to_owned(); // resolved on every run
    assert_eq!(
        server_check(ServerProbe::Broker {
            host: host.clone(),
            port
        }),
        Verdict::Pass
    );
    drop(broker);
    let Verdict::Fail(reason) = server_check(ServerProbe::Broker { host, port }) else {
        panic!("a closed broker port is unreachable")
    };
    assert!(reason.contains("connect"), "{reason}");

    let http = |response: &'static str| {
        let (addr, server) = serve(response);
        let verdict = server_check(ServerProbe::Http {
            url: format!("http://{addr}"),
            ca_file: None,
        });
        let request = server.join().unwrap();
        assert!(request.starts_with(b"GET / HTTP/1.1\r\n"), "{request:?}");
        verdict
    };
    let not_found = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(
        http(not_found),
        Verdict::Pass,
        "any answer below 500: the server is up"
    );
    let unavailable = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert!(matches!(http(unavailable), Verdict::Fail(r) if r.contains("503")));
}
