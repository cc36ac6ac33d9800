#!/usr/bin/env python3
"""Write the small FITS fixtures of testdata/fits/ (deterministic: fixed numpy seeds).

Usage: .venv/bin/python testdata/make_fixtures.py [--out testdata/fits]

Plain images are written byte by byte (astropy renders the header, we append the
big-endian data and the padding) so that the stored values, BSCALE/BZERO/BLANK and the
card order are exactly what we ask for; astropy never rescales anything on the way.
Tile-compressed files are written by astropy's CompImageHDU. Every file written is read
back with astropy (and its WCS parsed) before the script ends, except the malformed ones.
The real images of fits/real/ are copied from the installed astropy package.
"""

import argparse
import gzip
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

BLOCK = 2880
SEED = 20261125


def padded(raw: bytes, fill: bytes) -> bytes:
    return raw + fill * ((-len(raw)) % BLOCK)


def card(text: str) -> bytes:
    b = text.encode("latin-1")
    assert len(b) <= 80, text
    return b.ljust(80, b" ")


def image_header(raw: np.ndarray, cards=(), primary=True) -> fits.Header:
    """Mandatory keywords for `raw` (numpy order), then `cards` in order."""
    bitpix = {
        "u1": 8, "i2": 16, "i4": 32, "i8": 64, "f4": -32, "f8": -64,
    }[raw.dtype.str[1:]]
    h = fits.Header()
    if primary:
        h["SIMPLE"] = (True, "conforms to FITS standard")
    else:
        h["XTENSION"] = ("IMAGE", "image extension")
    h["BITPIX"] = bitpix
    h["NAXIS"] = raw.ndim
    for i, n in enumerate(reversed(raw.shape)):
        h[f"NAXIS{i + 1}"] = n
    if primary:
        h["EXTEND"] = True
    else:
        h["PCOUNT"] = 0
        h["GCOUNT"] = 1
    for c in cards:
        if isinstance(c, tuple) and len(c) == 3:
            h.append((c[0], c[1], c[2]))
        else:
            h.append(c)
    return h


def hdu_bytes(raw: np.ndarray, cards=(), primary=True) -> bytes:
    h = image_header(raw, cards, primary)
    data = raw.astype(raw.dtype.newbyteorder(">"), copy=False).tobytes()
    return h.tostring().encode("ascii") + padded(data, b"\0")


def celestial(ctype=("RA---TAN", "DEC--TAN"), crval=(150.1, 2.2), crpix=(31.0, 24.0),
              cdelt=0.002, rot_deg=0.0, radesys="ICRS", use_cd=False, extra=()):
    """WCS cards: CDELT+PC (or CD) with a rotation, east to the left."""
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    pc = np.array([[c, -s], [s, c]])
    cd = pc * np.array([[-cdelt], [cdelt]])
    out = [("WCSAXES", 2), ("CTYPE1", ctype[0]), ("CTYPE2", ctype[1]),
           ("CUNIT1", "deg"), ("CUNIT2", "deg"),
           ("CRVAL1", float(crval[0])), ("CRVAL2", float(crval[1])),
           ("CRPIX1", float(crpix[0])), ("CRPIX2", float(crpix[1]))]
    if use_cd:
        out += [("CD1_1", cd[0, 0]), ("CD1_2", cd[0, 1]), ("CD2_1", cd[1, 0]), ("CD2_2", cd[1, 1])]
    else:
        out += [("CDELT1", -cdelt), ("CDELT2", cdelt),
                ("PC1_1", pc[0, 0]), ("PC1_2", pc[0, 1]), ("PC2_1", pc[1, 0]), ("PC2_2", pc[1, 1])]
    if radesys:
        out.append(("RADESYS", radesys))
        if radesys.startswith("FK"):
            out.append(("EQUINOX", 2000.0))
    out += list(extra)
    return out


def smooth_field(rng, shape, scale=1.0):
    """Noise plus a gradient plus a blob: every pixel differs, neighbours correlate."""
    ny, nx = shape[-2:]
    y, x = np.mgrid[0:ny, 0:nx]
    base = 0.3 * x - 0.2 * y + 20 * np.exp(-((x - nx / 3) ** 2 + (y - ny / 2) ** 2) / 30.0)
    return (base + rng.normal(0, 1, shape)) * scale


