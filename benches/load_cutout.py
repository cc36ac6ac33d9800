#!/usr/bin/env python3
"""Load on `insitu serve`'s position-first `/cutout`: throughput, latency, CPU and peak memory
under 1, 16 and 64 concurrent connections, driven by wrk, compared in the same run with the
engine's in-process rate (`insitu cutout`), with astropy and with ESA's Cutana on the same
tile and the same positions.

Usage: load_cutout.py [--insitu-bin PATH] [--duration S] [--connections 1 16 64]
                      [--sizes 64 256] [--threads N] [--positions N] [--n-engine N]
                      [--n-astropy N] [--n-cutana N] [--n-cutana-zarr N] [--cutana-python PATH]
                      [--skip http|engine|astropy|cutana ...] [--seed N] [--results FILE]

The server (default target/release/insitu; build it with `cargo build --release -p
insitu-server`) starts on 127.0.0.1 with a fresh cache dir, where it writes its demo volume
(2×2 Euclid-MER-like 512² float32 tiles in VIS, NIR_Y, NIR_H). All positions lie on one tile,
the first VIS tile, far enough inside it that every cutout is whole on it (no stitching), so
that every tool does the same work: --positions (2,000) random pixel centres per size,
turned into (ra, dec) with astropy and written with 17 significant digits.

  http     GET /cutout?ra=&dec=&size=<S>px&band=VIS, one FITS file back (an empty primary HDU
           and one IMAGE extension); wrk picks one of the positions per request (closed loop,
           no think time), --duration seconds at each connection count. wrk's Lua done() hook
           reports requests, bytes, latency percentiles and errors (connect/read/write/timeout
           and non-2xx answers), which must all be zero: the script exits non-zero otherwise.
           Peak RSS is the server's VmHWM, reset before each run (clear_refs 5); server CPU is
           utime + stime from /proc/PID/stat over the run, so "per server CPU-s" is requests
           over the CPU the server used (the 'per core' figure: wrk shares the machine).
  engine   the release `insitu cutout TILE --catalog CSV --size S` on the positions cycled to
           --n-engine (20,000) rows at 64² (the same bytes at larger sizes: 2,000 at 256²,
           never fewer than --positions): --mef (one multi-extension FITS file) and --npy (a float32
           stack) with --threads 1 and every core, and --out-dir (one FITS file per row,
           Cutana's FITS layout) with --threads 1; outputs to /dev/shm. Whole process timed;
           CPU and peak RSS from wait4().
  astropy  Cutout2D(data, SkyCoord, S, wcs=WCS(header), copy=True) + PrimaryHDU(cut.data,
           cut.wcs.to_header()).writeto(BytesIO) per position, one Python loop on one thread,
           data memory-mapped (astropy's default), the first --n-astropy (1,000) positions;
           the loop is timed (imports and file opening not), peak RSS is the process's VmHWM.
  cutana   ESA's Cutana (PyPI `cutana`, 0.4.0), in its own venv (--cutana-python, default
           /tmp/cutana-venv/bin/python: `python3 -m venv /tmp/cutana-venv &&
           /tmp/cutana-venv/bin/pip install cutana==0.4.0`; skipped with a message when it
           does not import): Orchestrator(config).start_processing(CSV) with max_workers =
           cores (its load balancer keeps one core for the main process, so 1 worker on 2
           cores), target_resolution S, flux conversion off, catalogue checks on (defaults),
           in two configurations: `zarr` (its default pipeline: cut, resize to S (a no-op
           here), linear normalisation, one zarr stack) and `fits raw`
           (do_only_cutout_extraction=True: one FITS file per source, pixels as stored).
           Timed as a whole run of N rows and of N/20 rows (N: --n-cutana, 3,000, for `fits
           raw`; --n-cutana-zarr, 15,000 at 64², the same bytes at larger sizes but at least
           --n-cutana, for `zarr`); the rate is the difference (rows over seconds), so worker
           start-up is not counted against it (its main process polls its workers once a
           second, so runs are kept long). "Per CPU-s" counts the CPU of the main process and
           of its workers. Peak RSS: the worker process's (RUSAGE_CHILDREN) and the main
           process's.

Before any timing, three HTTP answers per size are checked against astropy Cutout2D (pixels
equal, same shape, CRPIX equal, INTILE1 the tile and no second tile), the first three cutouts
of each engine output too, and Cutana's first three cutouts are located in the tile (its
window's offset from Cutout2D's is reported; it does not fail the run).

Work files (cache and state folders, server log, catalogues, Lua scripts) go to
$INSITU_BENCH_WORK (default /tmp/insitu-load-cutout-bench); outputs to /dev/shm. Results: a
markdown table on stdout and in --results (default $INSITU_BENCH_WORK/results_load_cutout.md),
raw records beside it as JSON.
"""

