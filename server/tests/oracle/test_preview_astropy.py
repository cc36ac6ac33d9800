"""`insitu preview` against astropy.visualization: every stretch × interval, RGB composites, JPEG.

The oracle is astropy's interval then stretch (`(stretch + interval)(data)`) on the same values
in float64, times 255, rounded, NaN as 0 (black), flipped so that north is up (the image's first
row is the last FITS row). insitu works in float32 (the precision of the GPU kernels that will
share its reference) and rounds halves away from zero where numpy rounds them to even, so a
pixel whose 255·y lies within float32 rounding of a half may land one level off: the tolerance
is one level, and such pixels must stay rare.

The limits insitu prints are checked too: min/max exactly, percentiles to float32 rounding,
zscale within 1e-4 of the interval's width (astropy fits its line by SVD in float64, insitu by
centred sums: the same line to ~1e-12, but a sample on the rejection threshold could flip).
"""

import re

import numpy as np
import pytest
from astropy.visualization import (AsinhStretch, AsymmetricPercentileInterval, LinearStretch,
                                   LogStretch, MinMaxInterval, PercentileInterval, SqrtStretch,
                                   ZScaleInterval)
from astropy.io import fits
from conftest import FITS_DIR, MALFORMED_DIR, command_line, error_line, load_source, run_insitu, run_ok
from PIL import Image

W, H = 157, 121  # odd and not square: a transposed or unflipped image cannot pass

STRETCHES = {
    "linear": LinearStretch(),
    "sqrt": SqrtStretch(),
    "log": LogStretch(),  # a = 1000
    "asinh": AsinhStretch(),  # a = 0.1
}

# name: (flags, astropy interval, tolerance on the limits relative to the interval's width)
INTERVALS = {
    "minmax": (["--interval", "minmax"], MinMaxInterval(), 0.0),
    "default-percentile": ([], PercentileInterval(99.5), 1e-6),
    "percentile-90": (["--percentile", "90"], PercentileInterval(90), 1e-6),
    "plow-phigh": (["--plow", "1", "--phigh", "99.9"], AsymmetricPercentileInterval(1, 99.9), 1e-6),
    "zscale": (["--interval", "zscale"], ZScaleInterval(), 1e-4),
}

# Pixels one level off: at most this fraction of the image.
MAX_OFF_BY_ONE = 0.002


def make_image(seed: int) -> np.ndarray:
    """A sloped, noisy sky with sources of many brightnesses, NaN holes and a NaN row, and one
    +inf and one -inf pixel, as float32."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    img = 100 + 0.05 * x - 0.03 * y + rng.normal(0, 2, (H, W))
    for _ in range(30):
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        sigma = rng.uniform(0.8, 4)
        flux = rng.lognormal(6, 1.5)
        img += flux / (2 * np.pi * sigma**2) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    img[rng.integers(0, H, 150), rng.integers(0, W, 150)] = np.nan
    img[17, :] = np.nan
    img[30, 40] = np.inf
    img[31, 41] = -np.inf
    return img.astype(np.float32)


def write_image(path, data) -> str:
    fits.PrimaryHDU(data).writeto(path)
    return str(path)


def expected_bytes(data, interval, stretch) -> np.ndarray:
    """astropy's 8-bit rendering, north up."""
    with np.errstate(invalid="ignore"):
        y = (stretch + interval)(np.asarray(data, dtype=np.float64))
    return np.flipud(np.where(np.isnan(y), 0, np.round(y * 255)))


def printed_limits(stderr: str):
    """[(lo, hi), ...] from the summary line 'wrote ... limits [lo, hi] [lo, hi] ...)'."""
    return [(float(a), float(b)) for a, b in re.findall(r"\[([^,\]]+), ([^\]]+)\]", stderr)]


def read_image(path) -> Image.Image:
    im = Image.open(path)
    im.load()
    return im


def compare(got: np.ndarray, want: np.ndarray, what: str):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != astropy {want.shape}"
    diff = np.abs(got.astype(int) - want.astype(int))
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff.max() <= 1, (f"{what}: {diff.max()} levels off at (row, col) {worst}: "
                             f"{got[worst]} vs astropy {want[worst]}")
    assert (diff > 0).mean() <= MAX_OFF_BY_ONE, f"{what}: {(diff > 0).sum()} pixels one level off"


