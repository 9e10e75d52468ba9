"""Run the suites for real inside the images users run (docker/), and check what passed:

* ``armvww:x86`` (docker/Dockerfile.x86: Debian trixie, Arm NN 23.08 CpuRef, LiteRT, the
  delegate of its build stage): the whole host suite;
* ``armvww:arm64`` (docker/Dockerfile.arm64, the board image: CpuAcc NEON kernels, CpuRef,
  GpuAcc without an OpenCL driver, LiteRT) under qemu-user, real Arm code on an emulated CPU:
  tests/armnn and tests/parity (the whole suite under qemu takes over 20 minutes), the strict
  JPEG check of its pinned simplejpeg, and the Mali driver's loading path
  (libOpenCL.so -> ICD -> /usr/lib/mali/libmali.so);
* ``host-debian``: the host's own Debian python3 with the distribution's pyarmnn; on
  bookworm that is 20.08, which must be detected as defective for vww2.

``make images`` (part of ``make test``) builds the images with tools/images.sh (mmdebstrap,
buildah; root) into .cache/images. Each image lane runs ``tools/images.sh run IMAGE`` (podman
run, the checkout at /src, ../shared at its own path, no network) and asserts its outcomes by
name: every skip expected by name and reason, the pass lists below.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ..conftest import REPO, SHARED, need_data, report_line

pytestmark = [pytest.mark.trees, pytest.mark.slow]

IMAGES = REPO / "tools" / "images.sh"


def _image(name: str) -> list[str]:
    """Command prefix running a command in armvww:NAME; skips when it cannot be run here."""
    need_data()
    if os.geteuid() != 0:
        pytest.skip("the image lanes need root (podman with the private store, binfmt_misc)")
    if shutil.which("podman") is None or shutil.which("buildah") is None:
        pytest.skip("the image lanes need podman and buildah (make host-deps)")
    exists = subprocess.run(["bash", str(IMAGES), "exists", name], capture_output=True)
    if exists.returncode != 0:
        pytest.skip(f"armvww:{name} is not built: make images (or tools/images.sh build {name})")
    return ["bash", str(IMAGES), "run", name]


def _in_image(name: str, tmp_path: Path) -> list[str]:
    """Command prefix that runs the image's python with ``tmp_path`` visible (reports)."""
    return [*_image(name), "--bind", str(tmp_path), "--", "python"]


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
    why_failed: list[str] = []  # each failure's own message (the tail may not show it)
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
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - start
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert junit.exists(), f"{lane}: no junit report\n{tail}"
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).iter("testcase"):
        kids = {c.tag: c for c in case}
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "?")
        if kids.keys() & {"failure", "error"}:
            state = "failed"
            bad = kids.get("failure", kids.get("error"))
            text = ((bad.get("message") or "") + "\n" + (bad.text or ""))[-3000:]
            why_failed.append(f"{module}::{name}: {text}")
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
        + f" in {took:.0f} s (load {os.getloadavg()[0]:.1f})"
    )
    failed = "\n".join(why_failed)
    assert proc.returncode == 0, f"{lane}: the Arm NN suite failed\n{failed}\n{tail}"
    _expect_skips(lane, reasons, expected_skips)
    return outcomes


#: The delegate route's cases each image lane must pass: both images carry the delegate of their
#: Dockerfile's build stage in /usr/local/lib (armvww:arm64's is cross-compiled on the build
#: machine), so a skip of any of them is an unexpected skip, a failure of the lane.
DELEGATE_ANY = [
    "test_auto_route_prefers_the_parser_and_takes_the_delegate_for_its_options",
    "test_pure_armnn_and_the_option_keys",
    "test_profiling_is_refused_on_the_delegate_route",
    "test_later_runtime_options_are_refused_not_ignored",
    "test_detector_cycles_do_not_load_new_networks",
    "test_cli_backends_parity_and_bench_put_both_routes_side_by_side",
    "test_fastest_measures_each_route",
    "test_exit_destroys_the_delegates_cleanly",
]
DELEGATE_LANE = {
    "amd64": [
        *DELEGATE_ANY,
        "test_delegate_matches_parser_bit_for_bit[CpuRef-vww2]",
        "test_delegate_matches_parser_bit_for_bit[CpuRef-vww4]",
        "test_armnn_backend_meets_the_contract[CpuRef-vww2-delegate]",
        "test_armnn_backend_meets_the_contract[CpuRef-vww4-delegate]",
        "test_eight_threads_give_the_serial_answers[CpuRef-delegate]",
    ],
    "arm64": [
        *DELEGATE_ANY,
        "test_delegate_matches_parser_bit_for_bit[CpuAcc-vww2]",
        "test_delegate_matches_parser_bit_for_bit[CpuAcc-vww4]",
        "test_delegate_matches_parser_bit_for_bit[CpuRef-vww2]",
        "test_delegate_matches_parser_bit_for_bit[CpuRef-vww4]",
        "test_armnn_backend_meets_the_contract[CpuAcc-vww2-delegate]",
        "test_armnn_backend_meets_the_contract[CpuAcc-vww4-delegate]",
        "test_armnn_backend_meets_the_contract[CpuRef-vww2-delegate]",
        "test_eight_threads_give_the_serial_answers[CpuAcc-delegate]",
        "test_eight_threads_give_the_serial_answers[CpuRef-delegate]",
    ],
}


