//! The manifests as Kubernetes objects (`insitu k8s render`): a Pod, a Service and a token
//! Secret per datalab, and the user's and teams' workspace claims.
//!
//! Each datalab becomes what the process backend makes of it on one machine: the data volumes
//! mounted read-only at the paths they have on the host (over NFS here), the user's workspace
//! at `/workspace` and each team's at `/workspace/teams/TEAM`, its cores and memory as
//! requests and limits. The objects are `serde_json::Value`s ([`render`]), written out as a
//! YAML stream by [`to_yaml`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, Placeholders};

/// Where the objects go and what they mount.
#[derive(Debug, Clone)]
pub struct Target {
    /// The insitu user name, as in `/user/NAME/…` (mapped to DNS names for object names).
    pub user: String,
    pub teams: Vec<String>,
    pub namespace: String,
    /// The server's volumes, NAME and path; the path is both the NFS export and the mount
    /// point, so paths in a datalab are the same as on the host.
    pub volumes: Vec<(String, PathBuf)>,
    pub nfs_server: Option<String>,
    /// The user's workspace claim, a Kubernetes quantity (the per-user quota).
    pub workspace_size: String,
    /// Each team workspace claim.
    pub team_workspace_size: String,
    /// None: the cluster's default class (which must offer ReadWriteMany).
    pub storage_class: Option<String>,
}

impl Target {
    /// A target for `user` in `namespace`, 100Gi workspaces, no team, no volume.
    pub fn new(user: impl Into<String>, namespace: impl Into<String>) -> Target {
        Target {
            user: user.into(),
            teams: Vec::new(),
            namespace: namespace.into(),
            volumes: Vec::new(),
            nfs_server: None,
            workspace_size: "100Gi".into(),
            team_workspace_size: "100Gi".into(),
            storage_class: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    #[error("datalab {datalab:?}: kubernetes.image: not set (the container image of its Pod)")]
    MissingImage { datalab: String },
    #[error("datalab {datalab:?}: kubernetes.port: must be > 0")]
    MissingPort { datalab: String },
    #[error(
        "datalab {datalab:?} mounts {volumes}: give the NFS server exporting them (--nfs-server)"
    )]
    NoNfsServer { datalab: String, volumes: String },
    #[error("volume {volume}: {path:?} is not an absolute path (the NFS export and mount point)")]
    RelativeVolumePath { volume: String, path: PathBuf },
    #[error("datalab {datalab:?}: env: {name} is set by insitu (the instance's token)")]
    ReservedEnv { datalab: String, name: String },
    #[error("{what} {value:?}: a Kubernetes quantity such as \"100Gi\"")]
    Quantity { what: &'static str, value: String },
    #[error("{what} {name:?}: {why}")]
    Name {
        what: &'static str,
        name: String,
        why: &'static str,
    },
    #[error("cannot make a random token: {0}")]
    Random(String),
}

/// The env var holding the instance's token, from its Secret. `{token}` becomes a reference to
/// it, which the kubelet expands in command, args and env, so the token is in no Pod spec.
pub const TOKEN_ENV: &str = "INSITU_INSTANCE_TOKEN";
const WORKSPACE: &str = "/workspace";

/// The workspace claims of the target, then a Secret, a Pod and a Service per manifest, in
/// the order `kubectl apply` should create them.
///
/// Each Secret holds a fresh random token (and the filled `proxy.authorization`, for the
/// proxy), so that no Pod runs unprotected and no token is written into a Pod spec. Rendering
/// again makes new tokens; a running Pod keeps the one it started with (env is read at start),
/// so a new render is applied with its Pods recreated (`kubectl replace --force`).
pub fn render(manifests: &[Manifest], target: &Target) -> Result<Vec<Value>, K8sError> {
    check_target(target)?;
    let mut objects = vec![workspace_claim(
        target,
        &user_claim(&target.user),
        &target.workspace_size,
        ("insitu.io/user", dns_label(&target.user, 63)),
    )];
    for team in &target.teams {
        objects.push(workspace_claim(
            target,
            &team_claim(team),
            &target.team_workspace_size,
            ("insitu.io/team", dns_label(team, 63)),
        ));
    }
    for manifest in manifests {
        let token = random_token()?;
        objects.extend(datalab_objects(manifest, target, &token)?);
    }
    Ok(objects)
}

fn check_target(target: &Target) -> Result<(), K8sError> {
    let name = |what, name: &str| {
        let why = if name.is_empty() {
            "must not be empty"
        } else if name.contains('/') || name == "." || name == ".." {
            "must not be a path (it names a folder under /workspace/teams)"
        } else {
            return Ok(());
        };
        Err(K8sError::Name {
            what,
            name: name.to_string(),
            why,
        })
    };
    name("user", &target.user)?;
    target.teams.iter().try_for_each(|t| name("team", t))?;
    if !is_dns_label(&target.namespace) {
        return Err(K8sError::Name {
            what: "namespace",
            name: target.namespace.clone(),
            why: "lowercase letters, digits and '-' (a DNS label)",
        });
    }
    for (what, value) in [
        ("workspace size", &target.workspace_size),
        ("team workspace size", &target.team_workspace_size),
    ] {
        if !is_quantity(value) {
            return Err(K8sError::Quantity {
                what,
                value: value.clone(),
            });
        }
    }
    for (volume, path) in &target.volumes {
        if !path.is_absolute() {
            return Err(K8sError::RelativeVolumePath {
                volume: volume.clone(),
                path: path.clone(),
            });
        }
    }
    Ok(())
}

/// A workspace outlives the Pods: a claim, ReadWriteMany because every datalab of the user
/// (and of each member of a team) mounts it at once, on whichever nodes they land.
fn workspace_claim(target: &Target, name: &str, size: &str, owner: (&str, String)) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": size}},
    });
    if let Some(class) = &target.storage_class {
        spec["storageClassName"] = json!(class);
    }
    let mut labels = json!({
        "app.kubernetes.io/name": "insitu-workspace",
        "app.kubernetes.io/managed-by": "insitu",
    });
    labels[owner.0] = json!(owner.1);
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": target.namespace, "labels": labels},
        "spec": spec,
    })
}

