"""What the encoder loop needs from a backbone family, and the defaults BERT-shaped families share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LayerPieces:
    """One post-LayerNorm encoder layer as the loop runs it (references to the family's own modules):

        h1  = ln1(x + drop1(o(attention(q(x), k(x), v(x)))))
        out = ln2(h1 + drop2(ffn_out(act(ffn_in(h1)))))
    """

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    drop1: nn.Module
    ln1: nn.LayerNorm
    ffn_in: nn.Linear
    act: Callable[[Tensor], Tensor]
    act_name: str  # transformers' activation name ("gelu", "relu", ...), for graph builders
    ffn_out: nn.Linear
    drop2: nn.Module
    ln2: nn.LayerNorm


@dataclass(frozen=True)
class Shape:
    """Sizes every family has, whatever its config calls them."""

    hidden: int
    ffn: int
    layers: int
    heads: int
    max_length: int  # longest input the position table serves
    act: str
    dropout: float


@dataclass(frozen=True)
class EmbeddingTables:
    """The embeddings as lookup tables, for graph builders (ORT's EmbedLayerNormalization):
    ``project(norm(word[ids] + position[i] + token_type[types]))`` with i = 0, 1, ... over each row."""

    word: Tensor
    position: Tensor  # row i is the position of the i-th token of a right-padded row
    token_type: Tensor | None  # None: the family has no token types
    norm: nn.LayerNorm
    project: nn.Linear | None = None  # ELECTRA's embedding_size -> hidden_size


def bert_style_layer(layer: nn.Module, act_name: str) -> LayerPieces:
    """BertLayer and its copies (RoBERTa, XLM-R, ELECTRA): attention.self.{query,key,value},
    attention.output.{dense,dropout,LayerNorm}, intermediate.dense, output.{dense,dropout,LayerNorm}."""
    sa, ao, out = layer.attention.self, layer.attention.output, layer.output
    return LayerPieces(sa.query, sa.key, sa.value, ao.dense, ao.dropout, ao.LayerNorm, layer.intermediate.dense,
                       layer.intermediate.intermediate_act_fn, act_name, out.dense, out.dropout, out.LayerNorm)


class Backbone:
    """One family. Subclasses set the class attributes and override what differs from BERT's layout.

    The classifier stores the family's Hugging Face encoder (without head) as ``model.bert`` and its head
    as ``model.classifier``; checkpoints keep those names, ``hf_key`` maps them to the family's
    ``*ForSequenceClassification`` names.
    """

    model_type: str
    config_class: type
    encoder_class: type
    hf_classifier_class: type
    # config keys that must be positive integers (checked before transformers sees them), hidden and heads keys
    size_keys = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size",
                 "max_position_embeddings")
    hidden_key, heads_key = "hidden_size", "num_attention_heads"
    hf_head_keys: dict[str, str] = {}  # our head key prefix -> the HF classifier's (after "classifier.")
    # The model type of ``onnxruntime.transformers.optimizer`` whose fusions match the family's TorchScript
    # export of ``hf_classifier_class`` (export/deploy.py, docs/deploy.md §4.5). "bert" for every family here:
    # ORT has no DistilBERT, RoBERTa or ELECTRA type and its BERT patterns fuse their exports (what optimum maps them to).
    ort_optimizer_type = "bert"

    # ---- config
    def config_problem(self, config: dict) -> str | None:
        for key in self.size_keys:
            v = config.get(key)
            if v is None:
                continue  # the config class's default applies
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                return f"{key} must be a positive integer, got {v!r}"
        defaults = self.config_class()
        hidden = config.get(self.hidden_key, getattr(defaults, self.hidden_key))
        heads = config.get(self.heads_key, getattr(defaults, self.heads_key))
        if hidden % heads:
            return f"{self.hidden_key} {hidden} is not divisible by {self.heads_key} {heads}"
        return None

    def config_from_dict(self, config: dict):
        return self.prepare(self.config_class.from_dict(config))

    def prepare(self, config):
        """The config as the rest of adapler reads it (BERT's names); BERT-shaped families need nothing."""
        return config

    def config_dict(self, config) -> dict:
        """What a checkpoint stores as ``backbone``: the HF config plus BERT's names for the sizes, so code
        that reads ``backbone["num_hidden_layers"]`` works for every family."""
        s = self.shape(config)
        return {**config.to_dict(), "model_type": self.model_type, "hidden_size": s.hidden, "intermediate_size": s.ffn,
                "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
                "max_position_embeddings": config.max_position_embeddings, "hidden_act": s.act}

    def shape(self, config) -> Shape:
        return Shape(config.hidden_size, config.intermediate_size, config.num_hidden_layers,
                     config.num_attention_heads, config.max_position_embeddings, config.hidden_act,
                     config.hidden_dropout_prob)

    def uses_token_types(self, config) -> bool:
        """Whether token type ids change the output (RoBERTa's single type row does not)."""
        return getattr(config, "type_vocab_size", 0) > 1

    def hf_input_names(self, config, token_types: bool) -> list[str]:
        """The inputs of the family's exported ``*ForSequenceClassification``, as keyword names of its
        ``forward``: ``token_type_ids`` only when asked for (sentence pairs) and the family reads them."""
        return ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types and self.uses_token_types(config)
                                                  else [])

    # ---- modules
    def build_encoder(self, config, pooler: bool) -> nn.Module:
        return self._with_pooler_attr(self.encoder_class(config))

    def load_encoder(self, name: str) -> nn.Module:
        """The family's encoder from a resolved HF name; safetensors only (never unpickle)."""
        return self._with_pooler_attr(self.encoder_class.from_pretrained(name, use_safetensors=True))

    @staticmethod
    def _with_pooler_attr(encoder: nn.Module) -> nn.Module:
        # Families without BERT's pooler answer ``encoder.pooler is None`` like a pooler-less BERT does.
        if not hasattr(encoder, "pooler"):
            encoder.pooler = None
        return encoder

    def build_head(self, config, num_labels: int) -> nn.Module:
        raise NotImplementedError

    def embed(self, encoder: nn.Module, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def embedding_tables(self, encoder: nn.Module) -> EmbeddingTables:
        e = encoder.embeddings
        return EmbeddingTables(e.word_embeddings.weight, e.position_embeddings.weight, e.token_type_embeddings.weight,
                               e.LayerNorm)

    def layers(self, encoder: nn.Module) -> list[LayerPieces]:
        act = encoder.config.hidden_act
        return [bert_style_layer(layer, act) for layer in encoder.encoder.layer]

    def classify(self, model: nn.Module, cls: Tensor) -> Tensor:
        """Logits from the first token's final hidden state [B, D]."""
        raise NotImplementedError

    def head_layers(self, model: nn.Module) -> list[tuple[nn.Linear, str | None]]:
        """The head as (linear, activation after it) steps, for graph builders (dropout is inference-free)."""
        raise NotImplementedError

    def head_has_dense(self, model: nn.Module) -> bool:
        """Whether a d x d layer precedes the classifier (the FLOPs counter's pooler term)."""
        return len(self.head_layers(model)) > 1

    # ---- Hugging Face *ForSequenceClassification names
    def hf_problem(self, model: nn.Module) -> str | None:
        """Why ``model`` has no *ForSequenceClassification equivalent, or None."""
        return None

    def hf_key(self, key: str) -> str:
        """Our state-dict key -> the family's *ForSequenceClassification key."""
        prefix = self.hf_classifier_class.base_model_prefix
        if key.startswith("bert."):
            return prefix + key[len("bert"):]
        for ours, theirs in self.hf_head_keys.items():
            if key.startswith(ours):
                return theirs + key[len(ours):]
        return key
