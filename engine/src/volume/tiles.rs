//! Finding images in the scanned volumes: by dataset id (SODA's `ID`, a volume-relative path)
//! and by position (which tiles hold a sky position, in which band), and opening them with
//! their WCS, once per image, for the cutout services.
//!
//! Only images the scanner listed can be found, so an id can never name a file outside a
//! volume (no absolute paths, no `..`, no links: the scanner follows none); opening checks
//! again that the file is still a regular file inside its volume's root.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::fits::{FitsFile, Image};
use crate::wcs::Wcs;

use super::{ImageRow, Volume};

/// The publisher DID prefix of dataset ids: `ivo://insitu/<volume>?<path under the volume>`.
pub const DID_PREFIX: &str = "ivo://insitu/";

/// One image of one volume: indices into [`Tiles::volumes`] and that volume's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub volume: usize,
    pub image: usize,
}

/// Why an image could not be found or opened; the messages name datasets, never server paths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The id names no scanned image (including ids that try to leave a volume).
    #[error("no dataset {0:?}: give an id from ivoa.obscore (obs_publisher_did) or <volume>/<path> from a mosaic_product table")]
    NotFound(String),
    /// The file could not be read (gone, changed into something else, malformed).
    #[error("dataset {0} cannot be read: {1}")]
    Unreadable(String, String),
}

/// An opened image: the memory-mapped file, its image HDU and its celestial WCS.
pub struct OpenImage {
    pub file: FitsFile,
    pub hdu: usize,
    pub wcs: Wcs,
}

impl std::fmt::Debug for OpenImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenImage(HDU {})", self.hdu)
    }
}

impl OpenImage {
    /// The image HDU's pixels.
    pub fn image(&self) -> Result<Image<'_>, crate::Error> {
        self.file.image(self.hdu)
    }
}

/// An image opened on first use (or why it could not be).
type Opened = OnceLock<Result<Arc<OpenImage>, LookupError>>;

/// The scanned volumes, with each image opened on first use and kept open.
#[derive(Debug)]
pub struct Tiles {
    volumes: Vec<Volume>,
    opened: Vec<Vec<Opened>>,
    /// Unit vector of each image's centre and the cosine of its half field of view.
    centres: Vec<Vec<([f64; 3], f64)>>,
}

fn unit(ra: f64, dec: f64) -> [f64; 3] {
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
}

impl Tiles {
    pub fn new(volumes: Vec<Volume>) -> Tiles {
        let opened = volumes
            .iter()
            .map(|v| v.images.iter().map(|_| OnceLock::new()).collect())
            .collect();
        let centres = volumes
            .iter()
            .map(|v| {
                v.images
                    .iter()
                    .map(|r| {
                        (
                            unit(r.ra, r.dec),
                            (r.fov / 2.0).min(180.0).to_radians().cos(),
                        )
                    })
                    .collect()
            })
            .collect();
        Tiles {
            volumes,
            opened,
            centres,
        }
    }

    pub fn volumes(&self) -> &[Volume] {
        &self.volumes
    }

    /// The volume and scanned row of an image.
    pub fn row(&self, id: TileId) -> (&Volume, &ImageRow) {
        let volume = &self.volumes[id.volume];
        (volume, &volume.images[id.image])
    }

    /// The dataset id clients see: `ivo://insitu/<volume>?<path>` (ObsCore's
    /// `obs_publisher_did`).
    pub fn did(&self, id: TileId) -> String {
        let (volume, row) = self.row(id);
        format!("{DID_PREFIX}{}?{}", volume.name, row.relative_path)
    }

    /// The image a dataset id names: `ivo://insitu/<volume>?<path>` or `<volume>/<path>`, the
    /// path relative to the volume root exactly as the tile index lists it (volume names
    /// compare case-insensitively, as ADQL schema names).
    pub fn dataset(&self, id: &str) -> Result<TileId, LookupError> {
        let not_found = || LookupError::NotFound(id.to_string());
        let trimmed = id.trim();
        let (volume, path) = match trimmed.strip_prefix(DID_PREFIX) {
            Some(rest) => rest.split_once('?').ok_or_else(not_found)?,
            None => trimmed.split_once('/').ok_or_else(not_found)?,
        };
        let v = self
            .volumes
            .iter()
            .position(|v| v.name.eq_ignore_ascii_case(volume))
            .ok_or_else(not_found)?;
        let image = self.volumes[v]
            .images
            .binary_search_by(|r| r.relative_path.as_str().cmp(path))
            .map_err(|_| not_found())?;
        Ok(TileId { volume: v, image })
    }

