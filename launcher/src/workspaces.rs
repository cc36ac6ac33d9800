//! Workspaces on disk: `users/NAME` (the user's own) and `teams/NAME` (shared by the team's
//! members) under one root; sizes for the quota, and files read for their owners only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::users::User;
use crate::Error;

#[derive(Debug, Clone)]
pub struct Workspaces {
    pub root: PathBuf,
}

/// Which workspace: a user's own or a team's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Team,
}

impl Kind {
    pub fn folder(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Team => "teams",
        }
    }
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "users" => Some(Kind::User),
            "teams" => Some(Kind::Team),
            _ => None,
        }
    }
}

impl Workspaces {
    pub fn dir(&self, kind: Kind, name: &str) -> PathBuf {
        self.root.join(kind.folder()).join(name)
    }

    /// Whether `user` may read and write that workspace.
    pub fn allowed(user: &User, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::User => user.name == name,
            Kind::Team => user.teams.iter().any(|t| t == name),
        }
    }

    /// Creates the user's workspace and those of their teams (owned by the user's uid when
    /// one is set), with `teams/TEAM` links in the user's own; returns the user's folder.
    pub fn prepare(&self, user: &User) -> Result<PathBuf, Error> {
        let io = |path: &Path, e: std::io::Error| Error::Io {
            context: format!("workspace {}", path.display()),
            source: e,
        };
        for kind in [Kind::User, Kind::Team] {
            let dir = self.root.join(kind.folder());
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        let own = self.dir(Kind::User, &user.name);
        if !own.is_dir() {
            std::fs::create_dir(&own).map_err(|e| io(&own, e))?;
            std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io(&own, e))?;
            if let Some(uid) = user.uid {
                std::os::unix::fs::chown(&own, Some(uid), user.gid).map_err(|e| io(&own, e))?;
            }
        }
        for team in &user.teams {
            let dir = self.dir(Kind::Team, team);
            if !dir.is_dir() {
                std::fs::create_dir(&dir).map_err(|e| io(&dir, e))?;
                // Members may run as different uids: the team folder is open to the group
                // and the sandbox hides it from everybody else.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2777))
                    .map_err(|e| io(&dir, e))?;
            }
            let links = own.join("teams");
            std::fs::create_dir_all(&links).map_err(|e| io(&links, e))?;
            let link = links.join(team);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(&dir, &link).map_err(|e| io(&link, e))?;
            }
        }
        Ok(own)
    }

    /// `rel` inside that workspace: no `..`, no absolute path, and no symbolic link that leads
    /// out of it.
    pub fn resolve(&self, kind: Kind, name: &str, rel: &str) -> Result<PathBuf, Error> {
        let base = self.dir(kind, name);
        let rel = Path::new(rel.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(Error::NotFound(format!("{}: no such file", rel.display())));
        }
        let path = base.join(rel);
        let (Ok(real), Ok(real_base)) = (path.canonicalize(), base.canonicalize()) else {
            return Err(Error::NotFound(format!("{}: no such file", rel.display())));
        };
        if !real.starts_with(&real_base) {
            return Err(Error::NotFound(format!("{}: no such file", rel.display())));
        }
        Ok(real)
    }
}

/// Bytes in a folder tree (symbolic links not followed; block usage, as `du`, so sparse files
/// count for what they hold).
pub fn size_on_disk(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user(name: &str, teams: &[&str]) -> User {
        User {
            name: name.into(),
            token_sha256: "0".repeat(64),
            teams: teams.iter().map(|t| t.to_string()).collect(),
            uid: None,
            gid: None,
        }
    }

    #[test]
    fn paths_stay_inside_their_workspace() {
        let root = tempfile::tempdir().unwrap();
        let ws = Workspaces {
            root: root.path().into(),
        };
        let alice = ws.prepare(&user("alice", &["wl"])).unwrap();
        ws.prepare(&user("bob", &[])).unwrap();
        std::fs::write(alice.join("notes.txt"), "hi").unwrap();
        std::fs::write(ws.dir(Kind::User, "bob").join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(ws.dir(Kind::User, "bob"), alice.join("bob")).unwrap();
        assert!(ws.resolve(Kind::User, "alice", "notes.txt").is_ok());
        assert!(ws.resolve(Kind::User, "alice", "/notes.txt").is_ok());
        for bad in [
            "../bob/secret",
            "bob/secret",
            "teams/wl/../../../bob/secret",
            "missing",
        ] {
            assert!(ws.resolve(Kind::User, "alice", bad).is_err(), "{bad}");
        }
        assert!(alice.join("teams/wl").is_dir());
        assert!(Workspaces::allowed(
            &user("alice", &["wl"]),
            Kind::Team,
            "wl"
        ));
        assert!(!Workspaces::allowed(&user("bob", &[]), Kind::Team, "wl"));
        assert!(!Workspaces::allowed(&user("bob", &[]), Kind::User, "alice"));
        std::fs::write(alice.join("big"), vec![1u8; 1 << 20]).unwrap();
        let size = size_on_disk(&alice);
        assert!((1 << 20..2 << 20).contains(&size), "{size}");
    }
}
