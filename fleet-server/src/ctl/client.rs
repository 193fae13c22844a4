//! The HTTP side of `halyardctl`: a blocking [`ureq`] agent with the bearer token, JSON in and out,
//! and the mapping from HTTP outcomes to [`CtlError`] (and so to exit codes).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use ureq::http::request::Builder as RequestBuilder;
use ureq::http::{Method, Request};
use ureq::{Agent, SendBody};

/// Exit code: the server answered with an error status (or something unreadable).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: bad command line or bad local input (files, window syntax, policy).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Bodies above this size are sent with `Expect: 100-continue`.
const EXPECT_CONTINUE_ABOVE: u64 = 64 * 1024;

/// Largest JSON answer read from the server.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Why a `halyardctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The server answered with an error status.
    #[error("server refused {method} {path}: {status}: {message}")]
    Refused {
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    /// No connection (refused, DNS, timeout, broken pipe).
    #[error("cannot reach server at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: ureq::Error,
    },
    /// The server answered, but not with what the contract promises.
    #[error("unexpected answer to {method} {path}: {why}")]
    BadAnswer {
        method: Method,
        path: String,
        why: String,
    },
    /// Bad local input (a file, a window, a policy).
    #[error("{0}")]
    Usage(String),
    /// A server answer did not decode into the contract's type.
    #[error("unexpected {what} from the server: {why}")]
    Decode { what: String, why: String },
    /// A local file could not be read or written.
    #[error("local file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing to the terminal failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CtlError {
    /// The process exit code for this error (see `halyardctl --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Refused { .. }
            | CtlError::BadAnswer { .. }
            | CtlError::Decode { .. }
            | CtlError::Output(_) => EXIT_REFUSED,
            CtlError::Usage(_) | CtlError::File { .. } => EXIT_USAGE,
            CtlError::Unreachable { .. } => EXIT_UNREACHABLE,
        }
    }
}

