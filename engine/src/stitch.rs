//! Stitching one cutout from several images onto the pixel grid of the first one.
//!
//! The first source defines the grid: the window's pixels inside it are copied exactly (as
//! physical values). Every other pixel takes its sky position from the first source's WCS and
//! the *nearest pixel* of another source holding that position; when several hold it, the
//! one whose centre is nearest on the sky wins (as a tile index answers "which tile holds this
//! position"). Nearest pixel, not flux-conserving resampling: the two agree only when the
//! grids share their pixel scale and orientation, as Euclid MER tiles do, where a neighbour's
//! nearest pixel is the pixel that lies on the same spot of the sky to within a fraction of a
//! pixel. Pixels no source holds are NaN.
//!
//! A source *holds* a sky position when its 0-based pixel position `(x, y)` lies in
//! `[-0.5, N - 0.5)` on both axes; its nearest pixel is then `(floor(x + 0.5), floor(y + 0.5))`,
//! so the half-open pixel squares tile the image without gaps or double counting.

use rayon::prelude::*;

use crate::cutout::{window_physical, Window, MAX_BYTES};
use crate::fits::Image;
use crate::wcs::Wcs;
use crate::{Error, Result};

/// An image to take pixels from (its first plane), with its celestial WCS.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub image: Image<'a>,
    pub wcs: &'a Wcs,
}

/// A stitched cutout.
#[derive(Debug, Clone, PartialEq)]
pub struct Stitched {
    pub width: usize,
    pub height: usize,
    /// Physical values (BSCALE/BZERO applied, BLANK as NaN), `width × height`, row by row
    /// from the window's first row (FITS order: the first row is the bottom one); NaN where no
    /// source holds the pixel.
    pub data: Vec<f32>,
    /// How many of the window's pixels each source holds, in the order of the sources (for
    /// the first source: the window's pixels inside it, NaN or not).
    pub filled: Vec<usize>,
}

/// What the per-pixel search needs of a source other than the grid.
struct Neighbour<'s, 'a> {
    source: &'s Source<'a>,
    /// Its index in the sources.
    index: usize,
    /// Unit vector of the image centre.
    centre: [f64; 3],
    /// Cosine of the angular radius of a circle around the centre holding the whole image,
    /// widened a little, so that positions outside it are skipped without a projection.
    cos_reach: f64,
}

/// Samples per image edge when bounding an image by a circle.
const EDGE_STEPS: usize = 16;

/// Cuts `window` (0-based pixels of `sources[0]`, which may extend past it) from `sources`,
/// filling what lies outside the first source from the others by nearest pixel.
pub fn stitch(window: Window, sources: &[Source<'_>]) -> Result<Stitched> {
    let mut data = Vec::new();
    let filled = stitch_into(window, sources, &mut data)?;
    Ok(Stitched {
        width: window.width,
        height: window.height,
        data,
        filled,
    })
}

/// [`stitch`] into `data` (made `width × height` long; what it held does not matter): a
/// caller cutting many windows reuses one buffer's memory rather than faulting in fresh pages
/// for each. Returns [`Stitched::filled`].
pub fn stitch_into(
    window: Window,
    sources: &[Source<'_>],
    data: &mut Vec<f32>,
) -> Result<Vec<usize>> {
    let Some(grid) = sources.first() else {
        return Err(Error::Cutout("stitching needs at least one image".into()));
    };
    let pixels = window
        .width
        .checked_mul(window.height)
        .filter(|n| n.checked_mul(4).is_some_and(|b| b <= MAX_BYTES))
        .ok_or_else(|| {
            Error::Cutout(format!(
                "the {}×{} cutout is larger than {MAX_BYTES} bytes",
                window.width, window.height
            ))
        })?;
    // Only new elements are written here: `window_physical` writes every value.
    data.truncate(pixels);
    data.resize(pixels, f32::NAN);
    if pixels == 0 {
        return Ok(vec![0; sources.len()]);
    }
    window_physical(&grid.image, 0, window, data);
    let neighbours: Vec<Neighbour<'_, '_>> = sources
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(index, source)| neighbour(index, source))
        .collect();
    let (gw, gh) = (grid.image.width() as i64, grid.image.height() as i64);
    // Window columns inside the grid image, for rows inside it.
    let inside_cols = (-window.x0).clamp(0, window.width as i64) as usize
        ..(gw - window.x0).clamp(0, window.width as i64) as usize;
    let filled = data
        .par_chunks_mut(window.width)
        .enumerate()
        .fold(
            || {
                (
                    vec![0usize; sources.len()],
                    Vec::with_capacity(neighbours.len()),
                )
            },
            |(mut counts, mut order), (j, row)| {
                let y = window.y0 + j as i64;
                let cols = if (0..gh).contains(&y) {
                    counts[0] += inside_cols.len();
                    inside_cols.clone()
                } else {
                    0..0
                };
                if !neighbours.is_empty() {
                    for i in (0..cols.start).chain(cols.end..window.width) {
                        let x = window.x0 + i as i64;
                        if let Some((k, value)) =
                            nearest_pixel(grid.wcs, &neighbours, x, y, &mut order)
                        {
                            row[i] = value;
                            counts[k] += 1;
                        }
                    }
                }
                (counts, order)
            },
        )
        .map(|(counts, _)| counts)
        .reduce(
            || vec![0usize; sources.len()],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        );
    Ok(filled)
}

/// The value of grid pixel `(x, y)` taken from the neighbour holding its sky position (the
/// nearest centre among several), with the neighbour's index in the sources. `order` is
/// scratch space, reused from pixel to pixel.
fn nearest_pixel(
    grid: &Wcs,
    neighbours: &[Neighbour<'_, '_>],
    x: i64,
    y: i64,
    order: &mut Vec<(f64, usize)>,
) -> Option<(usize, f32)> {
    let (ra, dec) = grid.pixel_to_sky(x as f64, y as f64)?;
    let p = unit(ra, dec);
    // Nearest centre first (ties: the earlier source), so the first neighbour holding the
    // position is the answer: usually one projection per pixel.
    order.clear();
    order.extend(
        neighbours
            .iter()
            .enumerate()
            .map(|(k, n)| (dot(p, n.centre), k))
            .filter(|&(cos, k)| cos >= neighbours[k].cos_reach),
    );
    order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, k) in order.iter() {
        let n = &neighbours[k];
        let Some((sx, sy)) = n.source.wcs.sky_to_pixel(ra, dec) else {
            continue;
        };
        let (ix, iy) = ((sx + 0.5).floor(), (sy + 0.5).floor());
        let image = &n.source.image;
        if ix >= 0.0 && iy >= 0.0 && ix < image.width() as f64 && iy < image.height() as f64 {
            let (ix, iy) = (ix as usize, iy as usize);
            let elem = image.bitpix().bytes();
            let stored = image.row(0, iy)?.get(ix * elem..(ix + 1) * elem)?;
            let mut value = [f32::NAN];
            image.to_physical(stored, &mut value);
            return Some((n.index, value[0]));
        }
    }
    None
}

