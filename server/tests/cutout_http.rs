//! `GET /cutout` through the service's router (no port bound), over a volume of 2×2 adjacent
//! tiles (each with its own tangent point, as MER tiles) in two bands, plus a third band on
//! one tile only: a cutout inside one tile equals the engine's `Cutout2D` cut of it; a cutout
//! across the block's corner is stitched, every pixel the nearest pixel of the tile holding
//! its sky position (found here with each tile's WCS); one HDU per band; clear errors.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use insitu_engine::cutout::{self, Center, CutoutRequest, Mode, Size};
use insitu_engine::fits::{FitsFile, Header};
use insitu_engine::wcs::Wcs;
use insitu_server::serve_command::app;
use insitu_server::serve_config::ServeConfig;
use insitu_server::tap::TapConfig;
use insitu_server::volumes::{demo_tile_name, write_tile, TileSpec};
use tower::ServiceExt;

const NPIX: usize = 64;
/// Tile side, degrees (0.1″ pixels).
const SIDE: f64 = NPIX as f64 * 0.1 / 3600.0;
/// Centre of the 2×2 block.
const CENTRE: (f64, f64) = (150.0, 30.0);

/// One written tile: its id, band and path.
struct Tile {
    id: i64,
    band: &'static str,
    path: PathBuf,
}

/// Tiles 1..4 in VIS and NIR_H (tile 1 south-east, 2 south-west, 3 north-east, 4
/// north-west), and tile 1 in NIR_Y too.
fn write_volume(root: &Path) -> Vec<Tile> {
    let mut tiles = Vec::new();
    for j in 0..2 {
        for i in 0..2 {
            let id = 1 + (2 * j + i) as i64;
            let dec = CENTRE.1 + (j as f64 - 0.5) * SIDE;
            let ra = CENTRE.0 - (i as f64 - 0.5) * SIDE / dec.to_radians().cos();
            let mut bands = vec!["VIS", "NIR_H"];
            if id == 1 {
                bands.push("NIR_Y");
            }
            for (b, band) in bands.into_iter().enumerate() {
                let folder = root.join(format!("MER/{id}"));
                std::fs::create_dir_all(&folder).unwrap();
                let path = folder.join(demo_tile_name(id, band));
                let spec = TileSpec {
                    npix: NPIX,
                    ra,
                    dec,
                    filter: band.into(),
                    instrument: "TEST".into(),
                    tile_id: Some(id),
                    seed: 10 * id as u64 + b as u64,
                };
                write_tile(&path, &spec).unwrap();
                tiles.push(Tile { id, band, path });
            }
        }
    }
    tiles
}

async fn serve(dir: &Path) -> (Router, Vec<Tile>) {
    let root = dir.join("volume");
    let tiles = write_volume(&root);
    let config = ServeConfig {
        listen: "127.0.0.1:0".into(),
        tables: vec![],
        volumes: vec![("v".into(), root)],
        cache_dir: dir.join("cache"),
        state_dir: dir.join("state"),
        tap: TapConfig::default(),
        async_workers: 1,
        demo: false,
        launcher: None,
    };
    (app(&config).await.unwrap().0, tiles)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let request = Request::get(uri)
        .header(header::HOST, "cutout.test")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let mime = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, mime, body.to_vec())
}

/// One HDU of a cutout answer: its header and physical pixel values.
struct Hdu {
    header: Header,
    width: usize,
    height: usize,
    data: Vec<f32>,
}

/// Reads a FITS answer back (through a file, as a client would save it).
fn read_fits(bytes: &[u8], dir: &Path) -> Vec<Hdu> {
    let path = dir.join("answer.fits");
    std::fs::write(&path, bytes).unwrap();
    let file = FitsFile::open(&path).unwrap();
    assert_eq!(file.header(0).unwrap().integer("NAXIS"), Some(0));
    (1..file.hdu_count())
        .map(|hdu| {
            let image = file.image(hdu).unwrap();
            let mut data = vec![0.0; image.width() * image.height()];
            for y in 0..image.height() {
                image.to_physical(
                    image.row(0, y).unwrap(),
                    &mut data[y * image.width()..(y + 1) * image.width()],
                );
            }
            Hdu {
                header: image.header().clone(),
                width: image.width(),
                height: image.height(),
                data,
            }
        })
        .collect()
}

fn did(tile: &Tile) -> String {
    format!(
        "ivo://insitu/v?MER/{}/{}",
        tile.id,
        tile.path.file_name().unwrap().to_str().unwrap()
    )
}

fn uri(ra: f64, dec: f64, rest: &str) -> String {
    format!("/cutout?ra={ra}&dec={dec}&{rest}")
}

