//! Conformance of enrollment in bulk: `enroll_many` gives each device the outcome `enroll` gives it
//! after the devices before it, tokens included.

use halyard_server::model::EnrollToken;
use halyard_server::store::{EnrollOutcome, Store};

use super::{dev_id, new_device};

fn token(s: &dyn Store, id: &str) -> String {
    let t = EnrollToken {
        id: id.into(),
        site: Some("store-042".into()),
        tags: vec![],
        created_at: 10,
        expires_at: None,
        used_by: None,
    };
    let hash = format!("hash-{id}");
    s.put_enroll_token(&hash, &t).expect("put token");
    hash
}

pub(super) fn enroll_many_matches_one_at_a_time(s: &dyn Store) {
    let (t1, t2, t3) = (token(s, "t1"), token(s, "t2"), token(s, "t3"));
    let batch = vec![
        (t1.clone(), new_device(1)),
        // the token the device before used
        (t1.clone(), new_device(2)),
        // an enrolled key with a fresh token
        (t2.clone(), new_device(1)),
        ("hash-unknown".to_string(), new_device(3)),
        (t3.clone(), new_device(3)),
        // a retry of the first (lost answer) is idempotent
        (t1, new_device(1)),
    ];
    let got: Vec<String> = s
        .enroll_many(&batch, 100)
        .expect("batch")
        .into_iter()
        .map(|o| match o {
            EnrollOutcome::Enrolled(d) => format!("enrolled {}", d.id),
            other => format!("{other:?}"),
        })
        .collect();
    let want = [
        format!("enrolled {}", dev_id(1)),
        "BadToken".into(),
        "KeyConflict".into(),
        "BadToken".into(),
        format!("enrolled {}", dev_id(3)),
        format!("enrolled {}", dev_id(1)),
    ];
    assert_eq!(got, want);
    assert_eq!(s.devices().expect("devices").len(), 2);
    let fresh = s
        .enroll_tokens()
        .expect("tokens")
        .into_iter()
        .find(|t| t.id == "t2")
        .expect("t2");
    assert_eq!(fresh.used_by, None, "a refused device used no token");
    assert!(matches!(
        s.enroll(&t2, &new_device(4), 100).expect("enroll"),
        EnrollOutcome::Enrolled(_)
    ));
}

/// A batch of tokens is stored whole or not at all: a duplicate hash in it stores none of them.
pub(super) fn token_batches_are_all_or_none(s: &dyn Store) {
    let t = |id: &str| EnrollToken {
        id: id.into(),
        site: None,
        tags: vec!["line-2".into()],
        created_at: 10,
        expires_at: Some(99),
        used_by: None,
    };
    let batch: Vec<(String, EnrollToken)> = (0..3).map(|n| (format!("h{n}"), t(&format!("b{n}")))).collect();
    s.put_enroll_tokens(&batch).expect("batch");
    let ids = |s: &dyn Store| -> Vec<String> {
        s.enroll_tokens()
            .expect("tokens")
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(ids(s), ["b0", "b1", "b2"]);
    let clash = vec![
        ("h7".to_string(), t("c7")),
        ("h8".to_string(), t("c8")),
        ("h1".to_string(), t("c1")),
    ];
    assert!(s.put_enroll_tokens(&clash).is_err(), "a duplicate hash accepted");
    assert_eq!(ids(s), ["b0", "b1", "b2"], "part of a refused batch was stored");
    assert_eq!(s.enroll_tokens().expect("tokens")[1], t("b1"));
}
