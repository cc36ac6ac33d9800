//! Instances: launched under quotas, persisted in `<state>/instances.json`, re-adopted (or
//! cleaned up) when the launcher starts again, watched until healthy, culled when idle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::LauncherConfig;
use crate::manifest::{self, gib, Manifest, ManifestProblem, Placeholders};
use crate::process_backend::{self, Cgroups, Launch, ProcessBackend, ProcessId};
use crate::sandbox::SandboxPlan;
use crate::users::{self, User, Users};
use crate::workspaces::{self, Kind, Workspaces};
use crate::Error;

/// How long a stopping datalab has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the launcher keeps of an instance across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub user: String,
    pub datalab: String,
    pub title: String,
    pub port: u16,
    /// The instance's secret: the proxy authenticates to the datalab with it.
    pub token: String,
    pub authorization: Option<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub health: String,
    /// Seconds it has to become healthy.
    #[serde(default = "default_start_seconds")]
    pub start_seconds: u64,
    pub process: Option<ProcessId>,
    pub created_unix: u64,
    pub cpus: f64,
    pub memory: u64,
}

fn default_start_seconds() -> u64 {
    60
}

impl Record {
    pub fn base_url(&self) -> String {
        format!("/user/{}/{}/", self.user, self.id)
    }

    /// The path the instance itself serves `base_url() + rest` at.
    pub fn upstream_path(&self, rest: &str) -> String {
        if self.strip_prefix {
            format!("/{rest}")
        } else {
            format!("{}{rest}", self.base_url())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    Stopping,
    Failed,
}

#[derive(Debug)]
struct Live {
    record: Record,
    state: State,
    message: Option<String>,
    last_activity: Instant,
    /// Since when it is `Starting` (launched, or adopted after a restart).
    starting_since: Instant,
    websockets: usize,
}

impl Live {
    /// Just launched, or adopted after a restart: up once its health path answers.
    fn starting(record: Record) -> Live {
        Live {
            record,
            state: State::Starting,
            message: None,
            last_activity: Instant::now(),
            starting_since: Instant::now(),
            websockets: 0,
        }
    }
}

/// An instance as the API shows it to its owner.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub id: String,
    pub user: String,
    pub datalab: String,
    pub title: String,
    pub state: State,
    pub url: String,
    pub created_unix: u64,
    pub idle_seconds: u64,
    pub cpus: f64,
    pub memory_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where the proxy sends a request for an instance.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub port: u16,
    pub authorization: Option<String>,
    /// The prefix the instance does not know about, removed from request paths.
    pub strip: Option<String>,
}

/// The launcher: datalabs, users, workspaces and the instances they run.
#[derive(Debug)]
pub struct Launcher {
    pub config: LauncherConfig,
    pub users: Users,
    pub workspaces: Workspaces,
    backend: ProcessBackend,
    instances: Mutex<BTreeMap<String, Live>>,
    /// One line on how instances are limited and isolated, for the log and the page.
    pub isolation: String,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Launcher {
    /// Opens the launcher: checks its folders, re-adopts the instances of the last run that
    /// still run and cleans up the others, and starts the watcher (health, exits, culling).
    pub async fn open(config: LauncherConfig) -> Result<Arc<Launcher>, Error> {
        let io = |context: String| move |source| Error::Io { context, source };
        std::fs::create_dir_all(config.state_dir.join("logs"))
            .map_err(io(format!("launcher state {}", config.state_dir.display())))?;
        std::fs::create_dir_all(&config.workspaces)
            .map_err(io(format!("workspaces {}", config.workspaces.display())))?;
        for (name, path) in &config.volumes {
            if inside(&config.workspaces, path) || inside(path, &config.workspaces) {
                return Err(Error::Config(format!(
                    "workspaces {} and volume {name} ({}) overlap: workspaces are writable, \
                     volumes never",
                    config.workspaces.display(),
                    path.display()
                )));
            }
        }
        let users = Users::open(&config.users)?;
        let (cgroups, isolation) = match Cgroups::detect(config.cgroup.as_deref()) {
            Ok(cg) => (Some(cg), "cgroups v2 (cpu.max, memory.max)".to_string()),
            Err(why) => (None, format!("rlimits and CPU affinity ({why})")),
        };
        let isolation = format!(
            "{isolation}; a private mount namespace per datalab (volumes read-only); {}",
            if rustix::process::geteuid().is_root() {
                "as root"
            } else {
                "in a user namespace (launcher not root)"
            }
        );
        tracing::info!("datalab launcher: {isolation}");
        let launcher = Arc::new(Launcher {
            workspaces: Workspaces {
                root: config.workspaces.clone(),
            },
            config,
            users,
            backend: ProcessBackend { cgroups },
            instances: Mutex::new(BTreeMap::new()),
            isolation,
        });
        launcher.adopt().await;
        let (manifests, problems) = launcher.datalabs();
        for p in &problems {
            tracing::warn!("datalab manifest: {p}");
        }
        tracing::info!(
            "{} datalab(s) from {}",
            manifests.len(),
            launcher.config.datalabs.display()
        );
        tokio::spawn(watch(Arc::downgrade(&launcher)));
        Ok(launcher)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Live>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The manifests as the folder holds them now (read at each call: a new datalab needs no
    /// restart), and the problems of those that do not load.
    pub fn datalabs(&self) -> (Vec<Manifest>, Vec<ManifestProblem>) {
        let names: Vec<String> = self.config.volumes.iter().map(|(n, _)| n.clone()).collect();
        manifest::load_folder(&self.config.datalabs, &names)
    }

    /// The user holding this bearer token.
    pub fn authenticate(&self, token: &str) -> Result<User, Error> {
        self.users
            .current()?
            .by_token(token)
            .cloned()
            .ok_or_else(|| Error::Unauthorized("unknown token".into()))
    }

    /// Instances of the last run: those whose process still runs are adopted, the others
    /// cleaned up.
    async fn adopt(&self) {
        let file = self.config.state_dir.join("instances.json");
        let records: Vec<Record> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: unreadable ({e}); starting with no instance",
                    file.display()
                );
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        for record in records {
            if record.process.is_some_and(process_backend::alive) {
                tracing::info!(
                    "re-adopted instance {} ({} of {})",
                    record.id,
                    record.datalab,
                    record.user
                );
                self.lock()
                    .insert(record.id.clone(), Live::starting(record));
            } else {
                tracing::info!(
                    "instance {} of {} ended while the launcher was away: cleaned up",
                    record.id,
                    record.user
                );
                self.backend.stop(None, &record.id, STOP_GRACE).await;
            }
        }
        self.persist();
    }

    /// Writes the instances (under a temporary name, then renamed: never half a file).
    fn persist(&self) {
        let records: Vec<Record> = self
            .lock()
            .values()
            .filter(|l| l.state != State::Failed)
            .map(|l| l.record.clone())
            .collect();
        let file = self.config.state_dir.join("instances.json");
        let tmp = file.with_extension("json.tmp");
        let result = serde_json::to_vec_pretty(&records)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                // The instances' secrets are in it: for the launcher's user only.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?
                    .write_all(&bytes)
            })
            .and_then(|()| std::fs::rename(&tmp, &file));
        if let Err(e) = result {
            tracing::error!("cannot save the instances to {}: {e}", file.display());
        }
    }

