//! Cutouts with astropy `Cutout2D` semantics: the same window, the same fill, the same WCS shift.

use std::ops::Range;
use std::str::FromStr;

use crate::fits::header::{BLOCK_LEN, CARD_LEN};
use crate::fits::{Card, Header, Image, Value};
use crate::wcs::Wcs;
use crate::{Error, Result};

/// What happens when the cutout extends past the image (astropy `overlap_slices` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Keep the requested shape; pixels outside the image are filled (NaN, or BLANK).
    #[default]
    Partial,
    /// Return only the part inside the image.
    Trim,
    /// Refuse a cutout that is not entirely inside the image.
    Strict,
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "partial" => Ok(Mode::Partial),
            "trim" => Ok(Mode::Trim),
            "strict" => Ok(Mode::Strict),
            other => Err(Error::Cutout(format!(
                "mode {other:?} is not one of partial, trim, strict"
            ))),
        }
    }
}

/// Where the cutout is centred.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Center {
    /// 0-based pixel coordinates (the centre of the first pixel is 0.0), as astropy.
    Pixel { x: f64, y: f64 },
    /// ICRS right ascension and declination in degrees.
    Sky { ra: f64, dec: f64 },
}

/// The side of a square cutout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Pixels(usize),
    Arcsec(f64),
}

/// Largest side accepted, so a typo cannot ask for terabytes.
pub const MAX_SIDE: usize = 32_768;
/// Largest cutout accepted, in bytes of pixel data (all planes).
pub const MAX_BYTES: usize = 1 << 30;

/// One cutout request.
#[derive(Debug, Clone, PartialEq)]
pub struct CutoutRequest {
    pub center: Center,
    pub size: Size,
    pub mode: Mode,
    /// Planes of a cube to keep (all when `None`).
    pub planes: Option<Range<usize>>,
}

/// A window of the source image in 0-based pixels; in `partial` mode it may extend outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x0: i64,
    pub y0: i64,
    pub width: usize,
    pub height: usize,
}

/// A finished cutout: header and stored big-endian pixel values, ready to write as FITS.
#[derive(Debug, Clone)]
pub struct Cutout {
    pub header: Header,
    pub window: Window,
    pub planes: Range<usize>,
    pub data: Vec<u8>,
}

impl Cutout {
    /// The cutout as a complete single-HDU FITS file.
    pub fn to_fits_bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_bytes();
        out.extend_from_slice(&self.data);
        out.resize(out.len().div_ceil(BLOCK_LEN) * BLOCK_LEN, 0);
        out
    }
}

/// The 1-D part of astropy's `overlap_slices`: the cutout's first and past-the-end index along
/// one axis, or `None` when it misses the image. The low edge is `ceil(pos - size/2)`
/// (astropy's default `limit_rounding_method`), so even sizes round the centre up.
fn axis_extent(large: usize, small: usize, pos: f64) -> Option<(i64, i64)> {
    // Beyond ±2^52 pixels an f64 has no fractional part left and no image is that large.
    if !pos.is_finite() || pos.abs() > 4.0e15 {
        return None;
    }
    let min = (pos - small as f64 / 2.0).ceil() as i64;
    let max = min + small as i64;
    (max > 0 && min < large as i64).then_some((min, max))
}

/// The window astropy's `Cutout2D` cuts for a centre `(x, y)` and shape `width × height`.
pub fn cutout_window(
    image_width: usize,
    image_height: usize,
    (x, y): (f64, f64),
    (width, height): (usize, usize),
    mode: Mode,
) -> Result<Window> {
    let (Some((x0, x1)), Some((y0, y1))) = (
        axis_extent(image_width, width, x),
        axis_extent(image_height, height, y),
    ) else {
        return Err(Error::Cutout(format!(
            "position ({x:.3}, {y:.3}) does not overlap the {image_width}×{image_height} image (no overlap)"
        )));
    };
    let (iw, ih) = (image_width as i64, image_height as i64);
    let inside = x0 >= 0 && y0 >= 0 && x1 <= iw && y1 <= ih;
    match mode {
        Mode::Strict if !inside => Err(Error::Cutout(format!(
            "strict mode: the {width}×{height} cutout at ({x:.3}, {y:.3}) extends outside the \
             {image_width}×{image_height} image"
        ))),
        Mode::Trim => {
            let (x0, y0) = (x0.max(0), y0.max(0));
            Ok(Window {
                x0,
                y0,
                width: (x1.min(iw) - x0) as usize,
                height: (y1.min(ih) - y0) as usize,
            })
        }
        _ => Ok(Window {
            x0,
            y0,
            width,
            height,
        }),
    }
}

