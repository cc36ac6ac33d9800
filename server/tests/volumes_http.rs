//! Volumes through the service's router (no port bound): the tile index of a volume with
//! tiles of known WCS plus files that are not images, queried with ADQL; `/volumes`; the
//! scan cache (nothing re-read when nothing changed, only what changed otherwise); ObsCore;
//! the demo volume. No response may show the server's own paths.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use insitu_adql::arrow::array::{Float64Array, RecordBatch};
use insitu_adql::arrow::datatypes::{DataType, Field, Schema};
use insitu_engine::fits::FitsFile;
use insitu_engine::wcs::Wcs;
use insitu_server::serve_command::app;
use insitu_server::serve_config::ServeConfig;
use insitu_server::tap::TapConfig;
use insitu_server::volumes::{demo_tile_name, scan_volume, write_tile, TileSpec};
use tower::ServiceExt;

const NPIX: usize = 64;
/// Tile side, degrees (0.1″ pixels).
const SIDE: f64 = NPIX as f64 * 0.1 / 3600.0;

/// A tile to write: folder under the volume, file name, spec.
struct Tile {
    folder: &'static str,
    name: String,
    spec: TileSpec,
}

fn spec(ra: f64, dec: f64, filter: &str, tile_id: Option<i64>, seed: u64) -> TileSpec {
    TileSpec {
        npix: NPIX,
        ra,
        dec,
        filter: filter.into(),
        instrument: if filter == "VIS" { "VIS" } else { "NISP" }.into(),
        tile_id,
        seed,
    }
}

/// Two adjacent tiles in VIS (one with TILEID, one known only by its file name), one NIR_H
/// tile, one image at the volume root with no tile index at all.
fn tiles() -> Vec<Tile> {
    let dec: f64 = 2.0;
    let ra2 = 150.0 - SIDE / dec.to_radians().cos();
    vec![
        Tile {
            folder: "MER/1001",
            name: demo_tile_name(1001, "VIS"),
            spec: spec(150.0, dec, "VIS", Some(1001), 1),
        },
        Tile {
            folder: "MER/1001",
            name: demo_tile_name(1001, "NIR_H"),
            spec: spec(150.0, dec, "NIR_H", Some(1001), 2),
        },
        Tile {
            folder: "MER/1002",
            name: demo_tile_name(1002, "VIS"),
            spec: spec(ra2, dec, "VIS", None, 3),
        },
        Tile {
            folder: "",
            name: "top.fits".into(),
            spec: spec(10.0, -30.0, "VIS", None, 4),
        },
    ]
}

/// Writes the volume: the tiles, a README, a text file, a FITS table, a broken FITS file and
/// a link to an image outside the volume.
fn write_volume(root: &Path, outside: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for tile in tiles() {
        let folder = root.join(tile.folder);
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join(&tile.name);
        write_tile(&path, &tile.spec).unwrap();
        paths.push(path);
    }
    std::fs::write(root.join("README"), "Test tiles\nsecond line\n").unwrap();
    std::fs::write(root.join("MER/notes.txt"), "not FITS").unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))],
    )
    .unwrap();
    let mut table = Vec::new();
    insitu_engine::fits::write_bintable(&mut table, &schema, &[batch]).unwrap();
    std::fs::write(root.join("MER/catalogue.fits"), table).unwrap();
    let mut broken = format!("{:80}", "SIMPLE  =                    T").into_bytes();
    broken.extend_from_slice(b"BITPIX  = garbage and no END card");
    std::fs::write(root.join("MER/1002/broken.fits"), broken).unwrap();
    let elsewhere = outside.join("elsewhere.fits");
    write_tile(&elsewhere, &spec(200.0, 10.0, "VIS", Some(9), 5)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("MER/link.fits")).unwrap();
    std::os::unix::fs::symlink(outside, root.join("MER/outside")).unwrap();
    paths
}

/// One expected row of the tile index.
struct Expected {
    folder: String,
    name: String,
    tile: Option<i64>,
    path: PathBuf,
    spec: TileSpec,
}

fn config(dir: &Path, volumes: Vec<(String, PathBuf)>, demo: bool) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".into(),
        tables: vec![],
        volumes,
        cache_dir: dir.join("cache"),
        state_dir: dir.join("state"),
        tap: TapConfig::default(),
        async_workers: 1,
        demo,
        launcher: None,
    }
}

