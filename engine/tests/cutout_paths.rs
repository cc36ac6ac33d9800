//! One cutout through every path — single, bulk to a folder, bulk to one MEF, bulk to `.npy` —
//! must give the same pixels (ripgrep's "one harness, many paths").
#![allow(clippy::unwrap_used)]

use std::path::Path;

use insitu_engine::bulk::{self, BulkOptions, Output};
use insitu_engine::catalog::read_catalog;
use insitu_engine::cutout::{self, Center, CutoutRequest, Mode, Size};
use insitu_engine::fits::{Card, FitsFile, Header, Image, Value};
use insitu_engine::wcs::Wcs;

const W: usize = 300;
const H: usize = 220;

/// A BITPIX -32 TAN image whose pixel (x, y) holds x + 1000 y (exact in f32).
fn write_image(path: &Path, bitpix: i64) {
    let mut h = Header::default();
    for (k, v) in [
        ("SIMPLE", Value::Logical(true)),
        ("BITPIX", Value::Integer(bitpix)),
        ("NAXIS", Value::Integer(2)),
        ("NAXIS1", Value::Integer(W as i64)),
        ("NAXIS2", Value::Integer(H as i64)),
        ("CTYPE1", Value::String("RA---TAN".into())),
        ("CTYPE2", Value::String("DEC--TAN".into())),
        ("CRVAL1", Value::Real(150.0)),
        ("CRVAL2", Value::Real(2.2)),
        ("CRPIX1", Value::Real(150.5)),
        ("CRPIX2", Value::Real(110.5)),
        ("CD1_1", Value::Real(-1.0 / 3600.0)),
        ("CD2_2", Value::Real(1.0 / 3600.0)),
        ("RADESYS", Value::String("ICRS".into())),
    ] {
        h.push(Card::new(k, v, ""));
    }
    if bitpix == 16 {
        h.push(Card::new("BLANK", Value::Integer(-32768), ""));
    }
    let mut bytes = h.to_bytes();
    for y in 0..H {
        for x in 0..W {
            let v = (x + 1000 * y) as f64;
            match bitpix {
                -32 => bytes.extend_from_slice(&(v as f32).to_be_bytes()),
                16 => bytes.extend_from_slice(&((v as i64 % 30000) as i16).to_be_bytes()),
                _ => unreachable!(),
            }
        }
    }
    bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
    std::fs::write(path, bytes).unwrap();
}

/// Runs `test` on a fresh `image.fits` (see [`write_image`]) in a temporary folder, opened,
/// with its WCS.
fn with_image(bitpix: i64, test: impl FnOnce(&Path, &Image<'_>, &Wcs)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.fits");
    write_image(&path, bitpix);
    let file = FitsFile::open(&path).unwrap();
    let image = file.image(0).unwrap();
    let wcs = Wcs::from_header(image.header()).unwrap();
    test(dir.path(), &image, &wcs);
}

fn positions(wcs: &Wcs) -> Vec<(String, f64, f64)> {
    // Inside, on edges and corners, and half off the image.
    let pixels = [
        (150.0, 110.0),
        (0.0, 0.0),
        (299.0, 219.0),
        (-3.2, 50.7),
        (150.4, 218.6),
        (12.5, 12.5),
        (299.9, -3.9),
    ];
    pixels
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            let (ra, dec) = wcs.pixel_to_sky(x, y).unwrap();
            (format!("p{i}"), ra, dec)
        })
        .collect()
}

