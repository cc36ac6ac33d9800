//! Quick-look previews: stretched 8-bit PNG or JPEG images of one band (grey) or three (RGB).
//!
//! Each band gets its own limits from an [`Interval`] and the same [`Stretch`]
//! (astropy.visualization's definitions, from `insitu_gpu::stretch`); a display value `y` in
//! [0, 1] becomes the byte `round(255·y)` (half away from zero). NaN (BLANK, or outside the
//! image) becomes 0, black, in every format: a grey PNG with an alpha channel would show it
//! transparent, but JPEG has no alpha, and the same request should look the same in both.
//! Rows are written north up, the last FITS row first, as ds9 and `imshow(origin="lower")`
//! show a FITS image.
//!
//! Request parameters ([`PreviewOptions::from_params`]), names and values case-insensitive:
//!
//! | parameter | values | default |
//! |---|---|---|
//! | `format` (or `responseformat`) | `png`, `jpeg` (`jpg`, `image/png`, `image/jpeg`) | not a preview |
//! | `stretch` | `linear`, `sqrt`, `log` (a = 1000), `asinh` (a = 0.1), `zscale` (= linear with `interval=zscale`) | `asinh` |
//! | `interval` | `percentile`, `minmax`, `zscale` | `percentile` |
//! | `percentile` | P in (0, 100]: keep the central P % (astropy `PercentileInterval`) | 99.5 |
//! | `plow`, `phigh` | lower and upper percentiles, 0 ≤ plow < phigh ≤ 100 (`AsymmetricPercentileInterval`) | 0, 100 |
//! | `quality` | JPEG quality 1–100 | 90 (no chroma subsampling from 90 up) |
//!
//! Asinh with the central 99.5 % is the default because it shows faint structure and bright
//! cores at once, a common choice for astronomical quick looks.

use insitu_gpu::stretch::{self, Interval, Stretch};

/// The image format of a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PreviewFormat {
    /// 8-bit greyscale or RGB PNG, lossless.
    Png,
    /// 8-bit greyscale or RGB baseline JPEG.
    Jpeg,
}

/// How to turn bands of physical values into a preview image.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewOptions {
    pub format: PreviewFormat,
    pub stretch: Stretch,
    /// Chosen for each band separately.
    pub interval: Interval,
    /// JPEG quality, 1–100 (ignored for PNG).
    pub quality: u8,
}

/// The central percentage of values kept when no interval is asked for.
pub const DEFAULT_PERCENTILE: f64 = 99.5;
/// JPEG quality when none is asked for: from 90 up the encoder keeps full-resolution colour.
pub const DEFAULT_QUALITY: u8 = 90;

/// Every parameter [`PreviewOptions::from_params`] reads besides the format.
/// The request parameters that shape a preview (besides `format`).
pub const PREVIEW_PARAMS: [&str; 6] = [
    "stretch",
    "interval",
    "percentile",
    "plow",
    "phigh",
    "quality",
];

impl PreviewOptions {
    /// The defaults for `format`: asinh stretch, central 99.5 % percentile interval.
    pub fn new(format: PreviewFormat) -> PreviewOptions {
        PreviewOptions {
            format,
            stretch: Stretch::ASINH,
            interval: Interval::central_percentile(DEFAULT_PERCENTILE),
            quality: DEFAULT_QUALITY,
        }
    }

