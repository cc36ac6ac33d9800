//! The engine's one error type: every variant names the file and what is wrong with it.

use std::path::PathBuf;

/// Errors from reading FITS files, computing WCS transforms and cutting images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not valid FITS (truncated, bad card, impossible NAXIS, ...).
    #[error("{path}: malformed FITS: {reason}")]
    Malformed { path: PathBuf, reason: String },
    /// The file is valid FITS but uses something insitu does not read.
    #[error("{path}: unsupported: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: HDU {hdu} does not exist (the file has {count} HDUs)")]
    NoSuchHdu {
        path: PathBuf,
        hdu: usize,
        count: usize,
    },
    #[error("{path}: HDU {hdu} is not an image")]
    NotAnImage { path: PathBuf, hdu: usize },
    /// cfitsio (compressed or gzipped FITS) reported an error.
    #[error("{path}: cfitsio: {reason}")]
    Cfitsio { path: PathBuf, reason: String },
    /// The header has no usable celestial WCS, or a transform failed.
    #[error("WCS: {0}")]
    Wcs(String),
    /// A cutout request that cannot be satisfied (no overlap, strict mode, bad size).
    #[error("cutout: {0}")]
    Cutout(String),
    /// A catalogue row or file that cannot be read.
    #[error("catalogue {path}: {reason}")]
    Catalog { path: PathBuf, reason: String },
    /// A table that cannot be written as a FITS binary table: a column type, name or
    /// size FITS cannot hold (the output's own I/O errors are [`Error::Io`]).
    #[error("FITS table output: {0}")]
    TableWrite(String),
    /// A data volume that cannot be scanned: a bad name, a missing folder.
    #[error("{0}")]
    Volume(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
