//! `GET /volumes`: the mounted volumes with their description, file count, size and bands,
//! as JSON (`Accept: application/json` or `?format=json`) or a small HTML page. Folders are
//! named by volume only: the server's own paths never reach a client.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::Volume;

/// What `/volumes` shows of one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSummary {
    pub name: String,
    pub description: String,
    /// The FITS images served (skipped files not counted).
    pub files: usize,
    /// Their total size, bytes.
    pub size_bytes: u64,
    /// Distinct filter names, sorted.
    pub bands: Vec<String>,
    /// FITS-named files that are not images with a celestial WCS.
    pub skipped: usize,
    /// The ADQL table of the volume's tile index.
    pub table: String,
}

impl From<&Volume> for VolumeSummary {
    fn from(v: &Volume) -> VolumeSummary {
        VolumeSummary {
            name: v.name.clone(),
            description: v.description.clone(),
            files: v.images.len(),
            size_bytes: v.size(),
            bands: v.bands(),
            skipped: v.report.skipped,
            table: v.table_name(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Listing {
    volumes: Vec<VolumeSummary>,
}

#[derive(Debug, Deserialize)]
struct Params {
    format: Option<String>,
}

/// The `/volumes` route over the scanned volumes.
pub fn routes(volumes: &[Volume]) -> Router {
    let summaries: Arc<Vec<VolumeSummary>> =
        Arc::new(volumes.iter().map(VolumeSummary::from).collect());
    Router::new()
        .route("/volumes", get(list))
        .with_state(summaries)
}

async fn list(
    State(volumes): State<Arc<Vec<VolumeSummary>>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let json = match params.format.as_deref() {
        Some(f) => f.eq_ignore_ascii_case("json") || f.eq_ignore_ascii_case("application/json"),
        None => headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/json")),
    };
    if json {
        let listing = Listing {
            volumes: volumes.to_vec(),
        };
        // axum's `json` feature is off: serialise by hand (a listing always serialises).
        let body = serde_json::to_string_pretty(&listing).unwrap_or_else(|_| "{}".into());
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        Html(html(&volumes)).into_response()
    }
}

fn html(volumes: &[VolumeSummary]) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>insitu volumes</title>\
         </head><body>\n<h1>Volumes</h1>\n",
    );
    if volumes.is_empty() {
        page.push_str("<p>No volume is mounted.</p>\n");
    } else {
        page.push_str(
            "<table>\n<tr><th>Volume</th><th>Description</th><th>Files</th><th>Size (bytes)</th>\
             <th>Bands</th><th>Skipped</th><th>Table</th></tr>\n",
        );
        for v in volumes {
            page.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><code>{}</code></td></tr>\n",
                escape(&v.name),
                escape(&v.description),
                v.files,
                v.size_bytes,
                escape(&v.bands.join(", ")),
                v.skipped,
                escape(&v.table)
            ));
        }
        page.push_str("</table>\n");
    }
    page.push_str("<p><a href=\"volumes?format=json\">JSON</a></p>\n</body></html>\n");
    page
}

/// Descriptions come from files in the volume: escaped as XML (which HTML 5 reads the same,
/// `&apos;` included).
fn escape(text: &str) -> String {
    crate::votable::xml(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_descriptions() {
        let v = VolumeSummary {
            name: "v".into(),
            description: "<script>&".into(),
            files: 3,
            size_bytes: 10,
            bands: vec!["VIS".into(), "NIR_H".into()],
            skipped: 1,
            table: "v.mosaic_product".into(),
        };
        let page = html(&[v]);
        assert!(page.contains("&lt;script&gt;&amp;"), "{page}");
        assert!(!page.contains("<script>"));
        assert!(page.contains("VIS, NIR_H"));
    }
}
