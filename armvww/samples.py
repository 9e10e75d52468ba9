"""The sample photos of the demo: a pinned, verified, labelled set, fetched into the cache.

The same 13 photos as the shared data folder's ``data/vww_samples`` (8 person, 5 no person;
a smoke set, too small to measure accuracy), each from a pinned raw URL of its public git
repository, verified by size and SHA-1:

* TensorFlow Lite Micro's person-detection test data (Apache-2.0), tensorflow/tflite-micro
  at :data:`TFLM_COMMIT`;
* Arm's ml-embedded-evaluation-kit sample photos (Pexels photos, CC BY 1.0 per Arm; the
  licence text is fetched too), from the alifsemi fork, whose history holds Arm's commits,
  at :data:`EEK_COMMIT` (``adult_blur.png`` at :data:`EEK_ADULT_BLUR_COMMIT`: Arm removed
  it later). These are the commits at which the shared copies were checked.

:func:`fetch_samples` writes them under ``$XDG_CACHE_HOME/armvww/data/vww_samples`` with a
``labels.csv`` (so ``armvww detect`` shows the truth) and a ``SOURCES.md`` (origins and
licences). ``ARMVWW_FETCH_BASE`` replaces the URLs with a mirror (see :mod:`armvww.store`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from . import hints
from .errors import FetchError
from .model import manifest
from .model.store import (
    cache_dir,
    cache_root,
    download_url,
    download_verified,
    fetch,
    write_atomic,
)

log = logging.getLogger(__name__)

TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"
EEK_REPO = "alifsemi/alif_ml-embedded-evaluation-kit"
EEK_COMMIT = "b1b93fc01d915da47a4f6ea8475c193aef56e871"
EEK_ADULT_BLUR_COMMIT = "8f9588721cbb7356b03a714c97d6b3a9a6e89438"
_RAW = "https://raw.githubusercontent.com"
_TFLM = (
    f"{_RAW}/tensorflow/tflite-micro/{TFLM_COMMIT}"
    "/tensorflow/lite/micro/examples/person_detection/testdata"
)
_EEK = f"{_RAW}/{EEK_REPO}/{EEK_COMMIT}/resources"
#: Where the set lives in the shared data folder and in a mirror (``ARMVWW_FETCH_BASE``).
SET_PATH = "data/vww_samples"
APACHE = "Apache-2.0 (tensorflow/tflite-micro's licence)"
CC_BY = "CC BY 1.0 per Arm (ml-embedded-evaluation-kit/LICENSE_CC_1.0.txt)"


@dataclass(frozen=True)
class SampleFile:
    """One file of the set: its path in the set, size, SHA-1, pinned URL and licence.

    ``label`` is 1 (person) or 0 (no person); None for a file that is not a photo.
    """

    path: str
    size: int
    sha1: str
    url: str
    label: int | None
    licence: str
    origin: str = ""


def _eek(path: str, size: int, sha1: str, sub: str, label: int | None, page: str) -> SampleFile:
    url = f"{_EEK}/{sub}/{path.rsplit('/', 1)[1]}"
    if path.endswith("adult_blur.png"):
        url = url.replace(EEK_COMMIT, EEK_ADULT_BLUR_COMMIT)
    return SampleFile(path, size, sha1, url, label, CC_BY, f"pexels.com/photo/{page}/")


_K = "ml-embedded-evaluation-kit"
#: The set, in the shared folder's order (the licence text last).
SAMPLES: tuple[SampleFile, ...] = (
    SampleFile(
        "tflite-micro/person.bmp",
        10294,
        "9980a1a8cdfbbe3f7c7e4bd6510ddc0a0765f61a",
        f"{_TFLM}/person.bmp",
        1,
        APACHE,
    ),
    SampleFile(
        "tflite-micro/no_person.bmp",
        10294,
        "7bb65a63706ace899e4bb4a40b3c4565a8a75302",
        f"{_TFLM}/no_person.bmp",
        0,
        APACHE,
    ),
    _eek(
        f"{_K}/man_in_red_jacket.png",
        30024,
        "664961831c9c0c1701d6f40b27dc36c609d89800",
        "vww/samples",
        1,
        "man-in-red-jacket-1681010",
    ),
    _eek(
        f"{_K}/adult_blur.png",
        28081,
        "f817c94369fc2cc81ca91328dec1b8b5f838c61d",
        "vww/samples",
        1,
        "adult-blur-camera-casual-598917",
    ),
    _eek(
        f"{_K}/st_paul_s_cathedral.png",
        50321,
        "42a3e79f6e279bf362b83622c71dd870e307d981",
        "vww/samples",
        0,
        "low-angle-photo-of-st-paul-s-cathedral-under-sunset-colors-1043121",
    ),
    _eek(
        f"{_K}/kimono.bmp",
        150582,
        "75f5749e320656585adaae7cbc962f6945e7ad5d",
        "img_class/samples",
        1,
        "three-geisha-walking-between-buildings-1325837",
    ),
    _eek(
        f"{_K}/tiger.bmp",
        150582,
        "ef46816bbaeef9b7fcb97a3cbf23827b1959cf07",
        "img_class/samples",
        0,
        "tiger-in-green-grass-near-the-tree-during-daytime-162173",
    ),
    _eek(
        f"{_K}/cat.bmp",
        150582,
        "0f47aa2937bed5ed887889e2ad09517051de920d",
        "img_class/samples",
        0,
        "cat-whiskers-kitty-tabby-20787",
    ),
    _eek(
        f"{_K}/dog.bmp",
        150582,
        "25b5aaa4e22758acccfd0450fdf8be4cda7ef144",
        "img_class/samples",
        0,
        "adult-black-pug-1851164",
    ),
    _eek(
        f"{_K}/couple.bmp",
        110646,
        "8fa95091483b09a612327b5052be0f003b88f169",
        "object_detection/samples",
        1,
        "photography-of-man-and-woman-1137902",
    ),
    _eek(
        f"{_K}/glasses.bmp",
        110646,
        "ba36f69ffb27dc50a7f1a5513a57e078dbc37a2e",
        "object_detection/samples",
        1,
        "man-looking-to-his-right-2741701",
    ),
    _eek(
        f"{_K}/man_and_baby.bmp",
        110646,
        "9ee2a3e549c1defe332a20c77db96a9ac2c8a783",
        "object_detection/samples",
        1,
        "photo-of-man-carrying-baby-1578996",
    ),
    _eek(
        f"{_K}/pitch_and_roll.bmp",
        110714,
        "f4ba1260e893ed83199795bfaa4bec6a45a2241b",
        "object_detection/samples",
        1,
        "close-up-shot-of-a-happy-elderly-couple-hugging-while-looking-at-camera-8317676",
    ),
    SampleFile(
        f"{_K}/LICENSE_CC_1.0.txt",
        11553,
        "c24e84f2f208cd2d4e77439139fdd035feee3e97",
        f"{_EEK}/LICENSE_CC_1.0.txt",
        None,
        "the licence text of the Pexels photos",
    ),
)


def samples_dir() -> Path:
    """Where :func:`fetch_samples` puts the set by default."""
    return cache_root() / SET_PATH


def _verified(path: Path, f: SampleFile) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return len(data) == f.size and hashlib.sha1(data).hexdigest() == f.sha1


def labels_csv() -> str:
    """The set's ``labels.csv`` (path,label,label_name; 1 = person)."""
    rows = ["path,label,label_name"]
    rows += [
        f"{f.path},{f.label},{('no_person', 'person')[f.label]}"
        for f in SAMPLES
        if f.label is not None
    ]
    return "\n".join(rows) + "\n"