def _project_delegate(arch: str) -> bool:
    return (REPO / ".cache" / "armnn-delegate" / arch / "libarmnnDelegate.so").is_file()


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


# Skips of a lane without CpuAcc/GpuAcc (x86 hosts: Arm NN builds them for Arm CPUs only).
NO_ARM_BACKENDS = {
    "*::*[CpuAcc-*]": "CpuAcc ",
    "*::*[GpuAcc-*]": "GpuAcc ",
    "*::*[CpuAcc]": "CpuAcc is unavailable here",
    "*::*[GpuAcc]": "GpuAcc is unavailable here",
    "*::test_fallback_from_gpuacc_to_cpuacc": "CpuAcc unavailable here",
    "*::test_broken_opencl_icd_is_a_reason": "needs the GpuAcc backend",
    "*::test_cpu_threads_sets_the_compute_library_thread_pool": "CpuAcc unavailable here",
    "*::test_cpu_threads_are_one_count_per_process[*]": "CpuAcc unavailable here",
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


#: the x86 image runs the whole host suite, except these lanes themselves and the check of
#: tools/host-deps.sh (a script for the host, not for the trixie image)
HOST_SUITE = ("tests", "--ignore=tests/trees", "--ignore=tests/test_host_deps.py")
#: skips of the host suite in armvww:x86 besides the Arm NN ones (name -> reason)
X86_SUITE_SKIPS = {
    # tests/gpuacc runs in armvww:gpuacc-pocl (make test-gpuacc) and on Mali boards
    "test_gpuacc_pocl::*": "GpuAcc lane only",
    "test_gpuacc_every_run::*": "GpuAcc lane only",
    "test_gpuacc_tuning::*": "GpuAcc lane only",
    # the image carries the delegate in /usr/local/lib (a standard place); the host suite
    # shows the "not found" hint running as printed
    "test_armnn_delegate::test_not_found_names_the_build_command_and_it_runs_as_printed": (
        "this machine has a delegate in a standard place"
    ),
    # the image has a real pyarmnn, so a fake "absent" one cannot be shown (the host lane can)
    "test_faults::*[pyarmnn-absent]": "pyarmnn is installed here",
    # podman gives the container no CAP_SYS_ADMIN to mount a tmpfs; the host suite runs it
    "test_faults::test_armnn_session_on_a_full_temp_dir_is_a_typed_error": "needs a real small",
    # tflite-runtime has its own lane (tests/trees/test_tflite_runtime_lane.py)
    "test_runtime_reporting::test_tflite_runtime_asked_for_xnnpack_reports_builtin_kernels": (
        "tflite-runtime is not installed"
    ),
}
#: the strict JPEG check: passes only where simplejpeg is installed (the images pin it)
JPEG_STRICT = (
    "tests/reliability/test_hostile.py::test_a_jpeg_cut_short_is_refused_whatever_closes_it"
)


def test_trixie_amd64_cpuref(tmp_path: Path) -> None:
    """The whole host suite in armvww:x86 (trixie, Arm NN 23.08 CpuRef, LiteRT, delegate)."""
    argv = _in_image("x86", tmp_path)
    skips = NO_ARM_BACKENDS | X86_SUITE_SKIPS
    out = _run_suite("armvww:x86", argv, tmp_path, {}, skips, HOST_SUITE)
    _expect(
        out,
        [
            *ARMNN_ALL,
            "test_parity_against_litert[CpuRef-vww2]",
            "test_parity_against_litert[CpuRef-vww4]",
            "test_per_layer_points_at_the_perturbed_layer[CpuRef]",
            "test_armnn_backend_meets_the_contract[CpuRef-vww2-parser]",
            "test_armnn_backend_meets_the_contract[CpuRef-vww4-parser]",
            *DELEGATE_LANE["amd64"],
            *_jpeg_strict(out),
        ],
    )


def _jpeg_strict(outcomes: dict[str, str]) -> list[str]:
    """Every parameter case of the strict JPEG test (they pass only with simplejpeg)."""
    path, _, name = JPEG_STRICT.partition("::")
    cases = [n for n in outcomes if n.startswith(f"{Path(path).stem}::{name}[")]
    assert len(cases) == 6, cases
    return cases


@pytest.mark.arm64
def test_trixie_arm64_cpuacc_emulated(tmp_path: Path) -> None:
    """tests/armnn and tests/parity in armvww:arm64 under qemu-user."""
    argv = _in_image("arm64", tmp_path)
    no_gpu = "GpuAcc unavailable here"  # no OpenCL driver in the image (the PoCL lane has one)
    skips = {
        "*::test_parity_against_litert[GpuAcc-*]": no_gpu,
        "*::test_parity_against_litert[CpuRef-vww4]": "too slow here",
        "*::test_per_layer_points_at_the_perturbed_layer[GpuAcc]": "GpuAcc is unavailable here",
        # CpuRef's per-layer check runs natively in the amd64 lane
        "*::test_per_layer_points_at_the_perturbed_layer[CpuRef]": "CpuRef per-layer under qemu",
        "*::test_armnn_backend_meets_the_contract[GpuAcc-*]": "GpuAcc is unavailable here",
        "*::test_armnn_backend_meets_the_contract[CpuRef-vww4-*]": "too slow here",
        "*::test_eight_threads_give_the_serial_answers[GpuAcc-*]": "GpuAcc",
    }
    paths = ("tests/armnn", "tests/parity", JPEG_STRICT)
    out = _run_suite("armvww:arm64", argv, tmp_path, {}, skips, paths)
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
            "test_cpu_threads_are_one_count_per_process[parser]",
            "test_cpu_threads_are_one_count_per_process[delegate]",
            "test_cpu_fast_math_is_a_no_op_for_int8",
            "test_offloaded_layers_are_reported",
            "test_per_layer_points_at_the_perturbed_layer[CpuAcc]",
            "test_armnn_backend_meets_the_contract[CpuAcc-vww2-parser]",
            "test_armnn_backend_meets_the_contract[CpuAcc-vww4-parser]",
            "test_armnn_backend_meets_the_contract[CpuRef-vww2-parser]",
            *DELEGATE_LANE["arm64"],
            *_jpeg_strict(out),
        ],
    )


