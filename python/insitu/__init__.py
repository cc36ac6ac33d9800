"""insitu: FITS cutouts read in place and ML-ready tensors, from insitu's Rust engine.

    import insitu
    img = insitu.open("EUC_MER_BGSUB-MOSAIC-VIS_TILE102018211.fits")
    cut = img.cutout(ra=267.38, dec=65.5, size=64)            # float32 [64, 64], Cutout2D's window
    many = img.cutouts(ras, decs, size_arcsec=10)              # float32 [N, 100, 100], in parallel
    x = insitu.tensors([[vis, nir_h] for vis, nir_h in pairs], 224)   # float32 [N, 2, 224, 224]

    tiles = insitu.Volume("/data/euclid/q1/MER")               # a folder of mosaic tiles
    x = tiles.tensors(cat["ra"], cat["dec"], ["VIS", "NIR_Y", "NIR_H"], 224,
                      fov_arcsec=cat["fov"])                   # float32 [N, 3, 224, 224]

Files are memory-mapped: only the pages under a cutout are read, and nothing is written.
Cutouts hold physical values (BSCALE/BZERO applied) as float32, NaN outside the image, in
numpy's order of the FITS data (`hdu.data`: the first row is the bottom one).
"""

import os
import re

import numpy as np

from ._insitu import FitsImage
from ._insitu import open as _open
from ._insitu import scan as _scan
from ._insitu import tensors as _tensors

__all__ = ["FitsImage", "Volume", "open", "cutouts", "tensors"]


def open(path, hdu=None) -> FitsImage:
    """The image HDU `hdu` of the FITS file at `path` (default: the first holding an image)."""
    return _open(str(path), hdu)


def cutouts(path, ra, dec, *, size=None, size_arcsec=None, mode="partial", hdu=None) -> np.ndarray:
    """float32 [N, side, side] cutouts of one image at the positions (ICRS degrees)."""
    image = open(path, hdu)
    return image.cutouts(np.ascontiguousarray(ra, dtype=np.float64),
                         np.ascontiguousarray(dec, dtype=np.float64),
                         size=size, size_arcsec=size_arcsec, mode=mode)


def tensors(planes, size, *, filter="lanczos3", flux_conserving=False, stretch="asinh", a=None,
            interval="percentile", percentile=99.5, plow=None, phigh=None, fill=0.0,
            device="auto", return_device=False):
    """One float32 [N, C, H, W] tensor from `planes`, N items of C 2-D arrays of any sizes:
    each resampled to `size` (an int, or (height, width)) with `filter` (lanczos3 or bilinear,
    antialiased when shrinking, as Pillow's resize), scaled per plane by `interval`
    (percentile: the central `percentile` %, or `plow`..`phigh`; or minmax) and `stretch`
    (asinh, linear, sqrt, log with parameter `a`, or none for physical values), then NaN
    replaced by `fill`. `device`: auto (a hardware GPU, else the CPU), gpu (any adapter),
    cpu. With `return_device`, also the path that made it."""
    height, width = _size(size)
    lower, upper = _limits(percentile, plow, phigh)
    arrays = [[np.ascontiguousarray(p, dtype=np.float32) for p in item] for item in planes]
    for item in arrays:
        for p in item:
            if p.ndim != 2:
                raise ValueError(f"planes must be 2-D arrays, got shape {p.shape}")
    tensor, path = _tensors(arrays, int(height), int(width), filter=filter,
                            flux_conserving=bool(flux_conserving), stretch=stretch,
                            a=None if a is None else float(a), interval=interval,
                            lower=lower, upper=upper, fill=float(fill), device=device)
    return (tensor, path) if return_device else tensor


def _size(size):
    """(height, width) of an int or a pair."""
    height, width = (size, size) if np.isscalar(size) else size
    return int(height), int(width)


def _limits(percentile, plow, phigh):
    """The percentile interval's (lower, upper) percentiles."""
    if plow is not None or phigh is not None:
        if plow is None or phigh is None:
            raise ValueError("give both plow and phigh")
        return float(plow), float(phigh)
    lower = (100.0 - float(percentile)) / 2
    return lower, 100.0 - lower


def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "insitu")


class Volume:
    """A folder of FITS mosaic tiles (Euclid MER tiles, say), scanned once: headers only,
    memory-mapped, the scan cached under `cache_dir` (default ~/.cache/insitu), never in the
    folder. Cuts by sky position in any of its bands, across tile edges, as insitu's
    `/cutout` and `/tensors` do. `name` (default: from the folder's name) keys the cache."""

    def __init__(self, path, name=None, cache_dir=None):
        path = os.path.abspath(os.fspath(path))
        if name is None:
            name = re.sub(r"[^A-Za-z0-9_]", "_", os.path.basename(path.rstrip(os.sep)) or "volume")
            if not name[:1].isalpha() or name.lower() in ("ivoa", "tap_schema", "public"):
                name = "v_" + name  # a volume name is an ADQL schema name
        self._native = _scan(path, name, os.fspath(cache_dir or _cache_dir()))
        self.path = path

    @property
    def bands(self):
        """The bands (FITS FILTER names) of the tiles, sorted."""
        return self._native.bands

    def __len__(self):
        return len(self._native)

    def __repr__(self):
        return repr(self._native)

    def cutout(self, ra, dec, band, *, size=None, size_arcsec=None) -> np.ndarray:
        """`band`'s float32 [height, width] cutout around (ra, dec): Cutout2D's window on the
        tile holding the position, NaN where no tile has data."""
        return self._native.cutout(float(ra), float(dec), band, size=size,
                                   size_arcsec=size_arcsec)

    def tensors(self, ra, dec, bands, size, *, fov_arcsec=None, fov_pixels=None,
                filter="lanczos3", flux_conserving=False, stretch="asinh", a=None,
                interval="percentile", percentile=99.5, plow=None, phigh=None, fill=0.0,
                device="auto", return_device=False, out=None) -> np.ndarray:
        """float32 [N, C, H, W]: per catalogue row (ra, dec, ICRS degrees) and band, the cutout
        of `fov_arcsec` (a number, or one per row, so that the field follows the galaxy) or
        `fov_pixels`, made as `tensors` makes planes into a tensor (same recipe keywords). A
        row or band without a cutout (off the tiles, no position, a field of view over 2048
        pixels) is a plane of `fill`. Cutting the next batch overlaps the kernels of this one.
        With `out` (a C-contiguous float32 array of the tensor's shape), the tensor is written
        there and `out` returned: a loader reusing one array spares the fresh memory of each
        call."""
        ra = np.ascontiguousarray(ra, dtype=np.float64).ravel()
        dec = np.ascontiguousarray(dec, dtype=np.float64).ravel()
        if isinstance(bands, str):
            bands = [bands]
        if fov_arcsec is not None:
            fov_arcsec = np.ascontiguousarray(
                np.broadcast_to(np.asarray(fov_arcsec, dtype=np.float64), ra.shape))
        height, width = _size(size)
        lower, upper = _limits(percentile, plow, phigh)
        tensor, path = self._native.tensors(
            ra, dec, list(bands), height, width, fov_arcsec=fov_arcsec,
            fov_pixels=None if fov_pixels is None else int(fov_pixels), filter=filter,
            flux_conserving=bool(flux_conserving), stretch=stretch,
            a=None if a is None else float(a), interval=interval, lower=lower, upper=upper,
            fill=float(fill), device=device, out=out)
        return (tensor, path) if return_device else tensor