/// Side of the cutout in pixels: `Cutout2D` rounds an angular size with `np.round` (half to
/// even) against `proj_plane_pixel_scales`. Returns (width, height).
pub fn side_pixels(size: Size, wcs: Option<&Wcs>) -> Result<(usize, usize)> {
    let (w, h) = match size {
        Size::Pixels(n) => (n as f64, n as f64),
        Size::Arcsec(arcsec) => {
            let wcs =
                wcs.ok_or_else(|| Error::Cutout("a size in arcsec needs a celestial WCS".into()))?;
            let (sx, sy) = wcs.pixel_scales();
            let deg = arcsec / 3600.0;
            // astropy divides size[axis] by pixel_scales[axis] with axis 0 = rows (y) but
            // pixel_scales[0] = x: reproduced as is (it only matters for non-square pixels).
            ((deg / sy).round_ties_even(), (deg / sx).round_ties_even())
        }
    };
    let ok = |v: f64| v.is_finite() && v >= 1.0 && v <= MAX_SIDE as f64;
    if !ok(w) || !ok(h) {
        return Err(Error::Cutout(format!(
            "cutout size {size:?} gives {w}×{h} pixels; it must be between 1 and {MAX_SIDE}"
        )));
    }
    Ok((w as usize, h as usize))
}

/// 0-based pixel position of a centre.
pub fn center_pixel(center: Center, wcs: Option<&Wcs>) -> Result<(f64, f64)> {
    match center {
        Center::Pixel { x, y } if x.is_finite() && y.is_finite() => Ok((x, y)),
        Center::Pixel { x, y } => Err(Error::Cutout(format!(
            "pixel position ({x}, {y}) is not finite"
        ))),
        Center::Sky { ra, dec } => {
            if !(ra.is_finite() && dec.is_finite() && (-90.0..=90.0).contains(&dec)) {
                return Err(Error::Cutout(format!(
                    "sky position ({ra}, {dec}) is not a valid RA/Dec in degrees"
                )));
            }
            let wcs =
                wcs.ok_or_else(|| Error::Cutout("a sky position needs a celestial WCS".into()))?;
            wcs.sky_to_pixel(ra, dec).ok_or_else(|| {
                Error::Cutout(format!(
                    "position ({ra}, {dec}) cannot be projected onto this image (no overlap)"
                ))
            })
        }
    }
}

/// Plans a cutout: where it lies in the source, without reading pixels.
pub fn plan(
    image: &Image<'_>,
    wcs: Option<&Wcs>,
    request: &CutoutRequest,
) -> Result<(Window, Range<usize>)> {
    let pos = center_pixel(request.center, wcs)?;
    let shape = side_pixels(request.size, wcs)?;
    let window = cutout_window(image.width(), image.height(), pos, shape, request.mode)?;
    let planes = match &request.planes {
        None => 0..image.planes(),
        Some(r) if r.start < r.end && r.end <= image.planes() => r.clone(),
        Some(r) => {
            return Err(Error::Cutout(format!(
                "plane range {}..{} is outside the image's {} planes",
                r.start,
                r.end,
                image.planes()
            )))
        }
    };
    let bytes = window.width * window.height * planes.len() * image.bitpix().bytes();
    if bytes > MAX_BYTES {
        return Err(Error::Cutout(format!(
            "the cutout would hold {bytes} bytes ({}×{}×{} planes); the limit is {MAX_BYTES} (cut fewer planes or a smaller size)",
            window.width,
            window.height,
            planes.len()
        )));
    }
    Ok((window, planes))
}

/// Cuts `image`: the source header with the WCS moved, and the stored pixel values.
pub fn cut(image: &Image<'_>, wcs: Option<&Wcs>, request: &CutoutRequest) -> Result<Cutout> {
    let (window, planes) = plan(image, wcs, request)?;
    Ok(cut_window(image, window, planes))
}

