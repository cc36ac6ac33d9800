//! What a datalab process may see and use, set up between fork and exec: its own session,
//! a private mount namespace with the data volumes bound read-only and the other users'
//! workspaces hidden, resource limits, and the user's uid.
//!
//! Everything that allocates (paths as C strings, `/proc/self/fd/N` names, uid maps) is
//! prepared in the parent by [`Sandbox::new`]; the child only makes system calls.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{CpuSet, UnshareFlags};

/// What to set up, as the parent resolved it.
#[derive(Debug, Default)]
pub struct SandboxPlan {
    /// Folders the process sees read-only (the data volumes).
    pub read_only: Vec<PathBuf>,
    /// Folders covered with an empty tmpfs (the workspace roots, the launcher's state)…
    pub hidden: Vec<PathBuf>,
    /// …except these, bound back in place: (the folder, the hidden folder it sits in).
    pub visible: Vec<PathBuf>,
    /// RLIMIT_AS, when no cgroup limits memory.
    pub memory_limit: Option<u64>,
    /// CPUs the process may run on, when no cgroup limits CPU time.
    pub cpus: Option<Vec<usize>>,
    /// `cgroup.procs` of the instance's cgroup, opened by the parent.
    pub cgroup_procs: Option<OwnedFd>,
    /// Run as this uid and gid (needs the launcher to be root).
    pub uid_gid: Option<(u32, u32)>,
    pub workdir: PathBuf,
}

#[derive(Debug)]
struct ReadOnly {
    path: CString,
    /// The flags the mount already has (nosuid, nodev, noexec …): a remount must keep them,
    /// and inside a user namespace may not drop them.
    keep: MountFlags,
    /// A mount inside a volume: already there through the volume's recursive bind, it only
    /// needs making read-only (a remount does not reach below the mount it is given).
    submount: bool,
}

/// The flags of the mount `path` is on, that a read-only remount of it must keep.
fn mount_flags(path: &Path) -> std::io::Result<MountFlags> {
    use rustix::fs::StatVfsMountFlags as St;
    let stat = rustix::fs::statvfs(path)?;
    let mut keep = MountFlags::empty();
    for (st, ms) in [
        (St::NOSUID, MountFlags::NOSUID),
        (St::NODEV, MountFlags::NODEV),
        (St::NOEXEC, MountFlags::NOEXEC),
        (St::NOATIME, MountFlags::NOATIME),
        (St::NODIRATIME, MountFlags::NODIRATIME),
        (St::RELATIME, MountFlags::RELATIME),
    ] {
        if stat.f_flag.contains(st) {
            keep |= ms;
        }
    }
    Ok(keep)
}

/// Mount points strictly below `dir`, from `/proc/self/mountinfo` (its octal escapes undone).
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let unescape = |field: &str| {
        let bytes = field.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let octal = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
            match octal.and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 4;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        PathBuf::from(std::ffi::OsString::from_vec(out))
    };
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape))
        .filter(|m| m != dir && m.starts_with(dir))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Workspaces bound back at most (the user's own and their teams').
const MAX_VISIBLE: usize = 64;

/// A [`SandboxPlan`] made ready for the child.
#[derive(Debug)]
pub struct Sandbox {
    read_only: Vec<ReadOnly>,
    hidden: Vec<CString>,
    visible: Vec<CString>,
    memory_limit: Option<u64>,
    cpus: Option<CpuSet>,
    cgroup_procs: Option<OwnedFd>,
    uid_gid: Option<(u32, u32)>,
    workdir: CString,
    /// For a launcher that is not root: map its own ids in a user namespace.
    uid_map: CString,
    gid_map: CString,
}

fn c_path(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other(format!("{}: a NUL byte in the path", p.display())))
}

