#!/usr/bin/env python3
"""What vetting an untrusted model on Arm NN costs (:mod:`armvww.backends.armnn_vet`).

Run where Arm NN is usable, e.g. the x86 image (CpuRef, both routes: the image carries the
delegate)::

    tools/images.sh run x86 -- python benchmarks/vet_cost.py

Each measurement runs in a fresh process with its own empty cache folder, after the backend
probes (which every first open pays, vetted or not). "Unknown" models are vww2 and vww4 with
one byte of a weight changed, so they are not the pinned ML-zoo models and get vetted. Per
route and model, seconds for ``Backend.open``:

* ``off``: ``ArmNNOptions(vet="off")``, the first open of an unknown model without vetting;
* ``first``: the first vetted open in the process (starts the helper process, which imports
  pyarmnn or LiteRT, then forks the child that loads the model and runs it once);
* ``warm``: the first vetted open of another unknown model with the helper running;
* ``memory``: the same model again (verdict cached in memory);
* ``disk``: the same model in a new process (verdict read from the cache folder).

Figures, not assertions: print them and copy them into the README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))

CHILD = r"""
import dataclasses, hashlib, json, sys, time
import armvww
from armvww.backends import armnn

route, path, flip, modes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
data = open(path, "rb").read()

def unknown(k):
    b = bytearray(data)
    b[-4096 - k] ^= 1  # a byte of a weight buffer: the model stays valid, but is not pinned
    mm = armvww.parse_model(bytes(b))
    assert mm.known is None
    return mm

armnn.CpuRefBackend.availability()  # the probes, paid by every first open
out = {}
for mode in modes:
    m = unknown(flip if mode != "warm" else flip + 8)
    opts = armnn.ArmNNOptions(route=route, vet="off" if mode == "off" else "auto")
    t0 = time.perf_counter()
    s = armnn.CpuRefBackend.open(m, opts)
    out[mode] = round(time.perf_counter() - t0, 4)
    out[mode + "_info"] = s.info.get("vetting")
    s.close()
print("RESULT " + json.dumps(out))
"""


def run(route: str, model: Path, modes: list[str], cache: str) -> dict[str, object]:
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, route, str(model), "64", ",".join(modes)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        raise SystemExit(f"{route} {model.name}: {proc.stderr[-2000:]}")
    result: dict[str, object] = json.loads(line[0][len("RESULT ") :])
    return result


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows = []
    for route in ("parser", "delegate"):
        for name in ("vww2_50_50_INT8.tflite", "vww4_128_128_INT8.tflite"):
            path = SHARED / "models" / name
            with tempfile.TemporaryDirectory() as cache:
                off = run(route, path, ["off"], cache)
            with tempfile.TemporaryDirectory() as cache:
                first = run(route, path, ["first", "warm", "memory"], cache)
                disk = run(route, path, ["disk"], cache)
            rows.append((route, name.split("_")[0], off, first, disk))
    print("route     model  off(s)  first(s)  warm(s)  memory(s)  disk(s)")
    for route, model, off, first, disk in rows:
        print(
            f"{route:<9} {model:<5} {off['off']:>7} {first['first']:>9} {first['warm']:>8} "
            f"{first['memory']:>10} {disk['disk']:>8}"
        )
        print(f"          {first['first_info']} | {disk['disk_info']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
