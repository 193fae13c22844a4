//! `halyardctl tokens list|create|revoke` (operator API tokens) and
//! `halyardctl enroll-tokens create [--count N]|list` (one-time device enrollment tokens).

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{Value, json};
use ureq::http::Method;

use super::client::segment;
use super::table::{Table, list, opt, time};
use super::{CtlError, Ctx, decode, print};
use crate::model::{ApiToken, EnrollToken, Role};

/// `tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// List API tokens (never their secrets)
    List,
    /// Create an API token; its secret is printed once
    Create {
        /// A name for the holder (person or script)
        #[arg(long, value_name = "NAME")]
        name: String,
        /// viewer, operator or admin
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: Role,
    },
    /// Revoke an API token
    Revoke {
        /// Token id
        id: String,
    },
}

/// `enroll-tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum EnrollTokensCmd {
    /// Create a one-time enrollment token; its secret is printed once
    Create {
        /// Site the enrolled device joins
        #[arg(long, value_name = "SITE")]
        site: Option<String>,
        /// Tag the enrolled device gets (repeat for several)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Lifetime in seconds (none = no expiry)
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        /// Make this many tokens alike (at most 1000), one secret a line
        #[arg(long, value_name = "N")]
        count: Option<usize>,
    },
    /// List enrollment tokens
    List,
}

/// `{"token": secret, "info": T}` answers.
#[derive(Debug, Deserialize)]
pub struct Created<T> {
    pub token: String,
    pub info: T,
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value).ok_or_else(|| format!("{value:?} is not a role (viewer, operator, admin)"))
}

/// Runs a `tokens` subcommand.
pub fn run(ctx: &Ctx, cmd: TokensCmd) -> Result<(), CtlError> {
    match cmd {
        TokensCmd::List => ctx.show(&ctx.client.get("/api/v1/tokens")?, render_tokens),
        TokensCmd::Create { name, role } => {
            let body = json!({ "name": name, "role": role });
            let answer = ctx.client.send_json(Method::POST, "/api/v1/tokens", &body)?;
            ctx.show(&answer, |v| {
                let created: Created<ApiToken> = decode(v, "token")?;
                Ok(format!(
                    "created {} token {} ({}); the secret is shown only now:\n{}\n",
                    created.info.role.as_str(),
                    created.info.id,
                    created.info.name,
                    created.token
                ))
            })
        }
        TokensCmd::Revoke { id } => {
            ctx.client.delete(&format!("/api/v1/tokens/{}", segment(&id)))?;
            print(&if ctx.json {
                "{}\n".to_owned()
            } else {
                format!("revoked token {id}\n")
            })
        }
    }
}

/// Runs an `enroll-tokens` subcommand.
pub fn run_enroll(ctx: &Ctx, cmd: EnrollTokensCmd) -> Result<(), CtlError> {
    match cmd {
        EnrollTokensCmd::Create {
            site,
            tags,
            ttl,
            count,
        } => {
            let mut body = json!({ "tags": tags });
            if let Some(site) = site {
                body["site"] = json!(site);
            }
            if let Some(ttl) = ttl {
                body["ttl_secs"] = json!(ttl);
            }
            match count {
                Some(n) => create_many(ctx, body, n),
                None => create_one(ctx, &body),
            }
        }
        EnrollTokensCmd::List => ctx.show(&ctx.client.get("/api/v1/enroll-tokens")?, render_enroll_tokens),
    }
}

fn create_one(ctx: &Ctx, body: &Value) -> Result<(), CtlError> {
    let answer = ctx
        .client
        .send_json(Method::POST, "/api/v1/enroll-tokens", body)?;
    ctx.show(&answer, |v| {
        let created: Created<EnrollToken> = decode(v, "enrollment token")?;
        Ok(format!(
            "created enrollment token {} (expires {}); the secret is shown only now:\n{}\n",
            created.info.id,
            created.info.expires_at.map_or_else(|| "never".to_owned(), time),
            created.token
        ))
    })
}

/// `{"tokens": [...]}` answers of the batch call.
#[derive(Debug, Deserialize)]
struct CreatedMany {
    tokens: Vec<Created<EnrollToken>>,
}

fn create_many(ctx: &Ctx, mut body: Value, count: usize) -> Result<(), CtlError> {
    body["count"] = json!(count);
    let answer = ctx
        .client
        .send_json(Method::POST, "/api/v1/enroll-tokens/batch", &body)?;
    ctx.show(&answer, |v| {
        let created: CreatedMany = decode(v, "enrollment tokens")?;
        let expires = created.tokens.first().and_then(|c| c.info.expires_at);
        let mut out = format!(
            "created {} enrollment tokens (expire {}); the secrets are shown only now, one a line:\n",
            created.tokens.len(),
            expires.map_or_else(|| "never".to_owned(), time),
        );
        for c in &created.tokens {
            out.push_str(&c.token);
            out.push('\n');
        }
        Ok(out)
    })
}

/// The API token table.
pub fn render_tokens(value: &Value) -> Result<String, CtlError> {
    let tokens: Vec<ApiToken> = decode(value, "token list")?;
    let mut table = Table::new(&["ID", "NAME", "ROLE", "CREATED"]);
    for t in &tokens {
        table.row(vec![
            t.id.clone(),
            t.name.clone(),
            t.role.as_str().to_owned(),
            time(t.created_at),
        ]);
    }
    Ok(table.render())
}

/// The enrollment token table.
pub fn render_enroll_tokens(value: &Value) -> Result<String, CtlError> {
    let tokens: Vec<EnrollToken> = decode(value, "enrollment token list")?;
    let mut table = Table::new(&["ID", "SITE", "TAGS", "CREATED", "EXPIRES", "USED BY"]);
    for t in &tokens {
        table.row(vec![
            t.id.clone(),
            opt(t.site.as_ref()),
            list(&t.tags),
            time(t.created_at),
            t.expires_at.map_or_else(|| "never".to_owned(), time),
            opt(t.used_by.as_ref()),
        ]);
    }
    Ok(table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_strictly() {
        assert_eq!(parse_role("operator"), Ok(Role::Operator));
        assert!(parse_role("root").is_err());
    }

    #[test]
    fn enroll_table_marks_used_tokens() {
        let value = json!([{"id": "e1", "site": "s1", "tags": ["beta"], "created_at": 1_700_000_000,
                            "expires_at": null, "used_by": "dev-1"}]);
        let text = render_enroll_tokens(&value).expect("renders");
        assert!(
            text.contains("e1  s1    beta  2023-11-14T22:13:20Z  never    dev-1"),
            "{text}"
        );
    }
}
