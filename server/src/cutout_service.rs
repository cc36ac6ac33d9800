//! `GET /cutout`: position-first cutouts over the mounted volumes, one per band, stitched
//! across tile boundaries ([`crate::position_cutout`]), as one FITS file.
//!
//! Parameters (names case-insensitive):
//! - `ra`, `dec`: ICRS degrees (required);
//! - `size`: the side of the square cutout (required): a number of arcseconds (`30`), or a
//!   number with a unit: `30arcsec`, `0.5arcmin`, `0.01deg`, or pixels of the tile the
//!   cutout is on: `64px` (also `pix`, `pixel`, `pixels`). Angular sizes become pixels as
//!   `Cutout2D` rounds them; at most `MAX_SIDE` pixels a side and `MAX_BYTES` in all;
//! - `band`: comma-separated filter names (repeatable); default every band the volumes
//!   hold at the position;
//! - `volume`: only tiles of that volume;
//! - `format`: `fits` (default; also `application/fits`), or a `png` / `jpeg` preview of one
//!   band (grey) or three (`band=R,G,B`, e.g. `band=NIR_H,NIR_Y,VIS`), shaped by `stretch`,
//!   `interval`, `percentile`, `plow`, `phigh`, `quality` (see [`crate::preview`]).
//!
//! The FITS answer is an empty primary HDU and one IMAGE extension per band
//! (EXTNAME = band). Errors are JSON `{"error": "…"}`: 400 for a bad parameter, 404 when no
//! tile holds the position (in a requested band, or in the volume), 500 when a tile cannot
//! be read (without the server's paths).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use insitu_engine::cutout::{Size, MAX_BYTES, MAX_SIDE};

use crate::position_cutout::{self, BandCutout, PositionError};
use crate::preview::{self, PreviewOptions, PREVIEW_PARAMS};
use crate::volumes::Tiles;

/// The `/cutout` route over the tiles of the mounted volumes.
pub fn routes(tiles: Arc<Tiles>) -> Router {
    Router::new()
        .route("/cutout", get(cutout))
        .with_state(tiles)
}

/// A parsed `/cutout` request.
#[derive(Debug, Clone, PartialEq)]
struct CutoutQuery {
    ra: f64,
    dec: f64,
    size: Size,
    /// `None`: every band at the position.
    bands: Option<Vec<String>>,
    volume: Option<String>,
    /// A PNG or JPEG preview instead of FITS.
    preview: Option<PreviewOptions>,
}