/// A source's centre and reach, or `None` when its centre or corners have no sky position
/// (such a source cannot be searched by position and gives no pixels).
fn neighbour<'s, 'a>(index: usize, source: &'s Source<'a>) -> Option<Neighbour<'s, 'a>> {
    let (w, h) = (source.image.width() as f64, source.image.height() as f64);
    let (ra, dec) = source.wcs.pixel_to_sky((w - 1.0) / 2.0, (h - 1.0) / 2.0)?;
    let centre = unit(ra, dec);
    // The outer pixel edges, sampled (corners included), the farthest point widened by two
    // pixel diagonals for what lies between the samples.
    let mut cos_min: f64 = 1.0;
    for step in 0..=EDGE_STEPS {
        let t = step as f64 / EDGE_STEPS as f64;
        let (ex, ey) = (t * w - 0.5, t * h - 0.5);
        for (x, y) in [(ex, -0.5), (ex, h - 0.5), (-0.5, ey), (w - 0.5, ey)] {
            let (a, d) = source.wcs.pixel_to_sky(x, y)?;
            cos_min = cos_min.min(dot(centre, unit(a, d)));
        }
    }
    let (sx, sy) = source.wcs.pixel_scales();
    let margin = 2.0 * sx.hypot(sy);
    let radius = cos_min.clamp(-1.0, 1.0).acos().to_degrees() + margin;
    Some(Neighbour {
        source,
        index,
        centre,
        cos_reach: if radius >= 180.0 {
            -2.0
        } else {
            radius.to_radians().cos()
        },
    })
}

