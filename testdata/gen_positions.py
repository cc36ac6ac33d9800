#!/usr/bin/env python3
"""Write a catalogue `id,ra,dec` of N random positions on a FITS image.

Usage: gen_positions.py MOSAIC N OUT.csv [--margin M] [--seed S] [--hdu H]

Positions are uniform in pixel space over [M, NAXIS - 1 - M] (0-based pixel centres), then
converted to ICRS degrees with astropy's all_pix2world (origin 0), so a cutout of side
up to 2*M around each stays inside the image.
"""

import argparse
import sys

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mosaic")
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--margin", type=float, default=0.0, help="pixels kept clear of each edge")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hdu", type=int, default=0)
    args = ap.parse_args()

    header = fits.getheader(args.mosaic, args.hdu)
    nx, ny = header["NAXIS1"], header["NAXIS2"]
    m = args.margin
    if nx - 1 - 2 * m < 0 or ny - 1 - 2 * m < 0:
        ap.error(f"margin {m} leaves no room on a {nx}x{ny} image")
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(m, nx - 1 - m, args.n)
    y = rng.uniform(m, ny - 1 - m, args.n)
    ra, dec = WCS(header).celestial.all_pix2world(x, y, 0)
    ra = np.mod(ra, 360.0)
    with open(args.out, "w") as f:
        f.write("id,ra,dec\n")
        for i, (r, d) in enumerate(zip(ra, dec)):
            f.write(f"{i + 1},{float(r)!r},{float(d)!r}\n")
    print(f"wrote {args.n} positions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