    fn view(live: &Live) -> View {
        let r = &live.record;
        View {
            id: r.id.clone(),
            user: r.user.clone(),
            datalab: r.datalab.clone(),
            title: r.title.clone(),
            state: live.state,
            url: r.base_url(),
            created_unix: r.created_unix,
            idle_seconds: live.last_activity.elapsed().as_secs(),
            cpus: r.cpus,
            memory_bytes: r.memory,
            message: live.message.clone(),
        }
    }

    /// The user's instances.
    pub fn instances_of(&self, user: &str) -> Vec<View> {
        self.lock()
            .values()
            .filter(|l| l.record.user == user)
            .map(Self::view)
            .collect()
    }

    /// One of the user's instances; another user's is "not found", as if it did not exist.
    pub fn instance(&self, user: &str, id: &str) -> Result<View, Error> {
        self.lock()
            .get(id)
            .filter(|l| l.record.user == user)
            .map(Self::view)
            .ok_or_else(|| Error::NotFound(format!("no instance {id}")))
    }

    /// Launches datalab `name` for `user`, under the quotas; answers at once with the instance
    /// starting (its health is polled in the background).
    pub async fn launch(self: &Arc<Self>, user: &User, name: &str) -> Result<View, Error> {
        let (manifests, problems) = self.datalabs();
        let Some(m) = manifests.into_iter().find(|m| m.name == name) else {
            if let Some(p) = problems
                .iter()
                .find(|p| p.file.file_stem().is_some_and(|s| s == name))
            {
                return Err(Error::NotFound(format!(
                    "datalab {name} is unavailable: {p}"
                )));
            }
            return Err(Error::NotFound(format!("no datalab named {name}")));
        };
        let quotas = &self.config.quotas;
        let (cpus, memory) = (m.resources.cpus, m.memory_bytes());
        {
            let instances = self.lock();
            let mine: Vec<&Live> = instances
                .values()
                .filter(|l| l.record.user == user.name && l.state != State::Failed)
                .collect();
            if mine.len() >= quotas.instances {
                return Err(Error::Quota(format!(
                    "{} already runs {} of {} datalabs at a time; stop one first",
                    user.name,
                    mine.len(),
                    quotas.instances
                )));
            }
            let used_cpus: f64 = mine.iter().map(|l| l.record.cpus).sum();
            if used_cpus + cpus > quotas.cpus + 1e-9 {
                return Err(Error::Quota(format!(
                    "{name} needs {cpus} CPUs; {} uses {used_cpus} of {}",
                    user.name, quotas.cpus
                )));
            }
            let used_memory: u64 = mine.iter().map(|l| l.record.memory).sum();
            if used_memory + memory > quotas.memory_bytes() {
                return Err(Error::Quota(format!(
                    "{name} needs {}; {} uses {} of {}",
                    gib(memory),
                    user.name,
                    gib(used_memory),
                    gib(quotas.memory_bytes())
                )));
            }
        }
        let ws = self.workspaces.clone();
        let owner = user.clone();
        let (own, used) = tokio::task::spawn_blocking(move || {
            ws.prepare(&owner).map(|own| {
                let used = workspaces::size_on_disk(&own);
                (own, used)
            })
        })
        .await
        .map_err(|e| Error::Start(format!("workspace check stopped: {e}")))??;
        if used >= quotas.workspace_bytes() {
            return Err(Error::Quota(format!(
                "the workspace of {} holds {:.1} GB of its {} GB: free some space first",
                user.name,
                used as f64 / 1e9,
                quotas.workspace_gb
            )));
        }
        let id = users::new_secret().map_err(|e| Error::Start(format!("no random source: {e}")))?
            [..12]
            .to_string();
        let token =
            users::new_secret().map_err(|e| Error::Start(format!("no random source: {e}")))?;
        let port =
            process_backend::free_port().map_err(|e| Error::Start(format!("no free port: {e}")))?;
        let record = Record {
            id: id.clone(),
            user: user.name.clone(),
            datalab: m.name.clone(),
            title: m.title.clone(),
            port,
            token: token.clone(),
            authorization: None,
            strip_prefix: m.proxy.strip_prefix,
            health: m.health.clone(),
            start_seconds: m.start_seconds,
            process: None,
            created_unix: now_unix(),
            cpus,
            memory,
        };
        let base_url = record.base_url();
        let fill = Placeholders {
            port,
            host: "127.0.0.1",
            base_url: &base_url,
            workspace: &own,
            token: &token,
            user: &user.name,
            instance: &id,
        };
        let record = Record {
            authorization: m.proxy.authorization.as_deref().map(|a| fill.fill(a)),
            ..record
        };
        let launch = self.launch_spec(&m, user, &own, &fill)?;
        // Counted from here on, so two launches at once cannot both pass the quota.
        {
            let mut instances = self.lock();
            let active = instances
                .values()
                .filter(|l| l.record.user == user.name && l.state != State::Failed)
                .count();
            if active >= quotas.instances {
                return Err(Error::Quota(format!(
                    "{} already runs {active} of {} datalabs at a time; stop one first",
                    user.name, quotas.instances
                )));
            }
            instances.insert(id.clone(), Live::starting(record));
        }
        match self.backend.start(launch) {
            Ok((process, child)) => {
                if let Some(l) = self.lock().get_mut(&id) {
                    l.record.process = Some(process);
                }
                self.persist();
                tracing::info!(
                    "launched {} for {} as instance {id} (pid {}, port {port})",
                    m.name,
                    user.name,
                    process.pid
                );
                tokio::spawn(reap(Arc::downgrade(self), id.clone(), child));
                self.instance(&user.name, &id)
            }
            Err(e) => {
                self.lock().remove(&id);
                self.backend.stop(None, &id, STOP_GRACE).await;
                Err(Error::Start(format!("{} could not start: {e}", m.name)))
            }
        }
    }