fn user_claim(user: &str) -> String {
    format!("workspace-{}", dns_label(user, 63))
}

fn team_claim(team: &str) -> String {
    format!("team-{}", dns_label(team, 63))
}

fn datalab_objects(m: &Manifest, target: &Target, token: &str) -> Result<[Value; 3], K8sError> {
    let image = m
        .kubernetes
        .image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| K8sError::MissingImage {
            datalab: m.name.clone(),
        })?;
    let port = m.kubernetes.port;
    if port == 0 {
        return Err(K8sError::MissingPort {
            datalab: m.name.clone(),
        });
    }
    if m.env.contains_key(TOKEN_ENV) {
        return Err(K8sError::ReservedEnv {
            datalab: m.name.clone(),
            name: TOKEN_ENV.into(),
        });
    }
    let mounted = m.mounted_volumes(&target.volumes);
    let nfs_server = match (&target.nfs_server, mounted.is_empty()) {
        (Some(server), _) => server.as_str(),
        (None, true) => "",
        (None, false) => {
            return Err(K8sError::NoNfsServer {
                datalab: m.name.clone(),
                volumes: mounted
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };

    let name = instance_name(&target.user, &m.name);
    let base_url = format!("/user/{}/{}/", target.user, m.name);
    let labels = json!({
        "app.kubernetes.io/name": dns_label(&m.name, 63),
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "datalab",
        "app.kubernetes.io/managed-by": "insitu",
        "insitu.io/user": dns_label(&target.user, 63),
        "insitu.io/datalab": dns_label(&m.name, 63),
    });
    let metadata = json!({
        "name": name,
        "namespace": target.namespace,
        "labels": labels,
        // The names as insitu knows them; labels carry their DNS forms.
        "annotations": {"insitu.io/user-name": target.user, "insitu.io/datalab-name": m.name},
    });

    // Filled with a sentinel for {token}, so that `$(` already in the manifest can be escaped
    // (`$$(`: the kubelet would expand it, the process backend does not) before the sentinel
    // becomes the one reference the kubelet must expand.
    const SENTINEL: &str = "\u{0}token\u{0}";
    let placeholders = Placeholders {
        port,
        host: "0.0.0.0",
        base_url: &base_url,
        workspace: Path::new(WORKSPACE),
        token: SENTINEL,
        user: &target.user,
        instance: &m.name,
    };
    let fill = |text: &str| {
        placeholders
            .fill(text)
            .replace("$(", "$$(")
            .replace(SENTINEL, &format!("$({TOKEN_ENV})"))
    };
    let mut env = vec![json!({
        "name": TOKEN_ENV,
        "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}},
    })];
    env.extend(
        m.env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": fill(v)})),
    );

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (volume, path) in &mounted {
        let volume_name = format!("data-{}", dns_label(volume, 58));
        volumes.push(json!({
            "name": volume_name,
            "nfs": {"server": nfs_server, "path": path, "readOnly": true},
        }));
        mounts.push(json!({"name": volume_name, "mountPath": path, "readOnly": true}));
    }
    volumes.push(json!({
        "name": "workspace",
        "persistentVolumeClaim": {"claimName": user_claim(&target.user)},
    }));
    mounts.push(json!({"name": "workspace", "mountPath": WORKSPACE}));
    for team in &target.teams {
        let volume_name = format!("team-{}", dns_label(team, 58));
        volumes.push(json!({
            "name": volume_name,
            "persistentVolumeClaim": {"claimName": team_claim(team)},
        }));
        mounts.push(json!({"name": volume_name, "mountPath": format!("{WORKSPACE}/teams/{team}")}));
    }

    // Requests equal to limits: the quota is what the datalab gets (Guaranteed QoS, so it is
    // not the first evicted under memory pressure), as the process backend's hard limits.
    let resources =
        json!({"cpu": cpu_quantity(m.resources.cpus), "memory": memory_quantity(m.memory_bytes())});
    let mut container = json!({
        "name": "datalab",
        "image": image,
        "command": [fill(&m.command)],
        "args": m.args.iter().map(|a| fill(a)).collect::<Vec<_>>(),
        "env": env,
        "workingDir": WORKSPACE,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": {"requests": resources, "limits": resources},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            // Datalabs install packages and write caches under $HOME.
            "readOnlyRootFilesystem": false,
            "capabilities": {"drop": ["ALL"]},
        },
    });
    // The kubelet's probe cannot send the Authorization header the launcher's health check
    // sends (its value would have to be written into the Pod spec), and a health path behind
    // it (JupyterLab's api/status) would keep the Pod unready for good: such a datalab is
    // ready when it listens.
    let probe = match (m.health.is_empty(), &m.proxy.authorization) {
        (true, _) => None,
        (false, Some(_)) => Some(json!({"tcpSocket": {"port": "http"}})),
        (false, None) => {
            let path = if m.proxy.strip_prefix {
                format!("/{}", m.health)
            } else {
                format!("{base_url}{}", m.health)
            };
            Some(json!({"httpGet": {"path": path, "port": "http"}}))
        }
    };
    if let Some(mut probe) = probe {
        probe["periodSeconds"] = json!(5);
        probe["failureThreshold"] = json!(3);
        container["readinessProbe"] = probe;
    }
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [container],
            "volumes": volumes,
            // A datalab has no business with the cluster's API nor the namespace's services.
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": {
                "runAsNonRoot": true,
                // Added to the datalab's groups, and given to the workspaces' files, so a
                // fresh claim is writable whatever uid the image runs as.
                "fsGroup": 100,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": {
                "insitu.io/user": dns_label(&target.user, 63),
                "insitu.io/datalab": dns_label(&m.name, 63),
            },
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    });
    let mut secret_data = json!({"token": token});
    if let Some(auth) = &m.proxy.authorization {
        let real = Placeholders {
            token,
            ..placeholders
        };
        secret_data["authorization"] = json!(real.fill(auth));
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": secret_data,
    });
    Ok([secret, pod, service])
}