async fn call(app: &Router, uri: &str, accept: Option<&str>) -> (StatusCode, String, String) {
    let mut request = Request::get(uri).header(header::HOST, "tap.test");
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let mime = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, mime, String::from_utf8(body.to_vec()).unwrap())
}

/// Runs an ADQL query as CSV; rows as string fields (no field of these tests holds a comma).
async fn query(app: &Router, adql: &str, leak: &Path) -> Vec<Vec<String>> {
    let uri = format!(
        "/tap/sync?LANG=ADQL&RESPONSEFORMAT=csv&QUERY={}",
        serde_urlencoded::to_string([("", adql)])
            .unwrap()
            .trim_start_matches('=')
    );
    let (status, _, body) = call(app, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{adql}: {body}");
    assert_no_leak(&body, leak);
    body.lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

fn assert_no_leak(body: &str, dir: &Path) {
    let dir = dir.to_str().unwrap();
    assert!(!body.contains(dir), "a response shows {dir}: {body}");
}

/// The image centre by the engine's WCS, read back from the written file.
fn centre(path: &Path) -> (f64, f64) {
    let file = FitsFile::open(path).unwrap();
    let wcs = Wcs::from_header(file.header(0).unwrap()).unwrap();
    let n = (NPIX as f64 - 1.0) / 2.0;
    wcs.pixel_to_sky(n, n).unwrap()
}

#[tokio::test]
async fn tile_index_volumes_listing_and_obscore() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("volume");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let paths = write_volume(&root, &outside);
    let config = config(dir.path(), vec![("v".into(), root.clone())], false);
    let (app, tables) = app(&config).await.unwrap();
    assert_eq!(tables, 2, "v.mosaic_product and ivoa.obscore");

    let rows = query(
        &app,
        "SELECT tile_index, ra, dec, filter_name, datalabs_path, file_name \
         FROM v.mosaic_product ORDER BY datalabs_path, file_name",
        dir.path(),
    )
    .await;
    // Expected: sorted the same way, from what was written.
    let mut want: Vec<Expected> = tiles()
        .into_iter()
        .zip(&paths)
        .map(|(t, p)| Expected {
            folder: if t.folder.is_empty() {
                "v".to_string()
            } else {
                format!("v/{}", t.folder)
            },
            // TILEID, else the digits after TILE in the name, else nothing.
            tile: t.spec.tile_id.or((t.folder == "MER/1002").then_some(1002)),
            name: t.name,
            path: p.clone(),
            spec: t.spec,
        })
        .collect();
    want.sort_by(|a, b| (&a.folder, &a.name).cmp(&(&b.folder, &b.name)));
    assert_eq!(rows.len(), want.len(), "{rows:?}");
    for (row, w) in rows.iter().zip(&want) {
        let tile_text = w.tile.map(|t| t.to_string()).unwrap_or_default();
        assert_eq!(row[0], tile_text, "{row:?}");
        let (ra, dec): (f64, f64) = (row[1].parse().unwrap(), row[2].parse().unwrap());
        let (wra, wdec) = centre(&w.path);
        assert!(
            (ra - wra).abs() < 1e-9 && (dec - wdec).abs() < 1e-9,
            "{row:?}"
        );
        // CRPIX is the central pixel, so the centre is CRVAL itself.
        assert!(
            (ra - w.spec.ra).abs() < 1e-9 && (dec - w.spec.dec).abs() < 1e-9,
            "{row:?}"
        );
        assert_eq!(row[3], w.spec.filter);
        assert_eq!(row[4], w.folder);
        assert_eq!(row[5], w.name);
    }

    // The other columns, for one tile.
    let rows = query(
        &app,
        "SELECT naxis1, naxis2, bitpix, instrument_name, s_region FROM v.mosaic_product \
         WHERE tile_index = 1001 AND filter_name = 'NIR_H'",
        dir.path(),
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][..4], ["64", "64", "-32", "NISP"]);
    let polygon: Vec<&str> = rows[0][4].split(' ').collect();
    assert_eq!(polygon[..2], ["POLYGON", "ICRS"]);
    assert_eq!(polygon.len(), 10);

    // A cone around a position inside tile 1001, closer to its centre than to any other.
    let (ra, dec) = (150.0 + 1.0 / 3600.0, 2.0 - 1.0 / 3600.0);
    let inside = Wcs::from_header(FitsFile::open(&paths[0]).unwrap().header(0).unwrap())
        .unwrap()
        .sky_to_pixel(ra, dec)
        .unwrap();
    assert!((0.0..NPIX as f64).contains(&inside.0) && (0.0..NPIX as f64).contains(&inside.1));
    let rows = query(
        &app,
        &format!(
            "SELECT tile_index, filter_name FROM v.mosaic_product \
             WHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE({ra}, {dec}, {})) ORDER BY filter_name",
            4.0 / 3600.0
        ),
        dir.path(),
    )
    .await;
    assert_eq!(rows, [["1001", "NIR_H"], ["1001", "VIS"]]);

    // ObsCore: one row per image.
    let rows = query(
        &app,
        "SELECT obs_collection, obs_publisher_did, dataproduct_type, access_format, s_xel1, \
         em_xel, o_ucd, access_estsize FROM ivoa.obscore ORDER BY obs_publisher_did",
        dir.path(),
    )
    .await;
    let mut dids: Vec<String> = want
        .iter()
        .map(|w| {
            let rel = w.path.strip_prefix(&root).unwrap().to_str().unwrap();
            format!("ivo://insitu/v?{rel}")
        })
        .collect();
    dids.sort();
    assert_eq!(rows.len(), 4);
    for (row, did) in rows.iter().zip(&dids) {
        let size = std::fs::metadata(root.join(did.split_once('?').unwrap().1))
            .unwrap()
            .len();
        assert_eq!(
            row,
            &[
                "v",
                did.as_str(),
                "image",
                "application/fits",
                "64",
                "1",
                "phot.flux",
                &size.div_ceil(1024).to_string()
            ]
        );
    }

    // /volumes, JSON by parameter or by Accept, HTML otherwise.
    let size: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    for (uri, accept) in [
        ("/volumes?format=json", None),
        ("/volumes", Some("application/json")),
    ] {
        let (status, mime, body) = call(&app, uri, accept).await;
        assert_eq!(status, StatusCode::OK);
        assert!(mime.starts_with("application/json"), "{mime}");
        assert_no_leak(&body, dir.path());
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"volumes": [{
                "name": "v",
                "description": "Test tiles",
                "files": 4,
                "size_bytes": size,
                "bands": ["NIR_H", "VIS"],
                "skipped": 2,
                "table": "v.mosaic_product",
            }]})
        );
    }
    let (status, mime, body) = call(&app, "/volumes", Some("text/html")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(mime.starts_with("text/html"), "{mime}");
    assert!(
        body.contains("<td>v</td>") && body.contains("NIR_H, VIS"),
        "{body}"
    );
    assert_no_leak(&body, dir.path());

    // TAP_SCHEMA carries the units and UCDs.
    let rows = query(
        &app,
        "SELECT column_name, unit, ucd FROM tap_schema.columns \
         WHERE table_name = 'v.mosaic_product' AND column_name IN ('ra', 'dec') \
         ORDER BY column_name",
        dir.path(),
    )
    .await;
    assert_eq!(
        rows,
        [
            ["dec", "deg", "pos.eq.dec;meta.main"],
            ["ra", "deg", "pos.eq.ra;meta.main"]
        ]
    );
}