fn unit(ra: f64, dec: f64) -> [f64; 3] {
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fits::Header;

    const SCALE: f64 = 0.1 / 3600.0;

    /// A `w × h` TAN image header on the tangent point (150, 60) whose pixel (0, 0) lies at
    /// pixel `(dx, 0)` of an image with `dx = 0`: all images share one tangent plane, so pixel
    /// positions map between them by whole pixels, known without a WCS.
    fn header(w: usize, h: usize, dx: i64, bitpix: i64, scaling: &str) -> Header {
        let text = format!(
            "SIMPLE  = T\nBITPIX  = {bitpix}\nNAXIS   = 2\nNAXIS1  = {w}\nNAXIS2  = {h}\n\
             CTYPE1  = 'RA---TAN'\nCTYPE2  = 'DEC--TAN'\nCRVAL1  = 150.0\nCRVAL2  = 60.0\n\
             CRPIX1  = {}\nCRPIX2  = 1.0\nCD1_1   = {}\nCD2_2   = {SCALE}\n{scaling}END",
            1.0 - dx as f64,
            -SCALE
        );
        Header::from_card_lines(&text).unwrap()
    }

    /// Float pixels: `base + 1000 y + x`.
    fn float_data(w: usize, h: usize, base: f32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| base + 1000.0 * y as f32 + x as f32))
            .flat_map(f32::to_be_bytes)
            .collect()
    }

    #[test]
    fn inside_the_grid_is_a_plain_cutout() {
        let h = header(30, 20, 0, -32, "");
        let data = float_data(30, 20, 0.0);
        let wcs = Wcs::from_header(&h).unwrap();
        let grid = Source {
            image: Image::new(&h, &data).unwrap(),
            wcs: &wcs,
        };
        let window = Window {
            x0: 25,
            y0: -3,
            width: 8,
            height: 6,
        };
        let out = stitch(window, std::slice::from_ref(&grid)).unwrap();
        let mut want = vec![0.0; 48];
        window_physical(&grid.image, 0, window, &mut want);
        assert_eq!(
            out.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // 5 columns × 3 rows inside; the rest NaN.
        assert_eq!(out.filled, [15]);
        assert_eq!(out.data.iter().filter(|v| v.is_nan()).count(), 48 - 15);
        assert_eq!(out.data[3 * 8], 25.0);
    }

    #[test]
    fn neighbours_fill_the_rest_by_nearest_pixel_and_nearest_centre() {
        // The grid A spans x 0..20; B (16-bit, scaled) spans 20..40; C (float) spans 26..46
        // and overlaps B, whose centre (29.5) is nearer than C's (35.5) up to x = 32.
        let (ha, hb, hc) = (
            header(20, 10, 0, -32, ""),
            header(
                20,
                10,
                20,
                16,
                "BSCALE  = 0.5\nBZERO   = 100.0\nBLANK   = -7\n",
            ),
            header(20, 10, 26, -32, ""),
        );
        let da = float_data(20, 10, 0.0);
        let db: Vec<u8> = (0..10i16)
            .flat_map(|y| (0..20i16).map(move |x| if (x, y) == (3, 4) { -7 } else { 100 * y + x }))
            .flat_map(i16::to_be_bytes)
            .collect();
        let dc = float_data(20, 10, 0.25);
        let wcs: Vec<Wcs> = [&ha, &hb, &hc]
            .iter()
            .map(|h| Wcs::from_header(h).unwrap())
            .collect();
        let sources = [
            Source {
                image: Image::new(&ha, &da).unwrap(),
                wcs: &wcs[0],
            },
            Source {
                image: Image::new(&hb, &db).unwrap(),
                wcs: &wcs[1],
            },
            Source {
                image: Image::new(&hc, &dc).unwrap(),
                wcs: &wcs[2],
            },
        ];
        let window = Window {
            x0: 15,
            y0: 8,
            width: 35,
            height: 4,
        };
        let out = stitch(window, &sources).unwrap();
        let mut counts = [0; 3];
        for j in 0..4 {
            for i in 0..35 {
                let (x, y) = (15 + i as i64, 8 + j as i64);
                let want = if y >= 10 || x >= 46 {
                    f32::NAN
                } else if x < 20 {
                    counts[0] += 1;
                    1000.0 * y as f32 + x as f32
                } else if x <= 32 {
                    counts[1] += 1;
                    let (bx, by) = (x - 20, y);
                    if (bx, by) == (3, 4) {
                        f32::NAN
                    } else {
                        100.0 + 0.5 * (100 * by + bx) as f32
                    }
                } else {
                    counts[2] += 1;
                    0.25 + 1000.0 * y as f32 + (x - 26) as f32
                };
                let got = out.data[j * 35 + i];
                assert!(
                    got.to_bits() == want.to_bits(),
                    "({x}, {y}): {got} != {want}"
                );
            }
        }
        assert_eq!(out.filled, counts);
        assert_eq!(counts, [10, 26, 26]);
    }

    #[test]
    fn blank_pixels_of_a_neighbour_stay_blank() {
        let (ha, hb) = (
            header(4, 4, 0, -32, ""),
            header(4, 4, 4, 16, "BLANK   = 5\n"),
        );
        let da = float_data(4, 4, 0.0);
        let db: Vec<u8> = [5i16; 16].iter().flat_map(|v| v.to_be_bytes()).collect();
        let (wa, wb) = (
            Wcs::from_header(&ha).unwrap(),
            Wcs::from_header(&hb).unwrap(),
        );
        let sources = [
            Source {
                image: Image::new(&ha, &da).unwrap(),
                wcs: &wa,
            },
            Source {
                image: Image::new(&hb, &db).unwrap(),
                wcs: &wb,
            },
        ];
        let window = Window {
            x0: 2,
            y0: 0,
            width: 4,
            height: 1,
        };
        let out = stitch(window, &sources).unwrap();
        assert_eq!(out.filled, [2, 2]);
        assert_eq!(out.data[..2], [2.0, 3.0]);
        assert!(out.data[2..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn refuses_no_source_and_huge_windows() {
        let window = Window {
            x0: 0,
            y0: 0,
            width: 2,
            height: 2,
        };
        assert!(stitch(window, &[]).is_err());
        let h = header(4, 4, 0, -32, "");
        let data = float_data(4, 4, 0.0);
        let wcs = Wcs::from_header(&h).unwrap();
        let grid = Source {
            image: Image::new(&h, &data).unwrap(),
            wcs: &wcs,
        };
        let huge = Window {
            x0: 0,
            y0: 0,
            width: 1 << 20,
            height: 1 << 20,
        };
        let err = stitch(huge, std::slice::from_ref(&grid)).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
