"""Pixel <-> sky reference values from astropy.wcs for the WCS oracle test.

Usage: wcs_grid.py FILE...  For the first image HDU of each file, prints

    F <path> <pixel scale in degrees>
    P <x> <y> <ra> <dec>      astropy all_pix2world (origin 0), converted to ICRS
    S <ra> <dec> <x> <y>      ICRS -> the WCS frame -> all_world2pix (origin 0, tolerance 1e-12)

over a 21 x 21 grid reaching 20% beyond each edge. Points astropy cannot transform are left out.
"""

import sys
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame

warnings.simplefilter("ignore", FITSFixedWarning)


def first_image(hdul):
    for hdu in hdul:
        if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2:
            return hdu.header
    raise SystemExit(f"no image HDU in {hdul.filename()}")


def main(paths):
    for path in paths:
        with fits.open(path) as hdul:
            header = first_image(hdul)
        wcs = WCS(header).celestial
        nx, ny = header["NAXIS1"], header["NAXIS2"]
        xs = np.linspace(-0.2 * nx, 1.2 * nx, 21)
        ys = np.linspace(-0.2 * ny, 1.2 * ny, 21)
        x, y = (a.ravel() for a in np.meshgrid(xs, ys))
        frame = wcs_to_celestial_frame(wcs)
        print(f"F {path} {min(proj_plane_pixel_scales(wcs)):.17g}")
        with np.errstate(all="ignore"):
            lon, lat = wcs.all_pix2world(x, y, 0)
        ok = np.isfinite(lon) & np.isfinite(lat)
        icrs = SkyCoord(lon[ok] * u.deg, lat[ok] * u.deg, frame=frame).icrs
        for px, py, ra, dec in zip(x[ok], y[ok], icrs.ra.deg, icrs.dec.deg):
            print(f"P {px:.17g} {py:.17g} {ra:.17g} {dec:.17g}")
        native = icrs.transform_to(frame).spherical
        with np.errstate(all="ignore"):
            bx, by = wcs.all_world2pix(native.lon.deg, native.lat.deg, 0, tolerance=1e-12,
                                       maxiter=200, quiet=True)
        for ra, dec, px, py in zip(icrs.ra.deg, icrs.dec.deg, bx, by):
            if np.isfinite(px) and np.isfinite(py):
                print(f"S {ra:.17g} {dec:.17g} {px:.17g} {py:.17g}")


if __name__ == "__main__":
    main(sys.argv[1:])
