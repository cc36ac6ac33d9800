//! The launcher's HTTP interface. Every route but `/login` needs a user: a bearer token
//! (`Authorization: Bearer …`) or the cookie `/login` sets. What belongs to another user
//! answers 404, as if it did not exist.
//!
//! | route | what |
//! |---|---|
//! | `GET /datalabs` | the datalabs (and the manifests that did not load), the volumes |
//! | `POST /datalabs/{name}/launch` | start one: 201 and the instance, `starting` |
//! | `GET /instances`, `GET /instances/{id}` | the user's instances |
//! | `DELETE /instances/{id}` | stop one; 204 once its processes are gone |
//! | `GET /workspaces` | the user's and their teams' workspaces, sizes and quota |
//! | `GET /workspaces/{users\|teams}/{name}/{path}` | a file, or a folder's listing (JSON) |
//! | `GET /launcher` | the web page |
//! | `GET\|POST /login`, `POST /logout` | set or clear the cookie (token in `token`) |
//! | `/user/{user}/{instance}/…` | the instance itself, through the proxy |

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;

use crate::users::User;
use crate::workspaces::Kind;
use crate::{Error, Launcher, COOKIE};

/// The header the page's buttons send: a cross-site form cannot, so a cookie alone never
/// launches or stops anything.
pub const CSRF_HEADER: &str = "x-insitu";

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Quota(_) => StatusCode::CONFLICT,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Unavailable(_) => StatusCode::BAD_GATEWAY,
            Error::Start(_) | Error::Config(_) | Error::Users { .. } | Error::Io { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = match &self {
            Error::Users { .. } | Error::Io { .. } | Error::Config(_) => {
                tracing::error!("launcher: {self}");
                "internal error (see the server log)".to_string()
            }
            _ => self.to_string(),
        };
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"insitu\""),
            );
        }
        response
    }
}

/// The user a request comes from.
pub struct AuthUser {
    pub user: User,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)?
                .strip_prefix('=')
                .map(str::to_string)
        })
}

/// The user of a request's bearer token or cookie, if any and valid.
pub fn user_of(launcher: &Launcher, headers: &HeaderMap) -> Option<User> {
    let token = bearer(headers).or_else(|| cookie(headers))?;
    launcher.authenticate(&token).ok()
}

impl FromRequestParts<Arc<Launcher>> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        launcher: &Arc<Launcher>,
    ) -> Result<Self, Error> {
        let (token, by_cookie) = match (bearer(&parts.headers), cookie(&parts.headers)) {
            (Some(t), _) => (t, false),
            (None, Some(t)) => (t, true),
            (None, None) => {
                return Err(Error::Unauthorized(
                    "log in: send Authorization: Bearer TOKEN (or open /login)".into(),
                ))
            }
        };
        let user = launcher.authenticate(&token)?;
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if by_cookie
            && unsafe_method
            && !parts.headers.contains_key(CSRF_HEADER)
            && !parts.uri.path().starts_with("/user/")
        {
            return Err(Error::Forbidden(format!(
                "a {} with the login cookie needs the {CSRF_HEADER} header",
                parts.method
            )));
        }
        Ok(AuthUser { user })
    }
}

pub fn routes(launcher: Arc<Launcher>) -> Router {
    Router::new()
        .route("/datalabs", get(datalabs))
        .route("/datalabs/{name}/launch", post(launch))
        .route("/instances", get(instances))
        .route("/instances/{id}", get(instance).delete(stop))
        .route("/workspaces", get(workspaces))
        .route("/workspaces/{kind}/{name}", get(workspace_root))
        .route("/workspaces/{kind}/{name}/", get(workspace_root))
        .route("/workspaces/{kind}/{name}/{*path}", get(workspace_file))
        .route("/launcher", get(crate::page::page))
        .route("/login", get(login_query).post(login_form))
        .route("/logout", post(logout))
        .route("/user/{user}/{id}", any(proxy_root))
        .route("/user/{user}/{id}/", any(proxy))
        .route("/user/{user}/{id}/{*rest}", any(proxy))
        .with_state(launcher)
}

async fn datalabs(State(l): State<Arc<Launcher>>, _user: AuthUser) -> Response {
    let (manifests, problems) = l.datalabs();
    let list: Vec<serde_json::Value> = manifests
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.name, "title": m.title, "description": m.description,
                "cpus": m.resources.cpus, "memory_bytes": m.memory_bytes(),
                "volumes": m.mounted_volumes(&l.config.volumes).iter().map(|(n, _)| n).collect::<Vec<_>>(),
                "launch": format!("/datalabs/{}/launch", m.name),
            })
        })
        .collect();
    let volumes: Vec<serde_json::Value> = l
        .config
        .volumes
        .iter()
        .map(|(n, p)| serde_json::json!({ "name": n, "path": p, "read_only": true }))
        .collect();
    let problems: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "file": p.file.file_name().map(|f| f.to_string_lossy().into_owned()),
                "field": p.field, "message": p.message,
            })
        })
        .collect();
    Json(serde_json::json!({ "datalabs": list, "problems": problems, "volumes": volumes, "quotas": l.config.quotas }))
        .into_response()
}

