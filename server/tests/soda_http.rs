//! SODA 1.0, DataLink and the Euclid cutout form through the service's router (no port
//! bound), on a volume of tiles written here: every POS shape, CIRCLE, POLYGON and SUB
//! (checked against cfitsio's own image sections), 204 on no overlap, the errors with their
//! labels, async jobs with one result per region, VOSI, DataLink documents, the file links
//! with byte ranges and ObsCore's access_url. Pixels are read back with cfitsio (the `fitsio`
//! crate), not with insitu's reader. Real clients (pyvo, astroquery) and the astropy oracle
//! are in `server/tests/tap/test_soda_clients.py`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use insitu_engine::fits::{Card, Header, Value};
use insitu_engine::wcs::Wcs;
use insitu_server::serve_command::app;
use insitu_server::serve_config::ServeConfig;
use insitu_server::tap::TapConfig;
use insitu_server::volumes::{demo_tile_name, write_tile, TileSpec};
use insitu_server::votable;
use tower::ServiceExt;

const NPIX: usize = 64;
const PIXEL: f64 = 0.1 / 3600.0;
const HOST: &str = "soda.test";

struct Volume {
    _dir: tempfile::TempDir,
    app: Router,
    root: PathBuf,
    /// `MER/1001/<VIS tile>`, 64² float32 at (150, 2).
    tile: String,
    /// `mef/sci.fits`: an empty primary HDU, SCI (int16, scaled, with a WCS), WHT (float32).
    mef: String,
    /// Where the service keeps its own files (must never show in a response).
    dir: PathBuf,
}

impl Volume {
    fn tile_path(&self) -> PathBuf {
        self.root.join(&self.tile)
    }

    fn tile_wcs(&self) -> Wcs {
        let file = insitu_engine::fits::FitsFile::open(self.tile_path()).unwrap();
        Wcs::from_header(file.header(0).unwrap()).unwrap()
    }
}

const MEF_W: usize = 40;
const MEF_H: usize = 30;

fn card(k: &str, v: Value) -> Card {
    Card::new(k, v, "")
}

/// A multi-extension file: the primary HDU has no data; SCI and WHT follow.
fn write_mef(path: &Path) {
    let mut bytes = Vec::new();
    let mut primary = Header::default();
    for c in [
        card("SIMPLE", Value::Logical(true)),
        card("BITPIX", Value::Integer(8)),
        card("NAXIS", Value::Integer(0)),
        card("EXTEND", Value::Logical(true)),
    ] {
        primary.push(c);
    }
    bytes.extend(primary.to_bytes());
    let image = |extname: &str, bitpix: i64, wcs: bool| {
        let mut h = Header::default();
        for c in [
            card("XTENSION", Value::String("IMAGE".into())),
            card("BITPIX", Value::Integer(bitpix)),
            card("NAXIS", Value::Integer(2)),
            card("NAXIS1", Value::Integer(MEF_W as i64)),
            card("NAXIS2", Value::Integer(MEF_H as i64)),
            card("PCOUNT", Value::Integer(0)),
            card("GCOUNT", Value::Integer(1)),
            card("EXTNAME", Value::String(extname.into())),
        ] {
            h.push(c);
        }
        if wcs {
            for c in [
                card("CTYPE1", Value::String("RA---TAN".into())),
                card("CTYPE2", Value::String("DEC--TAN".into())),
                card("CRVAL1", Value::Real(200.0)),
                card("CRVAL2", Value::Real(-30.0)),
                card("CRPIX1", Value::Real(20.5)),
                card("CRPIX2", Value::Real(15.5)),
                card("CD1_1", Value::Real(-1e-4)),
                card("CD2_2", Value::Real(1e-4)),
                card("BSCALE", Value::Real(0.5)),
                card("BZERO", Value::Real(100.0)),
            ] {
                h.push(c);
            }
        }
        h.to_bytes()
    };
    bytes.extend(image("SCI", 16, true));
    for y in 0..MEF_H {
        for x in 0..MEF_W {
            bytes.extend(((x + 100 * y) as i16).to_be_bytes());
        }
    }
    bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
    bytes.extend(image("WHT", -32, false));
    for y in 0..MEF_H {
        for x in 0..MEF_W {
            bytes.extend((x as f32 * 0.25 - y as f32).to_be_bytes());
        }
    }
    bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
    std::fs::write(path, bytes).unwrap();
}

