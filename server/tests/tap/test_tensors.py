"""`/tensors` against astropy and Pillow, on the demo volume `euclid_demo` that `insitu serve`
writes into its cache dir (2×2 tiles of 512² in VIS, NIR_Y and NIR_H).

Oracle, per row and band: astropy `Cutout2D` of the tile holding the position (positions well
inside one tile, so no stitching), Pillow's `Image.resize` of the float cutout (the resampling
insitu follows), astropy's `PercentileInterval` and `AsinhStretch`. The same request to a
server forced onto the GPU path (`INSITU_TENSOR_DEVICE=gpu`: Mesa's lavapipe in CI) gives the
same tensor as the CPU path.
"""

import io

import astropy.units as u
import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.visualization import AsinhStretch, PercentileInterval
from astropy.wcs import WCS
from PIL import Image

from conftest import Server

DEMO_FOLDER = "demo-volume-v2"
BANDS = ["VIS", "NIR_H"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, insitu):
    s = Server(tmp_path_factory.mktemp("tensors"), env={"INSITU_TENSOR_DEVICE": "cpu"})
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tiles(demo):
    """{band: [(WCS, data)]} of the demo tiles, read from the server's cache dir."""
    requests.get(demo.base + "/volumes", timeout=30).raise_for_status()
    root = demo.cache_dir / DEMO_FOLDER
    out = {}
    for band in BANDS:
        out[band] = []
        for path in sorted(root.glob(f"MER/*/EUC_MER_BGSUB-MOSAIC-{band}_TILE*.fits")):
            with fits.open(path) as hdul:
                out[band].append((WCS(hdul[0].header), hdul[0].data.astype(np.float32)))
        assert len(out[band]) == 4
    return out


def positions(tiles):
    """(ra, dec) well inside each VIS tile, off pixel centres."""
    spots = [(130.3, 300.7), (400.2, 90.9), (256.5, 256.5), (90.8, 420.1)]
    return [tuple(float(v) for v in wcs.pixel_to_world_values(x, y))
            for (wcs, _), (x, y) in zip(tiles["VIS"], spots)]


def holding(tiles, band, ra, dec):
    for wcs, data in tiles[band]:
        x, y = wcs.world_to_pixel_values(ra, dec)
        if 40 <= x < data.shape[1] - 40 and 40 <= y < data.shape[0] - 40:
            return wcs, data
    raise AssertionError(f"no {band} tile holds ({ra}, {dec}) well inside")


def expected(tiles, band, ra, dec, fov_arcsec, out, resample, stretch=True):
    wcs, data = holding(tiles, band, ra, dec)
    cut = Cutout2D(data, SkyCoord(ra, dec, unit="deg"), fov_arcsec * u.arcsec, wcs=wcs,
                   mode="partial", fill_value=np.nan, copy=True).data.astype(np.float32)
    img = np.asarray(Image.fromarray(cut, mode="F").resize((out, out), resample), dtype=np.float32)
    if not stretch:
        return img, cut.shape
    lo, hi = PercentileInterval(99.5).get_limits(img)
    return AsinhStretch(0.1)(np.clip((img - lo) / (hi - lo), 0, 1)), cut.shape


def catalogue(rows, fov=None):
    lines = ["id,ra,dec" + (",fov" if fov else "")]
    for k, (ra, dec) in enumerate(rows):
        extra = f",{fov[k]}" if fov else ""
        lines.append(f"g{k},{ra!r},{dec!r}{extra}")
    return "\n".join(lines) + "\n"


def post_tensors(server, cat, **params):
    r = requests.post(server.base + "/tensors", data=params,
                      files={"catalog": ("cat.csv", cat, "text/csv")}, timeout=120)
    return r


def read_npy(r):
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(r.content))


def test_asinh_tensor_equals_cutout2d_pillow_and_astropy(demo, tiles):
    rows = positions(tiles) + [(10.0, -40.0)]  # the last one is off every tile
    cat = catalogue(rows) + "g9,,\n"  # and a row without a position
    t = read_npy(post_tensors(demo, cat, BAND=",".join(BANDS), SIZE="32", FOV="8arcsec"))
    assert t.shape == (len(rows) + 1, len(BANDS), 32, 32) and t.dtype == np.float32
    for i, (ra, dec) in enumerate(rows[:-1]):
        for b, band in enumerate(BANDS):
            want, cut_shape = expected(tiles, band, ra, dec, 8, 32, Image.LANCZOS)
            assert cut_shape == (80, 80)
            np.testing.assert_allclose(t[i, b], want, rtol=0, atol=1e-4, err_msg=f"row {i} {band}")
            assert 0 <= t[i, b].min() and t[i, b].max() <= 1 and t[i, b].std() > 0.05
    # Rows with nothing to cut are planes of FILL (0).
    assert np.all(t[-2:] == 0)


