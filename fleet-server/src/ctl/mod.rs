//! `halyardctl`, the operator CLI of the Halyard fleet server, as a library (the binary in
//! `src/bin/halyardctl.rs` only parses arguments and maps errors to exit codes).
//!
//! Module map:
//! - this module: the top-level [`Cli`] (clap), settings from flags and environment, dispatch.
//! - [`client`]: the blocking HTTP client (bearer token, JSON, error → exit code mapping).
//! - [`table`]: aligned tables and key/value blocks for human output.
//! - [`window`]: the `mon-fri 22:00-04:00` maintenance-window syntax.
//! - [`watch`]: `rollouts watch`, live progress bars per wave and new decisions; [`live`]: its
//!   Server-Sent Events follower (polling while the stream is down).
//! - one module per command group: [`devices`], [`sites`], [`releases`], [`rollouts`], [`tokens`]
//!   (API and enrollment tokens), [`admin`] (trust root, fleet summary, audit log), [`broker`]
//!   (Mosquitto password and ACL files).

pub mod admin;
pub mod broker;
pub mod client;
pub mod devices;
pub mod live;
pub mod releases;
pub mod rollouts;
pub mod sites;
pub mod table;
pub mod tokens;
pub mod watch;
pub mod window;

use std::io::Write;

use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use client::{Client, CtlError};

/// Server used when neither `--server` nor `HALYARD_SERVER` is set.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

const AFTER_HELP: &str = "\
Environment:
  HALYARD_SERVER  server URL when --server is not given (default http://127.0.0.1:8080)
  HALYARD_TOKEN   bearer token when --token is not given
  HALYARD_CA_FILE CA certificates (PEM) for an https:// server with its own CA

Exit codes:
  0  success
  1  the server refused the request (its error text is printed) or answered unexpectedly
  2  usage error: bad arguments or bad local input (file, window, policy)
  3  cannot reach the server";

/// Operate a Halyard fleet server: devices, sites, releases, rollouts, tokens.
#[derive(Parser)]
#[command(name = "halyardctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Server base URL [env: HALYARD_SERVER] [default: http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Operator API bearer token [env: HALYARD_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// CA certificate(s) (PEM) to trust for an https:// server with its own CA [env: HALYARD_CA_FILE]
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Print the server's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("json", &self.json)
            .field("command", &self.command)
            .finish()
    }
}

/// Command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Devices: list by selector, show with history, set site and tags
    #[command(subcommand)]
    Devices(devices::DevicesCmd),
    /// Sites: time zone, maintenance windows, concurrency cap
    #[command(subcommand)]
    Sites(sites::SitesCmd),
    /// Releases: list, upload a signed bundle, quarantine per hardware class
    #[command(subcommand)]
    Releases(releases::ReleasesCmd),
    /// Rollouts: create from a TOML policy, watch live, pause, resume, abort, roll back
    #[command(subcommand)]
    Rollouts(rollouts::RolloutsCmd),
    /// Operator API tokens (admin)
    #[command(subcommand)]
    Tokens(tokens::TokensCmd),
    /// One-time device enrollment tokens
    #[command(subcommand)]
    EnrollTokens(tokens::EnrollTokensCmd),
    /// The fleet's trust root (root.json) that release bundles are verified against
    #[command(subcommand)]
    TrustRoot(admin::TrustRootCmd),
    /// The external MQTT broker: Mosquitto files for per-device credentials and ACLs (admin)
    #[command(subcommand)]
    Broker(broker::BrokerCmd),
    /// Fleet summary: devices by version, state, site and hardware class
    Fleet,
    /// The audit log of operator actions (admin)
    Audit {
        /// Most recent entries to show
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
}

/// What every command needs: the client and the output mode.
#[derive(Debug)]
pub struct Ctx {
    /// The server connection.
    pub client: Client,
    /// `--json`: print the server's JSON.
    pub json: bool,
}

impl Ctx {
    /// Prints `value` as pretty JSON with `--json`, else as `render` makes it.
    pub fn show(
        &self,
        value: &Value,
        render: impl FnOnce(&Value) -> Result<String, CtlError>,
    ) -> Result<(), CtlError> {
        let text = if self.json {
            json_text(value)
        } else {
            render(value)?
        };
        print(&text)
    }
}