impl Sandbox {
    pub fn new(plan: SandboxPlan) -> std::io::Result<Sandbox> {
        let mut read_only = Vec::new();
        for p in &plan.read_only {
            read_only.push(ReadOnly {
                path: c_path(p)?,
                keep: mount_flags(p)?,
                submount: false,
            });
            for below in mounts_below(p) {
                read_only.push(ReadOnly {
                    path: c_path(&below)?,
                    keep: mount_flags(&below)?,
                    submount: true,
                });
            }
        }
        if plan.visible.len() > MAX_VISIBLE {
            return Err(std::io::Error::other(format!(
                "more than {MAX_VISIBLE} workspaces to show"
            )));
        }
        let mut visible = Vec::new();
        for p in &plan.visible {
            let within_hidden = p
                .parent()
                .is_some_and(|parent| plan.hidden.iter().any(|h| h == parent));
            if !within_hidden {
                return Err(std::io::Error::other(format!(
                    "{}: only a folder directly inside a hidden one can be bound back",
                    p.display()
                )));
            }
            visible.push(c_path(p)?);
        }
        let cpus = plan.cpus.map(|list| {
            let mut set = CpuSet::new();
            for cpu in list {
                set.set(cpu);
            }
            set
        });
        let (uid, gid) = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        Ok(Sandbox {
            read_only,
            hidden: plan
                .hidden
                .iter()
                .map(|p| c_path(p))
                .collect::<Result<_, _>>()?,
            visible,
            memory_limit: plan.memory_limit,
            cpus,
            cgroup_procs: plan.cgroup_procs,
            uid_gid: plan.uid_gid,
            workdir: c_path(&plan.workdir)?,
            uid_map: CString::new(format!("0 {uid} 1")).map_err(std::io::Error::other)?,
            gid_map: CString::new(format!("0 {gid} 1")).map_err(std::io::Error::other)?,
        })
    }

    /// Runs in the child between fork and exec: system calls only, no allocation. A failing
    /// step is named on the child's stderr (the instance's log) before the error goes back.
    fn enter(&self) -> std::io::Result<()> {
        step("setsid", rustix::process::setsid().map(drop))?;
        if let Some(procs) = &self.cgroup_procs {
            // "0" moves the writing process itself.
            step("join the cgroup", rustix::io::write(procs, b"0").map(drop))?;
        }
        self.enter_mount_namespace()?;
        step(
            "make mounts private",
            rustix::mount::mount_change(
                c"/",
                MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
            ),
        )?;
        for ro in &self.read_only {
            if !ro.submount {
                step(
                    "bind a volume",
                    rustix::mount::mount_bind_recursive(ro.path.as_c_str(), ro.path.as_c_str()),
                )?;
            }
            step(
                "make a volume read-only",
                rustix::mount::mount_remount(
                    ro.path.as_c_str(),
                    MountFlags::BIND | MountFlags::RDONLY | ro.keep,
                    c"",
                ),
            )?;
        }
        // Handles on the workspaces to show, taken in this namespace (a mount seen through a
        // handle from another namespace cannot be bound), before the tmpfs hides them.
        let mut handles: [Option<OwnedFd>; MAX_VISIBLE] = [const { None }; MAX_VISIBLE];
        for (handle, dir) in handles.iter_mut().zip(&self.visible) {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            match rustix::fs::open(dir.as_c_str(), flags, Mode::empty()) {
                Ok(fd) => *handle = Some(fd),
                Err(e) => step("open a workspace", Err(e))?,
            }
        }
        for dir in &self.hidden {
            step(
                "hide a folder",
                rustix::mount::mount(
                    c"insitu",
                    dir.as_c_str(),
                    c"tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    c"mode=0755,size=64k",
                ),
            )?;
        }
        for (handle, target) in handles.iter().zip(&self.visible) {
            let Some(fd) = handle else { continue };
            match rustix::fs::mkdir(target.as_c_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => step("make a workspace mount point", Err(e))?,
            }
            let mut name = [0u8; 40];
            let source = proc_fd_path(fd.as_raw_fd(), &mut name);
            step(
                "bind a workspace",
                rustix::mount::mount_bind(source, target.as_c_str()),
            )?;
        }
        if let Some(bytes) = self.memory_limit {
            let limit = Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            };
            step(
                "limit memory",
                rustix::process::setrlimit(Resource::As, limit),
            )?;
        }
        if let Some(set) = &self.cpus {
            step("pin CPUs", rustix::thread::sched_setaffinity(None, set))?;
        }
        step("set no_new_privs", rustix::thread::set_no_new_privs(true))?;
        if let Some((uid, gid)) = self.uid_gid {
            // The child has one thread, so the thread's ids are the process's.
            let (uid, gid) = (
                rustix::process::Uid::from_raw(uid),
                rustix::process::Gid::from_raw(gid),
            );
            step("drop groups", rustix::thread::set_thread_groups(&[]))?;
            step(
                "set the gid",
                rustix::thread::set_thread_res_gid(gid, gid, gid),
            )?;
            step(
                "set the uid",
                rustix::thread::set_thread_res_uid(uid, uid, uid),
            )?;
        }
        step(
            "enter the workspace",
            rustix::process::chdir(self.workdir.as_c_str()),
        )?;
        Ok(())
    }

    /// A mount namespace of our own: directly when the launcher may (root, CAP_SYS_ADMIN),
    /// else inside a new user namespace where it is root over its own ids only.
    fn enter_mount_namespace(&self) -> std::io::Result<()> {
        // SAFETY: the child has one thread, and NEWNS / NEWUSER do not touch file tables.
        match unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) } {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::PERM) => {}
            Err(e) => return step("make a mount namespace", Err(e)),
        }
        // SAFETY: as above.
        let user_ns =
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) };
        step("make a mount namespace", user_ns)?;
        step("map ids", write_file(c"/proc/self/setgroups", b"deny"))?;
        step(
            "map ids",
            write_file(c"/proc/self/uid_map", self.uid_map.as_bytes()),
        )?;
        step(
            "map ids",
            write_file(c"/proc/self/gid_map", self.gid_map.as_bytes()),
        )?;
        Ok(())
    }

    /// Makes `command` start inside this sandbox.
    pub fn apply(self, command: &mut tokio::process::Command) {
        let sandbox = self;
        // SAFETY: `enter` only makes system calls on memory prepared before the fork (no
        // allocation, no locks), which is what a pre-exec hook may do.
        unsafe {
            command.pre_exec(move || sandbox.enter());
        }
    }
}

fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> rustix::io::Result<()> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::io::write(&fd, bytes)?;
    Ok(())
}

/// `/proc/self/fd/N` written into `buffer` (no allocation).
fn proc_fd_path(fd: i32, buffer: &mut [u8; 40]) -> &std::ffi::CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buffer[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 12];
    let (mut n, mut len) = (fd.unsigned_abs(), 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buffer[PREFIX.len() + i] = digits[len - 1 - i];
    }
    buffer[PREFIX.len() + len] = 0;
    std::ffi::CStr::from_bytes_until_nul(&buffer[..]).unwrap_or(c"/proc/self/fd/")
}

/// The result of one sandbox step; a failure is named on stderr (no allocation: the child
/// between fork and exec may not).
fn step(what: &str, result: rustix::io::Result<()>) -> std::io::Result<()> {
    result.map_err(|e| {
        let stderr = rustix::stdio::stderr();
        let _ = rustix::io::write(stderr, b"insitu sandbox: cannot ");
        let _ = rustix::io::write(stderr, what.as_bytes());
        let _ = rustix::io::write(stderr, b"\n");
        e.into()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn mounts_below_a_folder() {
        // /proc is a mount point with mounts below it on every Linux machine.
        let below = super::mounts_below(std::path::Path::new("/proc"));
        assert!(below
            .iter()
            .all(|m| m.starts_with("/proc") && m != std::path::Path::new("/proc")));
        assert!(super::mounts_below(std::path::Path::new("/proc/self/fd")).is_empty());
        let root = super::mounts_below(std::path::Path::new("/"));
        assert!(
            root.iter().any(|m| m == std::path::Path::new("/proc")),
            "{root:?}"
        );
    }

    #[test]
    fn proc_fd_paths() {
        let mut buffer = [0u8; 40];
        assert_eq!(super::proc_fd_path(7, &mut buffer), c"/proc/self/fd/7");
        assert_eq!(
            super::proc_fd_path(1234567, &mut buffer),
            c"/proc/self/fd/1234567"
        );
        assert_eq!(super::proc_fd_path(0, &mut buffer), c"/proc/self/fd/0");
    }
}