def check_limits(stderr, data, interval, tol, what):
    got = printed_limits(stderr)
    assert len(got) == 1, f"{what}: limits not found in {stderr!r}"
    want = interval.get_limits(np.asarray(data, dtype=np.float64))
    width = float(want[1] - want[0])
    for g, w, name in zip(got[0], want, ("lower", "upper")):
        # float32 printing: the value astropy found, to float32 rounding at least
        allowed = max(tol * width, abs(float(w)) * 2**-23)
        assert abs(g - float(w)) <= allowed, f"{what}: {name} limit {g} != astropy {float(w)}"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    data = make_image(1)
    return write_image(tmp_path_factory.mktemp("preview") / "img.fits", data), data


@pytest.mark.parametrize("interval", list(INTERVALS))
@pytest.mark.parametrize("stretch", list(STRETCHES))
def test_grey_png_matches_astropy(tmp_path, insitu, image, stretch, interval):
    path, data = image
    flags, oracle_interval, tol = INTERVALS[interval]
    out = tmp_path / "p.png"
    args = ["preview", path, "--stretch", stretch, *flags, "-o", out]
    r = run_ok(*args)
    what = f"{stretch}/{interval} (repro: {command_line(args)})"
    im = read_image(out)
    assert (im.format, im.mode, im.size) == ("PNG", "L", (W, H)), what
    got = np.asarray(im)
    compare(got, expected_bytes(data, oracle_interval, STRETCHES[stretch]), what)
    assert np.all(got[np.flipud(np.isnan(data))] == 0), f"{what}: NaN pixels not black"
    check_limits(r.stderr, data, oracle_interval, tol, what)


def test_defaults_are_asinh_with_central_99_5_percent(tmp_path, insitu, image):
    path, data = image
    out = tmp_path / "p.png"
    r = run_ok("preview", path, "-o", out)
    compare(np.asarray(read_image(out)), expected_bytes(data, PercentileInterval(99.5), AsinhStretch()),
            "defaults")
    check_limits(r.stderr, data, PercentileInterval(99.5), 1e-6, "defaults")


def test_stretch_zscale_is_linear_between_zscale_limits(tmp_path, insitu, image):
    path, data = image
    out = tmp_path / "p.png"
    r = run_ok("preview", path, "--stretch", "zscale", "-o", out)
    compare(np.asarray(read_image(out)), expected_bytes(data, ZScaleInterval(), LinearStretch()),
            "stretch=zscale")
    check_limits(r.stderr, data, ZScaleInterval(), 1e-4, "stretch=zscale")


@pytest.mark.parametrize("n", [3, 4, 7, 50, 999, 1000, 2001, 123_457])
def test_zscale_limits_on_many_sizes(tmp_path, insitu, n):
    """zscale's sampling stride, rejection and its too-few-pixels fallback, on 1-row images."""
    rng = np.random.default_rng(n)
    data = (rng.normal(0, 1, n) + rng.standard_cauchy(n) * 0.1).astype(np.float32)[None, :]
    r = run_ok("preview", write_image(tmp_path / "z.fits", data), "--interval", "zscale", "-o", tmp_path / "z.png")
    check_limits(r.stderr, data, ZScaleInterval(), 1e-4, f"zscale of {n} values")


def test_rgb_composite_gives_each_band_its_own_limits(tmp_path, insitu):
    bands = [make_image(seed) * scale for seed, scale in ((2, 1.0), (3, 10.0), (4, 0.01))]
    paths = [write_image(tmp_path / f"{c}.fits", b) for c, b in zip("rgb", bands)]
    out = tmp_path / "rgb.png"
    r = run_ok("preview", *paths, "--stretch", "sqrt", "-o", out)
    im = read_image(out)
    assert (im.mode, im.size) == ("RGB", (W, H))
    got = np.asarray(im)
    for c, band in enumerate(bands):
        compare(got[..., c], expected_bytes(band, PercentileInterval(99.5), SqrtStretch()), f"channel {c}")
    limits = printed_limits(r.stderr)
    assert len(limits) == 3, r.stderr
    for (lo, hi), band in zip(limits, bands):
        want = PercentileInterval(99.5).get_limits(band.astype(np.float64))
        assert np.allclose((lo, hi), want, rtol=1e-6), f"{(lo, hi)} != astropy {want}"


