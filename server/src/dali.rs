//! What the IVOA services (TAP, its UWS jobs, SODA) share from DALI 1.1: reading a request's
//! parameters from the query string, a form body or a multipart body (with its file parts, for
//! `UPLOAD`), and error responses.
//!
//! Parameter names are case-insensitive (DALI §3.1): they are kept upper-cased. Values are
//! kept as sent; a parameter given several times keeps every value, in order.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::votable;

/// One multipart part sent as a file (`UPLOAD=name,param:part` refers to it by `name`).
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

/// A request's parameters and file parts.
#[derive(Debug, Clone, Default)]
pub struct DaliParams {
    /// (NAME upper-cased, value), in the order sent: query string first, then the body.
    pub pairs: Vec<(String, String)>,
    pub parts: Vec<Part>,
}

impl DaliParams {
    /// Parameters from (name, value) pairs, names upper-cased.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> DaliParams {
        DaliParams {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.trim().to_ascii_uppercase(), v))
                .collect(),
            parts: Vec::new(),
        }
    }

    /// The first value of `name` (give it upper-cased).
    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }

    /// Every value of `name` (give it upper-cased), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The multipart part called `name` (case-sensitive, as the part name in `param:name`).
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }
}

impl DaliParams {
    /// Reads a request's parameters (query string, then a form or multipart body); a request
    /// that cannot be read gives the HTTP status and the reason, for each service to answer in
    /// its own error format.
    pub async fn read<S: Send + Sync>(
        req: Request,
        state: &S,
    ) -> Result<DaliParams, (StatusCode, String)> {
        let query = req.uri().query().unwrap_or("").to_string();
        let mut params = match serde_urlencoded::from_str::<Vec<(String, String)>>(&query) {
            Ok(p) => DaliParams::from_pairs(p),
            Err(e) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("malformed query string: {e}"),
                ))
            }
        };
        if req.method() != Method::POST && req.method() != Method::PUT {
            return Ok(params);
        }
        let original = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/x-www-form-urlencoded")
            .to_string();
        let content_type = original.to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut req = req;
            if let Some(fixed) = quoted_boundary(&original) {
                if let Ok(value) = header::HeaderValue::from_str(&fixed) {
                    req.headers_mut().insert(header::CONTENT_TYPE, value);
                }
            }
            let mut multipart = Multipart::from_request(req, state).await.map_err(|e| {
                (
                    e.status(),
                    format!("malformed multipart body: {}", e.body_text()),
                )
            })?;
            loop {
                let field = match multipart.next_field().await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        return Err((
                            e.status(),
                            format!("multipart body not read: {}", e.body_text()),
                        ))
                    }
                };
                let name = field.name().unwrap_or("").to_string();
                let file_name = field.file_name().map(str::to_string);
                let content_type = field.content_type().map(str::to_string);
                let bytes = field.bytes().await.map_err(|e| {
                    (
                        e.status(),
                        format!("multipart part {name:?} not read: {}", e.body_text()),
                    )
                })?;
                if file_name.is_none() {
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        params
                            .pairs
                            .push((name.trim().to_ascii_uppercase(), text.to_string()));
                    }
                }
                params.parts.push(Part {
                    name,
                    file_name,
                    content_type,
                    bytes,
                });
            }
            return Ok(params);
        }
        if !content_type.starts_with("application/x-www-form-urlencoded")
            && !content_type.is_empty()
        {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "POST the parameters as application/x-www-form-urlencoded or \
                     multipart/form-data, not {content_type}"
                ),
            ));
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            (
                e.status(),
                format!("request body not read: {}", e.body_text()),
            )
        })?;
        match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
            Ok(p) => params.pairs.extend(DaliParams::from_pairs(p).pairs),
            Err(e) => return Err((StatusCode::BAD_REQUEST, format!("malformed form body: {e}"))),
        }
        Ok(params)
    }
}

impl<S: Send + Sync> FromRequest<S> for DaliParams {
    type Rejection = Response;

    /// [`DaliParams::read`], refused with a DALI error document.
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        DaliParams::read(req, state)
            .await
            .map_err(|(status, message)| error(status, &message))
    }
}

/// The multipart Content-Type with its boundary quoted. Python's email package (astroquery's
/// uploads) sends boundaries such as `===============123==` unquoted, which RFC 2045 only
/// allows quoted; quoting them loses nothing, since RFC 2046 boundaries hold no `"` or `;`.
fn quoted_boundary(content_type: &str) -> Option<String> {
    let at = content_type.to_ascii_lowercase().find("boundary=")?;
    let rest = content_type.get(at + "boundary=".len()..)?;
    let boundary = rest.split(';').next()?.trim().trim_matches('"');
    (!boundary.is_empty()).then(|| format!("multipart/form-data; boundary=\"{boundary}\""))
}

/// A DALI error document (VOTable with `QUERY_STATUS=ERROR` and the message) with `status`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-votable+xml")],
        votable::error_document(message),
    )
        .into_response()
}