async fn launch(
    State(l): State<Arc<Launcher>>,
    auth: AuthUser,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let view = l.launch(&auth.user, &name).await?;
    let mut response = (StatusCode::CREATED, Json(&view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/instances/{}", view.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn instances(State(l): State<Arc<Launcher>>, auth: AuthUser) -> Response {
    Json(l.instances_of(&auth.user.name)).into_response()
}

async fn instance(
    State(l): State<Arc<Launcher>>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(l.instance(&auth.user.name, &id)?).into_response())
}

async fn stop(
    State(l): State<Arc<Launcher>>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    l.stop(&auth.user.name, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn workspaces(State(l): State<Arc<Launcher>>, auth: AuthUser) -> Response {
    let user = auth.user;
    let l2 = l.clone();
    match tokio::task::spawn_blocking(move || l2.workspaces_of(&user)).await {
        Ok(list) => Json(list).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn workspace_root(
    State(l): State<Arc<Launcher>>,
    auth: AuthUser,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, Error> {
    workspace_read(&l, &auth.user, &kind, &name, "").await
}

async fn workspace_file(
    State(l): State<Arc<Launcher>>,
    auth: AuthUser,
    Path((kind, name, path)): Path<(String, String, String)>,
) -> Result<Response, Error> {
    workspace_read(&l, &auth.user, &kind, &name, &path).await
}

/// A file of a workspace the user may read, or the listing of a folder.
async fn workspace_read(
    l: &Launcher,
    user: &User,
    kind: &str,
    name: &str,
    rel: &str,
) -> Result<Response, Error> {
    let kind = Kind::parse(kind)
        .ok_or_else(|| Error::NotFound(format!("no workspace kind {kind:?} (users or teams)")))?;
    if !crate::workspaces::Workspaces::allowed(user, kind, name) {
        return Err(Error::NotFound(format!(
            "no workspace {}/{name}",
            kind.folder()
        )));
    }
    let path = l.workspaces.resolve(kind, name, rel)?;
    if path.is_dir() {
        let mut entries: Vec<serde_json::Value> = std::fs::read_dir(&path)
            .map_err(|e| Error::NotFound(format!("{rel}: {e}")))?
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some(serde_json::json!({
                    "name": e.file_name().to_string_lossy(),
                    "type": if meta.is_dir() { "folder" } else { "file" },
                    "bytes": meta.len(),
                }))
            })
            .collect();
        entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        return Ok(Json(entries).into_response());
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::NotFound(format!("{rel}: {e}")))?;
    let stream = file_body(file);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], stream).into_response())
}

/// A file as a streamed body, so a big one is not read into memory.
fn file_body(file: tokio::fs::File) -> Body {
    Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10))
}

#[derive(Deserialize)]
struct TokenParam {
    token: String,
}

fn login_response(l: &Launcher, token: &str) -> Result<Response, Error> {
    let user = l.authenticate(token)?;
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let mut response = Redirect::to("/launcher").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie)
            .map_err(|_| Error::BadRequest("a token is letters and digits".into()))?,
    );
    tracing::info!("{} logged in", user.name);
    Ok(response)
}

async fn login_query(
    State(l): State<Arc<Launcher>>,
    Query(p): Query<TokenParam>,
) -> Result<Response, Error> {
    login_response(&l, &p.token)
}

async fn login_form(
    State(l): State<Arc<Launcher>>,
    Form(p): Form<TokenParam>,
) -> Result<Response, Error> {
    login_response(&l, &p.token)
}

async fn logout() -> Response {
    let mut response = Redirect::to("/launcher").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("insitu_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

async fn proxy_root(Path((user, id)): Path<(String, String)>) -> Response {
    Redirect::permanent(&format!("/user/{user}/{id}/")).into_response()
}

async fn proxy(
    State(l): State<Arc<Launcher>>,
    auth: AuthUser,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, Error> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (user, id) = (get("user"), get("id"));
    if user != auth.user.name {
        return Err(Error::NotFound(format!("no instance {id}")));
    }
    let upstream = l.upstream(&user, &id)?;
    crate::proxy::forward(l.clone(), id, upstream, request).await
}
