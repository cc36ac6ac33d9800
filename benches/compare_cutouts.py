#!/usr/bin/env python3
"""Bulk cutouts: insitu against astropy, python-fitsio, astrocut and rawcut, in one run.

Usage: compare_cutouts.py [--npix 19200] [--n 10000] [--sizes 64 256] [--n-astrocut 1000]
                          [--repeat 3] [--skip TOOL ...] [--insitu-bin PATH] [--results FILE]

Every tool cuts the same positions from the same generated mosaic, with the mosaic in the
page cache (read with read() just before each measured run, nothing mapped yet):

  astropy   Cutout2D(copy=True) + PrimaryHDU(data, cut.wcs.to_header()).writeto(BytesIO)
  fitsio    fitsio.FITS(mosaic)[0][y0:y1, x0:x1]: pixel reads only, no serialisation
  astrocut  astrocut.fits_cut([mosaic], SkyCoord, size, memory_only=True) + writeto(BytesIO),
            on the first --n-astrocut positions ("n/a" when astrocut does not import)
  rawcut    ../shared/anchors/rawcut, built without target-cpu=native; one thread over an
            mmap: `swap` (big-endian -> native f32 array) and `fits` (a complete HDU in memory)
  insitu    the release `insitu cutout MOSAIC --catalog CSV --size S --mef|--npy OUT`, timed as
            a whole process (catalogue read, open, planning, cutting, writing), with
            --threads 1 and with every core

Python tools and rawcut report the time of their cutout loop only; insitu's rate is the whole
command's, so the ratios favour the other tools slightly.

Work files (mosaic, positions, rawcut build, results) go to $INSITU_BENCH_WORK
(default /tmp/insitu-bench); insitu's output files go to $INSITU_BENCH_SINK (default a folder
in /dev/shm when there is one, so the disk does not time the run) and are deleted after each
run. Results: a table on stdout, written as markdown to --results
(default $INSITU_BENCH_WORK/results_<npix>_<n>.md) with the raw records beside it as JSON.
"""

import argparse
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ANCHORS = REPO.parent / "shared" / "anchors"
PYTHON_TOOLS = ("astropy", "fitsio", "astrocut")
ALL_TOOLS = PYTHON_TOOLS + ("rawcut", "insitu")
# Keeps a 256 px cutout entirely inside the mosaic, as the anchors' positions do.
MARGIN = 130.0
POSITION_SEED = 42


# ---------------------------------------------------------------------------------------------
# Data: mosaic, positions


def work_dir() -> Path:
    return Path(os.environ.get("INSITU_BENCH_WORK", "/tmp/insitu-bench"))


def sink_dir() -> Path:
    default = Path("/dev/shm/insitu-bench-sink") if Path("/dev/shm").is_dir() else work_dir() / "sink"
    return Path(os.environ.get("INSITU_BENCH_SINK", default))


def mosaic_header(npix: int):
    from astropy.io import fits

    scale = 0.1 / 3600.0
    centre = (npix + 1) / 2.0
    return fits.Header([
        ("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", npix), ("NAXIS2", npix),
        ("EXTEND", True), ("WCSAXES", 2), ("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"),
        ("CUNIT1", "deg"), ("CUNIT2", "deg"), ("CRVAL1", 267.38), ("CRVAL2", 65.50),
        ("CRPIX1", centre), ("CRPIX2", centre), ("CD1_1", -scale), ("CD1_2", 0.0),
        ("CD2_1", 0.0), ("CD2_2", scale), ("RADESYS", "ICRS"), ("EQUINOX", 2000.0),
    ])


def write_mosaic_fallback(path: Path, npix: int) -> None:
    """Only when testdata/gen_mosaic.py is missing: the same header, noise in row chunks."""
    rng = np.random.default_rng(12345)
    with open(path, "wb") as f:
        f.write(mosaic_header(npix).tostring().encode("ascii"))
        for y0 in range(0, npix, 256):
            rows = min(256, npix - y0)
            f.write(rng.normal(2e-4, 1e-3, (rows, npix)).astype(">f4").tobytes())
        f.write(b"\0" * ((-npix * npix * 4) % 2880))


