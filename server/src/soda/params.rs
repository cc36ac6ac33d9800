//! SODA 1.0 §3 parameters: `ID`, the spatial filters `POS` (DALI shapes `CIRCLE`, `RANGE`,
//! `POLYGON`), `CIRCLE` and `POLYGON` (ICRS degrees), and CADC's pixel filter `SUB` (cfitsio
//! image sections), read into [`Request`]. Every value is checked here, so a bad request gets
//! a `UsageError` naming the parameter before any file is opened.

use super::region::{LonSpan, Polygon, Region};
use crate::dali::DaliParams;

/// What to cut from each dataset.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Filter {
    /// No filter: the whole image HDU.
    Whole,
    /// The pixels a sky region touches.
    Region(Region),
    /// A pixel section.
    Sub(Section),
}

impl Filter {
    /// The filter as the client wrote it, for logs and FITS HISTORY cards.
    pub fn describe(&self) -> String {
        match self {
            Filter::Whole => "whole image".into(),
            Filter::Region(Region::Circle { ra, dec, radius }) => {
                format!("CIRCLE {ra} {dec} {radius}")
            }
            Filter::Region(Region::Range { lon, lat }) => match lon {
                Some(s) => format!("RANGE {} {} {} {}", s.start, s.end, lat.0, lat.1),
                None => format!("RANGE 0 360 {} {}", lat.0, lat.1),
            },
            Filter::Region(Region::Polygon(p)) => {
                let mut text = String::from("POLYGON");
                for (ra, dec) in &p.vertices {
                    text.push_str(&format!(" {ra} {dec}"));
                }
                text
            }
            Filter::Sub(s) => format!("SUB {}", s.text),
        }
    }
}

/// Which HDU a `SUB` section cuts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Extension {
    /// The dataset's own image HDU.
    Dataset,
    /// HDU number, 0 the primary HDU (cfitsio counts as astropy does).
    Index(usize),
    /// The HDU with this `EXTNAME` (any case) and `EXTVER` (1 when absent).
    Name(String, i64),
}

/// One axis of a section: 1-based first and last pixel, inclusive; `None` for `*`.
pub type AxisRange = Option<(u64, u64)>;

/// A cfitsio image section, `[ext][x1:x2,y1:y2(,z1:z2)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub extension: Extension,
    /// Per axis, from NAXIS1; missing trailing axes are whole.
    pub axes: Vec<AxisRange>,
    /// The value as given.
    pub text: String,
}

/// A checked SODA request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub ids: Vec<String>,
    /// One result per ID and filter.
    pub filters: Vec<Filter>,
}

/// Why a request is refused, by SODA 1.0 §5.2 error label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// `UsageError`: a missing or bad value.
    Usage(String),
    /// `MultiValuedParamNotSupported`: several values where one is allowed.
    MultiValued(String),
}

/// Reads a request. `single` (sync): one ID and at most one filter, else
/// [`ParamError::MultiValued`]; otherwise (async) any number of each, one result per pair.
pub fn parse(params: &DaliParams, single: bool) -> Result<Request, ParamError> {
    let usage = |m: String| ParamError::Usage(m);
    for name in ["BAND", "TIME", "POL"] {
        if params.get(name).is_some() {
            return Err(usage(format!(
                "{name} is not supported: the images have no spectral, time or polarisation \
                 axis; cut with POS, CIRCLE, POLYGON or SUB"
            )));
        }
    }
    if let Some(format) = params.get("RESPONSEFORMAT") {
        let f = format.trim().to_ascii_lowercase();
        if !(f.is_empty() || f == "fits" || f == "application/fits" || f == "image/fits") {
            return Err(usage(format!(
                "RESPONSEFORMAT={format} is not supported: cutouts are application/fits"
            )));
        }
    }
    let ids: Vec<String> = params
        .all("ID")
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(usage(
            "ID is missing: give a dataset id (ivoa.obscore's obs_publisher_did, or \
             <volume>/<path> from a mosaic_product table)"
                .into(),
        ));
    }
    let mut regions = Vec::new();
    for (name, read) in [
        ("POS", parse_pos as fn(&str) -> Result<Region, String>),
        ("CIRCLE", parse_circle),
        ("POLYGON", parse_polygon),
    ] {
        for value in params.all(name) {
            let region = read(value).map_err(|e| usage(format!("{name}={value:?}: {e}")))?;
            regions.push((name, Filter::Region(region)));
        }
    }
    let mut subs = Vec::new();
    for value in params.all("SUB") {
        let section = parse_sub(value).map_err(|e| usage(format!("SUB={value:?}: {e}")))?;
        subs.push(Filter::Sub(section));
    }
    if !regions.is_empty() && !subs.is_empty() {
        return Err(usage(
            "SUB selects pixels, POS, CIRCLE and POLYGON sky regions: give one kind only".into(),
        ));
    }
    if single {
        if ids.len() > 1 {
            return Err(ParamError::MultiValued(format!(
                "ID: {} values; /soda/sync cuts one dataset per request (submit several to \
                 /soda/async)",
                ids.len()
            )));
        }
        for name in ["POS", "CIRCLE", "POLYGON", "SUB"] {
            let n = params.all(name).count();
            if n > 1 {
                return Err(ParamError::MultiValued(format!(
                    "{name}: {n} values; /soda/sync cuts one region per request (submit \
                     several to /soda/async)"
                )));
            }
        }
        if regions.len() > 1 {
            let names: Vec<&str> = regions.iter().map(|(n, _)| *n).collect();
            return Err(usage(format!(
                "{} given together: /soda/sync cuts one region per request",
                names.join(" and ")
            )));
        }
    }
    let mut filters: Vec<Filter> = regions.into_iter().map(|(_, f)| f).collect();
    filters.extend(subs);
    if filters.is_empty() {
        filters.push(Filter::Whole);
    }
    Ok(Request { ids, filters })
}

