"""Parity on real models and real runtimes, wherever this suite runs: LiteRT's two kernel
sets on any host, and every Arm NN backend available (the docker/ images, a Mali board).

Tests that need a backend this machine lacks skip with the reason (marked ``optional``:
which backends exist is a property of the machine; the image lanes assert what passed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import armvww
from armvww import backends
from armvww.analysis import parity, parity_report
from armvww.analysis.common import BackendEntry, entry_options
from armvww.backends.litert import LiteRTOptions
from armvww.model import parse_model, store, tflite_build

from ..bounds import bound_lsb
from ..conftest import REPO, report_line
from .perturb import with_bias_shift

EMULATED = bool(os.environ.get("ARMVWW_EMULATION"))
ARMNN = ("CpuRef", "CpuAcc", "GpuAcc")
# generated inputs per (backend, model); CpuRef is slow natively on vww4 and very slow
# under qemu (0.4-1.7 s per vww2 inference)
N_INPUTS = {
    ("CpuRef", "vww2"): 4 if EMULATED else 200,
    ("CpuRef", "vww4"): 0 if EMULATED else 60,
    ("CpuAcc", "vww2"): 200,
    ("CpuAcc", "vww4"): 100,
    ("GpuAcc", "vww2"): 60,
    ("GpuAcc", "vww4"): 20,
}


def _need(name: str) -> None:
    av = backends.availability(name)
    if not av.available:
        pytest.skip(f"{name} is unavailable here: {av.reason}")
    if av.details.get("defective_pad"):
        pytest.skip(f"{name} fails the PAD probe here (Arm NN < 23.08); it is refused")


@pytest.fixture(autouse=True)
def _litert() -> None:
    if not backends.availability("LiteRT").available:
        pytest.skip("LiteRT (the reference) is not installed here")


def _inputs(model: armvww.model.Model, n: int, samples) -> list[np.ndarray]:
    with armvww.Detector(model, backend="LiteRT") as det:
        photos = [det.quantize(p) for p, _ in samples]
    return parity.generated_inputs(model, n, seed=1) + photos


@pytest.mark.litert
@pytest.mark.parametrize("model_name", ["vww2", "vww4"])
def test_litert_builtin_kernels_against_xnnpack(model_name: str, samples) -> None:
    model = store.load_model(model_name)
    qs = _inputs(model, 100, samples)
    rep = parity_report.run_parity(
        model,
        [BackendEntry("LiteRT", (("xnnpack", False),))],
        BackendEntry("LiteRT"),
        qs,
        parity.Contract(),
    )
    (r,) = rep["results"]
    assert "XNNPACK" in rep["reference"]["runtime"]
    assert "built-in" in r["runtime"]  # really a second configuration
    report_line(
        f"parity LiteRT built-in vs XNNPACK {model_name} ({len(qs)} inputs): max |d| "
        f"{r['max_abs_lsb']} LSB, exact {r['exact_share']:.1%}, argmax "
        f"{r['argmax_agreement']:.1%}, flips at margins {r['flip_margins']}"
    )
    assert r["n_inputs"] == len(qs)
    assert r["ok"], r
    assert rep["exit_code"] == 0
    assert r["exact_share"] >= 0.25  # measured 31-80% (vww4 lowest)
    assert all(m <= parity.Contract().near_tie_lsb for m in r["flip_margins"])
    # the evidence bound (tests/bounds.py), tighter than the user-facing contract above
    assert r["max_abs_lsb"] <= bound_lsb("LiteRT:xnnpack=False", model_name)


@pytest.mark.litert
def test_rewritten_outputs_equal_preserved_tensors(vww2_bytes: bytes, samples) -> None:
    """Two independent ways to read every tensor of the same kernels agree bit for bit:
    LiteRT's preserve_all_tensors, and the model rewritten with extra outputs."""
    model = parse_model(vww2_bytes)
    qs = _inputs(model, 3, samples[:2])
    builtin = LiteRTOptions(xnnpack=False)
    rep = parity.per_layer(
        model,
        "LiteRT",
        qs,
        builtin,
        reference="LiteRT",
        reference_options=dataclasses.replace(builtin, preserve_all_tensors=True),
    )
    assert len(rep.layers) == len(tflite_build.all_intermediate_tensors(model)) + 1
    assert [s.max_abs_lsb for s in rep.layers] == [0] * len(rep.layers)
    assert rep.output_unchanged is True
    assert rep.layers[-1].tensor == model.output.index


def _perturbed_case(model_name: str, backend: str, options: object, samples, tmp_path: Path):
    model = store.load_model(model_name)
    convs = [i for i, op in enumerate(model.operators) if op.op == "CONV_2D"]
    k = convs[3]  # an early-middle convolution
    bad = parse_model(with_bias_shift(model, k, 120.0), "perturbed")
    assert bad.tensors == model.tensors and bad.operators == model.operators
    qs = _inputs(model, 2, samples[:1])
    base = parity.per_layer(model, backend, qs, options)
    # tolerance = the backend's own divergence before layer k, so only the change counts
    tol = max([s.max_abs_lsb for s in base.layers if s.position < k] + [0])
    contract = parity.Contract(tolerance_lsb=tol, near_tie_lsb=16)
    rep = parity.per_layer(model, backend, qs, options, contract, candidate_model=bad)
    return model, bad, k, base, rep, tol