# The board image must let Arm Compute Library reach the Mali driver as docker/README.md
# documents it: ACL dlopens "libOpenCL.so" by that exact name, the ICD loader behind it reads
# /etc/OpenCL/vendors/mali.icd and opens /usr/lib/mali/libmali.so (mounted on a board). Here a
# stand-in driver (a copy of a real arm64 library) sits at that path, and the dynamic
# loader's own log (LD_DEBUG=files) says who opened what. The control run removes
# libOpenCL.so (as in an image with only libOpenCL.so.1): then nothing opens the driver.
_OPENCL_PROBE = """
cp -L /usr/lib/aarch64-linux-gnu/libz.so.1 /usr/lib/mali/libmali.so
probe() {
  LD_DEBUG=files python -c 'import pyarmnn as a; a.IRuntime(a.CreationOptions())' 2>&1 \\
    | grep -E 'file=.*(libOpenCL|libmali).*dynamically loaded by' | sed 's/^ *[0-9]*: *//'
}
echo "== image"; probe
rm /usr/lib/aarch64-linux-gnu/libOpenCL.so
echo "== without libOpenCL.so"; probe
"""


@pytest.mark.arm64
def test_arm64_image_opens_the_mali_driver_through_libopencl_so() -> None:
    proc = subprocess.run(
        [*_image("arm64"), "--", "sh", "-c", _OPENCL_PROBE],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    image, _, control = proc.stdout.partition("== without libOpenCL.so")
    for line in proc.stdout.splitlines():
        report_line(f"[armvww:arm64 opencl] {line}")
    # ACL opens libOpenCL.so, and the ICD loader behind it opens the registered driver
    assert re.search(
        r"file=libOpenCL\.so \[0\];\s+dynamically loaded by \S*libarm_compute", image
    ), proc.stdout
    assert re.search(
        r"file=/usr/lib/mali/libmali\.so \[0\];\s+dynamically loaded by \S*libOpenCL", image
    ), proc.stdout
    assert "/usr/lib/mali/libmali.so" not in control, proc.stdout


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
    # The delegate is never built for the host; make test builds the amd64 one (the x86
    # image's build stage), and the host's Debian python3 then finds it but has no LiteRT.
    if _project_delegate("amd64"):
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