    /// The command, environment and sandbox of one instance.
    fn launch_spec(
        &self,
        m: &Manifest,
        user: &User,
        own: &std::path::Path,
        fill: &Placeholders,
    ) -> Result<Launch, Error> {
        let volumes = m.mounted_volumes(&self.config.volumes);
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for key in ["PATH", "LANG", "TZ"] {
            if let Some(v) = std::env::var_os(key) {
                env.insert(key.into(), v.to_string_lossy().into_owned());
            }
        }
        env.insert("HOME".into(), own.to_string_lossy().into_owned());
        env.insert("USER".into(), user.name.clone());
        env.insert("INSITU_INSTANCE".into(), fill.instance.to_string());
        env.insert("INSITU_BASE_URL".into(), fill.base_url.to_string());
        for (name, path) in &volumes {
            env.insert(
                format!(
                    "INSITU_VOLUME_{}",
                    name.to_ascii_uppercase().replace('-', "_")
                ),
                path.to_string_lossy().into_owned(),
            );
        }
        for (k, v) in &m.env {
            env.insert(k.clone(), fill.fill(v));
        }
        let root = &self.config.workspaces;
        let mut visible = vec![own.to_path_buf()];
        visible.extend(
            user.teams
                .iter()
                .map(|t| self.workspaces.dir(Kind::Team, t)),
        );
        let mut hidden = vec![
            root.join(Kind::User.folder()),
            root.join(Kind::Team.folder()),
        ];
        hidden.extend(
            self.config
                .hidden
                .iter()
                .filter(|h| {
                    h.is_dir() && !inside(root, h) && !volumes.iter().any(|(_, v)| inside(v, h))
                })
                .cloned(),
        );
        let uid_gid = user.uid.map(|uid| (uid, user.gid.unwrap_or(uid)));
        if uid_gid.is_some() && !rustix::process::geteuid().is_root() {
            return Err(Error::Start(format!(
                "{} has a uid set, but the launcher is not root",
                user.name
            )));
        }
        Ok(Launch {
            program: fill.fill(&m.command),
            args: m.args.iter().map(|a| fill.fill(a)).collect(),
            env: env.into_iter().collect(),
            log: self.log_file(fill.instance),
            plan: SandboxPlan {
                read_only: volumes.iter().map(|(_, p)| p.clone()).collect(),
                hidden,
                visible,
                uid_gid,
                workdir: own.to_path_buf(),
                ..SandboxPlan::default()
            },
            cpus: m.resources.cpus,
            memory: m.memory_bytes(),
            instance: fill.instance.to_string(),
        })
    }