# --- plain images ------------------------------------------------------------------------

def plain_fixtures(rng):
    """name -> bytes of the file."""
    f = {}
    tan = dict(ctype=("RA---TAN", "DEC--TAN"))

    u8 = rng.integers(0, 256, (47, 61)).astype(np.uint8)
    f["bitpix8.fits"] = hdu_bytes(u8, celestial(crval=(30.5, -12.25), crpix=(30.0, 23.5), rot_deg=10, **tan))
    i16 = rng.integers(-32768, 32768, (48, 64)).astype(np.int16)
    f["bitpix16.fits"] = hdu_bytes(i16, celestial(crval=(150.1, 2.2), crpix=(33.5, 24.0), cdelt=0.001, **tan))
    i32 = rng.integers(-2**31, 2**31, (61, 47)).astype(np.int32)
    f["bitpix32.fits"] = hdu_bytes(i32, celestial(crval=(189.2, 62.2), crpix=(20.0, 30.0), rot_deg=-25, use_cd=True, **tan))
    i64 = rng.integers(-2**62, 2**62, (33, 40)).astype(np.int64)
    i64[0, 0] = 2**63 - 1  # beyond float64's exact integers: raw values must be copied, not converted
    i64[0, 1] = -2**63
    f["bitpix64.fits"] = hdu_bytes(i64, celestial(crval=(53.1, -27.8), crpix=(20.5, 17.0), cdelt=0.0005, **tan))
    f32 = smooth_field(rng, (47, 61), 10.0).astype(np.float32)
    f32[3, 4] = -0.0
    f32[5, 6] = np.float32(1e-42)  # subnormal
    f["bitpix-32.fits"] = hdu_bytes(f32, celestial(crval=(267.38, 65.5), crpix=(31.0, 24.0), cdelt=0.1 / 3600, **tan))
    f64 = smooth_field(rng, (64, 50), 1e-3)
    f64[1, 1] = np.inf
    f64[2, 2] = -np.inf
    f["bitpix-64.fits"] = hdu_bytes(f64, celestial(crval=(10.0, 10.0), crpix=(25.5, 32.5), rot_deg=45, **tan))

    # physical = 0.5 * raw + 100
    raw = rng.integers(-32768, 32768, (47, 61)).astype(np.int16)
    f["scaled_int16.fits"] = hdu_bytes(raw, celestial(crval=(201.3, -43.0), **tan)
                                       + [("BSCALE", 0.5), ("BZERO", 100.0), ("BUNIT", "adu")])
    u16 = rng.integers(0, 65536, (47, 61)).astype(np.uint16)
    u16[0, :3] = [0, 32768, 65535]
    f["uint16.fits"] = hdu_bytes((u16.astype(np.int32) - 32768).astype(np.int16),
                                 celestial(crval=(120.0, 33.0), **tan) + [("BSCALE", 1.0), ("BZERO", 32768.0)])
    u32 = rng.integers(0, 2**32, (47, 61), dtype=np.uint64).astype(np.uint32)
    u32[0, :3] = [0, 2**31, 2**32 - 1]
    f["uint32.fits"] = hdu_bytes((u32.astype(np.int64) - 2**31).astype(np.int32),
                                 celestial(crval=(121.0, 34.0), **tan) + [("BSCALE", 1.0), ("BZERO", 2147483648.0)])

    b16 = rng.integers(-1000, 1000, (47, 61)).astype(np.int16)
    b16[rng.random(b16.shape) < 0.1] = -32768
    b16[10:14, 20:25] = -32768
    f["blank_int16.fits"] = hdu_bytes(b16, celestial(crval=(83.8, -5.4), **tan) + [("BLANK", -32768)])
    b32 = rng.integers(-10**6, 10**6, (47, 61)).astype(np.int32)
    b32[rng.random(b32.shape) < 0.1] = -999999
    f["blank_int32.fits"] = hdu_bytes(b32, celestial(crval=(84.8, -6.4), **tan) + [("BLANK", -999999)])
    nan = smooth_field(rng, (47, 61)).astype(np.float32)
    nan[rng.random(nan.shape) < 0.1] = np.nan
    nan[:, 0] = np.nan
    f["nan_float32.fits"] = hdu_bytes(nan, celestial(crval=(85.8, -7.4), **tan))

    # projections: 61x47 odd/odd unless said otherwise
    proj = {
        "proj_tan.fits": ((47, 61), celestial(("RA---TAN", "DEC--TAN"), (150.1, 2.2), (31.0, 24.0), 0.002, 30)),
        "proj_sin.fits": ((47, 64), celestial(("RA---SIN", "DEC--SIN"), (83.6, -5.4), (20.0, 40.0), 0.01, -15)),
        "proj_zea.fits": ((48, 61), celestial(("RA---ZEA", "DEC--ZEA"), (210.0, 54.0), (31.0, 24.5), 0.05, 5)),
        "proj_arc.fits": ((47, 61), celestial(("RA---ARC", "DEC--ARC"), (45.0, -30.0), (1.0, 1.0), 0.05, 0)),
        "proj_stg.fits": ((47, 61), celestial(("RA---STG", "DEC--STG"), (300.0, 70.0), (31.0, 24.0), 0.05, 60)),
        "proj_ait.fits": ((47, 61), celestial(("RA---AIT", "DEC--AIT"), (266.4, 0.0), (31.0, 24.0), 1.0, 0)),
        "proj_car.fits": ((46, 62), celestial(("RA---CAR", "DEC--CAR"), (180.0, 0.0), (31.5, 23.5), 1.0, 0)),
        "fk5.fits": ((47, 61), celestial(("RA---TAN", "DEC--TAN"), (10.68, 41.27), (31.0, 24.0), 0.002, 0, radesys="FK5")),
        "galactic.fits": ((47, 61), celestial(("GLON-TAN", "GLAT-TAN"), (30.0, 1.5), (31.0, 24.0), 0.01, 0, radesys=None)),
        # the pole lies inside the image, off its centre
        "pole.fits": ((47, 61), celestial(("RA---TAN", "DEC--TAN"), (0.0, 90.0), (25.0, 20.0), 0.01, 0)),
        # RA = 0 runs down the middle of the image
        "ra0.fits": ((47, 61), celestial(("RA---TAN", "DEC--TAN"), (0.0, 25.0), (31.0, 24.0), 0.01, 0)),
    }
    for name, (shape, cards) in proj.items():
        f[name] = hdu_bytes(smooth_field(rng, shape).astype(np.float32), cards)

    # TAN-SIP, order 3, distortion of about a pixel at the corners, with a fitted inverse
    sip_a = {"A_2_0": 8.0e-4, "A_1_1": -5.0e-4, "A_0_2": 3.0e-4, "A_3_0": 1.2e-5, "A_2_1": -6.0e-6,
             "A_1_2": 4.0e-6, "A_0_3": -2.0e-6}
    sip_b = {"B_2_0": -2.0e-4, "B_1_1": 6.0e-4, "B_0_2": -7.0e-4, "B_3_0": 3.0e-6, "B_2_1": 9.0e-6,
             "B_1_2": -1.1e-5, "B_0_3": 5.0e-6}
    ap, bp = fit_sip_inverse(sip_a, sip_b, (61, 47), (31.0, 24.0), order=3)
    sip_cards = [("A_ORDER", 3)] + list(sip_a.items()) + [("B_ORDER", 3)] + list(sip_b.items())
    sip_cards += [("AP_ORDER", 3)] + list(ap.items()) + [("BP_ORDER", 3)] + list(bp.items())
    f["sip.fits"] = hdu_bytes(smooth_field(rng, (47, 61)).astype(np.float32),
                              celestial(("RA---TAN-SIP", "DEC--TAN-SIP"), (150.1, 2.2), (31.0, 24.0),
                                        0.0003, 12, use_cd=True, extra=sip_cards))
    # TPV: polynomial in intermediate world coordinates (degrees), a few 1e-5 deg at the edges
    tpv = [("PV1_0", 0.0), ("PV1_1", 1.0), ("PV1_2", 0.0), ("PV1_4", 3.0), ("PV1_5", -2.0),
           ("PV1_6", 1.5), ("PV1_7", 40.0), ("PV2_0", 0.0), ("PV2_1", 1.0), ("PV2_2", 0.0),
           ("PV2_4", -2.5), ("PV2_5", 1.0), ("PV2_6", 2.0), ("PV2_10", 30.0)]
    f["tpv.fits"] = hdu_bytes(smooth_field(rng, (47, 61)).astype(np.float32),
                              celestial(("RA---TPV", "DEC--TPV"), (36.0, -4.5), (31.0, 24.0),
                                        0.0005, -8, use_cd=True, extra=tpv))

    # a cube: celestial axes 1-2 and a radio velocity axis 3
    cube = smooth_field(rng, (5, 47, 61)).astype(np.float32)
    cube += np.arange(5, dtype=np.float32)[:, None, None] * 100
    cube_cards = [("WCSAXES", 3), ("CTYPE1", "RA---SIN"), ("CTYPE2", "DEC--SIN"), ("CTYPE3", "VRAD"),
                  ("CUNIT1", "deg"), ("CUNIT2", "deg"), ("CUNIT3", "m/s"),
                  ("CRVAL1", 201.365), ("CRVAL2", -43.019), ("CRVAL3", 5.0e5),
                  ("CRPIX1", 31.0), ("CRPIX2", 24.0), ("CRPIX3", 1.0),
                  ("CDELT1", -0.002), ("CDELT2", 0.002), ("CDELT3", 2.0e3),
                  ("RADESYS", "ICRS"), ("SPECSYS", "LSRK"), ("RESTFRQ", 1.420405752e9), ("BUNIT", "Jy/beam")]
    f["cube.fits"] = hdu_bytes(cube, cube_cards)

    # multi-extension: empty primary, two image extensions with different WCS and BITPIX
    prim = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True),
                        ("TELESCOP", "SYNTH")]).tostring().encode("ascii")
    sci = smooth_field(rng, (47, 61)).astype(np.float32)
    dq = rng.integers(0, 50, (40, 50)).astype(np.int16)
    f["mef.fits"] = (prim
                     + hdu_bytes(sci, [("EXTNAME", "SCI")] + celestial(crval=(150.2, 2.3)), primary=False)
                     + hdu_bytes(dq, [("EXTNAME", "DQ")] + celestial(crval=(150.3, 2.4), cdelt=0.003, rot_deg=90), primary=False))

    # header conventions: CONTINUE, HIERARCH, COMMENT/HISTORY, quotes inside strings
    extra = fits.Header()
    extra["OBJECT"] = ("O'Brien's ''field''", "quotes are doubled on disk")
    extra["LONGSTR"] = ("a long string value " * 8).strip()
    extra["HIERARCH ESO DET CHIP NAME"] = "CCD-42"
    extra["HIERARCH ESO TEL AMBI FWHM START"] = 0.75
    extra["COMMENT"] = "first comment"
    extra["COMMENT"] = "second comment, with 'quotes'"
    extra["HISTORY"] = "made by testdata/make_fixtures.py"
    extra["EMPTYSTR"] = ""
    extra["BLANKVAL"] = ("   ", "a string of spaces")
    extra["ANUMBER"] = (1.5e-300, "tiny double")
    hdr = image_header(np.zeros((47, 61), np.float32), celestial(crval=(150.1, 2.2)))
    hdr.extend(extra)
    data = smooth_field(rng, (47, 61)).astype(">f4")
    f["header_conventions.fits"] = hdr.tostring().encode("ascii") + padded(data.tobytes(), b"\0")
    return f


