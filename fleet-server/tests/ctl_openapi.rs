//! The OpenAPI description the server embeds (`src/api/openapi.json`): valid JSON, OpenAPI 3.0,
//! every reference resolves, and it names exactly the routes of the HTTP contract.

use std::collections::BTreeSet;

use serde_json::Value;

const DOC: &str = include_str!("../src/api/openapi.json");

/// The contract's routes (docs: the server's HTTP contract), as (method, path).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/enroll"),
    ("post", "/v1/enroll/batch"),
    ("get", "/v1/devices/{id}/desired"),
    ("post", "/v1/devices/{id}/report"),
    ("post", "/v1/devices/{id}/events"),
    ("post", "/v1/devices/{id}/presence"),
    ("get", "/v1/artifacts/{sha256}"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/api/v1/devices"),
    ("get", "/api/v1/devices/{id}"),
    ("put", "/api/v1/devices/{id}/labels"),
    ("get", "/api/v1/sites"),
    ("put", "/api/v1/sites/{name}"),
    ("delete", "/api/v1/sites/{name}"),
    ("get", "/api/v1/releases"),
    ("post", "/api/v1/releases"),
    ("post", "/api/v1/releases/{version}/quarantine"),
    ("delete", "/api/v1/releases/{version}/quarantine/{hardware_class}"),
    ("put", "/api/v1/trust-root"),
    ("get", "/api/v1/trust-root"),
    ("get", "/api/v1/rollouts"),
    ("post", "/api/v1/rollouts"),
    ("get", "/api/v1/rollouts/{id}"),
    ("post", "/api/v1/rollouts/{id}/pause"),
    ("post", "/api/v1/rollouts/{id}/resume"),
    ("post", "/api/v1/rollouts/{id}/abort"),
    ("post", "/api/v1/rollouts/{id}/rollback"),
    ("get", "/api/v1/rollouts/{id}/events"),
    ("get", "/api/v1/broker/mosquitto"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("post", "/api/v1/enroll-tokens"),
    ("get", "/api/v1/enroll-tokens"),
    ("post", "/api/v1/enroll-tokens/batch"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/fleet"),
];

fn doc() -> Value {
    serde_json::from_str(DOC).expect("openapi.json is valid JSON")
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item is an object") {
            ops.push((method.clone(), path.clone(), op));
        }
    }
    ops
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn is_openapi_3_0() {
    let doc = doc();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.0.")));
    assert!(doc["info"]["title"].is_string());
}

#[test]
fn names_exactly_the_contract_routes() {
    let doc = doc();
    let documented: BTreeSet<(String, String)> =
        operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
}

#[test]
fn every_reference_resolves() {
    let doc = doc();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "only {} references", refs.len());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
}

#[test]
fn operator_api_needs_a_bearer_token_and_device_api_does_not() {
    let doc = doc();
    for (method, path, op) in operations(&doc) {
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let operator = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
        assert_eq!(secured, operator, "{method} {path}");
        if operator {
            assert!(op["responses"]["401"].is_object(), "{method} {path} lacks 401");
            assert!(op["responses"]["403"].is_object(), "{method} {path} lacks 403");
        }
        let ids = op["operationId"].as_str();
        assert!(
            ids.is_some_and(|id| !id.is_empty()),
            "{method} {path} has no operationId"
        );
    }
}

#[test]
fn path_parameters_are_declared() {
    let doc = doc();
    for (method, path, op) in operations(&doc) {
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        assert_eq!(declared, in_path, "{method} {path}");
    }
}

#[test]
fn records_match_the_model_field_names() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    let fields = |name: &str| -> BTreeSet<String> {
        schemas[name]["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let sample = |value: Value| -> BTreeSet<String> {
        value
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let site = halyard_server::model::Site {
        name: "s".into(),
        tz: "UTC".into(),
        windows: vec![],
        max_concurrent: None,
    };
    assert_eq!(
        fields("Site"),
        sample(serde_json::to_value(site).expect("serializes"))
    );
    let release = halyard_server::model::Release {
        version: "1".into(),
        product: "p".into(),
        security_version: 1,
        bundle_sha256: String::new(),
        bundle_size: 0,
        image_sha256: String::new(),
        image_size: 0,
        created_at: 0,
    };
    assert_eq!(
        fields("Release"),
        sample(serde_json::to_value(release).expect("serializes"))
    );
    let audit = halyard_server::model::AuditEntry {
        at: 0,
        actor: String::new(),
        action: String::new(),
        target: String::new(),
        detail: String::new(),
    };
    assert_eq!(
        fields("AuditEntry"),
        sample(serde_json::to_value(audit).expect("serializes"))
    );
}