def test_physical_values_bilinear_flux_conserving_and_per_row_fov(demo, tiles):
    rows = positions(tiles)
    # The last two: a field of view wider than MAX_CUT_SIDE (2048) pixels, and a negative one.
    fov = [6, 9.3, 4, 12, 1000, -3]
    r = post_tensors(demo, catalogue(rows + rows[:2], fov), BAND="NIR_H", SIZE="24",
                     STRETCH="none", FILTER="bilinear", FLUX="true", FILL="nan")
    t = read_npy(r)
    assert t.shape == (6, 1, 24, 24)
    assert np.isnan(t[4:]).all()
    for i, (ra, dec) in enumerate(rows):
        want, (h, w) = expected(tiles, "NIR_H", ra, dec, fov[i], 24, Image.BILINEAR, stretch=False)
        want = want * (w / 24) * (h / 24)
        scale = np.abs(want).max()
        np.testing.assert_allclose(t[i, 0], want, rtol=0, atol=2e-6 * scale, err_msg=f"row {i}")


def test_gpu_path_gives_the_cpu_tensor(demo, tiles, tmp_path_factory, insitu):
    gpu = Server(tmp_path_factory.mktemp("tensors-gpu"), env={"INSITU_TENSOR_DEVICE": "gpu"})
    gpu.start()
    try:
        cat = catalogue(positions(tiles) * 3)
        params = dict(BAND="VIS,NIR_H", SIZE="48x40", FOV="6arcsec", PLOW="1", PHIGH="99.9")
        on_cpu = read_npy(post_tensors(demo, cat, **params))
        on_gpu = read_npy(post_tensors(gpu, cat, **params))
        assert on_gpu.shape == on_cpu.shape == (12, 2, 40, 48)
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=1e-5)
        log = "\n".join(gpu.lines)
        assert "tensors on the GPU" in log, log[-2000:]
        print("\n" + next(line for line in gpu.lines if "tensors on the" in line))
    finally:
        gpu.stop()


@pytest.mark.parametrize("params,cat,why", [
    (dict(SIZE="32", FOV="8"), "ra,dec\n1,2\n", "BAND is missing"),
    (dict(BAND="NOPE", SIZE="32", FOV="8"), "ra,dec\n1,2\n", "not in the volumes"),
    (dict(BAND="VIS", SIZE="0", FOV="8"), "ra,dec\n1,2\n", "empty"),
    (dict(BAND="VIS", SIZE="32", FOV="8", STRETCH="gamma"), "ra,dec\n1,2\n", "STRETCH"),
    (dict(BAND="VIS", SIZE="32"), "ra,dec\n1,2\n", "FOV is missing"),
    (dict(BAND="VIS", SIZE="32", FOV="8", FORMAT="png"), "ra,dec\n1,2\n", "FORMAT \"png\" is not npy, safetensors or arrow"),
    (dict(BAND="VIS", SIZE="32", FOV="8"), "ra,dec\n", "no rows"),
    (dict(BAND="VIS", SIZE="32", FOV="8"), "x,y\n1,2\n", "no ra column"),
    (dict(BAND="VIS", SIZE="32", FOV="8"), "\x00\x01 not a table", "catalog"),
])
def test_bad_requests_are_json_400s(demo, params, cat, why):
    r = post_tensors(demo, cat, **params)
    assert r.status_code == 400, r.text[:300]
    assert r.headers["content-type"] == "application/json"
    message = r.json()["error"]
    assert why in message, message
    assert str(demo.cache_dir) not in message


def test_safetensors_and_arrow_hold_the_npy_tensor(demo, tiles):
    import json

    import pyarrow as pa

    cat = catalogue(positions(tiles) * 20)  # 80 rows: several batches
    params = dict(BAND="VIS,NIR_H", SIZE="16", FOV="5arcsec")
    want = read_npy(post_tensors(demo, cat, **params))
    r = post_tensors(demo, cat, FORMAT="safetensors", **params)
    assert r.status_code == 200, r.text[:300]
    n = int.from_bytes(r.content[:8], "little")
    head = json.loads(r.content[8:8 + n])
    assert head["images"]["dtype"] == "F32" and head["images"]["shape"] == list(want.shape)
    assert head["__metadata__"]["bands"] == "VIS,NIR_H"
    start, end = head["images"]["data_offsets"]
    got = np.frombuffer(r.content[8 + n + start:8 + n + end], "<f4").reshape(want.shape)
    np.testing.assert_array_equal(got, want)
    r = post_tensors(demo, cat, FORMAT="arrow", **params)
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.schema.metadata[b"bands"] == b"VIS,NIR_H"
    assert table.column("row").to_pylist() == list(range(len(want)))
    tensor = table.column("tensor").combine_chunks()
    assert isinstance(tensor.type, pa.FixedShapeTensorType) and tensor.type.shape == [2, 16, 16]
    np.testing.assert_array_equal(tensor.to_numpy_ndarray(), want)
