"""``Method``: everything the CLI, the sweep, the recipes, the bench and the exporters need to know about one
token-dropping method. One subclass instance per method file (``adapler/methods/<name>.py``).

The CLI reads the registry to list its choices before it knows whether any work will be done, so a method
file imports torch-heavy modules (selector, config, trainer) inside the functions that use them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UsageError

if TYPE_CHECKING:
    from transformers import BertConfig

    from ..encoder import TokenSelector


class Method:
    """One method. Subclasses set the class attributes and implement ``config`` and ``train``.

    The selector class is the part of a method that lives in the model (and so in checkpoints, FLOPs and
    exports); the config class and the trainer are the part that makes the model.
    """

    name: ClassVar[str]
    title: ClassVar[str]  # how reports name it ("PoWER-BERT")
    summary: ClassVar[str]  # one line for --help and docs
    prunes: ClassVar[bool] = True  # False: the dense model (its selector does nothing, so hard mode is dense)
    trainable: ClassVar[bool] = True  # made by `train` from a fine-tuned run (the dense model: by `finetune`)
    knob: ClassVar[str | None] = None  # the trade-off knob in reports and sweep files ("phi")
    knob_field: ClassVar[str | None] = None  # the config field --knob and sweep values set
    # train's method-specific options: CLI parameter name -> config field (the CLI passes them all, each
    # method takes its own)
    cli_options: ClassVar[dict[str, str]] = {}
    target_control: ClassVar[str] = ""  # what --target-speedup steers (docs/design.md, "Speedup targets")
    fused_ort_graph: ClassVar[bool] = False  # export/ort_graph.py can write model.ort.onnx
    # export/onnx.py can write model.cd.onnx: the selector's hard mode has a contribution_drop_form() (one
    # adapler::ContributionDrop node per drop point, what TensorRT builds with the ContributionDrop plugin)
    contribution_drop_graph: ClassVar[bool] = False
    quick_options: ClassVar[dict[str, Any]] = {}  # config fields of the quick preset (demo, bench cache)
    color: ClassVar[str] = "tab:gray"  # bench plots

    # ---------------------------------------------------------------- the model side
    def selector_class(self) -> type[TokenSelector]:
        """The selector class (``adapler/selectors/``): the part of the method that lives in the model."""
        raise NotImplementedError

    def build_selector(self, config: BertConfig, options: dict | None = None) -> TokenSelector:
        """The selector for a backbone ``config`` and a checkpoint's ``selector`` options."""
        return self.selector_class().from_options(config, dict(options or {}))

    def export_note(self) -> str | None:
        """Why ``model.ort.onnx`` is not written for this method (None when it is)."""
        if self.fused_ort_graph:
            return None
        return (f"method {self.name!r} has no fused ORT graph; deploy its model.onnx or model.std.onnx "
                "(its int8 form comes from model.onnx)")

    # ---------------------------------------------------------------- the training side
    def config_class(self) -> type | None:
        """The trainer's config dataclass (what ``--set`` reaches); None when ``train`` does not make it."""
        return None

    def config(self, knob: float | None = None, epochs: int | None = None, lr: float | None = None,
               batch_size: int = 32, seed: int = 42, **options: Any) -> Any:
        """The trainer's config: ``knob`` sets ``knob_field``, ``epochs`` the method's main training epochs,
        ``lr`` the encoder's learning rate; ``options`` any other config field (unknown ones are refused)."""
        raise NotImplementedError(f"{self.name} is not trained by `train`; use `finetune`")

    def train(self, data, init: str | Path, out: str | Path, cfg: Any, *, overwrite: bool = False,
              resume: bool = False, shared_dir: Path | None = None) -> Path:
        """Train from the fine-tuned run ``init`` into ``out``; returns ``out``. ``shared_dir``: a folder the
        runs of one sweep share for what does not depend on the knob (AdapLeR: saliency targets)."""
        raise NotImplementedError(f"{self.name} is not trained by `train`; use `finetune`")

    def options_from_cli(self, values: dict[str, Any]) -> dict[str, Any]:
        """This method's config fields from the values of train's method-specific CLI options."""
        return {field: values[param] for param, field in self.cli_options.items() if param in values}

    # ---------------------------------------------------------------- helpers for subclasses
    def _make(self, fields: dict[str, Any], options: dict[str, Any], knob: float | None) -> Any:
        """``config_class(**fields, **options)`` with ``knob`` on top; unknown option names are refused."""
        cls = self.config_class()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown {self.title} options {unknown}; known: {', '.join(sorted(known))}")
        return cls(**{**fields, **options, **({self.knob_field: knob} if knob is not None else {})})

    def problems(self) -> list[str]:
        """What is inconsistent about this method (tests assert none): the checkpoint lookup must find its
        selector, its knob must be a config field, a trainable method needs a config class."""
        from ..selectors import SELECTORS
        out = []
        if SELECTORS.get(self.name) is not self.selector_class():
            out.append(f"adapler.selectors lists {SELECTORS.get(self.name)} for {self.name!r}, the method says "
                       f"{self.selector_class().__name__}")
        cls = self.config_class()
        if self.trainable != (cls is not None):
            out.append(f"trainable is {self.trainable} but config_class() is {cls}")
        if cls is not None and self.knob_field not in {f.name for f in dataclasses.fields(cls)}:
            out.append(f"knob field {self.knob_field!r} is not a field of {cls.__name__}")
        if self.contribution_drop_graph and not self.prunes:
            out.append("contribution_drop_graph is set but the method prunes nothing")
        if not set(self.cli_options.values()) <= ({f.name for f in dataclasses.fields(cls)} if cls else set()):
            out.append(f"cli_options name fields {cls.__name__ if cls else None} does not have")
        return out

    def __repr__(self) -> str:
        return f"<method {self.name}>"
