"""insitu: FITS cutouts read in place and ML-ready tensors, from insitu's Rust engine.

    import insitu
    img = insitu.open("EUC_MER_BGSUB-MOSAIC-VIS_TILE102018211.fits")
    cut = img.cutout(ra=267.38, dec=65.5, size=64)            # float32 [64, 64], Cutout2D's window
    many = img.cutouts(ras, decs, size_arcsec=10)              # float32 [N, 100, 100], in parallel
    x = insitu.tensors([[vis, nir_h] for vis, nir_h in pairs], 224)   # float32 [N, 2, 224, 224]

Files are memory-mapped: only the pages under a cutout are read, and nothing is written.
Cutouts hold physical values (BSCALE/BZERO applied) as float32, NaN outside the image, in
numpy's order of the FITS data (`hdu.data`: the first row is the bottom one).
"""

import numpy as np

from ._insitu import FitsImage
from ._insitu import open as _open
from ._insitu import tensors as _tensors

__all__ = ["FitsImage", "open", "cutouts", "tensors"]


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
    height, width = (size, size) if np.isscalar(size) else size
    if plow is not None or phigh is not None:
        if plow is None or phigh is None:
            raise ValueError("give both plow and phigh")
        lower, upper = float(plow), float(phigh)
    else:
        lower = (100.0 - float(percentile)) / 2
        upper = 100.0 - lower
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