import argparse
import csv
import io
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from bench_server import Server, vm_status

REPO = Path(__file__).resolve().parent.parent
DEMO_FOLDER = "demo-volume-v2"
WROTE = re.compile(r"wrote (\d+) cutouts in ([0-9.]+) s \(([0-9.]+)/s\)")
SINK = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
# Cutana's published figure (Euclid Q1 tiles): up to ~2,260 cutouts/s with 4 workers,
# ~1.8-2.5 GB per worker.
CUTANA_PUBLISHED = dict(rate=2260, workers=4, gb_per_worker=(1.8, 2.5))


def work_dir() -> Path:
    return Path(os.environ.get("INSITU_BENCH_WORK", "/tmp/insitu-load-cutout-bench"))


# ---------------------------------------------------------------------------------------------
# Workers, each run in its own process (`--worker NAME ...`)


def worker_astropy(tile, positions, size, n):
    import warnings

    warnings.simplefilter("ignore")
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    from astropy.wcs import WCS

    p = np.load(positions)
    ra, dec = p["ra"][:n], p["dec"][:n]
    hdul = fits.open(tile, memmap=True)
    data, wcs = hdul[0].data, WCS(hdul[0].header)
    coords = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    nbytes = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(len(ra)):
        cut = Cutout2D(data, coords[i], size, wcs=wcs, copy=True)
        bio = io.BytesIO()
        fits.PrimaryHDU(data=cut.data, header=cut.wcs.to_header()).writeto(bio)
        nbytes += bio.tell()
    loop_s = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    return dict(n=len(ra), loop_s=loop_s, cpu_s=cpu_s, out_bytes=nbytes,
                vmhwm_kib=vm_status("VmHWM"))


def worker_cutana(catalogue, out_dir, size, mode, workers):
    """One Cutana run in this process (its workers are child processes)."""
    import warnings

    warnings.simplefilter("ignore")
    from cutana import Orchestrator, get_default_config

    cfg = get_default_config()
    cfg.source_catalogue = catalogue
    cfg.output_dir = out_dir
    cfg.console_log_level = "ERROR"
    cfg.target_resolution = size
    cfg.apply_flux_conversion = False
    cfg.selected_extensions = [{"name": "VIS", "ext": "PrimaryHDU"}]
    cfg.channel_weights = {"VIS": [1.0]}
    cfg.max_workers = workers
    cfg.loadbalancer.skip_memory_calibration_wait = True
    if mode == "fits":
        cfg.output_format = "fits"
        cfg.do_only_cutout_extraction = True
    else:
        cfg.output_format = "zarr"
    orchestrator = Orchestrator(cfg)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = orchestrator.start_processing(catalogue)
    run_s = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (me.ru_utime - self0.ru_utime) + (me.ru_stime - self0.ru_stime) + kids.ru_utime + kids.ru_stime
    return dict(status=result.get("status"), error=result.get("error"), run_s=run_s, cpu_s=cpu_s,
                main_vmhwm_kib=vm_status("VmHWM"), worker_maxrss_kib=kids.ru_maxrss)


