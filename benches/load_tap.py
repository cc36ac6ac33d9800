#!/usr/bin/env python3
"""Load on `insitu serve`'s TAP sync endpoint: throughput, latency and peak memory under 1, 16
and 64 concurrent connections, driven by wrk.

Usage: load_tap.py [--insitu-bin PATH] [--rows N] [--duration S] [--connections 1 16 64]
                   [--threads N] [--results FILE] [--seed N]

The server (default target/release/insitu; build it with `cargo build --release -p
insitu-server`) serves one generated FITS binary table x.t of --rows rows (1,000,000: id, ra,
dec, mag) uniform on a 10 deg^2 patch (RA 150..153.34, Dec 2..5, as compare_crossmatch.py),
so that a 0.01 deg cone holds ~31 rows. Two workloads, each run for --duration seconds at
every connection count:

  cone     GET /tap/sync?LANG=ADQL&QUERY=SELECT * FROM x.t WHERE 1=CONTAINS(POINT('ICRS',ra,dec),
           CIRCLE('ICRS',a,d,0.01)), a VOTable (TABLEDATA) back; each request picks one of
           2,000 pre-encoded random centres in the patch.
  upload   POST /tap/sync, multipart/form-data: a 100-row CSV (half within 0.5" of a table
           source, half random in the patch) as part `t`, UPLOAD=t,param:t and
           SELECT u.uid, c.id FROM TAP_UPLOAD.t AS u JOIN x.t AS c
           ON DISTANCE(POINT('ICRS',u.ra,u.dec), POINT('ICRS',c.ra,c.dec)) < 1/3600; each request
           picks one of 50 pre-built bodies.

wrk (Debian package `wrk`) keeps the connections busy (closed loop, no think time) and its Lua
`done()` hook prints requests, errors (connect/read/write/timeout, and non-2xx statuses) and
latency percentiles. Errors must be zero: the script exits non-zero otherwise. Before the
runs, one answer of each workload is checked against numpy (cone rows, cross-match pairs).
Peak RSS is the server's VmHWM from /proc/PID/status, reset (clear_refs 5) before each run, so
each row shows that run's own peak; "RSS after" is VmRSS at its end.

wrk and the server share the machine: with few cores the load generator takes CPU from the
server (wrk uses --threads threads, default min(connections, 2)); the table says how many
cores there were. Work files (the table, cache and state folders, Lua scripts, bodies) go to
$INSITU_BENCH_WORK (default /tmp/insitu-load-bench); the table is kept for the next run.
Results: a markdown table on stdout and in --results (default
$INSITU_BENCH_WORK/results_load_tap.md), raw records beside it as JSON.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from bench_server import Server

REPO = Path(__file__).resolve().parent.parent
CENTRE = (151.67, 3.5)
DEC_HALF = 1.5
AREA_DEG2 = 10.0
CONE_R = 0.01
XMATCH_R_ARCSEC = 1.0
UPLOAD_ROWS = 100
N_CENTRES = 2000
N_BODIES = 50
BOUNDARY = "insitu-load-bench-boundary-7f3a9c"


def work_dir() -> Path:
    return Path(os.environ.get("INSITU_BENCH_WORK", "/tmp/insitu-load-bench"))


def patch():
    dec0, dec1 = CENTRE[1] - DEC_HALF, CENTRE[1] + DEC_HALF
    band = np.degrees(np.sin(np.radians(dec1)) - np.sin(np.radians(dec0)))  # deg^2 per deg of RA
    width = AREA_DEG2 / band
    return CENTRE[0] - width / 2, CENTRE[0] + width / 2, dec0, dec1


def uniform_patch(rng, n):
    ra0, ra1, dec0, dec1 = patch()
    ra = rng.uniform(ra0, ra1, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(dec0)), np.sin(np.radians(dec1)), n)))
    return ra, dec


def make_table(path: Path, rows: int, seed: int):
    """The served table, written once with astropy; returns its (id, ra, dec)."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    ra, dec = uniform_patch(rng, rows)
    ids = np.arange(rows, dtype=np.int64)
    if not path.exists():
        mag = rng.uniform(14, 25, rows).astype(np.float32)
        cols = [fits.Column(name="id", format="K", array=ids),
                fits.Column(name="ra", format="D", array=ra, unit="deg"),
                fits.Column(name="dec", format="D", array=dec, unit="deg"),
                fits.Column(name="mag", format="E", array=mag, unit="mag")]
        tmp = path.with_suffix(".tmp")
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(tmp, overwrite=True)
        tmp.rename(path)
    return ids, ra, dec