def fit_sip_inverse(a, b, naxis, crpix, order):
    """Least-squares AP/BP so that u = U + AP(U, V) over the image (as SIP writers do)."""
    ys, xs = np.mgrid[0:naxis[1]:0.5, 0:naxis[0]:0.5]
    u = xs.ravel() + 1 - crpix[0]
    v = ys.ravel() + 1 - crpix[1]

    def poly(coeffs, prefix, uu, vv):
        out = np.zeros_like(uu)
        for k, c in coeffs.items():
            p, q = map(int, k[len(prefix):].split("_"))
            out += c * uu ** p * vv ** q
        return out

    big_u = u + poly(a, "A_", u, v)
    big_v = v + poly(b, "B_", u, v)
    terms = [(p, q) for p in range(order + 1) for q in range(order + 1 - p)]
    m = np.stack([big_u ** p * big_v ** q for p, q in terms], axis=1)
    cu = np.linalg.lstsq(m, u - big_u, rcond=None)[0]
    cv = np.linalg.lstsq(m, v - big_v, rcond=None)[0]
    ap = {f"AP_{p}_{q}": float(c) for (p, q), c in zip(terms, cu)}
    bp = {f"BP_{p}_{q}": float(c) for (p, q), c in zip(terms, cv)}
    return ap, bp