@pytest.mark.litert
@pytest.mark.parametrize(
    "entry",
    ["LiteRT", "LiteRT:xnnpack=false"]
    + [pytest.param(n, marks=[pytest.mark.armnn, pytest.mark.optional]) for n in ARMNN],
)
def test_per_layer_points_at_the_perturbed_layer(entry: str, samples, tmp_path: Path) -> None:
    e = BackendEntry.parse(entry)
    if e.name in ARMNN:
        _need(e.name)
    if e.name == "CpuRef" and EMULATED:
        pytest.skip("CpuRef per-layer under qemu takes minutes; done natively (amd64 tree)")
    model, _, k, base, rep, tol = _perturbed_case(
        "vww2", e.name, entry_options(e), samples, tmp_path
    )
    before = {s.tensor: s for s in base.layers}
    over = rep.first_over
    assert over is not None, [s.max_abs_lsb for s in rep.layers]
    assert over.position == k, (over, k)
    assert over.op == model.operators[k].op and over.tensor == model.operators[k].outputs[0]
    for s in rep.layers:  # untouched layers are exactly as they were
        if s.position < k:
            assert s == before[s.tensor]
    report_line(
        f"per-layer {entry}: bias of op #{k} shifted 120 LSB -> first over {tol} LSB: "
        f"#{over.position} {over.op} max |d| {over.max_abs_lsb} LSB"
    )


@pytest.mark.litert
def test_cli_per_layer_on_a_perturbed_model(samples, tmp_path: Path, vww2_path: Path) -> None:
    model = store.load_model("vww2")
    convs = [i for i, op in enumerate(model.operators) if op.op == "CONV_2D"]
    k = convs[3]
    bad = tmp_path / "vww2_bad.tflite"
    bad.write_bytes(with_bias_shift(model, k, 120.0))
    photo = str(samples[0][0])
    argv = [
        sys.executable, "-m", "armvww", "parity", "--model", str(vww2_path),
        "--candidate-model", str(bad), "-b", "LiteRT", "--images", photo,
        "--inputs", "0", "--per-layer", "--tolerance-lsb", "0", "--json",
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    rep = json.loads(proc.stdout)
    # same kernels on both sides: every layer before k is exact, so tolerance 0 is fair
    over = rep["results"][0]["per_layer"]["first_over"]
    assert over["position"] == k and over["op"] == "CONV_2D"
    assert rep["results"][0]["max_abs_lsb"] > 0
    assert proc.returncode == parity_report.EXIT_CONTRACT_BROKEN == rep["exit_code"]


@pytest.mark.litert
def test_cli_exit_codes_follow_the_contract(vww2_path: Path, samples) -> None:
    photos = str(samples[0][0].parent.parent)
    base = [
        sys.executable, "-m", "armvww", "parity", "--model", str(vww2_path),
        "-b", "LiteRT:xnnpack=false", "--images", photos, "--json",
    ]  # fmt: skip
    ok = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=600)
    rep = json.loads(ok.stdout)
    assert ok.returncode == 0 and rep["ok"], ok.stderr
    worst = rep["results"][0]["max_abs_lsb"]
    assert worst > 0, "XNNPACK and the built-in kernels agree exactly on these photos"
    tight = subprocess.run(
        [*base, "--tolerance-lsb", str(worst - 1)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tight.returncode == parity_report.EXIT_CONTRACT_BROKEN
    assert json.loads(tight.stdout)["broken"] == ["LiteRT:xnnpack=False"]
    text = subprocess.run(
        [*base[:-1], "--tolerance-lsb", str(worst)], cwd=REPO, capture_output=True, text=True
    )
    assert text.returncode == 0 and "every backend meets the contract" in text.stdout
    missing = subprocess.run(
        [*base[:6], "-b", "NoSuchBackend", "--inputs", "2"], cwd=REPO, capture_output=True
    )
    assert missing.returncode == 16


@pytest.mark.armnn
@pytest.mark.optional
@pytest.mark.parametrize("route", ["parser", "delegate"])
@pytest.mark.parametrize("model_name", ["vww2", "vww4"])
@pytest.mark.parametrize("name", ARMNN)
def test_armnn_backend_meets_the_contract(name: str, model_name: str, route: str, samples) -> None:
    """Each Arm NN route of each backend against LiteRT, within the user-facing contract."""
    _need(name)
    n = N_INPUTS[(name, model_name)]
    if n == 0:
        pytest.skip(f"{name} on {model_name} is too slow here; measured natively elsewhere")
    have = backends.availability(name).details.get("routes", {}).get(route, {})
    if not have.get("available"):
        pytest.skip(f"{name}: {route} route: {have.get('reason')}")
    model = store.load_model(model_name)
    qs = _inputs(model, n, samples)
    entry = BackendEntry(name, (("route", route),))
    rep = parity_report.run_parity(model, [entry], BackendEntry("LiteRT"), qs, parity.Contract())
    assert rep["skipped"] == [], rep["skipped"]
    (r,) = rep["results"]
    assert ("TfLite delegate" in r["runtime"]) == (route == "delegate"), r["runtime"]
    report_line(
        f"parity {name} ({route}) {model_name} vs LiteRT XNNPACK ({len(qs)} inputs): max |d| "
        f"{r['max_abs_lsb']} LSB ({r['max_abs_logit']:.3f} logit), exact "
        f"{r['exact_share']:.1%}, rmse/byte {r['rmse_per_byte']:.3f}, argmax "
        f"{r['argmax_agreement']:.1%}, flips at margins {r['flip_margins']}"
        + (" [emulated]" if EMULATED else "")
    )
    assert r["ok"], r
    assert rep["exit_code"] == 0
    assert r["disagreements"] == []
