//! `halyardctl releases list|upload|quarantine|unquarantine`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::{Value, json};
use ureq::http::Method;

use super::client::segment;
use super::table::{Table, bytes, key_values, short, time};
use super::{CtlError, Ctx, decode, print};
use crate::model::{Quarantine, Release};

/// `releases` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReleasesCmd {
    /// List releases and their quarantines
    List,
    /// Upload a signed bundle (streamed; verified by the server against the trust root)
    Upload {
        /// The bundle file
        file: PathBuf,
    },
    /// Bar a release from a hardware class
    Quarantine {
        /// Release version
        version: String,
        /// Hardware class
        #[arg(long, value_name = "CLASS")]
        hw: String,
        /// Why (kept in the quarantine record and the audit log)
        #[arg(long, value_name = "REASON")]
        reason: String,
    },
    /// Lift a quarantine (admin: the explicit override)
    Unquarantine {
        /// Release version
        version: String,
        /// Hardware class
        #[arg(long, value_name = "CLASS")]
        hw: String,
    },
}

/// One entry of `GET /api/v1/releases`.
#[derive(Debug, Deserialize)]
pub struct ReleaseEntry {
    pub release: Release,
    #[serde(default)]
    pub quarantines: Vec<Quarantine>,
}

/// Runs a `releases` subcommand.
pub fn run(ctx: &Ctx, cmd: ReleasesCmd) -> Result<(), CtlError> {
    match cmd {
        ReleasesCmd::List => ctx.show(&ctx.client.get("/api/v1/releases")?, render_list),
        ReleasesCmd::Upload { file } => {
            let answer = upload(ctx, &file)?;
            ctx.show(&answer, render_release)
        }
        ReleasesCmd::Quarantine { version, hw, reason } => {
            let path = format!("/api/v1/releases/{}/quarantine", segment(&version));
            let body = json!({ "hardware_class": hw, "reason": reason });
            let answer = ctx.client.send_json(Method::POST, &path, &body)?;
            ctx.show(&answer, |v| {
                let q: Quarantine = decode(v, "quarantine")?;
                Ok(format!(
                    "quarantined {} for {}: {}\n",
                    q.version, q.hardware_class, q.reason
                ))
            })
        }
        ReleasesCmd::Unquarantine { version, hw } => {
            let path = format!(
                "/api/v1/releases/{}/quarantine/{}",
                segment(&version),
                segment(&hw)
            );
            ctx.client.delete(&path)?;
            if ctx.json {
                print("{}\n")
            } else {
                print(&format!("lifted the quarantine of {version} for {hw}\n"))
            }
        }
    }
}

/// Streams the bundle to the server with a byte progress bar on stderr; memory stays constant.
fn upload(ctx: &Ctx, path: &Path) -> Result<Value, CtlError> {
    let file_error = |source| CtlError::File {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(file_error)?;
    let len = file.metadata().map_err(file_error)?.len();
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("uploading {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    let mut reader = bar.wrap_read(BufReader::with_capacity(256 * 1024, file));
    let answer = ctx.client.send_stream(
        Method::POST,
        "/api/v1/releases",
        "application/octet-stream",
        len,
        &mut reader,
    );
    let sent = bar.position();
    bar.finish_and_clear();
    answer.map_err(|e| match e {
        // The connection worked (bytes went out) but the server hung up mid-upload: it refused
        // the bundle without reading all of it.
        CtlError::Unreachable { url, source } if sent > 0 => CtlError::BadAnswer {
            method: Method::POST,
            path: "/api/v1/releases".to_owned(),
            why: format!(
                "{url} closed the connection after {sent} of {len} bytes ({source}); \
                 it refused the bundle before reading all of it (see the server log)"
            ),
        },
        other => other,
    })
}

/// One uploaded release.
pub fn render_release(value: &Value) -> Result<String, CtlError> {
    let r: Release = decode(value, "release")?;
    Ok(key_values(&[
        ("version", r.version),
        ("product", r.product),
        ("security version", r.security_version.to_string()),
        (
            "bundle",
            format!("{} ({})", r.bundle_sha256, bytes(r.bundle_size)),
        ),
        ("image", format!("{} ({})", r.image_sha256, bytes(r.image_size))),
        ("created", time(r.created_at)),
    ]))
}

/// The release table.
pub fn render_list(value: &Value) -> Result<String, CtlError> {
    let entries: Vec<ReleaseEntry> = decode(value, "release list")?;
    let mut table = Table::new(&[
        "VERSION",
        "PRODUCT",
        "SECURITY",
        "SIZE",
        "BUNDLE",
        "CREATED",
        "QUARANTINED",
    ]);
    for ReleaseEntry {
        release: r,
        quarantines,
    } in &entries
    {
        let quarantined = if quarantines.is_empty() {
            "-".to_owned()
        } else {
            quarantines
                .iter()
                .map(|q| format!("{} ({})", q.hardware_class, q.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        table.row(vec![
            r.version.clone(),
            r.product.clone(),
            r.security_version.to_string(),
            bytes(r.bundle_size),
            short(&r.bundle_sha256),
            time(r.created_at),
            quarantined,
        ]);
    }
    Ok(table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_shows_quarantines() {
        let value = json!([{
            "release": {"version": "2.0.0", "product": "pos", "security_version": 3,
                        "bundle_sha256": "ab".repeat(32), "bundle_size": 70_000_000,
                        "image_sha256": "cd".repeat(32), "image_size": 200_000_000,
                        "created_at": 1_700_000_000},
            "quarantines": [{"version": "2.0.0", "hardware_class": "pos-arm",
                             "reason": "reverted", "at": 1_700_000_100}]
        }]);
        let text = render_list(&value).expect("renders");
        assert!(
            text.contains("2.0.0    pos      3         66.8 MiB  abababababab"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("pos-arm (reverted)"), "{text}");
    }
}