#[tokio::test]
async fn a_cutout_inside_one_tile_is_cutout2d_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (app, tiles) = serve(dir.path()).await;
    let tile = tiles.iter().find(|t| t.id == 4 && t.band == "VIS").unwrap();
    let file = FitsFile::open(&tile.path).unwrap();
    let image = file.image(0).unwrap();
    let wcs = Wcs::from_header(image.header()).unwrap();
    // Off a pixel centre, away from the edges.
    let (ra, dec) = wcs.pixel_to_sky(30.3, 20.7).unwrap();
    for (size, engine_size) in [
        ("2.5arcsec", Size::Arcsec(2.5)),
        ("2", Size::Arcsec(2.0)),
        ("16px", Size::Pixels(16)),
    ] {
        let (status, mime, body) = get(&app, &uri(ra, dec, &format!("size={size}&band=vis"))).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(mime, "application/fits");
        let hdus = read_fits(&body, dir.path());
        assert_eq!(hdus.len(), 1);
        let hdu = &hdus[0];
        let want = cutout::cut(
            &image,
            Some(&wcs),
            &CutoutRequest {
                center: Center::Sky { ra, dec },
                size: engine_size,
                mode: Mode::Partial,
                planes: None,
            },
        )
        .unwrap();
        assert_eq!(
            (hdu.width, hdu.height),
            (want.window.width, want.window.height)
        );
        let got: Vec<u8> = hdu.data.iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(got, want.data, "{size}");
        for key in ["CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD2_2"] {
            assert_eq!(hdu.header.real(key), want.header.real(key), "{key}");
        }
        assert_eq!(hdu.header.string("EXTNAME"), Some("VIS"));
        assert_eq!(hdu.header.integer("BITPIX"), Some(-32));
        assert_eq!(hdu.header.string("INTILE1"), Some(did(tile).as_str()));
        assert!(!hdu.header.contains("INTILE2"));
        assert!(hdu.data.iter().all(|v| v.is_finite()));
    }
}

/// The tile holding a sky position and its nearest pixel's value, found with each tile's
/// own WCS (the nearest centre when several hold it).
fn expected_pixel(tiles: &[(Wcs, FitsFile)], ra: f64, dec: f64) -> Option<(usize, f32)> {
    let mut best: Option<(f64, usize, f32)> = None;
    for (k, (wcs, file)) in tiles.iter().enumerate() {
        let image = file.image(0).unwrap();
        let (x, y) = wcs.sky_to_pixel(ra, dec)?;
        let (ix, iy) = ((x + 0.5).floor(), (y + 0.5).floor());
        if ix < 0.0 || iy < 0.0 || ix >= image.width() as f64 || iy >= image.height() as f64 {
            continue;
        }
        let c = (image.width() as f64 - 1.0) / 2.0;
        let (cra, cdec) = wcs.pixel_to_sky(c, c).unwrap();
        let d = (cra - ra).to_radians().cos() * cdec.to_radians().cos() * dec.to_radians().cos()
            + cdec.to_radians().sin() * dec.to_radians().sin();
        if best.is_none_or(|b| d > b.0) {
            let row = image.row(0, iy as usize).unwrap();
            let mut v = [0.0];
            image.to_physical(&row[ix as usize * 4..ix as usize * 4 + 4], &mut v);
            best = Some((d, k, v[0]));
        }
    }
    best.map(|(_, k, v)| (k, v))
}

#[tokio::test]
async fn a_cutout_across_the_corner_is_stitched_from_four_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let (app, tiles) = serve(dir.path()).await;
    // A little inside tile 3 (north-east), so it gives the grid.
    let (ra, dec) = (
        CENTRE.0 + 0.13 / 3600.0 / CENTRE.1.to_radians().cos(),
        CENTRE.1 + 0.21 / 3600.0,
    );
    let (status, _, body) = get(&app, &uri(ra, dec, "size=40px&band=NIR_H")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let hdus = read_fits(&body, dir.path());
    assert_eq!(hdus.len(), 1);
    let hdu = &hdus[0];
    assert_eq!((hdu.width, hdu.height), (40, 40));
    let band: Vec<&Tile> = tiles.iter().filter(|t| t.band == "NIR_H").collect();
    let opened: Vec<(Wcs, FitsFile)> = band
        .iter()
        .map(|t| {
            let file = FitsFile::open(&t.path).unwrap();
            (Wcs::from_header(file.header(0).unwrap()).unwrap(), file)
        })
        .collect();
    // Every pixel: its sky position by the cutout's own WCS, then the tile holding it.
    let wcs = Wcs::from_header(&hdu.header).unwrap();
    let mut from = [0usize; 4];
    for j in 0..hdu.height {
        for i in 0..hdu.width {
            let (pra, pdec) = wcs.pixel_to_sky(i as f64, j as f64).unwrap();
            let (k, want) = expected_pixel(&opened, pra, pdec).unwrap();
            let got = hdu.data[j * hdu.width + i];
            assert_eq!(got.to_bits(), want.to_bits(), "pixel ({i}, {j})");
            from[k] += 1;
        }
    }
    assert!(hdu.data.iter().all(|v| v.is_finite()));
    assert!(from.iter().all(|&n| n > 0), "{from:?}");
    // The grid tile first, then the three others.
    let listed: Vec<&str> = (1..=5)
        .filter_map(|n| hdu.header.string(&format!("INTILE{n}")))
        .collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(listed[0], did(band[2]));
    let mut rest: Vec<String> = listed[1..].iter().map(|s| s.to_string()).collect();
    rest.sort();
    let mut want: Vec<String> = [band[0], band[1], band[3]].iter().map(|t| did(t)).collect();
    want.sort();
    assert_eq!(rest, want);
    assert!(!String::from_utf8_lossy(&body).contains(dir.path().to_str().unwrap()));
}

