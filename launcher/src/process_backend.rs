//! Datalabs as processes on this machine: started in their [`Sandbox`], limited by a cgroup
//! (v2) or by rlimits and CPU affinity, found again after a launcher restart by pid and start
//! time, and stopped with everything they started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal};

use crate::sandbox::{Sandbox, SandboxPlan};

/// What to run.
#[derive(Debug)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub plan: SandboxPlan,
    /// cgroup limits: CPU cores and bytes.
    pub cpus: f64,
    pub memory: u64,
    pub instance: String,
}

/// A started process: its pid, and its start time in clock ticks since boot (a later process
/// with the same pid has another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

/// cgroups v2, where the machine has them with the cpu and memory controllers.
#[derive(Debug, Clone)]
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    /// `base` (default `/sys/fs/cgroup/insitu`) made ready for instances, or `None` with the
    /// reason when this machine has no usable cgroups v2 (then rlimits apply).
    pub fn detect(base: Option<&Path>) -> Result<Cgroups, String> {
        let base = base.map_or_else(|| PathBuf::from("/sys/fs/cgroup/insitu"), Path::to_path_buf);
        let parent = base.parent().ok_or("the cgroup folder has no parent")?;
        let controllers = std::fs::read_to_string(parent.join("cgroup.controllers"))
            .map_err(|_| format!("no cgroups v2 at {}", parent.display()))?;
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if !(has("cpu") && has("memory")) {
            return Err(format!(
                "no cpu and memory controllers at {}",
                parent.display()
            ));
        }
        let enable = |dir: &Path| {
            std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory")
                .map_err(|e| format!("{}: cannot enable cpu and memory ({e})", dir.display()))
        };
        enable(parent)?;
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        enable(&base)?;
        Ok(Cgroups { base })
    }

    fn dir(&self, instance: &str) -> PathBuf {
        self.base.join(instance)
    }

    /// The instance's cgroup with its limits, and its `cgroup.procs` open for the child.
    fn create(
        &self,
        instance: &str,
        cpus: f64,
        memory: u64,
    ) -> std::io::Result<std::os::fd::OwnedFd> {
        let dir = self.dir(instance);
        std::fs::create_dir_all(&dir)?;
        let period = 100_000u64;
        std::fs::write(
            dir.join("cpu.max"),
            format!("{} {period}", (cpus * period as f64).ceil() as u64),
        )?;
        std::fs::write(dir.join("memory.max"), memory.to_string())?;
        // Without swap a datalab over its memory is stopped rather than slowed to a crawl.
        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(file.into())
    }

    /// Kills everything in the instance's cgroup and removes it.
    async fn remove(&self, instance: &str) {
        let dir = self.dir(instance);
        if !dir.exists() {
            return;
        }
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        for _ in 0..50 {
            if std::fs::remove_dir(&dir).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!("cannot remove the cgroup {}", dir.display());
    }
}

/// The process backend: cgroups when there are any, else rlimits.
#[derive(Debug, Clone)]
pub struct ProcessBackend {
    pub cgroups: Option<Cgroups>,
}

impl ProcessBackend {
    /// Starts the command in its sandbox; stdout and stderr go to the log file.
    pub fn start(&self, mut launch: Launch) -> std::io::Result<(ProcessId, tokio::process::Child)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)?;
        if let Some(cg) = &self.cgroups {
            launch.plan.cgroup_procs =
                Some(cg.create(&launch.instance, launch.cpus, launch.memory)?);
        } else {
            launch.plan.memory_limit = Some(launch.memory);
            launch.plan.cpus = Some(pinned_cpus(launch.cpus));
        }
        let mut command = tokio::process::Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(false);
        Sandbox::new(launch.plan)?.apply(&mut command);
        let child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the datalab exited at once"))?;
        let start = process_start(pid).unwrap_or(0);
        Ok((ProcessId { pid, start }, child))
    }

    /// Stops the process and everything it started: SIGTERM, up to `grace` to exit, then
    /// SIGKILL (with cgroups, the whole cgroup).
    pub async fn stop(&self, id: Option<ProcessId>, instance: &str, grace: Duration) {
        if let Some(id) = id.filter(|id| alive(*id)) {
            let mut tree = descendants(id.pid);
            signal(id.pid, Signal::TERM);
            let deadline = tokio::time::Instant::now() + grace;
            while alive(id) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Children may have started since, or been left behind by the exit.
            tree.extend(descendants(id.pid));
            tree.push(id.pid);
            for pid in tree {
                signal(pid, Signal::KILL);
            }
            // The session the process led: kernels and helpers that left the tree.
            kill_session(id.pid);
        }
        if let Some(cg) = &self.cgroups {
            cg.remove(instance).await;
        }
    }
}