/// An error answer: a status and a JSON `{"error": message}` body.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl From<PositionError> for ApiError {
    fn from(e: PositionError) -> ApiError {
        let status = match e {
            PositionError::BadParameter(_) => StatusCode::BAD_REQUEST,
            PositionError::NoTile { .. } | PositionError::UnknownVolume(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.1 }).to_string();
        (self.0, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

const PARAMETERS: [&str; 6] = ["ra", "dec", "size", "band", "volume", "format"];

fn parse_query(query: &str) -> Result<CutoutQuery, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad(format!("malformed query string: {e}")))?;
    let mut values: [Vec<String>; 6] = Default::default();
    let mut shaping: Vec<(String, String)> = Vec::new();
    for (name, value) in pairs {
        let name = name.trim().to_ascii_lowercase();
        if PREVIEW_PARAMS.contains(&name.as_str()) {
            if shaping.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::bad(format!("{name} is given more than once")));
            }
            shaping.push((name, value));
            continue;
        }
        let Some(k) = PARAMETERS.iter().position(|p| *p == name) else {
            return Err(ApiError::bad(format!(
                "unknown parameter {name:?}: /cutout takes {} and, for previews, {}",
                PARAMETERS.join(", "),
                PREVIEW_PARAMS.join(", ")
            )));
        };
        values[k].push(value);
    }
    let [ra, dec, size, band, volume, format] = values;
    let once = |name: &str, v: Vec<String>| -> Result<Option<String>, ApiError> {
        match <[String; 1]>::try_from(v) {
            Ok([one]) => Ok(Some(one)),
            Err(v) if v.is_empty() => Ok(None),
            Err(_) => Err(ApiError::bad(format!("{name} is given more than once"))),
        }
    };
    let required = |name: &str, v: Vec<String>| {
        once(name, v)?.ok_or_else(|| ApiError::bad(format!("{name} is missing")))
    };
    let degrees = |name: &str, text: String| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| ApiError::bad(format!("{name}={text:?} is not a number of degrees")))
    };
    let ra = degrees("ra", required("ra", ra)?)?;
    let dec = degrees("dec", required("dec", dec)?)?;
    let size = parse_size(&required("size", size)?).map_err(ApiError::bad)?;
    let bands = if band.is_empty() {
        None
    } else {
        let mut list: Vec<String> = Vec::new();
        for item in band.iter().flat_map(|b| b.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                return Err(ApiError::bad(
                    "band holds an empty name: give filter names separated by commas",
                ));
            }
            if !list.iter().any(|b| b.eq_ignore_ascii_case(item)) {
                list.push(item.to_string());
            }
        }
        Some(list)
    };
    let volume = once("volume", volume)?
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let format = once("format", format)?;
    if let Some(f) = &format {
        let known = ["fits", "application/fits", "image/fits", "png", "image/png"];
        let f = f.trim().to_ascii_lowercase();
        if !known.contains(&f.as_str()) && !["jpeg", "jpg", "image/jpeg"].contains(&f.as_str()) {
            return Err(ApiError::bad(format!(
                "format {f:?} is not one of fits, png, jpeg"
            )));
        }
    }
    let get = |name: &str| -> Option<String> {
        if name == "format" {
            return format.clone();
        }
        shaping
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let preview = PreviewOptions::from_params(&get).map_err(ApiError::bad)?;
    Ok(CutoutQuery {
        ra,
        dec,
        size,
        bands,
        volume,
        preview,
    })
}

/// A cutout's side: `30` (arcsec), `30arcsec`, `0.5arcmin`, `0.01deg`, `64px`.
pub fn parse_size(text: &str) -> Result<Size, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e')))
        .unwrap_or(t.len());
    // An exponent's `e` must not swallow a unit starting with e: none does.
    let (number, unit) = t.split_at(split);
    let bad = || {
        format!(
            "size={text:?} is not a size: give arcseconds (30, 30arcsec), 0.5arcmin, \
             0.01deg or pixels (64px)"
        )
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !(value.is_finite() && value > 0.0) {
        return Err(bad());
    }
    let arcsec = match unit.trim() {
        "" | "arcsec" | "\"" => value,
        "arcmin" | "'" => value * 60.0,
        "deg" => value * 3600.0,
        "px" | "pix" | "pixel" | "pixels" => {
            if value.fract() != 0.0 || value > MAX_SIDE as f64 {
                return Err(format!(
                    "size={text:?}: pixels are a whole number from 1 to {MAX_SIDE}"
                ));
            }
            return Ok(Size::Pixels(value as usize));
        }
        _ => return Err(bad()),
    };
    Ok(Size::Arcsec(arcsec))
}

async fn cutout(State(tiles): State<Arc<Tiles>>, RawQuery(query): RawQuery) -> Response {
    let query = match parse_query(query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    // Reading tiles and stitching is CPU work: off the async runtime.
    match tokio::task::spawn_blocking(move || answer(&tiles, &query)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => e.into_response(),
        Err(e) => {
            tracing::error!("cutout: the worker stopped: {e}");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the cutout failed".into(),
            )
            .into_response()
        }
    }
}