def run_worker(argv) -> int:
    name = argv[0]
    if name == "astropy":
        rec = worker_astropy(argv[1], argv[2], int(argv[3]), int(argv[4]))
    elif name == "cutana":
        rec = worker_cutana(argv[1], argv[2], int(argv[3]), argv[4], int(argv[5]))
    elif name == "cutana-version":
        from importlib.metadata import version

        rec = dict(version=version("cutana"))
    else:
        raise SystemExit(f"unknown worker {name}")
    print("WORKERJSON " + json.dumps(rec))
    return 0


def call_worker(python, args, timeout):
    """Runs `python this_file --worker ARGS`; its record, or None (with stderr) on failure."""
    try:
        r = subprocess.run([str(python), "-W", "ignore", __file__, "--worker", *map(str, args)],
                           capture_output=True, text=True, timeout=timeout, cwd=work_dir())
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("WORKERJSON ")), None)
    if r.returncode != 0 or line is None:
        return None, (r.stdout + r.stderr)[-1500:]
    return json.loads(line[len("WORKERJSON "):]), None


# ---------------------------------------------------------------------------------------------
# Positions and oracles


def vis_tile(cache: Path) -> Path:
    tiles = sorted((cache / DEMO_FOLDER).glob("MER/*/EUC_MER_BGSUB-MOSAIC-VIS_TILE*.fits"))
    if len(tiles) != 4:
        sys.exit(f"demo VIS tiles not found under {cache / DEMO_FOLDER}")
    return tiles[0]


def make_positions(tile: Path, size: int, n: int, seed: int):
    """n random pixel centres whose size² window (astropy's rounding) is whole on the tile,
    as (ra, dec) through the tile's WCS."""
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.getheader(tile)
    nx, ny = header["NAXIS1"], header["NAXIS2"]
    rng = np.random.default_rng(seed + size)
    # Cutout2D's window starts at ceil(p - size/2): staying 1 px away from both edges keeps it
    # inside whatever the rounding of the sky -> pixel round trip.
    x = rng.uniform(size / 2 + 1, nx - 1 - size / 2 - 1, n)
    y = rng.uniform(size / 2 + 1, ny - 1 - size / 2 - 1, n)
    ra, dec = WCS(header).pixel_to_world_values(x, y)
    # What every tool reads: the 17-digit text, parsed back.
    ra = np.array([float(repr(float(a))) for a in ra])
    dec = np.array([float(repr(float(d))) for d in dec])
    return ra, dec


class Oracle:
    """astropy Cutout2D on the tile: the truth every answer is checked against."""

    def __init__(self, tile: Path):
        from astropy.io import fits
        from astropy.wcs import WCS

        self.hdul = fits.open(tile, memmap=True)
        self.data = self.hdul[0].data
        self.wcs = WCS(self.hdul[0].header)

    def cut(self, ra, dec, size):
        import astropy.units as u
        from astropy.coordinates import SkyCoord
        from astropy.nddata import Cutout2D

        return Cutout2D(self.data, SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"), size,
                        wcs=self.wcs, copy=True)

    def offset_of(self, pixels, ra, dec, size, reach=3):
        """Where `pixels` lie in the tile relative to Cutout2D's window: (dx, dy), or None."""
        cut = self.cut(ra, dec, size)
        ys, xs = cut.slices_original
        for dy in range(-reach, reach + 1):
            for dx in range(-reach, reach + 1):
                y0, x0 = ys.start + dy, xs.start + dx
                if y0 < 0 or x0 < 0:
                    continue
                win = self.data[y0:y0 + pixels.shape[0], x0:x0 + pixels.shape[1]]
                if win.shape == pixels.shape and np.array_equal(np.asarray(win, dtype=np.float32),
                                                                pixels.astype(np.float32)):
                    return dx, dy
        return None


