"""Pure tests of the parity and evaluation maths, against values worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from armvww.analysis import parity
from armvww.analysis.evaluate import Confusion, read_labelled
from armvww.errors import InputError
from armvww.model import parse_model, tflite_build


def test_compare_against_hand_computed_figures() -> None:
    ref = np.array([[10, 0], [0, 10], [5, 4], [-128, 127], [40, 10]], np.int8)
    got = np.array([[10, 0], [0, 12], [3, 6], [-128, 127], [10, 40]], np.int8)
    st = parity.compare("X", got, ref, output_scale=0.5, contract=parity.Contract(32, 16))
    # |d| per logit: 0 0 | 0 2 | 2 2 | 0 0 | 30 30
    assert st.max_abs_lsb == 30
    assert st.max_abs_logit == pytest.approx(15.0)
    assert st.exact_share == pytest.approx(5 / 10)
    assert st.rmse_per_byte == pytest.approx(math.sqrt((4 + 4 + 4 + 900 + 900) / 10))
    # row 2 flips at reference margin 1 (near-tie), row 4 at margin 30 (hard)
    assert st.flips == [2, 4]
    assert st.flip_margins == [1, 30]
    assert st.disagreements == [4]
    assert st.argmax_agreement == pytest.approx(3 / 5)
    assert st.worst_input == 4
    assert not st.ok
    loose = parity.compare("X", got, ref, 0.5, parity.Contract(30, 30))
    assert loose.ok and loose.disagreements == []


def test_int8_extremes_do_not_wrap() -> None:
    a = np.array([[127, -128]], np.int8)
    b = np.array([[-128, 127]], np.int8)
    st = parity.compare("X", a, b, 1.0)
    assert st.max_abs_lsb == 255
    assert parity.tensor_stats(a, b) == (255, 0.0, 255.0)


def test_compare_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        parity.compare("X", np.zeros((3, 2), np.int8), np.zeros((2, 2), np.int8), 1.0)
    with pytest.raises(ValueError):
        parity.tensor_stats(np.zeros(3, np.int8), np.zeros(4, np.int8))


def test_compare_layers_finds_the_first_divergent_operator() -> None:
    model = parse_model(tflite_build.tiny_vww_model())
    idx = [*tflite_build.all_intermediate_tensors(model), model.output.index]
    rng = np.random.default_rng(0)
    ref = {t: rng.integers(-128, 128, size=(2, *model.tensors[t].shape)) for t in idx}
    got = {t: v.copy() for t, v in ref.items()}
    # the second operator's output is off by 3 in one element, everything after by 40
    order = [t for op in model.operators for t in op.outputs if t in ref]
    assert len(order) >= 3
    got[order[1]][0].flat[0] += 3
    for t in order[2:]:
        got[t] = got[t] + 40
    rep = parity.compare_layers(model, got, ref, backend="X", contract=parity.Contract(32, 16))
    assert [s.tensor for s in rep.layers] == order
    assert rep.first_inexact is not None and rep.first_inexact.tensor == order[1]
    assert rep.first_inexact.max_abs_lsb == 3
    n1 = ref[order[1]].size
    assert rep.first_inexact.exact_share == pytest.approx((n1 - 1) / n1)
    assert rep.first_over is not None and rep.first_over.tensor == order[2]
    assert rep.first_over.position == 2
    assert rep.first_over.op == model.operators[2].op
    d = rep.as_dict()
    assert d["first_over"]["tensor"] == order[2] and len(d["layers"]) == len(order)


def test_confusion_against_hand_counts() -> None:
    labels = [1, 1, 1, 0, 0, 1, 0]
    decisions = [1, 0, 1, 1, 0, 1, 0]
    c = Confusion.of(labels, decisions)
    assert (c.tp, c.fp, c.tn, c.fn) == (3, 1, 2, 1)
    assert c.matrix() == [[2, 1], [1, 3]]
    assert c.accuracy == pytest.approx(5 / 7)
    assert c.precision == pytest.approx(3 / 4)
    assert c.recall == pytest.approx(3 / 4)
    assert math.isnan(Confusion.of([0, 0], [0, 0]).precision)
    assert Confusion.of([0, 0], [0, 0]).as_dict()["precision"] is None


def test_read_labelled_csv_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("path,label,extra\nx/p.png,1,\n/abs/q.png,no_person,\n")
    assert read_labelled(tmp_path / "a.csv") == [
        (tmp_path / "x" / "p.png", 1),
        (Path("/abs/q.png"), 0),
    ]
    (tmp_path / "b.csv").write_text("p.png,person\nq.png,0\n")
    assert read_labelled(tmp_path / "b.csv") == [(tmp_path / "p.png", 1), (tmp_path / "q.png", 0)]
    (tmp_path / "c.csv").write_text("p.png,maybe\n")
    with pytest.raises(InputError):
        read_labelled(tmp_path / "c.csv")
    root = tmp_path / "set"
    for sub in ("person", "no_person"):
        (root / sub).mkdir(parents=True)
    (root / "person" / "a.png").write_bytes(b"x")
    (root / "no_person" / "b.png").write_bytes(b"x")
    assert sorted(read_labelled(root)) == [
        (root / "no_person" / "b.png", 0),
        (root / "person" / "a.png", 1),
    ]
