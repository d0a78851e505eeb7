"""Padded at batch 1, packed above: one ORT session over an export directory's two fused graphs.

``model.ort.packed.onnx`` removes the padding ``model.ort.onnx`` computes on, but its packing nodes cost
a fixed ~0.1 ms a call, and a batch of one row has no padding to remove: there it was 1-3 % slower than
the padded graph (docs/results.md §8). Both graphs take the same inputs and give the same outputs
(``logits``, ``kept_lengths``; tests/test_packed_session.py), so this routes each call by its batch size:

    from adapler.export.packed_session import open_padded_or_packed
    sess = open_padded_or_packed("export_dir")           # or int8=True: model.ort[.packed].int8.onnx
    logits, kept = sess.run(None, {"input_ids": ids, "attention_mask": mask})
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from adapler.errors import ExportError, UsageError

from .packed_graph import PACKED_FILE

PADDED_FILE = "model.ort.onnx"


class PaddedOrPacked:
    """``run`` / ``get_inputs`` / ``get_outputs`` of an ``onnxruntime.InferenceSession``: batches smaller than
    ``min_packed_batch`` run on ``padded``, the others on ``packed``."""

    def __init__(self, padded: Any, packed: Any, min_packed_batch: int = 2):
        self.padded, self.packed, self.min_packed_batch = padded, packed, min_packed_batch

    def session_for(self, batch_size: int) -> Any:
        return self.padded if batch_size < self.min_packed_batch else self.packed

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any], run_options: Any = None) -> list:
        batch = len(input_feed["attention_mask"])
        return self.session_for(batch).run(output_names, input_feed, run_options)

    def get_inputs(self) -> list:
        return self.padded.get_inputs()

    def get_outputs(self) -> list:
        return self.padded.get_outputs()


def graph_files(export_dir: str | os.PathLike, int8: bool = False) -> tuple[Path, Path]:
    """``(padded, packed)`` graph paths of an export directory, or an ExportError naming the missing file."""
    d = Path(export_dir)
    sfx = ".int8.onnx" if int8 else ".onnx"
    files = tuple(d / name.replace(".onnx", sfx) for name in (PADDED_FILE, PACKED_FILE))
    for f in files:
        if not f.is_file():
            how = "--packed" + (" --quantize int8" if int8 else "")
            raise ExportError(f"{d} has no {f.name}; export the checkpoint with `python cli.py export CKPT {how}`")
    return files  # type: ignore[return-value]


def open_padded_or_packed(export_dir: str | os.PathLike, *, int8: bool = False, threads: int | None = None,
                          min_packed_batch: int = 2, library: Any = "auto") -> PaddedOrPacked:
    """Sessions on ``model.ort[.int8].onnx`` and ``model.ort.packed[.int8].onnx`` of ``export_dir``
    (``library``, ``threads``: as ``plugins.token_drop.ort_session.create_session``)."""
    from adapler.plugins.token_drop.ort_session import create_session
    if isinstance(min_packed_batch, bool) or not isinstance(min_packed_batch, int) or min_packed_batch < 1:
        raise UsageError(f"min_packed_batch must be an integer >= 1, got {min_packed_batch!r}")
    padded, packed = graph_files(export_dir, int8)
    return PaddedOrPacked(create_session(padded, library=library, threads=threads),
                          create_session(packed, library=library, threads=threads), min_packed_batch)
