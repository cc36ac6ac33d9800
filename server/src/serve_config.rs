//! What `insitu serve` serves and its limits: from the command line, or a TOML file with the
//! same content (command-line flags win), e.g.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! base_url = "https://datalab.example.org/insitu"   # as clients see it, behind a proxy
//! cache_dir = "/var/cache/insitu"                    # HEALPix indexes, demo data
//! state_dir = "/var/lib/insitu"                      # async jobs and their results
//!
//! [tables]
//! "euclid.mer_catalogue" = "/data/euclid/q1/MER/catalogue.fits"
//! "gaia.dr3" = "/data/gaia/dr3.parquet"
//!
//! [volumes]
//! euclid_q1 = "/data/euclid/q1"
//!
//! [limits]
//! default_maxrec = 100000
//! hard_maxrec = 10000000
//! sync_seconds = 60
//! async_seconds = 3600
//! async_seconds_max = 21600
//! async_workers = 2
//! retention_days = 7
//! upload_bytes = 67108864
//! upload_rows = 1000000
//! upload_urls = true                                 # fetch UPLOAD=name,http://… tables
//!
//! [launcher]                                         # datalabs (see insitu_launcher::config)
//! datalabs = "/etc/insitu/datalabs"
//! users = "/etc/insitu/users.toml"
//! workspaces = "/srv/insitu/workspaces"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::tap::upload::UploadLimits;
use crate::tap::TapConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<String>,
    pub base_url: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub tables: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub volumes: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub limits: Limits,
    pub launcher: Option<insitu_launcher::LauncherFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub default_maxrec: usize,
    pub hard_maxrec: usize,
    pub sync_seconds: u64,
    pub async_seconds: u64,
    pub async_seconds_max: u64,
    pub async_workers: usize,
    pub retention_days: u64,
    pub upload_bytes: usize,
    pub upload_rows: usize,
    /// Fetch `UPLOAD=name,http://…` tables (TAP 1.1 asks for it; turn off where the service
    /// must not reach other hosts).
    pub upload_urls: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_maxrec: 100_000,
            hard_maxrec: 10_000_000,
            sync_seconds: 60,
            async_seconds: 3600,
            async_seconds_max: 6 * 3600,
            async_workers: 2,
            retention_days: 7,
            upload_bytes: 64 << 20,
            upload_rows: 1_000_000,
            upload_urls: true,
        }
    }
}

/// Everything `insitu serve` needs, resolved.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: String,
    pub tables: Vec<(String, PathBuf)>,
    pub volumes: Vec<(String, PathBuf)>,
    pub cache_dir: PathBuf,
    pub state_dir: PathBuf,
    pub tap: TapConfig,
    pub async_workers: usize,
    /// No table and no volume given: serve the demo tables.
    pub demo: bool,
    /// The datalab launcher, when the file has a `[launcher]` section.
    pub launcher: Option<insitu_launcher::LauncherFile>,
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str::<ServeFile>(&text).with_context(|| {
                    format!("{}: not a valid insitu configuration", path.display())
                })?
            }
            None => ServeFile::default(),
        };
        let mut tables: Vec<(String, PathBuf)> = file.tables.into_iter().collect();
        for spec in &args.tables {
            let (name, path) = spec
                .split_once('=')
                .with_context(|| format!("--table {spec:?}: expected SCHEMA.TABLE=PATH"))?;
            tables.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            tables.push((name.to_string(), PathBuf::from(path)));
        }
        let mut volumes: Vec<(String, PathBuf)> = file.volumes.into_iter().collect();
        add_volume_flags(&mut volumes, &args.volumes)?;
        for (name, path) in &volumes {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                bail!("volume name {name:?}: a letter then letters, digits, '_' or '-'");
            }
            if !path.is_dir() {
                bail!("volume {name}: {} is not a folder", path.display());
            }
        }
        let cache_dir = args
            .cache_dir
            .clone()
            .or(file.cache_dir)
            .or_else(insitu_adql::spatial_index::IndexCache::default_dir)
            .context("no cache folder: give --cache-dir (or set INSITU_CACHE_DIR or HOME)")?;
        let state_dir = args
            .state_dir
            .clone()
            .or(file.state_dir)
            .or_else(default_state_dir)
            .context("no state folder: give --state-dir (or set INSITU_STATE_DIR or HOME)")?;
        for (name, path) in &volumes {
            if inside(&cache_dir, path) || inside(&state_dir, path) {
                bail!(
                    "volume {name} ({}) holds the cache or state folder: insitu never writes \
                     into a data volume",
                    path.display()
                );
            }
        }
        let l = file.limits;
        if l.async_workers == 0 || l.hard_maxrec == 0 || l.sync_seconds == 0 || l.async_seconds == 0
        {
            bail!("limits: async_workers, hard_maxrec, sync_seconds and async_seconds must be > 0");
        }
        let tap = TapConfig {
            default_maxrec: l.default_maxrec.min(l.hard_maxrec),
            hard_maxrec: l.hard_maxrec,
            base_url: args.base_url.clone().or(file.base_url),
            sync_timeout: Duration::from_secs(l.sync_seconds),
            upload: UploadLimits {
                max_bytes: l.upload_bytes,
                max_rows: l.upload_rows,
                urls: l.upload_urls,
            },
            async_timeout: Duration::from_secs(l.async_seconds),
            async_timeout_max: Duration::from_secs(l.async_seconds_max.max(l.async_seconds)),
            retention: Duration::from_secs(l.retention_days.saturating_mul(86_400)),
        };
        Ok(ServeConfig {
            listen: args
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            demo: tables.is_empty() && volumes.is_empty(),
            tables,
            volumes,
            cache_dir,
            state_dir,
            tap,
            async_workers: args.workers.unwrap_or(l.async_workers).max(1),
            launcher: file.launcher,
        })
    }
}

/// `--volume NAME=PATH` flags added to `volumes` (a flag replaces a volume of the same name).
pub fn add_volume_flags(
    volumes: &mut Vec<(String, PathBuf)>,
    specs: &[String],
) -> anyhow::Result<()> {
    for spec in specs {
        let (name, path) = spec
            .split_once('=')
            .with_context(|| format!("--volume {spec:?}: expected NAME=PATH"))?;
        volumes.retain(|(n, _)| n != name);
        volumes.push((name.to_string(), PathBuf::from(path)));
    }
    Ok(())
}

/// $INSITU_STATE_DIR, else $XDG_STATE_HOME/insitu, else ~/.local/state/insitu.
fn default_state_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("INSITU_STATE_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("insitu")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/insitu")))
}

/// Whether `path` is `folder` or inside it (by their canonical forms where they exist).
fn inside(path: &Path, folder: &Path) -> bool {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canon(path).starts_with(canon(folder))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn toml_file_with_every_section() {
        let text = r#"
            listen = "0.0.0.0:9000"
            [tables]
            "euclid.mer" = "/data/mer.fits"
            [volumes]
            q1 = "/data/q1"
            [limits]
            hard_maxrec = 50
            async_workers = 3
        "#;
        let f: ServeFile = toml::from_str(text).unwrap();
        assert_eq!(f.listen.as_deref(), Some("0.0.0.0:9000"));
        assert_eq!(f.tables["euclid.mer"], PathBuf::from("/data/mer.fits"));
        assert_eq!(f.volumes["q1"], PathBuf::from("/data/q1"));
        assert_eq!((f.limits.hard_maxrec, f.limits.async_workers), (50, 3));
        assert_eq!(f.limits.sync_seconds, Limits::default().sync_seconds);
        let err = toml::from_str::<ServeFile>("lisen = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }
}
