//! `halyardctl sites list|set|delete`.

use clap::Subcommand;
use serde_json::Value;
use ureq::http::Method;

use super::client::segment;
use super::table::{Table, opt};
use super::window::{format_window, parse_window};
use super::{CtlError, Ctx, decode, print};
use crate::model::Site;

/// `sites` subcommands.
#[derive(Debug, Subcommand)]
pub enum SitesCmd {
    /// List sites with their windows and caps
    List,
    /// Create or replace a site
    Set {
        /// Site name
        name: String,
        /// IANA time zone, e.g. Europe/Berlin
        #[arg(long, value_name = "TZ")]
        tz: String,
        /// Maintenance window in local time, e.g. "mon-fri 22:00-04:00", "sat,sun 01:00-06:00",
        /// "02:00-03:00" (every day); repeat for several; none = always open
        #[arg(long = "window", value_name = "WINDOW")]
        windows: Vec<String>,
        /// Most devices of the site updating at once (none = no cap)
        #[arg(long, value_name = "N")]
        max_concurrent: Option<u32>,
    },
    /// Delete a site
    Delete {
        /// Site name
        name: String,
    },
}

/// Runs a `sites` subcommand.
pub fn run(ctx: &Ctx, cmd: SitesCmd) -> Result<(), CtlError> {
    match cmd {
        SitesCmd::List => ctx.show(&ctx.client.get("/api/v1/sites")?, render_list),
        SitesCmd::Set {
            name,
            tz,
            windows,
            max_concurrent,
        } => {
            let site = build_site(name, tz, &windows, max_concurrent)?;
            let body = serde_json::to_value(&site).map_err(|e| CtlError::Usage(e.to_string()))?;
            let path = format!("/api/v1/sites/{}", segment(&site.name));
            let answer = ctx.client.send_json(Method::PUT, &path, &body)?;
            ctx.show(&answer, |v| render_list(&Value::Array(vec![v.clone()])))
        }
        SitesCmd::Delete { name } => {
            ctx.client.delete(&format!("/api/v1/sites/{}", segment(&name)))?;
            if ctx.json {
                print("{}\n")
            } else {
                print(&format!("deleted site {name}\n"))
            }
        }
    }
}

/// A site from the command line, checked locally: the time zone must be known and every window
/// must parse.
pub fn build_site(
    name: String,
    tz: String,
    windows: &[String],
    max_concurrent: Option<u32>,
) -> Result<Site, CtlError> {
    jiff::tz::TimeZone::get(&tz)
        .map_err(|e| CtlError::Usage(format!("time zone {tz:?} is not an IANA zone: {e}")))?;
    let windows = windows
        .iter()
        .map(|w| parse_window(w).map_err(|e| CtlError::Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Site {
        name,
        tz,
        windows,
        max_concurrent,
    })
}

/// The site table.
pub fn render_list(value: &Value) -> Result<String, CtlError> {
    let sites: Vec<Site> = decode(value, "site list")?;
    let mut table = Table::new(&["NAME", "TZ", "MAX CONCURRENT", "WINDOWS"]);
    for s in &sites {
        let windows = if s.windows.is_empty() {
            "always open".to_owned()
        } else {
            s.windows.iter().map(format_window).collect::<Vec<_>>().join("; ")
        };
        table.row(vec![s.name.clone(), s.tz.clone(), opt(s.max_concurrent), windows]);
    }
    Ok(table.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn site_from_arguments() {
        let site = build_site(
            "store-042".into(),
            "Europe/Berlin".into(),
            &["mon-fri 22:00-04:00".into(), "sat,sun 01:00-06:00".into()],
            Some(3),
        )
        .expect("valid site");
        assert_eq!(
            serde_json::to_value(&site).expect("serializes"),
            json!({
                "name": "store-042", "tz": "Europe/Berlin", "max_concurrent": 3,
                "windows": [
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "04:00"},
                    {"days": ["sat", "sun"], "start": "01:00", "end": "06:00"}
                ]
            })
        );
    }

    #[test]
    fn unknown_zone_and_bad_window_are_usage_errors() {
        let err = build_site("s".into(), "Mars/Olympus".into(), &[], None).expect_err("bad zone");
        assert_eq!(err.exit_code(), 2);
        let err = build_site("s".into(), "UTC".into(), &["22:00".into()], None).expect_err("bad window");
        assert!(err.to_string().contains("22:00"), "{err}");
    }

    #[test]
    fn table_lists_windows() {
        let value = json!([{"name": "s1", "tz": "UTC", "windows": [], "max_concurrent": null},
                           {"name": "s2", "tz": "Asia/Tokyo", "max_concurrent": 2,
                            "windows": [{"days": [], "start": "01:00", "end": "02:00"}]}]);
        let text = render_list(&value).expect("renders");
        assert!(
            text.contains("s1    UTC         -               always open"),
            "{text}"
        );
        assert!(
            text.contains("s2    Asia/Tokyo  2               01:00-02:00"),
            "{text}"
        );
    }
}
