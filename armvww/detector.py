"""The Detector: image -> preprocess -> int8 tensor -> backend session -> int8 logits.

The result of each image is a :class:`Detection`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import backends, images, pipeline, preprocess
from .backends.base import BackendOptions, Session
from .errors import ArmvwwError, BackendError, InputError, OptionError
from .model import Model
from .model.store import ModelSource, load_model
from .pipeline import PlanSpec, Preparer
from .select import BackendSpec, OptionsSpec, Selection, check_names, open_backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """The answer for one image.

    Attributes:
        person: the decision (:func:`armvww.preprocess.decide`): ``score > threshold``;
            at the default 0.5, the reference's argmax of the raw logits (a tie is no person).
        score: P(person), the softmax of the dequantised logits (index 1).
        raw: the model's raw int8 output, shape ``(2,)``: (no person, person).
        backend: the backend that really ran.
        source: what the input was (a path, or a short description).
        fallback: why backends earlier in the requested order were not used (empty when the
            first choice ran).
        error: for :meth:`Detector.detect_many` only: the error that stopped this item
            (then ``person`` is False, ``score`` is NaN and ``raw`` is empty).
        selection: how the backend was chosen (``"requested"``, the ``auto`` rule, a
            preference list, or the measurements behind ``fastest``).
        runtime: the runtime that computed it (package, version and kernels, e.g.
            ``"ai-edge-litert 2.3.0, XNNPACK"``): one backend name can hide runtimes whose
            decisions differ.
        route: how the backend's family was reached (Arm NN: ``"parser"`` or
            ``"delegate"``, whose runtime names the library); empty for LiteRT.
    """

    person: bool
    score: float
    raw: np.ndarray = field(repr=False)
    backend: str
    source: str | None = None
    fallback: tuple[str, ...] = ()
    error: ArmvwwError | None = None
    selection: str = ""
    runtime: str = ""
    route: str = ""

    @classmethod
    def _of(
        cls,
        fixed: dict[str, Any],
        person: bool,
        score: float,
        raw: np.ndarray,
        source: str | None,
    ) -> Detection:
        """The Detection of ``fixed`` (every field but the four given, as :meth:`Detector.
        classify` shares them) without the frozen dataclass's ten ``object.__setattr__``
        calls: 0.3 µs instead of 1.5 (a pipeline builds thousands a second, in the
        caller's thread). Equal to ``Detection(person, score, raw, **fixed, source=...)``."""
        d = object.__new__(cls)
        state = d.__dict__
        state.update(fixed)
        state["person"] = person
        state["score"] = score
        state["raw"] = raw
        state["source"] = source
        return d

    @property
    def ok(self) -> bool:
        """True when the item was processed (no :attr:`error`)."""
        return self.error is None

    @property
    def label(self) -> str:
        """``"person"``, ``"no_person"`` or ``"error"``."""
        if self.error is not None:
            return "error"
        return "person" if self.person else "no_person"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI's ``--json`` lines)."""
        d: dict[str, Any] = {
            "source": self.source,
            "label": self.label,
            "person": self.person,
            "score": None if math.isnan(self.score) else round(self.score, 6),
            "raw": [int(v) for v in self.raw],
            "backend": self.backend,
            "runtime": self.runtime,
        }
        if self.fallback:
            d["fallback"] = list(self.fallback)
        if self.selection:
            d["selection"] = self.selection
        if self.route:
            d["route"] = self.route
        if self.error is not None:
            d["error"] = {"type": type(self.error).__name__, "message": str(self.error)}
        return d


class Detector:
    """Person detector for one model on one backend.

    Args:
        model: a path, bytes, a :class:`~armvww.model.Model`, or a known name (``"vww2"``,
            ``"vww4"``); ``None`` means ``ARMVWW_MODEL`` or ``vww2`` (see
            :mod:`armvww.model.store`).
        backend: a backend name (``"LiteRT"``, ``"CpuAcc"``, ``"GpuAcc"``, ``"CpuRef"``),
            ``"auto"`` (best available: GpuAcc, CpuAcc, LiteRT, CpuRef), ``"fastest"``
            (measured once per model and machine and cached; see :mod:`armvww.select`),
            or an ordered list of names: the first that loads wins, and the
            reasons for skipping the others are on every result (:attr:`Detection.fallback`).
        threshold: ``score > threshold`` means person. In [0, 1]. At the default (0.5) the
            decision is the reference's argmax of the int8 logits: a tie (equal logits,
            score 0.5) is no person. See :func:`armvww.preprocess.decide`.
        options: backend option dataclasses (one, or several for different families).
        max_pixels: images larger than this are refused (decompression-bomb guard).
        fast_decode: let JPEG decoding downscale (draft mode) while keeping at least twice the
            model's side; see the README for what that changes.

    Thread safety: one Detector may be shared by any number of threads. Decoding and
    preprocessing run in parallel; calls into the backend are serialised by a lock. For
    parallel inference, give each thread its own Detector.

    Raises:
        ModelNotFoundError, ModelIntegrityError, UnsupportedModelError: see
            :func:`armvww.model.store.load_model`.
        BackendUnavailableError: no requested backend can be used here.
        InputError: an argument of the wrong type or value (``threshold`` not a finite
            number in [0, 1], ``backend`` not a name or list of names, ``max_pixels`` not an
            int >= 1, ``fast_decode`` not a bool, ``model`` not a path/bytes/Model/name).
        OptionError: ``options`` is not a BackendOptions or a list of them.
    """

    def __init__(
        self,
        model: ModelSource = None,
        backend: BackendSpec = "auto",
        threshold: float = preprocess.DEFAULT_THRESHOLD,
        options: OptionsSpec = None,
        *,
        max_pixels: int = images.MAX_PIXELS,
        fast_decode: bool = False,
    ) -> None:
        _check_arguments(backend, threshold, options, max_pixels, fast_decode)
        self.threshold = float(threshold)
        self.max_pixels = max_pixels
        self.fast_decode = fast_decode
        check_names(backend)  # an unknown backend name is reported before any model search
        self.model: Model = load_model(model)
        self._session, choice = open_backend(self.model, backend, options)
        #: The record of how the backend was chosen (rule, order tried, reasons, measurements).
        self.choice: Selection = choice
        #: Why backends earlier in the requested order were not used; on every Detection.
        self.fallback: tuple[str, ...] = choice.skipped
        #: How the backend was chosen, in words (:meth:`Selection.explain`); on every Detection.
        self.selection: str = choice.explain()
        self._lock = threading.Lock()
        self._closed = False
        spec = self.model.input
        assert spec.scale is not None and spec.zero_point is not None  # validated by the model
        self._in_shape = spec.shape
        self._in_scale, self._in_zp = spec.scale, spec.zero_point
        out = self.model.output
        assert out.scale is not None and out.zero_point is not None
        self._out_scale, self._out_zp = out.scale, out.zero_point
        self._scores = preprocess.gap_scores(out.scale)
        # the fields every Detection of this Detector shares
        self._fixed: dict[str, Any] = {
            "backend": self.backend,
            "fallback": self.fallback,
            "error": None,
            "selection": self.selection,
            "runtime": self.runtime,
            "route": self.route,
        }
        h, w = self.model.input_hw
        self._draft = (2 * w, 2 * h) if fast_decode else None
        #: The shared preprocessing, picklable for the pipeline's worker processes.
        self._prep = Preparer(
            self._in_shape, self._in_scale, self._in_zp, max_pixels, self._draft, max(h, w)
        )
        log.info(
            "Detector ready: %s on %s (%s)", self.model.name, self.backend, self._session.runtime
        )

    # -- facts ---------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend that really runs."""
        return self._session.backend

    @property
    def runtime(self) -> str:
        """Runtime package and version behind the backend."""
        return self._session.runtime

    @property
    def route(self) -> str:
        """How the backend's family was reached (Arm NN: ``"parser"`` or ``"delegate"``)."""
        return self._session.route

    @property
    def session_info(self) -> dict[str, Any]:
        """What the backend reports about the loaded network (placement, options, timings)."""
        return dict(self._session.info)

    @property
    def replicable(self) -> bool:
        """Whether the pipeline may give each worker its own session of this backend (a CPU
        runtime cheap to open again: LiteRT; see :attr:`armvww.pipeline.Plan.infer`)."""
        return self._session.replica_options is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model's input shape, ``(1, H, W, 1)``."""
        return self._in_shape

    # -- the pipeline ---------------------------------------------------------------------
    def quantize(self, image: images.ImageInput) -> np.ndarray:
        """The shared preprocessing: ``image`` -> int8 array of the model's input shape.

        Raises:
            ImageDecodeError: the image cannot be decoded.
            InputError: an array of the wrong dtype or shape, or an unsupported input type.
        """
        return self._prep(image)

    @property
    def quantize_stage(self) -> Preparer:
        """:meth:`quantize` as a picklable object (for :func:`armvww.pipeline.prepared`)."""
        return self._prep

    def run(self, q: np.ndarray) -> np.ndarray:
        """Run one int8 input tensor; return the raw int8 output, shape ``(1, 2)``.

        ``q`` must be an int8 numpy array of exactly the input shape; a non-contiguous
        array is copied, nothing is ever cast.

        Raises:
            InputError: wrong type, dtype or shape.
            BackendError: the backend failed, or the Detector is closed.
        """
        if not isinstance(q, np.ndarray) or q.dtype != np.int8 or q.shape != self._in_shape:
            raise InputError(_describe_bad_tensor(q, self._in_shape))
        if not q.flags.c_contiguous:
            q = np.ascontiguousarray(q)
        with self._lock:
            if self._closed:
                raise BackendError("this Detector is closed")
            # copied under the lock: a session may return a view of a buffer that the next
            # call (from another thread) overwrites (PyArmNN does)
            return np.array(self._session.run(q), dtype=np.int8, copy=True)

    def classify(self, raw: np.ndarray, source: str | None = None) -> Detection:
        """Turn a raw int8 output into a :class:`Detection` (no inference).

        Raises:
            InputError (a ValueError): ``raw`` does not hold exactly 2 values.
        """
        r = np.asarray(raw, dtype=np.int8).reshape(-1)
        if r.shape != (2,):
            raise InputError(
                f"expected 2 logits (no person, person), got {r.size} values: pass the "
                "model's raw output, e.g. det.classify(det.run(det.quantize(image)))"
            )
        lo, hi = r.tolist()
        # preprocess.person_score's floats, from its table (a pipeline classifies thousands
        # of items a second in the caller's thread)
        score = self._scores[lo - hi + 255]
        person = preprocess.decide_logits(lo, hi, score, self.threshold)
        return Detection._of(self._fixed, person, score, r, source)

    def detect(self, image: images.ImageInput) -> Detection:
        """Detect a person in one image (path, bytes, PIL image or uint8 array).

        Raises:
            ImageDecodeError, InputError: the image cannot be used.
            BackendError: the backend failed.
        """
        return self.classify(self.run(self.quantize(image)), images.describe(image))

    def iter_detect(
        self,
        items: Iterable[images.ImageInput] | images.ImageInput,
        workers: PlanSpec = "auto",
    ) -> Iterator[Detection]:
        """Lazily detect each item, in order, exactly once; a bad item yields a Detection
        with ``error`` set and the rest continue.

        Input rules (:func:`armvww.images.expand_inputs`): a str, bytes, PathLike, array or
        PIL image is ONE item; a folder path stands for the images inside it (recursively;
        unlistable folders and link loops are error items); any other iterable is read one
        item at a time, never materialised. An iterable that raises gives one error item
        (:class:`InputError`) there, and the iteration stops: everything before it is kept.

        Pipelined (:mod:`armvww.pipeline`): decoding and preprocessing of the next items run
        in ``workers`` while this thread runs inference on the current one; for a backend
        whose session can be replicated (LiteRT), a plan may run inference in the workers
        too, each in its own session of the same backend, options and runtime (the results
        say so exactly as this Detector's own would). ``"auto"`` chooses by input kind,
        usable cores, whether the inference holds the GIL (the Arm NN parser route does),
        whether the session can be replicated and whether its inference leaves a core free
        (``session.inference_threads``; :func:`armvww.pipeline.choose_plan`);
        ``"none"`` is the plain sequential loop; ``"thread"``, ``"process"`` or a
        :class:`~armvww.pipeline.Plan` override it. At most ``Plan.window`` items are held.
        A worker process that dies is retried item by item and then an error on its item;
        Ctrl-C stops and joins every worker before ``KeyboardInterrupt`` propagates.

        Raises:
            InputError: a bad ``workers`` value, or a plan that infers in the workers for a
                backend whose session cannot be replicated.
        """
        # PyArmNN's EnqueueWorkload holds the GIL (benchmarks/results-x86_64.md); LiteRT's
        # invoke, and so the Arm NN delegate route inside it, releases it
        holds_gil = self.route == "parser"
        options = self._session.replica_options
        s = pipeline.stream(
            items,
            workers,
            holds_gil,
            replicable=options is not None,
            inference_threads=self._session.inference_threads,
        )
        if s.plan.infer:
            if options is None:
                raise InputError(
                    f"{self.backend} ({self.runtime}) runs one session only: a pipeline plan "
                    "cannot infer in its workers (use infer=False)"
                )
            replica = _Replica(
                self.model.data, self.backend, options, self._prep, self.runtime, self.run
            )
            for label, out in pipeline.run(replica, s):
                if isinstance(out, ArmvwwError):
                    yield self._failed(label, out)
                else:
                    yield self.classify(out, label)
            return
        for label, out in pipeline.run(self._prep, s):
            if isinstance(out, ArmvwwError):
                yield self._failed(label, out)
                continue
            try:
                yield self.classify(self.run(out), label)
            except ArmvwwError as exc:
                yield self._failed(label, exc)

    def _failed(self, source: str, error: ArmvwwError) -> Detection:
        return Detection(
            person=False,
            score=math.nan,
            raw=np.zeros(0, np.int8),
            backend=self.backend,
            source=source,
            fallback=self.fallback,
            error=error,
            selection=self.selection,
            runtime=self.runtime,
            route=self.route,
        )

    def detect_many(
        self,
        items: Iterable[images.ImageInput] | images.ImageInput,
        workers: PlanSpec = "auto",
    ) -> list[Detection]:
        """Detect every item, in order, exactly once; bad items carry their error and the
        rest continue. Same input rules and pipeline as :meth:`iter_detect`; the input is
        consumed lazily and only the (small) Detections are kept, never the decoded images."""
        return list(self.iter_detect(items, workers))

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Release the backend. Idempotent; later calls raise :class:`BackendError`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._session.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Detector(model={self.model.name!r}, backend={self.backend!r}, "
            f"threshold={self.threshold})"
        )


class _Replica:
    """The whole image -> raw output path in a pipeline worker (:attr:`Plan.infer`): the
    Detector's preprocessing, then a session of the Detector's own backend, opened with the
    same options on first use in each worker thread or process (one per worker, never
    shared), whose runtime must be the Detector's. Picklable: the model travels as bytes.

    Raises (per item, as its result):
        ImageDecodeError, InputError: the image cannot be used.
        BackendError: the worker's session could not be opened, runs another runtime than
            the Detector's, or failed.
    """

    def __init__(
        self,
        data: bytes,
        backend: str,
        options: BackendOptions,
        prep: Preparer,
        runtime: str,
        here: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self._data = data
        self._backend = backend
        self._options = options
        self._prep = prep
        self._runtime = runtime
        self._local = threading.local()
        # the Detector's own inference, for the thread that made this replica (a caller that
        # runs chunks too: :attr:`armvww.pipeline.Plan.caller`), instead of a second session
        self._here = here
        self._here_thread = threading.get_ident()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_local"]  # sessions are per worker: never pickled
        state["_here"] = None  # the Detector stays in its process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _session(self) -> Session:
        local = self._local
        if getattr(local, "error", None) is not None:
            raise local.error
        session: Session | None = getattr(local, "session", None)
        if session is None:
            try:
                session = backends.get(self._backend).open(load_model(self._data), self._options)
            except ArmvwwError as exc:
                local.error = BackendError(
                    f"a pipeline worker could not open its own {self._backend} session: {exc}"
                )
                raise local.error from exc
            if session.runtime != self._runtime:
                session.close()
                local.error = BackendError(
                    f"a pipeline worker's {self._backend} session runs {session.runtime}, "
                    f"not the Detector's {self._runtime}: refusing to mix runtimes"
                )
                raise local.error
            local.session = session
            log.debug("pipeline worker: own %s session (%s)", self._backend, session.runtime)
        return session

    def prepare(self, image: images.ImageInput) -> np.ndarray:
        """The Detector's preprocessing (a pipeline runs it over a whole chunk first)."""
        return self._prep(image)

    def infer(self, q: np.ndarray) -> np.ndarray:
        """This worker's own session on one prepared tensor: the raw int8 output (in the
        thread that made the replica with ``here``: the Detector's own session)."""
        if self._here is not None and threading.get_ident() == self._here_thread:
            return self._here(q).reshape(-1)
        return np.array(self._session().run(q), dtype=np.int8, copy=True).reshape(-1)

    def warm(self) -> None:
        """Open this worker's session now (a worker process's start), not at its first
        item; an error is kept and becomes each item's result."""
        try:
            self._session()
        except ArmvwwError as exc:
            log.debug("pipeline worker: no session: %s", exc)

    def __call__(self, image: images.ImageInput) -> np.ndarray:
        return self.infer(self.prepare(image))


def _check_arguments(
    backend: object, threshold: object, options: object, max_pixels: object, fast_decode: object
) -> None:
    """Type and range checks of the Detector's arguments (typed errors, never TypeError)."""
    if isinstance(backend, str):
        if not backend or "\0" in backend:
            raise InputError(f"backend must be a backend name, got {backend!r}")
    elif (
        isinstance(backend, (bytes, bytearray))
        or not isinstance(backend, Sequence)
        or not backend
        or not all(isinstance(n, str) and n and "\0" not in n for n in backend)
    ):
        raise InputError(
            f"backend must be a name ('auto', 'fastest', 'LiteRT'...) or a non-empty list of "
            f"names, got {type(backend).__name__} {backend!r:.80}"
        )
    ok = isinstance(threshold, (int, float, np.integer, np.floating)) and not isinstance(
        threshold, bool
    )
    try:
        value = float(threshold) if ok else math.nan  # type: ignore[arg-type]
    except OverflowError:
        value = math.nan
    if not (ok and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(f"threshold must be a finite number in [0, 1], got {threshold!r:.80}")
    if not (
        isinstance(max_pixels, (int, np.integer))
        and not isinstance(max_pixels, bool)
        and max_pixels >= 1
    ):
        raise InputError(f"max_pixels must be an int >= 1, got {max_pixels!r:.80}")
    if not isinstance(fast_decode, bool):
        raise InputError(f"fast_decode must be True or False, got {fast_decode!r:.80}")
    seq = [options] if options is None or isinstance(options, BackendOptions) else options
    if (
        isinstance(seq, (str, bytes))
        or not isinstance(seq, Sequence)
        or not all(o is None or isinstance(o, BackendOptions) for o in seq)
    ):
        raise OptionError(
            "options must be a backend options object (LiteRTOptions, ArmNNOptions) or a "
            f"list of them, got {type(options).__name__}"
        )


def _describe_bad_tensor(q: object, shape: tuple[int, ...]) -> str:
    if not isinstance(q, np.ndarray):
        return f"run() needs an int8 numpy array of shape {shape}, got {type(q).__name__}"
    return (
        f"run() needs an int8 array of shape {shape}, got {q.dtype} {q.shape}; use "
        "Detector.quantize(image) to make one"
    )
