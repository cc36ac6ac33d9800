//! The launcher's settings: the `[launcher]` section of `insitu serve`'s TOML file.
//!
//! ```toml
//! [launcher]
//! datalabs = "/etc/insitu/datalabs"      # one manifest per datalab
//! users = "/etc/insitu/users.toml"       # `insitu launcher add-user` writes it
//! workspaces = "/srv/insitu/workspaces"  # users/NAME and teams/NAME, read-write
//! idle_seconds = 3600                    # cull instances idle this long (0: never)
//! cgroup = "/sys/fs/cgroup/insitu"       # cgroups v2 folder for instances (default: this one
//!                                        # when the machine has cgroups v2, else rlimits)
//! [launcher.quotas]                      # per user
//! instances = 2
//! workspace_gb = 100
//! cpus = 16
//! memory_gb = 64
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauncherFile {
    pub datalabs: PathBuf,
    pub users: PathBuf,
    pub workspaces: PathBuf,
    #[serde(default = "default_idle_seconds")]
    pub idle_seconds: u64,
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    #[serde(default)]
    pub quotas: Quotas,
}

fn default_idle_seconds() -> u64 {
    3600
}

/// Per-user limits; a launch over any of them is refused with a message saying which.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Datalabs running (or starting) at the same time.
    pub instances: usize,
    /// Size of the user's own workspace.
    pub workspace_gb: f64,
    /// CPU cores over all the user's instances.
    pub cpus: f64,
    /// Memory over all the user's instances.
    pub memory_gb: f64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            instances: 2,
            workspace_gb: 100.0,
            cpus: 16.0,
            memory_gb: 64.0,
        }
    }
}

impl Quotas {
    pub fn workspace_bytes(&self) -> u64 {
        (self.workspace_gb * 1e9) as u64
    }
    pub fn memory_bytes(&self) -> u64 {
        (self.memory_gb * f64::from(1u32 << 30)) as u64
    }
}

/// Everything the launcher needs, resolved by the server's configuration.
#[derive(Debug, Clone)]
pub struct LauncherConfig {
    pub datalabs: PathBuf,
    pub users: PathBuf,
    pub workspaces: PathBuf,
    /// The launcher's own state (instances, logs): `<server state>/launcher`.
    pub state_dir: PathBuf,
    /// The server's data volumes (name, path): datalabs see them read-only.
    pub volumes: Vec<(String, PathBuf)>,
    pub quotas: Quotas,
    /// `None`: never cull.
    pub idle: Option<Duration>,
    pub cgroup: Option<PathBuf>,
    /// Folders datalabs must not see (the server's state and cache: other users' jobs, the
    /// instances' secrets): covered by an empty tmpfs in their mount namespace.
    pub hidden: Vec<PathBuf>,
}

impl LauncherConfig {
    pub fn new(
        file: LauncherFile,
        state_dir: PathBuf,
        volumes: Vec<(String, PathBuf)>,
        hidden: Vec<PathBuf>,
    ) -> Self {
        LauncherConfig {
            datalabs: file.datalabs,
            users: file.users,
            workspaces: file.workspaces,
            state_dir,
            volumes,
            quotas: file.quotas,
            idle: (file.idle_seconds > 0).then(|| Duration::from_secs(file.idle_seconds)),
            cgroup: file.cgroup,
            hidden,
        }
    }
}
