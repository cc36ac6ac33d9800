"""Failures of `insitu cutout`: non-zero exit, one line naming what is wrong, nothing written."""

import re
import shutil

import pytest
from conftest import (FITS_DIR, MALFORMED_DIR, command_line, error_line, load_source, run_insitu, run_ok,
                      sky_positions, write_catalog)

MALFORMED = sorted(p.name for p in MALFORMED_DIR.iterdir())


def test_every_malformed_fixture_is_listed():
    assert len(MALFORMED) >= 9, MALFORMED


@pytest.mark.parametrize("name", MALFORMED)
@pytest.mark.parametrize("how", ["pixel", "sky", "catalog"])
def test_malformed_file_fails_naming_it(tmp_path, insitu, name, how):
    path = MALFORMED_DIR / name
    where = {"pixel": ["--pixel", "10.2,10.3", "-o", tmp_path / "o.fits"],
             "sky": ["--ra", "85.8", "--dec", "-7.4", "-o", tmp_path / "o.fits"],
             "catalog": ["--catalog", write_catalog(tmp_path / "c.csv", [("a", 85.8, -7.4)]),
                         "--out-dir", tmp_path / "out"]}[how]
    args = ["cutout", path, *where, "--size", 5]
    msg = error_line(run_insitu(*args), args)
    assert name in msg, f"{msg!r} does not name {name}\n  repro: {command_line(args)}"
    assert not (tmp_path / "o.fits").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_file(tmp_path, insitu):
    args = ["cutout", tmp_path / "nope.fits", "--pixel", "1,1", "--size", 3, "-o", tmp_path / "o.fits"]
    msg = error_line(run_insitu(*args), args)
    assert "nope.fits" in msg
    assert not (tmp_path / "o.fits").exists()


@pytest.mark.parametrize("pixel", ["10;10", "a,b", "10", "1,2,3", "nan,1", ",", "1e999,2"])
def test_bad_pixel_syntax(tmp_path, insitu, pixel):
    args = ["cutout", FITS_DIR / "proj_tan.fits", "--pixel", pixel, "--size", 3, "-o", tmp_path / "o.fits"]
    error_line(run_insitu(*args), args)
    assert not (tmp_path / "o.fits").exists()


def good_rows():
    src = load_source(FITS_DIR / "proj_tan.fits", 0)
    pos = sky_positions(src, [(10.2, 10.3), (20.4, 30.1), (40.3, 12.2), (5.1, 40.2)])
    assert len(pos) == 4
    return [(ra, dec) for ra, dec, _ in pos]


def test_unparsable_row_fails_before_writing(tmp_path, insitu):
    (a, b, c, d) = good_rows()
    cat = tmp_path / "c.csv"
    cat.write_text("id,ra,dec\n"
                   f"a,{a[0]!r},{a[1]!r}\n"
                   f"b,{b[0]!r},{b[1]!r}\n"
                   f"c,abc,{c[1]!r}\n"
                   f"d,{d[0]!r},{d[1]!r}\n")
    for out in (["--out-dir", tmp_path / "out"], ["--npy", tmp_path / "o.npy"]):
        args = ["cutout", FITS_DIR / "proj_tan.fits", "--catalog", cat, "--size", 5, *out]
        msg = error_line(run_insitu(*args), args)
        assert re.search(r"\b(row|record|entry)\b\D{0,4}3\b", msg, re.I), \
            f"{msg!r} does not name data row 3\n  repro: {command_line(args)}"
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), \
            f"files written before failing: {sorted(p.name for p in (tmp_path / 'out').iterdir())}"
        assert not (tmp_path / "o.npy").exists()


def test_skip_bad_writes_the_good_rows(tmp_path, insitu):
    (a, b, c, d) = good_rows()
    cat = tmp_path / "c.csv"
    cat.write_text("id,ra,dec\n"
                   f"a,{a[0]!r},{a[1]!r}\n"
                   f"b,abc,{b[1]!r}\n"   # unparsable
                   f"c,{c[0]!r},\n"      # empty dec
                   f"d,{d[0]!r},{d[1]!r}\n"
                   f"e,{d[0]!r},95.0\n"  # |dec| > 90
                   f"f,{(a[0] + 180) % 360!r},{-a[1]!r}\n")  # the other side of the sky
    args = ["cutout", FITS_DIR / "proj_tan.fits", "--catalog", cat, "--size", 5, "--out-dir", tmp_path / "out",
            "--skip-bad"]
    r = run_insitu(*args)
    assert r.returncode == 0, f"{r.stderr}\n  repro: {command_line(args)}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.fits", "d.fits"], command_line(args)


def test_bad_hdu(tmp_path, insitu):
    for hdu in (7, 0):  # 7 does not exist; 0 is mef.fits's empty primary
        args = ["cutout", FITS_DIR / "mef.fits", "--pixel", "10.2,10.3", "--size", 5, "--hdu", hdu,
                "-o", tmp_path / "o.fits"]
        msg = error_line(run_insitu(*args), args)
        assert "mef.fits" in msg, msg
        assert not (tmp_path / "o.fits").exists()


def test_strict_partial_overlap_fails(tmp_path, insitu):
    args = ["cutout", FITS_DIR / "proj_tan.fits", "--pixel", "1.2,20.3", "--size", 9, "--mode", "strict",
            "-o", tmp_path / "o.fits"]
    error_line(run_insitu(*args), args)
    assert not (tmp_path / "o.fits").exists()
    # the same with --mode partial works
    run_ok("cutout", FITS_DIR / "proj_tan.fits", "--pixel", "1.2,20.3", "--size", 9, "-o", tmp_path / "o.fits")


def test_strict_partial_row_in_catalog_fails_without_skip_bad(tmp_path, insitu):
    src = load_source(FITS_DIR / "proj_tan.fits", 0)
    pos = sky_positions(src, [(20.2, 20.3), (1.2, 20.3)])
    cat = write_catalog(tmp_path / "c.csv", [("in", *pos[0][:2]), ("edge", *pos[1][:2])])
    args = ["cutout", FITS_DIR / "proj_tan.fits", "--catalog", cat, "--size", 9, "--mode", "strict",
            "--out-dir", tmp_path / "out"]
    error_line(run_insitu(*args), args)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_mode_and_size(tmp_path, insitu):
    for extra in (["--mode", "sideways", "--size", 5], ["--size", 0], ["--size", -3]):
        args = ["cutout", FITS_DIR / "proj_tan.fits", "--pixel", "10.2,10.3", *extra, "-o", tmp_path / "o.fits"]
        r = run_insitu(*args)
        assert r.returncode != 0, command_line(args)
        assert not (tmp_path / "o.fits").exists()


def test_output_over_the_input_is_refused(tmp_path, insitu):
    image = tmp_path / "image.fits"
    shutil.copy(FITS_DIR / "proj_tan.fits", image)
    before = image.read_bytes()
    args = ("cutout", image, "--pixel=3,3", "--size", 5, "-o", image)
    line = error_line(run_insitu(*args), args)
    assert "input" in line
    assert image.read_bytes() == before, "the source image must be untouched"


def test_huge_cutout_is_refused(tmp_path, insitu):
    out = tmp_path / "huge.fits"
    args = ("cutout", FITS_DIR / "cube.fits", "--pixel=3,3", "--size", 32768, "-o", out)
    line = error_line(run_insitu(*args), args)
    assert "limit" in line and not out.exists()