# --- compressed ----------------------------------------------------------------------------

def compressed_fixtures(rng, out: Path):
    hdr_cards = celestial(crval=(150.1, 2.2), crpix=(50.0, 45.0), cdelt=0.001, rot_deg=20)
    shape = (90, 100)  # 32x32 tiles: partial tiles on the right and top edges
    i16 = (smooth_field(rng, shape, 50.0) + 1000).astype(np.int16)
    f32 = smooth_field(rng, shape, 3.0).astype(np.float32)
    plio = rng.integers(0, 1000, shape).astype(np.int16)  # PLIO_1 stores 0 <= v < 2^24
    plio[40:50, 40:60] = 7
    specs = [
        ("comp_rice_int16.fits", i16, dict(compression_type="RICE_1")),
        ("comp_rice_float32.fits", f32, dict(compression_type="RICE_1", quantize_level=16.0,
                                             quantize_method=1, dither_seed=42)),
        ("comp_gzip1.fits", f32, dict(compression_type="GZIP_1", quantize_level=16.0,
                                      quantize_method=1, dither_seed=43)),
        ("comp_gzip2.fits", i16, dict(compression_type="GZIP_2")),
        ("comp_hcompress.fits", i16, dict(compression_type="HCOMPRESS_1", hcomp_scale=0)),
        ("comp_plio.fits", plio, dict(compression_type="PLIO_1")),
    ]
    # astropy's GZIP codecs stamp each tile with the current time; pin it so reruns give
    # the same bytes
    from astropy.io.fits.hdu.compressed import _codecs
    _codecs.gzip_compress = lambda buf: gzip.compress(buf, mtime=0)
    for name, data, kw in specs:
        h = fits.Header(hdr_cards)
        hdu = fits.CompImageHDU(data=data, header=h, tile_shape=(32, 32), **kw)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out / name, overwrite=True)