def check_http(base, oracle: Oracle, tile_name: str, ra, dec, size, count=3):
    from astropy.io import fits

    for i in range(count):
        url = base + "/cutout?" + urllib.parse.urlencode(
            {"ra": repr(float(ra[i])), "dec": repr(float(dec[i])), "size": f"{size}px", "band": "VIS"})
        with urllib.request.urlopen(url, timeout=60) as r:
            body = r.read()
        hdul = fits.open(io.BytesIO(body))
        if len(hdul) != 2 or hdul[1].name != "VIS":
            sys.exit(f"HTTP cutout {i} ({size}px): expected a primary HDU and one VIS extension")
        got, header = hdul[1].data, hdul[1].header
        want = oracle.cut(ra[i], dec[i], size)
        if got.shape != want.data.shape or not np.array_equal(got.astype(np.float32), want.data.astype(np.float32)):
            sys.exit(f"HTTP cutout {i} ({size}px) differs from astropy Cutout2D")
        crpix = (header["CRPIX1"], header["CRPIX2"])
        if not np.allclose(crpix, want.wcs.wcs.crpix, rtol=0, atol=1e-9):
            sys.exit(f"HTTP cutout {i} ({size}px): CRPIX {crpix} vs Cutout2D {tuple(want.wcs.wcs.crpix)}")
        if not str(header.get("INTILE1", "")).endswith(tile_name) or "INTILE2" in header:
            sys.exit(f"HTTP cutout {i} ({size}px) not cut from {tile_name} alone: "
                     f"{header.get('INTILE1')!r}, {header.get('INTILE2')!r}")
    return len(body)