/// Cuts a planned window.
pub fn cut_window(image: &Image<'_>, window: Window, planes: Range<usize>) -> Cutout {
    let template = HeaderTemplate::primary(image, window.width, window.height, planes.len());
    let mut bytes = Vec::new();
    template.render(origin(window, &planes), "", 0, &mut bytes);
    let (header, _) =
        Header::parse_cards(&bytes).expect("a template rendered from parsed cards parses back");
    Cutout {
        header,
        window,
        data: {
            let mut data = Vec::new();
            append_stored_window(image, window, planes.clone(), &mut data);
            data
        },
        planes,
    }
}

/// Appends the stored bytes of `window` over `planes` to `out`, filled outside the image.
pub fn append_stored_window(
    image: &Image<'_>,
    window: Window,
    planes: Range<usize>,
    out: &mut Vec<u8>,
) {
    out.reserve(window.width * window.height * planes.len() * image.bitpix().bytes());
    let fill = image.fill_bytes();
    for plane in planes {
        copy_stored(image, plane, window, &fill, out);
    }
}

/// Where cutout pixel (0, 0, plane 0) lies in the source, per axis.
pub fn origin(window: Window, planes: &Range<usize>) -> [i64; 3] {
    [window.x0, window.y0, planes.start as i64]
}

/// Appends the stored bytes of `window` in `plane` to `out`, filling outside the image.
fn copy_stored(image: &Image<'_>, plane: usize, w: Window, fill: &[u8], out: &mut Vec<u8>) {
    let elem = image.bitpix().bytes();
    let (inside, left, right) = row_split(image.width(), w);
    for j in 0..w.height as i64 {
        let row = usize::try_from(w.y0 + j)
            .ok()
            .and_then(|y| image.row(plane, y));
        match row {
            Some(row) if !inside.is_empty() => {
                push_fill(out, fill, left);
                out.extend_from_slice(&row[inside.start * elem..inside.end * elem]);
                push_fill(out, fill, right);
            }
            _ => push_fill(out, fill, w.width),
        }
    }
}

/// Writes the physical values (f32, NaN outside the image and for BLANK) of `window` in
/// `plane` into `out` (`width × height` elements).
pub fn window_physical(image: &Image<'_>, plane: usize, w: Window, out: &mut [f32]) {
    let elem = image.bitpix().bytes();
    let (inside, left, right) = row_split(image.width(), w);
    for (j, dst) in out.chunks_exact_mut(w.width).take(w.height).enumerate() {
        let row = usize::try_from(w.y0 + j as i64)
            .ok()
            .and_then(|y| image.row(plane, y));
        match row {
            Some(row) if !inside.is_empty() => {
                dst[..left].fill(f32::NAN);
                image.to_physical(
                    &row[inside.start * elem..inside.end * elem],
                    &mut dst[left..left + inside.len()],
                );
                dst[w.width - right..].fill(f32::NAN);
            }
            _ => dst.fill(f32::NAN),
        }
    }
}

/// Splits a window's rows into the source columns inside the image and the number of filled
/// columns on the left and right.
fn row_split(image_width: usize, w: Window) -> (Range<usize>, usize, usize) {
    let start = w.x0.clamp(0, image_width as i64);
    let end = (w.x0 + w.width as i64).clamp(0, image_width as i64);
    let left = ((start - w.x0).max(0) as usize).min(w.width);
    let inside = start as usize..end as usize;
    let right = w.width - left - inside.len();
    (inside, left, right)
}

fn push_fill(out: &mut Vec<u8>, fill: &[u8], count: usize) {
    for _ in 0..count {
        out.extend_from_slice(fill);
    }
}

/// A cutout header rendered once per shape and moved per cutout: the source cards kept, the
/// HDU made primary (or an IMAGE extension), `NAXISn` set, and only the reference-pixel cards
/// rewritten for each cutout so that every cutout pixel keeps its sky position (as
/// `Cutout2D` shifts `wcs.crpix` and the SIP `crpix`, which share the `CRPIXn` keywords).
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    bytes: Vec<u8>,
    patches: Vec<(usize, Patch)>,
}