/// Numbers of a DALI value (VOTable TABLEDATA serialisation: blanks between values; `+Inf`,
/// `-Inf` allowed where `infinite` says so, `NaN` never).
fn numbers(text: &str, infinite: bool) -> Result<Vec<f64>, String> {
    text.split_ascii_whitespace()
        .map(|t| {
            let v: f64 = t.parse().map_err(|_| format!("{t:?} is not a number"))?;
            if v.is_nan() || (v.is_infinite() && !infinite) {
                return Err(format!("{t:?} is not a finite number"));
            }
            Ok(v)
        })
        .collect()
}

fn check_dec(dec: f64) -> Result<(), String> {
    if (-90.0..=90.0).contains(&dec) {
        Ok(())
    } else {
        Err(format!("latitude {dec} is outside -90 … 90"))
    }
}

/// A DALI circle, `ra dec radius` (degrees; the SODA `CIRCLE` parameter).
pub fn parse_circle(text: &str) -> Result<Region, String> {
    let v = numbers(text, false)?;
    let [ra, dec, radius] = v[..] else {
        return Err(format!(
            "a circle is 3 numbers (ra dec radius, degrees), not {}",
            v.len()
        ));
    };
    check_dec(dec)?;
    if radius <= 0.0 {
        return Err(format!("the radius must be positive, not {radius}"));
    }
    Ok(Region::Circle {
        ra: ra.rem_euclid(360.0),
        dec,
        radius: radius.min(180.0),
    })
}

/// A DALI polygon, `ra1 dec1 ra2 dec2 …` (degrees, at least 3 vertices; the SODA `POLYGON`
/// parameter).
pub fn parse_polygon(text: &str) -> Result<Region, String> {
    let v = numbers(text, false)?;
    if v.len() % 2 != 0 || v.len() < 6 {
        return Err(format!(
            "a polygon is pairs of numbers (ra dec, degrees) for at least 3 vertices, not {} \
             numbers",
            v.len()
        ));
    }
    let mut vertices = Vec::with_capacity(v.len() / 2);
    for pair in v.chunks_exact(2) {
        check_dec(pair[1])?;
        vertices.push((pair[0].rem_euclid(360.0), pair[1]));
    }
    Ok(Region::Polygon(Polygon::new(vertices)?))
}

/// A DALI range, `lon1 lon2 lat1 lat2` (degrees). An infinite longitude, or a span of 360°
/// or more, means every longitude; `lon1 > lon2` wraps through 0 (DALI 1.2, range);
/// infinite latitudes stop at the poles.
pub fn parse_range(text: &str) -> Result<Region, String> {
    let v = numbers(text, true)?;
    let [l1, l2, b1, b2] = v[..] else {
        return Err(format!(
            "a range is 4 numbers (lon1 lon2 lat1 lat2, degrees), not {}",
            v.len()
        ));
    };
    for b in [b1, b2] {
        if b.is_finite() {
            check_dec(b)?;
        }
    }
    let (b1, b2) = (b1.max(-90.0), b2.min(90.0));
    if b1 > b2 {
        return Err(format!("the latitude range {b1} … {b2} is empty"));
    }
    let lon = if l1.is_infinite() || l2.is_infinite() || l2 - l1 >= 360.0 {
        None
    } else {
        Some(LonSpan {
            start: l1.rem_euclid(360.0),
            end: l2.rem_euclid(360.0),
        })
    };
    Ok(Region::Range { lon, lat: (b1, b2) })
}

