//! The reverse proxy `/user/{user}/{instance}/…` → the instance on the loopback interface,
//! for HTTP and WebSocket (JupyterLab's kernels and terminals), with the user's insitu
//! credentials replaced by the instance's own.

use std::time::Duration;

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Response, StatusCode};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::instances::Upstream;
use crate::{Error, Launcher, COOKIE};

/// How long the instance has to accept the connection and send its response head.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers that belong to one hop (RFC 9110 §7.6.1), never forwarded as they are.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
];

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The user's Cookie header without insitu's own cookie.
fn cookies_without_ours(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with(&format!("{COOKIE}=")))
        .collect();
    (!kept.is_empty())
        .then(|| HeaderValue::from_str(&kept.join("; ")).ok())
        .flatten()
}

/// Forwards one request to the instance; a WebSocket upgrade is joined end to end.
pub async fn forward(
    launcher: std::sync::Arc<Launcher>,
    id: String,
    upstream: Upstream,
    request: Request<Body>,
) -> Result<Response<Body>, Error> {
    let (mut parts, body) = request.into_parts();
    let websocket = is_websocket(&parts.headers);
    let client_upgrade = websocket
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let headers = &mut parts.headers;
    let cookies = cookies_without_ours(headers);
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(header::COOKIE);
    headers.remove(header::AUTHORIZATION);
    if let Some(c) = cookies {
        headers.insert(header::COOKIE, c);
    }
    if let Some(auth) = upstream
        .authorization
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        headers.insert(header::AUTHORIZATION, auth);
    }
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    // The Host header is kept: JupyterLab checks a WebSocket's Origin against it.
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let target = match &upstream.strip {
        Some(prefix) => match target.strip_prefix(prefix.as_str()) {
            Some(rest) if rest.starts_with('/') => rest,
            _ => "/",
        },
        None => target,
    };
    parts.uri = target
        .parse()
        .map_err(|_| Error::BadRequest("bad request target".into()))?;

    let not_answering = |e: String| {
        Error::Unavailable(format!(
            "instance {id} is not answering (still starting?): {e}"
        ))
    };
    let exchange = async {
        let mut sender = connect(upstream.port).await.map_err(not_answering)?;
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|e| not_answering(e.to_string()))
    };
    let mut response = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| not_answering(format!("no answer in {} s", UPSTREAM_TIMEOUT.as_secs())))??;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(Error::Unavailable(
                "the instance switched protocols unasked".into(),
            ));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        launcher.websocket(&id, true);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => tracing::debug!("websocket upgrade: {e}"),
            }
            launcher.websocket(&id, false);
        });
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = response.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// An HTTP/1 connection to the instance on `port` of the loopback interface, driven by a task
/// of its own (upgrades allowed, for WebSockets).
async fn connect(port: u16) -> Result<SendRequest<Body>, String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("proxy connection: {e}");
        }
    });
    Ok(sender)
}

/// Whether the instance answers `path` with 2xx or 3xx within a second.
pub async fn healthy(port: u16, path: &str, authorization: Option<&str>) -> bool {
    let check = async {
        let mut sender = connect(port).await.ok()?;
        let mut request = Request::get(path).header(header::HOST, format!("127.0.0.1:{port}"));
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        let response = sender
            .send_request(request.body(Body::empty()).ok()?)
            .await
            .ok()?;
        Some(response.status().is_success() || response.status().is_redirection())
    };
    tokio::time::timeout(Duration::from_secs(1), check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn our_cookie_never_reaches_the_instance() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("_xsrf=abc; insitu_token=secret"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("other=1"));
        assert_eq!(cookies_without_ours(&h).unwrap(), "_xsrf=abc; other=1");
        let mut only = HeaderMap::new();
        only.insert(
            header::COOKIE,
            HeaderValue::from_static("insitu_token=secret"),
        );
        assert!(cookies_without_ours(&only).is_none());
    }
}
