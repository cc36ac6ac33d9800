//! The one place insitu maps files into memory (the only `unsafe` around file data).

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::{Error, Result};

/// Maps `file` read-only.
///
/// No `madvise` hint is given: measured on the NFS-like VMs we target, the kernel's default
/// readahead made cold random cutouts ~10× faster than `MADV_RANDOM` (see the README's
/// performance section), and warm reads do not care.
pub(crate) fn map_read_only(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: the map is read-only and insitu never writes to data volumes. Another process
    // truncating the file while it is mapped would make later reads fault (SIGBUS); data
    // volumes are read-only archives, and every extent is checked against the file length
    // at open time, so a file that is already short is an error, not a fault.
    unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, e))
}