/// A SODA `POS` value: a shape keyword (`CIRCLE`, `RANGE`, `POLYGON`, any case) and its
/// numbers (SODA 1.0 §3.3.1).
pub fn parse_pos(text: &str) -> Result<Region, String> {
    let text = text.trim();
    let (keyword, rest) = text
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((text, ""));
    match keyword.to_ascii_uppercase().as_str() {
        "CIRCLE" => parse_circle(rest),
        "RANGE" => parse_range(rest),
        "POLYGON" => parse_polygon(rest),
        _ => Err(format!(
            "the shape must be CIRCLE, RANGE or POLYGON, not {keyword:?}"
        )),
    }
}

/// A cfitsio image section (CADC's `SUB`): `[x1:x2,y1:y2]`, 1-based and inclusive, `*` for
/// a whole axis, optionally after an extension `[n]` (HDU number), `[EXTNAME]` or
/// `[EXTNAME,EXTVER]`; `[ext]` alone is the whole image of that HDU. Reversed ranges and
/// steps (`x2:x1`, `-*`, `x1:x2:2`) are refused.
pub fn parse_sub(text: &str) -> Result<Section, String> {
    let trimmed = text.trim();
    let mut groups = Vec::new();
    let mut rest = trimmed;
    while !rest.is_empty() {
        let inner = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .ok_or("expected [ext][x1:x2,y1:y2] (cfitsio image section syntax)")?;
        groups.push(inner.0.trim());
        rest = inner.1.trim_start();
    }
    let is_section = |g: &str| g.contains(':') || g.contains('*');
    let (extension, section) = match groups[..] {
        [one] if is_section(one) => (Extension::Dataset, Some(one)),
        [one] => (parse_extension(one)?, None),
        [ext, section] if is_section(section) => (parse_extension(ext)?, Some(section)),
        _ => return Err("expected [ext][x1:x2,y1:y2] (cfitsio image section syntax)".into()),
    };
    let axes = match section {
        None => Vec::new(),
        Some(s) => s
            .split(',')
            .map(|axis| parse_axis(axis.trim()))
            .collect::<Result<_, _>>()?,
    };
    if axes.len() > 3 {
        return Err(format!(
            "{} axes: sections cut at most 3 (x, y and a cube's planes)",
            axes.len()
        ));
    }
    Ok(Section {
        extension,
        axes,
        text: trimmed.to_string(),
    })
}

fn parse_extension(text: &str) -> Result<Extension, String> {
    if let Ok(index) = text.parse::<usize>() {
        return Ok(Extension::Index(index));
    }
    let (name, version) = match text.split_once(',') {
        Some((name, ver)) => (
            name.trim(),
            ver.trim()
                .parse::<i64>()
                .map_err(|_| format!("EXTVER {ver:?} is not an integer"))?,
        ),
        None => (text, 1),
    };
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !plain {
        return Err(format!(
            "extension {text:?}: give an HDU number or an EXTNAME (letters, digits, '_', '-', \
             '.')"
        ));
    }
    Ok(Extension::Name(name.to_string(), version))
}

