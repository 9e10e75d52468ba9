"""Known truth beside images: labels.csv discovery, short names, the right/total tally."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from armvww import labels
from armvww.detector import Detection
from armvww.errors import ImageDecodeError, InputError


def _det(source: Path, person: bool, error: bool = False) -> Detection:
    return Detection(
        person=person,
        score=math.nan if error else float(person),
        raw=np.zeros(0 if error else 2, np.int8),
        backend="LiteRT",
        source=str(source),
        error=ImageDecodeError("bad") if error else None,
    )


def test_truth_from_the_nearest_labels_csv(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "labels.csv").write_text("path,label\na/p.png,1\na/n.png,no_person\n")
    truth, files = labels.truth_for([tmp_path / "a"])
    assert files == [tmp_path / "labels.csv"]
    assert truth == {str(tmp_path / "a" / "p.png"): 1, str(tmp_path / "a" / "n.png"): 0}
    # a file finds the same file; a second input with the same labels.csv reads it once
    truth2, files2 = labels.truth_for([tmp_path / "a" / "p.png", tmp_path])
    assert truth2 == truth and files2 == files
    assert labels.truth_for([b"bytes", Path("/nonexistent-armvww/x.png")]) == ({}, [])


def test_a_broken_labels_csv_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path,label\nx.png,maybe\n")
    with pytest.raises(InputError, match=r"labels.csv:2: unknown label 'maybe'"):
        labels.truth_for([tmp_path])


def test_tally_counts_right_wrong_unlabelled_and_failed(tmp_path: Path) -> None:
    truth = {str(tmp_path / "p.png"): 1, str(tmp_path / "n.png"): 0, str(tmp_path / "e.png"): 1}
    results = [
        _det(tmp_path / "p.png", True),  # right
        _det(tmp_path / "n.png", True),  # wrong
        _det(tmp_path / "u.png", False),  # no label
        _det(tmp_path / "e.png", False, error=True),  # failed
    ]
    t = labels.tally(results, truth)
    assert (t.right, t.wrong, t.unlabelled, t.failed, t.total) == (1, 1, 1, 1, 4)
    assert t.line() == "1 of 2 right (1 wrong); 1 without a label, 1 failed"
    assert labels.truth_of(results[1], truth) == 0 and labels.truth_of(results[2], truth) is None


def test_short_names_are_relative_to_the_folder_given(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    img = tmp_path / "sub" / "x.png"
    assert labels.short_name(str(img), [str(tmp_path)]) == "sub/x.png"
    assert labels.short_name(str(img), [str(img)]) == str(img)  # a file given stays as given
    assert labels.short_name("<4 bytes>", [str(tmp_path)]) == "<4 bytes>"
