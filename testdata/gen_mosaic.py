#!/usr/bin/env python3
"""Write a Euclid-MER-like float32 mosaic in row chunks (a 19200x19200 tile, 1.4 GB, needs ~40 MB).

Usage: gen_mosaic.py OUT.fits NPIX [--seed S] [--chunk-rows R]

BITPIX=-32 big-endian, TAN around (RA, Dec) = (267.38, 65.50) at 0.1"/pixel
(CD = diag(-0.1", +0.1") in degrees), CRPIX at the image centre, RADESYS=ICRS.
Pixels: Gaussian sky noise on a small background plus faint Gaussian sources, so the data
is neither constant nor trivially compressible. The same seed gives the same bytes.
"""

import argparse
import os
import sys

import numpy as np
from astropy.io import fits

SCALE_DEG = 0.1 / 3600.0
SOURCE_SIGMA_PIX = 1.5
SOURCE_RADIUS_PIX = 5  # sources are drawn out to this radius


def mosaic_header(npix: int) -> fits.Header:
    centre = (npix + 1) / 2.0  # FITS pixel centres run from 1 to NPIX
    return fits.Header([
        ("SIMPLE", True, "conforms to FITS standard"),
        ("BITPIX", -32, "IEEE float32, big-endian"),
        ("NAXIS", 2),
        ("NAXIS1", npix),
        ("NAXIS2", npix),
        ("EXTEND", True),
        ("TELESCOP", "EUCLID", "synthetic MER-like mosaic"),
        ("INSTRUME", "VIS"),
        ("BUNIT", "uJy"),
        ("WCSAXES", 2),
        ("CTYPE1", "RA---TAN"),
        ("CTYPE2", "DEC--TAN"),
        ("CUNIT1", "deg"),
        ("CUNIT2", "deg"),
        ("CRVAL1", 267.38),
        ("CRVAL2", 65.50),
        ("CRPIX1", centre),
        ("CRPIX2", centre),
        ("CD1_1", -SCALE_DEG),
        ("CD1_2", 0.0),
        ("CD2_1", 0.0),
        ("CD2_2", SCALE_DEG),
        ("RADESYS", "ICRS"),
        ("EQUINOX", 2000.0),
        ("ZEROPNT", 23.9, "AB zero point for uJy"),
        ("COMMENT", "Synthetic mosaic written by testdata/gen_mosaic.py"),
    ])


def all_sources(rng, npix: int):
    """About one source per 20,000 pixels: 18k for a 19200^2 tile, small enough to hold."""
    n = rng.poisson(npix * npix / 20000.0)
    return rng.uniform(0, npix, n), rng.uniform(0, npix, n), rng.exponential(0.02, n)


def add_sources(chunk: np.ndarray, y0: int, xs, ys, fluxes):
    rows, npix = chunk.shape
    r = SOURCE_RADIUS_PIX
    for x, y, f in zip(xs, ys, fluxes):
        ix0, ix1 = max(int(x) - r, 0), min(int(x) + r + 1, npix)
        iy0, iy1 = max(int(y) - r - y0, 0), min(int(y) + r + 1 - y0, rows)
        if ix0 >= ix1 or iy0 >= iy1:
            continue
        gy, gx = np.mgrid[iy0:iy1, ix0:ix1]
        d2 = (gx - x) ** 2 + (gy + y0 - y) ** 2
        chunk[iy0:iy1, ix0:ix1] += (f * np.exp(-d2 / (2 * SOURCE_SIGMA_PIX ** 2))).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("npix", type=int)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--chunk-rows", type=int, default=256)
    args = ap.parse_args()
    npix = args.npix
    if npix < 1:
        ap.error("NPIX must be positive")

    rng = np.random.default_rng(args.seed)
    header = mosaic_header(npix).tostring().encode("ascii")
    part = args.out + ".part"
    with open(part, "wb") as f:
        f.write(header)
        xs, ys, fluxes = all_sources(rng, npix)
        for y0 in range(0, npix, args.chunk_rows):
            rows = min(args.chunk_rows, npix - y0)
            chunk = rng.normal(2e-4, 1e-3, (rows, npix)).astype(np.float32)
            # sources centred just outside the chunk still spill into it
            near = (ys >= y0 - SOURCE_RADIUS_PIX - 1) & (ys < y0 + rows + SOURCE_RADIUS_PIX + 1)
            add_sources(chunk, y0, xs[near], ys[near], fluxes[near])
            f.write(chunk.astype(">f4").tobytes())
        f.write(b"\0" * ((-npix * npix * 4) % 2880))
    os.replace(part, args.out)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {npix}x{npix} float32, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
