"""Run the Arm NN suite (tests/armnn) for real, in three places, and check what passed:

* ``trixie-amd64``: a Debian trixie tree (Arm NN 23.08, CpuRef; LiteRT) run with chroot;
* ``trixie-arm64``: the same for arm64 (CpuAcc NEON kernels, CpuRef, GpuAcc without an
  OpenCL driver; LiteRT), run under qemu-user: real Arm code on an emulated CPU;
* ``host-debian``: the host's own Debian python3 with the distribution's pyarmnn; on
  bookworm that is 20.08, which must be detected as defective for vww2.

Trees are built by ``tools/debtree.py`` from ``docker/packages/*.txt`` (the lists the
Dockerfiles install) into ``.cache/trees``. Needs root (chroot, binfmt_misc) and the apt
archive; CI has both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ..conftest import REPO, SHARED, need_data, report_line

pytestmark = [pytest.mark.trees, pytest.mark.slow]

TREES = Path(os.environ.get("ARMVWW_TREES_DIR", REPO / ".cache" / "trees"))
DEBTREE = REPO / "tools" / "debtree.py"
LITERT_PIN = "ai-edge-litert==2.3.0"


def _require_root() -> None:
    need_data()
    if os.geteuid() != 0:
        pytest.skip("building and entering Debian trees needs root (chroot, binfmt_misc)")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb (a Debian host)")


def _build(arch: str) -> Path:
    _require_root()
    dest = TREES / f"trixie-{arch}"
    cmd = [
        sys.executable,
        str(DEBTREE),
        "build",
        "--suite",
        "trixie",
        "--arch",
        arch,
        "--dest",
        str(dest),
        "--packages-file",
        str(REPO / "docker" / "packages" / f"trixie-armnn-{arch}.txt"),
        "--pip",
        LITERT_PIN,
    ]
    subprocess.run(cmd, check=True, timeout=1800)
    return dest


PARITY_BOTH = [
    "test_eval_confusion_matches_independent_counts[vww2]",
    "test_eval_confusion_matches_independent_counts[vww4]",
    "test_eval_cli_folder_and_csv_agree",
    "test_litert_builtin_kernels_against_xnnpack[vww2]",
    "test_litert_builtin_kernels_against_xnnpack[vww4]",
    "test_rewritten_outputs_equal_preserved_tensors",
    "test_per_layer_points_at_the_perturbed_layer[LiteRT]",
    "test_cli_per_layer_on_a_perturbed_model",
    "test_cli_exit_codes_follow_the_contract",
]


def _run_suite(
    lane: str,
    argv: list[str],
    tmp_path: Path,
    env: dict[str, str],
    expected_skips: dict[str, str],
    paths: tuple[str, ...] = ("tests/armnn", "tests/parity"),
) -> dict[str, str]:
    """Run the Arm NN and parity suites via ``argv`` (a command prefix); return
    {test name: outcome} (also under ``module::name``). Strict inside the lane: every skip
    must match ``expected_skips`` (:func:`_expect_skips`), and every expectation must skip."""
    need_data()  # the lanes' expectations assume the models and photos are there
    junit = tmp_path / f"{lane}.xml"
    report = tmp_path / f"{lane}.txt"
    reasons: dict[str, str] = {}
    full_env = dict(os.environ, **env, ARMVWW_REPORT_FILE=str(report), ARMVWW_SHARED=str(SHARED))
    # the lane's skips are checked by name and reason here (_expect_skips) instead
    full_env.pop("ARMVWW_STRICT", None)
    cmd = [
        *argv,
        "-m",
        "pytest",
        *paths,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-o",
        "addopts=-ra",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=2400)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
    assert junit.exists(), f"{lane}: no junit report\n{tail}"
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).iter("testcase"):
        kids = {c.tag: c for c in case}
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "?")
        if kids.keys() & {"failure", "error"}:
            state = "failed"
        elif "skipped" in kids:
            state = "skipped"
            reasons[f"{module}::{name}"] = kids["skipped"].get("message") or ""
        else:
            state = "passed"
        outcomes[name] = state
        outcomes[f"{module}::{name}"] = state
    if report.exists():
        for line in report.read_text().splitlines():
            report_line(f"[{lane}] {line}")
    report_line(
        f"[{lane}] "
        + ", ".join(
            f"{k}={sum(v == k for n, v in outcomes.items() if '::' in n)}"
            for k in ("passed", "skipped", "failed")
        )
    )
    assert proc.returncode == 0, f"{lane}: the Arm NN suite failed\n{tail}"
    _expect_skips(lane, reasons, expected_skips)
    return outcomes


def _in_tree(tree: Path, *options: str) -> list[str]:
    """Command prefix that runs the tree's python3 with the repo and ../shared visible."""
    return [
        sys.executable,
        str(DEBTREE),
        "run",
        "--tree",
        str(tree),
        "--bind",
        str(SHARED),
        *options,
        "--",
        "python3",
    ]