    fn log_file(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("logs").join(format!("{id}.log"))
    }

    /// Stops one of the user's instances and waits until its processes are gone.
    pub async fn stop(&self, user: &str, id: &str) -> Result<(), Error> {
        let process = {
            let mut instances = self.lock();
            let live = instances
                .get_mut(id)
                .filter(|l| l.record.user == user)
                .ok_or_else(|| Error::NotFound(format!("no instance {id}")))?;
            live.state = State::Stopping;
            live.record.process
        };
        self.backend.stop(process, id, STOP_GRACE).await;
        self.lock().remove(id);
        self.persist();
        tracing::info!("stopped instance {id} of {user}");
        Ok(())
    }

    /// The upstream of `user`'s instance `id`, marking it active; `None` when there is no
    /// such instance of that user, or it is not up.
    pub fn upstream(&self, user: &str, id: &str) -> Result<Upstream, Error> {
        let mut instances = self.lock();
        let live = instances
            .get_mut(id)
            .filter(|l| l.record.user == user)
            .ok_or_else(|| Error::NotFound(format!("no instance {id}")))?;
        match live.state {
            State::Running | State::Starting => {}
            State::Stopping => {
                return Err(Error::Unavailable(format!("instance {id} is stopping")))
            }
            State::Failed => {
                return Err(Error::Unavailable(format!(
                    "instance {id} failed: {}",
                    live.message.as_deref().unwrap_or("")
                )))
            }
        }
        live.last_activity = Instant::now();
        Ok(Upstream {
            port: live.record.port,
            authorization: live.record.authorization.clone(),
            strip: live
                .record
                .strip_prefix
                .then(|| live.record.base_url().trim_end_matches('/').to_string()),
        })
    }

    /// A WebSocket through the proxy opened (`true`) or closed: an instance with one open is
    /// not idle.
    pub fn websocket(&self, id: &str, open: bool) {
        if let Some(l) = self.lock().get_mut(id) {
            l.websockets = if open {
                l.websockets + 1
            } else {
                l.websockets.saturating_sub(1)
            };
            l.last_activity = Instant::now();
        }
    }