async fn volume(base_url: Option<&str>) -> Volume {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("volume");
    let tile = format!("MER/1001/{}", demo_tile_name(1001, "VIS"));
    std::fs::create_dir_all(root.join("MER/1001")).unwrap();
    std::fs::create_dir_all(root.join("mef")).unwrap();
    write_tile(
        &root.join(&tile),
        &TileSpec {
            npix: NPIX,
            ra: 150.0,
            dec: 2.0,
            filter: "VIS".into(),
            instrument: "VIS".into(),
            tile_id: Some(1001),
            seed: 7,
        },
    )
    .unwrap();
    write_mef(&root.join("mef/sci.fits"));
    // A file outside the volume, and a link to it inside: neither may be served.
    let outside = dir.path().join("outside.fits");
    write_mef(&outside);
    std::os::unix::fs::symlink(&outside, root.join("mef/link.fits")).unwrap();
    let config = ServeConfig {
        listen: "127.0.0.1:0".into(),
        tables: vec![],
        volumes: vec![("v".into(), root.clone())],
        cache_dir: dir.path().join("cache"),
        state_dir: dir.path().join("state"),
        tap: TapConfig {
            base_url: base_url.map(str::to_string),
            ..TapConfig::default()
        },
        async_workers: 1,
        demo: false,
        launcher: None,
    };
    let (app, _) = app(&config).await.unwrap();
    Volume {
        app,
        root,
        tile,
        mef: "mef/sci.fits".into(),
        dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    mime: String,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(v: &Volume, request: Request<Body>) -> Reply {
    let response = v.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let mime = headers
        .get(header::CONTENT_TYPE)
        .map(|m| m.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let reply = Reply {
        status,
        mime,
        headers,
        body,
    };
    // The server's own folders never reach a client.
    let text = reply.text();
    assert!(
        !text.contains(&v.dir.display().to_string()),
        "a response shows a server path: {text}"
    );
    reply
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap()
}

fn query(path: &str, pairs: &[(&str, &str)]) -> String {
    format!("{path}?{}", serde_urlencoded::to_string(pairs).unwrap())
}

fn form(uri: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    Request::post(uri)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(serde_urlencoded::to_string(pairs).unwrap()))
        .unwrap()
}

/// A FITS image as cfitsio reads it: axes, BITPIX, header reals and physical values.
struct Fits {
    width: usize,
    height: usize,
    bitpix: i64,
    crpix: (f64, f64),
    data: Vec<f64>,
}

/// Reads HDU `hdu` of `spec`: a path, possibly with a cfitsio extended-syntax suffix such as
/// `[SCI][1:10,*]`, which opens a copy of the file with that HDU replaced by the section.
fn read_fits(spec: &str, hdu: usize) -> Fits {
    let mut f = fitsio::FitsFile::open(spec).unwrap();
    let h = f.hdu(hdu).unwrap();
    let width: i64 = h.read_key(&mut f, "NAXIS1").unwrap();
    let height: i64 = h.read_key(&mut f, "NAXIS2").unwrap();
    let bitpix: i64 = h.read_key(&mut f, "BITPIX").unwrap();
    let crpix = (
        h.read_key::<f64>(&mut f, "CRPIX1").unwrap_or(0.0),
        h.read_key::<f64>(&mut f, "CRPIX2").unwrap_or(0.0),
    );
    let data: Vec<f64> = h.read_image(&mut f).unwrap();
    Fits {
        width: width as usize,
        height: height as usize,
        bitpix,
        crpix,
        data,
    }
}

/// HDU `hdu` of a FITS file held in memory, as cfitsio reads it.
fn read_bytes(bytes: &[u8], hdu: usize) -> Fits {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    read_fits(file.path().to_str().unwrap(), hdu)
}

/// The celestial WCS of a FITS file's primary HDU.
fn primary_wcs(bytes: &[u8]) -> Wcs {
    let (header, _) = Header::parse_cards(bytes).unwrap();
    Wcs::from_header(&header).unwrap()
}

/// A cutout of the 64² tile, checked: its pixels are the source's at the window the moved
/// CRPIX gives, and every cutout pixel keeps its sky position. Returns the window (x0, y0,
/// width, height) in 0-based source pixels.
fn check_tile_cutout(v: &Volume, reply: &Reply) -> (i64, i64, usize, usize) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.mime, "application/fits");
    let source = read_fits(v.tile_path().to_str().unwrap(), 0);
    let cut = read_bytes(&reply.body, 0);
    let wcs = primary_wcs(&reply.body);
    assert_eq!(cut.bitpix, -32);
    let x0 = (source.crpix.0 - cut.crpix.0).round() as i64;
    let y0 = (source.crpix.1 - cut.crpix.1).round() as i64;
    assert!((source.crpix.0 - cut.crpix.0 - x0 as f64).abs() < 1e-9);
    assert!(x0 >= 0 && y0 >= 0);
    assert!(x0 as usize + cut.width <= NPIX && y0 as usize + cut.height <= NPIX);
    for j in 0..cut.height {
        for i in 0..cut.width {
            let want = source.data[(y0 as usize + j) * NPIX + x0 as usize + i];
            assert_eq!(cut.data[j * cut.width + i].to_bits(), want.to_bits());
        }
    }
    let source_wcs = v.tile_wcs();
    for (i, j) in [
        (0.0, 0.0),
        (cut.width as f64 - 1.0, cut.height as f64 / 2.0),
    ] {
        let a = wcs.pixel_to_sky(i, j).unwrap();
        let b = source_wcs
            .pixel_to_sky(i + x0 as f64, j + y0 as f64)
            .unwrap();
        assert!((a.0 - b.0).abs() < 1e-10 && (a.1 - b.1).abs() < 1e-10);
    }
    (x0, y0, cut.width, cut.height)
}

