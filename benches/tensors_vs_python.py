#!/usr/bin/env python3
"""Tensors per second for a galaxy catalogue: `POST /tensors` against `insitu serve` versus the
same recipe in Python (astropy `Cutout2D`, scikit-image `resize`, astropy's
`PercentileInterval(99.5)` and `AsinhStretch(0.1)`), in one run, on one generated volume.

The volume: 4 bands (VIS, NIR_Y, NIR_J, NIR_H) × 2×2 adjacent 2048² float32 TAN tiles at
0.1″/pixel (256 MiB, read once before both runs so both start from a warm page cache). The
catalogue: --rows positions of the volume's galaxies (never across a tile edge, since the Python
recipe does not stitch), each with a field of view following the galaxy's size, 10–30″
(100–300 pixels), as the `fov` column. Each galaxy becomes a [4, 224, 224] float32 tensor: cut, resampled (insitu:
Lanczos-3, antialiased; scikit-image: bicubic with its Gaussian antialiasing), stretched.
insitu's figure is the whole request (catalogue parsing, cutting, kernels, streaming the
.npy to curl, which discards it); Python's is its loop over --python-rows galaxies (the
same first rows), which is then compared per galaxy with insitu's tensor (correlation > 0.99:
the two compute the same images, up to the resampling kernels).

When the `insitu` Python package is installed (a release wheel:
`.venv/bin/maturin build --release -m python/Cargo.toml -o dist --auditwheel skip` and
`.venv/bin/pip install dist/insitu-*.whl`), the same catalogue is also made in process by
`insitu.Volume(volume).tensors(...)`, 1,000 rows a call into one reused array (`out=`) as a
data loader would ask (the engine's tensor path without HTTP), and checked equal to the
server's tensor.

Usage: tensors_vs_python.py [--insitu-bin PATH] [--rows 10000] [--python-rows 300]
                            [--size 224] [--device cpu|gpu|auto]
(default binary target/release/insitu: `cargo build --release -p insitu-server`; needs
`.venv/bin/pip install scikit-image`)
"""

import argparse
import io
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.visualization import AsinhStretch, PercentileInterval
from astropy.wcs import WCS
from skimage.transform import resize

from bench_server import Server

REPO = Path(__file__).resolve().parent.parent
BANDS = ["VIS", "NIR_Y", "NIR_J", "NIR_H"]
NPIX = 2048
SCALE = 0.1 / 3600.0
CENTRE = (150.0, 2.0)


def tile_header(ra, dec, band, tile_id):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = ra, dec
    h["CRPIX1"] = h["CRPIX2"] = (NPIX + 1) / 2
    h["CD1_1"], h["CD2_2"] = -SCALE, SCALE
    h["CD1_2"] = h["CD2_1"] = 0.0
    h["FILTER"], h["TILEID"] = band, tile_id
    return h


def make_volume(root: Path, rng):
    """{band: [(path, WCS)]} of 2×2 tiles per band, noise plus 60 exponential galaxies a tile,
    and the galaxies: (tile, x, y, scale length in pixels)."""
    tiles = {b: [] for b in BANDS}
    galaxies = []
    yy, xx = np.mgrid[0:NPIX, 0:NPIX]
    for j in range(2):
        for i in range(2):
            tile_id = 1 + 2 * j + i
            dec = CENTRE[1] + (j - 0.5) * NPIX * SCALE
            ra = CENTRE[0] - (i - 0.5) * NPIX * SCALE / np.cos(np.radians(dec))
            sky = np.zeros((NPIX, NPIX), np.float32)
            for _ in range(60):  # a few bright extended sources per tile
                cx, cy, r = rng.uniform(0, NPIX), rng.uniform(0, NPIX), rng.uniform(5, 40)
                x0, x1 = int(max(cx - 6 * r, 0)), int(min(cx + 6 * r, NPIX))
                y0, y1 = int(max(cy - 6 * r, 0)), int(min(cy + 6 * r, NPIX))
                d = np.hypot(xx[y0:y1, x0:x1] - cx, yy[y0:y1, x0:x1] - cy)
                sky[y0:y1, x0:x1] += np.exp(-d / r).astype(np.float32)
                galaxies.append((tile_id - 1, cx, cy, r))
            for b, band in enumerate(BANDS):
                data = sky * (1 + 0.2 * b) + rng.normal(0, 0.01, sky.shape).astype(np.float32)
                folder = root / "MER" / str(tile_id)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"EUC_MER_BGSUB-MOSAIC-{band}_TILE{tile_id}.fits"
                header = tile_header(ra, dec, band, tile_id)
                fits.PrimaryHDU(data.astype(">f4"), header).writeto(path, overwrite=True)
                tiles[band].append((path, WCS(header)))
    return tiles, galaxies


