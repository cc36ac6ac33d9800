//! `/tensors`: ML-ready tensors from the volumes' tiles. For each catalogue row and band, a
//! position-first cutout of the row's field of view, cut batch by batch by
//! [`insitu_engine::tensor_cuts`] (the tile holding it, stitched across tile edges, reads
//! grouped by tile); each batch then becomes one `[N, C, H, W]` float32 tensor through
//! [`insitu_gpu`] (resampled, stretched, filled: a [`insitu_gpu::Recipe`]), on the GPU when
//! the server has one, else on the CPU, and is streamed (as `.npy`, safetensors or Arrow IPC):
//! the cutting of the next batch overlaps the kernels of this one and the sending of the one
//! before, so memory stays bounded by a few batches whatever the catalogue's length.
//!
//! Parameters (GET query, or POST form or multipart; names case-insensitive):
//! - the catalogue: the multipart part `catalog`, or the `CATALOG` parameter holding its text
//!   (CSV or VOTable; columns `ra`, `dec` as bulk cutout jobs read them, `RA_COL`/`DEC_COL`);
//! - `BAND`: the channels, in order (comma-separated, repeatable; required);
//! - `SIZE`: the output side in pixels, `224`, or width×height, `224x160` (required);
//! - `FOV`: each cutout's side before resampling, as `/cutout`'s `size` (`20arcsec`, `64px`);
//!   a catalogue column (`FOV_COL`, default `fov` when there is one) gives it per row in
//!   arcseconds, so that the field follows the galaxy; rows where it is null use `FOV`;
//! - `FILTER`: `lanczos3` (default) or `bilinear`; `FLUX=true` for flux-conserving resampling;
//! - `STRETCH`: `asinh` (default), `linear`, `sqrt`, `log` or `none` (physical values), with
//!   `A` its parameter (astropy's defaults 0.1 and 1000); `INTERVAL`: `percentile`
//!   (default: `PERCENTILE=99.5`, or `PLOW`/`PHIGH`) or `minmax`, per plane;
//! - `FILL`: what non-finite values become (default 0; `nan` keeps them);
//! - `VOLUME`; `FORMAT`: `npy` (default), `safetensors` (one tensor, `images`) or `arrow` (an
//!   Arrow IPC stream of `row` and `tensor`, a `FixedShapeTensor`) ([`crate::tensor_format`]).
//!
//! The tensor's rows are in the catalogue's order, each plane in FITS row order (the first
//! row is the bottom one, as numpy holds `hdu.data`). A row or band that cannot be cut (no
//! valid position, no tile, a field of view over
//! [`MAX_CUT_SIDE`](insitu_engine::tensor_cuts::MAX_CUT_SIDE) pixels) is a plane of
//! `FILL`. Errors are JSON `{"error": …}` with 400, found before the first byte is sent. `INSITU_TENSOR_DEVICE` (`auto`, `gpu`, `cpu`) chooses
//! the path; `auto` uses a hardware GPU and the CPU otherwise.

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use insitu_adql::arrow::array::{Array, AsArray, RecordBatch};
use insitu_adql::arrow::compute::cast;
use insitu_adql::arrow::datatypes::{DataType, Float64Type};
use insitu_engine::cutout::Size;
use insitu_engine::tensor_cuts::{cut_batches, CutPlane, TensorCuts};
use insitu_gpu::stretch::{Interval, Stretch};
use insitu_gpu::{Batch, Device, Filter, Plane, Recipe, Scaling, Tensorizer};

use crate::bulk_jobs::{band_list, read_catalogue, served_volume, Catalogue, MAX_CATALOG_BYTES};
use crate::cutout_service::parse_size;
use crate::dali::DaliParams;
use crate::tensor_format::{Encoder, TensorFormat};
use crate::volumes::Tiles;

/// What `/tensors` needs: the tiles, and the tensor path, chosen on first use.
pub struct TensorState {
    pub tiles: Arc<Tiles>,
    tensorizer: OnceLock<Tensorizer>,
}

impl TensorState {
    pub fn new(tiles: Arc<Tiles>) -> TensorState {
        TensorState {
            tiles,
            tensorizer: OnceLock::new(),
        }
    }