    /// The options a request asks for (parameters in the module documentation). `get` returns
    /// a parameter's value by its lower-case name, matching names case-insensitively as DALI
    /// asks; empty values count as absent. `Ok(None)` when the format is not png or jpeg (or
    /// absent) and no preview parameter is given; an error when one is given without a
    /// preview format, or when a value is invalid or conflicts with another.
    pub fn from_params(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<PreviewOptions>, String> {
        let param = |name: &str| {
            get(name)
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
        };
        let format = match param("format")
            .or_else(|| param("responseformat"))
            .as_deref()
        {
            Some("png" | "image/png") => PreviewFormat::Png,
            Some("jpeg" | "jpg" | "image/jpeg") => PreviewFormat::Jpeg,
            _ => {
                return match PREVIEW_PARAMS.iter().find(|p| param(p).is_some()) {
                    Some(p) => Err(format!(
                        "{p} applies to previews only: add format=png or format=jpeg"
                    )),
                    None => Ok(None),
                }
            }
        };
        let mut options = PreviewOptions::new(format);
        let percentiles = percentile_interval(&param)?;
        let (stretch, zscale_stretch) = match param("stretch").as_deref() {
            None | Some("asinh") => (Stretch::ASINH, false),
            Some("linear") => (Stretch::Linear, false),
            Some("sqrt") => (Stretch::Sqrt, false),
            Some("log") => (Stretch::LOG, false),
            Some("zscale") => (Stretch::Linear, true),
            Some(other) => {
                return Err(format!(
                    "stretch={other}: expected linear, sqrt, log, asinh or zscale"
                ))
            }
        };
        options.stretch = stretch;
        let named = match param("interval").as_deref() {
            None => None,
            Some("minmax") => Some(Interval::MinMax),
            Some("zscale") => Some(Interval::ZScale),
            Some("percentile") => Some(percentiles.unwrap_or(options.interval)),
            Some(other) => {
                return Err(format!(
                    "interval={other}: expected percentile, minmax or zscale"
                ))
            }
        };
        options.interval = match (zscale_stretch, named, percentiles) {
            (true, None | Some(Interval::ZScale), None) => Interval::ZScale,
            (true, _, _) => {
                return Err(
                    "stretch=zscale is a linear stretch between zscale limits: it \
                            takes no other interval nor percentiles"
                        .into(),
                )
            }
            (false, Some(Interval::MinMax | Interval::ZScale), Some(_)) => {
                return Err("percentile, plow and phigh go with interval=percentile".into())
            }
            (false, named, percentiles) => named.or(percentiles).unwrap_or(options.interval),
        };
        if let Some(q) = param("quality") {
            if format != PreviewFormat::Jpeg {
                return Err("quality applies to format=jpeg only".into());
            }
            options.quality = q
                .parse::<u8>()
                .ok()
                .filter(|q| (1..=100).contains(q))
                .ok_or_else(|| format!("quality={q}: expected a whole number from 1 to 100"))?;
        }
        Ok(Some(options))
    }
}

/// `percentile=P`, or `plow=`/`phigh=`, as an interval; `None` when none is given.
fn percentile_interval(param: &dyn Fn(&str) -> Option<String>) -> Result<Option<Interval>, String> {
    let number = |name: &str| {
        param(name)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite())
                    .ok_or_else(|| format!("{name}={v}: expected a number"))
            })
            .transpose()
    };
    match (number("percentile")?, number("plow")?, number("phigh")?) {
        (None, None, None) => Ok(None),
        (Some(p), None, None) if p > 0.0 && p <= 100.0 => Ok(Some(Interval::central_percentile(p))),
        (Some(p), None, None) => Err(format!(
            "percentile={p}: expected 0 < P <= 100, the per cent of values kept"
        )),
        (Some(_), _, _) => Err("give percentile or plow/phigh, not both".into()),
        (None, lower, upper) => {
            let (lower, upper) = (lower.unwrap_or(0.0), upper.unwrap_or(100.0));
            if 0.0 <= lower && lower < upper && upper <= 100.0 {
                Ok(Some(Interval::Percentile {
                    lower: lower as f32,
                    upper: upper as f32,
                }))
            } else {
                Err(format!(
                    "plow={lower}, phigh={upper}: expected 0 <= plow < phigh <= 100"
                ))
            }
        }
    }
}

/// The MIME type of a preview format.
pub fn mime(format: PreviewFormat) -> &'static str {
    match format {
        PreviewFormat::Png => "image/png",
        PreviewFormat::Jpeg => "image/jpeg",
    }
}

/// A `width × height` preview of one band (greyscale) or three (red, green, blue), each
/// `width · height` physical values in FITS order (first row at the bottom), encoded as
/// `options.format` asks.
pub fn render(
    width: usize,
    height: usize,
    bands: &[&[f32]],
    options: &PreviewOptions,
) -> Result<Vec<u8>, String> {
    render_with_limits(width, height, bands, options).map(|r| r.bytes)
}