@pytest.mark.parametrize("name,hdu,flags", [
    ("blank_int16.fits", 0, []),  # BLANK → NaN → black
    ("scaled_int16.fits", 0, []),  # BSCALE/BZERO
    ("cube.fits", 0, ["--plane", "3"]),
    ("mef.fits", 2, ["--hdu", "2"]),
])
def test_fixtures_physical_values(tmp_path, insitu, name, hdu, flags):
    src = load_source(FITS_DIR / name, hdu)
    phys = src.physical()
    plane = phys[3] if phys.ndim == 3 else phys
    out = tmp_path / "p.png"
    run_ok("preview", FITS_DIR / name, *flags, "--stretch", "log", "--interval", "minmax", "-o", out)
    compare(np.asarray(read_image(out)), expected_bytes(plane, MinMaxInterval(), LogStretch()), name)


@pytest.mark.parametrize("suffix,bands", [(".jpg", 1), (".jpeg", 3)])
def test_jpeg_decodes_to_the_right_size_and_brightness(tmp_path, insitu, suffix, bands):
    data = [make_image(seed) for seed in range(5, 5 + bands)]
    paths = [write_image(tmp_path / f"{i}.fits", d) for i, d in enumerate(data)]
    out = tmp_path / f"p{suffix}"
    run_ok("preview", *paths, "-o", out)
    im = read_image(out)
    assert (im.format, im.mode, im.size) == ("JPEG", "RGB" if bands == 3 else "L", (W, H))
    got = np.asarray(im).astype(float).reshape(H, W, bands)
    for c, d in enumerate(data):
        want = expected_bytes(d, PercentileInterval(99.5), AsinhStretch())
        assert abs(got[..., c].mean() - want.mean()) < 2, f"channel {c}: mean {got[..., c].mean()} vs {want.mean()}"
        # JPEG smooths the pixel noise (~0.96 for colour, ~0.99 for grey); a flipped or
        # transposed image correlates at ~0.2.
        assert np.corrcoef(got[..., c].ravel(), want.ravel())[0, 1] > 0.9, f"channel {c}"


def test_jpeg_quality_trades_size(tmp_path, insitu, image):
    path, _ = image
    sizes = {}
    for q in (30, 95):
        out = tmp_path / f"q{q}.jpg"
        run_ok("preview", path, "--quality", q, "-o", out)
        sizes[q] = out.stat().st_size
    assert sizes[30] < sizes[95], sizes


@pytest.mark.parametrize("flags,needle", [
    (["--stretch", "gamma"], "gamma"),
    (["--interval", "sigma"], "sigma"),
    (["--percentile", "0"], "percentile"),
    (["--percentile", "abc"], "abc"),
    (["--plow", "60", "--phigh", "40"], "plow"),
    (["--percentile", "99", "--plow", "1"], "percentile"),
    (["--interval", "minmax", "--percentile", "99"], "percentile"),
    (["--stretch", "zscale", "--interval", "minmax"], "zscale"),
    (["--quality", "80"], "quality"),  # PNG output
    (["--format", "gif"], "gif"),
    (["--plane", "1"], "plane"),
])
def test_bad_options_fail_with_one_line(tmp_path, insitu, image, flags, needle):
    path, _ = image
    out = tmp_path / "p.png"
    args = ["preview", path, *flags, "-o", out]
    msg = error_line(run_insitu(*args), args)
    assert needle in msg, f"{msg!r} does not mention {needle!r}"
    assert not out.exists()


def test_bad_inputs_fail_with_one_line(tmp_path, insitu, image):
    path, _ = image
    small = write_image(tmp_path / "small.fits", np.zeros((10, 12), np.float32))
    cases = [
        (["preview", path, "-o", tmp_path / "p.gif"], "p.gif"),  # no format from the name
        (["preview", path, path, "-o", tmp_path / "p.png"], "not 2"),
        (["preview", path, path, small, "-o", tmp_path / "p.png"], "small.fits"),
        (["preview", tmp_path / "nope.fits", "-o", tmp_path / "p.png"], "nope.fits"),
        (["preview", path, "-o", path], "refusing"),
    ]
    for args, needle in cases:
        msg = error_line(run_insitu(*args), args)
        assert needle in msg, f"{msg!r} does not mention {needle!r}\n  repro: {command_line(args)}"
    assert not (tmp_path / "p.png").exists()
    assert fits.getdata(path).shape == (H, W), "the input was overwritten"


@pytest.mark.parametrize("name", sorted(p.name for p in MALFORMED_DIR.iterdir()))
def test_malformed_fixture_fails_naming_it(tmp_path, insitu, name):
    args = ["preview", MALFORMED_DIR / name, "-o", tmp_path / "p.png"]
    msg = error_line(run_insitu(*args), args)
    assert name in msg, msg
    assert not (tmp_path / "p.png").exists()
