//! Datalab manifests: one TOML file per datalab in a folder, checked field by field.
//!
//! ```toml
//! # jupyterlab.toml (the name defaults to the file's stem)
//! title = "JupyterLab"
//! description = "Notebooks with astropy, next to the mission volumes"
//! command = "jupyter-lab"
//! args = ["--no-browser", "--ip={host}", "--port={port}", "--ServerApp.base_url={base_url}",
//!         "--ServerApp.root_dir={workspace}"]
//! health = "api/status"             # under {base_url}; 2xx or 3xx means ready
//! volumes = ["euclid_q1"]           # mounted read-only; ["*"] for every volume
//! [env]
//! JUPYTER_TOKEN = "{token}"         # by environment: any process can read a command line
//! JUPYTER_RUNTIME_DIR = "{workspace}/.jupyter/runtime"
//! [resources]
//! cpus = 2
//! memory = "4GiB"
//! [proxy]
//! authorization = "token {token}"   # Authorization header the proxy sends to the instance
//! strip_prefix = false              # true: the instance sees /x for /user/NAME/ID/x
//! [kubernetes]
//! image = "quay.io/jupyter/scipy-notebook:2026-11-30"
//! port = 8888
//! ```
//!
//! Placeholders in `command`, `args` and `env`: `{port}`, `{host}` (the address to listen on),
//! `{base_url}` (`/user/NAME/ID/`),
//! `{workspace}`, `{token}` (a secret per instance, known to the proxy), `{user}`, `{instance}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One datalab, as loaded and checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Letters, digits, '-' and '_'; the file's stem when not given.
    #[serde(default)]
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Path under `{base_url}` polled until it answers 2xx/3xx.
    #[serde(default)]
    pub health: String,
    /// Seconds the datalab has to become healthy.
    #[serde(default = "default_start_seconds")]
    pub start_seconds: u64,
    #[serde(default)]
    pub resources: Resources,
    /// Names of the server's volumes this datalab sees (read-only); `"*"` for all.
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub proxy: ProxySettings,
    #[serde(default)]
    pub kubernetes: KubernetesSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// CPU cores (fractions allowed: cgroups' cpu.max; with rlimits, rounded up to whole cores
    /// pinned by affinity).
    pub cpus: f64,
    /// Memory, e.g. "512MiB", "4GiB" or "4G" (binary units either way).
    pub memory: String,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: 1.0,
            memory: "2GiB".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// The `Authorization` header the proxy sends upstream (placeholders allowed), replacing
    /// the user's own insitu token, which never reaches a datalab.
    pub authorization: Option<String>,
    /// Forward `/user/NAME/ID/x` as `/x`, for datalabs that cannot be given a base URL.
    pub strip_prefix: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSettings {
    /// The container image `insitu k8s render` puts in the Pod.
    pub image: Option<String>,
    /// The port the datalab listens on in its Pod (`{port}` there).
    pub port: u16,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        KubernetesSettings {
            image: None,
            port: 8888,
        }
    }
}

fn default_start_seconds() -> u64 {
    60
}

/// A manifest that did not load: the file, the field (empty when the file as a whole is at
/// fault) and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ManifestProblem {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

/// The manifests of a folder (`*.toml`, sorted by name) and the problems of those that did
/// not load; one bad file never keeps the others out. `volumes` are the names the server
/// serves.
pub fn load_folder(dir: &Path, volumes: &[String]) -> (Vec<Manifest>, Vec<ManifestProblem>) {
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut problems = Vec::new();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            problems.push(ManifestProblem {
                file: dir.to_path_buf(),
                field: String::new(),
                message: format!("cannot read the datalab folder: {e}"),
            });
            return (manifests, problems);
        }
    };
    files.sort();
    for file in files {
        match load_file(&file, volumes) {
            Ok(m) if manifests.iter().any(|o| o.name == m.name) => problems.push(ManifestProblem {
                file,
                field: "name".into(),
                message: format!("a datalab named {:?} is already defined", m.name),
            }),
            Ok(m) => manifests.push(m),
            Err(p) => problems.push(p),
        }
    }
    (manifests, problems)
}