#[derive(Debug, Clone)]
enum Patch {
    /// `CRPIXia` or `LTVi`: the source value minus the cutout origin on axis `axis` (0-based).
    Shift {
        keyword: String,
        comment: String,
        axis: usize,
        base: f64,
    },
    ExtName,
    CatRow,
}

impl HeaderTemplate {
    /// For a cutout written as a primary HDU.
    pub fn primary(
        image: &Image<'_>,
        width: usize,
        height: usize,
        planes: usize,
    ) -> HeaderTemplate {
        let mut h = image.header().clone();
        if h.contains("XTENSION") {
            h.remove("XTENSION");
            h.insert(
                0,
                Card::new("SIMPLE", Value::Logical(true), "conforms to FITS standard"),
            );
            h.remove("PCOUNT");
            h.remove("GCOUNT");
        }
        HeaderTemplate::from_header(h, image.axes().len(), width, height, planes, false)
    }

    /// For a cutout written as an IMAGE extension (FITS 4.0 §7.1), named per cutout.
    pub fn extension(
        image: &Image<'_>,
        width: usize,
        height: usize,
        planes: usize,
    ) -> HeaderTemplate {
        let mut h = image.header().clone();
        h.remove("SIMPLE");
        h.remove("EXTEND");
        h.remove("XTENSION");
        h.insert(
            0,
            Card::new("XTENSION", Value::String("IMAGE".into()), "image extension"),
        );
        HeaderTemplate::from_header(h, image.axes().len(), width, height, planes, true)
    }

    fn from_header(
        mut h: Header,
        naxis: usize,
        width: usize,
        height: usize,
        planes: usize,
        extension: bool,
    ) -> HeaderTemplate {
        // Checksums describe the source HDU; a copy of them would be wrong.
        for key in ["CHECKSUM", "DATASUM", "ZHECKSUM", "ZDATASUM"] {
            h.remove(key);
        }
        h.set("NAXIS1", Value::Integer(width as i64), Some("NAXIS"));
        h.set("NAXIS2", Value::Integer(height as i64), Some("NAXIS1"));
        let shifted_axes = if naxis > 2 { 3 } else { 2 };
        if naxis > 2 {
            h.set("NAXIS3", Value::Integer(planes as i64), Some("NAXIS2"));
        }
        if extension {
            let last_axis = format!("NAXIS{naxis}");
            h.set("PCOUNT", Value::Integer(0), Some(&last_axis));
            h.set("GCOUNT", Value::Integer(1), Some("PCOUNT"));
            h.set("EXTNAME", Value::String(String::new()), Some("GCOUNT"));
            h.set("CATROW", Value::Integer(0), Some("EXTNAME"));
        }
        // Every described axis gets a CRPIX to move (the default is 0), for the primary
        // description and each alternate one (FITS 4.0 §8.2.1: CTYPEia, CRPIXia).
        let described: Vec<(usize, String)> = h
            .cards()
            .iter()
            .filter_map(|c| axis_suffix(&c.keyword, "CTYPE"))
            .filter(|(axis, _)| *axis < shifted_axes)
            .collect();
        for (axis, alt) in described {
            let crpix = format!("CRPIX{}{alt}", axis + 1);
            if !h.contains(&crpix) {
                h.set(
                    &crpix,
                    Value::Real(0.0),
                    Some(&format!("CTYPE{}{alt}", axis + 1)),
                );
            }
        }
        let mut bytes = Vec::new();
        let mut patches = Vec::new();
        for card in h.cards() {
            let shift = axis_suffix(&card.keyword, "CRPIX")
                .or_else(|| axis_suffix(&card.keyword, "LTV").filter(|(_, alt)| alt.is_empty()))
                .filter(|(axis, _)| *axis < shifted_axes);
            let patch = match (shift, card.keyword.as_str()) {
                (Some((axis, _)), _) => {
                    card.value.as_ref().and_then(real).map(|base| Patch::Shift {
                        keyword: card.keyword.clone(),
                        comment: card.comment.clone(),
                        axis,
                        base,
                    })
                }
                (None, "EXTNAME") if extension => Some(Patch::ExtName),
                (None, "CATROW") if extension => Some(Patch::CatRow),
                _ => None,
            };
            if let Some(patch) = patch {
                patches.push((bytes.len(), patch));
            }
            bytes.extend_from_slice(card.image.as_bytes());
        }
        bytes.extend_from_slice(format!("{:80}", "END").as_bytes());
        bytes.resize(bytes.len().div_ceil(BLOCK_LEN) * BLOCK_LEN, b' ');
        HeaderTemplate { bytes, patches }
    }