/// Every pixel of the tile whose centre `inside` accepts lies in the window, and the window
/// reaches at most one pixel beyond those (so it is the region's box, not the whole tile).
fn check_covers(v: &Volume, window: (i64, i64, usize, usize), inside: impl Fn(f64, f64) -> bool) {
    let wcs = v.tile_wcs();
    let (x0, y0, w, h) = window;
    let (mut lo, mut hi) = ((i64::MAX, i64::MAX), (i64::MIN, i64::MIN));
    for j in 0..NPIX as i64 {
        for i in 0..NPIX as i64 {
            let (ra, dec) = wcs.pixel_to_sky(i as f64, j as f64).unwrap();
            if inside(ra, dec) {
                assert!(
                    i >= x0 && i < x0 + w as i64 && j >= y0 && j < y0 + h as i64,
                    "pixel ({i}, {j}) is in the region but not in {window:?}"
                );
                lo = (lo.0.min(i), lo.1.min(j));
                hi = (hi.0.max(i), hi.1.max(j));
            }
        }
    }
    assert!(lo.0 != i64::MAX, "the region holds no pixel centre");
    assert!(x0 >= lo.0 - 1 && y0 >= lo.1 - 1, "{window:?} vs {lo:?}");
    assert!(
        x0 + w as i64 - 1 <= hi.0 + 1 && y0 + h as i64 - 1 <= hi.1 + 1,
        "{window:?} vs {hi:?}"
    );
}

fn separation(a: (f64, f64), b: (f64, f64)) -> f64 {
    let u = |(ra, dec): (f64, f64)| {
        let (r, d) = (f64::to_radians(ra), f64::to_radians(dec));
        [d.cos() * r.cos(), d.cos() * r.sin(), d.sin()]
    };
    let (p, q) = (u(a), u(b));
    let dot = p[0] * q[0] + p[1] * q[1] + p[2] * q[2];
    let cross = [
        p[1] * q[2] - p[2] * q[1],
        p[2] * q[0] - p[0] * q[2],
        p[0] * q[1] - p[1] * q[0],
    ];
    (cross[0].hypot(cross[1]).hypot(cross[2]))
        .atan2(dot)
        .to_degrees()
}

