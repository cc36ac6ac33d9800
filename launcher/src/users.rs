//! Users, their teams and bearer tokens, from a TOML users file that keeps only each
//! token's SHA-256:
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! token_sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
//! teams = ["euclid-wl"]
//! uid = 10001            # optional: run alice's datalabs as this uid/gid (launcher as root)
//! gid = 10001
//! ```
//!
//! The file is read again when it changes, so `insitu launcher add-user` needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub token_sha256: String,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

/// A name for a user or a team: it becomes a folder and a URL segment.
pub fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl UsersFile {
    pub fn parse(text: &str, file: &Path) -> Result<UsersFile, Error> {
        let parsed: UsersFile = toml::from_str(text).map_err(|e| Error::Users {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        let bad = |message: String| Error::Users {
            file: file.to_path_buf(),
            message,
        };
        for (i, u) in parsed.users.iter().enumerate() {
            if !valid_name(&u.name) {
                return Err(bad(format!(
                    "user {:?}: letters, digits, '-', '_' or '.'",
                    u.name
                )));
            }
            if parsed.users[..i].iter().any(|o| o.name == u.name) {
                return Err(bad(format!("user {:?} is listed twice", u.name)));
            }
            let hex =
                u.token_sha256.len() == 64 && u.token_sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex {
                return Err(bad(format!(
                    "user {:?}: token_sha256 must be 64 hex digits",
                    u.name
                )));
            }
            if let Some(t) = u.teams.iter().find(|t| !valid_name(t)) {
                return Err(bad(format!(
                    "user {:?}: team {t:?} is not a valid name",
                    u.name
                )));
            }
        }
        Ok(parsed)
    }

    /// The file's text, as `insitu launcher add-user` writes it.
    pub fn render(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// The user holding `token`.
    pub fn by_token(&self, token: &str) -> Option<&User> {
        let digest = token_sha256(token);
        // Compare every entry in full, so the time taken says nothing about near misses.
        let mut found = None;
        for u in &self.users {
            let same = u
                .token_sha256
                .to_ascii_lowercase()
                .bytes()
                .zip(digest.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if same && found.is_none() {
                found = Some(u);
            }
        }
        found
    }

    /// Adds `name` (or replaces its token and teams) and returns the new token.
    pub fn add(
        &mut self,
        name: &str,
        teams: &[String],
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<String, String> {
        if !valid_name(name) {
            return Err(format!(
                "user name {name:?}: letters, digits, '-', '_' or '.'"
            ));
        }
        if let Some(t) = teams.iter().find(|t| !valid_name(t)) {
            return Err(format!("team name {t:?}: letters, digits, '-', '_' or '.'"));
        }
        let token = new_secret().map_err(|e| format!("no random source: {e}"))?;
        let user = User {
            name: name.to_string(),
            token_sha256: token_sha256(&token),
            teams: teams.to_vec(),
            uid,
            gid: gid.or(uid),
        };
        match self.users.iter_mut().find(|u| u.name == name) {
            Some(u) => *u = user,
            None => self.users.push(user),
        }
        Ok(token)
    }
}

pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 32 random bytes as 64 hex digits: bearer tokens and instance secrets.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The users file, re-read when its modification time changes.
#[derive(Debug)]
pub struct Users {
    file: PathBuf,
    cached: Mutex<(Option<SystemTime>, std::sync::Arc<UsersFile>)>,
}

impl Users {
    pub fn open(file: &Path) -> Result<Users, Error> {
        let users = Users {
            file: file.to_path_buf(),
            cached: Mutex::new((None, Default::default())),
        };
        users.current()?;
        Ok(users)
    }

    /// The users as the file says now; on a file that became invalid, the last good version
    /// (and a warning), so one bad edit does not lock everybody out.
    pub fn current(&self) -> Result<std::sync::Arc<UsersFile>, Error> {
        let modified = std::fs::metadata(&self.file)
            .and_then(|m| m.modified())
            .ok();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0.is_some() && cached.0 == modified {
            return Ok(cached.1.clone());
        }
        let text = std::fs::read_to_string(&self.file).map_err(|e| Error::Users {
            file: self.file.clone(),
            message: format!("cannot read: {e}"),
        });
        match text.and_then(|t| UsersFile::parse(&t, &self.file)) {
            Ok(parsed) => {
                *cached = (modified, std::sync::Arc::new(parsed));
                Ok(cached.1.clone())
            }
            Err(e) if cached.0.is_some() => {
                tracing::warn!("{e}: keeping the users read before");
                cached.0 = modified;
                Ok(cached.1.clone())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_found() {
        let mut file = UsersFile::default();
        let a = file.add("alice", &["euclid".into()], None, None).unwrap();
        let b = file.add("bob", &[], Some(10002), None).unwrap();
        assert_ne!(a, b);
        let text = file.render().unwrap();
        assert!(!text.contains(&a) && text.contains(&token_sha256(&a)));
        let back = UsersFile::parse(&text, Path::new("users.toml")).unwrap();
        assert_eq!(back, file_clone(&file));
        assert_eq!(back.by_token(&a).unwrap().name, "alice");
        assert_eq!(back.by_token(&b).unwrap().gid, Some(10002));
        assert!(back.by_token("not a token").is_none());
        let again = {
            let mut f = back;
            let t = f.add("alice", &[], None, None).unwrap();
            assert!(f.by_token(&a).is_none(), "the old token is revoked");
            assert_eq!(f.by_token(&t).unwrap().teams, Vec::<String>::new());
            f.users.len()
        };
        assert_eq!(again, 2);
    }

    fn file_clone(f: &UsersFile) -> UsersFile {
        UsersFile {
            users: f.users.clone(),
        }
    }

    #[test]
    fn bad_users_files_are_refused() {
        let p = Path::new("users.toml");
        let hash = "a".repeat(64);
        for (text, needle) in [
            (format!("[[user]]\nname = \"../x\"\ntoken_sha256 = \"{hash}\""), "letters"),
            ("[[user]]\nname = \"a\"\ntoken_sha256 = \"abc\"".to_string(), "64 hex"),
            (
                format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\n[[user]]\nname = \"a\"\ntoken_sha256 = \"{hash}\""),
                "twice",
            ),
            (format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\nteams = [\"a/b\"]"), "team"),
            ("[[user]]\nname = 3".to_string(), "users.toml"),
        ] {
            let err = UsersFile::parse(&text, p).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
