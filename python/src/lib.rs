//! insitu-python: the `insitu` Python package's native module (`insitu._insitu`). FITS images
//! read in place by `insitu-engine` (memory-mapped: only the pages under a cutout are read)
//! give cutouts as numpy arrays, exactly astropy's `Cutout2D` windows, one at a time or many
//! in parallel; `insitu-gpu` turns planes into `[N, C, H, W]` tensors (GPU or CPU), and a
//! scanned folder of tiles (`Volume`) gives a catalogue's tensors straight from the tiles. The Python
//! side (`insitu/__init__.py`) converts arguments and documents the API; this file holds no
//! FITS or tensor logic of its own.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::OnceLock;

use insitu_engine::cutout::{self, Center, CutoutRequest, Mode, Size, Window};
use insitu_engine::fits::FitsFile;
use insitu_engine::position_cutout::cut_at;
use insitu_engine::tensor_cuts::{cut_batches, TensorCuts};
use insitu_engine::volume::{scan_volume, Tiles};
use insitu_engine::wcs::Wcs;
use insitu_gpu::stretch::{Interval, Stretch};
use insitu_gpu::{Batch, Device, Filter, Plane, Recipe, Scaling, Tensorizer};
use numpy::{
    PyArray1, PyArray4, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use rayon::prelude::*;

/// An image HDU of a FITS file, memory-mapped.
#[pyclass(module = "insitu._insitu", frozen)]
struct FitsImage {
    file: FitsFile,
    hdu: usize,
    wcs: Option<Wcs>,
    path: PathBuf,
}

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// `insitu.open(path, hdu=None)`: the image HDU `hdu`, or the first one holding an image.
#[pyfunction]
#[pyo3(signature = (path, hdu=None))]
fn open(path: PathBuf, hdu: Option<usize>) -> PyResult<FitsImage> {
    let file = FitsFile::open(&path).map_err(|e| PyOSError::new_err(e.to_string()))?;
    let hdu = match hdu {
        Some(h) => h,
        None => (0..file.hdu_count())
            .find(|&h| file.image(h).is_ok_and(|i| i.width() > 0 && i.height() > 0))
            .ok_or_else(|| value_error(format!("{}: no image HDU", path.display())))?,
    };
    let image = file
        .image(hdu)
        .map_err(|e| value_error(format!("{}: {e}", path.display())))?;
    // A header without a celestial WCS still cuts by pixel position.
    let wcs = Wcs::from_header(image.header()).ok();
    Ok(FitsImage {
        hdu,
        wcs,
        path,
        file,
    })
}

fn parse_mode(mode: &str) -> PyResult<Mode> {
    mode.parse().map_err(value_error)
}

fn parse_size(size: Option<usize>, size_arcsec: Option<f64>) -> PyResult<Size> {
    match (size, size_arcsec) {
        (Some(n), None) => Ok(Size::Pixels(n)),
        (None, Some(a)) if a.is_finite() && a > 0.0 => Ok(Size::Arcsec(a)),
        (None, Some(a)) => Err(value_error(format!("size_arcsec={a} is not positive"))),
        _ => Err(value_error(
            "give size (pixels) or size_arcsec, one of them",
        )),
    }
}

impl FitsImage {
    /// The window and its physical values (NaN outside the image and for BLANK). The error
    /// is text, so that it can be made on threads without the interpreter (rayon's).
    fn cut(
        &self,
        center: Center,
        size: Size,
        mode: Mode,
        plane: usize,
    ) -> Result<(Window, Vec<f32>), String> {
        let image = self.file.image(self.hdu).map_err(|e| e.to_string())?;
        if plane >= image.planes() {
            return Err(format!(
                "plane {plane} is outside the image's {} planes",
                image.planes()
            ));
        }
        let request = CutoutRequest {
            center,
            size,
            mode,
            planes: Some(plane..plane + 1),
        };
        let (window, _) =
            cutout::plan(&image, self.wcs.as_ref(), &request).map_err(|e| e.to_string())?;
        let mut out = vec![0.0f32; window.width * window.height];
        cutout::window_physical(&image, plane, window, &mut out);
        Ok((window, out))
    }
}

#[pymethods]
impl FitsImage {
    /// `(height, width)`, as numpy shapes an image.
    #[getter]
    fn shape(&self) -> PyResult<(usize, usize)> {
        let image = self.file.image(self.hdu).map_err(value_error)?;
        Ok((image.height(), image.width()))
    }

    #[getter]
    fn hdu(&self) -> usize {
        self.hdu
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// One cutout as a float32 array `[height, width]` of physical values (BSCALE/BZERO
    /// applied, NaN outside the image): astropy `Cutout2D`'s window around the sky position
    /// (`ra`, `dec`, ICRS degrees) or the 0-based pixel position (`x`, `y`).
    #[pyo3(signature = (*, ra=None, dec=None, x=None, y=None, size=None, size_arcsec=None, mode="partial", plane=0))]
    #[allow(clippy::too_many_arguments)]
    fn cutout<'py>(
        &self,
        py: Python<'py>,
        ra: Option<f64>,
        dec: Option<f64>,
        x: Option<f64>,
        y: Option<f64>,
        size: Option<usize>,
        size_arcsec: Option<f64>,
        mode: &str,
        plane: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let center = match (ra, dec, x, y) {
            (Some(ra), Some(dec), None, None) => Center::Sky { ra, dec },
            (None, None, Some(x), Some(y)) => Center::Pixel { x, y },
            _ => return Err(value_error("give ra and dec, or x and y")),
        };
        let (size, mode) = (parse_size(size, size_arcsec)?, parse_mode(mode)?);
        let (window, data) = py
            .detach(|| self.cut(center, size, mode, plane))
            .map_err(value_error)?;
        Ok(PyArray1::from_vec(py, data)
            .reshape([window.height, window.width])?
            .into_any())
    }

    /// Many cutouts of one size, cut in parallel: float32 `[N, size, size]`, NaN where a
    /// cutout leaves the image (`partial`) or an error for the first row that cannot be cut
    /// (`strict`, or a position that is not a number).
    #[pyo3(signature = (ra, dec, *, size=None, size_arcsec=None, mode="partial"))]
    fn cutouts<'py>(
        &self,
        py: Python<'py>,
        ra: PyReadonlyArray1<'py, f64>,
        dec: PyReadonlyArray1<'py, f64>,
        size: Option<usize>,
        size_arcsec: Option<f64>,
        mode: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (size, mode) = (parse_size(size, size_arcsec)?, parse_mode(mode)?);
        if mode == Mode::Trim {
            return Err(value_error(
                "mode trim gives cutouts of different shapes: use cutout()",
            ));
        }
        let (ra, dec) = (ra.as_array().to_vec(), dec.as_array().to_vec());
        if ra.len() != dec.len() {
            return Err(value_error(format!(
                "{} ra but {} dec",
                ra.len(),
                dec.len()
            )));
        }
        let cut: Result<Vec<(Window, Vec<f32>)>, String> = py.detach(|| {
            ra.par_iter()
                .zip(&dec)
                .enumerate()
                .map(|(k, (&ra, &dec))| {
                    self.cut(Center::Sky { ra, dec }, size, mode, 0)
                        .map_err(|e| format!("row {k}: {e}"))
                })
                .collect()
        });
        let cut = cut.map_err(value_error)?;
        let (h, w) = cut
            .first()
            .map_or((0, 0), |(win, _)| (win.height, win.width));
        let data: Vec<f32> = cut.into_iter().flat_map(|(_, d)| d).collect();
        Ok(PyArray1::from_vec(py, data)
            .reshape([ra.len(), h, w])?
            .into_any())
    }

    fn __repr__(&self) -> String {
        format!("insitu.FitsImage({:?}, hdu={})", self.path, self.hdu)
    }
}

