//! Data volumes: the FITS images under a read-only folder, scanned once into a tile index
//! ([`scan_volume`]: cached per volume, re-read only where files changed), and found again by
//! dataset id or by sky position ([`Tiles`]) for position-first cutouts
//! ([`crate::position_cutout`]) and tensors ([`crate::tensor_cuts`]).
//!
//! The scanner never writes into a volume and never follows a symbolic link, so nothing
//! outside the folder is read; paths reach clients only relative to the volume root.

mod scan;
mod tiles;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use scan::scan_volume;
pub use tiles::{LookupError, OpenImage, TileId, Tiles, DID_PREFIX};

/// One FITS image of a volume, as read from its headers (and cached).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRow {
    /// Path under the volume root, `/`-separated (never absolute).
    pub relative_path: String,
    /// The 0-based HDU holding the image (the first one with NAXIS ≥ 2).
    pub hdu: usize,
    pub tile_index: Option<i64>,
    /// ICRS centre of the image (the WCS at the central pixel), degrees.
    #[serde(with = "exact")]
    pub ra: f64,
    #[serde(with = "exact")]
    pub dec: f64,
    /// The centres of the four corner pixels (astropy's `calc_footprint`), ICRS degrees,
    /// ordered counter-clockwise as seen from the sphere's centre (DALI 1.1 §3.3.7).
    #[serde(with = "exact_corners")]
    pub corners: [[f64; 2]; 4],
    /// Diameter of the circle around the centre holding the whole image (pixel edges), deg.
    #[serde(with = "exact")]
    pub fov: f64,
    /// Geometric mean of the two pixel scales, arcsec.
    #[serde(with = "exact")]
    pub pixel_scale: f64,
    pub filter_name: Option<String>,
    pub instrument_name: Option<String>,
    pub facility_name: Option<String>,
    pub naxis: i64,
    pub naxis1: i64,
    pub naxis2: i64,
    pub bitpix: i64,
    /// The file's size in bytes.
    pub size: u64,
}

/// Reals in the scan cache as decimal strings: serde_json reads numbers back with a fast
/// parser that can miss the last bit (without its `float_roundtrip` feature), while Rust's
/// shortest `Display` and `str::parse` round-trip exactly, so cached rows equal fresh reads.
mod exact {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// [`exact`] for the footprint's corners.
mod exact_corners {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(corners: &[[f64; 2]; 4], s: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = corners.iter().flatten().map(f64::to_string).collect();
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[[f64; 2]; 4], D::Error> {
        let text = <[String; 8]>::deserialize(d)?;
        let mut corners = [[0.0; 2]; 4];
        for (slot, t) in corners.iter_mut().flatten().zip(&text) {
            *slot = t.parse().map_err(D::Error::custom)?;
        }
        Ok(corners)
    }
}

impl ImageRow {
    /// The file name, without its folder.
    pub fn file_name(&self) -> &str {
        self.relative_path
            .rsplit_once('/')
            .map_or(self.relative_path.as_str(), |(_, name)| name)
    }

    /// The folder of the file under the volume, prefixed with the volume name
    /// (`q1/MER/102018211`), as Euclid's `sedm.mosaic_product.datalabs_path`.
    pub fn datalabs_path(&self, volume: &str) -> String {
        match self.relative_path.rsplit_once('/') {
            Some((folder, _)) => format!("{volume}/{folder}"),
            None => volume.to_string(),
        }
    }

    /// The footprint as an ObsCore 1.1 §4.13 STC-S string, `POLYGON ICRS ra1 dec1 …`.
    pub fn s_region(&self) -> String {
        let mut text = String::from("POLYGON ICRS");
        for [ra, dec] in &self.corners {
            text.push_str(&format!(" {ra} {dec}"));
        }
        text
    }
}

/// What one scan did: how many candidate files were seen, read, reused from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// Files with a FITS name found under the volume.
    pub files: usize,
    /// Files whose headers were read this time (new or changed).
    pub read: usize,
    /// Files taken from the cache unchanged.
    pub reused: usize,
    /// Cache entries dropped because their file is gone.
    pub removed: usize,
    /// Files that are not FITS images (tables, broken files, images without a celestial WCS).
    pub skipped: usize,
}

/// A scanned volume.
#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub root: PathBuf,
    pub description: String,
    /// The images, sorted by relative path.
    pub images: Vec<ImageRow>,
    pub report: ScanReport,
}

