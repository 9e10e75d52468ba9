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
    paths: tuple[str, ...] = ("tests/armnn", "tests/parity"),
) -> dict[str, str]:
    """Run the Arm NN and parity suites via ``argv`` (a command prefix); return
    {test name: outcome}."""
    need_data()  # the lanes' expectations assume the models and photos are there
    junit = tmp_path / f"{lane}.xml"
    report = tmp_path / f"{lane}.txt"
    full_env = dict(os.environ, **env, ARMVWW_REPORT_FILE=str(report), ARMVWW_SHARED=str(SHARED))
    full_env.pop("ARMVWW_STRICT", None)  # the lane's expectations are asserted here instead
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
        kids = {c.tag for c in case}
        state = (
            "failed"
            if kids & {"failure", "error"}
            else "skipped"
            if "skipped" in kids
            else "passed"
        )
        outcomes[case.get("name", "?")] = state
    if report.exists():
        for line in report.read_text().splitlines():
            report_line(f"[{lane}] {line}")
    report_line(
        f"[{lane}] "
        + ", ".join(
            f"{k}={sum(v == k for v in outcomes.values())}" for k in ("passed", "skipped", "failed")
        )
    )
    assert proc.returncode == 0, f"{lane}: the Arm NN suite failed\n{tail}"
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


def _expect(outcomes: dict[str, str], passed: list[str], skipped: list[str] = ()) -> None:
    for name in passed:
        assert outcomes.get(name) == "passed", (name, outcomes.get(name), outcomes)
    for name in skipped:
        assert outcomes.get(name) == "skipped", (name, outcomes.get(name))


def test_trixie_amd64_cpuref(tmp_path: Path) -> None:
    tree = _build("amd64")
    out = _run_suite("trixie-amd64", _in_tree(tree), tmp_path, {})
    _expect(
        out,
        [
            "test_probe_reports_every_arm_nn_backend",
            "test_cli_backends_agrees_with_the_probe",
            "test_parity_against_litert[CpuRef-vww2]",
            "test_parity_against_litert[CpuRef-vww4]",
            "test_sample_decisions_match_litert",
            "test_options_are_feature_detected",
            "test_several_detectors_threads_and_closing",
            *PARITY_BOTH,
            "test_per_layer_points_at_the_perturbed_layer[CpuRef]",
            "test_armnn_backend_meets_the_contract[CpuRef-vww2]",
            "test_armnn_backend_meets_the_contract[CpuRef-vww4]",
            *_delegate_expected("amd64"),
        ],
        skipped=["test_parity_against_litert[CpuAcc-vww2]", "test_fallback_from_gpuacc_to_cpuacc"],
    )


def test_trixie_arm64_cpuacc_emulated(tmp_path: Path) -> None:
    tree = _build("arm64")
    argv = _in_tree(tree, "--env", "ARMVWW_EMULATION=qemu-user aarch64 on x86-64")
    out = _run_suite("trixie-arm64", argv, tmp_path, {})
    _expect(
        out,
        [
            "test_probe_reports_every_arm_nn_backend",
            "test_cli_backends_agrees_with_the_probe",
            "test_parity_against_litert[CpuAcc-vww2]",
            "test_parity_against_litert[CpuAcc-vww4]",
            "test_parity_against_litert[CpuRef-vww2]",
            "test_sample_decisions_match_litert",
            "test_fallback_from_gpuacc_to_cpuacc",
            "test_broken_opencl_icd_is_a_reason",
            "test_options_are_feature_detected",
            "test_several_detectors_threads_and_closing",
            *PARITY_BOTH,
            "test_per_layer_points_at_the_perturbed_layer[CpuAcc]",
            "test_armnn_backend_meets_the_contract[CpuAcc-vww2]",
            "test_armnn_backend_meets_the_contract[CpuAcc-vww4]",
            *_delegate_expected("arm64"),
        ],
        skipped=["test_parity_against_litert[GpuAcc-vww2]"],
    )


def test_host_debian_pyarmnn(tmp_path: Path) -> None:
    system_python = Path("/usr/bin/python3")
    code = "import pyarmnn, PIL, pytest"
    if (
        not system_python.exists()
        or subprocess.run([str(system_python), "-c", code], capture_output=True).returncode
    ):
        pytest.skip("needs Debian's python3 with python3-pyarmnn, python3-pil, python3-pytest")
    out = _run_suite(
        "host-debian", [str(system_python)], tmp_path, {"PYTHONPATH": str(REPO)}, ("tests/armnn",)
    )
    _expect(out, ["test_probe_reports_every_arm_nn_backend", "test_options_are_feature_detected"])
    version = subprocess.run(
        [str(system_python), "-c", "import pyarmnn; print(pyarmnn.ARMNN_VERSION)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if version.startswith("22."):  # bookworm's Arm NN 20.08: the PAD defect must be caught
        _expect(out, ["test_defective_runtime_is_refused_for_pad_models"])
    else:  # trixie's 23.08 on a Debian 13 host passes the PAD probe
        _expect(out, [], skipped=["test_defective_runtime_is_refused_for_pad_models"])