def check_engine_output(out: Path, kind: str, oracle: Oracle, ra, dec, size, count=3):
    from astropy.io import fits

    if kind == "npy":
        stack = np.load(out, mmap_mode="r")
        got = [np.asarray(stack[i]) for i in range(count)]
    elif kind == "mef":
        with fits.open(out, memmap=False) as hdul:
            got = [np.asarray(hdul[i + 1].data) for i in range(count)]
    else:
        files = sorted(out.iterdir(), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
        got = [fits.getdata(files[i]) for i in range(count)]
    for i, g in enumerate(got):
        want = oracle.cut(ra[i], dec[i], size).data
        if g.shape != want.shape or not np.array_equal(g.astype(np.float32), want.astype(np.float32)):
            return f"MISMATCH at row {i}"
    return "ok"


# ---------------------------------------------------------------------------------------------
# wrk


LUA = """
local paths = {
%s
}
local n = #paths
local next_tid = 0
setup = function(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
init = function(args)
  math.randomseed(os.time() * 100 + tid)
end
request = function()
  return wrk.format("GET", paths[math.random(n)])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"mean_us": %%.1f, "max_us": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


def cutout_script(ra, dec, size) -> str:
    items = ",\n".join('"/cutout?' + urllib.parse.urlencode(
        {"ra": repr(float(a)), "dec": repr(float(d)), "size": f"{size}px", "band": "VIS"}) + '"'
        for a, d in zip(ra, dec))
    return LUA % items


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_wrk(wrk, base, script: Path, connections, threads, duration, server) -> dict:
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "60s",
           "-s", str(script), base]
    server.reset_peak()
    cpu0, wrk0 = server.cpu_s(), children_cpu()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    cpu1, wrk1 = server.cpu_s(), children_cpu()
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if r.returncode != 0 or line is None:
        sys.exit(f"wrk failed ({r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")
    rec = json.loads(line[len("WRKJSON "):])
    rec.update(server_cpu_s=cpu1 - cpu0, wrk_cpu_s=wrk1 - wrk0,
               vmhwm_kib=server.status("VmHWM"), vmrss_kib=server.status("VmRSS"))
    rec["errors"] = sum(rec[k] for k in ("connect", "read", "write", "status", "timeout"))
    return rec


# ---------------------------------------------------------------------------------------------
# The server


def timed_process(cmd, timeout):
    """Runs cmd; (returncode, wall s, CPU s, peak RSS KiB, stderr) from wait4()."""
    err = open(work_dir() / "engine.stderr", "w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    text = err.read()
    err.close()
    return proc.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, text


def measure_engine(binary, tile, csv_path, n, size, kind, threads, oracle, ra, dec, repeat):
    out = SINK / f"insitu-load-cutout-{size}.{ {'mef': 'fits', 'npy': 'npy', 'dir': 'd'}[kind] }"
    flag = {"mef": "--mef", "npy": "--npy", "dir": "--out-dir"}[kind]
    cmd = [str(binary), "cutout", str(tile), "--catalog", str(csv_path), "--size", str(size), flag, str(out)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    runs, check = [], None
    for k in range(repeat):
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        if kind == "dir":
            out.mkdir()
        rc, wall, cpu, maxrss, err = timed_process(cmd, 300)
        if rc != 0:
            sys.exit(f"insitu cutout failed ({rc}): {' '.join(cmd)}\n{err[-1500:]}")
        m = WROTE.search(err)
        runs.append(dict(wall_s=wall, cpu_s=cpu, maxrss_kib=maxrss,
                         internal_rate=float(m.group(3)) if m else None))
        if k == 0:
            check = check_engine_output(out, kind, oracle, ra, dec, size)
            if check != "ok":
                sys.exit(f"insitu cutout {flag} output: {check}")
    shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    best = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]  # the median run
    return dict(n=n, rate=n / best["wall_s"], per_cpu=n / best["cpu_s"], cpu_s=best["cpu_s"],
                wall_s=best["wall_s"], peak_kib=max(r["maxrss_kib"] for r in runs),
                internal_rate=best["internal_rate"], check=check, runs=runs)


# ---------------------------------------------------------------------------------------------
# Cutana


def write_cutana_catalogue(path: Path, tile: Path, ra, dec, size, n):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["SourceID", "RA", "Dec", "diameter_pixel", "fits_file_paths"])
        for i in range(n):
            j = i % len(ra)
            w.writerow([f"src{i}", repr(float(ra[j])), repr(float(dec[j])), size, str([str(tile)])])


def cutana_first_cutouts(out_dir: Path, mode: str, count=3):
    """Cutana's first cutouts (rows src0, src1, ...) as float32 arrays."""
    if mode == "fits":
        from astropy.io import fits

        got = []
        for i in range(count):
            f = next(iter(out_dir.glob(f"*src{i}_*_cutout.fits")), None)
            if f is None:
                return None
            with fits.open(f) as hdul:
                got.append(next(np.asarray(h.data) for h in hdul if h.data is not None))
        return got
    return None  # zarr holds normalised pixels: not comparable with the tile's


def measure_cutana(python, tile, ra, dec, size, mode, n, workers, oracle):
    small = max(n // 20, 50)
    recs = {}
    for rows in (small, n):
        cat = work_dir() / f"cutana_{size}_{rows}.csv"
        write_cutana_catalogue(cat, tile, ra, dec, size, rows)
        out = SINK / f"insitu-load-cutout-cutana-{size}-{mode}-{rows}"
        shutil.rmtree(out, ignore_errors=True)
        rec, err = call_worker(python, ["cutana", cat, out, size, mode, workers], timeout=600)
        if rec is None or rec["status"] != "completed":
            shutil.rmtree(out, ignore_errors=True)
            return dict(error=err or rec.get("error") or rec.get("status"))
        if rows == n and mode == "fits":
            got = cutana_first_cutouts(out, mode)
            rec["offsets"] = None if got is None else [oracle.offset_of(g, ra[i], dec[i], size)
                                                       for i, g in enumerate(got)]
        shutil.rmtree(out, ignore_errors=True)
        recs[rows] = rec
    big, sm = recs[n], recs[small]
    dt, dcpu = big["run_s"] - sm["run_s"], big["cpu_s"] - sm["cpu_s"]
    return dict(n=n, small=small, workers=workers, rate=(n - small) / dt if dt > 0 else None,
                per_cpu=(n - small) / dcpu if dcpu > 0 else None, whole_rate=n / big["run_s"],
                worker_peak_kib=big["worker_maxrss_kib"], main_peak_kib=big["main_vmhwm_kib"],
                offsets=big.get("offsets"), runs=recs)


# ---------------------------------------------------------------------------------------------
# Table


def fmt_rate(x):
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ratio(a, b):
    if not a or not b:
        return "n/a"
    r = a / b
    return f"{r:,.0f}×" if r >= 100 else f"{r:,.1f}×" if r >= 10 else f"{r:.2f}×"


def machine_line(args):
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal:")), 0)
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), {mem / 2**20:.0f} GiB, "
            f"Linux {platform.release()}; insitu {args.insitu_bin}; wrk on the same machine, "
            f"{args.duration} s per run; load average at the end {os.getloadavg()[0]:.2f}")