/// `cpus` cores (rounded up) out of those this process may use, for affinity.
fn pinned_cpus(cpus: f64) -> Vec<usize> {
    let mine: Vec<usize> = rustix::thread::sched_getaffinity(None)
        .map(|set| {
            (0..rustix::thread::CpuSet::MAX_CPU)
                .filter(|&c| set.is_set(c))
                .collect()
        })
        .unwrap_or_default();
    let n = (cpus.ceil() as usize).clamp(1, mine.len().max(1));
    if mine.is_empty() {
        return vec![0];
    }
    mine.into_iter().take(n).collect()
}

fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Fields of `/proc/PID/stat` after the command name: (state, ppid, session, start time).
fn stat(pid: u32) -> Option<(char, u32, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything, ')' included.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let session = fields.get(3)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, session, start))
}

fn process_start(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.3)
}

/// Whether that process still runs (a zombie does not).
pub fn alive(id: ProcessId) -> bool {
    matches!(stat(id.pid), Some((state, _, _, start)) if state != 'Z' && state != 'X' && start == id.start)
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every process below `root`.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| stat(p).map(|s| (p, s.1)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn kill_session(session: u32) {
    for pid in all_pids() {
        if stat(pid).is_some_and(|s| s.2 == session) {
            signal(pid, Signal::KILL);
        }
    }
}

/// A free TCP port on the loopback interface for the next instance.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_limits_are_written_as_cgroups_v2_reads_them() {
        // A stand-in for /sys/fs/cgroup (this test machine has cgroups v1): the files the
        // kernel would offer, as plain files.
        let root = tempfile::tempdir().unwrap();
        assert!(Cgroups::detect(Some(&root.path().join("insitu"))).is_err());
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset io memory pids",
        )
        .unwrap();
        let err = Cgroups::detect(Some(&root.path().join("insitu"))).unwrap_err();
        assert!(err.contains("cpu and memory"), "{err}");
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids",
        )
        .unwrap();
        let cg = Cgroups::detect(Some(&root.path().join("insitu"))).unwrap();
        let subtree =
            std::fs::read_to_string(root.path().join("insitu/cgroup.subtree_control")).unwrap();
        assert_eq!(subtree, "+cpu +memory");
        std::fs::create_dir_all(root.path().join("insitu/i1")).unwrap();
        std::fs::write(root.path().join("insitu/i1/cgroup.procs"), "").unwrap();
        let _procs = cg.create("i1", 1.5, 3 << 30).unwrap();
        let read =
            |f: &str| std::fs::read_to_string(root.path().join("insitu/i1").join(f)).unwrap();
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("memory.max"), (3u64 << 30).to_string());
        assert_eq!(read("memory.swap.max"), "0");
    }

    #[test]
    fn our_own_process_is_alive_and_a_changed_start_time_is_not() {
        let pid = std::process::id();
        let start = process_start(pid).unwrap();
        assert!(alive(ProcessId { pid, start }));
        assert!(!alive(ProcessId {
            pid,
            start: start + 1
        }));
        assert!(!alive(ProcessId {
            pid: u32::MAX - 1,
            start
        }));
        assert!(!pinned_cpus(1.0).is_empty());
        assert_eq!(pinned_cpus(0.5).len(), 1);
    }
}