def ensure_mosaic(npix: int) -> Path:
    path = work_dir() / f"mosaic_{npix}.fits"
    data_len = npix * npix * 4
    if path.exists() and path.stat().st_size >= data_len:
        return path
    part = path.with_suffix(".fits.part")
    generator = REPO / "testdata" / "gen_mosaic.py"
    print(f"generating {path} ({npix}x{npix}) ...", file=sys.stderr)
    if generator.exists():
        subprocess.run([sys.executable, str(generator), str(part), str(npix)], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        write_mosaic_fallback(part, npix)
    os.replace(part, path)
    return path


def ensure_positions(mosaic: Path, npix: int, n: int, sizes) -> Path:
    """N centres uniform in pixel space; .npz (ra, dec, x, y), id,ra,dec CSV, corners files.

    Corners are astropy's overlap_slices low edge, ceil(pos - size/2), as little-endian int32
    (x0, y0) pairs: the format rawcut reads.
    """
    prefix = work_dir() / f"pos_{npix}_{n}"
    npz = prefix.with_suffix(".npz")
    wanted = [npz, prefix.with_suffix(".csv")] + [Path(f"{prefix}.corners_{s}.bin") for s in sizes]
    if all(p.exists() for p in wanted):
        return npz
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.getheader(mosaic)
    rng = np.random.default_rng(POSITION_SEED)
    x = rng.uniform(MARGIN, npix - 1 - MARGIN, n)
    y = rng.uniform(MARGIN, npix - 1 - MARGIN, n)
    ra, dec = WCS(header).all_pix2world(x, y, 0)
    ra = np.mod(ra, 360.0)
    np.savez(npz, ra=ra, dec=dec, x=x, y=y)
    with open(prefix.with_suffix(".csv"), "w") as f:
        f.write("id,ra,dec\n")
        for i, (r, d) in enumerate(zip(ra.tolist(), dec.tolist())):
            f.write(f"{i + 1},{r!r},{d!r}\n")
    for s in sizes:
        x0 = np.ceil(x - s / 2.0).astype(np.int64)
        y0 = np.ceil(y - s / 2.0).astype(np.int64)
        if x0.min() < 0 or y0.min() < 0 or (x0 + s).max() > npix or (y0 + s).max() > npix:
            sys.exit(f"a {s} px cutout would leave the {npix} px mosaic: use a larger --npix")
        np.c_[x0, y0].astype("<i4").tofile(f"{prefix}.corners_{s}.bin")
    return npz


def corners(npz: Path, size: int) -> np.ndarray:
    return np.fromfile(str(npz)[: -len(".npz")] + f".corners_{size}.bin", dtype="<i4").reshape(-1, 2)


def prewarm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass


# ---------------------------------------------------------------------------------------------
# Python tools, each measured in its own process (`--worker`)


def worker_astropy(mosaic, npz, size, n):
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    from astropy.wcs import WCS

    p = np.load(npz)
    hdul = fits.open(mosaic, memmap=True)
    data, wcs = hdul[0].data, WCS(hdul[0].header)
    coords = SkyCoord(p["ra"][:n] * u.deg, p["dec"][:n] * u.deg, frame="icrs")
    nbytes = 0
    t0 = time.perf_counter()
    for i in range(n):
        cut = Cutout2D(data, coords[i], size, wcs=wcs, copy=True)
        bio = io.BytesIO()
        fits.PrimaryHDU(data=cut.data, header=cut.wcs.to_header()).writeto(bio)
        nbytes += bio.tell()
    return time.perf_counter() - t0, nbytes


def worker_fitsio(mosaic, npz, size, n):
    import fitsio

    cl = corners(npz, size)[:n].tolist()
    hdu = fitsio.FITS(mosaic)[0]
    nbytes = 0
    t0 = time.perf_counter()
    for x0, y0 in cl:
        nbytes += hdu[y0:y0 + size, x0:x0 + size].nbytes
    return time.perf_counter() - t0, nbytes


def worker_astrocut(mosaic, npz, size, n):
    import astrocut
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    p = np.load(npz)
    coords = SkyCoord(p["ra"][:n] * u.deg, p["dec"][:n] * u.deg, frame="icrs")
    nbytes = 0
    t0 = time.perf_counter()
    for i in range(n):
        for hdul in astrocut.fits_cut([mosaic], coords[i], size, memory_only=True):
            bio = io.BytesIO()
            hdul.writeto(bio)
            nbytes += bio.tell()
    return time.perf_counter() - t0, nbytes


WORKERS = {"astropy": worker_astropy, "fitsio": worker_fitsio, "astrocut": worker_astrocut}


def run_worker(tool, mosaic, npz, size, n) -> int:
    warnings.simplefilter("ignore")
    loop_s, nbytes = WORKERS[tool](mosaic, npz, size, n)
    print(json.dumps(dict(loop_s=loop_s, n=n, out_bytes=nbytes)))
    return 0


def python_tool_version(tool: str):
    """The version, or None when the module does not import (the tool is then 'n/a')."""
    module = {"astropy": "astropy", "fitsio": "fitsio", "astrocut": "astrocut"}[tool]
    r = subprocess.run([sys.executable, "-W", "ignore", "-c",
                        f"import {module}; print({module}.__version__)"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def measure_python(tool, mosaic, npz, size, n):
    prewarm(mosaic)
    r = subprocess.run([sys.executable, "-W", "ignore", __file__, "--worker", tool,
                        str(mosaic), str(npz), str(size), str(n)], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{tool} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
        return None
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    return dict(rate=rec["n"] / rec["loop_s"], n=rec["n"], runs=[rec])


# ---------------------------------------------------------------------------------------------
# rawcut and insitu


def clean_rust_env() -> dict:
    """The environment for building rawcut: no flag may turn on target-cpu=native."""
    env = dict(os.environ)
    for key in ("RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS"):
        env.pop(key, None)
    return env


def make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")] if root.exists() else []:
        path.chmod(path.stat().st_mode | 0o200)


def build_rawcut(source: Path) -> Path:
    src = work_dir() / "rawcut-src"
    target = work_dir() / "rawcut-target"
    # A copy, so the build never writes into the shared folder. The shared folder is
    # read-only and copytree keeps modes, so the copy is made writable for cargo and rmtree.
    make_writable(src)
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(source, src, ignore=shutil.ignore_patterns("target"))
    make_writable(src)
    cmd = ["cargo", "build", "--release", "--quiet", "--manifest-path", str(src / "Cargo.toml")]
    env = clean_rust_env() | {"CARGO_TARGET_DIR": str(target)}
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(cmd + ["--offline"], env=env, check=True)
    return target / "release" / "rawcut"


def build_insitu() -> Path:
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "insitu-server"], cwd=REPO,
                   check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "insitu"


def measure_rawcut(binary, mosaic, npz, size, mode, repeat):
    corners_file = str(npz)[: -len(".npz")] + f".corners_{size}.bin"
    runs = []
    for _ in range(repeat):
        r = subprocess.run([str(binary), "cut", str(mosaic), corners_file, str(size), "--mode", mode,
                            "--prewarm", "--passes", "3"], capture_output=True, text=True, check=True)
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return dict(rate=statistics.median(r["first_pass_cutouts_per_s"] for r in runs),
                later=statistics.median(r["later_passes_cutouts_per_s"] for r in runs),
                n=runs[0]["n"], runs=runs)


WROTE = re.compile(r"wrote (\d+) cutouts in ([0-9.]+) s \(([0-9.]+)/s\)")


def measure_insitu(binary, mosaic, npz, size, output, threads, repeat):
    csv = str(npz)[: -len(".npz")] + ".csv"
    sink = sink_dir()
    sink.mkdir(parents=True, exist_ok=True)
    out = sink / f"cutouts_{size}.{'fits' if output == 'mef' else 'npy'}"
    cmd = [str(binary), "cutout", str(mosaic), "--catalog", csv, "--size", str(size),
           f"--{output}", str(out)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    runs = []
    for k in range(repeat):
        out.unlink(missing_ok=True)
        prewarm(mosaic)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"insitu failed: {' '.join(cmd)}\n{r.stderr[-2000:]}", file=sys.stderr)
            return None
        m = WROTE.search(r.stderr)
        written = int(m.group(1)) if m else None
        # The printed rate, not N / printed seconds: the seconds have only two decimals.
        runs.append(dict(wall_s=wall, written=written, internal_rate=float(m.group(3)) if m else None,
                         out_bytes=out.stat().st_size))
        check = check_insitu_output(out, output, mosaic, npz, size) if k == 0 else None
        if check is not None:
            runs[-1]["check"] = check
        out.unlink(missing_ok=True)
    n = runs[0]["written"]
    if n is None:
        print(f"insitu printed no 'wrote N cutouts' line: {r.stderr[-500:]}", file=sys.stderr)
        return None
    internal = [r["internal_rate"] for r in runs if r["internal_rate"]]
    return dict(rate=statistics.median(n / r["wall_s"] for r in runs), n=n,
                internal=statistics.median(internal) if internal else None,
                check=runs[0].get("check"), runs=runs)


def check_insitu_output(out, output, mosaic, npz, size, count=5):
    """The first cutouts hold exactly the pixels of the corners every other tool reads."""
    from astropy.io import fits

    cl = corners(npz, size)
    source = fits.getdata(mosaic, memmap=True)
    if output == "npy":
        stack = np.load(out, mmap_mode="r")
        got = [np.asarray(stack[i]) for i in range(count)]
    else:
        with fits.open(out, memmap=True) as hdul:
            got = [np.asarray(hdul[i + 1].data) for i in range(count)]
    for i, g in enumerate(got):
        x0, y0 = cl[i]
        want = np.asarray(source[y0:y0 + size, x0:x0 + size], dtype=np.float32)
        if g.shape != want.shape or not np.array_equal(g.astype(np.float32), want):
            return f"MISMATCH at cutout {i}"
    return "ok"


# ---------------------------------------------------------------------------------------------
# Table


def fmt_rate(rate):
    if rate is None:
        return "n/a"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.1f}"


def fmt_ratio(a, b):
    if a is None or b is None:
        return "n/a"
    r = a / b
    return f"{r:,.0f}×" if r >= 10 else f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def table(rows, size):
    """Markdown table for one cutout size. Ratios: against astropy, and against rawcut's mode
    with the same kind of output (FITS bytes vs `fits`, float arrays vs `swap`)."""
    by = {(r["tool"], r["variant"]): r for r in rows if r["size"] == size}
    astropy = by.get(("astropy", "Cutout2D(copy=True)+writeto(BytesIO)"), {}).get("rate")
    rawcut = {kind: by.get(("rawcut", f"--mode {mode}"), {}).get("rate")
              for kind, mode in (("fits", "fits"), ("array", "swap"))}
    lines = [f"### {size}×{size} cutouts",
             "",
             "| tool | what is timed | output | threads | n | cutouts/s | × astropy | × rawcut (same output, 1 thread) | notes |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["size"] != size:
            continue
        lines.append(f"| {r['tool']} | {r['variant']} | {r['kind']} | {r['threads']} | {r['n'] or 'n/a'} | "
                     f"{fmt_rate(r['rate'])} | {fmt_ratio(r['rate'], astropy)} | "
                     f"{fmt_ratio(r['rate'], rawcut[r['kind']])} | {r['notes']} |")
    return "\n".join(lines)


def machine_line(versions):
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    v = ", ".join(f"{k} {val}" for k, val in versions.items() if val)
    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"numpy {np.__version__}, {v}, {rustc}; {time.strftime('%Y-%m-%d %H:%M')}")


# ---------------------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        tool, mosaic, npz, size, n = sys.argv[2:7]
        return run_worker(tool, mosaic, npz, int(size), int(n))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npix", type=int, default=19200, help="mosaic side (default 19200)")
    ap.add_argument("--n", type=int, default=10000, help="positions (default 10000)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--n-astrocut", type=int, default=1000, help="positions for astrocut (slow)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of rawcut and insitu (median)")
    ap.add_argument("--skip", nargs="*", default=[], choices=ALL_TOOLS)
    ap.add_argument("--insitu-bin", type=Path, help="use this binary instead of building it")
    ap.add_argument("--rawcut-src", type=Path, default=ANCHORS / "rawcut")
    ap.add_argument("--results", type=Path)
    a = ap.parse_args()

    work_dir().mkdir(parents=True, exist_ok=True)
    mosaic = ensure_mosaic(a.npix)
    npz = ensure_positions(mosaic, a.npix, a.n, a.sizes)
    versions = {t: python_tool_version(t) for t in PYTHON_TOOLS if t not in a.skip}
    rawcut = build_rawcut(a.rawcut_src) if "rawcut" not in a.skip else None
    insitu = None
    if "insitu" not in a.skip:
        insitu = a.insitu_bin or build_insitu()
    cores = os.cpu_count() or 1

    rows = []

    def add(tool, variant, kind, threads, size, result, notes=""):
        rows.append(dict(tool=tool, variant=variant, kind=kind, threads=threads, size=size,
                         n=result and result["n"], rate=result and result["rate"], notes=notes,
                         raw=result))
        print(f"{size:>4} {tool:<9} {variant:<42} threads={threads} "
              f"{fmt_rate(result and result['rate']):>10}/s {notes}", file=sys.stderr)

    for size in a.sizes:
        for tool, variant, kind, n in (
                ("astropy", "Cutout2D(copy=True)+writeto(BytesIO)", "fits", a.n),
                ("fitsio", "FITS[0][y0:y1, x0:x1] (pixels only)", "array", a.n),
                ("astrocut", "fits_cut(memory_only)+writeto(BytesIO)", "fits", min(a.n_astrocut, a.n))):
            if tool in a.skip:
                continue
            result = measure_python(tool, mosaic, npz, size, n) if versions.get(tool) else None
            add(tool, variant, kind, 1, size, result, "" if versions.get(tool) else "does not import")
        if rawcut:
            for mode, kind in (("swap", "array"), ("fits", "fits")):
                result = measure_rawcut(rawcut, mosaic, npz, size, mode, a.repeat)
                add("rawcut", f"--mode {mode}", kind, 1, size, result,
                    f"first pass (fresh map); later passes {fmt_rate(result['later'])}/s")
        if insitu:
            for output, kind in (("mef", "fits"), ("npy", "array")):
                for threads in (1, None):
                    result = measure_insitu(insitu, mosaic, npz, size, output, threads, a.repeat)
                    notes = ""
                    if result:
                        notes = (f"whole process; bulk::run alone {fmt_rate(result['internal'])}/s; "
                                 f"pixels {result['check']}")
                    add("insitu", f"cutout --catalog --{output}", kind,
                        1 if threads == 1 else f"{cores} (all)", size, result, notes)

    machine = machine_line(versions)
    text = "\n\n".join(
        [f"## Bulk cutouts: {a.n:,} positions on a {a.npix}² float32 mosaic, warm page cache",
         machine] + [table(rows, s) for s in a.sizes] +
        ["astropy, fitsio, astrocut and rawcut: their cutout loop only. insitu: the whole "
         "`insitu cutout` process (catalogue read, open, sky → pixel, cutting, writing to "
         f"{sink_dir()}). rawcut is built without `-C target-cpu=native`; its first pass maps "
         "the file afresh, as an insitu process does."])
    print("\n" + text)
    results = a.results or work_dir() / f"results_{a.npix}_{a.n}.md"
    results.write_text(text + "\n")
    results.with_suffix(".json").write_text(json.dumps(dict(machine=machine, rows=rows), indent=1))
    print(f"\nwrote {results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