/// An encoded preview and the limits each band was stretched between.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The PNG or JPEG file.
    pub bytes: Vec<u8>,
    /// `(lo, hi)` of each band; `None` for a band with no finite value, which renders black.
    pub limits: Vec<Option<(f32, f32)>>,
}

/// [`render`], also returning each band's limits.
pub fn render_with_limits(
    width: usize,
    height: usize,
    bands: &[&[f32]],
    options: &PreviewOptions,
) -> Result<Rendered, String> {
    let channels = bands.len();
    if channels != 1 && channels != 3 {
        return Err(format!(
            "a preview takes 1 band (grey) or 3 (red, green, blue), not {channels}"
        ));
    }
    let pixels_len = width
        .checked_mul(height)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("cannot preview a {width}×{height} image"))?;
    if let Some(bad) = bands.iter().position(|b| b.len() != pixels_len) {
        return Err(format!(
            "band {} holds {} values, not {width}×{height}",
            bad + 1,
            bands[bad].len()
        ));
    }
    let limits: Vec<_> = bands
        .iter()
        .map(|b| stretch::limits(b, &options.interval))
        .collect();
    let pixels = quantised(width, bands, &limits, &options.stretch);
    let bytes = match options.format {
        PreviewFormat::Png => encode_png(width, height, channels, &pixels),
        PreviewFormat::Jpeg => encode_jpeg(width, height, channels, &pixels, options.quality),
    }?;
    Ok(Rendered { bytes, limits })
}

/// Interleaved 8-bit pixels, top row (the last FITS row) first.
fn quantised(
    width: usize,
    bands: &[&[f32]],
    limits: &[Option<(f32, f32)>],
    stretch: &Stretch,
) -> Vec<u8> {
    let channels = bands.len();
    let mut pixels = vec![0u8; bands.first().map_or(0, |b| b.len()) * channels];
    let mut row = vec![0f32; width];
    for (c, (band, lims)) in bands.iter().zip(limits).enumerate() {
        // With no finite value, (0, 0) maps NaN to black and ±inf to white and black.
        let lims = lims.unwrap_or((0.0, 0.0));
        for (src, dst) in band
            .chunks_exact(width)
            .rev()
            .zip(pixels.chunks_exact_mut(width * channels))
        {
            stretch::apply(src, lims, stretch, &mut row);
            for (px, &y) in dst.chunks_exact_mut(channels).zip(&row) {
                px[c] = to_byte(y);
            }
        }
    }
    pixels
}

/// `round(255·y)` for `y` in [0, 1]; NaN is black.
fn to_byte(y: f32) -> u8 {
    if y.is_nan() {
        0
    } else {
        (y * 255.0).round() as u8
    }
}

