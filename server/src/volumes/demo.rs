//! The demo volume `euclid_demo`: 2×2 adjacent Euclid-MER-like tiles in three bands (VIS and
//! NISP Y and H, enough for an RGB preview), small
//! float32 TAN images written once into the cache dir, and the tile writer tests use too.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use insitu_engine::fits::{Card, Value};

use crate::demo::{mosaic_header, SplitMix64};

/// The demo volume's name, hence the schema of its table `euclid_demo.mosaic_product`.
pub const DEMO_VOLUME: &str = "euclid_demo";
/// Bump when the demo tiles change: a new folder is written beside the old one.
const DEMO_FOLDER: &str = "demo-volume-v2";
const DEMO_NPIX: usize = 512;
/// 0.1″ pixels, as the Euclid MER mosaics.
const PIXEL_DEG: f64 = 0.1 / 3600.0;
/// Centre of the 2×2 tile block (the same field as `insitu demo`).
const DEMO_CENTRE: (f64, f64) = (267.38, 65.5);
const DEMO_BANDS: [(&str, &str); 3] = [("VIS", "VIS"), ("NIR_Y", "NISP"), ("NIR_H", "NISP")];
const DEMO_FIRST_TILE: i64 = 102_018_211;

/// One synthetic tile: a `npix`² float32 TAN image, north up, east left, 0.1″ pixels, centred
/// (CRPIX at the central pixel) on (`ra`, `dec`).
#[derive(Debug, Clone)]
pub struct TileSpec {
    pub npix: usize,
    pub ra: f64,
    pub dec: f64,
    pub filter: String,
    pub instrument: String,
    /// Written as TILEID when given.
    pub tile_id: Option<i64>,
    /// Seeds the noise, so that files are deterministic.
    pub seed: u64,
}

/// The MER-style file name of a tile (`EUC_MER_BGSUB-MOSAIC-VIS_TILE102018211-F95D3B_…`), the
/// six hex digits derived from tile and band so that names are deterministic.
pub fn demo_tile_name(tile_id: i64, band: &str) -> String {
    let mut hash = SplitMix64(
        tile_id as u64
            ^ band
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    );
    format!(
        "EUC_MER_BGSUB-MOSAIC-{band}_TILE{tile_id}-{:06X}_20241017T142513.473158Z_00.00.fits",
        hash.next() & 0xFF_FFFF
    )
}

/// Writes one tile: the header of `insitu demo`'s mosaic re-centred, with FILTER, INSTRUME,
/// TELESCOP and TILEID, then Gaussian noise. Written beside `path` and renamed into place.
pub fn write_tile(path: &Path, spec: &TileSpec) -> anyhow::Result<()> {
    anyhow::ensure!(spec.npix >= 2, "a tile needs at least 2×2 pixels");
    let mut header = mosaic_header(spec.npix);
    header.set("CRVAL1", Value::Real(spec.ra), None);
    header.set("CRVAL2", Value::Real(spec.dec), None);
    header.set("FILTER", Value::String(spec.filter.clone()), None);
    header.push(Card::new(
        "INSTRUME",
        Value::String(spec.instrument.clone()),
        "synthetic",
    ));
    header.push(Card::new(
        "TELESCOP",
        Value::String("EUCLID-LIKE".into()),
        "synthetic",
    ));
    if let Some(id) = spec.tile_id {
        header.push(Card::new("TILEID", Value::Integer(id), "tile index"));
    }
    let mut rng = SplitMix64(spec.seed);
    let pixels = spec.npix * spec.npix;
    let mut bytes = header.to_bytes();
    bytes.reserve(pixels * 4 + 2880);
    for _ in 0..pixels {
        bytes.extend_from_slice(&(rng.gaussian() as f32).to_be_bytes());
    }
    // FITS 4.0 §3.3.2: the data unit is padded with zeros to a whole 2880-byte block.
    bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
    let tmp = path.with_extension("fits.partial");
    let mut out =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(out);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(())
}

/// The 2×2 block's tiles: (tile id, centre ra, centre dec), adjacent edge to edge.
pub(crate) fn demo_tiles() -> Vec<(i64, f64, f64)> {
    let step = DEMO_NPIX as f64 * PIXEL_DEG;
    let mut tiles = Vec::new();
    for j in 0..2 {
        for i in 0..2 {
            let dec = DEMO_CENTRE.1 + (j as f64 - 0.5) * step;
            // East is left: tile i = 1 lies west of tile 0 along the row.
            let ra = DEMO_CENTRE.0 - (i as f64 - 0.5) * step / dec.to_radians().cos();
            tiles.push((DEMO_FIRST_TILE + (2 * j + i) as i64, ra, dec));
        }
    }
    tiles
}

/// The demo volume's folder, `<cache_dir>/demo-volume-v2/`, written on first use (12 files of
/// 1 MB, `MER/<tile>/<MER file name>`). Written into a temporary folder renamed at the end,
/// so a half-written volume is never served.
pub fn ensure_demo_volume(cache_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache_dir.join(DEMO_FOLDER);
    if dir.is_dir() {
        return Ok(dir);
    }
    let partial = cache_dir.join(format!("{DEMO_FOLDER}.partial.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    for (t, (tile_id, ra, dec)) in demo_tiles().into_iter().enumerate() {
        let folder = partial.join("MER").join(tile_id.to_string());
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        for (b, (band, instrument)) in DEMO_BANDS.iter().enumerate() {
            let spec = TileSpec {
                npix: DEMO_NPIX,
                ra,
                dec,
                filter: band.to_string(),
                instrument: instrument.to_string(),
                tile_id: Some(tile_id),
                seed: (t * DEMO_BANDS.len() + b) as u64 + 1,
            };
            write_tile(&folder.join(demo_tile_name(tile_id, band)), &spec)?;
        }
    }
    std::fs::write(
        partial.join("README"),
        "Synthetic Euclid-MER-like tiles (2×2 tiles, bands VIS, NIR_Y and NIR_H) written by insitu\n",
    )?;
    match std::fs::rename(&partial, &dir) {
        Ok(()) => Ok(dir),
        // Another server wrote it meanwhile: use theirs.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&partial);
            Ok(dir)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn demo_tiles_are_adjacent() {
        let tiles = demo_tiles();
        assert_eq!(tiles.len(), 4);
        let step = DEMO_NPIX as f64 * PIXEL_DEG;
        // Tiles 0 and 2 share a column: one tile height apart in dec.
        assert!((tiles[2].2 - tiles[0].2 - step).abs() < 1e-12);
        // Tiles 0 and 1 share a row: one tile width apart on the sky.
        let width = (tiles[0].1 - tiles[1].1) * tiles[0].2.to_radians().cos();
        assert!((width - step).abs() < 1e-12);
    }

    #[test]
    fn names_look_like_mer_and_are_deterministic() {
        let name = demo_tile_name(102018211, "VIS");
        assert!(
            name.starts_with("EUC_MER_BGSUB-MOSAIC-VIS_TILE102018211-"),
            "{name}"
        );
        assert!(name.ends_with("Z_00.00.fits"));
        assert_eq!(name, demo_tile_name(102018211, "VIS"));
        assert_ne!(name, demo_tile_name(102018212, "VIS"));
    }
}