/// 32 random bytes as hex.
fn random_token() -> Result<String, K8sError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| K8sError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `name` as a DNS-1123 label of at most `max` (≥ 10) characters: lowercase letters, digits
/// and '-'. A name that must change (uppercase, '_', '.', too long) gets 8 hex digits of its
/// SHA-256, so "Alice", "alice_" and "alice." stay apart from each other and from "alice"
/// (only a name chosen to equal another's mapped form, "alice-" and 8 hex digits, could meet it).
pub fn dns_label(name: &str, max: usize) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    if mapped == name && is_dns_label(name) && name.len() <= max {
        return mapped;
    }
    let digest = hex(&Sha256::digest(name.as_bytes())[..4]);
    let keep = max.saturating_sub(digest.len() + 1);
    let stem = mapped[..mapped.len().min(keep)].trim_matches('-');
    if stem.is_empty() {
        digest
    } else {
        format!("{stem}-{digest}")
    }
}

/// The Pod's, Service's and Secret's name: a Service's is a DNS-1035 label (a letter first, at
/// most 63), and the hash of the pair keeps user "a-b" with datalab "c" apart from user "a"
/// with datalab "b-c" in a shared namespace.
fn instance_name(user: &str, datalab: &str) -> String {
    let digest = hex(&Sha256::digest(format!("{user}\u{0}{datalab}").as_bytes())[..4]);
    let mut stem = format!("{}-{}", dns_label(datalab, 63), dns_label(user, 63));
    if !stem.starts_with(|c: char| c.is_ascii_lowercase()) {
        stem.insert_str(0, "dl-");
    }
    stem.truncate(63 - digest.len() - 1);
    format!("{}-{digest}", stem.trim_end_matches('-'))
}

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// "100Gi", "1.5T", "500M", "1000": a number and a binary or decimal suffix.
fn is_quantity(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &s[digits.len()..];
    let number_ok = !digits.is_empty()
        && !digits.starts_with('.')
        && !digits.ends_with('.')
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.matches('.').count() <= 1;
    let suffix_ok = [
        "", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ]
    .contains(&suffix);
    number_ok && suffix_ok
}