    /// Opens an image (once; later calls share it).
    pub fn open(&self, id: TileId) -> Result<Arc<OpenImage>, LookupError> {
        self.opened[id.volume][id.image]
            .get_or_init(|| self.open_now(id).map(Arc::new))
            .clone()
    }

    fn open_now(&self, id: TileId) -> Result<OpenImage, LookupError> {
        let (volume, row) = self.row(id);
        let name = format!("{}/{}", volume.name, row.relative_path);
        let unreadable = |why: &str| LookupError::Unreadable(name.clone(), why.to_string());
        let path: PathBuf = volume.root.join(&row.relative_path);
        // The file must still be a regular file under the root (not swapped for a link).
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        let inside = match (path.canonicalize(), volume.root.canonicalize()) {
            (Ok(p), Ok(root)) => p.starts_with(root),
            _ => false,
        };
        if !regular || !inside {
            return Err(unreadable(
                "the file is gone or is no longer a regular file",
            ));
        }
        // Engine errors carry the server's path: keep the reason, not the path.
        let reason = |e: crate::Error| {
            let text = e.to_string();
            let path_text = path.display().to_string();
            unreadable(text.replace(&path_text, "").trim_start_matches(": "))
        };
        let file = FitsFile::open(&path).map_err(reason)?;
        let header = file.header(row.hdu).map_err(reason)?;
        let wcs = Wcs::from_header(header).map_err(reason)?;
        Ok(OpenImage {
            file,
            hdu: row.hdu,
            wcs,
        })
    }

    /// The images whose pixels hold (`ra`, `dec`) (ICRS degrees), in `band` when given (a
    /// filter name, case-insensitive) and in `volume` when given: nearest image centre first.
    /// Images that cannot be opened are left out.
    pub fn covering(
        &self,
        ra: f64,
        dec: f64,
        band: Option<&str>,
        volume: Option<&str>,
    ) -> Vec<TileId> {
        if !(ra.is_finite() && dec.is_finite() && (-90.0..=90.0).contains(&dec)) {
            return Vec::new();
        }
        let p = unit(ra, dec);
        let mut found: Vec<(f64, TileId)> = Vec::new();
        for (v, vol) in self.volumes.iter().enumerate() {
            if volume.is_some_and(|name| !vol.name.eq_ignore_ascii_case(name)) {
                continue;
            }
            for (i, row) in vol.images.iter().enumerate() {
                let wanted = band.is_none_or(|b| {
                    row.filter_name
                        .as_deref()
                        .is_some_and(|f| f.eq_ignore_ascii_case(b))
                });
                let (c, cos_half) = self.centres[v][i];
                let cos = p[0] * c[0] + p[1] * c[1] + p[2] * c[2];
                // The circle holding the whole image (with a little room for rounding).
                if !wanted || cos < cos_half - 1e-12 {
                    continue;
                }
                let id = TileId {
                    volume: v,
                    image: i,
                };
                if self.holds(id, ra, dec) {
                    found.push((-cos, id));
                }
            }
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        found.into_iter().map(|(_, id)| id).collect()
    }

    /// Whether the position falls on one of the image's pixels (0-based centres, so the
    /// pixels span −0.5 … N − 0.5).
    pub fn holds(&self, id: TileId, ra: f64, dec: f64) -> bool {
        let (_, row) = self.row(id);
        let Ok(open) = self.open(id) else {
            return false;
        };
        match open.wcs.sky_to_pixel(ra, dec) {
            Some((x, y)) => {
                x >= -0.5 && y >= -0.5 && x < row.naxis1 as f64 - 0.5 && y < row.naxis2 as f64 - 0.5
            }
            None => false,
        }
    }
}