def tables(args, http, engine, astropy_recs, cutana, versions):
    lines = [machine_line(args), ""]
    if http:
        lines += ["HTTP `GET /cutout?ra=&dec=&size=Npx&band=VIS` (one FITS file back):", "",
                  "| size | connections | requests/s | MiB/s | p50 ms | p99 ms | errors | server CPU | "
                  "per server CPU-s | peak RSS MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in http:
            secs = r["duration_us"] / 1e6
            lines.append(
                f"| {r['size']}² | {r['connections']} | {fmt_rate(r['requests'] / secs)} | "
                f"{r['bytes'] / secs / 2**20:,.1f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | "
                f"{r['errors']} | {r['server_cpu_s'] / secs:.2f} cores | "
                f"{fmt_rate(r['requests'] / r['server_cpu_s'] if r['server_cpu_s'] else None)} | "
                f"{r['vmhwm_kib'] / 1024:.0f} |")
        lines.append("")
    lines += ["Same tile, same positions, in process:", "",
              "| size | tool | output | threads | n | cutouts/s | per CPU-s | peak RSS MiB | check |",
              "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for size in args.sizes:
        for r in engine:
            if r["size"] == size:
                lines.append(f"| {size}² | insitu cutout | {r['kind']} | {r['threads']} | {r['n']:,} | "
                             f"{fmt_rate(r['rate'])} | {fmt_rate(r['per_cpu'])} | {r['peak_kib'] / 1024:.0f} | "
                             f"{r['check']} |")
        for r in astropy_recs:
            if r["size"] == size:
                lines.append(f"| {size}² | astropy {versions.get('astropy', '')} Cutout2D(copy=True) | "
                             f"FITS to BytesIO | 1 | {r['n']:,} | {fmt_rate(r['n'] / r['loop_s'])} | "
                             f"{fmt_rate(r['n'] / r['cpu_s'])} | {r['vmhwm_kib'] / 1024:.0f} | oracle |")
        for r in cutana:
            if r["size"] == size:
                if "error" in r:
                    lines.append(f"| {size}² | Cutana | {r['mode']} | | | n/a | n/a | n/a | failed: see json |")
                    continue
                offs = r.get("offsets")
                note = ("window = Cutout2D's" if offs and all(o == (0, 0) for o in offs) else
                        f"window offset from Cutout2D's (dx, dy): {', '.join(map(str, offs))}" if offs else
                        "normalised pixels")
                lines.append(f"| {size}² | Cutana {versions.get('cutana', '')} | {r['mode']} | "
                             f"{r['workers']} worker | {r['n']:,} | {fmt_rate(r['rate'])} | {fmt_rate(r['per_cpu'])} | "
                             f"{r['worker_peak_kib'] / 1024:.0f} worker + {r['main_peak_kib'] / 1024:.0f} main | {note} |")
    lines.append("")
    # Ratios against the anchors of the same run.
    lines += ["Ratios (same run; per core = cutouts per CPU-second):", "",
              "| size | insitu | × astropy (rate) | × Cutana (per core) | × Cutana published (565/s per worker) | "
              "× less memory than Cutana's worker |",
              "|---|---|---:|---:|---:|---:|"]
    for size in args.sizes:
        ast = next((r for r in astropy_recs if r["size"] == size), None)
        ast_rate = ast["n"] / ast["loop_s"] if ast else None
        cut = [r for r in cutana if r["size"] == size and "error" not in r]
        cut_best = max(cut, key=lambda r: r["per_cpu"] or 0) if cut else None
        cut_low_mem = min(cut, key=lambda r: r["worker_peak_kib"]) if cut else None
        published = CUTANA_PUBLISHED["rate"] / CUTANA_PUBLISHED["workers"]
        cands = []
        hs = [r for r in http if r["size"] == size]
        if hs:
            best = max(hs, key=lambda r: r["requests"] / (r["duration_us"] / 1e6))
            cands.append((f"HTTP, {best['connections']} connections", best["requests"] / (best["duration_us"] / 1e6),
                          best["requests"] / best["server_cpu_s"], best["vmhwm_kib"]))
        for r in engine:
            if r["size"] == size and r["threads"] == 1 and r["kind"] in ("mef", "npy"):
                cands.append((f"cutout --{r['kind']}, 1 thread", r["rate"], r["per_cpu"], r["peak_kib"]))
        for name, rate, per_cpu, peak in cands:
            lines.append(f"| {size}² | {name} | {fmt_ratio(rate, ast_rate)} | "
                         f"{fmt_ratio(per_cpu, cut_best['per_cpu'] if cut_best else None)} | "
                         f"{fmt_ratio(per_cpu, published)} | "
                         f"{fmt_ratio(cut_low_mem['worker_peak_kib'] if cut_low_mem else None, peak)} |")
    lines.append("")
    if cutana and any("error" not in r for r in cutana):
        lines.append("Cutana's per-core figure is its best configuration of the size; its memory the "
                     "lower worker peak of the two. Published: ~2,260 cutouts/s with 4 workers "
                     "(565/s per worker), 1.8–2.5 GB per worker on Euclid Q1 tiles.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def engine_rows(args, size) -> int:
    """--n-engine rows at 64², fewer for larger cutouts (the same bytes), at least --positions."""
    return max(args.positions, args.n_engine * 64 * 64 // (size * size))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return run_worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--insitu-bin", type=Path, default=REPO / "target" / "release" / "insitu")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--threads", type=int, default=None, help="wrk threads (default min(connections, 2))")
    ap.add_argument("--positions", type=int, default=2000)
    ap.add_argument("--n-engine", type=int, default=20000)
    ap.add_argument("--n-astropy", type=int, default=1000)
    ap.add_argument("--n-cutana", type=int, default=3000, help="rows of a Cutana `fits raw` run")
    ap.add_argument("--n-cutana-zarr", type=int, default=15000,
                    help="rows of a Cutana `zarr` run at 64² (the same bytes at larger sizes, at least --n-cutana)")
    ap.add_argument("--cutana-python", type=Path, default=Path("/tmp/cutana-venv/bin/python"))
    ap.add_argument("--repeat", type=int, default=3, help="runs of each insitu cutout command (median)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["http", "engine", "astropy", "cutana"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None and "http" not in args.skip:
        sys.exit("wrk not found: apt-get install wrk")
    if not args.insitu_bin.is_file():
        sys.exit(f"{args.insitu_bin} not found: cargo build --release -p insitu-server")
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    import astropy

    versions = {"astropy": astropy.__version__}
    cutana_ok = False
    if "cutana" not in args.skip:
        if args.cutana_python.is_file():
            rec, err = call_worker(args.cutana_python, ["cutana-version"], timeout=120)
            cutana_ok = rec is not None
            if cutana_ok:
                versions["cutana"] = rec["version"]
            else:
                print(f"Cutana does not import with {args.cutana_python}; skipped:\n{err}", file=sys.stderr)
        else:
            print(f"{args.cutana_python} not found; Cutana skipped (python3 -m venv /tmp/cutana-venv && "
                  "/tmp/cutana-venv/bin/pip install cutana==0.4.0)", file=sys.stderr)

    server = Server(args.insitu_bin, work)
    http, engine, astropy_recs, cutana = [], [], [], []
    try:
        tile = vis_tile(server.cache)
        oracle = Oracle(tile)
        tile_name = tile.relative_to(server.cache / DEMO_FOLDER).as_posix()
        print(f"tile {tile_name}; server startup VmHWM {server.status('VmHWM') / 1024:.0f} MiB", file=sys.stderr)
        pos = {}
        for size in args.sizes:
            ra, dec = make_positions(tile, size, args.positions, args.seed)
            pos[size] = (ra, dec)
            np.savez(work / f"positions_{size}.npz", ra=ra, dec=dec)
            with open(work / f"positions_{size}_{engine_rows(args, size)}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["id", "ra", "dec"])
                for i in range(engine_rows(args, size)):
                    w.writerow([i, repr(float(ra[i % len(ra)])), repr(float(dec[i % len(dec)]))])
            nbytes = check_http(server.base, oracle, tile_name, ra, dec, size)
            print(f"{size}px: 3 HTTP answers equal astropy Cutout2D ({nbytes:,} bytes each)", file=sys.stderr)

        if "http" not in args.skip:
            for size in args.sizes:
                script = work / f"cutout_{size}.lua"
                script.write_text(cutout_script(*pos[size], size))
                for c in args.connections:
                    threads = args.threads or min(c, 2)
                    rec = run_wrk(wrk, server.base, script, c, threads, args.duration, server)
                    rec.update(size=size, connections=c, threads=threads)
                    http.append(rec)
                    secs = rec["duration_us"] / 1e6
                    print(f"http {size}px c={c}: {rec['requests'] / secs:,.0f} req/s, server "
                          f"{rec['server_cpu_s'] / secs:.2f} cores, errors {rec['errors']}", file=sys.stderr)
    finally:
        server.stop()

    # The in-process anchors, after the server is gone, so that they have the machine.
    for size in args.sizes:
        ra, dec = pos[size]
        if "engine" not in args.skip:
            n = engine_rows(args, size)
            csv_path = work / f"positions_{size}_{n}.csv"
            for kind, threads in (("mef", 1), ("mef", None), ("npy", 1), ("npy", None), ("dir", 1)):
                rec = measure_engine(args.insitu_bin, tile, csv_path, n, size, kind, threads, oracle,
                                     ra, dec, args.repeat)
                rec.update(size=size, kind={"dir": "out-dir"}.get(kind, kind),
                           threads=threads or os.cpu_count())
                engine.append(rec)
                print(f"engine {size}px {kind} threads={threads or 'all'}: {rec['rate']:,.0f}/s, "
                      f"{rec['per_cpu']:,.0f} per CPU-s, peak {rec['peak_kib'] / 1024:.0f} MiB", file=sys.stderr)
        if "astropy" not in args.skip:
            rec, err = call_worker(sys.executable, ["astropy", tile, work / f"positions_{size}.npz", size,
                                                    min(args.n_astropy, args.positions)], timeout=600)
            if rec is None:
                sys.exit(f"astropy worker failed: {err}")
            rec.update(size=size)
            astropy_recs.append(rec)
            print(f"astropy {size}px: {rec['n'] / rec['loop_s']:,.0f}/s", file=sys.stderr)
        if cutana_ok:
            for mode in ("zarr", "fits"):
                # Cutana's load balancer caps its workers at cores - 1 (one core for the
                # main process): asked for more, it would run that many anyway.
                n = args.n_cutana if mode == "fits" else max(
                    args.n_cutana, args.n_cutana_zarr * 64 * 64 // (size * size))
                rec = measure_cutana(args.cutana_python, tile, ra, dec, size, mode, n,
                                     max(1, os.cpu_count() - 1), oracle)
                rec.update(size=size, mode={"fits": "fits raw"}.get(mode, mode))
                cutana.append(rec)
                if "error" in rec:
                    print(f"cutana {size}px {mode} failed: {rec['error']}", file=sys.stderr)
                else:
                    print(f"cutana {size}px {mode}: {fmt_rate(rec['rate'])}/s, worker peak "
                          f"{rec['worker_peak_kib'] / 1024:.0f} MiB", file=sys.stderr)

    text = tables(args, http, engine, astropy_recs, cutana, versions)
    print(text)
    results = args.results or work / "results_load_cutout.md"
    results.write_text(text)
    results.with_suffix(".json").write_text(json.dumps(
        dict(versions=versions, http=http, engine=engine, astropy=astropy_recs, cutana=cutana),
        indent=1, default=str))
    print(f"written to {results}", file=sys.stderr)
    if any(r["errors"] for r in http):
        sys.exit("some requests failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