#: tests/armnn/test_armnn_delegate.py cases every lane runs when the project's delegate build
#: (tools/armnn_delegate.py) is in .cache/armnn-delegate/<arch>; before it is built they skip.
DELEGATE_ANY = [
    "test_auto_route_prefers_the_parser_and_takes_the_delegate_for_its_options",
    "test_pure_armnn_and_the_option_keys",
    "test_profiling_is_refused_on_the_delegate_route",
    "test_later_runtime_options_are_refused_not_ignored",
    "test_detector_cycles_do_not_load_new_networks",
    "test_cli_backends_parity_and_bench_put_both_routes_side_by_side",
    "test_fastest_measures_each_route",
]
DELEGATE_LANE = {
    "amd64": [
        *DELEGATE_ANY,
        "test_delegate_matches_parser_bit_for_bit[CpuRef-vww2]",
        "test_delegate_matches_parser_bit_for_bit[CpuRef-vww4]",
    ],
    "arm64": [
        *DELEGATE_ANY,
        "test_delegate_matches_parser_bit_for_bit[CpuAcc-vww2]",
        "test_delegate_matches_parser_bit_for_bit[CpuAcc-vww4]",
        "test_delegate_matches_parser_bit_for_bit[CpuRef-vww2]",
        "test_delegate_matches_parser_bit_for_bit[CpuRef-vww4]",
    ],
}


def _delegate_expected(arch: str) -> list[str]:
    """The delegate cases the lane must pass: all of them once the build is there."""
    built = REPO / ".cache" / "armnn-delegate" / arch / "libarmnnDelegate.so"
    return DELEGATE_LANE[arch] if built.is_file() else []


def _expect(outcomes: dict[str, str], passed: list[str]) -> None:
    for name in passed:
        assert outcomes.get(name) == "passed", (name, outcomes.get(name), outcomes)


def _expect_skips(lane: str, reasons: dict[str, str], expected: dict[str, str]) -> None:
    """Strict mode inside a lane: each skipped test (``module::name``) must match one of the
    ``expected`` patterns (``*`` is the only wildcard) *and* its skip reason must contain
    that pattern's reason text; and each expected pattern must have skipped at least once
    (a stale expectation is an error too, so the lists follow the lanes)."""
    unexpected = {}
    used: set[str] = set()
    for test, reason in reasons.items():
        hits = [p for p, why in expected.items() if _glob(p).fullmatch(test) and why in reason]
        if hits:
            used.update(hits)
        else:
            unexpected[test] = reason
    assert not unexpected, f"{lane}: unexpected skips (name or reason): {unexpected}"
    stale = sorted(set(expected) - used)
    assert not stale, f"{lane}: expected to skip, but did not: {stale}"


