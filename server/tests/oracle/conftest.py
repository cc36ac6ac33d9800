"""Helpers for the oracle tests: run the `insitu` binary, build catalogues, and compare its
cutouts with astropy's Cutout2D on the same data.

The binary comes from $INSITU_BIN (default <repo>/target/debug/insitu). astropy is imported
unconditionally: without it these tests fail, they never skip.
"""

import csv
import functools
import os
import shlex
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.nddata.utils import NoOverlapError, PartialOverlapError
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import pixel_to_skycoord, skycoord_to_pixel

REPO = Path(__file__).resolve().parents[3]
FITS_DIR = REPO / "testdata" / "fits"
MALFORMED_DIR = FITS_DIR / "malformed"
REAL_DIR = FITS_DIR / "real"

# Keywords that describe the HDU's structure (or its checksum) rather than its content:
# a cutout written as a primary HDU may legitimately change them.
STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT",
              "CHECKSUM", "DATASUM", "INHERIT", "END"}
COMMENTARY = {"COMMENT", "HISTORY", ""}

# A cutout pixel and its source pixel must name the same sky position to this (degrees).
WCS_TOL_DEG = 1e-9

warnings.simplefilter("ignore", FITSFixedWarning)


def insitu_bin() -> Path:
    return Path(os.environ.get("INSITU_BIN", REPO / "target" / "debug" / "insitu")).resolve()


@pytest.fixture(scope="session")
def insitu():
    path = insitu_bin()
    if not path.is_file():
        pytest.fail(f"insitu binary not found at {path}: run `cargo build --bins` or set INSITU_BIN")
    return path


def command_line(args) -> str:
    return " ".join(shlex.quote(str(a)) for a in [insitu_bin(), *args])


def run_insitu(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(insitu_bin()), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def run_ok(*args) -> subprocess.CompletedProcess:
    r = run_insitu(*args)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()}\n  repro: {command_line(args)}"
    return r


def error_line(r: subprocess.CompletedProcess, args) -> str:
    """The failure message: the command must have failed with exactly one line on stderr."""
    assert r.returncode != 0, f"expected failure, got exit 0\n  repro: {command_line(args)}"
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got {lines!r}\n  repro: {command_line(args)}"
    return lines[0]