#[tokio::test]
async fn the_cache_rereads_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("volume");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let paths = write_volume(&root, &outside);
    let cache = dir.path().join("cache");
    // Four images, a table and a broken file; the text file and the links are not candidates.
    let first = scan_volume("v", &root, &cache).unwrap();
    assert_eq!(
        (first.report.files, first.report.read, first.report.reused),
        (6, 6, 0)
    );
    assert_eq!((first.images.len(), first.report.skipped), (4, 2));
    let cache_file = cache.join("volumes/v.json");
    assert!(cache_file.is_file());

    let second = scan_volume("v", &root, &cache).unwrap();
    assert_eq!((second.report.read, second.report.reused), (0, 6));
    assert_eq!(second.images, first.images);

    // Touched (same bytes, a new mtime): read again, and only that one.
    std::fs::File::options()
        .write(true)
        .open(&paths[0])
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    let touched = scan_volume("v", &root, &cache).unwrap();
    assert_eq!((touched.report.read, touched.report.reused), (1, 5));
    assert_eq!(touched.images, first.images);

    // Rewritten larger: read again, with its new size.
    let mut bigger = tiles().remove(2).spec;
    bigger.npix = 96;
    write_tile(&paths[2], &bigger).unwrap();
    let changed = scan_volume("v", &root, &cache).unwrap();
    assert_eq!((changed.report.read, changed.report.reused), (1, 5));
    let row = changed
        .images
        .iter()
        .find(|i| root.join(&i.relative_path) == paths[2])
        .unwrap();
    assert_eq!((row.naxis1, row.naxis2), (96, 96));

    // Deleted: dropped, nothing read.
    std::fs::remove_file(&paths[3]).unwrap();
    let removed = scan_volume("v", &root, &cache).unwrap();
    assert_eq!(
        (
            removed.report.read,
            removed.report.removed,
            removed.images.len()
        ),
        (0, 1, 3)
    );

    // A damaged cache is ignored: everything is read again.
    std::fs::write(&cache_file, b"{\"version\": 1, \"entr").unwrap();
    let rescanned = scan_volume("v", &root, &cache).unwrap();
    assert_eq!((rescanned.report.read, rescanned.report.reused), (5, 0));
    assert_eq!(rescanned.images, removed.images);
    // And rewritten whole.
    let again = scan_volume("v", &root, &cache).unwrap();
    assert_eq!(again.report.read, 0);

    // The scan never wrote into the volume.
    let mut names: Vec<String> = walk_names(&root);
    names.sort();
    assert_eq!(
        names,
        [
            "MER/1001/".to_string() + &demo_tile_name(1001, "NIR_H"),
            "MER/1001/".to_string() + &demo_tile_name(1001, "VIS"),
            "MER/1002/".to_string() + &demo_tile_name(1002, "VIS"),
            "MER/1002/broken.fits".to_string(),
            "MER/catalogue.fits".to_string(),
            "MER/link.fits".to_string(),
            "MER/notes.txt".to_string(),
            "MER/outside".to_string(),
            "README".to_string(),
        ]
    );
}

