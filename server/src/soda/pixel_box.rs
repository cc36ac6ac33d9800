//! The pixel box a sky region covers on an image: the smallest window holding every pixel the
//! region touches, clipped to the image (SODA 1.0 §3.3: the cutout covers at least the
//! requested region).
//!
//! The pixel extent of the region's part on the image, `R ∩ I`, is reached on its boundary,
//! which lies on the region's boundary inside the image or on the image's border inside the
//! region; along the border the extremes are the image's corners or points where the region's
//! boundary crosses it. So the box is that of (a) the region's boundary, sampled densely and
//! projected, keeping the points on the image, and (b) the image corners that lie in the
//! region; it is widened by the sampling step so that no touched pixel is left out. Every test
//! is done on the sphere, so RA wrap and a pole inside the region need no special case, and
//! only the parts of the boundary near the image are sampled (the image's enclosing circle
//! decides which), so a large region costs no more than a small one.

use insitu_engine::cutout::Window;
use insitu_engine::wcs::Wcs;

use super::region::{angle, ra_dec, unit, Arc, Region, Unit};

/// Boundary samples are at most this many pixels apart (unless that makes too many).
const SPACING_PX: f64 = 0.25;
/// At most this many boundary points are projected for one region and image.
const MAX_SAMPLES: f64 = 2.0e6;
/// At most this many boundary pieces are kept for sampling (the sample count bounds the work
/// anyway; this bounds the memory of pathological regions).
const MAX_PIECES: usize = 100_000;

/// The circle on the sky holding the whole image: centre and radius (radians).
struct Cap {
    centre: Unit,
    radius: f64,
}

/// The image's enclosing circle: around its central pixel, through the farthest of a few
/// points of its border, plus a margin for the border between them.
fn image_cap(wcs: &Wcs, width: usize, height: usize, scale: f64) -> Cap {
    let (w, h) = (width as f64, height as f64);
    let everything = Cap {
        centre: [0.0, 0.0, 1.0],
        radius: std::f64::consts::PI,
    };
    let Some(centre) = wcs
        .pixel_to_sky((w - 1.0) / 2.0, (h - 1.0) / 2.0)
        .map(|(ra, dec)| unit(ra, dec))
    else {
        return everything;
    };
    const STEPS: usize = 16;
    let mut radius: f64 = 0.0;
    for k in 0..=STEPS {
        let f = k as f64 / STEPS as f64;
        for (x, y) in [
            (-0.5 + f * w, -0.5),
            (-0.5 + f * w, h - 0.5),
            (-0.5, -0.5 + f * h),
            (w - 0.5, -0.5 + f * h),
        ] {
            match wcs.pixel_to_sky(x, y) {
                Some((ra, dec)) => radius = radius.max(angle(unit(ra, dec), centre)),
                None => return everything,
            }
        }
    }
    // Between two border samples the border bulges out by much less than a step.
    let step = (w.max(h) / STEPS as f64) * scale;
    Cap {
        centre,
        radius: radius + step + 8.0 * scale,
    }
}

/// Running pixel extremes of the points found on the image.
#[derive(Default)]
struct Extent {
    bounds: Option<(f64, f64, f64, f64)>,
}

impl Extent {
    fn add(&mut self, x: f64, y: f64) {
        let b = self.bounds.get_or_insert((x, x, y, y));
        *b = (b.0.min(x), b.1.max(x), b.2.min(y), b.3.max(y));
    }
}

/// The window of every pixel of the `width × height` image (with celestial `wcs`) that
/// `region` touches, or `None` when it touches none.
pub fn pixel_box(region: &Region, wcs: &Wcs, width: usize, height: usize) -> Option<Window> {
    if width == 0 || height == 0 {
        return None;
    }
    let (sx, sy) = wcs.pixel_scales();
    let scale = sx.min(sy).to_radians();
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    let (w, h) = (width as f64, height as f64);
    let on_image = |x: f64, y: f64| x >= -0.5 && x <= w - 0.5 && y >= -0.5 && y <= h - 0.5;
    let mut extent = Extent::default();

    for (x, y) in [
        (-0.5, -0.5),
        (w - 0.5, -0.5),
        (w - 0.5, h - 0.5),
        (-0.5, h - 0.5),
    ] {
        if let Some((ra, dec)) = wcs.pixel_to_sky(x, y) {
            if region.contains(unit(ra, dec)) {
                extent.add(x, y);
            }
        }
    }

    let cap = image_cap(wcs, width, height, scale);
    let boundary = region.boundary();
    let pieces = pieces_near(&boundary, &cap, scale);
    let total: f64 = pieces.iter().map(|p| p.length).sum();
    let spacing = (SPACING_PX * scale).max(total / MAX_SAMPLES);
    for piece in &pieces {
        let n = (piece.length / spacing).ceil().max(1.0) as usize;
        for k in 0..=n {
            let t = piece.from + (piece.to - piece.from) * (k as f64 / n as f64);
            let (ra, dec) = ra_dec(piece.arc.at(t));
            if let Some((x, y)) = wcs.sky_to_pixel(ra, dec) {
                if on_image(x, y) {
                    extent.add(x, y);
                }
            }
        }
    }

    let (x_min, x_max, y_min, y_max) = extent.bounds?;
    // A sampled extreme lies within half a step of the true one; the projection stretches
    // steps by far less than the 10 % added.
    let pad = 1.1 * spacing / scale;
    // Pixel i spans [i − 0.5, i + 0.5) in 0-based pixel coordinates.
    let first = |v: f64| ((v - pad + 0.5).floor() as i64).max(0);
    let last = |v: f64, n: usize| ((v + pad + 0.5).floor() as i64).min(n as i64 - 1);
    let (x0, x1) = (first(x_min), last(x_max, width));
    let (y0, y1) = (first(y_min), last(y_max, height));
    (x0 <= x1 && y0 <= y1).then(|| Window {
        x0,
        y0,
        width: (x1 - x0 + 1) as usize,
        height: (y1 - y0 + 1) as usize,
    })
}