/// Whole cores as "2", fractions in millicores ("500m"), rounded up so a datalab never gets
/// less than its manifest asks.
fn cpu_quantity(cpus: f64) -> String {
    let millis = (cpus * 1000.0).ceil().max(1.0) as u64;
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Memory in MiB, rounded up.
fn memory_quantity(bytes: u64) -> String {
    format!("{}Mi", bytes.div_ceil(1 << 20).max(1))
}

/// The objects as a YAML stream, one document each, in block style with every string
/// double-quoted.
///
/// Written here rather than by a YAML crate: serde_yaml is unmaintained and its forks
/// (serde_norway, serde_yml) and the yaml-rust2 emitter leave strings such as `2026-11-30` or
/// `0o17` plain, which YAML 1.1 readers (PyYAML, kubectl's go-yaml) take for a date or a
/// number, so an env value would change type. Quoting every string (JSON's escapes are YAML's)
/// leaves nothing to resolve, and the output is JSON data in YAML's layout, which needs ~50
/// lines.
pub fn to_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        match object {
            Value::Object(map) if !map.is_empty() => yaml_map(&mut out, map, 0),
            other => {
                out.push_str(&yaml_scalar(other));
                out.push('\n');
            }
        }
    }
    out
}

fn yaml_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, value) in map {
        let _ = write!(out, "{:indent$}{}:", "", yaml_key(key));
        yaml_nested(out, value, indent + 2);
    }
}

fn yaml_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        let _ = write!(out, "{:indent$}-", "");
        match item {
            // The first entry goes on the dash's line, the others under it.
            Value::Object(map) if !map.is_empty() => {
                let mut block = String::new();
                yaml_map(&mut block, map, indent + 2);
                out.push(' ');
                out.push_str(&block[indent + 2..]);
            }
            Value::Array(seq) if !seq.is_empty() => {
                out.push('\n');
                yaml_seq(out, seq, indent + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&yaml_scalar(scalar));
                out.push('\n');
            }
        }
    }
}

/// What follows `key:`: a scalar on the same line, a block below it.
fn yaml_nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml_map(out, map, indent);
        }
        // Sequences under a key at the key's own indentation, as kubectl writes them.
        Value::Array(seq) if !seq.is_empty() => {
            out.push('\n');
            yaml_seq(out, seq, indent - 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::String(s) => yaml_string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        // null, booleans and numbers read the same in JSON and YAML.
        other => other.to_string(),
    }
}