fn answer(tiles: &Tiles, q: &CutoutQuery) -> Result<Response, ApiError> {
    let volume = q.volume.as_deref();
    let bands = match &q.bands {
        Some(bands) => bands.clone(),
        None => position_cutout::bands_at(tiles, q.ra, q.dec, volume)?,
    };
    // Plan every band first: a missing band or a too large answer costs no pixels.
    let mut planned = Vec::with_capacity(bands.len());
    let mut bytes = 0usize;
    for band in &bands {
        let p = position_cutout::plan_at(tiles, q.ra, q.dec, q.size, band, volume)?;
        bytes = bytes.saturating_add(p.window.width.saturating_mul(p.window.height) * 4);
        planned.push(p);
    }
    if bytes > MAX_BYTES {
        return Err(ApiError::bad(format!(
            "the cutouts of {} band(s) would hold {bytes} bytes; the limit is {MAX_BYTES} \
             (ask for fewer bands or a smaller size)",
            bands.len()
        )));
    }
    let cutouts = planned
        .into_iter()
        .map(|p| position_cutout::cut_planned(tiles, p))
        .collect::<Result<Vec<BandCutout>, _>>()?;
    let Some(options) = &q.preview else {
        let body = position_cutout::bands_to_fits(&cutouts);
        let name = format!("cutout_{:.6}_{:+.6}.fits", q.ra.rem_euclid(360.0), q.dec);
        return Ok(attachment("application/fits", &name, body));
    };
    // One band is grey; three are red, green and blue in the order asked for; all on one grid.
    let Some(first) = cutouts.first() else {
        return Err(ApiError::bad("no band to preview"));
    };
    if cutouts
        .iter()
        .any(|c| c.width != first.width || c.height != first.height)
    {
        return Err(ApiError::bad(
            "the bands' cutouts have different pixel grids: preview them one at a time",
        ));
    }
    let bands: Vec<&[f32]> = cutouts.iter().map(|c| c.data.as_slice()).collect();
    let body =
        preview::render(first.width, first.height, &bands, options).map_err(ApiError::bad)?;
    let extension = match options.format {
        preview::PreviewFormat::Png => "png",
        _ => "jpg",
    };
    let name = format!(
        "cutout_{:.6}_{:+.6}.{extension}",
        q.ra.rem_euclid(360.0),
        q.dec
    );
    Ok(attachment(preview::mime(options.format), &name, body))
}

/// A file answer, named for saving.
fn attachment(mime: &str, name: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("30").unwrap(), Size::Arcsec(30.0));
        assert_eq!(parse_size(" 30arcsec").unwrap(), Size::Arcsec(30.0));
        assert_eq!(parse_size("0.5ARCMIN").unwrap(), Size::Arcsec(30.0));
        assert_eq!(parse_size("0.01deg").unwrap(), Size::Arcsec(36.0));
        assert_eq!(parse_size("1e1").unwrap(), Size::Arcsec(10.0));
        assert_eq!(parse_size("64px").unwrap(), Size::Pixels(64));
        assert_eq!(parse_size("64 pixels").unwrap(), Size::Pixels(64));
        for bad in [
            "",
            "px",
            "-3",
            "0",
            "nan",
            "inf",
            "3 parsecs",
            "2.5px",
            "1e9px",
            "1,5",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_are_checked() {
        let q = parse_query("RA=10.5&dec=-3&size=10&band=VIS,nir_h&band=vis&format=FITS").unwrap();
        assert_eq!((q.ra, q.dec, q.size), (10.5, -3.0, Size::Arcsec(10.0)));
        assert_eq!(q.bands, Some(vec!["VIS".to_string(), "nir_h".to_string()]));
        assert!(q.preview.is_none());
        let png = parse_query("ra=1&dec=2&size=3&format=png&Stretch=log").unwrap();
        let options = png.preview.unwrap();
        assert_eq!(options.format, preview::PreviewFormat::Png);
        assert_eq!(options.stretch, insitu_gpu::stretch::Stretch::LOG);
        for (bad, says) in [
            ("dec=2&size=3", "ra is missing"),
            ("ra=1&ra=2&dec=2&size=3", "more than once"),
            ("ra=x&dec=2&size=3", "not a number"),
            ("ra=1&dec=2&size=3&bands=VIS", "unknown parameter"),
            ("ra=1&dec=2&size=3&band=VIS,,H", "empty name"),
            ("ra=1&dec=2&size=3&format=gif", "not one of"),
            ("ra=1&dec=2&size=3&stretch=log", "previews only"),
            (
                "ra=1&dec=2&size=3&format=png&stretch=log&stretch=sqrt",
                "more than once",
            ),
            (
                "ra=1&dec=2&size=3&format=png&stretch=cubic",
                "stretch=cubic",
            ),
        ] {
            let e = parse_query(bad).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert!(e.1.contains(says), "{bad}: {}", e.1);
        }
    }
}
