//! An open FITS file: every HDU's header parsed at open, data units left in place.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memmap2::Mmap;

use super::bintable::BinTable;
use super::cfitsio::Cfitsio;
use super::header::Header;
use super::image::Image;
use super::layout;
use crate::{Error, Result};

/// A FITS file opened in place: a read-only memory map, or cfitsio for gzipped files.
///
/// Headers are parsed when the file is opened; data units are touched only when an image is
/// read. Tile-compressed HDUs are decompressed by cfitsio on first use and kept in memory.
pub struct FitsFile {
    path: PathBuf,
    map: Option<Mmap>,
    hdus: Vec<Hdu>,
}

struct Hdu {
    header: Header,
    data: DataUnit,
}

enum DataUnit {
    /// Byte range in the map.
    Mapped { start: usize, len: usize },
    /// Decompressed by cfitsio on first use (stored values, big-endian).
    Loaded(OnceLock<std::result::Result<Vec<u8>, String>>),
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl FitsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<FitsFile> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut magic = [0u8; 2];
        let n = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
        if n == 2 && magic == GZIP_MAGIC {
            return Self::open_with_cfitsio(path);
        }
        let map = crate::mmap::map_read_only(&file, path)?;
        let layouts = layout::scan(&map).map_err(|e| Error::malformed(path, e.0))?;
        let mut hdus = Vec::with_capacity(layouts.len());
        // Opened once, on the first compressed HDU, for all of them.
        let mut cfitsio: Option<Cfitsio> = None;
        for (index, l) in layouts.into_iter().enumerate() {
            if is_tile_compressed(&l.header) {
                let cf = match &mut cfitsio {
                    Some(cf) => cf,
                    None => cfitsio.insert(Cfitsio::open(path)?),
                };
                let header = cf.header(index)?;
                hdus.push(Hdu {
                    header,
                    data: DataUnit::Loaded(OnceLock::new()),
                });
            } else {
                hdus.push(Hdu {
                    header: l.header,
                    data: DataUnit::Mapped {
                        start: l.data_start,
                        len: l.data_len,
                    },
                });
            }
        }
        Ok(FitsFile {
            path: path.into(),
            map: Some(map),
            hdus,
        })
    }

    fn open_with_cfitsio(path: &Path) -> Result<FitsFile> {
        let mut cf = Cfitsio::open(path)?;
        let count = cf.hdu_count()?;
        let hdus = (0..count)
            .map(|i| {
                Ok(Hdu {
                    header: cf.header(i)?,
                    data: DataUnit::Loaded(OnceLock::new()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FitsFile {
            path: path.into(),
            map: None,
            hdus,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn hdu_count(&self) -> usize {
        self.hdus.len()
    }

    pub fn header(&self, hdu: usize) -> Result<&Header> {
        self.hdu(hdu).map(|h| &h.header)
    }

    /// The first HDU holding an image with at least two axes (where astrocut and most tools look).
    pub fn first_image_hdu(&self) -> Option<usize> {
        self.hdus.iter().position(|h| is_image(&h.header))
    }

    /// The image in HDU `hdu` (0-based, as astropy counts).
    pub fn image(&self, hdu: usize) -> Result<Image<'_>> {
        let entry = self.hdu(hdu)?;
        if !is_image(&entry.header) {
            return Err(Error::NotAnImage {
                path: self.path.clone(),
                hdu,
            });
        }
        let data: &[u8] = match &entry.data {
            DataUnit::Mapped { start, len } => self
                .map
                .as_deref()
                .and_then(|m| m.get(*start..start + len))
                .ok_or_else(|| Error::malformed(&self.path, "data unit outside the file"))?,
            DataUnit::Loaded(cell) => cell
                .get_or_init(|| {
                    Cfitsio::open(&self.path)
                        .and_then(|mut cf| cf.load(hdu))
                        .map_err(|e| e.to_string())
                })
                .as_deref()
                .map_err(|reason| Error::Cfitsio {
                    path: self.path.clone(),
                    reason: reason.clone(),
                })?,
        };
        Image::new(&entry.header, data)
            .map_err(|reason| Error::malformed(&self.path, format!("HDU {hdu}: {reason}")))
    }

    /// The binary table in HDU `hdu`, or the first one when `hdu` is `None`.
    pub fn table(&self, hdu: Option<usize>) -> Result<BinTable<'_>> {
        let index = match hdu {
            Some(i) => i,
            None => self
                .hdus
                .iter()
                .position(|h| h.header.string("XTENSION") == Some("BINTABLE"))
                .ok_or_else(|| Error::malformed(&self.path, "the file has no binary table"))?,
        };
        let entry = self.hdu(index)?;
        let data = match (&entry.data, entry.header.string("XTENSION")) {
            (DataUnit::Mapped { start, len }, Some("BINTABLE")) => {
                self.map.as_deref().and_then(|m| m.get(*start..start + len))
            }
            _ => None,
        }
        .ok_or_else(|| {
            Error::malformed(&self.path, format!("HDU {index} is not a binary table"))
        })?;
        BinTable::new(&entry.header, data)
            .map_err(|reason| Error::malformed(&self.path, format!("HDU {index}: {reason}")))
    }

    fn hdu(&self, hdu: usize) -> Result<&Hdu> {
        self.hdus.get(hdu).ok_or_else(|| Error::NoSuchHdu {
            path: self.path.clone(),
            hdu,
            count: self.hdus.len(),
        })
    }
}

/// ZIMAGE = T marks a tile-compressed image stored in a binary table (FITS 4.0 §10).
fn is_tile_compressed(header: &Header) -> bool {
    header.string("XTENSION") == Some("BINTABLE") && header.logical("ZIMAGE") == Some(true)
}

fn is_image(header: &Header) -> bool {
    let image_hdu = header.contains("SIMPLE") || header.string("XTENSION") == Some("IMAGE");
    image_hdu && header.integer("NAXIS").unwrap_or(0) >= 2 && header.logical("GROUPS") != Some(true)
}