def sources_md() -> str:
    """The set's ``SOURCES.md``: every file with size, SHA-1, pinned URL and licence."""
    lines = [
        "# armvww sample photos",
        "",
        "Fetched by `armvww fetch samples`; each file verified by size and SHA-1.",
        "8 person, 5 no person: a smoke set, too small to measure accuracy.",
        "",
        "| file | size (B) | SHA-1 | pinned URL | licence | photo source |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.path} | {f.size} | {f.sha1} | {f.url} | {f.licence} | {f.origin} |" for f in SAMPLES
    ]
    return "\n".join(lines) + "\n"


def fetch_samples(dest: Path | None = None, timeout: float = 60.0) -> Path:
    """Download the sample set into ``dest`` (default :func:`samples_dir`); return it.

    Files already present and verified are kept (no network when all are); each download
    is written atomically after its size and SHA-1 match.

    Raises:
        FetchError: a download failed or did not verify (the files verified so far stay);
            the message says where to put a copy obtained another way.
    """
    dest = dest or samples_dir()
    for f in SAMPLES:
        target = dest / f.path
        if _verified(target, f):
            continue
        url = download_url(f.url, f"{SET_PATH}/{f.path}")
        try:
            download_verified(f.path, url, f.size, f.sha1, target, timeout, "fetch samples")
        except FetchError as exc:
            every = hints.command("fetch samples --list")
            raise FetchError(f"{exc}. Every file of the set, with its URL: `{every}`") from exc
    try:
        write_atomic(dest / "labels.csv", labels_csv().encode())
        write_atomic(dest / "SOURCES.md", sources_md().encode())
    except OSError as exc:
        raise FetchError(f"could not write the index files in {dest}: {exc}") from exc
    log.info("sample photos verified in %s", dest)
    return dest


def find_samples(dest: Path | None = None) -> Path | None:
    """The sample folder if every file of the set is there and verified, else None."""
    d = dest or samples_dir()
    return d if all(_verified(d / f.path, f) for f in SAMPLES) else None


#: What ``armvww fetch`` accepts: the known model names and ``samples``.
FETCH_NAMES: tuple[str, ...] = (*sorted(manifest.KNOWN_MODELS), "samples")


@dataclass(frozen=True)
class Download:
    """One file ``armvww fetch NAME`` downloads: from where, how big, its SHA-1, to where."""

    url: str
    size: int
    sha1: str
    dest: Path


def planned(name: str, dest: Path | None = None) -> list[Download]:
    """The files :func:`fetch_named` would download for ``name`` (no network).

    Raises:
        FetchError: an unknown name.
    """
    if name == "samples":
        d = dest or samples_dir()
        return [
            Download(download_url(f.url, f"{SET_PATH}/{f.path}"), f.size, f.sha1, d / f.path)
            for f in SAMPLES
        ]
    known = manifest.by_name(name)
    if known is None:
        raise FetchError(f"unknown name {name!r}; known: {', '.join(FETCH_NAMES)}")
    url = download_url(known.url, f"models/{known.filename}")
    return [Download(url, known.size, known.sha1, (dest or cache_dir()) / known.filename)]


def fetch_named(name: str, dest: Path | None = None, timeout: float = 60.0) -> Path:
    """``armvww fetch NAME``: a known model (its file) or ``samples`` (the folder).

    Raises:
        FetchError: see :func:`armvww.store.fetch` and :func:`fetch_samples`.
    """
    if name == "samples":
        return fetch_samples(dest, timeout)
    return fetch(name, dest, timeout)
