"""insitu cutouts against astropy's Cutout2D: values, cards and WCS, through every CLI path.

Most positions go through the bulk path (one `--catalog` call per fixture, size and mode,
then every file compared); a few go through single `--ra/--dec` and `--pixel` calls.
"""

import zlib

import numpy as np
import pytest
from conftest import (FITS_DIR, REAL_DIR, command_line, compare_output, error_line, expected_cutout,
                      load_source, pixel_positions, run_insitu, run_ok, sky_positions, write_catalog)

# (fixture id, path, HDU astropy reads, --hdu to pass or None for insitu's default)
FIXTURES = [
    ("bitpix8", FITS_DIR / "bitpix8.fits", 0, None),
    ("bitpix16", FITS_DIR / "bitpix16.fits", 0, None),
    ("bitpix32", FITS_DIR / "bitpix32.fits", 0, None),
    ("bitpix64", FITS_DIR / "bitpix64.fits", 0, None),
    ("bitpix-32", FITS_DIR / "bitpix-32.fits", 0, None),
    ("bitpix-64", FITS_DIR / "bitpix-64.fits", 0, None),
    ("scaled_int16", FITS_DIR / "scaled_int16.fits", 0, None),
    ("uint16", FITS_DIR / "uint16.fits", 0, None),
    ("uint32", FITS_DIR / "uint32.fits", 0, None),
    ("blank_int16", FITS_DIR / "blank_int16.fits", 0, None),
    ("blank_int32", FITS_DIR / "blank_int32.fits", 0, None),
    ("nan_float32", FITS_DIR / "nan_float32.fits", 0, None),
    ("tan", FITS_DIR / "proj_tan.fits", 0, None),
    ("sin", FITS_DIR / "proj_sin.fits", 0, None),
    ("zea", FITS_DIR / "proj_zea.fits", 0, None),
    ("arc", FITS_DIR / "proj_arc.fits", 0, None),
    ("stg", FITS_DIR / "proj_stg.fits", 0, None),
    ("ait", FITS_DIR / "proj_ait.fits", 0, None),
    ("car", FITS_DIR / "proj_car.fits", 0, None),
    ("sip", FITS_DIR / "sip.fits", 0, None),
    ("tpv", FITS_DIR / "tpv.fits", 0, None),
    ("fk5", FITS_DIR / "fk5.fits", 0, None),
    ("galactic", FITS_DIR / "galactic.fits", 0, None),
    ("pole", FITS_DIR / "pole.fits", 0, None),
    ("ra0", FITS_DIR / "ra0.fits", 0, None),
    ("cube", FITS_DIR / "cube.fits", 0, None),
    ("mef_default", FITS_DIR / "mef.fits", 1, None),
    ("mef_hdu2", FITS_DIR / "mef.fits", 2, 2),
    ("header_conventions", FITS_DIR / "header_conventions.fits", 0, None),
    ("real_sip_wcs", REAL_DIR / "sip-wcs.fits", 0, None),
    ("real_scale", REAL_DIR / "scale.fits", 0, None),
    ("real_test0_hdu2", REAL_DIR / "test0.fits", 2, 2),
]

SIZES = [1, 2, 7, 8, 25, 64]
# partial with every size; trim and strict with an odd and an even one
PLAN = [("partial", s) for s in SIZES] + [("trim", 7), ("trim", 64), ("strict", 8), ("strict", 25)]
# the pixel-by-pixel WCS check costs astropy ~20 ms per file: run it on these only, which
# between them hold every position, odd and even sizes, filled and trimmed edges
WCS_CHECKED = {("partial", 8), ("partial", 25), ("trim", 7)}
N_RANDOM = 10


def hdu_args(hdu):
    return [] if hdu is None else ["--hdu", hdu]


_POSITIONS = {}


def positions_for(fid, src):
    """(ra, dec, (x, y)) test positions of one fixture, the same for every size and mode."""
    if fid not in _POSITIONS:
        _POSITIONS[fid] = _positions(fid, src)
    return _POSITIONS[fid]


def _positions(fid, src):
    rng = np.random.default_rng(zlib.crc32(fid.encode()))
    return sky_positions(src, pixel_positions(src.shape2d, rng, N_RANDOM))


def check_bulk(tmp_path, fid, path, hdu, hdu_arg, mode, size, check_wcs=True):
    src = load_source(path, hdu)
    pos = positions_for(fid, src)
    rows = [(f"r{i:03d}", ra, dec) for i, (ra, dec, _) in enumerate(pos)]
    cat = write_catalog(tmp_path / f"{fid}.csv", rows)
    out = tmp_path / f"{mode}_{size}"
    args = ["cutout", path, "--catalog", cat, "--size", size, "--mode", mode, "--out-dir", out,
            "--skip-bad", "--quiet", *hdu_args(hdu_arg)]
    run_ok(*args)
    problems = []
    for (rid, ra, dec), (_, _, pix) in zip(rows, pos):
        exp = expected_cutout(src, ("sky", ra, dec), size, mode)
        f = out / f"{rid}.fits"
        if exp is None:
            if f.exists():
                problems.append(f"{rid} (pixel {pix}): astropy refuses ({mode}) but {f.name} was written")
            continue
        if not f.exists():
            problems.append(f"{rid} (pixel {pix}): no {f.name} written")
            continue
        problems += [f"{rid} (pixel {pix}, ra={ra!r}, dec={dec!r}): {p}" for p in compare_output(f, src, exp, check_wcs)]
    return problems, args, len(rows)


