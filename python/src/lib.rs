//! insitu-python: the `insitu` Python package's native module (`insitu._insitu`). FITS images
//! read in place by `insitu-engine` (memory-mapped: only the pages under a cutout are read)
//! give cutouts as numpy arrays, exactly astropy's `Cutout2D` windows, one at a time or many
//! in parallel; `insitu-gpu` turns planes into `[N, C, H, W]` tensors (GPU or CPU). The Python
//! side (`insitu/__init__.py`) converts arguments and documents the API; this file holds no
//! FITS or tensor logic of its own.

use std::path::PathBuf;
use std::sync::OnceLock;

use insitu_engine::cutout::{self, Center, CutoutRequest, Mode, Size, Window};
use insitu_engine::fits::FitsFile;
use insitu_engine::wcs::Wcs;
use insitu_gpu::stretch::{Interval, Stretch};
use insitu_gpu::{Batch, Device, Filter, Plane, Recipe, Scaling, Tensorizer};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
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

#[pymodule]
fn _insitu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FitsImage>()?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(tensors, m)?)?;
    Ok(())
}