    /// The user's workspaces with their sizes.
    pub fn workspaces_of(&self, user: &User) -> Vec<WorkspaceView> {
        let mut list = vec![(Kind::User, user.name.clone())];
        list.extend(user.teams.iter().map(|t| (Kind::Team, t.clone())));
        list.into_iter()
            .map(|(kind, name)| {
                let dir = self.workspaces.dir(kind, &name);
                WorkspaceView {
                    kind: kind.folder(),
                    bytes: workspaces::size_on_disk(&dir),
                    quota_bytes: (kind == Kind::User).then(|| self.config.quotas.workspace_bytes()),
                    url: format!("/workspaces/{}/{name}/", kind.folder()),
                    name,
                }
            })
            .collect()
    }

    /// One pass of the watcher: health of starting instances, exits, idle culling.
    async fn tick(self: &Arc<Self>) {
        let mut health = Vec::new();
        let mut cull = Vec::new();
        let mut changed = false;
        {
            let mut instances = self.lock();
            for live in instances.values_mut() {
                let gone = live
                    .record
                    .process
                    .is_some_and(|p| !process_backend::alive(p));
                if gone && matches!(live.state, State::Starting | State::Running) {
                    live.state = State::Failed;
                    let tail = log_tail(&self.log_file(&live.record.id));
                    live.message = Some(format!(
                        "the datalab exited{}",
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {tail}")
                        }
                    ));
                    tracing::warn!("instance {} of {} exited", live.record.id, live.record.user);
                    changed = true;
                }
                if live.state == State::Starting {
                    health.push((live.record.clone(), live.starting_since.elapsed()));
                }
                if let Some(idle) = self.config.idle {
                    if live.state == State::Running
                        && live.websockets == 0
                        && live.last_activity.elapsed() >= idle
                    {
                        cull.push((live.record.user.clone(), live.record.id.clone()));
                    }
                }
            }
        }
        if changed {
            self.persist();
        }
        for (record, starting_for) in health {
            let path = record.upstream_path(&record.health);
            if crate::proxy::healthy(record.port, &path, record.authorization.as_deref()).await {
                if let Some(l) = self.lock().get_mut(&record.id) {
                    if l.state == State::Starting {
                        l.state = State::Running;
                        l.last_activity = Instant::now();
                        tracing::info!("instance {} of {} is up", record.id, record.user);
                    }
                }
            } else {
                let limit = record.start_seconds;
                if starting_for.as_secs() > limit {
                    tracing::warn!(
                        "instance {} of {} did not answer in {limit} s: stopped",
                        record.id,
                        record.user
                    );
                    // Stopping while it is stopped, so that its exit is not taken for a crash.
                    match self.lock().get_mut(&record.id) {
                        Some(l) if l.state == State::Starting => l.state = State::Stopping,
                        _ => continue,
                    }
                    self.backend
                        .stop(record.process, &record.id, STOP_GRACE)
                        .await;
                    if let Some(l) = self.lock().get_mut(&record.id) {
                        l.state = State::Failed;
                        l.message = Some(format!(
                            "{} did not answer at {path} within {limit} s",
                            record.datalab
                        ));
                    }
                    self.persist();
                }
            }
        }
        for (user, id) in cull {
            tracing::info!("instance {id} of {user} idle: culled");
            let _ = self.stop(&user, &id).await;
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WorkspaceView {
    pub kind: &'static str,
    pub name: String,
    pub bytes: u64,
    pub quota_bytes: Option<u64>,
    pub url: String,
}

/// Whether `path` is `folder` or inside it (by their canonical forms where they exist).
fn inside(path: &std::path::Path, folder: &std::path::Path) -> bool {
    let canon = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canon(path).starts_with(canon(folder))
}

/// The last lines of an instance's log, for the message of a failed start.
fn log_tail(file: &std::path::Path) -> String {
    let text = std::fs::read(file).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(600)..]).into_owned();
    text.lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Waits for a child the launcher started, so it leaves no zombie.
async fn reap(launcher: std::sync::Weak<Launcher>, id: String, mut child: tokio::process::Child) {
    let status = child.wait().await;
    if let Some(l) = launcher.upgrade() {
        tracing::debug!("instance {id}: process ended ({status:?})");
        l.tick().await;
    }
}

/// Runs the watcher every second, for as long as the launcher lives.
async fn watch(launcher: std::sync::Weak<Launcher>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(l) = launcher.upgrade() else { return };
        l.tick().await;
    }
}