@pytest.mark.parametrize("fid,path,hdu,hdu_arg", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_bulk_matches_cutout2d(tmp_path, insitu, fid, path, hdu, hdu_arg):
    failures = []
    for mode, size in PLAN:
        problems, args, _ = check_bulk(tmp_path, fid, path, hdu, hdu_arg, mode, size,
                                       (mode, size) in WCS_CHECKED)
        if problems:
            failures.append(f"--mode {mode} --size {size}: {len(problems)} problem(s), e.g.\n    "
                            + "\n    ".join(problems[:4]) + f"\n  repro: {command_line(args)}")
    assert not failures, "\n".join(failures)


def test_enough_positions():
    """The brief asks for at least 500 distinct positions across the fixtures."""
    total = sum(len(positions_for(fid, load_source(path, hdu))) for fid, path, hdu, _ in FIXTURES)
    assert total >= 500, total


@pytest.mark.parametrize("fid,path,hdu,hdu_arg", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_npy_stack_matches_physical_cutout2d(tmp_path, insitu, fid, path, hdu, hdu_arg):
    src = load_source(path, hdu)
    pos = positions_for(fid, src)
    rows = [(f"r{i:03d}", ra, dec) for i, (ra, dec, _) in enumerate(pos)]
    cat = write_catalog(tmp_path / "cat.csv", rows)
    phys = src.physical()
    for size in (7, 8):
        npy = tmp_path / f"s{size}.npy"
        args = ["cutout", path, "--catalog", cat, "--size", size, "--npy", npy, "--skip-bad", "--quiet",
                *hdu_args(hdu_arg)]
        run_ok(*args)
        got = np.load(npy)
        expected = []
        for _, ra, dec in rows:
            exp = expected_cutout_physical(src, phys, ra, dec, size)
            if exp is not None:
                expected.append(exp)
        want = np.stack(expected).astype(np.float32)
        assert got.dtype == np.float32, f"{got.dtype}\n  repro: {command_line(args)}"
        assert got.shape == want.shape, f"{got.shape} != {want.shape}\n  repro: {command_line(args)}"
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN mask; repro: {command_line(args)}")
        # float32 data is copied exactly; scaled or wide integers may round once differently
        rtol = 0 if src.raw.dtype == np.float32 and src.bscale == 1 and src.bzero == 0 else 1e-6
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True,
                                   err_msg=f"repro: {command_line(args)}")


def expected_cutout_physical(src, phys, ra, dec, size):
    from astropy.coordinates import SkyCoord
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError
    def cut(plane):
        return Cutout2D(plane, SkyCoord(ra, dec, unit="deg"), (size, size), wcs=src.celestial,
                        mode="partial", fill_value=np.nan, copy=True).data
    try:
        # A cube's stack is [N, planes, H, W]: Cutout2D plane by plane.
        return cut(phys) if phys.ndim == 2 else np.stack([cut(p) for p in phys])
    except NoOverlapError:
        return None


SINGLE = ["bitpix-32", "blank_int16", "scaled_int16", "uint16", "sip", "tpv", "pole", "ra0", "cube",
          "mef_hdu2", "galactic", "real_sip_wcs"]


@pytest.mark.parametrize("fid", SINGLE)
def test_single_sky_and_pixel_cutouts(tmp_path, insitu, fid):
    _, path, hdu, hdu_arg = next(f for f in FIXTURES if f[0] == fid)
    src = load_source(path, hdu)
    ny, nx = src.shape2d
    rng = np.random.default_rng(zlib.crc32(fid.encode()) + 1)
    sky = sky_positions(src, [(rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)), (-1.3, 2.2), (nx - 0.8, ny + 0.7)])
    cases = [(("sky", ra, dec), [f"--ra={ra!r}", f"--dec={dec!r}"]) for ra, dec, _ in sky]
    # exact half-integers and integers: astropy's rounding rule for odd and even sizes
    for x, y in [(10.5, 7.0), (nx / 2, ny / 2), (0.0, 0.5), (nx - 1.5, ny - 1.0), (-2.5, 3.0)]:
        cases.append((("pixel", x, y), [f"--pixel={x!r},{y!r}"]))
    failures = []
    for i, (position, where) in enumerate(cases):
        for size, mode in [(7, "partial"), (8, "partial"), (6, "trim"), (5, "strict")]:
            out = tmp_path / f"{i}_{size}_{mode}.fits"
            args = ["cutout", path, *where, "--size", size, "--mode", mode, "-o", out, "--quiet", *hdu_args(hdu_arg)]
            r = run_insitu(*args)
            exp = expected_cutout(src, position, size, mode)
            if exp is None:
                if r.returncode == 0:
                    failures.append(f"astropy refuses but insitu exit 0\n  repro: {command_line(args)}")
                continue
            if r.returncode != 0:
                failures.append(f"exit {r.returncode}: {r.stderr.strip()}\n  repro: {command_line(args)}")
                continue
            for p in compare_output(out, src, exp):
                failures.append(f"{p}\n  repro: {command_line(args)}")
    assert not failures, "\n".join(failures[:10])