def _glob(pattern: str) -> re.Pattern[str]:
    """``*`` matches anything; everything else (brackets of parameter ids too) is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def _no_delegate(arch: str) -> dict[str, str]:
    """Before the project's delegate build is in .cache (``make test`` does not build it
    yet; no Debian release packages it), the delegate route's tests skip with this reason."""
    if _delegate_expected(arch):
        return {}
    return {
        "test_armnn_delegate::*": "no Arm NN delegate here",
        "*::*-delegate]": "delegate route: no libarmnnDelegate.so found",
    }


# Skips of a lane without CpuAcc/GpuAcc (x86 hosts: Arm NN builds them for Arm CPUs only).
NO_ARM_BACKENDS = {
    "*::*[CpuAcc-*]": "CpuAcc ",
    "*::*[GpuAcc-*]": "GpuAcc ",
    "*::*[CpuAcc]": "CpuAcc is unavailable here",
    "*::*[GpuAcc]": "GpuAcc is unavailable here",
    "*::test_fallback_from_gpuacc_to_cpuacc": "CpuAcc unavailable here",
    "*::test_broken_opencl_icd_is_a_reason": "needs the GpuAcc backend",
    "*::test_cpu_threads_sets_the_compute_library_thread_pool": "CpuAcc unavailable here",
    "*::test_cpu_fast_math_is_a_no_op_for_int8": "CpuAcc unavailable here",
    "*::test_offloaded_layers_are_reported": "CpuAcc unavailable here",
}


ARMNN_ALL = [  # pass in every lane with a non-defective Arm NN
    "test_probe_reports_every_arm_nn_backend",
    "test_cli_backends_agrees_with_the_probe",
    "test_sample_decisions_match_litert",
    "test_defective_runtime_is_refused_for_pad_models",
    "test_options_are_feature_detected",
    "test_profiling_reports_every_workload",
    "test_first_layers_against_the_int8_reference",
    "test_several_detectors_threads_and_closing",
    "test_a_model_that_crashes_arm_nn_is_a_typed_error",
    "test_vetting_verdicts_are_cached_in_memory_and_on_disk",
    *PARITY_BOTH,
]


def test_trixie_amd64_cpuref(tmp_path: Path) -> None:
    tree = _build("amd64")
    skips = _no_delegate("amd64") | NO_ARM_BACKENDS
    out = _run_suite("trixie-amd64", _in_tree(tree), tmp_path, {}, skips)
    _expect(
        out,
        [
            *ARMNN_ALL,
            "test_parity_against_litert[CpuRef-vww2]",
            "test_parity_against_litert[CpuRef-vww4]",
            "test_per_layer_points_at_the_perturbed_layer[CpuRef]",
            "test_armnn_backend_meets_the_contract[CpuRef-vww2]",
            "test_armnn_backend_meets_the_contract[CpuRef-vww4]",
            *_delegate_expected("amd64"),
        ],
    )


def test_trixie_arm64_cpuacc_emulated(tmp_path: Path) -> None:
    tree = _build("arm64")
    argv = _in_tree(tree, "--env", "ARMVWW_EMULATION=qemu-user aarch64 on x86-64")
    no_gpu = "GpuAcc unavailable here"  # no OpenCL driver in the tree (the PoCL lane has one)
    skips = _no_delegate("arm64") | {
        "*::test_parity_against_litert[GpuAcc-*]": no_gpu,
        "*::test_parity_against_litert[CpuRef-vww4]": "too slow here",
        "*::test_per_layer_points_at_the_perturbed_layer[GpuAcc]": "GpuAcc is unavailable here",
        # CpuRef's per-layer check runs natively in the amd64 lane
        "*::test_per_layer_points_at_the_perturbed_layer[CpuRef]": "CpuRef per-layer under qemu",
        "*::test_armnn_backend_meets_the_contract[GpuAcc-*]": "GpuAcc is unavailable here",
        "*::test_armnn_backend_meets_the_contract[CpuRef-vww4]": "too slow here",
        "*::test_eight_threads_give_the_serial_answers[GpuAcc-*]": "GpuAcc",
    }
    out = _run_suite("trixie-arm64", argv, tmp_path, {}, skips)
    _expect(
        out,
        [
            *ARMNN_ALL,
            "test_parity_against_litert[CpuAcc-vww2]",
            "test_parity_against_litert[CpuAcc-vww4]",
            "test_parity_against_litert[CpuRef-vww2]",
            "test_fallback_from_gpuacc_to_cpuacc",
            "test_broken_opencl_icd_is_a_reason",
            "test_cpu_threads_sets_the_compute_library_thread_pool",
            "test_cpu_fast_math_is_a_no_op_for_int8",
            "test_offloaded_layers_are_reported",
            "test_per_layer_points_at_the_perturbed_layer[CpuAcc]",
            "test_armnn_backend_meets_the_contract[CpuAcc-vww2]",
            "test_armnn_backend_meets_the_contract[CpuAcc-vww4]",
            *_delegate_expected("arm64"),
        ],
    )