# --- malformed -----------------------------------------------------------------------------

def malformed_fixtures(good: bytes):
    """name -> bytes. `good` is a valid 61x47 float32 file with one header block."""
    hdr_end = good.index(b"END" + b" " * 77) + 80
    hdr_block = padded(good[:hdr_end], b" ")
    cards = [good[i:i + 80] for i in range(0, hdr_end - 80, 80)]

    def with_card(key: bytes, text: str) -> bytes:
        new = [card(text) if c.startswith(key.ljust(8)) else c for c in cards]
        return padded(b"".join(new) + card("END"), b" ")

    f = {}
    f["truncated_data.fits"] = good[: len(hdr_block) + 61 * 47 * 2]  # half the data unit
    f["truncated_header.fits"] = good[: 80 * 9 + 17]  # mid-card, no END
    f["bad_naxis_negative.fits"] = with_card(b"NAXIS", "NAXIS   =                   -1") + good[len(hdr_block):]
    f["bad_naxis1_string.fits"] = with_card(b"NAXIS1", "NAXIS1  = 'abc'") + good[len(hdr_block):]
    nonascii = [c for c in cards] + [card("OBJECT  = 'Caf\xe9 field'")]
    f["nonascii_card.fits"] = padded(b"".join(nonascii) + card("END"), b" ") + good[len(hdr_block):]
    f["missing_end.fits"] = padded(b"".join(cards), b" ") + b" " * BLOCK  # blanks to EOF, no END
    f["data_larger_than_file.fits"] = (with_card(b"NAXIS1", "NAXIS1  =               100000")
                                       .replace(card("NAXIS2  =                   47"),
                                                card("NAXIS2  =               100000"))
                                       + good[len(hdr_block):])
    f["empty.fits"] = b""
    f["not_fits.txt"] = b"This is not a FITS file.\nid,ra,dec\n1,2,3\n"
    return f


# --- real files from astropy ------------------------------------------------------------------

REAL = [
    # (name here, path inside the astropy package)
    ("sip-wcs.fits", "nddata/tests/data/sip-wcs.fits"),
    ("scale.fits", "io/fits/tests/data/scale.fits"),
    ("test0.fits", "io/fits/tests/data/test0.fits"),
    ("m13_rice.fits", "io/fits/hdu/compressed/tests/data/m13_rice.fits"),
]


