//! The operator web dashboard: static HTML/CSS/JS from `fleet-server/dashboard/`, embedded in the
//! binary (no front-end build step), served at `/` and `/dashboard/{file}`. The page talks only to
//! the operator API with the token the operator typed in (kept in the tab's `sessionStorage`), and
//! follows `/api/v1/events` with a streaming `fetch` (so the token travels in the `Authorization`
//! header, never in a URL).
//!
//! Caching: every answer carries a strong `ETag` (SHA-256 of the bytes, computed once) and
//! `Cache-Control: no-cache`, so a browser revalidates with `If-None-Match` and gets a `304` until
//! the server is upgraded. `GET /api/v1/whoami` tells the page the token's name and role, so it can
//! hide buttons a viewer may not use (the API refuses them anyway).

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest;

use crate::api::{ApiResult, Caller};
use crate::app::App;
use crate::model::Role;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../dashboard/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/app.js"),
    },
    Asset {
        name: "widgets.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/widgets.js"),
    },
    Asset {
        name: "views.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/views.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../dashboard/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../dashboard/favicon.svg"),
    },
];

/// Strong ETags, one per asset, in `ASSETS` order.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &hex::encode(sha2::Sha256::digest(a.body))[..32]))
        .collect()
});

/// The page may load only its own scripts and styles and talk only to its own origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Routes of the dashboard (merged into the API router).
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/{file}", get(file))
        .route("/api/v1/whoami", get(whoami))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such dashboard file\n").into_response();
    };
    let (asset, etag) = (&ASSETS[i], &ETAGS[i]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// `GET /api/v1/whoami` (viewer) → `{"name", "role"}` of the calling token.
async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<serde_json::Value>> {
    let caller = Caller::require(&app, &headers, Role::Viewer).await?;
    Ok(Json(serde_json::json!({
        "id": caller.token.id,
        "name": caller.token.name,
        "role": caller.token.role,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_type_and_a_distinct_etag() {
        let tags: std::collections::BTreeSet<_> = ETAGS.iter().collect();
        assert_eq!(tags.len(), ASSETS.len());
        assert!(
            ASSETS
                .iter()
                .all(|a| !a.body.is_empty() && !a.content_type.is_empty())
        );
    }

    #[test]
    fn revalidation_answers_not_modified() {
        let mut headers = HeaderMap::new();
        let etag = ETAGS[1].clone();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("x")),
        );
        assert_eq!(serve("app.js", &headers).status(), StatusCode::NOT_MODIFIED);
        let fresh = serve("app.js", &HeaderMap::new());
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(
            fresh.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(fresh.headers()[header::ETAG], etag.as_str());
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn index_links_only_embedded_files() {
        let html = String::from_utf8_lossy(ASSETS[0].body);
        for link in html.split("/dashboard/").skip(1) {
            let name: String = link.chars().take_while(|c| *c != '"').collect();
            assert!(ASSETS.iter().any(|a| a.name == name), "index.html links {name}");
        }
    }
}
