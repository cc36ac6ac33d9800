//! `GET /files/<volume>/<path>`: a scanned image's whole file (DataLink's `#this` link), read
//! only, streamed in chunks, with single byte ranges (RFC 9110 §14) so clients can resume or
//! read one HDU. Only files the volume scan listed are served, and only while they are still
//! regular files inside their volume.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{SodaError, SodaState};

/// `text` safe inside a quoted header parameter (file names come from the volume).
pub fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The byte range a `Range` header asks for in a file of `len` bytes: `None` to send it all
/// (no header, or one this service does not take, such as several ranges), `Some(Err(()))`
/// when it is unsatisfiable (416).
fn requested_range(headers: &HeaderMap, len: u64) -> Option<Result<(u64, u64), ()>> {
    let value = headers.get(header::RANGE)?.to_str().ok()?.trim();
    let spec = value.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last `n` bytes.
        let n: u64 = last.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            len.saturating_sub(1)
        } else {
            last.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        if start >= len || start > end {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

pub async fn download(
    State(state): State<Arc<SodaState>>,
    Path((volume, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let tiles = state.tiles.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<_, SodaError> {
        let tile = tiles.dataset(&format!("{volume}/{path}"))?;
        // Opening checks the file once (a readable FITS file inside the volume)…
        tiles.open(tile)?;
        let (volume, row) = tiles.row(tile);
        let full = volume.root.join(&row.relative_path);
        let gone = || {
            SodaError::Internal(format!(
                "{}/{} is no longer a regular file inside its volume",
                volume.name, row.relative_path
            ))
        };
        // …and again now, in case it was replaced by a link since.
        let regular = std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_file());
        let inside = match (full.canonicalize(), volume.root.canonicalize()) {
            (Ok(p), Ok(root)) => p.starts_with(root),
            _ => false,
        };
        if !regular || !inside {
            return Err(gone());
        }
        let file = std::fs::File::open(&full).map_err(|_| gone())?;
        let len = file.metadata().map_err(|_| gone())?.len();
        Ok((file, len, row.file_name().to_string()))
    })
    .await;
    let (file, len, name) = match opened {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return SodaError::Internal(e.to_string()).into_response(),
    };
    let disposition = format!("attachment; filename=\"{}\"", header_safe(&name));
    let common = [
        (header::CONTENT_TYPE, "application/fits".to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    match requested_range(&headers, len) {
        None => (
            common,
            [(header::CONTENT_LENGTH, len.to_string())],
            Body::from_stream(crate::file_stream::chunks(file, 0, len)),
        )
            .into_response(),
        Some(Ok((start, end))) => (
            StatusCode::PARTIAL_CONTENT,
            common,
            [
                (header::CONTENT_LENGTH, (end - start + 1).to_string()),
                (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
            ],
            Body::from_stream(crate::file_stream::chunks(file, start, end - start + 1)),
        )
            .into_response(),
        Some(Err(())) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, value.parse().unwrap());
        requested_range(&headers, len)
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(range("bytes=-10", 1000), Some(Ok((990, 999))));
        assert_eq!(range("bytes=-5000", 1000), Some(Ok((0, 999))));
        assert_eq!(range("bytes=990-2000", 1000), Some(Ok((990, 999))));
        assert_eq!(range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(range("bytes=5-4", 1000), Some(Err(())));
        assert_eq!(range("bytes=0-1,5-6", 1000), None);
        assert_eq!(range("items=0-1", 1000), None);
        assert_eq!(range("bytes=x-1", 1000), None);
        assert_eq!(requested_range(&HeaderMap::new(), 1000), None);
    }

    #[test]
    fn header_values_stay_quoted() {
        assert_eq!(header_safe("a \"b\"\\c\n.fits"), "a _b__c_.fits");
    }
}