#[tokio::test]
async fn every_shape_cuts_the_pixels_it_touches() {
    let v = volume(None).await;
    let wcs = v.tile_wcs();
    let id = format!("v/{}", v.tile);
    let did = format!("ivo://insitu/v?{}", v.tile);
    let centre = wcs.pixel_to_sky(20.3, 40.8).unwrap();
    let r = 6.3 * PIXEL;
    let circle = format!("{} {} {r}", centre.0, centre.1);
    let inside_circle = |ra: f64, dec: f64| separation((ra, dec), centre) <= r;
    // POS=CIRCLE and CIRCLE cut the same box, by either id, GET or POST.
    let by_pos = call(
        &v,
        get(&query(
            "/soda/sync",
            &[("ID", &id), ("POS", &format!("CIRCLE {circle}"))],
        )),
    )
    .await;
    let window = check_tile_cutout(&v, &by_pos);
    check_covers(&v, window, inside_circle);
    assert!(window.2 >= 12 && window.2 <= 14, "{window:?}");
    let by_circle = call(&v, form("/soda/sync", &[("id", &did), ("circle", &circle)])).await;
    assert_eq!(by_circle.body, by_pos.body);
    let disposition = by_circle.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap();
    let stem = v.tile.rsplit_once('/').unwrap().1.trim_end_matches(".fits");
    assert!(
        disposition.contains(&format!("\"{stem}_cutout.fits\"")),
        "{disposition}"
    );

    // RANGE from two pixel positions (east is left: RA falls as x grows).
    let a = wcs.pixel_to_sky(40.0, 10.0).unwrap();
    let b = wcs.pixel_to_sky(25.0, 30.0).unwrap();
    let range = call(
        &v,
        get(&query(
            "/soda/sync",
            &[
                ("ID", &id),
                ("POS", &format!("RANGE {} {} {} {}", a.0, b.0, a.1, b.1)),
            ],
        )),
    )
    .await;
    let window = check_tile_cutout(&v, &range);
    check_covers(&v, window, |ra, dec| {
        ra >= a.0 && ra <= b.0 && dec >= a.1 && dec <= b.1
    });
    // Open (infinite) longitudes: a band across the whole tile.
    let band = call(
        &v,
        get(&query(
            "/soda/sync",
            &[
                ("ID", &id),
                ("POS", &format!("RANGE -Inf +Inf {} {}", a.1, b.1)),
            ],
        )),
    )
    .await;
    let window = check_tile_cutout(&v, &band);
    assert_eq!((window.0, window.2), (0, NPIX));

    // POLYGON (clockwise on purpose) and POS=POLYGON give the same cutout.
    let corners: Vec<(f64, f64)> = [(10.0, 5.0), (12.0, 30.0), (35.0, 28.0)]
        .iter()
        .map(|&(x, y)| wcs.pixel_to_sky(x, y).unwrap())
        .collect();
    let text: Vec<String> = corners
        .iter()
        .map(|(ra, dec)| format!("{ra} {dec}"))
        .collect();
    let polygon = call(
        &v,
        get(&query(
            "/soda/sync",
            &[("ID", &id), ("POLYGON", &text.join(" "))],
        )),
    )
    .await;
    let window = check_tile_cutout(&v, &polygon);
    assert!(
        window.0 <= 10 && window.0 >= 9 && window.1 <= 5 && window.1 >= 4,
        "{window:?}"
    );
    // The last column and row reach the triangle's far corners (35, 28) and (12, 30).
    let (last_x, last_y) = (
        window.0 + window.2 as i64 - 1,
        window.1 + window.3 as i64 - 1,
    );
    assert!(last_x >= 35 && last_y >= 30, "{window:?}");
    let pos_polygon = call(
        &v,
        get(&query(
            "/soda/sync",
            &[("ID", &id), ("POS", &format!("POLYGON {}", text.join(" ")))],
        )),
    )
    .await;
    assert_eq!(pos_polygon.body, polygon.body);

    // A circle larger than the tile: all of it; no filter: the whole image.
    for params in [
        vec![("ID", id.clone()), ("CIRCLE", format!("150 2 {}", 0.1))],
        vec![("ID", id.clone())],
    ] {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let whole = call(&v, get(&query("/soda/sync", &pairs))).await;
        assert_eq!(check_tile_cutout(&v, &whole), (0, 0, NPIX, NPIX));
    }
    // Half off the tile: clipped to it.
    let edge = wcs.pixel_to_sky(-3.0, 20.0).unwrap();
    let clipped = call(
        &v,
        get(&query(
            "/soda/sync",
            &[
                ("ID", &id),
                ("CIRCLE", &format!("{} {} {}", edge.0, edge.1, 8.0 * PIXEL)),
            ],
        )),
    )
    .await;
    let window = check_tile_cutout(&v, &clipped);
    assert_eq!(window.0, 0);
    check_covers(&v, window, |ra, dec| {
        separation((ra, dec), edge) <= 8.0 * PIXEL
    });
}

#[tokio::test]
async fn no_overlap_is_204() {
    let v = volume(None).await;
    let id = format!("v/{}", v.tile);
    for (name, value) in [
        ("CIRCLE", "150.1 2 0.001".to_string()),
        ("POS", "RANGE 10 20 -5 5".to_string()),
        ("POLYGON", "10 10 11 10 11 11".to_string()),
        ("SUB", "[65:70,*]".to_string()),
    ] {
        let reply = call(
            &v,
            get(&query("/soda/sync", &[("ID", &id), (name, &value)])),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "{name}={value}: {}",
            reply.text()
        );
        assert!(reply.body.is_empty());
    }
}