/// A connection to one server with one token.
#[derive(Clone)]
pub struct Client {
    agent: Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`), sending `token` as a bearer token.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self::build(base, token, ureq::tls::RootCerts::WebPki)
    }

    /// As [`Client::new`], trusting only the CA certificates in `ca_file` (a server with its own
    /// fleet CA: `<data>/tls/ca.pem`).
    pub fn with_ca(base: &str, token: Option<String>, ca_file: &Path) -> Result<Self, CtlError> {
        let file_err = |source| CtlError::File {
            path: ca_file.to_path_buf(),
            source,
        };
        let pem = std::fs::read(ca_file).map_err(file_err)?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                certs.push(cert);
            }
        }
        if certs.is_empty() {
            return Err(CtlError::Usage(format!(
                "{}: no PEM certificate",
                ca_file.display()
            )));
        }
        let roots = ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs));
        Ok(Self::build(base, token, roots))
    }

    fn build(base: &str, token: Option<String>, roots: ureq::tls::RootCerts) -> Self {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .build();
        Self {
            agent: Agent::new_with_config(config),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// `GET path` → JSON.
    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.call(Method::GET, path, None, SendBody::none())
    }

    /// `DELETE path` → JSON (`null` for 204).
    pub fn delete(&self, path: &str) -> Result<Value, CtlError> {
        self.call(Method::DELETE, path, None, SendBody::none())
    }

    /// `POST`/`PUT` a JSON body → JSON.
    pub fn send_json(&self, method: Method, path: &str, body: &Value) -> Result<Value, CtlError> {
        let bytes = body.to_string();
        let mut slice = bytes.as_bytes();
        let body = SendBody::from_reader(&mut slice);
        self.call(method, path, Some(("application/json", bytes.len() as u64)), body)
    }

    /// `POST`/`PUT` `len` bytes streamed from `reader` with `content_type` → JSON.
    pub fn send_stream(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        len: u64,
        reader: &mut dyn Read,
    ) -> Result<Value, CtlError> {
        let body = SendBody::from_reader(reader);
        self.call(method, path, Some((content_type, len)), body)
    }

    /// `GET path` as a stream (Server-Sent Events): the open body of a 2xx answer, read as it arrives
    /// (no size cap or timeout: the caller reads it line by line and drops it to stop).
    pub fn open_stream(&self, path: &str) -> Result<ureq::BodyReader<'static>, CtlError> {
        let url = format!("{}{}", self.base, path);
        let request = self
            .headers(Request::builder().method(Method::GET).uri(&url), None)
            .header("accept", "text/event-stream")
            .body(SendBody::none())
            .map_err(|e| CtlError::Usage(format!("invalid request URL {url}: {e}")))?;
        let response = self.agent.run(request).map_err(|source| CtlError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = response.into_body().read_to_string().unwrap_or_default();
            return Err(CtlError::Refused {
                method: Method::GET,
                path: path.to_owned(),
                status,
                message: error_message(&text),
            });
        }
        Ok(response.into_body().into_reader())
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        content: Option<(&str, u64)>,
        body: SendBody<'_>,
    ) -> Result<Value, CtlError> {
        let url = format!("{}{}", self.base, path);
        let request = self
            .headers(Request::builder().method(method.clone()).uri(&url), content)
            .body(body)
            .map_err(|e| CtlError::Usage(format!("invalid request URL {url}: {e}")))?;
        let bad = |why: String| CtlError::BadAnswer {
            method: method.clone(),
            path: path.to_owned(),
            why,
        };
        let mut response = self.agent.run(request).map_err(|source| match source {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_) => CtlError::Unreachable {
                url: self.base.clone(),
                source,
            },
            other => bad(other.to_string()),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| bad(format!("reading the body: {e}")))?;
        answer(status, &text).map_err(|e| match e {
            Answer::Refused(message) => CtlError::Refused {
                method: method.clone(),
                path: path.to_owned(),
                status,
                message,
            },
            Answer::NotJson(why) => bad(why),
        })
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Bearer token, content type and length, and `Expect: 100-continue` for large bodies: a
    /// server that refuses the request before reading the body (no trust root, no permission)
    /// then answers with its error instead of closing the connection in the middle of an upload.
    fn headers(&self, mut request: RequestBuilder, content: Option<(&str, u64)>) -> RequestBuilder {
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some((content_type, len)) = content {
            request = request
                .header("content-type", content_type)
                .header("content-length", len);
            if len > EXPECT_CONTINUE_ABOVE {
                request = request.header("expect", "100-continue");
            }
        }
        request
    }
}

/// Why an answer is not a success.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// An error status with the server's error text.
    Refused(String),
    /// A success status whose body is not JSON.
    NotJson(String),
}

/// Reads an HTTP answer as the contract defines it.
fn answer(status: u16, text: &str) -> Result<Value, Answer> {
    if (200..300).contains(&status) {
        parse_answer(text).map_err(Answer::NotJson)
    } else {
        Err(Answer::Refused(error_message(text)))
    }
}

/// A success body: JSON, or `null` when empty (204).
fn parse_answer(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// The `error` text of an error body, or the body itself when it is not the contract's shape.
pub fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                "(no error text)".to_owned()
            } else {
                trimmed.chars().take(500).collect()
            }
        })
}

/// Percent-encodes one path segment (ids, versions, names), keeping RFC 3986 unreserved bytes.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn query_value(value: &str) -> String {
    segment(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_comes_from_the_error_field() {
        assert_eq!(
            error_message(r#"{"error":"role admin required"}"#),
            "role admin required"
        );
        assert_eq!(error_message("Bad Gateway\n"), "Bad Gateway");
        assert_eq!(error_message(""), "(no error text)");
    }

    #[test]
    fn status_decides_between_answer_and_refusal() {
        assert_eq!(answer(201, r#"{"id":"r1"}"#), Ok(serde_json::json!({"id": "r1"})));
        assert_eq!(answer(204, ""), Ok(Value::Null));
        assert_eq!(
            answer(409, r#"{"error":"release 2.0.0 is quarantined"}"#),
            Err(Answer::Refused("release 2.0.0 is quarantined".into()))
        );
        assert!(matches!(answer(200, "<html>"), Err(Answer::NotJson(_))));
    }

    #[test]
    fn empty_success_body_is_null() {
        assert_eq!(parse_answer(""), Ok(Value::Null));
        assert_eq!(parse_answer("[1]"), Ok(serde_json::json!([1])));
        assert!(parse_answer("<html>").is_err());
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("2.0.0-rc.1+b7"), "2.0.0-rc.1%2Bb7");
        assert_eq!(segment("store 42/a"), "store%2042%2Fa");
        assert_eq!(query_value("hw=pos-x86,site=s1"), "hw%3Dpos-x86%2Csite%3Ds1");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let client = Client::new("http://127.0.0.1:8080/", Some("hly_secret".into()));
        let text = format!("{client:?}");
        assert!(
            text.contains("http://127.0.0.1:8080\"") && !text.contains("hly_secret"),
            "{text}"
        );
    }

    #[test]
    fn exit_codes_follow_the_help_text() {
        assert_eq!(CtlError::Usage("x".into()).exit_code(), EXIT_USAGE);
        let refused = CtlError::Refused {
            method: Method::GET,
            path: "/".into(),
            status: 403,
            message: "no".into(),
        };
        assert_eq!(refused.exit_code(), EXIT_REFUSED);
        let unreachable = CtlError::Unreachable {
            url: "http://x".into(),
            source: ureq::Error::ConnectionFailed,
        };
        assert_eq!(unreachable.exit_code(), EXIT_UNREACHABLE);
    }
}