def write_catalog(path: Path, rows, columns=("id", "ra", "dec")) -> Path:
    """rows: sequences matching `columns`; floats written with full precision (repr)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return path


# --- the source image, as astropy reads it ---------------------------------------------------

@dataclass(eq=False)
class Source:
    path: Path
    hdu: int  # the HDU astropy reads (insitu's --hdu)
    header: fits.Header
    raw: np.ndarray  # stored values (do_not_scale_image_data), native byte order
    wcs: WCS  # the whole WCS of the HDU
    bscale: float
    bzero: float
    blank: int | None

    @property
    def is_float(self) -> bool:
        return self.raw.dtype.kind == "f"

    @property
    def fill(self):
        """Cutout2D fill value on raw data: NaN for floats, BLANK (or 0 without) for integers."""
        if self.is_float:
            return np.nan
        return self.blank if self.blank is not None else 0

    @functools.cached_property
    def celestial(self) -> WCS:
        return self.wcs.celestial

    @functools.cached_property
    def cards(self) -> dict:
        return card_values(self.header)

    @property
    def shape2d(self):
        return self.raw.shape[-2:]

    def physical(self) -> np.ndarray:
        return physical_values(self.raw, self.bscale, self.bzero, self.blank)


def physical_values(raw, bscale, bzero, blank):
    out = raw.astype(np.float64) * bscale + bzero
    if blank is not None and raw.dtype.kind in "iu":
        out[raw == blank] = np.nan
    return out


_SOURCES = {}


def load_source(path: Path, hdu: int) -> Source:
    key = (str(path), hdu)
    if key not in _SOURCES:
        with fits.open(path, do_not_scale_image_data=True) as hl:
            h = hl[hdu]
            header = h.header.copy()
            raw = np.array(h.data)
            raw = raw.astype(raw.dtype.newbyteorder("="))
            wcs = WCS(header, hl)
        _SOURCES[key] = Source(path, hdu, header, raw, wcs,
                               float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0)),
                               header.get("BLANK") if raw.dtype.kind in "iu" else None)
    return _SOURCES[key]


# --- the oracle ------------------------------------------------------------------------------

@dataclass
class Expected:
    raw: np.ndarray  # (H, W) or (planes, H, W), Cutout2D of the stored values
    origin: tuple  # source (x, y) of the cutout's pixel (0, 0)


def expected_cutout(src: Source, position, size: int, mode: str):
    """Cutout2D on every plane; None when astropy refuses (no overlap, or strict and partial).

    position: ('sky', ra, dec) in ICRS degrees, or ('pixel', x, y) 0-based.
    """
    kind, a, b = position
    if kind == "sky":
        # exactly what Cutout2D does with a SkyCoord and a WCS, done once for all planes
        pos = skycoord_to_pixel(SkyCoord(a, b, unit="deg", frame="icrs"), src.celestial, mode="all")
    else:
        pos = (a, b)
    planes = src.raw.reshape((-1,) + src.shape2d)
    cuts = []
    try:
        for plane in planes:
            cuts.append(Cutout2D(plane, pos, (size, size), mode=mode, fill_value=src.fill, copy=True))
    except (NoOverlapError, PartialOverlapError):
        return None
    c = cuts[0]
    origin = (c.origin_original[0] - c.slices_cutout[1].start,
              c.origin_original[1] - c.slices_cutout[0].start)
    data = np.stack([c.data for c in cuts]) if src.raw.ndim == 3 else c.data
    return Expected(data, origin)


def compare_output(out: Path, src: Source, exp: Expected, check_wcs: bool = True) -> list:
    """Every way the output file differs from the oracle (empty when it matches).

    check_wcs=False skips the (slow: astropy parses the WCS of every file) pixel-by-pixel
    sky check, for callers that run it on other cutouts of the same positions."""
    problems = []
    with fits.open(out, do_not_scale_image_data=True) as hl:
        if len(hl) != 1 or not isinstance(hl[0], fits.PrimaryHDU):
            problems.append(f"expected one primary HDU, got {[type(h).__name__ for h in hl]}")
        h = hl[0].header.copy()
        data = hl[0].data
        data = None if data is None else np.array(data)
    if data is None:
        return problems + ["no data in output"]
    if h["BITPIX"] != src.header["BITPIX"]:
        problems.append(f"BITPIX {h['BITPIX']} != source {src.header['BITPIX']}")
    for key, default in (("BSCALE", 1.0), ("BZERO", 0.0)):
        if float(h.get(key, default)) != float(src.header.get(key, default)):
            problems.append(f"{key} {h.get(key)} != source {src.header.get(key)}")
    if ("BLANK" in h) != (src.blank is not None) or (src.blank is not None and h["BLANK"] != src.blank):
        problems.append(f"BLANK {h.get('BLANK')} but source has {src.blank}")
    if data.shape != exp.raw.shape:
        return problems + [f"shape {data.shape} != astropy {exp.raw.shape}"]
    problems += compare_raw(data, exp.raw)
    got_phys = physical_values(data, float(h.get("BSCALE", 1.0)), float(h.get("BZERO", 0.0)), h.get("BLANK"))
    exp_phys = physical_values(exp.raw, src.bscale, src.bzero, src.blank)
    if not np.array_equal(got_phys, exp_phys, equal_nan=True):
        problems.append(f"physical values differ at {np.argwhere(~((got_phys == exp_phys) | (np.isnan(got_phys) & np.isnan(exp_phys))))[:3].tolist()}")
    problems += compare_cards(h, src.cards)
    if check_wcs:
        problems += compare_wcs(h, src, exp)
    return problems


def compare_raw(got: np.ndarray, exp: np.ndarray) -> list:
    got = got.astype(got.dtype.newbyteorder("="))
    if got.dtype != exp.dtype:
        return [f"dtype {got.dtype} != astropy {exp.dtype}"]
    if got.dtype.kind == "f":
        nan_g, nan_e = np.isnan(got), np.isnan(exp)
        if not np.array_equal(nan_g, nan_e):
            return [f"NaN mask differs at {np.argwhere(nan_g != nan_e)[:3].tolist()}"]
        ui = np.dtype(f"u{got.dtype.itemsize}")
        same = got.view(ui) == exp.view(ui)
        same |= nan_g
    else:
        same = got == exp
    if not same.all():
        idx = np.argwhere(~same)[:3]
        return [f"{(~same).sum()} raw values differ, e.g. at {idx.tolist()}: "
                f"{[got[tuple(i)] for i in idx]} vs astropy {[exp[tuple(i)] for i in idx]}"]
    return []


def card_values(h: fits.Header) -> dict:
    """keyword -> every value it has, in order (COMMENT, HISTORY and some keywords repeat)."""
    out = {}
    for c in h.cards:
        out.setdefault(c.keyword, []).append(c.value)
    return out


def compare_cards(out: fits.Header, src_cards: dict) -> list:
    problems = []
    out_cards = card_values(out)
    for key, want in src_cards.items():
        if key in STRUCTURAL or key.startswith("NAXIS") or key.startswith("CRPIX"):
            continue
        got = out_cards.get(key, [])
        if key in COMMENTARY:
            missing = [v for v in want if v not in got]
            if missing:
                problems.append(f"{key} cards lost: {missing[:2]}")
        elif got != want:
            problems.append(f"card {key}: {got!r} != source {want!r}")
    return problems


def unit_vectors(lon, lat):
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def compare_wcs(out_header: fits.Header, src: Source, exp: Expected) -> list:
    """Each cutout pixel must map to the sky position of its source pixel."""
    try:
        w_out = WCS(out_header)
    except Exception as e:  # noqa: BLE001 - any failure to read the WCS is the finding
        return [f"astropy cannot read the output WCS: {e}"]
    w_src = src.wcs
    h, w = exp.raw.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:w]
    xs, ys = xs.ravel().astype(float), ys.ravel().astype(float)
    extra = [np.zeros_like(xs)] * (w_src.naxis - 2)
    if w_src.naxis == 3:
        extra = [np.full_like(xs, src.raw.shape[0] - 1)]
    got = w_out.all_pix2world(xs, ys, *extra, 0)
    want = w_src.all_pix2world(xs + exp.origin[0], ys + exp.origin[1], *extra, 0)
    lon, lat = w_src.wcs.lng, w_src.wcs.lat
    problems = []
    if w_out.wcs.lng != lon or w_out.wcs.lat != lat:
        return [f"output celestial axes ({w_out.wcs.lng}, {w_out.wcs.lat}) != source ({lon}, {lat})"]
    cos = np.einsum("ij,ij->j", unit_vectors(got[lon], got[lat]), unit_vectors(want[lon], want[lat]))
    sep = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    # arccos loses precision near 0: fall back to the chord length for small angles
    chord = np.linalg.norm(unit_vectors(got[lon], got[lat]) - unit_vectors(want[lon], want[lat]), axis=0)
    sep = np.where(sep < 1e-4, np.degrees(chord), sep)
    if not np.all(sep <= WCS_TOL_DEG):
        i = int(np.nanargmax(np.where(np.isnan(sep), np.inf, sep)))
        problems.append(f"WCS: cutout pixel ({xs[i]:.0f},{ys[i]:.0f}) is {sep[i]:.3g} deg from its source pixel")
    for ax in range(w_src.naxis):
        if ax not in (lon, lat) and not np.allclose(got[ax], want[ax], rtol=1e-12, atol=0):
            problems.append(f"WCS axis {ax + 1} differs")
    return problems


# --- positions -------------------------------------------------------------------------------

def pixel_positions(shape2d, rng, n_random: int, margin: float = 70.0):
    """0-based (x, y) pixel positions: random inside, near edges and corners, half off, fully off.

    Fractional parts avoid .0 and .5, where Cutout2D's rounding of an odd or even size
    flips, so that a few 1e-12 of float noise in the sky round trip cannot change the answer.
    """
    ny, nx = shape2d
    pts = [(x, y) for x, y in zip(rng.uniform(0, nx - 1, n_random), rng.uniform(0, ny - 1, n_random))]
    pts += [(-0.3, -0.2), (nx - 0.7, -0.4), (-0.35, ny - 0.8), (nx - 0.65, ny - 0.7),  # corners
            (-0.45, ny / 2 + 0.1), (nx - 0.6, ny / 2 + 0.3), (nx / 2 + 0.2, -0.4), (nx / 3 + 0.1, ny - 0.6),
            (-3.3, ny / 2 + 0.2), (nx + 2.2, ny / 3 + 0.3), (nx / 2 + 0.3, -4.2), (nx / 4 + 0.1, ny + 3.3),
            (-9.7, -8.8), (nx + 7.8, ny + 9.2),  # half off for big cutouts, off for small
            (-margin - 0.3, ny / 2 + 0.2), (nx / 2 + 0.1, ny + margin + 0.4)]  # fully off
    return pts


def sky_positions(src: Source, pixels):
    """ICRS (ra, dec) of each pixel; drops pixels with no sky position or whose sky position
    does not come back to the same pixel (outside a projection's domain)."""
    w = src.celestial
    xs = np.array([p[0] for p in pixels])
    ys = np.array([p[1] for p in pixels])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc = pixel_to_skycoord(xs, ys, w, origin=0, mode="all").icrs
        ra, dec = sc.ra.deg, sc.dec.deg
    keep = []
    for i, (r, d) in enumerate(zip(ra, dec)):
        if not (np.isfinite(r) and np.isfinite(d)):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                px, py = SkyCoord(r, d, unit="deg").to_pixel(w, origin=0, mode="all")
            except Exception:  # noqa: BLE001 - no convergence: not a usable test position
                continue
        if abs(px - xs[i]) < 1e-6 and abs(py - ys[i]) < 1e-6:
            keep.append((float(r), float(d), (float(xs[i]), float(ys[i]))))
    return keep