def unit_vectors(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def separation_deg(v, ra, dec):
    """Angles between the rows of v and one position, with atan2 (exact for small angles)."""
    w = unit_vectors(ra, dec)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(v, w), axis=-1), v @ w))


# ---------------------------------------------------------------------------------------------
# Requests


def cone_query(ra, dec) -> str:
    return ("SELECT * FROM x.t WHERE 1=CONTAINS(POINT('ICRS',ra,dec),"
            f"CIRCLE('ICRS',{ra:.6f},{dec:.6f},{CONE_R}))")


def cone_path(ra, dec) -> str:
    return "/tap/sync?" + urllib.parse.urlencode({"LANG": "ADQL", "QUERY": cone_query(ra, dec)})


XMATCH_QUERY = ("SELECT u.uid, c.id FROM TAP_UPLOAD.t AS u JOIN x.t AS c "
                "ON DISTANCE(POINT('ICRS',u.ra,u.dec), POINT('ICRS',c.ra,c.dec)) < "
                f"{XMATCH_R_ARCSEC / 3600!r}")


def upload_positions(rng, ra, dec):
    half = UPLOAD_ROWS // 2
    pick = rng.choice(len(ra), half, replace=False)
    # within 0.5": offsets small enough for a plane approximation
    off = rng.uniform(0, 0.5 / 3600, half)
    ang = rng.uniform(0, 2 * np.pi, half)
    nra = ra[pick] + off * np.cos(ang) / np.cos(np.radians(dec[pick]))
    ndec = dec[pick] + off * np.sin(ang)
    rra, rdec = uniform_patch(rng, UPLOAD_ROWS - half)
    return np.concatenate([nra, rra]), np.concatenate([ndec, rdec])


def multipart_body(ura, udec) -> bytes:
    csv = "uid,ra,dec\r\n" + "".join(f"{i},{float(a)!r},{float(d)!r}\r\n" for i, (a, d) in enumerate(zip(ura, udec)))
    parts = []
    for name, value in (("LANG", "ADQL"), ("QUERY", XMATCH_QUERY), ("UPLOAD", "t,param:t"),
                        ("RESPONSEFORMAT", "csv")):
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n')
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="t"; filename="t.csv"\r\n'
                 f"Content-Type: text/csv\r\n\r\n{csv}\r\n--{BOUNDARY}--\r\n")
    return "".join(parts).encode()


def lua_string(s) -> str:
    """A quoted Lua string holding s byte for byte (a long bracket string would turn CRLF,
    which multipart bodies need, into LF)."""
    if isinstance(s, bytes):
        s = s.decode("latin-1")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n") + '"'


# Each wrk thread has its own Lua state: setup() numbers them so that each draws its own
# sequence of requests.
LUA_SEED = """
local next_tid = 0
setup = function(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
init = function(args)
  math.randomseed(os.time() * 100 + tid)
end
"""

LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


def cone_script(paths) -> str:
    items = ",\n".join(lua_string(p) for p in paths)
    return f"""
local paths = {{
{items}
}}
local n = #paths
request = function()
  return wrk.format("GET", paths[math.random(n)])
end
""" + LUA_SEED + LUA_DONE


def upload_script(bodies) -> str:
    items = ",\n".join(lua_string(b) for b in bodies)
    return f"""
local bodies = {{
{items}
}}
local n = #bodies
local headers = {{["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"}}
request = function()
  return wrk.format("POST", "/tap/sync", headers, bodies[math.random(n)])
end
""" + LUA_SEED + LUA_DONE


# ---------------------------------------------------------------------------------------------
# The server


def fetch(url, body=None, headers=None) -> bytes:
    req = urllib.request.Request(url, data=body, headers=headers or {})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


