//! Data volumes: the FITS images under each mounted read-only folder, scanned once into a tile
//! index (cached per volume, re-read only where files changed) and served as the ADQL tables
//! `<volume>.mosaic_product` and `ivoa.obscore`, with a `/volumes` listing.
//!
//! The scanner ([`scan_volume`]) and the lookup of images by dataset id or by position
//! ([`Tiles`]) are the engine's ([`insitu_engine::volume`]): they never write into a volume
//! and never follow a symbolic link, so nothing outside the folder is read; paths reach
//! clients only relative to the volume root, prefixed with the volume name. Here,
//! [`open_all`] scans every configured volume (plus the demo volume `euclid_demo` when the
//! demo is served), [`register_tables`] puts the tables in the ADQL engine and [`routes`]
//! answers `/volumes`.

mod demo;
mod routes;
mod tables;

use std::path::{Path, PathBuf};

use anyhow::Context;
use insitu_adql::AdqlEngine;

pub use demo::{demo_tile_name, ensure_demo_volume, write_tile, TileSpec, DEMO_VOLUME};
pub use insitu_engine::volume::{
    check_name, description, scan_volume, ImageRow, LookupError, OpenImage, ScanReport, TileId,
    Tiles, Volume, DID_PREFIX,
};
pub use routes::routes;
pub use tables::{mosaic_product, obscore};

/// Scans every configured volume, and the demo volume when the demo is served. Blocking:
/// call it off the async runtime.
pub fn open_all(
    mounts: &[(String, PathBuf)],
    demo: bool,
    cache_dir: &Path,
) -> anyhow::Result<Vec<Volume>> {
    let mut mounts = mounts.to_vec();
    if demo {
        mounts.push((DEMO_VOLUME.to_string(), ensure_demo_volume(cache_dir)?));
    }
    let mut volumes = Vec::with_capacity(mounts.len());
    for (name, root) in &mounts {
        anyhow::ensure!(
            !volumes
                .iter()
                .any(|v: &Volume| v.name.eq_ignore_ascii_case(name)),
            "volume {name} is given twice"
        );
        let volume =
            scan_volume(name, root, cache_dir).with_context(|| format!("volume {name}"))?;
        tracing::info!(
            "volume {name}: {} image(s), {} skipped; {} read, {} from the cache",
            volume.images.len(),
            volume.report.skipped,
            volume.report.read,
            volume.report.reused
        );
        volumes.push(volume);
    }
    Ok(volumes)
}

/// Registers `<volume>.mosaic_product` for each volume and `ivoa.obscore` over all of them
/// (none when there is no volume), its `access_url` the DataLink links of each image when the
/// public `base_url` is known. Returns how many tables were registered.
pub fn register_tables(
    engine: &AdqlEngine,
    volumes: &[Volume],
    base_url: Option<&str>,
) -> anyhow::Result<usize> {
    for volume in volumes {
        let (schema, batch) = mosaic_product(volume)?;
        engine
            .register_batches(&volume.table_name(), schema, vec![batch])
            .with_context(|| format!("table {}", volume.table_name()))?;
    }
    if volumes.is_empty() {
        return Ok(0);
    }
    let (schema, batch) = obscore(volumes, base_url)?;
    engine
        .register_batches("ivoa.obscore", schema, vec![batch])
        .context("table ivoa.obscore")?;
    Ok(volumes.len() + 1)
}

// The engine's `Tiles` over the demo volume, which only the server writes.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn demo() -> (tempfile::TempDir, Tiles) {
        let cache = tempfile::tempdir().unwrap();
        let root = ensure_demo_volume(cache.path()).unwrap();
        let volume = scan_volume(DEMO_VOLUME, &root, cache.path()).unwrap();
        (cache, Tiles::new(vec![volume]))
    }

    #[test]
    fn ids_name_scanned_images_only() {
        let (_cache, tiles) = demo();
        let first = TileId {
            volume: 0,
            image: 0,
        };
        let (volume, row) = tiles.row(first);
        let did = tiles.did(first);
        assert_eq!(tiles.dataset(&did), Ok(first));
        let plain = format!("{}/{}", volume.name.to_uppercase(), row.relative_path);
        assert_eq!(tiles.dataset(&plain), Ok(first));
        let root = volume.root.display().to_string();
        for bad in [
            "".to_string(),
            "euclid_demo".to_string(),
            format!("euclid_demo/../{}", row.relative_path),
            format!("euclid_demo//{}", row.relative_path),
            format!("{root}/{}", row.relative_path),
            "euclid_demo/README".to_string(),
            "other/MER".to_string(),
            format!("{DID_PREFIX}euclid_demo/{}", row.relative_path),
        ] {
            let err = tiles.dataset(&bad).unwrap_err();
            assert!(matches!(err, LookupError::NotFound(_)), "{bad}");
        }
        let open = tiles.open(first).unwrap();
        assert_eq!(open.image().unwrap().width() as i64, row.naxis1);
    }

    #[test]
    fn positions_find_the_tiles_holding_them() {
        let (_cache, tiles) = demo();
        let volume = &tiles.volumes()[0];
        for (i, row) in volume.images.iter().enumerate() {
            let id = TileId {
                volume: 0,
                image: i,
            };
            let band = row.filter_name.as_deref();
            // The centre lies in this tile only (the demo tiles do not overlap), its band only.
            assert_eq!(tiles.covering(row.ra, row.dec, band, None), vec![id]);
            let all = tiles.covering(row.ra, row.dec, None, Some("EUCLID_DEMO"));
            assert_eq!(all.len(), volume.bands().len(), "one tile per band");
            assert!(all.contains(&id));
            // Pixel (0, 0) holds its own sky position; a position a pixel outside it does not.
            let open = tiles.open(id).unwrap();
            let (ra, dec) = open.wcs.pixel_to_sky(0.0, 0.0).unwrap();
            assert!(tiles.holds(id, ra, dec));
            let (ra, dec) = open.wcs.pixel_to_sky(-0.6, 0.0).unwrap();
            assert!(!tiles.holds(id, ra, dec));
        }
        assert!(tiles.covering(10.0, 10.0, None, None).is_empty());
        assert!(tiles.covering(f64::NAN, 0.0, None, None).is_empty());
        assert!(tiles.covering(0.0, 91.0, None, None).is_empty());
        let row = &volume.images[0];
        assert!(tiles
            .covering(row.ra, row.dec, None, Some("nope"))
            .is_empty());
        assert!(tiles
            .covering(row.ra, row.dec, Some("NIR_J"), None)
            .is_empty());
    }
}