#[tokio::test]
async fn sub_sections_match_cfitsio() {
    let v = volume(None).await;
    let path = v.root.join(&v.mef);
    let id = format!("v/{}", v.mef);
    // (our SUB, the same section as cfitsio reads it from the file, the section's HDU there)
    for (sub, cfitsio, hdu) in [
        ("[3:7,2:5]", "[1][3:7,2:5]", 1),
        ("[SCI][*,28:40]", "[SCI][*,28:30]", 1),
        ("[sci,1][40:40,1:1]", "[SCI][40:40,1:1]", 1),
        ("[2][10:12,1:3]", "[2][10:12,1:3]", 2),
        ("[WHT]", "[WHT][*,*]", 2),
    ] {
        let reply = call(&v, get(&query("/soda/sync", &[("ID", &id), ("SUB", sub)]))).await;
        assert_eq!(reply.status, StatusCode::OK, "{sub}: {}", reply.text());
        let ours = read_bytes(&reply.body, 0);
        let theirs = read_fits(&format!("{}{cfitsio}", path.display()), hdu);
        assert_eq!(
            (ours.width, ours.height),
            (theirs.width, theirs.height),
            "{sub}"
        );
        assert_eq!(ours.bitpix, theirs.bitpix, "{sub}");
        assert_eq!(ours.data, theirs.data, "{sub}");
        if !sub.contains("WHT") && !sub.starts_with("[2]") {
            assert_eq!(ours.crpix, theirs.crpix, "{sub}");
        }
    }
    // BITPIX 16 with BSCALE/BZERO stays as stored.
    let reply = call(
        &v,
        get(&query("/soda/sync", &[("ID", &id), ("SUB", "[1:2,1:1]")])),
    )
    .await;
    let cut = read_bytes(&reply.body, 0);
    assert_eq!(cut.bitpix, 16);
    assert_eq!(cut.data, [100.0, 100.5]);
    for (sub, needle) in [
        ("[0][1:2,1:2]", "not an image"),
        ("[5][1:2,1:2]", "no HDU 5"),
        ("[NOPE][1:2,1:2]", "EXTNAME NOPE"),
        ("[1:2,1:2,1:1]", "3 axes given"),
        ("[5:3,1:2]", "reversed"),
        ("[1:4:2,*]", "steps"),
    ] {
        let reply = call(&v, get(&query("/soda/sync", &[("ID", &id), ("SUB", sub)]))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{sub}");
        assert!(reply.mime.starts_with("text/plain"));
        let text = reply.text();
        assert!(
            text.starts_with("UsageError: ") && text.contains(needle),
            "{sub}: {text}"
        );
    }
}

#[tokio::test]
async fn errors_are_labelled_text() {
    let v = volume(None).await;
    let id = format!("v/{}", v.tile);
    let absolute = v.tile_path().display().to_string();
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    const GONE: StatusCode = StatusCode::NOT_FOUND;
    const USAGE: &str = "UsageError: ";
    const MULTI: &str = "MultiValuedParamNotSupported: ";
    /// Parameters, status, error label, text the message holds.
    type Case<'a> = (Vec<(&'a str, &'a str)>, StatusCode, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("POS", "CIRCLE 150 2 0.001")],
            BAD,
            USAGE,
            "ID is missing",
        ),
        (
            vec![("ID", &id), ("POS", "CIRCLE 150 2")],
            BAD,
            USAGE,
            "3 numbers",
        ),
        (
            vec![("ID", &id), ("POS", "BOX 150 2 1 1")],
            BAD,
            USAGE,
            "CIRCLE, RANGE or POLYGON",
        ),
        (
            vec![("ID", &id), ("CIRCLE", "NaN 2 0.001")],
            BAD,
            USAGE,
            "not a finite number",
        ),
        (
            vec![("ID", &id), ("CIRCLE", "150 91 0.001")],
            BAD,
            USAGE,
            "outside -90",
        ),
        (
            vec![("ID", &id), ("POS", "RANGE 1 2 -95 0")],
            BAD,
            USAGE,
            "outside -90",
        ),
        (
            vec![("ID", &id), ("CIRCLE", "150 2 0")],
            BAD,
            USAGE,
            "must be positive",
        ),
        (
            vec![("ID", &id), ("CIRCLE", "150 2 -1")],
            BAD,
            USAGE,
            "must be positive",
        ),
        (
            vec![("ID", &id), ("POLYGON", "150 2 151 2")],
            BAD,
            USAGE,
            "3 vertices",
        ),
        (
            vec![("ID", &id), ("BAND", "1e-7 2e-7")],
            BAD,
            USAGE,
            "BAND is not supported",
        ),
        (
            vec![
                ("ID", &id),
                ("CIRCLE", "150 2 0.001"),
                ("POS", "CIRCLE 150 2 0.001"),
            ],
            BAD,
            USAGE,
            "POS and CIRCLE given together",
        ),
        (vec![("ID", &id), ("ID", &id)], BAD, MULTI, "ID: 2 values"),
        (
            vec![
                ("ID", &id),
                ("CIRCLE", "150 2 0.001"),
                ("CIRCLE", "150 2 0.002"),
            ],
            BAD,
            MULTI,
            "CIRCLE: 2 values",
        ),
        (vec![("ID", &absolute)], GONE, USAGE, "no dataset"),
        (vec![("ID", "v/../volume/MER")], GONE, USAGE, "no dataset"),
        (vec![("ID", "v/mef/link.fits")], GONE, USAGE, "no dataset"),
        (vec![("ID", "nope/mef/sci.fits")], GONE, USAGE, "no dataset"),
        (
            vec![("ID", "ivo://insitu/v?../outside.fits")],
            GONE,
            USAGE,
            "no dataset",
        ),
    ];
    for (pairs, status, label, needle) in cases {
        for request in [
            get(&query("/soda/sync", &pairs)),
            form("/soda/sync", &pairs),
        ] {
            let reply = call(&v, request).await;
            let text = reply.text();
            assert_eq!(reply.status, status, "{pairs:?}: {text}");
            assert!(
                reply.mime.starts_with("text/plain"),
                "{pairs:?}: {}",
                reply.mime
            );
            assert!(
                text.starts_with(label) && text.contains(needle),
                "{pairs:?}: {text}"
            );
        }
    }
    // A request that cannot even be read is a SODA error too, not TAP's VOTable.
    let unreadable = Request::post("/soda/sync")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let no_boundary = Request::post("/soda/sync")
        .header(header::CONTENT_TYPE, "multipart/form-data")
        .body(Body::from("ID=x"))
        .unwrap();
    for (request, status, needle) in [
        (
            unreadable,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not application/json",
        ),
        (no_boundary, BAD, "multipart"),
    ] {
        let reply = call(&v, request).await;
        let text = reply.text();
        assert_eq!(reply.status, status, "{text}");
        assert!(reply.mime.starts_with("text/plain"), "{}", reply.mime);
        assert!(text.starts_with(USAGE) && text.contains(needle), "{text}");
    }
}