    /// The path `INSITU_TENSOR_DEVICE` asks for, found once (and logged).
    fn tensorizer(&self) -> &Tensorizer {
        self.tensorizer.get_or_init(|| {
            let device = match std::env::var("INSITU_TENSOR_DEVICE").as_deref() {
                Ok("gpu") => Device::Gpu,
                Ok("cpu") => Device::Cpu,
                _ => Device::Auto,
            };
            Tensorizer::new(device)
        })
    }
}

/// The `/tensors` route.
pub fn routes(state: Arc<TensorState>) -> Router {
    Router::new()
        .route("/tensors", get(tensors).post(tensors))
        .layer(DefaultBodyLimit::max(MAX_CATALOG_BYTES + (1 << 20)))
        .with_state(state)
}

/// A JSON error answer.
fn bad(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A `/tensors` request, checked.
#[derive(Debug, Clone)]
struct TensorRequest {
    /// Per catalogue row: its position and field of view, or `None` without a valid position.
    rows: Vec<Option<(f64, f64, Size)>>,
    bands: Vec<String>,
    recipe: Recipe,
    volume: Option<String>,
    format: TensorFormat,
}

async fn tensors(State(state): State<Arc<TensorState>>, request: Request) -> Response {
    let params = match DaliParams::read(request, &()).await {
        Ok(p) => p,
        Err((status, message)) => return bad(status, &message),
    };
    let request = match TensorRequest::parse(&params, &state.tiles) {
        Ok(r) => r,
        Err(message) => return bad(StatusCode::BAD_REQUEST, &message),
    };
    let (w, h) = (request.recipe.width, request.recipe.height);
    let shape = [request.rows.len(), request.bands.len(), h, w];
    let format = request.format;
    let (encoder, header) = match Encoder::start(format, shape, &request.bands) {
        Ok(e) => e,
        Err(message) => return bad(StatusCode::BAD_REQUEST, &message),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::task::spawn_blocking(move || {
        if sender.blocking_send(Ok(header)).is_ok() {
            stream_tensors(&state, &request, encoder, &sender);
        }
    });
    let body = futures::stream::unfold(receiver, |mut r| async move {
        r.recv().await.map(|item| (item, r))
    });
    let name = format!(
        "tensors_{}x{}x{h}x{w}.{}",
        shape[0],
        shape[1],
        format.extension()
    );
    (
        [
            (header::CONTENT_TYPE, format.mime().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Cuts, makes and sends the tensor batch by batch (blocking); stops when the client goes.
/// The engine cuts the next batch while this one is made and sent
/// ([`insitu_engine::tensor_cuts`]).
fn stream_tensors(
    state: &TensorState,
    request: &TensorRequest,
    mut encoder: Encoder,
    sender: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let tensorizer = state.tensorizer();
    let bands = request.bands.len();
    let mut cuts = TensorCuts::new(&request.rows, &request.bands);
    cuts.volume = request.volume.as_deref();
    let sent = cut_batches(&state.tiles, &cuts, |batch| {
        let buffer = encoder.buffer();
        let values = make_tensor(tensorizer, &batch.planes, bands, &request.recipe, buffer)
            .map_err(|e| e.to_string())?;
        let bytes = encoder.batch(values, batch.rows)?;
        Ok(match sender.blocking_send(Ok(bytes)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()), // the client went away
        })
    })
    .and_then(|()| encoder.finish());
    match sent {
        Ok(Some(end)) => {
            let _ = sender.blocking_send(Ok(end));
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!("/tensors: {e}");
            // The client sees the stream end in an error rather than a short file.
            let _ = sender.blocking_send(Err(std::io::Error::other(e)));
        }
    }
}

/// One batch's tensor values, C order.
fn make_tensor(
    tensorizer: &Tensorizer,
    planes: &[CutPlane],
    bands: usize,
    recipe: &Recipe,
    buffer: Vec<f32>,
) -> Result<Vec<f32>, insitu_gpu::Error> {
    let planes = planes
        .iter()
        .map(|p| Plane::new(p.width, p.height, &p.data))
        .collect::<Result<Vec<_>, _>>()?;
    let batch = Batch::new(planes.len() / bands.max(1), bands, planes)?;
    Ok(tensorizer.tensor_in(&batch, recipe, buffer)?.data)
}

impl TensorRequest {
    fn parse(params: &DaliParams, tiles: &Tiles) -> Result<TensorRequest, String> {
        let format = TensorFormat::parse(params.get("FORMAT").unwrap_or("npy"))?;
        let volume = served_volume(params, tiles)?;
        let bands = band_list(params);
        if bands.is_empty() {
            return Err("BAND is missing: name the channels, e.g. BAND=VIS,NIR_Y,NIR_H".into());
        }
        let known: Vec<String> = tiles.volumes().iter().flat_map(|v| v.bands()).collect();
        if let Some(b) = bands
            .iter()
            .find(|b| !known.iter().any(|k| k.eq_ignore_ascii_case(b)))
        {
            return Err(format!(
                "BAND {b} is not in the volumes (they hold {})",
                known.join(", ")
            ));
        }
        let recipe = parse_recipe(params)?;
        let default_fov = params.get("FOV").map(parse_size).transpose()?;
        let Catalogue {
            rows: good,
            bad,
            batches,
        } = read_catalogue(&catalogue_bytes(params)?, params)?;
        let count = good.len() + bad.len();
        let fovs = fov_column(&batches, params.get("FOV_COL"))?;
        if fovs.is_none() && default_fov.is_none() {
            return Err("FOV is missing: give FOV (e.g. 20arcsec) or a fov column (arcsec)".into());
        }
        // A row without a valid position or field of view is a plane of FILL, as one off
        // every tile.
        let mut rows = vec![None; count];
        for r in good {
            let per_row = fovs
                .as_ref()
                .and_then(|f| f.get(r.row - 1).copied().flatten());
            let fov = match (per_row, default_fov) {
                (Some(arcsec), _) => {
                    (arcsec.is_finite() && arcsec > 0.0).then_some(Size::Arcsec(arcsec))
                }
                (None, fov) => fov,
            };
            if let (Some(fov), Some(slot)) = (fov, rows.get_mut(r.row - 1)) {
                *slot = Some((r.ra, r.dec, fov));
            }
        }
        Ok(TensorRequest {
            rows,
            bands,
            recipe,
            volume,
            format,
        })
    }
}

/// The recipe from `SIZE`, `FILTER`, `FLUX`, `STRETCH`, `A`, `INTERVAL`, `PERCENTILE`,
/// `PLOW`/`PHIGH`, `FILL`.
fn parse_recipe(params: &DaliParams) -> Result<Recipe, String> {
    let size = params
        .get("SIZE")
        .ok_or("SIZE is missing: the output side in pixels, e.g. 224")?;
    let side = |t: &str| -> Result<usize, String> {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("SIZE {size:?} is not pixels: give 224 or 224x160"))
    };
    let (width, height) = match size.to_ascii_lowercase().split_once('x') {
        Some((w, h)) => (side(w)?, side(h)?),
        None => (side(size)?, side(size)?),
    };
    let number = |name: &str| -> Result<Option<f32>, String> {
        params
            .get(name)
            .map(|t| {
                t.trim()
                    .parse::<f32>()
                    .map_err(|_| format!("{name} {t:?} is not a number"))
            })
            .transpose()
    };
    let filter: Filter = params
        .get("FILTER")
        .unwrap_or("lanczos3")
        .parse()
        .map_err(|e: insitu_gpu::Error| format!("FILTER: {e}"))?;
    let flux_conserving = match params
        .get("FLUX")
        .map(|f| f.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("false") | Some("0") | Some("no") => false,
        Some("true") | Some("1") | Some("yes") => true,
        Some(other) => return Err(format!("FLUX {other:?} is not true or false")),
    };
    let stretch = Stretch::named(params.get("STRETCH").unwrap_or("asinh"), number("A")?)
        .map_err(|e| format!("STRETCH: {e}"))?;
    let interval = match params
        .get("INTERVAL")
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("percentile") => {
            match (number("PLOW")?, number("PHIGH")?, number("PERCENTILE")?) {
                (Some(lower), Some(upper), None) => Interval::Percentile { lower, upper },
                (None, None, p) => Interval::central_percentile(f64::from(p.unwrap_or(99.5))),
                _ => return Err("give PERCENTILE, or both PLOW and PHIGH".into()),
            }
        }
        Some("minmax") => Interval::MinMax,
        Some(other) => return Err(format!("INTERVAL {other:?} is not percentile or minmax")),
    };
    let fill = match params
        .get("FILL")
        .map(|f| f.trim().to_ascii_lowercase())
        .as_deref()
    {
        None => 0.0,
        Some("nan") => f32::NAN,
        Some(_) => number("FILL")?.unwrap_or(0.0),
    };
    let recipe = Recipe {
        height,
        width,
        filter,
        flux_conserving,
        scaling: stretch.map(|stretch| Scaling { interval, stretch }),
        fill,
    };
    recipe.check().map_err(|e| e.to_string())?;
    Ok(recipe)
}

/// The catalogue's bytes: the multipart part `catalog` (any case), else `CATALOG`'s text.
fn catalogue_bytes(params: &DaliParams) -> Result<Vec<u8>, String> {
    if let Some(part) = params
        .parts
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case("catalog"))
    {
        return Ok(part.bytes.to_vec());
    }
    match params.get("CATALOG") {
        Some(text) if !text.trim().is_empty() => Ok(text.as_bytes().to_vec()),
        _ => Err("no catalogue: send it as the multipart part \"catalog\" (CSV or VOTable)".into()),
    }
}

/// The per-row field of view in arcsec: the column `FOV_COL` names (an error when missing),
/// else a column `fov` when there is one.
fn fov_column(
    batches: &[RecordBatch],
    given: Option<&str>,
) -> Result<Option<Vec<Option<f64>>>, String> {
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok(None);
    };
    let name = given.map_or("fov", str::trim);
    let Some(index) = schema
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
    else {
        return match given {
            Some(g) => Err(format!("the catalogue has no column {g:?} (FOV_COL)")),
            None => Ok(None),
        };
    };
    let mut values = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &DataType::Float64)
            .map_err(|e| format!("column {name} is not numeric: {e}"))?;
        let column = column.as_primitive::<Float64Type>();
        values.extend((0..column.len()).map(|k| column.is_valid(k).then(|| column.value(k))));
    }
    Ok(Some(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> DaliParams {
        DaliParams::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn recipes_follow_their_parameters_and_bad_ones_say_why() {
        let r = parse_recipe(&params(&[("SIZE", "224")])).unwrap();
        assert_eq!(r, Recipe::new(224, 224));
        let r = parse_recipe(&params(&[
            ("size", "64x32"),
            ("filter", "bilinear"),
            ("stretch", "log"),
            ("a", "500"),
            ("interval", "percentile"),
            ("plow", "1"),
            ("phigh", "99"),
            ("fill", "nan"),
            ("flux", "true"),
        ]))
        .unwrap();
        assert_eq!((r.width, r.height, r.filter), (64, 32, Filter::Bilinear));
        assert!(r.flux_conserving && r.fill.is_nan());
        assert_eq!(
            r.scaling,
            Some(Scaling {
                interval: Interval::Percentile {
                    lower: 1.0,
                    upper: 99.0
                },
                stretch: Stretch::Log { a: 500.0 }
            })
        );
        let none = parse_recipe(&params(&[("SIZE", "8"), ("STRETCH", "none")])).unwrap();
        assert_eq!(none.scaling, None);
        for (pairs, why) in [
            (vec![], "SIZE is missing"),
            (vec![("SIZE", "0")], "empty"),
            (vec![("SIZE", "big")], "not pixels"),
            (vec![("SIZE", "5000")], "exceeds"),
            (vec![("SIZE", "8"), ("FILTER", "cubic")], "FILTER"),
            (vec![("SIZE", "8"), ("STRETCH", "gamma")], "STRETCH"),
            (vec![("SIZE", "8"), ("A", "-1")], "stretch parameter"),
            (vec![("SIZE", "8"), ("PERCENTILE", "120")], "percentiles"),
            (vec![("SIZE", "8"), ("PLOW", "1")], "PLOW and PHIGH"),
            (vec![("SIZE", "8"), ("INTERVAL", "zscale")], "INTERVAL"),
            (vec![("SIZE", "8"), ("FILL", "lots")], "FILL"),
            (vec![("SIZE", "8"), ("FLUX", "maybe")], "FLUX"),
        ] {
            let e = parse_recipe(&params(&pairs)).unwrap_err();
            assert!(e.contains(why), "{pairs:?}: {e}");
        }
    }
}
