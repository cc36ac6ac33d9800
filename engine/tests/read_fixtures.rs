//! Every fixture in `testdata/fits/` read by the engine and, as the oracle, by cfitsio: the
//! physical pixel values must agree; every malformed fixture must be a clear error.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use insitu_engine::fits::FitsFile;

fn fixtures(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fits")
        .join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Physical values of one image HDU as cfitsio returns them (it applies BSCALE/BZERO).
fn cfitsio_pixels(path: &Path, hdu: usize) -> Vec<f64> {
    let mut f = fitsio::FitsFile::open(path).unwrap();
    let h = f.hdu(hdu).unwrap();
    h.read_image::<Vec<f64>>(&mut f).unwrap()
}

#[test]
fn engine_agrees_with_cfitsio_on_every_fixture() {
    let mut images = 0;
    for path in fixtures("").into_iter().chain(fixtures("real")) {
        let file = FitsFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        for hdu in 0..file.hdu_count() {
            let Ok(image) = file.image(hdu) else { continue };
            images += 1;
            let expected = cfitsio_pixels(&path, hdu);
            let (w, h, planes) = (image.width(), image.height(), image.planes());
            assert_eq!(expected.len(), w * h * planes, "{}[{hdu}]", path.display());
            let mut row = vec![0f32; w];
            let s = image.scaling();
            for plane in 0..planes {
                for y in 0..h {
                    image.to_physical(image.row(plane, y).unwrap(), &mut row);
                    for (x, v) in row.iter().enumerate() {
                        let e = expected[(plane * h + y) * w + x];
                        let blank = s.blank.map(|b| s.bzero + s.bscale * b as f64);
                        let same = if v.is_nan() {
                            e.is_nan() || Some(e) == blank
                        } else {
                            *v == e as f32
                        };
                        assert!(
                            same,
                            "{}[{hdu}] plane {plane} ({x}, {y}): insitu {v}, cfitsio {e}",
                            path.display()
                        );
                    }
                }
            }
        }
    }
    assert!(images >= 10, "only {images} images checked");
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    for path in fixtures("malformed") {
        let result = FitsFile::open(&path).and_then(|f| {
            let hdu = f.first_image_hdu().unwrap_or(0);
            f.image(hdu).map(|_| ())
        });
        let err = result
            .expect_err(&format!("{} should not open", path.display()))
            .to_string();
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(err.contains(name.as_ref()), "{err}");
        println!("{name}: {err}");
    }
}