#[tokio::test]
async fn one_hdu_per_band() {
    let dir = tempfile::tempdir().unwrap();
    let (app, tiles) = serve(dir.path()).await;
    let tile = tiles.iter().find(|t| t.id == 1 && t.band == "VIS").unwrap();
    let file = FitsFile::open(&tile.path).unwrap();
    let wcs = Wcs::from_header(file.header(0).unwrap()).unwrap();
    let (ra, dec) = wcs.pixel_to_sky(20.0, 20.0).unwrap();

    // Asked for: in the order asked, names as the tiles spell them.
    let (status, _, body) = get(&app, &uri(ra, dec, "size=1&band=nir_h,VIS")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let hdus = read_fits(&body, dir.path());
    let names: Vec<&str> = hdus
        .iter()
        .map(|h| h.header.string("EXTNAME").unwrap())
        .collect();
    assert_eq!(names, ["NIR_H", "VIS"]);
    // Different tiles, different noise.
    assert_ne!(hdus[0].data, hdus[1].data);

    // By default every band at the position: tile 1 has three, tile 4 two.
    let (_, _, body) = get(&app, &uri(ra, dec, "size=1")).await;
    let names: Vec<String> = read_fits(&body, dir.path())
        .iter()
        .map(|h| h.header.string("EXTNAME").unwrap().to_string())
        .collect();
    assert_eq!(names, ["NIR_H", "NIR_Y", "VIS"]);
    let tile4 = tiles.iter().find(|t| t.id == 4).unwrap();
    let file4 = FitsFile::open(&tile4.path).unwrap();
    let (ra4, dec4) = Wcs::from_header(file4.header(0).unwrap())
        .unwrap()
        .pixel_to_sky(40.0, 40.0)
        .unwrap();
    let (_, _, body) = get(&app, &uri(ra4, dec4, "size=1&volume=V")).await;
    assert_eq!(read_fits(&body, dir.path()).len(), 2);
}

#[tokio::test]
async fn bad_requests_are_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = serve(dir.path()).await;
    let (ra, dec) = CENTRE;
    let at = |rest: &str| uri(ra + 1e-4, dec + 1e-4, rest);
    let cases: Vec<(String, StatusCode, &str)> = vec![
        ("/cutout".into(), StatusCode::BAD_REQUEST, "ra is missing"),
        (at("band=VIS"), StatusCode::BAD_REQUEST, "size is missing"),
        (at("size=abc"), StatusCode::BAD_REQUEST, "not a size"),
        (at("size=0"), StatusCode::BAD_REQUEST, "not a size"),
        (at("size=40000px"), StatusCode::BAD_REQUEST, "whole number"),
        (at("size=1e6"), StatusCode::BAD_REQUEST, "between 1 and"),
        (
            at("size=3000arcsec&band=VIS,NIR_H"),
            StatusCode::BAD_REQUEST,
            "bytes",
        ),
        (
            "/cutout?ra=1&dec=95&size=1".into(),
            StatusCode::BAD_REQUEST,
            "not a position",
        ),
        (
            "/cutout?ra=nan&dec=0&size=1".into(),
            StatusCode::BAD_REQUEST,
            "not a number",
        ),
        (
            at("size=1&radius=3"),
            StatusCode::BAD_REQUEST,
            "unknown parameter",
        ),
        (
            at("size=1&format=png"),
            StatusCode::BAD_REQUEST,
            "1 band (grey) or 3",
        ),
        (
            at("size=1&format=tiff"),
            StatusCode::BAD_REQUEST,
            "not one of",
        ),
        (
            at("size=1&band=VIS,"),
            StatusCode::BAD_REQUEST,
            "empty name",
        ),
        (
            "/cutout?ra=10&dec=-20&size=1".into(),
            StatusCode::NOT_FOUND,
            "no tile holds",
        ),
        (
            at("size=1&band=NIR_Y"),
            StatusCode::NOT_FOUND,
            "no tile of band NIR_Y",
        ),
        (
            at("size=1&band=VIS&volume=w"),
            StatusCode::NOT_FOUND,
            "no volume",
        ),
    ];
    for (uri, status, says) in cases {
        let (got, mime, body) = get(&app, &uri).await;
        let text = String::from_utf8(body).unwrap();
        assert_eq!(got, status, "{uri}: {text}");
        assert_eq!(mime, "application/json", "{uri}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let message = json["error"].as_str().unwrap();
        assert!(message.contains(says), "{uri}: {message}");
        assert!(!message.contains(dir.path().to_str().unwrap()), "{message}");
    }
}

/// A FITS file of one float32 image: `cards` (card lines, END added) and `w × h` values.
fn write_image(path: &Path, cards: &str, w: usize, h: usize, value: impl Fn(usize, usize) -> f32) {
    let header = Header::from_card_lines(&format!(
        "SIMPLE  = T\nBITPIX  = -32\nNAXIS   = 2\nNAXIS1  = {w}\nNAXIS2  = {h}\n{cards}END"
    ))
    .unwrap();
    let mut bytes = header.to_bytes();
    for y in 0..h {
        for x in 0..w {
            bytes.extend_from_slice(&value(x, y).to_be_bytes());
        }
    }
    bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn tiles_cut_from_one_mosaic_stitch_back_into_its_cutout() {
    // A 128² mosaic, cut into four 64² tiles on its own grid (CRPIX shifted by whole pixels):
    // the truth of a stitched cutout is then Cutout2D of the mosaic itself.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("volume");
    std::fs::create_dir_all(&root).unwrap();
    let wcs_cards = |crpix1: f64, crpix2: f64| {
        format!(
            "CTYPE1  = 'RA---TAN'\nCTYPE2  = 'DEC--TAN'\nCRVAL1  = 150.0\nCRVAL2  = 30.0\n\
             CRPIX1  = {crpix1:.1}\nCRPIX2  = {crpix2:.1}\nCD1_1   = {:e}\nCD2_2   = {:e}\n",
            -0.1 / 3600.0,
            0.1 / 3600.0
        )
    };
    let value = |x: usize, y: usize| 1000.0 * y as f32 + x as f32 + 0.5;
    let mosaic = dir.path().join("mosaic.fits");
    write_image(&mosaic, &wcs_cards(64.5, 64.5), 128, 128, value);
    for (id, (ti, tj)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
        let cards = format!(
            "{}FILTER  = 'VIS'\nTILEID  = {}\n",
            wcs_cards(64.5 - 64.0 * ti as f64, 64.5 - 64.0 * tj as f64),
            id + 1
        );
        let (x0, y0) = (64 * ti, 64 * tj);
        write_image(
            &root.join(format!("tile{}.fits", id + 1)),
            &cards,
            64,
            64,
            |x, y| value(x0 + x, y0 + y),
        );
    }
    let config = ServeConfig {
        listen: "127.0.0.1:0".into(),
        tables: vec![],
        volumes: vec![("m".into(), root)],
        cache_dir: dir.path().join("cache"),
        state_dir: dir.path().join("state"),
        tap: TapConfig::default(),
        async_workers: 1,
        demo: false,
        launcher: None,
    };
    let app = app(&config).await.unwrap().0;
    let file = FitsFile::open(&mosaic).unwrap();
    let image = file.image(0).unwrap();
    let wcs = Wcs::from_header(image.header()).unwrap();
    // Off pixel centres, near the point the four tiles share, and towards each tile.
    for (px, py) in [(66.3, 61.8), (60.6, 60.2), (63.9, 70.4), (70.1, 66.6)] {
        let (ra, dec) = wcs.pixel_to_sky(px, py).unwrap();
        let (status, _, body) = get(&app, &uri(ra, dec, "size=40px&band=VIS")).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let hdus = read_fits(&body, dir.path());
        let hdu = &hdus[0];
        let want = cutout::cut(
            &image,
            Some(&wcs),
            &CutoutRequest {
                center: Center::Sky { ra, dec },
                size: Size::Pixels(40),
                mode: Mode::Partial,
                planes: None,
            },
        )
        .unwrap();
        assert_eq!((hdu.width, hdu.height), (40, 40));
        let got: Vec<u8> = hdu.data.iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(got, want.data, "at mosaic pixel ({px}, {py})");
        for key in ["CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2"] {
            let (a, b) = (
                hdu.header.real(key).unwrap(),
                want.header.real(key).unwrap(),
            );
            assert!((a - b).abs() < 1e-9, "{key}: {a} != {b}");
        }
        let tiles = (1..=5)
            .filter(|n| hdu.header.contains(&format!("INTILE{n}")))
            .count();
        assert_eq!(tiles, 4, "the cutout crosses all four tiles");
    }
}
