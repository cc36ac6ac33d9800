"""Pixel <-> sky reference values from astropy.wcs for the WCS oracle test.

Usage: wcs_grid.py [FILE...]

Builds one header per case below (and takes the first image HDU of each FILE given), then
prints, per case, in a line format a Rust test reads with split_whitespace:

    C <name> <scale x> <scale y>   proj_plane_pixel_scales, degrees per pixel
    H <card>                       the header, one 80-column card per line (tostring(sep='\\n'))
    P <x> <y> <ra> <dec>           all_pix2world(x, y, 0), converted to ICRS; nan where astropy has none
    S <ra> <dec> <x> <y>           ICRS -> the WCS frame (as skycoord_to_pixel does) ->
                                   all_world2pix(origin 0, tolerance 1e-12); nan where the
                                   projection has no answer, inf where the distortion
                                   iteration diverges (astropy's NoConvergence)

The pixels are a 21 x 21 grid reaching 20 % beyond each edge (441 points). The sky points
are the ICRS positions of those pixels, a 20 x 20 grid over the whole sky and the two poles.
"""

import sys
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning, NoConvergence
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame

warnings.simplefilter("ignore", FITSFixedWarning)


def header(ctype, crval, crpix, naxis, linear, extra=()):
    """A 2-D image header: ctype ('RA---TAN', 'DEC--TAN'), linear a list of (key, value)."""
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"], h["NAXIS2"] = naxis
    h["CTYPE1"], h["CTYPE2"] = ctype
    h["CRVAL1"], h["CRVAL2"] = crval
    h["CRPIX1"], h["CRPIX2"] = crpix
    for key, value in list(linear) + list(extra):
        h[key] = value
    return h


def cdelt(scale, rot_deg=0.0):
    """CDELT + PC with a rotation (the astropy/wcslib default form)."""
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    return [("CDELT1", -scale), ("CDELT2", scale),
            ("PC1_1", c), ("PC1_2", -s), ("PC2_1", s), ("PC2_2", c)]


def simple(scale):
    return [("CDELT1", -scale), ("CDELT2", scale)]


def proj(code, crval=(150.0, 20.0), scale=0.01, naxis=(61, 47), rot=15.0, extra=()):
    crpix = ((naxis[0] + 1) / 2, (naxis[1] + 1) / 2)
    return header((f"RA---{code}", f"DEC--{code}"), crval, crpix, naxis, cdelt(scale, rot), extra)


# HST ACS/WFC-like: 0.05"/pixel, 4096 x 2048 chip, order-4 SIP (tens of pixels at the corners).
ACS_SIP = [
    ("A_ORDER", 4), ("A_0_2", 2.16e-06), ("A_1_1", -7.27e-06), ("A_2_0", 8.57e-06),
    ("A_0_3", -4.31e-10), ("A_1_2", 5.22e-11), ("A_2_1", -4.77e-10), ("A_3_0", 4.41e-11),
    ("A_0_4", 1.87e-15), ("A_1_3", -1.63e-15), ("A_2_2", 2.60e-14), ("A_3_1", -1.10e-15),
    ("A_4_0", 1.34e-14),
    ("B_ORDER", 4), ("B_0_2", -5.22e-06), ("B_1_1", 6.18e-06), ("B_2_0", -1.74e-06),
    ("B_0_3", 9.31e-11), ("B_1_2", -4.21e-10), ("B_2_1", 7.50e-11), ("B_3_0", -3.91e-10),
    ("B_0_4", -2.33e-15), ("B_1_3", 1.95e-14), ("B_2_2", -1.46e-15), ("B_3_1", 2.41e-14),
    ("B_4_0", 8.60e-16),
    # Deliberately poor inverse: all_world2pix must not use AP/BP for its answer.
    ("AP_ORDER", 1), ("AP_1_0", 1.0e-3), ("BP_ORDER", 1), ("BP_0_1", -1.0e-3),
]

# Spitzer IRAC-like: 1.2"/pixel, 256 x 256, order-3 SIP.
IRAC_SIP = [
    ("A_ORDER", 3), ("A_0_2", 1.41e-05), ("A_1_1", -2.49e-05), ("A_2_0", -3.67e-05),
    ("A_0_3", -3.04e-08), ("A_1_2", -1.19e-07), ("A_2_1", 4.70e-09), ("A_3_0", -1.51e-07),
    ("B_ORDER", 3), ("B_0_2", 2.46e-05), ("B_1_1", -3.67e-05), ("B_2_0", 1.56e-05),
    ("B_0_3", -1.80e-07), ("B_1_2", 4.18e-09), ("B_2_1", -1.33e-07), ("B_3_0", -8.90e-09),
]