fn parse_axis(text: &str) -> Result<AxisRange, String> {
    if text == "*" {
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(':').collect();
    let [first, last] = parts[..] else {
        return Err(if parts.len() > 2 {
            format!("{text:?}: steps (x1:x2:step) are not supported")
        } else if text.starts_with('-') {
            format!("{text:?}: reversed axes are not supported")
        } else {
            format!("{text:?}: give first:last (1-based pixels) or *")
        });
    };
    let pixel = |t: &str| {
        t.trim()
            .parse::<u64>()
            .ok()
            .filter(|&p| p >= 1)
            .ok_or_else(|| format!("{t:?} is not a pixel number (1, 2, …)"))
    };
    let (first, last) = (pixel(first)?, pixel(last)?);
    if first > last {
        return Err(format!(
            "{text:?}: reversed ranges (first > last) are not supported"
        ));
    }
    Ok(Some((first, last)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> DaliParams {
        DaliParams::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn shapes_parse_as_dali_writes_them() {
        assert_eq!(
            parse_pos("CIRCLE 12 34 0.5").unwrap(),
            Region::Circle {
                ra: 12.0,
                dec: 34.0,
                radius: 0.5
            }
        );
        assert_eq!(
            parse_pos("circle  -1 0 1").unwrap(),
            parse_circle("359 0 1").unwrap()
        );
        assert_eq!(
            parse_pos("RANGE 0 360 89 90").unwrap(),
            Region::Range {
                lon: None,
                lat: (89.0, 90.0)
            }
        );
        assert_eq!(
            parse_pos("RANGE -Inf +Inf -Inf 2").unwrap(),
            Region::Range {
                lon: None,
                lat: (-90.0, 2.0)
            }
        );
        assert_eq!(
            parse_pos("RANGE 359 1 -1 1").unwrap(),
            Region::Range {
                lon: Some(LonSpan {
                    start: 359.0,
                    end: 1.0
                }),
                lat: (-1.0, 1.0)
            }
        );
        let polygon = parse_pos("POLYGON 12 34 14 34 14 36 12 36").unwrap();
        assert!(matches!(polygon, Region::Polygon(ref p) if p.vertices.len() == 4));
        for bad in [
            "",
            "BOX 1 2 3 4",
            "CIRCLE 1 2",
            "CIRCLE 1 2 3 4",
            "CIRCLE 1 91 1",
            "CIRCLE 1 2 0",
            "CIRCLE 1 2 -1",
            "CIRCLE NaN 2 1",
            "CIRCLE 1 2 Inf",
            "CIRCLE 1 2 x",
            "RANGE 1 2 3",
            "RANGE 1 2 5 4",
            "RANGE 1 2 91 92",
            "RANGE 1 NaN 3 4",
            "POLYGON 1 2 3 4",
            "POLYGON 1 2 3 4 5",
            "POLYGON 1 2 3 4 5 95",
            "POLYGON 0 0 120 0 240 0",
        ] {
            assert!(parse_pos(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sections_follow_cfitsio() {
        let s = parse_sub("[10:20,30:40]").unwrap();
        assert_eq!(s.extension, Extension::Dataset);
        assert_eq!(s.axes, vec![Some((10, 20)), Some((30, 40))]);
        let s = parse_sub(" [1][*, 5:5] ").unwrap();
        assert_eq!(s.extension, Extension::Index(1));
        assert_eq!(s.axes, vec![None, Some((5, 5))]);
        let s = parse_sub("[SCI,2][1:3,*]").unwrap();
        assert_eq!(s.extension, Extension::Name("SCI".into(), 2));
        let s = parse_sub("[sci]").unwrap();
        assert_eq!(s.extension, Extension::Name("sci".into(), 1));
        assert!(s.axes.is_empty());
        for bad in [
            "",
            "10:20,30:40",
            "[20:10,1:2]",
            "[-*,1:2]",
            "[1:10:2,1:2]",
            "[0:10,1:2]",
            "[a:b,1:2]",
            "[1][2][3:4,5:6]",
            "[1:2,1:2,1:2,1:2]",
            "[../x][1:2,1:2]",
            "[1:2,1:2",
        ] {
            assert!(parse_sub(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn multiplicity_sync_and_async() {
        let one = parse(
            &params(&[("ID", "v/a.fits"), ("POS", "CIRCLE 1 2 0.1")]),
            true,
        )
        .unwrap();
        assert_eq!(one.ids, ["v/a.fits"]);
        assert_eq!(one.filters.len(), 1);
        let whole = parse(&params(&[("id", "v/a.fits")]), true).unwrap();
        assert_eq!(whole.filters, [Filter::Whole]);
        let many = [
            ("ID", "v/a.fits"),
            ("ID", "v/b.fits"),
            ("CIRCLE", "1 2 0.1"),
            ("POS", "RANGE 1 2 3 4"),
        ];
        let err = parse(&params(&many), true).unwrap_err();
        assert!(
            matches!(err, ParamError::MultiValued(ref m) if m.starts_with("ID")),
            "{err:?}"
        );
        let both = parse(
            &params(
                &many[..1]
                    .iter()
                    .chain(&many[2..])
                    .copied()
                    .collect::<Vec<_>>(),
            ),
            true,
        );
        assert!(matches!(both, Err(ParamError::Usage(_))), "{both:?}");
        let two_pos = [
            ("ID", "v/a"),
            ("POS", "CIRCLE 1 2 1"),
            ("POS", "CIRCLE 1 2 2"),
        ];
        assert!(matches!(
            parse(&params(&two_pos), true),
            Err(ParamError::MultiValued(ref m)) if m.starts_with("POS")
        ));
        let all = parse(&params(&many), false).unwrap();
        assert_eq!((all.ids.len(), all.filters.len()), (2, 2));
        for bad in [
            vec![("POS", "CIRCLE 1 2 1")],
            vec![("ID", "v/a"), ("BAND", "1e-7 2e-7")],
            vec![("ID", "v/a"), ("RESPONSEFORMAT", "votable")],
            vec![("ID", "v/a"), ("SUB", "[1:2,1:2]"), ("CIRCLE", "1 2 1")],
            vec![("ID", "v/a"), ("CIRCLE", "1 2")],
        ] {
            assert!(
                matches!(parse(&params(&bad), false), Err(ParamError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
