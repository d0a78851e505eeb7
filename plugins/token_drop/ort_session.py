"""Create ONNX Runtime sessions for models that may contain ``adapler::TokenDrop`` nodes.

The custom-op library is registered only when the model needs it, so ``model.std.onnx``
(standard ops only) loads on any ORT install without a build step.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Union

from .schema import DOMAIN, OP_TYPE

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["DEFAULT_SPINNING", "InputTooLong", "SPINNING", "TokenDropLibraryMissing", "create_session", "max_positions",
           "model_uses_token_drop", "session_options"]

LibrarySpec = Union[str, os.PathLike, None, Literal["auto"]]


class TokenDropLibraryMissing(RuntimeError):
    """The model contains adapler::TokenDrop but no custom-op library is available."""


class PluginLibraryOutdated(TokenDropLibraryMissing):
    """The custom-op library loads but was built before the graph's form of an adapler op (e.g. a node with
    ContributionDrop's optional fourth output against a library that declares three)."""


# ORT's words when a node does not fit the registered kernel's signature
_SCHEMA_MISMATCH = re.compile(r"schema\((adapler::\w+):\d+\) has (input|output) size (\d+) not in range")


class InputTooLong(ValueError):
    """An input longer than the model's position table (ORT itself fails with an opaque broadcast error)."""


def max_positions(model) -> int | None:
    """Rows of the BERT position-embedding table of an ``onnx.ModelProto`` (None if it has none)."""
    for init in model.graph.initializer:
        if "position_embeddings" in init.name and len(init.dims) == 2:
            return int(init.dims[0])
    return None


_SESSION_CLASS = None


def _session_class():
    """``onnxruntime.InferenceSession`` whose ``run`` refuses inputs longer than the position table."""
    global _SESSION_CLASS
    if _SESSION_CLASS is None:
        import onnxruntime as ort

        class CheckedSession(ort.InferenceSession):
            positions: int | None = None
            model_name: str = ""

            def run(self, output_names, input_feed, run_options=None):
                if self.positions is not None:
                    for name, value in input_feed.items():
                        shape = getattr(value, "shape", ())
                        if len(shape) == 2 and shape[1] > self.positions:
                            raise InputTooLong(
                                f"{name} has {shape[1]} tokens but {self.model_name} has {self.positions} positions; "
                                f"truncate inputs to at most {self.positions} tokens (tokenizer max_length)")
                return super().run(output_names, input_feed, run_options)

        _SESSION_CLASS = CheckedSession
    return _SESSION_CLASS


def _missing_message(model_path: str | os.PathLike, ops: list[str] | None = None) -> str:
    named = ", ".join(f"{DOMAIN}::{op}" for op in (ops or [OP_TYPE]))
    return (
        f"{Path(model_path).name} uses the custom op {named} but the ONNX Runtime "
        "library is not built; run `python cli.py build-plugins` (or `make plugins`), "
        "or use model.std.onnx which needs no plugin"
    )


def _custom_ops(model) -> list[str]:
    """The ``adapler`` op types the model uses, sorted: its graph, subgraphs and model-local functions (a
    hand-made graph could hold one; this project's exports have no local functions, docs/deploy.md §3.6)."""
    found: set[str] = set()

    def walk(nodes) -> None:
        for node in nodes:
            if node.domain == DOMAIN:
                found.add(node.op_type)
            for attr in node.attribute:
                for g in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                    walk(g.node)

    walk(model.graph.node)
    for fn in model.functions:
        walk(fn.node)
    return sorted(found)


def model_uses_token_drop(path: str | os.PathLike) -> bool:
    """True if the ONNX model (graph, subgraphs or local functions) has an ``adapler`` node.

    External tensor data is not loaded; only the graph structure is read.
    """
    import onnx

    return _uses_token_drop(onnx.load(str(path), load_external_data=False))


def _uses_token_drop(model) -> bool:
    return bool(_custom_ops(model))


SPINNING = ("run", "off", "always")
DEFAULT_SPINNING = "run"  # what every session of this repository uses unless told otherwise


def session_options(
    threads: int | None = None, spinning: str = DEFAULT_SPINNING, profile: bool = False
) -> "onnxruntime.SessionOptions":
    """ORT options used by :func:`create_session` (no library registered).

    ``spinning`` is the intra-op pool's wait policy: ``"run"`` (default) spin-waits between the nodes of a
    run and stops when the run returns (``session.force_spinning_stop``); ``"off"`` sleeps between nodes;
    ``"always"`` is ORT's default (the pool keeps spinning after a run). Measured on 2 cores (docs/results.md
    §6c): ``"run"`` is 4-30 % faster than ``"off"`` at batch 1, most where nodes are small (short or pruned
    inputs), and unlike ``"always"`` it does not let an idle session's threads take the cores of the next
    one (two models timed alternately, or two models in one server).
    """
    import onnxruntime as ort

    if spinning not in SPINNING:
        raise ValueError(f"spinning={spinning!r} is not a policy; use one of {', '.join(SPINNING)}")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    if spinning == "off":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif spinning == "run":
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if profile:
        options.enable_profiling = True
    return options


def _resolve_library(library: LibrarySpec) -> Path | None:
    if library is None:
        return None
    if isinstance(library, str) and library == "auto":
        from .build import find_ort_library

        return find_ort_library()
    path = Path(library).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"TokenDrop ONNX Runtime library {path} does not exist; build it with "
            "`python cli.py build-plugins` (or `make plugins`)"
        )
    return path


def create_session(
    model_path: str | os.PathLike,
    library: LibrarySpec = "auto",
    threads: int | None = None,
    spinning: str = DEFAULT_SPINNING,
    profile: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> "onnxruntime.InferenceSession":
    """Open ``model_path`` on the CPU execution provider, registering the TokenDrop library if needed.

    Args:
        model_path: ONNX file.
        library: ``"auto"`` = ``$ADAPLER_ORT_LIBRARY`` or the default build location;
            a path = that library; ``None`` = never register a library.
        threads: intra-op thread count (None = ORT default).
        spinning: the intra-op pool's wait policy, ``"run"`` (default), ``"off"`` or ``"always"``
            (see :func:`session_options`).
        profile: enable ORT's profiler (``session.end_profiling()`` writes the JSON).
        overrides: ``SessionOptions`` attributes to set on top of these (``{"enable_mem_pattern": False}``).

    The session's ``run`` raises ``InputTooLong`` for inputs longer than the model's position table.

    Raises:
        TokenDropLibraryMissing: the model uses adapler::TokenDrop and no library is available.
        FileNotFoundError: an explicit ``library`` path does not exist.
    """
    import onnx

    options = session_options(threads=threads, spinning=spinning, profile=profile)
    for name, value in (overrides or {}).items():
        setattr(options, name, value)
    model = onnx.load(str(model_path), load_external_data=False)  # graph only: op check + position table
    path = None
    if _uses_token_drop(model):
        path = _resolve_library(library)
        if path is None:
            raise TokenDropLibraryMissing(_missing_message(model_path, _custom_ops(model)))
        options.register_custom_ops_library(str(path))
    try:
        session = _session_class()(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:
        m = _SCHEMA_MISMATCH.search(str(e))
        if m is None:
            raise
        raise PluginLibraryOutdated(
            f"{model_path}: its {m.group(1)} nodes have {m.group(3)} {m.group(2)}s, which the custom-op library "
            f"{path} does not know (built before this form of the op); rebuild it with "
            "`python cli.py build-plugins`") from None
    session.positions, session.model_name = max_positions(model), Path(model_path).name
    return session