# DECam-like TPV: a 2k x 4k CCD ~0.7 deg from the optical axis (CRPIX far off the chip),
# with the r terms PV1_3 / PV1_11 and their PV2 counterparts.
DECAM_TPV = [
    ("PV1_0", -2.6e-3), ("PV1_1", 1.0111), ("PV1_2", 5.6e-3), ("PV1_3", 1.0e-4),
    ("PV1_4", -5.7e-3), ("PV1_5", -4.5e-3), ("PV1_6", 1.1e-3), ("PV1_7", -1.30e-2),
    ("PV1_8", -5.3e-3), ("PV1_9", -6.9e-3), ("PV1_10", -3.5e-3), ("PV1_11", 2.0e-4),
    ("PV2_0", 1.9e-3), ("PV2_1", 1.0093), ("PV2_2", -4.8e-3), ("PV2_3", -1.0e-4),
    ("PV2_4", 6.0e-3), ("PV2_5", 4.1e-3), ("PV2_6", -1.5e-3), ("PV2_7", -1.27e-2),
    ("PV2_8", -6.1e-3), ("PV2_9", -7.0e-3), ("PV2_10", -3.3e-3), ("PV2_11", -2.0e-4),
]


def rotated_cd(scale, rot_deg, skew=0.0):
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    return [("CD1_1", -scale * c), ("CD1_2", scale * (s + skew)),
            ("CD2_1", scale * s), ("CD2_2", scale * c)]


def cases():
    yield "tan", proj("TAN")
    yield "sin", proj("SIN", crval=(30.0, -60.0))
    yield "zea", proj("ZEA", scale=0.05)
    yield "arc", proj("ARC", crval=(250.0, 45.0), scale=0.5)
    yield "stg", proj("STG", crval=(80.0, 70.0), rot=60.0)
    yield "ait", header(("RA---AIT", "DEC--AIT"), (0.0, 0.0), (180.5, 90.5), (360, 180), simple(1.0))
    yield "car", header(("RA---CAR", "DEC--CAR"), (0.0, 0.0), (180.5, 90.5), (360, 180), simple(1.0))
    yield "car_offset", proj("CAR", crval=(120.0, 30.0), scale=0.2)
    yield "cea", proj("CEA", crval=(200.0, 0.0), scale=0.5, extra=[("PV2_1", 0.75)])
    yield "mer", proj("MER", crval=(10.0, 0.0), scale=0.5)
    yield "sfl", proj("SFL", crval=(300.0, 0.0), scale=1.0)
    yield "zea_lonpole", proj("ZEA", crval=(10.0, -30.0), scale=0.2, extra=[("LONPOLE", 150.0)])
    yield "cd_rotated", header(("RA---TAN", "DEC--TAN"), (210.8, 54.3), (100.5, 80.25), (200, 160),
                               rotated_cd(2.8e-4, 37.0, skew=0.05))
    yield "pc_cdelt", header(("RA---TAN", "DEC--TAN"), (83.6, -5.4), (31.0, 24.0), (61, 47),
                             [("CDELT1", -1.5e-3), ("CDELT2", 1.2e-3), ("PC1_1", 0.8),
                              ("PC1_2", -0.55), ("PC2_1", 0.6), ("PC2_2", 0.85)])
    yield "crota2", header(("RA---TAN", "DEC--TAN"), (266.4, -28.9), (31.0, 24.0), (61, 47),
                           [("CDELT1", -2.0e-3), ("CDELT2", 1.5e-3), ("CROTA2", 25.0)])
    yield "sip_acs", header(("RA---TAN-SIP", "DEC--TAN-SIP"), (5.6, -72.08), (2048.0, 1024.0),
                            (4096, 2048), rotated_cd(1.39e-5, -95.0), ACS_SIP)
    yield "sip_irac", header(("RA---TAN-SIP", "DEC--TAN-SIP"), (53.1, -27.8), (128.5, 128.5),
                             (256, 256), rotated_cd(3.4e-4, 20.0), IRAC_SIP)
    yield "tpv", header(("RA---TPV", "DEC--TPV"), (36.5, -4.5), (-1050.0, 4250.0), (2048, 4096),
                        rotated_cd(7.3e-5, 90.0), DECAM_TPV)
    yield "fk5", proj("TAN", crval=(10.68, 41.27), scale=0.002,
                      extra=[("RADESYS", "FK5"), ("EQUINOX", 2000.0)])
    yield "fk5_by_equinox", proj("TAN", crval=(10.68, 41.27), scale=0.002, extra=[("EQUINOX", 2000.0)])
    yield "galactic", header(("GLON-TAN", "GLAT-TAN"), (120.0, 30.0), (31.0, 24.0), (61, 47),
                             cdelt(0.01, 10.0))
    yield "galactic_car", header(("GLON-CAR", "GLAT-CAR"), (0.0, 0.0), (180.5, 90.5), (360, 180),
                                 simple(1.0))
    yield "pole", proj("TAN", crval=(45.0, 89.9), scale=0.01, naxis=(61, 61))
    yield "ra0", proj("TAN", crval=(0.05, 10.0), scale=0.01)
    yield "swapped_axes", header(("DEC--TAN", "RA---TAN"), (-20.0, 40.0), (31.0, 24.0), (61, 47),
                                 [("CDELT1", 0.01), ("CDELT2", -0.01)])


