//! The WCS against astropy.wcs (the oracle): every projection, linear form, distortion and
//! frame, on grids reaching past the image edges, to 1e-6 pixel.
//!
//! astropy runs `testdata/oracle/wcs_grid.py` with `$INSITU_PYTHON`, else the workspace's
//! `.venv/bin/python`, else `python3`. Without Python or astropy this test fails; it never
//! skips. The script writes each case's header as card lines, so the test reads exactly what
//! astropy read.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use insitu_engine::fits::Header;
use insitu_engine::wcs::Wcs;

/// Fixture files checked alongside the headers the script builds itself.
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
    "real/scale.fits",
];

/// Cases the script must produce: a renamed or dropped case fails the test.
const REQUIRED_CASES: &[&str] = &[
    "tan",
    "sin",
    "zea",
    "arc",
    "stg",
    "ait",
    "car",
    "cd_rotated",
    "pc_cdelt",
    "crota2",
    "sip_acs",
    "sip_irac",
    "tpv",
    "fk5",
    "galactic",
    "pole",
    "ra0",
];

const TOLERANCE_PX: f64 = 1e-6;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("INSITU_PYTHON") {
        return p.into();
    }
    let venv = workspace().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Angle between two (ra, dec) positions in degrees, stable for tiny separations.
fn separation(a: (f64, f64), b: (f64, f64)) -> f64 {
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

/// One case of the oracle output, checked as its lines arrive.
struct Case {
    name: String,
    scales: (f64, f64),
    cards: Vec<String>,
    wcs: Option<Wcs>,
    pixel_points: usize,
    sky_points: usize,
    worst_sky: f64,
    worst_pixel: f64,
}

impl Case {
    fn wcs(&mut self) -> &Wcs {
        if self.wcs.is_none() {
            let header = Header::from_card_lines(&self.cards.join("\n"))
                .unwrap_or_else(|e| panic!("{}: header does not parse: {e:?}", self.name));
            let wcs = Wcs::from_header(&header)
                .unwrap_or_else(|e| panic!("{}: astropy accepts this WCS: {e}", self.name));
            let (sx, sy) = wcs.pixel_scales();
            assert!(
                (sx - self.scales.0).abs() <= 1e-12 * sx
                    && (sy - self.scales.1).abs() <= 1e-12 * sy,
                "{}: pixel scales ({sx}, {sy}), astropy {:?}",
                self.name,
                self.scales
            );
            self.wcs = Some(wcs);
        }
        self.wcs.as_ref().unwrap()
    }
}

#[test]
fn wcs_agrees_with_astropy_to_a_micropixel() {
    let files: Vec<PathBuf> = FIXTURES
        .iter()
        .map(|f| workspace().join("testdata/fits").join(f))
        .collect();
    let out = Command::new(python())
        .arg(workspace().join("testdata/oracle/wcs_grid.py"))
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (Python with astropy is required; set INSITU_PYTHON): {e}",
                python().display()
            )
        });
    assert!(
        out.status.success(),
        "the astropy oracle failed (Python with astropy is required; set INSITU_PYTHON):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();

    let mut cases: Vec<Case> = Vec::new();
    let mut failures = Vec::new();
    for line in text.lines() {
        if let Some(card) = line.strip_prefix("H ") {
            cases.last_mut().unwrap().cards.push(card.to_string());
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f[i].parse::<f64>().unwrap();
        match f[0] {
            "C" => cases.push(Case {
                name: f[1].rsplit('/').next().unwrap().to_string(),
                scales: (num(2), num(3)),
                cards: Vec::new(),
                wcs: None,
                pixel_points: 0,
                sky_points: 0,
                worst_sky: 0.0,
                worst_pixel: 0.0,
            }),
            "P" => {
                let case = cases.last_mut().unwrap();
                let scale = case.scales.0.min(case.scales.1);
                let (x, y, expected) = (num(1), num(2), (num(3), num(4)));
                let ours = case.wcs().pixel_to_sky(x, y);
                case.pixel_points += 1;
                match ours {
                    Some(sky) if expected.0.is_finite() => {
                        let err = separation(sky, expected) / scale;
                        case.worst_sky = case.worst_sky.max(err);
                        if err > TOLERANCE_PX || !(0.0..360.0).contains(&sky.0) {
                            failures.push(format!(
                                "{}: pixel ({x}, {y}) → {sky:?}, astropy {expected:?} ({err:.2e} px)",
                                case.name
                            ));
                        }
                    }
                    None if !expected.0.is_finite() => {}
                    _ => failures.push(format!(
                        "{}: pixel ({x}, {y}) → {ours:?}, astropy {expected:?}",
                        case.name
                    )),
                }
            }
            "S" => {
                let case = cases.last_mut().unwrap();
                let (ra, dec, expected) = (num(1), num(2), (num(3), num(4)));
                if expected.0.is_infinite() {
                    // astropy's iteration diverged (NoConvergence): nothing to compare with.
                    continue;
                }
                let ours = case.wcs().sky_to_pixel(ra, dec);
                case.sky_points += 1;
                match ours {
                    Some(p) if expected.0.is_finite() => {
                        let err = (p.0 - expected.0).abs().max((p.1 - expected.1).abs());
                        // Beyond a million pixels (near a TAN horizon, say) the projection
                        // amplifies rounding in the sky position; there a relative 1e-10
                        // holds, and the image with its surroundings gets the full 1e-6.
                        let far = expected.0.abs().max(expected.1.abs());
                        let tolerance = if far < 1e6 {
                            case.worst_pixel = case.worst_pixel.max(err);
                            TOLERANCE_PX
                        } else {
                            1e-10 * far
                        };
                        if err > tolerance {
                            failures.push(format!(
                                "{}: sky ({ra}, {dec}) → {p:?}, astropy {expected:?} ({err:.2e} px)",
                                case.name
                            ));
                        }
                    }
                    None if !expected.0.is_finite() => {}
                    _ => failures.push(format!(
                        "{}: sky ({ra}, {dec}) → {ours:?}, astropy {expected:?}",
                        case.name
                    )),
                }
            }
            _ => panic!("unexpected oracle line {line:?}"),
        }
    }

    println!(
        "{:<18} {:>6} {:>6} {:>14} {:>14}",
        "case", "pixels", "skies", "pix→sky (px)", "sky→pix (px)"
    );
    for c in &cases {
        println!(
            "{:<18} {:>6} {:>6} {:>14.2e} {:>14.2e}",
            c.name, c.pixel_points, c.sky_points, c.worst_sky, c.worst_pixel
        );
    }
    for required in REQUIRED_CASES {
        let case = cases.iter().find(|c| c.name == *required);
        assert!(
            case.is_some_and(|c| c.pixel_points >= 400 && c.sky_points >= 400),
            "case {required} missing or under 400 points"
        );
    }
    assert_eq!(cases.len(), 25 + FIXTURES.len(), "case count");
    assert!(
        failures.is_empty(),
        "{} disagreements with astropy, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(12)]
    );
}