fn encode_png(
    width: usize,
    height: usize,
    channels: usize,
    pixels: &[u8],
) -> Result<Vec<u8>, String> {
    let too_big = || format!("a {width}×{height} image is too large for PNG");
    let w = u32::try_from(width).map_err(|_| too_big())?;
    let h = u32::try_from(height).map_err(|_| too_big())?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(if channels == 3 {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    });
    encoder.set_depth(png::BitDepth::Eight);
    let failed = |e: png::EncodingError| format!("cannot encode the PNG: {e}");
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(pixels).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

fn encode_jpeg(
    width: usize,
    height: usize,
    channels: usize,
    pixels: &[u8],
    quality: u8,
) -> Result<Vec<u8>, String> {
    let too_big = || {
        format!("a {width}×{height} image is too large for JPEG (65535 pixels a side at most): use format=png")
    };
    let w = u16::try_from(width).map_err(|_| too_big())?;
    let h = u16::try_from(height).map_err(|_| too_big())?;
    let colour = if channels == 3 {
        jpeg_encoder::ColorType::Rgb
    } else {
        jpeg_encoder::ColorType::Luma
    };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(pixels, w, h, colour)
        .map_err(|e| format!("cannot encode the JPEG: {e}"))?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// Options from `name=value` pairs, names matched case-insensitively as a route would.
    fn parse(query: &[(&str, &str)]) -> Result<Option<PreviewOptions>, String> {
        let owned: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PreviewOptions::from_params(&move |name: &str| {
            owned
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        })
    }

    fn decode_png(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    fn linear_minmax(format: PreviewFormat) -> PreviewOptions {
        PreviewOptions {
            stretch: Stretch::Linear,
            interval: Interval::MinMax,
            ..PreviewOptions::new(format)
        }
    }

    #[test]
    fn grey_png_is_north_up_with_nan_black() {
        // 3 wide, 2 high: FITS row 0 (bottom) = 0, 1, NaN; row 1 (top) = 3, 4, 5.
        let band = [0.0, 1.0, f32::NAN, 3.0, 4.0, 5.0];
        let png = render(3, 2, &[&band], &linear_minmax(PreviewFormat::Png)).unwrap();
        let (info, pixels) = decode_png(&png);
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        // round(255·v/5), top row first.
        assert_eq!(pixels, [153, 204, 255, 0, 51, 0]);
    }

    #[test]
    fn rgb_png_gives_each_band_its_own_limits() {
        let r = [0.0f32, 1.0, 2.0, 3.0];
        let g: Vec<f32> = r.iter().map(|v| 100.0 * v - 7.0).collect();
        let b: Vec<f32> = r.iter().map(|v| -v).collect();
        let png = render(2, 2, &[&r, &g, &b], &linear_minmax(PreviewFormat::Png)).unwrap();
        let (info, pixels) = decode_png(&png);
        assert_eq!((info.width, info.height), (2, 2));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        // Top row is FITS row 1 (values 2, 3): round(255·2/3) = 170; blue runs backwards.
        assert_eq!(pixels, [170, 170, 85, 255, 255, 0, 0, 0, 255, 85, 85, 170]);
    }

    #[test]
    fn a_band_without_finite_values_is_black() {
        let band = [f32::NAN; 4];
        let rendered =
            render_with_limits(2, 2, &[&band], &PreviewOptions::new(PreviewFormat::Png)).unwrap();
        assert_eq!(rendered.limits, [None]);
        assert_eq!(decode_png(&rendered.bytes).1, [0; 4]);
    }

    #[test]
    fn jpeg_is_a_complete_jfif_stream() {
        let band: Vec<f32> = (0..64 * 48).map(|i| (i % 64) as f32).collect();
        let jpeg = render(
            64,
            48,
            &[&band, &band, &band],
            &PreviewOptions::new(PreviewFormat::Jpeg),
        )
        .unwrap();
        assert_eq!(jpeg[..2], [0xFF, 0xD8], "SOI");
        assert_eq!(jpeg[jpeg.len() - 2..], [0xFF, 0xD9], "EOI");
        assert_eq!(mime(PreviewFormat::Jpeg), "image/jpeg");
        assert_eq!(mime(PreviewFormat::Png), "image/png");
    }

    #[test]
    fn bad_bands_and_sizes_are_errors() {
        let band = [1.0f32; 6];
        let options = PreviewOptions::new(PreviewFormat::Png);
        assert!(render(3, 2, &[&band, &band], &options)
            .unwrap_err()
            .contains("not 2"));
        assert!(render(3, 2, &[], &options).is_err());
        assert!(render(2, 2, &[&band], &options)
            .unwrap_err()
            .contains("band 1"));
        assert!(render(3, 2, &[&band, &band, &band[..5]], &options)
            .unwrap_err()
            .contains("band 3"));
        assert!(render(0, 0, &[&[]], &options).is_err());
        let wide = vec![0.0f32; 70_000];
        let jpeg = PreviewOptions::new(PreviewFormat::Jpeg);
        assert!(render(70_000, 1, &[&wide], &jpeg)
            .unwrap_err()
            .contains("JPEG"));
        assert!(render(70_000, 1, &[&wide], &options).is_ok());
    }

    #[test]
    fn options_default_to_asinh_and_central_99_5_percent() {
        let o = parse(&[("FORMAT", "PNG")]).unwrap().unwrap();
        assert_eq!(o, PreviewOptions::new(PreviewFormat::Png));
        assert_eq!(o.stretch, Stretch::Asinh { a: 0.1 });
        assert_eq!(
            o.interval,
            Interval::Percentile {
                lower: 0.25,
                upper: 99.75
            }
        );
        let o = parse(&[("responseformat", "image/jpeg"), ("Quality", "75")])
            .unwrap()
            .unwrap();
        assert_eq!((o.format, o.quality), (PreviewFormat::Jpeg, 75));
    }

    #[test]
    fn options_read_stretches_and_intervals() {
        let get = |q: &[(&str, &str)]| {
            let o = parse(q).unwrap().unwrap();
            (o.stretch, o.interval)
        };
        assert_eq!(
            get(&[("format", "png"), ("stretch", "ZScale")]),
            (Stretch::Linear, Interval::ZScale)
        );
        assert_eq!(
            get(&[
                ("format", "png"),
                ("stretch", "log"),
                ("interval", "minmax")
            ]),
            (Stretch::Log { a: 1000.0 }, Interval::MinMax)
        );
        assert_eq!(
            get(&[("format", "jpg"), ("stretch", "sqrt"), ("percentile", "90")]),
            (Stretch::Sqrt, Interval::central_percentile(90.0))
        );
        let p = |lower, upper| Interval::Percentile { lower, upper };
        assert_eq!(
            get(&[("format", "png"), ("interval", "percentile"), ("plow", "1")]).1,
            p(1.0, 100.0)
        );
        assert_eq!(
            get(&[("format", "png"), ("plow", "2"), ("phigh", "98")]).1,
            p(2.0, 98.0)
        );
        assert_eq!(
            get(&[
                ("format", "png"),
                ("stretch", "linear"),
                ("interval", "zscale")
            ]),
            (Stretch::Linear, Interval::ZScale)
        );
    }

    #[test]
    fn options_are_none_without_a_preview_format() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&[("format", "fits")]).unwrap(), None);
        assert_eq!(
            parse(&[("format", "png"), ("stretch", "")])
                .unwrap()
                .unwrap()
                .stretch,
            Stretch::ASINH
        );
    }

    #[test]
    fn bad_options_are_errors() {
        // Each query, and a word its error must contain.
        let bad: &[(&[(&str, &str)], &str)] = &[
            (&[("format", "fits"), ("stretch", "log")], "stretch"),
            (&[("stretch", "asinh")], "format=png"),
            (&[("format", "png"), ("stretch", "gamma")], "gamma"),
            (&[("format", "png"), ("interval", "sigma")], "sigma"),
            (&[("format", "png"), ("percentile", "abc")], "abc"),
            (&[("format", "png"), ("percentile", "0")], "0 < P"),
            (&[("format", "png"), ("percentile", "100.5")], "0 < P"),
            (&[("format", "png"), ("percentile", "nan")], "nan"),
            (
                &[("format", "png"), ("percentile", "99"), ("plow", "1")],
                "not both",
            ),
            (
                &[("format", "png"), ("plow", "60"), ("phigh", "40")],
                "plow < phigh",
            ),
            (&[("format", "png"), ("phigh", "101")], "phigh <= 100"),
            (
                &[
                    ("format", "png"),
                    ("interval", "minmax"),
                    ("percentile", "99"),
                ],
                "interval=percentile",
            ),
            (
                &[
                    ("format", "png"),
                    ("stretch", "zscale"),
                    ("interval", "minmax"),
                ],
                "zscale",
            ),
            (
                &[
                    ("format", "png"),
                    ("stretch", "zscale"),
                    ("percentile", "99"),
                ],
                "zscale",
            ),
            (&[("format", "png"), ("quality", "80")], "jpeg only"),
            (&[("format", "jpeg"), ("quality", "0")], "1 to 100"),
            (&[("format", "jpeg"), ("quality", "101")], "1 to 100"),
        ];
        for (query, needle) in bad {
            let err = parse(query).unwrap_err();
            assert!(err.contains(needle), "{query:?}: {err:?} lacks {needle:?}");
        }
    }
}
