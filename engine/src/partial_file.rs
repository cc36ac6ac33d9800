//! Output files written under a temporary name and renamed only once complete.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A file created as `NAME.partial` and renamed to `NAME` by [`commit`]; dropped without a
/// commit (an error half way), it is removed, so a failed run never leaves a file that looks
/// complete or a stray temporary.
///
/// [`commit`]: PartialFile::commit
pub struct PartialFile {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl PartialFile {
    pub fn create(path: &Path) -> Result<PartialFile> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let tmp = path.with_file_name(name);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(PartialFile {
            file,
            tmp,
            path: path.into(),
            committed: false,
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// An I/O error on the file, named by its temporary path.
    pub fn error(&self, e: std::io::Error) -> Error {
        Error::io(&self.tmp, e)
    }

    /// Moves the finished file to its final name (no fsync: the rename only has to keep a
    /// half-written file from looking complete, not survive a power cut).
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn renamed_on_commit_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done.fits");
        let mut f = PartialFile::create(&done).unwrap();
        (&f.file).write_all(b"x").unwrap();
        assert!(dir.path().join("done.fits.partial").exists());
        f.file.flush().unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&done).unwrap(), b"x");

        let failed = dir.path().join("failed.npy");
        drop(PartialFile::create(&failed).unwrap());
        assert!(!failed.exists());
        assert!(!dir.path().join("failed.npy.partial").exists());
    }
}