fn walk_names(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(root).unwrap().to_owned();
                out.push(rel.to_str().unwrap().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn bad_volumes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let error = app(&config(dir.path(), vec![("v".into(), missing)], false))
        .await
        .err()
        .unwrap();
    assert!(format!("{error:#}").contains("volume v"), "{error:#}");
    std::fs::create_dir_all(dir.path().join("ok")).unwrap();
    for name in ["ivoa", "1v", "a-b"] {
        let error = app(&config(
            dir.path(),
            vec![(name.into(), dir.path().join("ok"))],
            false,
        ))
        .await
        .err()
        .unwrap();
        assert!(format!("{error:#}").contains(name), "{error:#}");
    }
}

#[tokio::test]
async fn the_demo_serves_the_euclid_demo_volume() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(&config(dir.path(), vec![], true)).await.unwrap();
    let rows = query(
        &app,
        "SELECT tile_index, filter_name, naxis1, datalabs_path, file_name \
         FROM euclid_demo.mosaic_product ORDER BY tile_index, filter_name",
        dir.path(),
    )
    .await;
    assert_eq!(rows.len(), 12, "{rows:?}");
    for (i, row) in rows.iter().enumerate() {
        let tile = 102_018_211 + (i / 3) as i64;
        let band = ["NIR_H", "NIR_Y", "VIS"][i % 3];
        assert_eq!(row[0], tile.to_string());
        assert_eq!(row[1], band);
        assert_eq!(row[2], "512");
        assert_eq!(row[3], format!("euclid_demo/MER/{tile}"));
        assert_eq!(row[4], demo_tile_name(tile, band));
    }
    let total: u64 = walk_names(&dir.path().join("cache/demo-volume-v2"))
        .iter()
        .map(|n| {
            std::fs::metadata(dir.path().join("cache/demo-volume-v2").join(n))
                .unwrap()
                .len()
        })
        .sum();
    assert!(total < 16 << 20, "{total} bytes");
    let (_, _, body) = call(&app, "/volumes?format=json", None).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["volumes"][0]["name"], "euclid_demo");
    assert_eq!(json["volumes"][0]["files"], 12);
    assert_eq!(
        json["volumes"][0]["bands"],
        serde_json::json!(["NIR_H", "NIR_Y", "VIS"])
    );
}