    /// Appends the header of the cutout whose pixel (0, 0, plane 0) is source pixel `origin`.
    pub fn render(&self, origin: [i64; 3], name: &str, row: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        for (offset, patch) in &self.patches {
            let card = match patch {
                Patch::Shift {
                    keyword,
                    comment,
                    axis,
                    base,
                } => Card::new(keyword, Value::Real(base - origin[*axis] as f64), comment),
                Patch::ExtName => Card::new("EXTNAME", Value::String(name.into()), "catalogue id"),
                Patch::CatRow => Card::new("CATROW", Value::Integer(row as i64), "catalogue row"),
            };
            out[start + offset..start + offset + CARD_LEN].copy_from_slice(card.image.as_bytes());
        }
    }
}

fn real(v: &Value) -> Option<f64> {
    match v {
        Value::Real(r) => Some(*r),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

/// `CRPIX2A` with prefix `CRPIX` → (1, "A"): the 0-based axis and the alternate letter.
fn axis_suffix(keyword: &str, prefix: &str) -> Option<(usize, String)> {
    let rest = keyword.strip_prefix(prefix)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let axis: usize = rest[..digits].parse().ok()?;
    let alt = &rest[digits..];
    let alt_ok = alt.is_empty() || (alt.len() == 1 && alt.bytes().all(|b| b.is_ascii_uppercase()));
    (axis >= 1 && alt_ok).then(|| (axis - 1, alt.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_matches_astropy_rounding() {
        // Odd size centred on a pixel centre, even size rounds the centre up.
        assert_eq!(
            cutout_window(100, 100, (10.0, 20.0), (5, 5), Mode::Partial).unwrap(),
            Window {
                x0: 8,
                y0: 18,
                width: 5,
                height: 5
            }
        );
        assert_eq!(
            cutout_window(100, 100, (1.0, 1.0), (2, 2), Mode::Partial).unwrap(),
            Window {
                x0: 0,
                y0: 0,
                width: 2,
                height: 2
            }
        );
        assert_eq!(
            cutout_window(100, 100, (1.5, 1.5), (2, 2), Mode::Partial).unwrap(),
            Window {
                x0: 1,
                y0: 1,
                width: 2,
                height: 2
            }
        );
        assert_eq!(
            cutout_window(100, 100, (-0.6, 3.0), (4, 4), Mode::Partial)
                .unwrap()
                .x0,
            -2
        );
    }

    #[test]
    fn modes_at_the_edges() {
        let trim = cutout_window(50, 40, (0.0, 39.0), (10, 10), Mode::Trim).unwrap();
        assert_eq!(
            trim,
            Window {
                x0: 0,
                y0: 34,
                width: 5,
                height: 6
            }
        );
        assert!(cutout_window(50, 40, (0.0, 20.0), (10, 10), Mode::Strict)
            .unwrap_err()
            .to_string()
            .contains("strict"));
        assert!(cutout_window(50, 40, (5.0, 5.0), (10, 10), Mode::Strict).is_ok());
        for pos in [
            (-5.0, 20.0),
            (20.0, 45.0),
            (54.9, 20.0),
            (f64::NAN, 1.0),
            (1e300, 1.0),
        ] {
            let err = cutout_window(50, 40, pos, (10, 10), Mode::Partial)
                .unwrap_err()
                .to_string();
            assert!(err.contains("no overlap"), "{pos:?}: {err}");
        }
        // One pixel of overlap is still an overlap.
        assert_eq!(
            cutout_window(50, 40, (-4.5, 20.0), (10, 10), Mode::Trim)
                .unwrap()
                .width,
            1
        );
    }

    #[test]
    fn row_split_covers_the_window() {
        for x0 in -12..60i64 {
            let w = Window {
                x0,
                y0: 0,
                width: 10,
                height: 1,
            };
            let (inside, left, right) = row_split(50, w);
            assert_eq!(left + inside.len() + right, 10, "x0={x0}");
        }
    }
}