def test_host_debian_pyarmnn(tmp_path: Path) -> None:
    """Debian's own python3 and pyarmnn (bookworm: 20.08, which must be refused for vww2 by
    the PAD probe, and shown wrong against a stored LiteRT answer; no LiteRT here)."""
    system_python = Path("/usr/bin/python3")
    code = "import pyarmnn, PIL, pytest, tqdm, flatbuffers"
    if (
        not system_python.exists()
        or subprocess.run([str(system_python), "-c", code], capture_output=True).returncode
    ):
        pytest.skip(
            "needs Debian's python3 with python3-pyarmnn, python3-pil, python3-pytest, "
            "python3-tqdm, python3-flatbuffers (make host-deps)"
        )
    version = subprocess.run(
        [str(system_python), "-c", "import pyarmnn; print(pyarmnn.ARMNN_VERSION)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    bookworm = version.startswith("22.")  # Arm NN 20.08: the PAD defect must be caught
    no_litert = "LiteRT is not installed"
    # tests/armnn only: the per-layer tests of tests/parity do not run here
    per_layer = {"*::*[CpuAcc]", "*::*[GpuAcc]"}
    # The delegate is never built for the host; make test builds the amd64 one for the
    # trixie lanes, and the host's Debian python3 then finds it but has no LiteRT to load it.
    if _delegate_expected("amd64"):
        no_delegate = "the delegate route needs LiteRT"
        skips = {"test_armnn_delegate::*": no_delegate, "*::*-delegate]": no_delegate}
    else:
        skips = {
            "test_armnn_delegate::*": "no Arm NN delegate here",
            "*::*-delegate]": "delegate route: no libarmnnDelegate.so found",
        }
    skips |= {k: v for k, v in NO_ARM_BACKENDS.items() if k not in per_layer}
    skips |= {
        "*::test_parity_against_litert[CpuRef-*]": no_litert,
        "*::test_sample_decisions_match_litert": no_litert,
    }
    if bookworm:
        skips |= {
            "*::test_profiling_reports_every_workload": "cannot read its profiler",
            "*::test_first_layers_against_the_int8_reference": "no non-defective",
            "*::test_several_detectors_threads_and_closing": "no non-defective",
            "*::test_eight_threads_give_the_serial_answers[CpuRef-parser]": "PAD probe",
        }
    else:  # trixie's 23.08 on a Debian 13 host passes the PAD probe
        skips["*::test_first_layers_against_the_int8_reference"] = "needs LiteRT"
    out = _run_suite(
        "host-debian",
        [str(system_python)],
        tmp_path,
        {"PYTHONPATH": str(REPO)},
        skips,
        ("tests/armnn",),
    )
    _expect(
        out,
        [
            "test_probe_reports_every_arm_nn_backend",
            "test_cli_backends_agrees_with_the_probe",
            "test_options_are_feature_detected",
            "test_defective_runtime_is_refused_for_pad_models",
            "test_a_model_that_crashes_arm_nn_is_a_typed_error",
            "test_vetting_verdicts_are_cached_in_memory_and_on_disk",
        ],
    )