impl Volume {
    /// The distinct filter names, sorted.
    pub fn bands(&self) -> Vec<String> {
        let mut bands: Vec<String> = self
            .images
            .iter()
            .filter_map(|i| i.filter_name.clone())
            .collect();
        bands.sort();
        bands.dedup();
        bands
    }

    /// Total size of the images, bytes.
    pub fn size(&self) -> u64 {
        self.images.iter().map(|i| i.size).sum()
    }

    /// The ADQL name of the volume's tile index.
    pub fn table_name(&self) -> String {
        format!("{}.mosaic_product", self.name)
    }
}

/// Schema names a volume cannot take: they hold the service's own tables.
const RESERVED: [&str; 3] = ["ivoa", "tap_schema", "public"];

/// A volume name must be a plain ADQL identifier (ADQL 2.1 §2.1.2), since it names a schema.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(Error::Volume(format!(
            "volume name {name:?}: use letters, digits and '_', starting with a letter"
        )));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(Error::Volume(format!(
            "volume name {name:?} is reserved for the service's own tables"
        )));
    }
    Ok(())
}

/// The volume's description: the first non-blank line of `README`, `README.md`, `README.txt`
/// or `description.txt` at its root, else "FITS images under `name`".
pub fn description(name: &str, root: &Path) -> String {
    for file in ["description.txt", "README", "README.md", "README.txt"] {
        let path = root.join(file);
        // A link could point outside the volume: read regular files only.
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if !regular {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
                let line = line.trim_start_matches('#').trim();
                return line.chars().take(200).collect();
            }
        }
    }
    format!("FITS images under {name}")
}

/// Angular distance in degrees (haversine, accurate at small separations).
pub(crate) fn separation(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (d1, d2) = (dec1.to_radians(), dec2.to_radians());
    let h = ((d2 - d1) / 2.0).sin().powi(2)
        + d1.cos() * d2.cos() * ((ra2 - ra1).to_radians() / 2.0).sin().powi(2);
    2.0 * h.sqrt().min(1.0).asin().to_degrees()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_identifiers() {
        assert!(check_name("q1").is_ok());
        assert!(check_name("euclid_demo").is_ok());
        for bad in ["", "1q", "a-b", "a.b", "ivoa", "TAP_SCHEMA", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_relative_and_prefixed() {
        let row = ImageRow {
            relative_path: "MER/102018211/a.fits".into(),
            hdu: 0,
            tile_index: None,
            ra: 0.0,
            dec: 0.0,
            corners: [[1.0, 2.0], [3.0, 4.5], [5.0, 6.0], [7.0, 8.0]],
            fov: 0.0,
            pixel_scale: 0.1,
            filter_name: None,
            instrument_name: None,
            facility_name: None,
            naxis: 2,
            naxis1: 1,
            naxis2: 1,
            bitpix: -32,
            size: 0,
        };
        assert_eq!(row.file_name(), "a.fits");
        assert_eq!(row.datalabs_path("q1"), "q1/MER/102018211");
        assert_eq!(row.s_region(), "POLYGON ICRS 1 2 3 4.5 5 6 7 8");
        let top = ImageRow {
            relative_path: "b.fits".into(),
            ..row
        };
        assert_eq!(top.datalabs_path("q1"), "q1");
        assert_eq!(top.file_name(), "b.fits");
    }

    #[test]
    fn description_from_readme_or_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(description("v", dir.path()), "FITS images under v");
        std::fs::write(
            dir.path().join("README.md"),
            "\n# Euclid Q1 mosaics\nmore\n",
        )
        .unwrap();
        assert_eq!(description("v", dir.path()), "Euclid Q1 mosaics");
    }

    #[test]
    fn separation_of_known_pairs() {
        assert!((separation(0.0, 0.0, 90.0, 0.0) - 90.0).abs() < 1e-12);
        assert!((separation(10.0, 89.0, 190.0, 89.0) - 2.0).abs() < 1e-9);
        assert!((separation(5.0, 5.0, 5.0, 5.0)).abs() < 1e-15);
    }
}
