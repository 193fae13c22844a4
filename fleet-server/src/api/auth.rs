//! Bearer tokens and roles for the operator API, and the audit trail of mutating calls.

use axum::http::{HeaderMap, StatusCode};

use super::{ApiError, ApiResult};
use crate::app::App;
use crate::model::{ApiToken, AuditEntry, Role};
use crate::secrets::token_hash;

/// The authenticated caller of an operator endpoint.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: ApiToken,
}

impl Caller {
    /// Authenticates the request and checks its role is at least `min`.
    pub async fn require(app: &App, headers: &HeaderMap, min: Role) -> ApiResult<Self> {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token"))?;
        let hash = token_hash(bearer);
        let token = app
            .db(move |s| s.api_token(&hash))
            .await?
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))?;
        if token.role < min {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {:?} has role {}, this needs {}",
                    token.name,
                    token.role.as_str(),
                    min.as_str()
                ),
            ));
        }
        Ok(Self { token })
    }

    /// Records a mutating call.
    pub async fn audit(
        &self,
        app: &App,
        action: &str,
        target: &str,
        detail: impl Into<String>,
    ) -> ApiResult<()> {
        let entry = AuditEntry {
            at: app.now(),
            actor: format!("{} ({})", self.token.name, self.token.id),
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.into(),
        };
        tracing::info!(actor = %entry.actor, action, target, "audit");
        app.db(move |s| s.audit(&entry)).await?;
        Ok(())
    }
}