/// One manifest file, parsed and checked.
pub fn load_file(file: &Path, volumes: &[String]) -> Result<Manifest, ManifestProblem> {
    let problem = |field: &str, message: String| ManifestProblem {
        file: file.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| problem("", format!("cannot read: {e}")))?;
    let mut manifest = parse(&text).map_err(|(field, message)| problem(&field, message))?;
    if manifest.name.is_empty() {
        manifest.name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    check(&manifest, volumes).map_err(|(field, message)| problem(field, message))?;
    Ok(manifest)
}

/// TOML to a manifest, with the dotted path of the field at fault.
fn parse(text: &str) -> Result<Manifest, (String, String)> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let mut message = inner.message().to_string();
        if let Some(span) = inner.span() {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            message = format!("line {line}: {message}");
        }
        (if field == "." { String::new() } else { field }, message)
    })
}

const PLACEHOLDERS: [&str; 7] = [
    "port",
    "host",
    "base_url",
    "workspace",
    "token",
    "user",
    "instance",
];

fn check(m: &Manifest, volumes: &[String]) -> Result<(), (&'static str, String)> {
    let valid_name = m
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && m.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && m.name.len() <= 40;
    if !valid_name {
        return Err((
            "name",
            format!("{:?}: up to 40 letters, digits, '-' or '_'", m.name),
        ));
    }
    if m.title.trim().is_empty() {
        return Err(("title", "must not be empty".into()));
    }
    if m.command.trim().is_empty() {
        return Err(("command", "must not be empty".into()));
    }
    for text in std::iter::once(&m.command).chain(&m.args) {
        unknown_placeholder(text).map_err(|e| ("args", e))?;
    }
    for value in m.env.values() {
        unknown_placeholder(value).map_err(|e| ("env", e))?;
    }
    if let Some(auth) = &m.proxy.authorization {
        unknown_placeholder(auth).map_err(|e| ("proxy.authorization", e))?;
    }
    let listens = std::iter::once(&m.command)
        .chain(&m.args)
        .chain(m.env.values())
        .any(|t| t.contains("{port}"));
    if !listens {
        return Err((
            "args",
            "the datalab must be told its port: use {port} in command, args or env".into(),
        ));
    }
    if !(m.resources.cpus.is_finite() && m.resources.cpus > 0.0 && m.resources.cpus <= 1024.0) {
        return Err((
            "resources.cpus",
            format!("{}: a number of cores > 0", m.resources.cpus),
        ));
    }
    parse_bytes(&m.resources.memory).map_err(|e| ("resources.memory", e))?;
    if m.health.starts_with('/') || m.health.contains("..") {
        return Err((
            "health",
            "a path relative to {base_url}, e.g. \"api/status\"".into(),
        ));
    }
    if m.start_seconds == 0 {
        return Err(("start_seconds", "must be > 0".into()));
    }
    for v in &m.volumes {
        if v != "*" && !volumes.contains(v) {
            return Err((
                "volumes",
                format!(
                    "no volume named {v:?} (the server has: {})",
                    if volumes.is_empty() {
                        "none".to_string()
                    } else {
                        volumes.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn unknown_placeholder(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("{text:?}: '{{' without '}}'"));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "{text:?}: unknown placeholder {{{name}}} (known: {})",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The values of the placeholders for one instance.
#[derive(Debug, Clone)]
pub struct Placeholders<'a> {
    pub port: u16,
    /// The address to listen on: the loopback interface for a process (only the proxy may
    /// reach it), every interface in a Pod (the Service must).
    pub host: &'a str,
    pub base_url: &'a str,
    pub workspace: &'a Path,
    pub token: &'a str,
    pub user: &'a str,
    pub instance: &'a str,
}

impl Placeholders<'_> {
    /// `text` with every `{name}` replaced (manifests were checked: all names are known).
    pub fn fill(&self, text: &str) -> String {
        text.replace("{port}", &self.port.to_string())
            .replace("{host}", self.host)
            .replace("{base_url}", self.base_url)
            .replace("{workspace}", &self.workspace.to_string_lossy())
            .replace("{token}", self.token)
            .replace("{user}", self.user)
            .replace("{instance}", self.instance)
    }
}

impl Manifest {
    /// Memory in bytes (checked at load).
    pub fn memory_bytes(&self) -> u64 {
        parse_bytes(&self.resources.memory).unwrap_or(0)
    }

    /// The volumes this datalab mounts, among the server's.
    pub fn mounted_volumes<'v>(
        &self,
        volumes: &'v [(String, PathBuf)],
    ) -> Vec<&'v (String, PathBuf)> {
        volumes
            .iter()
            .filter(|(name, _)| self.volumes.iter().any(|v| v == "*" || v == name))
            .collect()
    }
}

/// Bytes as GiB with one decimal, for messages and the page.
pub(crate) fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// "512MiB", "4GiB", "4G", "1.5TiB", "1048576" to bytes (binary units).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().trim_end_matches('B').trim_end_matches('i') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?}: a size such as \"512MiB\" or \"4GiB\"")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: a size such as \"512MiB\" or \"4GiB\""))?;
    let bytes = value * (1u64 << shift) as f64;
    if !(1.0..1e18).contains(&bytes) {
        return Err(format!("{text:?}: must be > 0"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        title = "JupyterLab"
        command = "jupyter-lab"
        args = ["--port={port}", "--ServerApp.base_url={base_url}"]
        volumes = ["q1"]
        [resources]
        cpus = 2
        memory = "4GiB"
    "#;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn bad_manifests_are_reported_with_file_and_field_and_the_rest_load() {
        let dir = folder(&[
            ("jupyterlab.toml", GOOD),
            ("typo.toml", &GOOD.replace("cpus = 2", "cpus = \"two\"")),
            ("unknown.toml", &format!("colour = \"red\"\n{GOOD}")),
            ("nocommand.toml", "title = \"x\"\nargs = [\"{port}\"]"),
            ("novolume.toml", &GOOD.replace("[\"q1\"]", "[\"dr1\"]")),
            ("noport.toml", &GOOD.replace("--port={port}", "--port=1")),
            ("placeholder.toml", &GOOD.replace("{base_url}", "{baseurl}")),
            ("memory.toml", &GOOD.replace("4GiB", "lots")),
            ("broken.toml", "title = \"unterminated"),
            ("README.md", "not a manifest"),
        ]);
        let (ok, problems) = load_folder(dir.path(), &["q1".to_string()]);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].name, "jupyterlab");
        assert_eq!(ok[0].memory_bytes(), 4 << 30);
        let by_file: BTreeMap<String, &ManifestProblem> = problems
            .iter()
            .map(|p| {
                (
                    p.file.file_name().unwrap().to_string_lossy().into_owned(),
                    p,
                )
            })
            .collect();
        assert_eq!(by_file.len(), 8, "{problems:#?}");
        assert_eq!(by_file["typo.toml"].field, "resources.cpus");
        assert!(
            by_file["typo.toml"].message.contains("line 7"),
            "{}",
            by_file["typo.toml"]
        );
        assert!(by_file["unknown.toml"].message.contains("colour"));
        assert!(by_file["nocommand.toml"].message.contains("command"));
        assert_eq!(by_file["novolume.toml"].field, "volumes");
        assert!(by_file["novolume.toml"].message.contains("dr1"));
        assert!(by_file["noport.toml"].message.contains("{port}"));
        assert!(by_file["placeholder.toml"].message.contains("{baseurl}"));
        assert_eq!(by_file["memory.toml"].field, "resources.memory");
        assert!(by_file["broken.toml"]
            .to_string()
            .starts_with(&dir.path().display().to_string()));
    }

    #[test]
    fn duplicate_names_keep_the_first() {
        let named = format!("name = \"lab\"\n{GOOD}");
        let dir = folder(&[("a.toml", &named), ("b.toml", &named)]);
        let (ok, problems) = load_folder(dir.path(), &["q1".to_string()]);
        assert_eq!(ok.len(), 1);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "name");
    }

    #[test]
    fn sizes_and_placeholders() {
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("4G").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert!(parse_bytes("0G").is_err());
        assert!(parse_bytes("-1G").is_err());
        let p = Placeholders {
            port: 8888,
            host: "127.0.0.1",
            base_url: "/user/a/x1/",
            workspace: Path::new("/ws/a"),
            token: "t",
            user: "a",
            instance: "x1",
        };
        assert_eq!(
            p.fill("--port={port} {base_url}{workspace}"),
            "--port=8888 /user/a/x1//ws/a"
        );
    }
}