def make_catalogue(tiles, galaxies, rows, rng):
    """(ra, dec, fov_arcsec, tile index) per row: a galaxy (a few pixels off its centre) with a
    field of view following its size (10–30″), whole inside its tile."""
    out = []
    while len(out) < rows:
        t, cx, cy, r = galaxies[int(rng.integers(0, len(galaxies)))]
        fov = float(np.clip(r * 0.1 * 6, 10, 30))
        x, y = cx + rng.uniform(-3, 3), cy + rng.uniform(-3, 3)
        margin = fov / 0.1 / 2 + 4
        if not (margin <= x <= NPIX - 1 - margin and margin <= y <= NPIX - 1 - margin):
            continue
        ra, dec = tiles["VIS"][t][1].pixel_to_world_values(x, y)
        out.append((float(ra), float(dec), fov, t))
    return out


def python_tensor(files, ra, dec, fov, t, size):
    out = np.empty((len(BANDS), size, size), np.float32)
    for b, band in enumerate(BANDS):
        data, wcs = files[band][t]
        cut = Cutout2D(data, SkyCoord(ra, dec, unit="deg"), fov * u.arcsec, wcs=wcs,
                       mode="partial", fill_value=np.nan, copy=True).data
        img = resize(cut.astype(np.float32), (size, size), order=3, anti_aliasing=True,
                     preserve_range=True)
        lo, hi = PercentileInterval(99.5).get_limits(img)
        out[b] = AsinhStretch(0.1)(np.clip((img - lo) / (hi - lo), 0, 1))
    return out