def test_single_cutout_same_bytes_as_bulk(tmp_path, insitu):
    """One cutout, however asked for, gives the same file (ripgrep-style one harness, many paths)."""
    path = FITS_DIR / "blank_int16.fits"
    src = load_source(path, 0)
    (ra, dec, (x, y)), = sky_positions(src, [(20.3, 30.2)])
    cat = write_catalog(tmp_path / "c.csv", [("one", ra, dec)])
    run_ok("cutout", path, "--catalog", cat, "--size", 9, "--out-dir", tmp_path / "bulk", "--quiet")
    run_ok("cutout", path, f"--ra={ra!r}", f"--dec={dec!r}", "--size", 9, "-o", tmp_path / "sky.fits", "--quiet")
    run_ok("cutout", path, f"--pixel={x!r},{y!r}", "--size", 9, "-o", tmp_path / "pix.fits", "--quiet")
    bulk = (tmp_path / "bulk" / "one.fits").read_bytes()
    assert (tmp_path / "sky.fits").read_bytes() == bulk
    assert (tmp_path / "pix.fits").read_bytes() == bulk


def test_negative_ra_is_wrapped(tmp_path, insitu):
    path = FITS_DIR / "ra0.fits"
    src = load_source(path, 0)
    (ra, dec, _), = sky_positions(src, [(35.2, 20.3)])  # east of RA=0: ra close to 360
    assert ra > 300
    args = ["cutout", path, f"--ra={ra - 360.0!r}", f"--dec={dec!r}", "--size", 8, "-o", tmp_path / "o.fits"]
    run_ok(*args)
    exp = expected_cutout(src, ("sky", ra, dec), 8, "partial")
    assert compare_output(tmp_path / "o.fits", src, exp) == [], command_line(args)


def test_fully_off_single_fails_with_no_overlap(tmp_path, insitu):
    path = FITS_DIR / "proj_tan.fits"
    args = ["cutout", path, "--pixel=-100.3,20.2", "--size", 10, "-o", tmp_path / "o.fits"]
    msg = error_line(run_insitu(*args), args)
    assert "no overlap" in msg.lower() or "does not overlap" in msg.lower(), msg
    assert not (tmp_path / "o.fits").exists()


def test_catalog_without_id_names_files_by_row(tmp_path, insitu):
    path = FITS_DIR / "proj_tan.fits"
    src = load_source(path, 0)
    pos = sky_positions(src, [(10.2, 10.3), (-500.3, 10.2), (30.1, 20.4)])
    assert len(pos) == 3
    cat = write_catalog(tmp_path / "c.csv", [(ra, dec) for ra, dec, _ in pos], columns=("ra", "dec"))
    run_ok("cutout", path, "--catalog", cat, "--size", 5, "--out-dir", tmp_path / "o", "--skip-bad", "--quiet")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["1.fits", "3.fits"]
    for name, (ra, dec, _) in [("1.fits", pos[0]), ("3.fits", pos[2])]:
        assert compare_output(tmp_path / "o" / name, src, expected_cutout(src, ("sky", ra, dec), 5, "partial")) == []


def test_catalog_size_column_overrides_size(tmp_path, insitu):
    path = FITS_DIR / "bitpix16.fits"
    src = load_source(path, 0)
    pos = sky_positions(src, [(10.2, 10.3), (30.1, 20.4), (1.3, 40.1)])
    rows = [(f"s{i}", ra, dec, size) for i, ((ra, dec, _), size) in enumerate(zip(pos, (3, 12, 31)))]
    cat = write_catalog(tmp_path / "c.csv", rows, columns=("id", "ra", "dec", "size"))
    args = ["cutout", path, "--catalog", cat, "--size", 5, "--out-dir", tmp_path / "o", "--quiet"]
    run_ok(*args)
    for rid, ra, dec, size in rows:
        problems = compare_output(tmp_path / "o" / f"{rid}.fits", src, expected_cutout(src, ("sky", ra, dec), size, "partial"))
        assert problems == [], f"{rid}: {problems}\n  repro: {command_line(args)}"