/// The server URL: the flag, else `HALYARD_SERVER`, else [`DEFAULT_SERVER`]; empty values count as unset.
pub fn resolve_server(flag: Option<String>, env: Option<String>) -> String {
    [flag, env]
        .into_iter()
        .flatten()
        .find(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
}

/// The token: the flag, else `HALYARD_TOKEN`; empty values count as unset.
pub fn resolve_token(flag: Option<String>, env: Option<String>) -> Option<String> {
    [flag, env].into_iter().flatten().find(|s| !s.trim().is_empty())
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), CtlError> {
    let server = resolve_server(cli.server, std::env::var("HALYARD_SERVER").ok());
    let token = resolve_token(cli.token, std::env::var("HALYARD_TOKEN").ok());
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(CtlError::Usage(format!(
            "server URL {server:?} must start with http:// or https://"
        )));
    }
    let ca_file = cli
        .ca_file
        .or_else(|| std::env::var_os("HALYARD_CA_FILE").map(Into::into))
        .filter(|p| !p.as_os_str().is_empty());
    let client = match ca_file {
        Some(ca) => Client::with_ca(&server, token, &ca)?,
        None => Client::new(&server, token),
    };
    let ctx = Ctx {
        client,
        json: cli.json,
    };
    match cli.command {
        Command::Devices(cmd) => devices::run(&ctx, cmd),
        Command::Sites(cmd) => sites::run(&ctx, cmd),
        Command::Releases(cmd) => releases::run(&ctx, cmd),
        Command::Rollouts(cmd) => rollouts::run(&ctx, cmd),
        Command::Tokens(cmd) => tokens::run(&ctx, cmd),
        Command::EnrollTokens(cmd) => tokens::run_enroll(&ctx, cmd),
        Command::TrustRoot(cmd) => admin::run_trust_root(&ctx, cmd),
        Command::Broker(cmd) => broker::run(&ctx, cmd),
        Command::Fleet => admin::fleet(&ctx),
        Command::Audit { limit } => admin::audit(&ctx, limit),
    }
}

/// Decodes a server answer into a contract type.
pub fn decode<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, CtlError> {
    T::deserialize(value).map_err(|e| CtlError::Decode {
        what: what.to_owned(),
        why: e.to_string(),
    })
}

/// Pretty JSON with a final newline.
pub fn json_text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// Writes `text` to stdout (a closed pipe is an error, not a panic).
pub fn print(text: &str) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("halyardctl").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["devices", "list", "--json", "--server", "http://h:1"]).expect("parses");
        assert!(cli.json);
        assert_eq!(cli.server.as_deref(), Some("http://h:1"));
        let cli = parse(&["--token", "t", "fleet"]).expect("parses");
        assert_eq!(cli.token.as_deref(), Some("t"));
    }

    #[test]
    fn flag_beats_environment_beats_default() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(resolve_server(some("http://a"), some("http://b")), "http://a");
        assert_eq!(resolve_server(None, some("http://b")), "http://b");
        assert_eq!(resolve_server(None, some("")), DEFAULT_SERVER);
        assert_eq!(resolve_server(None, None), DEFAULT_SERVER);
        assert_eq!(resolve_token(None, some("tok")), some("tok"));
        assert_eq!(resolve_token(some(" "), None), None);
    }

    #[test]
    fn group_names_are_kebab_case() {
        assert!(parse(&["enroll-tokens", "create", "--site", "s1", "--ttl", "60"]).is_ok());
        assert!(parse(&["trust-root", "set", "root.json"]).is_ok());
        assert!(parse(&["audit", "--limit", "5"]).is_ok());
        assert!(parse(&["audit", "--limit", "many"]).is_err());
    }

    #[test]
    fn help_documents_exit_codes_and_environment() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("3  cannot reach the server"), "{help}");
        assert!(help.contains("HALYARD_TOKEN"), "{help}");
    }

    #[test]
    fn usage_errors_exit_with_two() {
        let err = parse(&["rollouts", "show"]).expect_err("id is required");
        assert_eq!(err.exit_code(), i32::from(client::EXIT_USAGE));
    }
}
