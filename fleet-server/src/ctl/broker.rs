//! `halyardctl broker mosquitto-config --out DIR`: writes the Mosquitto `password_file` and
//! `acl_file` the server generates for the fleet's per-device credentials, plus a `mosquitto.conf`
//! that uses them (see `docs/security.md`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Deserialize;

use super::{CtlError, Ctx, decode, print};
use crate::broker_auth::{TlsListener, mosquitto_conf};
use crate::secrets::{SecretError, write_with_mode};

/// `broker` subcommands.
#[derive(Debug, Subcommand)]
pub enum BrokerCmd {
    /// Write password_file, acl_file and mosquitto.conf for Mosquitto into DIR (admin)
    MosquittoConfig {
        /// Directory to write into (created if missing)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Where Mosquitto will see these files (paths in mosquitto.conf) [default: --out]
        #[arg(long, value_name = "DIR")]
        config_dir: Option<PathBuf>,
        /// Plain MQTT listener (the servers' side); 0 = none
        #[arg(long, default_value_t = 1883)]
        port: u16,
        /// TLS listener for devices (needs --cafile, --certfile, --keyfile)
        #[arg(long, requires_all = ["cafile", "certfile", "keyfile"])]
        tls_port: Option<u16>,
        /// CA certificate PEM path for the TLS listener, as Mosquitto sees it
        #[arg(long, requires = "tls_port")]
        cafile: Option<String>,
        /// Server certificate PEM path for the TLS listener
        #[arg(long, requires = "tls_port")]
        certfile: Option<String>,
        /// Server key PEM path for the TLS listener
        #[arg(long, requires = "tls_port")]
        keyfile: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct Files {
    password_file: String,
    acl_file: String,
}

/// Runs a `broker` subcommand.
pub fn run(ctx: &Ctx, cmd: BrokerCmd) -> Result<(), CtlError> {
    let BrokerCmd::MosquittoConfig {
        out,
        config_dir,
        port,
        tls_port,
        cafile,
        certfile,
        keyfile,
    } = cmd;
    let files: Files = decode(&ctx.client.get("/api/v1/broker/mosquitto")?, "mosquitto files")?;
    let tls = match (tls_port, cafile, certfile, keyfile) {
        (Some(port), Some(ca), Some(cert), Some(key)) => Some(TlsListener { port, ca, cert, key }),
        _ => None,
    };
    let conf = mosquitto_conf(
        config_dir.as_deref().unwrap_or(&out),
        (port != 0).then_some(port),
        tls.as_ref(),
    );
    std::fs::create_dir_all(&out).map_err(|source| CtlError::File {
        path: out.clone(),
        source,
    })?;
    write(&out.join("password_file"), &files.password_file, 0o640)?;
    write(&out.join("acl_file"), &files.acl_file, 0o644)?;
    write(&out.join("mosquitto.conf"), &conf, 0o644)?;
    let users = files.password_file.lines().count();
    print(&format!(
        "wrote {users} accounts to {dir}/password_file, {dir}/acl_file and {dir}/mosquitto.conf\n\
         start: mosquitto -c {dir}/mosquitto.conf   reload after changes: kill -HUP <mosquitto pid>\n",
        dir = out.display()
    ))
}

/// Writes `text` durably with `mode`, the way the server writes its own files.
fn write(path: &Path, text: &str, mode: u32) -> Result<(), CtlError> {
    write_with_mode(path, text.as_bytes(), mode).map_err(|e| match e {
        SecretError::Io { source, .. } => CtlError::File {
            path: path.to_path_buf(),
            source,
        },
        other => CtlError::Usage(other.to_string()),
    })
}