/// One tensor path per device kind, found on first use.
fn tensorizer(device: &str) -> PyResult<&'static Tensorizer> {
    static PATHS: [OnceLock<Tensorizer>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (k, device) = match device {
        "auto" => (0, Device::Auto),
        "gpu" => (1, Device::Gpu),
        "cpu" => (2, Device::Cpu),
        other => {
            return Err(value_error(format!(
                "device {other:?} is not auto, gpu or cpu"
            )))
        }
    };
    Ok(PATHS[k].get_or_init(|| Tensorizer::new(device)))
}

/// The recipe of the keyword arguments `tensors` and `Volume.tensors` share.
#[allow(clippy::too_many_arguments)]
fn recipe(
    (height, width): (usize, usize),
    filter: &str,
    flux_conserving: bool,
    stretch: &str,
    a: Option<f32>,
    interval: &str,
    (lower, upper): (f32, f32),
    fill: f32,
) -> PyResult<Recipe> {
    let filter: Filter = filter.parse().map_err(value_error)?;
    let stretch = Stretch::named(stretch, a).map_err(value_error)?;
    let interval = match interval {
        "percentile" => Interval::Percentile { lower, upper },
        "minmax" => Interval::MinMax,
        other => {
            return Err(value_error(format!(
                "interval {other:?} is not percentile or minmax"
            )))
        }
    };
    let recipe = Recipe {
        height,
        width,
        filter,
        flux_conserving,
        scaling: stretch.map(|stretch| Scaling { interval, stretch }),
        fill,
    };
    recipe.check().map_err(value_error)?;
    Ok(recipe)
}