def copy_real(out: Path):
    import astropy
    root = Path(astropy.__file__).parent
    out.mkdir(parents=True, exist_ok=True)
    for name, rel in REAL:
        shutil.copyfile(root / rel, out / name)


# --- main ------------------------------------------------------------------------------------

def verify(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path) as hl:
            for hdu in hl:
                if hdu.is_image and hdu.data is not None:
                    w = WCS(hdu.header, hl)
                    assert w.has_celestial, path


def table_fixture(out: Path):
    """`table_types.fits`: a binary table with a column of every type the Arrow reader maps,
    the unsigned and signed-byte conventions, TSCAL/TZERO scaling, TNULL, NaN, strings,
    fixed-size arrays and TUNIT/TUCD/TCOMM."""
    rng = np.random.default_rng(SEED + 2)
    n = 37
    i16 = rng.integers(-30000, 30000, n).astype(np.int16)
    i16[[3, 17]] = -999
    scaled = rng.integers(-2000, 2000, n).astype(np.int16)
    scaled[5] = -32768
    f32 = rng.normal(size=n).astype(np.float32)
    f32[[2, 30]] = np.nan
    names = np.array([f"src{i:03d}" + ("'x" if i % 7 == 0 else "") for i in range(n)])
    cols = [
        fits.Column("flag", "L", array=rng.integers(0, 2, n).astype(bool)),
        fits.Column("ub", "B", array=rng.integers(0, 256, n).astype(np.uint8)),
        fits.Column("sb", "B", bzero=-128, array=rng.integers(-128, 128, n).astype(np.int8)),
        fits.Column("i16", "I", array=i16, null=-999),
        fits.Column("u16", "I", bzero=32768, array=rng.integers(0, 65536, n).astype(np.uint16)),
        fits.Column("i32", "J", array=rng.integers(-2**31, 2**31, n).astype(np.int32)),
        fits.Column("u32", "J", bzero=2**31,
                    array=rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)),
        fits.Column("i64", "K", array=rng.integers(-2**62, 2**62, n).astype(np.int64)),
        fits.Column("u64", "K", bzero=2**63,
                    array=rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)),
        fits.Column("mag", "E", array=f32, unit="mag"),
        fits.Column("ra", "D", array=rng.uniform(0, 360, n), unit="deg"),
        fits.Column("flux", "I", array=scaled, null=-32768, unit="mJy"),
        fits.Column("name", "12A", array=names),
        fits.Column("vec", "3D", array=rng.normal(size=(n, 3))),
    ]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["TUCD10"] = "phot.mag"
    hdu.header["TCOMM11"] = "right ascension"
    hdu.header["TUCD11"] = "pos.eq.ra;meta.main"
    path = out / "table_types.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    # Scaling added to the header only, so the stored integers stay as written above.
    fits.setval(path, "TSCAL12", value=0.01, ext=1, after="TNULL12")
    fits.setval(path, "TZERO12", value=5.0, ext=1, after="TSCAL12")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "fits"))
    out = Path(ap.parse_args().out)
    (out / "malformed").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    plain = plain_fixtures(rng)
    for name, data in plain.items():
        (out / name).write_bytes(data)
    # the whole file gzipped; mtime=0 so the bytes do not change between runs
    (out / "proj_tan.fits.gz").write_bytes(gzip.compress(plain["proj_tan.fits"], 9, mtime=0))
    compressed_fixtures(np.random.default_rng(SEED + 1), out)
    for name, data in malformed_fixtures(plain["nan_float32.fits"]).items():
        (out / "malformed" / name).write_bytes(data)
    copy_real(out / "real")
    table_fixture(out)

    for p in sorted(out.glob("*.fits*")) + sorted((out / "real").glob("*.fits")):
        if p.name not in ("scale.fits", "test0.fits"):  # astropy's own files carry their quirks
            verify(p)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    biggest = max(out.rglob("*.fits*"), key=lambda p: p.stat().st_size)
    print(f"wrote {sum(1 for p in out.rglob('*') if p.is_file())} files, {total} bytes; "
          f"largest {biggest.name} {biggest.stat().st_size} bytes")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
