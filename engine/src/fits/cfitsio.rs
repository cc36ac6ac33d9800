//! Reading through cfitsio (the `fitsio` crate) what insitu does not map itself: tile-compressed
//! image HDUs (RICE_1, GZIP_1/2, HCOMPRESS_1, PLIO_1) and gzipped files.
//!
//! Each HDU comes back as its *image* header (for a compressed HDU, the header of the
//! uncompressed image, as cfitsio presents it) and its stored pixel values as big-endian
//! bytes, unscaled, so the rest of the engine handles them exactly like a mapped data unit.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;

use fitsio::sys;

use super::header::{Header, CARD_LEN};
use super::layout::{axes, bitpix_bytes};
use crate::{Error, Result};

/// An open cfitsio handle.
pub struct Cfitsio {
    file: fitsio::FitsFile,
    path: std::path::PathBuf,
}

impl Cfitsio {
    pub fn open(path: &Path) -> Result<Cfitsio> {
        let file = fitsio::FitsFile::open(path).map_err(|e| Error::Cfitsio {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Ok(Cfitsio {
            file,
            path: path.into(),
        })
    }

    /// Number of HDUs in the file.
    pub fn hdu_count(&mut self) -> Result<usize> {
        let mut count: c_int = 0;
        let mut status: c_int = 0;
        // SAFETY: the handle is open (owned by `self.file`); cfitsio writes one int.
        unsafe { sys::ffthdu(self.file.as_raw(), &mut count, &mut status) };
        self.check(status)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// The image header of HDU `index` (0-based).
    pub fn header(&mut self, index: usize) -> Result<Header> {
        self.move_to(index)?;
        let mut text: *mut c_char = std::ptr::null_mut();
        let mut nkeys: c_int = 0;
        let mut status: c_int = 0;
        // SAFETY: the handle is open and positioned; cfitsio allocates `text` (nkeys × 80
        // chars, NUL-terminated) which we copy and free with `fffree` below.
        unsafe {
            sys::ffcnvthdr2str(
                self.file.as_raw(),
                0,
                std::ptr::null_mut(),
                0,
                &mut text,
                &mut nkeys,
                &mut status,
            )
        };
        self.check(status)?;
        if text.is_null() {
            return Err(self.error("cfitsio returned no header".into()));
        }
        // SAFETY: `text` is a NUL-terminated string allocated by cfitsio (checked non-null).
        let cards = unsafe { CStr::from_ptr(text) }.to_bytes().to_vec();
        let mut free_status: c_int = 0;
        // SAFETY: `text` was allocated by cfitsio and is freed exactly once.
        unsafe { sys::fffree(text.cast::<c_void>(), &mut free_status) };
        let mut bytes = cards;
        bytes.truncate(bytes.len() / CARD_LEN * CARD_LEN);
        bytes.extend_from_slice(format!("{:80}", "END").as_bytes());
        Header::parse_cards(&bytes)
            .map(|(h, _)| h)
            .map_err(|e| Error::malformed(&self.path, format!("HDU {index}: {}", e.0)))
    }

    /// Stored (unscaled) pixel values of HDU `index`, big-endian, `BITPIX` as in its image
    /// header; empty when the HDU holds no image.
    pub fn load(&mut self, index: usize) -> Result<Vec<u8>> {
        let header = self.header(index)?;
        let bitpix = header.integer("BITPIX").unwrap_or(8);
        let elem = bitpix_bytes(bitpix).map_err(|e| Error::malformed(&self.path, e.0))?;
        let axes = axes(&header).map_err(|e| Error::malformed(&self.path, e.0))?;
        let count: usize = if axes.is_empty() {
            0
        } else {
            axes.iter().product()
        };
        if count == 0 {
            return Ok(Vec::new());
        }
        let bytes = count
            .checked_mul(elem)
            .ok_or_else(|| self.error("image too large".into()))?;
        let mut data = vec![0u8; bytes];
        let datatype = match bitpix {
            8 => sys::TBYTE,
            16 => sys::TSHORT,
            32 => sys::TINT,
            64 => sys::TLONGLONG,
            -32 => sys::TFLOAT,
            _ => sys::TDOUBLE,
        } as c_int;
        let mut status: c_int = 0;
        let mut anynul: c_int = 0;
        // SAFETY: the handle is positioned on `index` (by `header`); `ffpscl(1, 0)` makes
        // cfitsio return stored values; `data` holds exactly `count` elements of the type
        // named by `datatype` (element size `elem`, checked above), written in native order.
        unsafe {
            let fptr = self.file.as_raw();
            sys::ffpscl(fptr, 1.0, 0.0, &mut status);
            sys::ffgpv(
                fptr,
                datatype,
                1,
                count as sys::LONGLONG,
                std::ptr::null_mut(),
                data.as_mut_ptr().cast::<c_void>(),
                &mut anynul,
                &mut status,
            );
        }
        self.check(status)?;
        if cfg!(target_endian = "little") {
            for chunk in data.chunks_exact_mut(elem) {
                chunk.reverse();
            }
        }
        Ok(data)
    }

    fn move_to(&mut self, index: usize) -> Result<()> {
        let mut hdutype: c_int = 0;
        let mut status: c_int = 0;
        let hdunum =
            c_int::try_from(index + 1).map_err(|_| self.error("HDU index too large".into()))?;
        // SAFETY: the handle is open; cfitsio writes one int.
        unsafe { sys::ffmahd(self.file.as_raw(), hdunum, &mut hdutype, &mut status) };
        self.check(status)
    }

    fn check(&self, status: c_int) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        let mut text = [0 as c_char; 31];
        // SAFETY: cfitsio writes at most 30 characters and a NUL into `text`.
        unsafe { sys::ffgerr(status, text.as_mut_ptr()) };
        // SAFETY: `text` is NUL-terminated (zero-initialised, at most 30 characters written).
        let reason = unsafe { CStr::from_ptr(text.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Err(self.error(format!("{reason} (status {status})")))
    }

    fn error(&self, reason: String) -> Error {
        Error::Cfitsio {
            path: self.path.clone(),
            reason,
        }
    }
}