/// The tensor of `planes` (items × channels of float32 2-D arrays, any sizes): float32
/// `[N, C, size_h, size_w]`, made as insitu's `/tensors` makes it.
#[pyfunction]
#[pyo3(signature = (planes, height, width, *, filter="lanczos3", flux_conserving=false, stretch="asinh", a=None, interval="percentile", lower=0.25, upper=99.75, fill=0.0, device="auto"))]
#[allow(clippy::too_many_arguments)]
fn tensors<'py>(
    py: Python<'py>,
    planes: Vec<Vec<PyReadonlyArray2<'py, f32>>>,
    height: usize,
    width: usize,
    filter: &str,
    flux_conserving: bool,
    stretch: &str,
    a: Option<f32>,
    interval: &str,
    lower: f32,
    upper: f32,
    fill: f32,
    device: &str,
) -> PyResult<(Bound<'py, PyAny>, String)> {
    let recipe = recipe(
        (height, width),
        filter,
        flux_conserving,
        stretch,
        a,
        interval,
        (lower, upper),
        fill,
    )?;
    let items = planes.len();
    let channels = planes.first().map_or(0, Vec::len);
    if let Some(k) = planes.iter().position(|p| p.len() != channels) {
        return Err(value_error(format!(
            "item {k} has {} channels, item 0 {channels}",
            planes[k].len()
        )));
    }
    // Row-major copies only where an array is not C-contiguous already.
    let owned: Vec<(usize, usize, std::borrow::Cow<'_, [f32]>)> = planes
        .iter()
        .flatten()
        .map(|p| {
            let view = p.as_array();
            let (h, w) = view.dim();
            let data = match p.as_slice() {
                Ok(s) => std::borrow::Cow::Borrowed(s),
                Err(_) => std::borrow::Cow::Owned(view.iter().copied().collect()),
            };
            (w, h, data)
        })
        .collect();
    let planes = owned
        .iter()
        .map(|(w, h, d)| Plane::new(*w, *h, d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(value_error)?;
    let batch = Batch::new(items, channels.max(1), planes).map_err(value_error)?;
    let path = tensorizer(device)?;
    let tensor = py
        .detach(|| path.tensor(&batch, &recipe))
        .map_err(value_error)?;
    let array = PyArray1::from_vec(py, tensor.data).reshape(tensor.shape)?;
    Ok((array.into_any(), path.describe()))
}

/// A folder of FITS mosaic tiles, scanned (headers only; the scan is cached under
/// `cache_dir`, never in the folder) and cut by sky position in any of its bands.
#[pyclass(module = "insitu._insitu", frozen)]
struct Volume {
    tiles: Tiles,
}

/// `insitu.volume(path, name, cache_dir)`: scans the folder's FITS images.
#[pyfunction]
fn scan(py: Python<'_>, path: PathBuf, name: &str, cache_dir: PathBuf) -> PyResult<Volume> {
    let volume = py
        .detach(|| scan_volume(name, &path, &cache_dir))
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
    Ok(Volume {
        tiles: Tiles::new(vec![volume]),
    })
}

/// Per row: the position and the field of view, from `fov_arcsec` (one per row, NaN or ≤ 0
/// giving no cutout) or `fov_pixels`.
fn tensor_rows(
    ra: &[f64],
    dec: &[f64],
    fov_arcsec: Option<&[f64]>,
    fov_pixels: Option<usize>,
) -> PyResult<Vec<Option<(f64, f64, Size)>>> {
    if ra.len() != dec.len() || fov_arcsec.is_some_and(|f| f.len() != ra.len()) {
        return Err(value_error(
            "ra, dec and fov_arcsec must have one value per row",
        ));
    }
    (0..ra.len())
        .map(|k| {
            let fov = match (fov_arcsec, fov_pixels) {
                (Some(f), None) => (f[k].is_finite() && f[k] > 0.0).then_some(Size::Arcsec(f[k])),
                (None, Some(0)) => return Err(value_error("fov_pixels must be positive")),
                (None, Some(n)) => Some(Size::Pixels(n)),
                _ => return Err(value_error("give fov_arcsec or fov_pixels, one of them")),
            };
            Ok(fov.map(|fov| (ra[k], dec[k], fov)))
        })
        .collect()
}

#[pymethods]
impl Volume {
    /// The bands (filter names) of the tiles, sorted.
    #[getter]
    fn bands(&self) -> Vec<String> {
        self.tiles
            .volumes()
            .iter()
            .flat_map(|v| v.bands())
            .collect()
    }

    /// How many images the scan found.
    fn __len__(&self) -> usize {
        self.tiles.volumes().iter().map(|v| v.images.len()).sum()
    }

    /// `band`'s cutout around (`ra`, `dec`): float32 `[height, width]`, `Cutout2D`'s window on
    /// the tile holding the position, pixels past its edge from the neighbouring tiles.
    #[pyo3(signature = (ra, dec, band, *, size=None, size_arcsec=None))]
    fn cutout<'py>(
        &self,
        py: Python<'py>,
        ra: f64,
        dec: f64,
        band: &str,
        size: Option<usize>,
        size_arcsec: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let size = parse_size(size, size_arcsec)?;
        let cut = py
            .detach(|| cut_at(&self.tiles, ra, dec, size, band, None))
            .map_err(value_error)?;
        Ok(PyArray1::from_vec(py, cut.data)
            .reshape([cut.height, cut.width])?
            .into_any())
    }

    /// The tensor of the catalogue rows (`ra`, `dec`) in `bands`: float32 `[N, C, H, W]`, as
    /// `/tensors` makes it (a row or band without a cutout is a plane of `fill`), written into
    /// `out` when given (a C-contiguous float32 array of that shape, reused by a data loader).
    #[pyo3(signature = (ra, dec, bands, height, width, *, fov_arcsec=None, fov_pixels=None, filter="lanczos3", flux_conserving=false, stretch="asinh", a=None, interval="percentile", lower=0.25, upper=99.75, fill=0.0, device="auto", out=None))]
    #[allow(clippy::too_many_arguments)]
    fn tensors<'py>(
        &self,
        py: Python<'py>,
        ra: PyReadonlyArray1<'py, f64>,
        dec: PyReadonlyArray1<'py, f64>,
        bands: Vec<String>,
        height: usize,
        width: usize,
        fov_arcsec: Option<PyReadonlyArray1<'py, f64>>,
        fov_pixels: Option<usize>,
        filter: &str,
        flux_conserving: bool,
        stretch: &str,
        a: Option<f32>,
        interval: &str,
        lower: f32,
        upper: f32,
        fill: f32,
        device: &str,
        out: Option<Bound<'py, PyArray4<f32>>>,
    ) -> PyResult<(Bound<'py, PyAny>, String)> {
        let recipe = recipe(
            (height, width),
            filter,
            flux_conserving,
            stretch,
            a,
            interval,
            (lower, upper),
            fill,
        )?;
        let known = self.bands();
        if bands.is_empty() {
            return Err(value_error("bands is empty: name the channels"));
        }
        if let Some(b) = bands
            .iter()
            .find(|b| !known.iter().any(|k| k.eq_ignore_ascii_case(b)))
        {
            return Err(value_error(format!(
                "band {b} is not in the volume (it holds {})",
                known.join(", ")
            )));
        }
        let fov = fov_arcsec.as_ref().map(|f| f.as_array().to_vec());
        let rows = tensor_rows(
            &ra.as_array().to_vec(),
            &dec.as_array().to_vec(),
            fov.as_deref(),
            fov_pixels,
        )?;
        let path = tensorizer(device)?;
        let shape = [rows.len(), bands.len(), height, width];
        let array = match out {
            Some(array) if array.shape() != shape => {
                return Err(value_error(format!(
                    "out has shape {:?}; the tensor's is {shape:?}",
                    array.shape()
                )))
            }
            Some(array) => array,
            None => PyArray4::zeros(py, shape, false),
        };
        {
            let mut view = array.try_readwrite().map_err(value_error)?;
            let values = view
                .as_slice_mut()
                .map_err(|_| value_error("out must be a C-contiguous array"))?;
            let per_row = bands.len() * height * width;
            py.detach(|| {
                cut_batches(&self.tiles, &TensorCuts::new(&rows, &bands), |batch| {
                    let planes = batch
                        .planes
                        .iter()
                        .map(|p| Plane::new(p.width, p.height, &p.data))
                        .collect::<Result<Vec<_>, _>>()?;
                    let at = batch.start * per_row;
                    let into = &mut values[at..at + batch.rows * per_row];
                    path.tensor_into(&Batch::new(batch.rows, bands.len(), planes)?, &recipe, into)?;
                    Ok::<_, insitu_gpu::Error>(ControlFlow::Continue(()))
                })
            })
            .map_err(value_error)?;
        }
        Ok((array.into_any(), path.describe()))
    }

    fn __repr__(&self) -> String {
        match self.tiles.volumes().first() {
            Some(v) => format!(
                "insitu.Volume({:?}, {} images, bands {})",
                v.root,
                v.images.len(),
                v.bands().join(", ")
            ),
            None => "insitu.Volume()".into(),
        }
    }
}

#[pymodule]
fn _insitu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FitsImage>()?;
    m.add_class::<Volume>()?;
    m.add_function(wrap_pyfunction!(scan, m)?)?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(tensors, m)?)?;
    Ok(())
}
