//! The WCS against astropy.wcs (the oracle): every projection, distortion and frame in the
//! fixtures, on a grid reaching past the image edges, to 1e-6 pixel.
//!
//! astropy runs through `testdata/oracle/wcs_grid.py` with `$INSITU_PYTHON`, else the
//! repository's `.venv`, else `python3`. Without astropy this test fails; it never skips.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use insitu_engine::fits::FitsFile;
use insitu_engine::wcs::Wcs;

const FIXTURES: &[&str] = &[
    "proj_tan.fits",
    "proj_sin.fits",
    "proj_zea.fits",
    "proj_arc.fits",
    "proj_stg.fits",
    "proj_ait.fits",
    "proj_car.fits",
    "sip.fits",
    "tpv.fits",
    "fk5.fits",
    "galactic.fits",
    "pole.fits",
    "ra0.fits",
    "cube.fits",
    "real/sip-wcs.fits",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("INSITU_PYTHON") {
        return p.into();
    }
    let venv = repo().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

fn angle_between(a: (f64, f64), b: (f64, f64)) -> f64 {
    let v = |(ra, dec): (f64, f64)| {
        let (ra, dec) = (ra.to_radians(), dec.to_radians());
        [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
    };
    let (p, q) = (v(a), v(b));
    let cross = [
        p[1] * q[2] - p[2] * q[1],
        p[2] * q[0] - p[0] * q[2],
        p[0] * q[1] - p[1] * q[0],
    ];
    let sin = (cross[0].powi(2) + cross[1].powi(2) + cross[2].powi(2)).sqrt();
    let cos = p[0] * q[0] + p[1] * q[1] + p[2] * q[2];
    sin.atan2(cos).to_degrees()
}

#[test]
fn wcs_agrees_with_astropy_to_a_micropixel() {
    let paths: Vec<PathBuf> = FIXTURES
        .iter()
        .map(|f| repo().join("testdata/fits").join(f))
        .collect();
    let out = Command::new(python())
        .arg(repo().join("testdata/oracle/wcs_grid.py"))
        .args(&paths)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (astropy is required): {e}",
                python().display()
            )
        });
    assert!(
        out.status.success(),
        "astropy oracle failed (astropy is required):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (mut wcs, mut scale, mut name) = (None, 0.0, String::new());
    let (mut worst_pix, mut worst_sky, mut points) = (0f64, 0f64, 0usize);
    let mut failures = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f[i].parse::<f64>().unwrap();
        match f[0] {
            "F" => {
                let file = FitsFile::open(f[1]).unwrap();
                let header = file.header(file.first_image_hdu().unwrap()).unwrap();
                wcs = Some(Wcs::from_header(header).unwrap_or_else(|e| panic!("{}: {e}", f[1])));
                scale = num(2);
                name = f[1].to_string();
            }
            "P" => {
                let w = wcs.as_ref().unwrap();
                points += 1;
                match w.pixel_to_sky(num(1), num(2)) {
                    Some(sky) => {
                        let err = angle_between(sky, (num(3), num(4))) / scale;
                        worst_sky = worst_sky.max(err);
                        if err > 1e-6 {
                            failures.push(format!(
                                "{name}: pixel ({}, {}) → sky off by {err:.2e} px",
                                f[1], f[2]
                            ));
                        }
                    }
                    None => failures.push(format!(
                        "{name}: pixel ({}, {}) has no sky position, astropy has one",
                        f[1], f[2]
                    )),
                }
            }
            "S" => {
                let w = wcs.as_ref().unwrap();
                points += 1;
                match w.sky_to_pixel(num(1), num(2)) {
                    Some((x, y)) => {
                        let err = (x - num(3)).abs().max((y - num(4)).abs());
                        worst_pix = worst_pix.max(err);
                        if err > 1e-6 {
                            failures.push(format!(
                                "{name}: sky ({}, {}) → pixel off by {err:.2e}",
                                f[1], f[2]
                            ));
                        }
                    }
                    None => failures.push(format!(
                        "{name}: sky ({}, {}) has no pixel, astropy has one",
                        f[1], f[2]
                    )),
                }
            }
            _ => panic!("unexpected oracle line {line:?}"),
        }
    }
    println!("{points} points; worst sky→pixel {worst_pix:.2e} px, pixel→sky {worst_sky:.2e} px");
    assert!(points > 5000, "only {points} points compared");
    assert!(
        failures.is_empty(),
        "{} failures, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}