/// Submits an async job and waits until it is final; its job document and path.
async fn run_job(v: &Volume, pairs: &[(&str, &str)]) -> (String, String) {
    let mut all = pairs.to_vec();
    all.push(("PHASE", "RUN"));
    let reply = call(v, form("/soda/async", &all)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let location = reply.headers[header::LOCATION].to_str().unwrap();
    let job = location
        .trim_start_matches(&format!("http://{HOST}"))
        .to_string();
    assert!(job.starts_with("/soda/async/"), "{location}");
    for _ in 0..20 {
        let reply = call(v, get(&format!("{job}?WAIT=30"))).await;
        let text = reply.text();
        if !["PENDING", "QUEUED", "EXECUTING"]
            .iter()
            .any(|p| text.contains(&format!("<uws:phase>{p}<")))
        {
            return (text, job);
        }
    }
    panic!("job {job} did not finish");
}

#[tokio::test]
async fn async_jobs_make_one_result_per_combination() {
    let v = volume(None).await;
    let wcs = v.tile_wcs();
    let id = format!("v/{}", v.tile);
    let c1 = wcs.pixel_to_sky(10.0, 10.0).unwrap();
    let c2 = wcs.pixel_to_sky(50.0, 30.0).unwrap();
    let pos1 = format!("CIRCLE {} {} {}", c1.0, c1.1, 3.0 * PIXEL);
    let pos2 = format!("CIRCLE {} {} {}", c2.0, c2.1, 5.0 * PIXEL);
    let (doc, job) = run_job(
        &v,
        &[
            ("ID", &id),
            ("ID", "v/not/there.fits"),
            ("POS", &pos1),
            ("POS", &pos2),
            ("POS", "CIRCLE 10 10 0.001"),
        ],
    )
    .await;
    assert!(doc.contains("<uws:phase>COMPLETED<"), "{doc}");
    for n in 1..=6 {
        assert!(
            doc.contains(&format!("id=\"result-{n}\"")),
            "result-{n}: {doc}"
        );
    }
    assert!(!doc.contains("id=\"result-7\""));
    // The same cutouts as sync.
    for (n, pos) in [(1, &pos1), (2, &pos2)] {
        let result = call(&v, get(&format!("{job}/results/result-{n}"))).await;
        assert_eq!(result.status, StatusCode::OK);
        assert_eq!(result.mime, "application/fits");
        let sync = call(&v, get(&query("/soda/sync", &[("ID", &id), ("POS", pos)]))).await;
        assert_eq!(result.body, sync.body, "result-{n}");
        check_tile_cutout(&v, &result);
    }
    // No overlap, and an unknown ID: a text result each, with the SODA error label.
    for (n, needle) in [
        (3, "no pixel of"),
        (4, "no dataset"),
        (5, "no dataset"),
        (6, "no dataset"),
    ] {
        let result = call(&v, get(&format!("{job}/results/result-{n}"))).await;
        assert!(result.mime.starts_with("text/plain"), "{}", result.mime);
        let text = result.text();
        assert!(
            text.starts_with("UsageError: ") && text.contains(needle),
            "{n}: {text}"
        );
    }
    // A bad parameter fails the whole job, with the label in its error summary.
    let (doc, job) = run_job(&v, &[("ID", &id), ("POS", "CIRCLE 1 2")]).await;
    assert!(doc.contains("<uws:phase>ERROR<"), "{doc}");
    let error = call(&v, get(&format!("{job}/error"))).await;
    assert!(
        error.text().contains("UsageError: POS="),
        "{}",
        error.text()
    );
}

#[tokio::test]
async fn vosi_capabilities_and_availability() {
    let v = volume(None).await;
    let caps = call(&v, get("/soda/capabilities")).await;
    assert_eq!(caps.status, StatusCode::OK);
    let text = caps.text();
    for needle in [
        "standardID=\"ivo://ivoa.net/std/SODA#sync-1.0\"",
        "standardID=\"ivo://ivoa.net/std/SODA#async-1.0\"",
        "<accessURL use=\"full\">http://soda.test/soda/sync</accessURL>",
        "<accessURL use=\"full\">http://soda.test/soda/async</accessURL>",
        "ivo://ivoa.net/std/VOSI#availability",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let available = call(&v, get("/soda/availability")).await;
    assert!(available
        .text()
        .contains("<vosi:available>true</vosi:available>"));
    let landing = call(&v, get("/soda")).await;
    assert!(landing.text().contains("http://soda.test/soda/sync"));
}

#[tokio::test]
async fn datalink_lists_the_file_and_a_soda_descriptor() {
    let v = volume(Some("https://archive.example/insitu")).await;
    let did = format!("ivo://insitu/v?{}", v.tile);
    let reply = call(
        &v,
        get(&query(
            "/datalink/links",
            &[("ID", did.as_str()), ("ID", "ivo://insitu/v?nope.fits")],
        )),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.mime, "application/x-votable+xml;content=datalink");
    let (schema, batches) = votable::read(&reply.body, 100).unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "ID",
            "access_url",
            "service_def",
            "error_message",
            "semantics",
            "description",
            "content_type",
            "content_length"
        ]
    );
    let cell = |row: usize, column: &str| -> Option<String> {
        let batch = &batches[0];
        let array = batch.column(schema.index_of(column).unwrap());
        if array.is_null(row) {
            return None;
        }
        let text = insitu_adql::arrow::util::display::array_value_to_string(array, row).unwrap();
        Some(text)
    };
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let size = std::fs::metadata(v.tile_path()).unwrap().len();
    assert_eq!(cell(0, "semantics").as_deref(), Some("#this"));
    assert_eq!(
        cell(0, "access_url").unwrap(),
        format!("https://archive.example/insitu/files/v/{}", v.tile)
    );
    assert_eq!(cell(0, "content_length").unwrap(), size.to_string());
    assert_eq!(cell(1, "semantics").as_deref(), Some("#cutout"));
    assert_eq!(cell(1, "access_url"), None);
    let service = cell(1, "service_def").unwrap();
    assert_eq!(cell(2, "ID").as_deref(), Some("ivo://insitu/v?nope.fits"));
    assert!(cell(2, "error_message")
        .unwrap()
        .starts_with("NotFoundFault: "));
    let text = reply.text();
    for needle in [
        format!("<RESOURCE type=\"meta\" utype=\"adhoc:service\" ID=\"{service}\""),
        "value=\"ivo://ivoa.net/std/SODA#sync-1.0\"".to_string(),
        "value=\"https://archive.example/insitu/soda/sync\"".to_string(),
        format!("name=\"ID\" datatype=\"char\" arraysize=\"*\" ucd=\"meta.ref.url;meta.curation\" value=\"{did}\""),
        "<GROUP name=\"inputParams\">".to_string(),
        "name=\"POS\"".to_string(),
        "name=\"SUB\"".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle}: {text}");
    }
    // The CIRCLE bound holds the tile: its centre and half its field.
    let max = text
        .split("xtype=\"circle\"")
        .nth(1)
        .and_then(|t| t.split("<MAX value=\"").nth(1))
        .and_then(|t| t.split('"').next())
        .unwrap();
    let numbers: Vec<f64> = max.split(' ').map(|n| n.parse().unwrap()).collect();
    assert!((numbers[0] - 150.0).abs() < 1e-9 && (numbers[1] - 2.0).abs() < 1e-9);
    assert!(
        (numbers[2] - NPIX as f64 * PIXEL / 2.0_f64.sqrt()).abs() < 2.0 * PIXEL,
        "{max}"
    );
    // No ID: an empty table; a format other than VOTable: refused.
    let empty = call(&v, get("/datalink/links")).await;
    let (_, batches) = votable::read(&empty.body, 100).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    let refused = call(&v, get("/datalink/links?ID=x&RESPONSEFORMAT=text/csv")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    // POST works too.
    let posted = call(&v, form("/datalink/links", &[("ID", &did)])).await;
    assert!(posted.text().contains("#cutout"));

    // ObsCore's access_url is the DataLink URL when the base URL is configured.
    let csv = call(
        &v,
        get(&query(
            "/tap/sync",
            &[
                ("LANG", "ADQL"),
                ("FORMAT", "csv"),
                (
                    "QUERY",
                    "SELECT access_url, access_format FROM ivoa.obscore ORDER BY obs_publisher_did",
                ),
            ],
        )),
    )
    .await;
    let text = csv.text();
    let encoded = format!("ivo%3A%2F%2Finsitu%2Fv%3F{}", v.tile.replace('/', "%2F"));
    assert_eq!(
        text.lines().nth(1).unwrap(),
        format!(
            "https://archive.example/insitu/datalink/links?ID={encoded},\
             application/x-votable+xml;content=datalink"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn files_are_served_whole_or_by_range() {
    let v = volume(None).await;
    let bytes = std::fs::read(v.tile_path()).unwrap();
    let uri = format!("/files/v/{}", v.tile);
    let whole = call(&v, get(&uri)).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.mime, "application/fits");
    assert_eq!(whole.headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(whole.body, bytes);
    let request = Request::get(&uri)
        .header(header::HOST, HOST)
        .header(header::RANGE, "bytes=2880-5759")
        .body(Body::empty())
        .unwrap();
    let part = call(&v, request).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, bytes[2880..5760]);
    assert_eq!(
        part.headers[header::CONTENT_RANGE].to_str().unwrap(),
        format!("bytes 2880-5759/{}", bytes.len())
    );
    let request = Request::get(&uri)
        .header(header::HOST, HOST)
        .header(header::RANGE, format!("bytes={}-", bytes.len()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&v, request).await.status,
        StatusCode::RANGE_NOT_SATISFIABLE
    );
    for bad in [
        "/files/v/mef/link.fits",
        "/files/v/../volume/mef/sci.fits",
        "/files/v/%2E%2E/outside.fits",
        "/files/nope/mef/sci.fits",
        "/files/v/MER",
    ] {
        let reply = call(&v, get(bad)).await;
        assert!(
            reply.status == StatusCode::NOT_FOUND,
            "{bad}: {} {}",
            reply.status,
            reply.text()
        );
    }
}

#[tokio::test]
async fn euclid_cutout_form_as_astroquery_sends_it() {
    let v = volume(None).await;
    let wcs = v.tile_wcs();
    let (ra, dec) = wcs.pixel_to_sky(30.0, 33.0).unwrap();
    let r = 4.0 * PIXEL;
    let (folder, name) = v.tile.rsplit_once('/').unwrap();
    let file_path = format!("v/{folder}/{name}");
    let pos = format!("CIRCLE,{ra},{dec},{r}");
    let sync = call(
        &v,
        get(&query(
            "/soda/sync",
            &[
                ("ID", &format!("v/{}", v.tile)),
                ("CIRCLE", &format!("{ra} {dec} {r}")),
            ],
        )),
    )
    .await;
    // As astroquery posts it, and with the Euclid archive's own folder in front of the name.
    for path in [
        file_path.clone(),
        format!("/euclid/repository_idr/iqr1/Q1_R1/MER/1001/VIS/{name}"),
    ] {
        let reply = call(
            &v,
            form(
                "/sas-cutout/cutout",
                &[
                    ("TAPCLIENT", "ASTROQUERY"),
                    ("FILEPATH", &path),
                    ("COLLECTION", "VIS"),
                    ("OBSID", "1001"),
                    ("POS", &pos),
                ],
            ),
        )
        .await;
        assert_eq!(reply.body, sync.body, "{path}: {}", reply.text());
        check_covers(&v, check_tile_cutout(&v, &reply), |a, d| {
            separation((a, d), (ra, dec)) <= r
        });
    }
    for (pairs, status, needle) in [
        (
            vec![
                ("FILEPATH", file_path.as_str()),
                ("POS", "CIRCLE,150,2,0.6"),
            ],
            StatusCode::BAD_REQUEST,
            "0.5",
        ),
        (
            vec![("POS", "CIRCLE,150,2,0.1")],
            StatusCode::BAD_REQUEST,
            "FILEPATH is missing",
        ),
        (
            vec![("FILEPATH", "v/MER/none.fits"), ("POS", "CIRCLE,150,2,0.1")],
            StatusCode::NOT_FOUND,
            "names no image",
        ),
        (
            vec![("FILEPATH", file_path.as_str()), ("POS", "RANGE,1,2,3,4")],
            StatusCode::BAD_REQUEST,
            "CIRCLE",
        ),
    ] {
        let reply = call(&v, form("/sas-cutout/cutout", &pairs)).await;
        assert_eq!(reply.status, status, "{pairs:?}: {}", reply.text());
        assert!(reply.text().contains(needle), "{pairs:?}: {}", reply.text());
    }
}