def in_process(volume, cat, args, work, first):
    """Seconds for `insitu.Volume.tensors` over the catalogue, 1,000 rows a call into one
    array (None when the package is not installed); its first rows checked against the
    server's tensor."""
    try:
        import insitu
    except ImportError:
        print("the insitu Python package is not installed: no in-process figure")
        return None
    ra, dec, fov = (np.array([row[k] for row in cat]) for k in range(3))
    tiles = insitu.Volume(volume, name="bench", cache_dir=work / "python-cache")

    def make(rows, out=None):
        return tiles.tensors(ra[rows], dec[rows], BANDS, args.size, fov_arcsec=fov[rows],
                             stretch="asinh", filter="lanczos3", percentile=99.5,
                             device=args.device, out=out)

    np.testing.assert_allclose(make(slice(0, len(first))), first, rtol=0, atol=1e-6)
    # One array reused for every call, as a loader's pinned buffer.
    out = np.empty((1000, len(BANDS), args.size, args.size), np.float32)
    started = time.perf_counter()
    for start in range(0, len(cat), 1000):
        rows = slice(start, min(start + 1000, len(cat)))
        make(rows, out[:rows.stop - rows.start])
    return time.perf_counter() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--insitu-bin", type=Path, default=REPO / "target" / "release" / "insitu")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--python-rows", type=int, default=300)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu", "auto"])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    work = Path(os.environ.get("INSITU_BENCH_WORK", tempfile.gettempdir())) / "insitu-tensor-bench"
    volume = work / "volume"
    print(f"volume in {volume} ...", flush=True)
    tiles, galaxies = make_volume(volume, rng)
    cat = make_catalogue(tiles, galaxies, args.rows, rng)
    csv = "id,ra,dec,fov\n" + "".join(f"g{k},{ra!r},{dec!r},{fov!r}\n"
                                       for k, (ra, dec, fov, _) in enumerate(cat))
    for band in BANDS:  # warm page cache for both runs
        for path, _ in tiles[band]:
            path.read_bytes()

    server = Server(args.insitu_bin, work, ["--volume", f"bench={volume}"],
                    env={"INSITU_TENSOR_DEVICE": args.device})
    base = server.base
    try:
        params = {"BAND": ",".join(BANDS), "SIZE": str(args.size), "STRETCH": "asinh",
                  "FILTER": "lanczos3", "PERCENTILE": "99.5"}
        warm = requests.post(base + "/tensors", data=params, timeout=600,
                             files={"catalog": ("c.csv", csv[:csv.index("\n", 200) + 1])})
        warm.raise_for_status()
        first = np.load(io.BytesIO(warm.content))
        # The client is curl writing to /dev/null: the 2 cores are shared with it, and a
        # Python client reading gigabytes would take a core's share from the server.
        cat_file = work / "catalogue.csv"
        cat_file.write_text(csv)
        cmd = ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}",
               "-F", f"catalog=@{cat_file}"] + [arg for k, v in params.items()
                                                 for arg in ("-F", f"{k}={v}")] + [base + "/tensors"]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        insitu_s = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"curl failed: {done.stderr}")
        received = int(done.stdout)
        rss = server.status("VmHWM") / 1024
        device = next((line.strip() for line in server.log_lines() if "tensors on the" in line), "?")
    finally:
        server.stop()
    expected_bytes = args.rows * len(BANDS) * args.size * args.size * 4
    assert received >= expected_bytes, (received, expected_bytes)

    package_s = in_process(volume, cat, args, work, first)

    files = {b: [(fits.getdata(p, memmap=True), w) for p, w in tiles[b]] for b in BANDS}
    n = min(args.python_rows, len(cat))
    started = time.perf_counter()
    py = [python_tensor(files, *cat[k], args.size) for k in range(n)]
    python_s = time.perf_counter() - started
    for k in range(min(n, len(first))):
        for b in range(len(BANDS)):
            corr = np.corrcoef(py[k][b].ravel(), first[k, b].ravel())[0, 1]
            assert corr > 0.99, f"galaxy {k} band {BANDS[b]}: insitu and Python differ (r={corr})"

    insitu_rate, python_rate = args.rows / insitu_s, n / python_s
    cores = os.cpu_count()
    table = [
        "| tool | galaxies | seconds | galaxies/s | × Python |",
        "|---|---:|---:|---:|---:|",
        f"| Python: astropy Cutout2D + scikit-image resize + astropy stretch (1 core) | {n} | "
        f"{python_s:.2f} | {python_rate:.1f} | 1 |",
        f"| insitu `POST /tensors` ({args.device}; {cores} cores) | {args.rows} | {insitu_s:.2f} | "
        f"{insitu_rate:.1f} | {insitu_rate / python_rate:.1f} |",
    ]
    if package_s is not None:
        package_rate = args.rows / package_s
        table.append(f"| insitu Python package `Volume.tensors`, in process ({args.device}; "
                     f"{cores} cores) | {args.rows} | {package_s:.2f} | {package_rate:.1f} | "
                     f"{package_rate / python_rate:.1f} |")
    print(f"\n{len(BANDS)} bands, {args.size}², fields of view 10–30″; {device}")
    print(f"server peak RSS {rss:.0f} MiB; {received / 2**30:.2f} GiB streamed")
    print("\n".join(table))
    (work / "results_tensors.json").write_text(json.dumps(dict(
        rows=args.rows, python_rows=n, insitu_s=insitu_s, python_s=python_s,
        package_s=package_s, device=device,
        peak_rss_mib=rss, cores=cores)))


if __name__ == "__main__":
    main()
