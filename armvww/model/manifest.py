"""The known ML-zoo visual-wake-words models: names, sizes, hashes and pinned download URLs.

A model whose name or SHA-1 appears here is verified on load (size and SHA-1); a mismatch is
a :class:`~armvww.errors.ModelIntegrityError`, never a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ML-zoo commit every URL below is pinned to (its LFS pointers and README tables were checked).
ML_ZOO_COMMIT = "fec0bb5bcd486eb2839cdb7d437d466067402a6a"
_BASE = f"https://github.com/ARM-software/ML-zoo/raw/{ML_ZOO_COMMIT}/models/visual_wake_words"

#: Output labels of every VWW model (ML-zoo README: 0 = no person, 1 = person).
LABELS: tuple[str, str] = ("no_person", "person")


@dataclass(frozen=True)
class KnownModel:
    """One entry of the manifest.

    ``normalisation`` documents the input contract: pixels are divided by 255 (to [0, 1])
    and then quantised with the model's own input scale and zero point.
    """

    name: str
    filename: str
    size: int
    sha1: str
    url: str
    input_hw: tuple[int, int]
    accuracy: float
    labels: tuple[str, str] = LABELS
    normalisation: str = "grey/255, then quantised with the input tensor's scale and zero point"
    licence: str = "Apache-2.0"


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name="vww2",
            filename="vww2_50_50_INT8.tflite",
            size=280384,
            sha1="5d887ca438c0a7feeed3c8c22dce99b55565c8ea",
            url=f"{_BASE}/micronet_vww2/tflite_int8/vww2_50_50_INT8.tflite",
            input_hw=(50, 50),
            accuracy=0.768,
        ),
        KnownModel(
            name="vww3",
            filename="vww3_128_128_INT8.tflite",
            size=542400,
            sha1="1d739f1a0401f7959cdd8af5f281c46dcd2188eb",
            url=f"{_BASE}/micronet_vww3/tflite_int8/vww3_128_128_INT8.tflite",
            input_hw=(128, 128),
            accuracy=0.855,
        ),
        KnownModel(
            name="vww4",
            filename="vww4_128_128_INT8.tflite",
            size=490336,
            sha1="b2d7f5fab21ae0934b76637348041a0aa5113ef6",
            url=f"{_BASE}/micronet_vww4/tflite_int8/vww4_128_128_INT8.tflite",
            input_hw=(128, 128),
            accuracy=0.822,
        ),
    )
}

DEFAULT_MODEL = "vww2"


def by_name(name: str) -> KnownModel | None:
    """The manifest entry called ``name`` (``"vww2"``) or with that file name, else None."""
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    for m in KNOWN_MODELS.values():
        if m.filename == name:
            return m
    return None


def by_sha1(sha1: str) -> KnownModel | None:
    """The manifest entry whose SHA-1 is ``sha1``, else None."""
    for m in KNOWN_MODELS.values():
        if m.sha1 == sha1:
            return m
    return None