fn check_paths(bitpix: i64) {
    with_image(bitpix, |dir, image, wcs| {
        let pos = positions(wcs);
        let mut csv = String::from("id,ra,dec\n");
        for (id, ra, dec) in &pos {
            csv.push_str(&format!("{id},{ra:.12},{dec:.12}\n"));
        }
        let cat_path = dir.join("cat.csv");
        std::fs::write(&cat_path, csv).unwrap();
        let catalog = read_catalog(&cat_path).unwrap();
        let options = BulkOptions {
            size: Size::Pixels(9),
            mode: Mode::Partial,
            planes: None,
            skip_bad: false,
        };
        let out_dir = dir.join("cutouts");
        let mef = dir.join("all.fits");
        let npy = dir.join("all.npy");
        for out in [
            Output::Dir(out_dir.clone()),
            Output::Mef(mef.clone()),
            Output::Npy(npy.clone()),
        ] {
            let report = bulk::run(image, Some(wcs), &catalog, &options, &out, &|_| {}).unwrap();
            assert_eq!(report.written, pos.len());
        }
        let mef_file = FitsFile::open(&mef).unwrap();
        assert_eq!(mef_file.hdu_count(), pos.len() + 1);
        let npy_bytes = std::fs::read(&npy).unwrap();
        let npy_header = u16::from_le_bytes([npy_bytes[8], npy_bytes[9]]) as usize + 10;
        let item = 9 * 9;

        for (i, target) in catalog.targets.iter().enumerate() {
            let (id, ra, dec) = (target.id.clone().unwrap(), target.ra, target.dec);
            let request = CutoutRequest {
                center: Center::Sky { ra, dec },
                size: Size::Pixels(9),
                mode: Mode::Partial,
                planes: None,
            };
            let single = cutout::cut(image, Some(wcs), &request).unwrap();
            let from_dir = std::fs::read(out_dir.join(format!("{id}.fits"))).unwrap();
            assert!(
                single.to_fits_bytes() == from_dir,
                "{id}: folder output differs"
            );

            let ext = mef_file.image(i + 1).unwrap();
            assert_eq!(ext.header().string("EXTNAME"), Some(id.as_str()));
            let ext_data: Vec<u8> = (0..9)
                .flat_map(|y| ext.row(0, y).unwrap().to_vec())
                .collect();
            assert!(ext_data == single.data, "{id}: MEF output differs");

            let mut physical = vec![0f32; item];
            cutout::window_physical(image, 0, single.window, &mut physical);
            let start = npy_header + i * item * 4;
            let from_npy: Vec<f32> = npy_bytes[start..start + item * 4]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            for (a, b) in physical.iter().zip(&from_npy) {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{id}: npy output differs"
                );
            }
            // The physical values are the image's formula where inside, NaN outside.
            let w = single.window;
            for (k, v) in physical.iter().enumerate() {
                let (x, y) = (w.x0 + (k % 9) as i64, w.y0 + (k / 9) as i64);
                let inside = (0..W as i64).contains(&x) && (0..H as i64).contains(&y);
                if !inside {
                    assert!(v.is_nan(), "{id}: ({x}, {y}) should be filled");
                } else if bitpix == -32 {
                    assert_eq!(*v, (x + 1000 * y) as f32);
                }
            }
            // The moved reference pixel keeps the sky position of the centre pixel.
            let cut_wcs = Wcs::from_header(&single.header).unwrap();
            let (x, y) = wcs.sky_to_pixel(ra, dec).unwrap();
            let (cx, cy) = cut_wcs.sky_to_pixel(ra, dec).unwrap();
            assert!((x - w.x0 as f64 - cx).abs() < 1e-8 && (y - w.y0 as f64 - cy).abs() < 1e-8);
        }
    });
}

#[test]
fn every_path_gives_the_same_float_cutouts() {
    check_paths(-32);
}

#[test]
fn every_path_gives_the_same_integer_cutouts() {
    check_paths(16);
}

#[test]
fn bad_rows_fail_before_writing_unless_skipped() {
    with_image(-32, |dir, image, wcs| {
        let (ra, dec) = wcs.pixel_to_sky(100.0, 100.0).unwrap();
        let (ra_off, dec_off) = wcs.pixel_to_sky(5000.0, 100.0).unwrap();
        let cat_path = dir.join("cat.csv");
        std::fs::write(
            &cat_path,
            format!("ra,dec\n{ra},{dec}\nnot-a-number,1\n{ra_off},{dec_off}\n{ra},{dec}\n"),
        )
        .unwrap();
        let catalog = read_catalog(&cat_path).unwrap();
        let mut options = BulkOptions {
            size: Size::Pixels(16),
            mode: Mode::Partial,
            planes: None,
            skip_bad: false,
        };
        let out = dir.join("out");
        let err = bulk::run(
            image,
            Some(wcs),
            &catalog,
            &options,
            &Output::Dir(out.clone()),
            &|_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("row 2") && err.contains("row 3"), "{err}");
        assert!(!out.exists(), "nothing may be written when a row is bad");

        options.skip_bad = true;
        let report = bulk::run(
            image,
            Some(wcs),
            &catalog,
            &options,
            &Output::Dir(out.clone()),
            &|_| {},
        )
        .unwrap();
        assert_eq!(report.written, 2);
        assert_eq!(
            report.skipped.iter().map(|b| b.row).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(out.join("1.fits").exists() && out.join("4.fits").exists());
        assert!(!out.join("3.fits").exists());
    });
}

#[test]
fn repeated_ids_are_bad_only_where_they_name_files() {
    with_image(-32, |dir, image, wcs| {
        let (ra, dec) = wcs.pixel_to_sky(100.0, 100.0).unwrap();
        let cat_path = dir.join("cat.csv");
        std::fs::write(
            &cat_path,
            format!("id,ra,dec\na,{ra},{dec}\na,{ra},{dec}\n"),
        )
        .unwrap();
        let catalog = read_catalog(&cat_path).unwrap();
        let options = BulkOptions {
            size: Size::Pixels(8),
            mode: Mode::Partial,
            planes: None,
            skip_bad: false,
        };
        let err = bulk::run(
            image,
            Some(wcs),
            &catalog,
            &options,
            &Output::Dir(dir.join("d")),
            &|_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("row 2") && err.contains("repeats"), "{err}");
        let npy = dir.join("s.npy");
        let report = bulk::run(
            image,
            Some(wcs),
            &catalog,
            &options,
            &Output::Npy(npy.clone()),
            &|_| {},
        )
        .unwrap();
        assert_eq!(report.written, 2);
        assert!(npy.exists());
    });
}