/// A piece of a boundary arc, between fractions `from` and `to` of it.
#[derive(Clone, Copy)]
struct Piece<'a> {
    arc: &'a Arc,
    from: f64,
    to: f64,
    /// Radians.
    length: f64,
}

/// The pieces of the arcs that come near the image, found by halving: a piece is dropped
/// when its middle lies farther from the image's centre than the image's radius plus half
/// the piece (no point of the piece is farther from its middle), and kept once it is shorter
/// than a quarter of the image's radius. So a boundary far longer than the image costs a few
/// dozen tests per place where it passes the image.
fn pieces_near<'a>(arcs: &'a [Arc], cap: &Cap, scale: f64) -> Vec<Piece<'a>> {
    let short = (cap.radius / 4.0).max(scale);
    let mut kept = Vec::new();
    let mut pending: Vec<Piece<'a>> = arcs
        .iter()
        .map(|arc| Piece {
            arc,
            from: 0.0,
            to: 1.0,
            length: arc.length(),
        })
        .collect();
    while let Some(piece) = pending.pop() {
        let middle = piece.arc.at((piece.from + piece.to) / 2.0);
        if angle(middle, cap.centre) > cap.radius + piece.length / 2.0 + 1e-12 {
            continue;
        }
        if piece.length <= short || kept.len() + pending.len() > MAX_PIECES {
            kept.push(piece);
            continue;
        }
        let half = (piece.from + piece.to) / 2.0;
        pending.push(Piece {
            to: half,
            length: piece.length / 2.0,
            ..piece
        });
        pending.push(Piece {
            from: half,
            length: piece.length / 2.0,
            ..piece
        });
    }
    kept
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::soda::region::{LonSpan, Polygon};
    use insitu_engine::fits::Value;

    const NPIX: usize = 64;
    const PIXEL: f64 = 0.1 / 3600.0;

    fn wcs(ra: f64, dec: f64) -> Wcs {
        let mut h = crate::demo::mosaic_header(NPIX);
        h.set("CRVAL1", Value::Real(ra), None);
        h.set("CRVAL2", Value::Real(dec), None);
        Wcs::from_header(&h).unwrap()
    }

    /// Brute force: the window of the pixels whose centre is in the region, and that of the
    /// pixels with any of a 7 × 7 grid of points (edges included) in it.
    fn brute(region: &Region, wcs: &Wcs) -> (Option<Window>, Option<Window>) {
        let mut centres = Extent::default();
        let mut touched = Extent::default();
        for j in 0..NPIX {
            for i in 0..NPIX {
                let inside = |x: f64, y: f64| {
                    let (ra, dec) = wcs.pixel_to_sky(x, y).unwrap();
                    region.contains(unit(ra, dec))
                };
                let (x, y) = (i as f64, j as f64);
                if inside(x, y) {
                    centres.add(x, y);
                }
                let any = (0..7)
                    .flat_map(|a| (0..7).map(move |b| (a, b)))
                    .any(|(a, b)| inside(x - 0.5 + a as f64 / 6.0, y - 0.5 + b as f64 / 6.0));
                if any {
                    touched.add(x, y);
                }
            }
        }
        let window = |e: Extent| {
            e.bounds.map(|(x0, x1, y0, y1)| Window {
                x0: x0 as i64,
                y0: y0 as i64,
                width: (x1 - x0) as usize + 1,
                height: (y1 - y0) as usize + 1,
            })
        };
        (window(centres), window(touched))
    }

    fn holds(outer: Window, inner: Window) -> bool {
        outer.x0 <= inner.x0
            && outer.y0 <= inner.y0
            && outer.x0 + outer.width as i64 >= inner.x0 + inner.width as i64
            && outer.y0 + outer.height as i64 >= inner.y0 + inner.height as i64
    }

    fn grown(w: Window, by: i64) -> Window {
        Window {
            x0: w.x0 - by,
            y0: w.y0 - by,
            width: w.width + 2 * by as usize,
            height: w.height + 2 * by as usize,
        }
    }

    /// The box holds every pixel whose centre is in the region, and no pixel more than one
    /// beyond those the region touches.
    fn check(region: Region, wcs: &Wcs) -> Option<Window> {
        let found = pixel_box(&region, wcs, NPIX, NPIX);
        let (centres, touched) = brute(&region, wcs);
        match (found, centres, touched) {
            (Some(f), c, Some(t)) => {
                if let Some(c) = c {
                    assert!(holds(f, c), "{region:?}: {f:?} misses centres {c:?}");
                }
                assert!(holds(grown(t, 1), f), "{region:?}: {f:?} beyond {t:?}");
            }
            (None, None, t) => assert!(t.is_none_or(|t| t.width * t.height <= 2), "{t:?}"),
            other => panic!("{region:?}: {other:?}"),
        }
        found
    }

    #[test]
    fn circles_ranges_and_polygons_against_brute_force() {
        let w = wcs(150.0, 2.0);
        let (ra, dec) = w.pixel_to_sky(20.3, 40.8).unwrap();
        let circle = |r_px: f64| Region::Circle {
            ra,
            dec,
            radius: r_px * PIXEL,
        };
        let small = check(circle(5.2), &w).unwrap();
        assert!(small.width >= 11 && small.width <= 12, "{small:?}");
        // Larger than the image: all of it.
        let all = check(circle(500.0), &w).unwrap();
        assert_eq!((all.x0, all.y0, all.width, all.height), (0, 0, NPIX, NPIX));
        // Half off the image: clipped.
        let (ra_edge, dec_edge) = w.pixel_to_sky(-3.0, 10.0).unwrap();
        let clipped = check(
            Region::Circle {
                ra: ra_edge,
                dec: dec_edge,
                radius: 8.0 * PIXEL,
            },
            &w,
        )
        .unwrap();
        assert_eq!(clipped.x0, 0);
        // Far away: nothing.
        assert_eq!(
            check(
                Region::Circle {
                    ra: 10.0,
                    dec: -40.0,
                    radius: 1.0
                },
                &w
            ),
            None
        );
        let (ra0, dec0) = w.pixel_to_sky(50.0, 10.0).unwrap();
        let (ra1, dec1) = w.pixel_to_sky(30.0, 25.0).unwrap();
        check(
            Region::Range {
                lon: Some(LonSpan {
                    start: ra0,
                    end: ra1,
                }),
                lat: (dec0, dec1),
            },
            &w,
        )
        .unwrap();
        // A band across the whole image in RA.
        let band = check(
            Region::Range {
                lon: None,
                lat: (dec0, dec1),
            },
            &w,
        )
        .unwrap();
        assert_eq!((band.x0, band.width), (0, NPIX));
        let corners = [(10.0, 5.0), (40.0, 12.0), (33.0, 50.0), (-10.0, 30.0)];
        let vertices = corners
            .iter()
            .map(|&(x, y)| w.pixel_to_sky(x, y).unwrap())
            .collect();
        check(Region::Polygon(Polygon::new(vertices).unwrap()), &w).unwrap();
    }

    #[test]
    fn ra_wrap_and_poles() {
        // An image straddling RA 0, cut by a range that wraps.
        // East is left: RA grows towards x = 0.
        let w = wcs(0.0001, 10.0);
        let (east, _) = w.pixel_to_sky(15.0, 0.0).unwrap();
        let (west, _) = w.pixel_to_sky(45.0, 0.0).unwrap();
        assert!(east < 1.0 && west > 359.0, "{east} {west}");
        let wrap = check(
            Region::Range {
                lon: Some(LonSpan {
                    start: west,
                    end: east,
                }),
                lat: (9.0, 11.0),
            },
            &w,
        )
        .unwrap();
        assert!(
            wrap.x0 >= 14 && wrap.x0 <= 16 && wrap.width <= 33,
            "{wrap:?}"
        );
        // An image on the north pole: a circle around the pole and a polar cap.
        let w = wcs(30.0, 90.0);
        let polar = check(
            Region::Circle {
                ra: 0.0,
                dec: 90.0,
                radius: 10.0 * PIXEL,
            },
            &w,
        )
        .unwrap();
        assert!(polar.width >= 21 && polar.width <= 22, "{polar:?}");
        check(
            Region::Range {
                lon: None,
                lat: (90.0 - 20.0 * PIXEL, 90.0),
            },
            &w,
        )
        .unwrap();
        let triangle = [
            (0.0, 90.0 - 15.0 * PIXEL),
            (120.0, 90.0 - 15.0 * PIXEL),
            (240.0, 90.0 - 15.0 * PIXEL),
        ];
        check(
            Region::Polygon(Polygon::new(triangle.to_vec()).unwrap()),
            &w,
        )
        .unwrap();
        // Half of the polar image by RA.
        check(
            Region::Range {
                lon: Some(LonSpan {
                    start: 300.0,
                    end: 120.0,
                }),
                lat: (-90.0, 90.0),
            },
            &w,
        )
        .unwrap();
    }
}
