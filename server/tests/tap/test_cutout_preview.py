"""`GET /cutout?format=png|jpeg` on the demo volume: the preview of a stitched cutout equals
astropy's interval + stretch of the FITS cutout the same request returns with format=fits
(×255, rounded, north up), within one 8-bit level (our limits and stretch run in float32).
"""

import io

import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.visualization import (AsinhStretch, LinearStretch, LogStretch, MinMaxInterval,
                                   PercentileInterval, SqrtStretch, ZScaleInterval)
from PIL import Image

from conftest import Server

CORNER = (267.38, 65.5)  # where the demo's four tiles meet: the cutout is stitched


@pytest.fixture(scope="module")
def demo(tmp_path_factory, insitu):
    s = Server(tmp_path_factory.mktemp("preview")).start()
    yield s
    s.stop()


def fetch(demo, **params):
    params = {"ra": CORNER[0], "dec": CORNER[1], "size": "6", "band": "VIS", **params}
    return requests.get(demo.base + "/cutout", params=params, timeout=60)


CASES = [
    ({}, PercentileInterval(99.5), AsinhStretch()),  # the defaults
    ({"stretch": "linear", "interval": "minmax"}, MinMaxInterval(), LinearStretch()),
    ({"stretch": "sqrt", "percentile": "98"}, PercentileInterval(98), SqrtStretch()),
    ({"stretch": "log", "plow": "1", "phigh": "99.9"}, None, LogStretch()),
    ({"stretch": "zscale"}, ZScaleInterval(), LinearStretch()),
]


@pytest.mark.parametrize("params,interval,stretch", CASES, ids=[str(c[0]) for c in CASES])
def test_png_equals_astropy_on_the_fits_cutout(demo, params, interval, stretch):
    data = fits.getdata(io.BytesIO(fetch(demo).content), ext=1).astype(np.float64)
    r = fetch(demo, format="png", **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    if interval is None:
        from astropy.visualization import AsymmetricPercentileInterval
        interval = AsymmetricPercentileInterval(1, 99.9)
    want = np.rint(255 * stretch(interval(data), clip=True))[::-1]
    assert got.shape == data.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_rgb_composite_stretches_each_band_on_its_own(demo):
    """band=R,G,B: each channel is that band's own interval and stretch, as astropy's
    make_rgb would with per-band limits."""
    bands = ("NIR_H", "NIR_Y", "VIS")
    cube = fits.open(io.BytesIO(fetch(demo, band=",".join(bands)).content))
    assert [h.name for h in cube[1:]] == list(bands)
    r = fetch(demo, band=",".join(bands), format="png", stretch="sqrt", percentile="99")
    assert r.status_code == 200, r.text
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    assert got.shape == (60, 60, 3)
    for c, hdu in enumerate(cube[1:]):
        data = hdu.data.astype(np.float64)
        want = np.rint(255 * SqrtStretch()(PercentileInterval(99)(data), clip=True))[::-1]
        assert np.abs(got[..., c].astype(int) - want.astype(int)).max() <= 1, bands[c]


def test_jpeg_and_errors(demo):
    r = fetch(demo, format="jpeg", quality="80")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (60, 60)
    # two bands make neither a grey image nor an RGB one; preview options need a preview format
    for params, says in (({"format": "png", "band": "VIS,NIR_H"}, "1 band"),
                         ({"stretch": "log"}, "previews only"),
                         ({"format": "png", "stretch": "cubic"}, "stretch")):
        r = fetch(demo, **params)
        assert r.status_code == 400 and says in r.json()["error"], (params, r.text)