/// Keys that cannot be mistaken for anything else stay plain (`app.kubernetes.io/name`).
fn yaml_key(key: &str) -> String {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        key.to_string()
    } else {
        yaml_string(key)
    }
}

/// A double-quoted scalar with YAML 1.2 §5.7 escapes; every character that is not printable
/// (§5.1) or that a YAML 1.1 reader would take for a line break is escaped.
fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // NEL, U+2028 and U+2029 are line breaks to YAML 1.1, U+FEFF a byte order mark.
            '\u{20}'..='\u{7e}'
            | '\u{a0}'..='\u{2027}'
            | '\u{202a}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fefe}'
            | '\u{ff00}'..='\u{fffd}'
            | '\u{10000}'..='\u{10ffff}' => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::load_folder;

    const LAB: &str = r#"
        title = "JupyterLab"
        command = "jupyter-lab"
        args = ["--ip=0.0.0.0", "--port={port}", "--ServerApp.base_url={base_url}",
                "--ServerApp.root_dir={workspace}", "--IdentityProvider.token={token}",
                "--literal=$(HOME)"]
        health = "api"
        volumes = ["q1"]
        [env]
        OWNER = "{user}"
        WHEN = "2026-11-30"
        [resources]
        cpus = 1.5
        memory = "3GiB"
        [proxy]
        authorization = "token {token}"
        [kubernetes]
        image = "quay.io/jupyter/scipy-notebook:2026-11-30"
        port = 8888
    "#;

    fn manifests(files: &[(&str, &str)]) -> Vec<Manifest> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let (ok, problems) = load_folder(dir.path(), &["q1".into(), "dr1".into()]);
        assert!(problems.is_empty(), "{problems:?}");
        ok
    }

    fn target() -> Target {
        let mut t = Target::new("alice", "insitu");
        t.teams = vec!["euclid".into()];
        t.volumes = vec![
            ("q1".into(), "/data/q1".into()),
            ("dr1".into(), "/data/dr1".into()),
        ];
        t.nfs_server = Some("nfs.example.org".into());
        t
    }

    fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
        objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    #[test]
    fn pod_mounts_its_volumes_read_only_over_nfs_and_the_workspaces_writable() {
        let objects = render(&manifests(&[("lab.toml", LAB)]), &target()).unwrap();
        let pod = of_kind(&objects, "Pod")[0];
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        let data: Vec<&Value> = volumes.iter().filter(|v| v.get("nfs").is_some()).collect();
        // Only the volume the manifest asks for, not every volume of the server.
        assert_eq!(data.len(), 1);
        assert_eq!(
            data[0]["nfs"],
            json!({"server": "nfs.example.org", "path": "/data/q1", "readOnly": true})
        );
        let mounts = pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap();
        let by_path = |p: &str| mounts.iter().find(|m| m["mountPath"] == p).unwrap();
        assert_eq!(by_path("/data/q1")["readOnly"], true);
        assert_eq!(by_path("/data/q1")["name"], data[0]["name"]);
        assert!(by_path("/workspace").get("readOnly").is_none());
        assert!(by_path("/workspace/teams/euclid").get("readOnly").is_none());
        let claims: Vec<&str> = volumes
            .iter()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .collect();
        assert_eq!(claims, ["workspace-alice", "team-euclid"]);
        let pvcs = of_kind(&objects, "PersistentVolumeClaim");
        assert_eq!(pvcs.len(), 2);
        assert_eq!(pvcs[0]["metadata"]["name"], "workspace-alice");
        assert_eq!(pvcs[0]["spec"]["resources"]["requests"]["storage"], "100Gi");
        assert_eq!(pvcs[1]["spec"]["accessModes"], json!(["ReadWriteMany"]));
        assert!(pvcs[0]["spec"].get("storageClassName").is_none());
    }

    #[test]
    fn resources_are_requests_and_limits() {
        let objects = render(&manifests(&[("lab.toml", LAB)]), &target()).unwrap();
        let resources = &of_kind(&objects, "Pod")[0]["spec"]["containers"][0]["resources"];
        let expected = json!({"cpu": "1500m", "memory": "3072Mi"});
        assert_eq!(resources["requests"], expected);
        assert_eq!(resources["limits"], expected);
        assert_eq!(cpu_quantity(2.0), "2");
        assert_eq!(cpu_quantity(0.0001), "1m");
        assert_eq!(memory_quantity((1 << 20) + 1), "2Mi");
    }

    #[test]
    fn placeholders_filled_and_the_token_only_in_the_secret() {
        let objects = render(&manifests(&[("lab.toml", LAB)]), &target()).unwrap();
        let secret = of_kind(&objects, "Secret")[0];
        let token = secret["stringData"]["token"].as_str().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(
            secret["stringData"]["authorization"],
            format!("token {token}")
        );
        let pod = of_kind(&objects, "Pod")[0];
        let container = &pod["spec"]["containers"][0];
        let pod_text = pod.to_string();
        assert!(!pod_text.contains(token));
        for object in of_kind(&objects, "Service")
            .into_iter()
            .chain(of_kind(&objects, "PersistentVolumeClaim"))
        {
            assert!(!object.to_string().contains(token));
        }
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"--port=8888"));
        assert!(args.contains(&"--ServerApp.base_url=/user/alice/lab/"));
        assert!(args.contains(&"--ServerApp.root_dir=/workspace"));
        assert!(args.contains(&"--IdentityProvider.token=$(INSITU_INSTANCE_TOKEN)"));
        // Left for the datalab, as on the process backend.
        assert!(args.contains(&"--literal=$$(HOME)"));
        let reference = json!({"name": secret["metadata"]["name"], "key": "token"});
        assert_eq!(
            container["env"][0],
            json!({"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": reference}})
        );
        // Behind the proxy's Authorization header: the kubelet cannot send it.
        assert_eq!(container["readinessProbe"]["tcpSocket"]["port"], "http");
        let open = LAB.replace("authorization = \"token {token}\"", "");
        let objects = render(&manifests(&[("lab.toml", &open)]), &target()).unwrap();
        let probe = &of_kind(&objects, "Pod")[0]["spec"]["containers"][0]["readinessProbe"];
        assert_eq!(probe["httpGet"]["path"], "/user/alice/lab/api");
        let stripped = open.replace("[proxy]", "[proxy]\nstrip_prefix = true");
        let objects = render(&manifests(&[("lab.toml", &stripped)]), &target()).unwrap();
        let probe = &of_kind(&objects, "Pod")[0]["spec"]["containers"][0]["readinessProbe"];
        assert_eq!(probe["httpGet"]["path"], "/api");
        // Rendering again makes a new token.
        let again = render(&manifests(&[("lab.toml", LAB)]), &target()).unwrap();
        assert_ne!(of_kind(&again, "Secret")[0]["stringData"]["token"], token);
    }

    #[test]
    fn service_selects_its_pod() {
        let objects = render(&manifests(&[("lab.toml", LAB)]), &target()).unwrap();
        let pod = of_kind(&objects, "Pod")[0];
        let service = of_kind(&objects, "Service")[0];
        assert_eq!(service["spec"]["ports"][0]["port"], 8888);
        for (k, v) in service["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][k], v);
        }
        assert_eq!(pod["metadata"]["name"], service["metadata"]["name"]);
    }

    #[test]
    fn names_are_dns_labels_and_stay_unique() {
        let users = [
            "alice",
            "Alice",
            "alice_",
            "alice.",
            "a_b",
            "a.b",
            "a-b",
            "ALICE",
            "_",
            "9lives",
            &"x".repeat(100),
        ];
        let labels: Vec<String> = users.iter().map(|u| dns_label(u, 63)).collect();
        for (user, label) in users.iter().zip(&labels) {
            assert!(is_dns_label(label), "{user:?} -> {label:?}");
        }
        assert_eq!(labels[0], "alice");
        assert!(labels[1].starts_with("alice-"), "{}", labels[1]);
        assert!(labels[3].starts_with("alice-"), "{}", labels[3]);
        assert_eq!(labels[6], "a-b");
        let unique: std::collections::BTreeSet<&String> = labels.iter().collect();
        assert_eq!(unique.len(), labels.len(), "{labels:?}");

        let names = [
            instance_name("a-b", "c"),
            instance_name("a", "b-c"),
            instance_name("Alice", "lab"),
            instance_name("alice", "lab"),
            instance_name("9lives", "9lab"),
            instance_name(&"u".repeat(80), &"d".repeat(40)),
        ];
        for name in &names {
            assert!(
                is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
                "{name}"
            );
        }
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());

        let mut t = target();
        t.user = "Bob.Smith_2".into();
        t.teams = vec!["Euclid_WL".into()];
        let objects = render(&manifests(&[("lab.toml", LAB)]), &t).unwrap();
        for object in &objects {
            let name = object["metadata"]["name"].as_str().unwrap();
            assert!(is_dns_label(name), "{name}");
            for label in object["metadata"]["labels"].as_object().unwrap().values() {
                assert!(is_dns_label(label.as_str().unwrap()), "{label}");
            }
        }
        let pod = of_kind(&objects, "Pod")[0];
        // Paths and the base URL keep the names insitu knows.
        assert_eq!(
            pod["metadata"]["annotations"]["insitu.io/user-name"],
            "Bob.Smith_2"
        );
        assert!(pod["spec"]["containers"][0]["volumeMounts"]
            .to_string()
            .contains("/workspace/teams/Euclid_WL"));
        assert!(pod["spec"]["containers"][0]["args"]
            .to_string()
            .contains("/user/Bob.Smith_2/lab/"));
    }

    #[test]
    fn errors_name_what_is_missing() {
        let no_image = LAB.replace("image = \"quay.io/jupyter/scipy-notebook:2026-11-30\"", "");
        let err = render(&manifests(&[("bare.toml", &no_image)]), &target()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"bare\"") && text.contains("kubernetes.image"),
            "{text}"
        );

        let mut t = target();
        t.nfs_server = None;
        let err = render(&manifests(&[("lab.toml", LAB)]), &t).unwrap_err();
        assert!(matches!(err, K8sError::NoNfsServer { .. }));
        assert!(err.to_string().contains("q1") && err.to_string().contains("--nfs-server"));
        // A datalab with no volume needs no NFS server.
        let no_volume = LAB.replace("volumes = [\"q1\"]", "");
        assert!(render(&manifests(&[("lab.toml", &no_volume)]), &t).is_ok());

        let mut t = target();
        t.volumes[0].1 = "data/q1".into();
        assert!(matches!(
            render(&[], &t),
            Err(K8sError::RelativeVolumePath { .. })
        ));
        let mut t = target();
        t.workspace_size = "lots".into();
        assert!(matches!(render(&[], &t), Err(K8sError::Quantity { .. })));
        let mut t = target();
        t.teams = vec!["../x".into()];
        assert!(matches!(render(&[], &t), Err(K8sError::Name { .. })));
        let reserved = LAB.replace("OWNER", TOKEN_ENV);
        assert!(matches!(
            render(&manifests(&[("lab.toml", &reserved)]), &target()),
            Err(K8sError::ReservedEnv { .. })
        ));
    }

    #[test]
    fn quantities() {
        for ok in ["100Gi", "1.5Ti", "500M", "1000", "2k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "1.Gi", "1..5Gi", "100GB", "-1Gi", "1 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn yaml_quotes_every_string_and_nests_in_block_style() {
        let objects = vec![
            json!({
                "kind": "Pod",
                "spec": {
                    "list": [{"a": 1, "b": "2026-11-30"}, "on", [true, null]],
                    "empty": {},
                    "none": [],
                },
                "say \"hi\"": "tab\there\u{85}\u{7f}\u{e9}",
            }),
            json!({"kind": "Service"}),
        ];
        let yaml = to_yaml(&objects);
        let expected = r#"---
kind: "Pod"
"say \"hi\"": "tab\there\u0085\u007fé"
spec:
  empty: {}
  list:
  - a: 1
    b: "2026-11-30"
  - "on"
  -
    - true
    - null
  none: []
---
kind: "Service"
"#;
        assert_eq!(yaml, expected);
    }
}
