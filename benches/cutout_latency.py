#!/usr/bin/env python3
"""Latency of one `GET /cutout` against `insitu serve` on its demo volume: a cutout inside one
tile, the same size at the corner where the demo's four tiles meet (stitched from the
neighbours), and its PNG preview. Median of --repeat requests each, on one keep-alive
connection.

Usage: cutout_latency.py [--insitu-bin PATH] [--size 256px] [--repeat 40]
(default binary target/release/insitu: `cargo build --release -p insitu-server`)
"""

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
CORNER = (267.38, 65.5)  # the demo block's centre, where its four tiles meet
INSIDE = (267.38 + 0.007 / 0.4147, 65.5 + 0.007)  # the middle of one tile (cos 65.5° = 0.4147)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--insitu-bin", type=Path, default=REPO / "target" / "release" / "insitu")
    ap.add_argument("--size", default="256px")
    ap.add_argument("--repeat", type=int, default=40)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="insitu-latency-"))
    proc = subprocess.Popen([str(args.insitu_bin), "serve", "--listen", "127.0.0.1:0",
                             "--cache-dir", str(work / "cache"), "--state-dir", str(work / "state")],
                            stderr=subprocess.PIPE, text=True)
    base = None
    for line in proc.stderr:
        m = re.search(r"on (http://127\.0\.0\.1:\d+)/tap", re.sub(r"\x1b\[[0-9;]*m", "", line))
        if m:
            base = m.group(1)
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    session = requests.Session()

    def median_ms(position, **extra):
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            r = session.get(base + "/cutout", params={"ra": position[0], "dec": position[1],
                                                      "size": args.size, "band": "VIS", **extra})
            times.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
        return statistics.median(times) * 1000

    try:
        if base is None:
            raise SystemExit(f"insitu serve did not start (exit {proc.wait()})")
        median_ms(INSIDE)  # the first request maps the tiles
        print(f"{args.size} VIS cutout, median of {args.repeat}:")
        print(f"  inside one tile        {median_ms(INSIDE):7.1f} ms")
        print(f"  stitched at the corner {median_ms(CORNER):7.1f} ms")
        print(f"  its PNG preview        {median_ms(CORNER, format='png'):7.1f} ms")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
