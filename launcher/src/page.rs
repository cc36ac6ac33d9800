//! The launcher's web page, rendered on the server: the datalabs with launch buttons, the
//! volumes, the user's instances with open and stop, the workspaces; a login form without a
//! user. The buttons call the JSON API (with the `x-insitu` header) and reload.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};

use crate::instances::State as InstanceState;
use crate::manifest::gib;
use crate::Launcher;

/// Text made safe inside HTML elements and quoted attributes.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#14213d;color:#fff;padding:14px 28px;display:flex;justify-content:space-between;align-items:center}
header h1{font-size:20px;margin:0} header form{margin:0}
main{padding:18px 28px;max-width:1100px}
h2{font-size:16px;margin:22px 0 8px;color:#14213d}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d6dae2;border-radius:8px;padding:12px 14px;width:250px}
.card h3{margin:0 0 4px;font-size:15px} .card p{margin:4px 0;font-size:13px;color:#4a5263}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
td,th{border:1px solid #d6dae2;padding:6px 8px;text-align:left}
button{background:#fca311;border:0;border-radius:5px;padding:6px 12px;font-weight:600;cursor:pointer}
button.stop{background:#e5e5e5} .state-running{color:#1b7f3b;font-weight:600}
.state-failed{color:#b00020;font-weight:600} .state-starting{color:#8a6d00}
.problem{color:#b00020;font-size:13px} .muted{color:#6b7280;font-size:13px}";

const SCRIPT: &str = "
async function call(method, url) {
  const r = await fetch(url, {method, headers: {'x-insitu': '1'}});
  if (!r.ok) { const j = await r.json().catch(() => ({error: r.statusText})); alert(j.error); }
  location.reload();
}
if (document.querySelector('.state-starting')) setTimeout(() => location.reload(), 2000);";

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

pub async fn page(State(l): State<Arc<Launcher>>, headers: HeaderMap) -> Response {
    let Some(user) = crate::api::user_of(&l, &headers) else {
        return Html(format!(
            "<!doctype html><html><head><meta charset=utf-8><title>insitu datalabs</title>\
             <style>{STYLE}</style></head><body><header><h1>insitu datalabs</h1></header><main>\
             <h2>Log in</h2><form method=post action=/login><input name=token type=password \
             placeholder='your token' size=64> <button>Log in</button></form></main></body></html>"
        ))
        .into_response();
    };
    let (manifests, problems) = l.datalabs();
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>insitu datalabs</h1><form method=post action=/logout>{} \
         <button class=stop>Log out</button></form></header><main>",
        esc(&user.name)
    );
    body.push_str("<h2>Datalabs</h2><div class=cards>");
    for m in &manifests {
        let volumes: Vec<&str> = m
            .mounted_volumes(&l.config.volumes)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let _ = write!(
            body,
            "<div class=card id='datalab-{name}'><h3>{title}</h3><p>{desc}</p>\
             <p class=muted>{cpus} CPU · {mem} · volumes: {vols}</p>\
             <button onclick=\"call('POST','/datalabs/{name}/launch')\">Launch</button></div>",
            name = esc(&m.name),
            title = esc(&m.title),
            desc = esc(&m.description),
            cpus = m.resources.cpus,
            mem = gib(m.memory_bytes()),
            vols = if volumes.is_empty() {
                "none".to_string()
            } else {
                esc(&volumes.join(", "))
            },
        );
    }
    body.push_str("</div>");
    for p in &problems {
        let file = p
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<p class=problem>unavailable: {} {}: {}</p>",
            esc(&file),
            esc(&p.field),
            esc(&p.message)
        );
    }
    let instances = l.instances_of(&user.name);
    let _ = write!(
        body,
        "<h2>Your instances ({} of {})</h2>",
        instances
            .iter()
            .filter(|i| i.state != InstanceState::Failed)
            .count(),
        l.config.quotas.instances
    );
    if instances.is_empty() {
        body.push_str("<p class=muted>None running: launch a datalab above.</p>");
    } else {
        body.push_str(
            "<table><tr><th>instance</th><th>datalab</th><th>state</th><th>idle</th><th></th></tr>",
        );
        for i in &instances {
            let state = serde_json::to_value(i.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr id='instance-{id}'><td><a href='{url}'>{id}</a></td><td>{title}</td>\
                 <td class='state-{state}'>{state}{msg}</td><td>{idle} s</td>\
                 <td><button class=stop onclick=\"call('DELETE','/instances/{id}')\">Stop</button></td></tr>",
                id = esc(&i.id),
                url = esc(&i.url),
                title = esc(&i.title),
                msg = i.message.as_deref().map(|m| format!(": {}", esc(m))).unwrap_or_default(),
                idle = i.idle_seconds,
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Volumes (read-only)</h2><table><tr><th>volume</th><th>path</th></tr>");
    for (name, path) in &l.config.volumes {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(&path.to_string_lossy())
        );
    }
    body.push_str(
        "</table><h2>Workspaces</h2><table><tr><th>workspace</th><th>used</th><th>quota</th></tr>",
    );
    let l2 = l.clone();
    let user2 = user.clone();
    let spaces = tokio::task::spawn_blocking(move || l2.workspaces_of(&user2))
        .await
        .unwrap_or_default();
    for w in &spaces {
        let _ = write!(
            body,
            "<tr><td>{}/{}</td><td>{}</td><td>{}</td></tr>",
            w.kind,
            esc(&w.name),
            gb(w.bytes),
            w.quota_bytes.map_or("shared".to_string(), gb)
        );
    }
    let _ = write!(
        body,
        "</table><p class=muted>{}</p></main>",
        esc(&l.isolation)
    );
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(format!(
            "<!doctype html><html><head><meta charset=utf-8><title>insitu datalabs</title>\
             <style>{STYLE}</style><script>{SCRIPT}</script></head><body>{body}</body></html>"
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_is_escaped() {
        assert_eq!(
            super::esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
