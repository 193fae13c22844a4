//! `GET /v1/artifacts/{sha256}`: content-addressed files with strong ETags and single byte ranges
//! (`bytes=a-b`, `bytes=a-`, `bytes=-n`), `If-Range` and `If-None-Match`, streamed from disk.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::{ApiError, ApiResult};
use crate::app::App;

/// A parsed `Range` header against a file of `size` bytes: `Ok(None)` = whole file.
pub fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let spec = value.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(()); // multiple ranges: not supported, answered 416
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (a, b) => (
            a.parse().map_err(|_| ())?,
            b.parse::<u64>().map_err(|_| ())?.min(size.saturating_sub(1)),
        ),
    };
    if start > end || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

pub async fn get(
    State(app): State<Arc<App>>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if halyard_protocol::Sha256::parse(&sha).is_err() {
        return Err(ApiError::bad_request(
            "artifact id must be 64 lowercase hex characters",
        ));
    }
    let path = app.artifacts_dir.join(&sha);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found(format!("no artifact {sha}")))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .len();
    let etag = format!("\"{sha}\"");
    let header_is =
        |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if header_is(header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let if_range_ok = header_is(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match header_is(header::RANGE).filter(|_| if_range_ok) {
        None => None,
        Some(r) => match parse_range(&r, size) {
            Ok(r) => r,
            Err(()) => {
                let cr = format!("bytes */{size}");
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, cr)]).into_response());
            }
        },
    };
    let (status, start, len) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, size),
    };
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(len),
        64 * 1024,
    ));
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(|e| ApiError::bad_request(e.to_string()))?,
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = format!("bytes {start}-{}/{size}", start + len - 1);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).map_err(|e| ApiError::bad_request(e.to_string()))?,
        );
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        type Parsed = Result<Option<(u64, u64)>, ()>;
        let table: [(&str, Parsed); 9] = [
            ("bytes=0-9", Ok(Some((0, 9)))),
            ("bytes=10-", Ok(Some((10, 99)))),
            ("bytes=-10", Ok(Some((90, 99)))),
            ("bytes=-1000", Ok(Some((0, 99)))),
            ("bytes=90-200", Ok(Some((90, 99)))),
            ("bytes=100-", Err(())),
            ("bytes=5-1", Err(())),
            ("bytes=0-1,5-6", Err(())),
            ("items=0-1", Err(())),
        ];
        for (h, want) in table {
            assert_eq!(parse_range(h, 100), want, "{h}");
        }
    }
}
