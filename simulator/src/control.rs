//! A small blocking client for the server's HTTP API, as the simulator (and its tests) drive it:
//! trust root, releases, sites, enrollment tokens, device enrollment, rollouts.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// An API call failed.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {reason}")]
pub struct ControlError {
    pub method: &'static str,
    pub path: String,
    pub reason: String,
}

/// The operator API with one bearer token.
#[derive(Debug, Clone)]
pub struct Control {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Control {
    pub fn new(base: &str, token: &str) -> Self {
        // Timeouts per phase, not one global one: with a global timeout ureq resolves every new
        // connection's address on a thread of its own. The pool keeps a connection for each of the
        // simulator's enrollment threads (ureq keeps 3 per host by default).
        let limit = Some(Duration::from_secs(120));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_send_request(limit)
            .timeout_send_body(limit)
            .timeout_recv_response(limit)
            .timeout_recv_body(limit)
            .max_idle_connections_per_host(16)
            .build();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            agent: config.into(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn finish<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ControlError> {
        let err = |reason: String| ControlError {
            method,
            path: path.to_owned(),
            reason,
        };
        let mut resp = resp.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            return Err(err(format!("{status}: {text}")));
        }
        let text = if text.is_empty() { "null" } else { text.as_str() };
        serde_json::from_str(text).map_err(|e| err(format!("bad JSON answer: {e}")))
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ControlError> {
        let resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.finish("GET", path, resp)
    }

    /// A plain-text page (Prometheus `/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String, ControlError> {
        let err = |reason: String| ControlError {
            method: "GET",
            path: path.to_owned(),
            reason,
        };
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| err(e.to_string()))?;
        resp.body_mut().read_to_string().map_err(|e| err(e.to_string()))
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, ControlError> {
        let resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        self.finish("POST", path, resp)
    }

    pub fn put_json<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, ControlError> {
        let resp = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        self.finish("PUT", path, resp)
    }

    pub fn put_bytes<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, ControlError> {
        let resp = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send(body);
        self.finish("PUT", path, resp)
    }

    pub fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, ControlError> {
        let resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/octet-stream")
            .send(body);
        self.finish("POST", path, resp)
    }

    /// A one-time enrollment token for `site`.
    pub fn enroll_token(&self, site: Option<&str>, tags: &[String]) -> Result<String, ControlError> {
        let v: Value = self.post(
            "/api/v1/enroll-tokens",
            &serde_json::json!({"site": site, "tags": tags}),
        )?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ControlError {
                method: "POST",
                path: "/api/v1/enroll-tokens".into(),
                reason: "no token in answer".into(),
            })
    }

    /// `count` one-time enrollment tokens for `site`, a thousand (the server's most) to a call.
    pub fn enroll_tokens(&self, site: Option<&str>, count: usize) -> Result<Vec<String>, ControlError> {
        let mut tokens = Vec::with_capacity(count);
        while tokens.len() < count {
            tokens.extend(self.token_batch(site, (count - tokens.len()).min(1000))?);
        }
        Ok(tokens)
    }

    fn token_batch(&self, site: Option<&str>, count: usize) -> Result<Vec<String>, ControlError> {
        let path = "/api/v1/enroll-tokens/batch";
        let v: Value = self.post(path, &serde_json::json!({"site": site, "count": count}))?;
        let tokens: Option<Vec<String>> = v["tokens"].as_array().map(|a| {
            a.iter()
                .filter_map(|t| t["token"].as_str().map(str::to_owned))
                .collect()
        });
        tokens.filter(|t| t.len() == count).ok_or_else(|| ControlError {
            method: "POST",
            path: path.into(),
            reason: format!("expected {count} tokens, got {v}"),
        })
    }

    /// Enrollment of many devices in one call, as a provisioning station does (`POST
    /// /v1/enroll/batch`): `(token, base64 public key, hardware class)` each; the server key PEM for
    /// each, in order, or the first device's refusal.
    pub fn enroll_devices(&self, devices: &[(&str, String, &str)]) -> Result<Vec<String>, ControlError> {
        let path = "/v1/enroll/batch";
        let body: Vec<Value> = devices
            .iter()
            .map(|(token, key, hw)| enroll_request(token, key, hw))
            .collect();
        let resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(serde_json::json!({ "devices": body }).to_string().as_bytes());
        let v: Value = self.finish("POST", path, resp)?;
        let refused = |reason: String| ControlError {
            method: "POST",
            path: path.into(),
            reason,
        };
        let results = v["results"]
            .as_array()
            .ok_or_else(|| refused(format!("no results in {v}")))?;
        if results.len() != devices.len() {
            return Err(refused(format!(
                "{} results for {} devices",
                results.len(),
                devices.len()
            )));
        }
        results
            .iter()
            .map(|r| match r["enrolled"]["server_key"].as_str() {
                Some(pem) => Ok(pem.to_owned()),
                None => Err(refused(format!("device refused: {r}"))),
            })
            .collect()
    }

    /// Device-side enrollment (no bearer token): returns (device id, server key PEM, broker URL).
    pub fn enroll_device(
        &self,
        token: &str,
        public_key_b64: &str,
        hardware_class: &str,
    ) -> Result<(String, String, String), ControlError> {
        let body = enroll_request(token, public_key_b64, hardware_class);
        let resp = self
            .agent
            .post(format!("{}/v1/enroll", self.base))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        let v: Value = self.finish("POST", "/v1/enroll", resp)?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Ok((field("device_id"), field("server_key"), field("broker")))
    }
}

/// One device's enrollment request, as the agent sends it.
fn enroll_request(token: &str, public_key_b64: &str, hardware_class: &str) -> Value {
    serde_json::json!({"token": token, "public_key": public_key_b64, "product": crate::fleet::PRODUCT, "hardware_class": hardware_class, "agent_version": env!("CARGO_PKG_VERSION")})
}