def file_cases(paths):
    for path in paths:
        with fits.open(path) as hdul:
            for hdu in hdul:
                if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2:
                    yield path, hdu.header.copy()
                    break
            else:
                raise SystemExit(f"no image HDU in {path}")


def undistorted(wcs):
    """The same WCS without SIP or TPV, or None when it has neither."""
    hdr = wcs.to_header(relax=True)
    ctypes = [hdr["CTYPE1"], hdr["CTYPE2"]]
    if not any(c.endswith(("-SIP", "TPV")) for c in ctypes) and wcs.sip is None:
        return None
    for key in list(hdr.keys()):
        if key.startswith(("PV", "A_", "B_", "AP_", "BP_")):
            del hdr[key]
    for i, c in enumerate(ctypes, 1):
        hdr[f"CTYPE{i}"] = c.replace("-SIP", "").replace("TPV", "TAN")
    return WCS(hdr)


def emit(name, hdr):
    wcs = WCS(hdr).celestial
    nx, ny = hdr["NAXIS1"], hdr["NAXIS2"]
    sx, sy = proj_plane_pixel_scales(wcs)
    print(f"C {name} {sx:.17g} {sy:.17g}")
    for card in hdr.tostring(sep="\n").splitlines():
        # The END card comes padded to a whole 2880-byte block; trailing blanks carry nothing.
        if card.strip():
            print(f"H {card.rstrip()}")

    xs = np.linspace(-0.2 * nx, 1.2 * nx, 21)
    ys = np.linspace(-0.2 * ny, 1.2 * ny, 21)
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))
    frame = wcs_to_celestial_frame(wcs)
    # all_pix2world speaks in axis order: (lat, lon) when axis 1 is the latitude (DEC--TAN).
    swapped = wcs.wcs.lng == 1
    with np.errstate(all="ignore"):
        lon, lat = wcs.all_pix2world(x, y, 0)[::-1] if swapped else wcs.all_pix2world(x, y, 0)
    ok = np.isfinite(lon) & np.isfinite(lat)
    ra, dec = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    icrs = SkyCoord(lon[ok] * u.deg, lat[ok] * u.deg, frame=frame).icrs
    ra[ok], dec[ok] = icrs.ra.deg, icrs.dec.deg
    for row in zip(x, y, ra, dec):
        print("P " + " ".join(f"{v:.17g}" for v in row))

    # Sky -> pixel for the pixels' own positions and a 20 x 20 grid over the whole sky, where
    # projections such as TAN have no answer for half the points.
    g_ra, g_dec = np.meshgrid(np.arange(20) * 18.0 + 3.0, np.linspace(-85.5, 85.5, 20))
    sky_ra = np.concatenate([ra[ok], g_ra.ravel(), [0.0, 0.0]])
    sky_dec = np.concatenate([dec[ok], g_dec.ravel(), [90.0, -90.0]])
    # What skycoord_to_pixel(..., mode='all') does, with a tolerance fit for 1e-6 pixel.
    native = SkyCoord(sky_ra * u.deg, sky_dec * u.deg, frame="icrs").transform_to(frame)
    native = native.represent_as("unitspherical")
    lon, lat = native.lon.deg, native.lat.deg
    try:
        with np.errstate(all="ignore"):
            world = (lat, lon) if swapped else (lon, lat)
            bx, by = wcs.all_world2pix(*world, 0, tolerance=1e-12, maxiter=100)
    except NoConvergence as e:
        # Far outside a distorted image the iteration diverges: astropy has no answer there,
        # and any answer is as good (written as inf, compared with nothing).
        (bx, by), bad = e.best_solution.T, np.zeros(len(lon), bool)
        for idx in (e.divergent, e.slow_conv):
            if idx is not None:
                bad[idx] = True
        bx, by = np.where(bad, np.inf, bx), np.where(bad, np.inf, by)
    # Where only the distortion's inverse fails (wcslib's TPV iteration, far off the image),
    # astropy has no answer for a reason of its own: mark it like a divergence.
    plain = undistorted(wcs)
    if plain is not None:
        with np.errstate(all="ignore"):
            px, _ = plain.wcs_world2pix(*world, 0)
        lost = np.isfinite(px) & ~np.isfinite(bx)
        bx, by = np.where(lost, np.inf, bx), np.where(lost, np.inf, by)
    for row in zip(sky_ra, sky_dec, bx, by):
        print("S " + " ".join(f"{v:.17g}" for v in row))


def main(paths):
    for name, hdr in cases():
        emit(name, hdr)
    for name, hdr in file_cases(paths):
        emit(name, hdr)


if __name__ == "__main__":
    main(sys.argv[1:])
