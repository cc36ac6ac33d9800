#!/usr/bin/env python3
"""A bulk cutout job at scale against `insitu serve` on its demo volume: how long N rows take
(three bands, stitched where a cutout crosses a tile edge) and the server's peak memory, which
must stay bounded whatever the size of the result.

Usage: bulk_job.py [--insitu-bin PATH] [--rows N] [--size 64px] [--format npy|tar|zip|fits]

The server (default target/release/insitu) starts with a fresh cache and state folder under
$INSITU_BENCH_WORK (default /tmp/insitu-bulk-bench), writes the demo volume (2×2 tiles of 512²
in VIS, NIR_Y, NIR_H), and gets one job: N positions uniform over the 2×2 block, SIZE, all
three bands. Printed: the job's phase and progress, wall time from submission to COMPLETED,
the result's size, and the server's VmHWM (peak RSS) at start and at the end.
"""

import argparse
import csv
import io
import re
import shutil
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
PROGRESS = "{urn:insitu:uws:progress}progress"
CENTRE = (267.38, 65.5)  # the demo block's centre
HALF_DEG = 0.0142  # a tile is 512 × 0.1″ = 0.0142°: the block spans ±0.0142°


def start(binary: Path, work: Path):
    proc = subprocess.Popen([str(binary), "serve", "--listen", "127.0.0.1:0",
                             "--cache-dir", str(work / "cache"), "--state-dir", str(work / "state")],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"on (http://127\.0\.0\.1:\d+)/tap", re.sub(r"\x1b\[[0-9;]*m", "", line))
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1)
    raise SystemExit(f"insitu serve did not start (exit {proc.wait()})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--insitu-bin", type=Path, default=REPO / "target" / "release" / "insitu")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--size", default="64px")
    ap.add_argument("--format", default="npy", choices=["npy", "tar", "zip", "fits"])
    args = ap.parse_args()
    work = Path(__import__("os").environ.get("INSITU_BENCH_WORK", "/tmp/insitu-bulk-bench"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    proc, base = start(args.insitu_bin, work)
    peak = lambda: int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{proc.pid}/status").read_text())[1]) >> 10
    try:
        rng = np.random.default_rng(1)
        dec = CENTRE[1] + rng.uniform(-HALF_DEG, HALF_DEG, args.rows)
        ra = CENTRE[0] + rng.uniform(-HALF_DEG, HALF_DEG, args.rows) / np.cos(np.radians(CENTRE[1]))
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["id", "ra", "dec"])
        writer.writerows((i, repr(float(a)), repr(float(d))) for i, (a, d) in enumerate(zip(ra, dec)))
        print(f"startup peak RSS {peak()} MiB")
        started = time.monotonic()
        r = requests.post(base + "/cutout/async", allow_redirects=False,
                          data={"SIZE": args.size, "BAND": "VIS,NIR_Y,NIR_H", "FORMAT": args.format,
                                "PHASE": "RUN"},
                          files={"catalog": ("targets.csv", text.getvalue().encode())})
        job = r.headers["Location"]
        while True:
            doc = ET.fromstring(requests.get(job, params={"WAIT": "5"}).content)
            phase = doc.find(f"{UWS}phase").text
            if phase not in ("PENDING", "QUEUED", "EXECUTING"):
                break
        seconds = time.monotonic() - started
        progress = doc.find(f"{UWS}jobInfo/{PROGRESS}")
        size = sum(p.stat().st_size for p in (work / "state" / "cutout-jobs").glob("*/results/cutouts.*"))
        print(f"{phase}: {progress.attrib if progress is not None else '-'} rows, {seconds:.1f} s "
              f"({args.rows * 3 / seconds:,.0f} cutouts/s), result {size / 2**20:,.0f} MiB, "
              f"peak RSS {peak()} MiB")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