def check_answers(base, ids, ra, dec, centres, bodies_pos):
    """One cone and one cross-match, against numpy, before any load."""
    v = unit_vectors(ra, dec)
    a, d = centres[0]
    q = cone_query(a, d)
    got = fetch(base + "/tap/sync?" + urllib.parse.urlencode({"LANG": "ADQL", "QUERY": q,
                                                              "RESPONSEFORMAT": "csv"})).decode()
    got_ids = sorted(int(line.split(",")[0]) for line in got.splitlines()[1:] if line)
    want = sorted(ids[separation_deg(v, round(a, 6), round(d, 6)) <= CONE_R].tolist())
    if got_ids != want:
        sys.exit(f"cone answer differs from numpy: {len(got_ids)} rows vs {len(want)}")
    ura, udec = bodies_pos[0]
    got = fetch(base + "/tap/sync", multipart_body(ura, udec),
                {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}).decode()
    got_pairs = sorted(tuple(map(int, line.split(","))) for line in got.splitlines()[1:] if line)
    want_pairs = []
    for i, (x, y) in enumerate(zip(ura, udec)):
        want_pairs += [(i, int(j)) for j in ids[separation_deg(v, x, y) < XMATCH_R_ARCSEC / 3600]]
    if got_pairs != sorted(want_pairs):
        sys.exit(f"cross-match answer differs from numpy: {len(got_pairs)} pairs vs {len(want_pairs)}")
    return len(want), len(want_pairs)


def run_wrk(wrk, base, script: Path, connections, threads, duration) -> dict:
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "60s",
           "-s", str(script), base]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 180)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if r.returncode != 0 or line is None:
        sys.exit(f"wrk failed ({r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")
    return json.loads(line[len("WRKJSON "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--insitu-bin", type=Path, default=REPO / "target" / "release" / "insitu")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--duration", type=int, default=15, help="seconds per run")
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--threads", type=int, default=None, help="wrk threads (default min(connections, 2))")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk not found: apt-get install wrk")
    if not args.insitu_bin.is_file():
        sys.exit(f"{args.insitu_bin} not found: cargo build --release -p insitu-server")
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    table = work / f"t_{args.rows}_{args.seed}.fits"
    t0 = time.perf_counter()
    ids, ra, dec = make_table(table, args.rows, args.seed)
    print(f"table: {table} ({args.rows:,} rows, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    rng = np.random.default_rng(args.seed + 1)
    centres = list(zip(*uniform_patch(rng, N_CENTRES)))
    bodies_pos = [upload_positions(rng, ra, dec) for _ in range(N_BODIES)]
    cone_lua = work / "cone.lua"
    cone_lua.write_text(cone_script([cone_path(a, d) for a, d in centres]))
    upload_lua = work / "upload.lua"
    upload_lua.write_text(upload_script([multipart_body(a, d) for a, d in bodies_pos]), encoding="latin-1")

    server = Server(args.insitu_bin, work, ["--table", f"x.t={table}"])
    records = []
    try:
        t0 = time.perf_counter()
        cone_rows, pairs = check_answers(server.base, ids, ra, dec, centres, bodies_pos)
        print(f"answers checked against numpy ({cone_rows} cone rows, {pairs} pairs; first queries "
              f"{time.perf_counter() - t0:.1f} s); startup VmHWM {server.status('VmHWM') / 1024:.0f} MiB",
              file=sys.stderr)
        for name, script in (("cone", cone_lua), ("upload", upload_lua)):
            for c in args.connections:
                threads = args.threads or min(c, 2)
                server.reset_peak()
                rec = run_wrk(wrk, server.base, script, c, threads, args.duration)
                rec.update(workload=name, connections=c, threads=threads,
                           vmhwm_kib=server.status("VmHWM"), vmrss_kib=server.status("VmRSS"))
                rec["errors"] = sum(rec[k] for k in ("connect", "read", "write", "status", "timeout"))
                records.append(rec)
                print(f"{name} c={c}: {rec['requests'] / (rec['duration_us'] / 1e6):.1f} req/s, "
                      f"errors {rec['errors']}", file=sys.stderr)
    finally:
        server.stop()

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    lines = [f"insitu serve ({args.insitu_bin}), {args.rows:,}-row FITS table, {args.duration} s per run, "
             f"wrk on the same machine; {os.cpu_count()} cores ({cpu}), Linux {platform.release()}",
             "",
             "| workload | connections | requests/s | p50 ms | p99 ms | errors | peak RSS MiB | RSS after MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['workload']} | {r['connections']} | {r['requests'] / (r['duration_us'] / 1e6):.1f} | "
                     f"{r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | {r['errors']} | "
                     f"{r['vmhwm_kib'] / 1024:.0f} | {r['vmrss_kib'] / 1024:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    results = args.results or work / "results_load_tap.md"
    results.write_text(text)
    results.with_suffix(".json").write_text(json.dumps(records, indent=1))
    print(f"written to {results}", file=sys.stderr)
    if any(r["errors"] for r in records):
        sys.exit("some requests failed")


if __name__ == "__main__":
    main()
