"""ELECTRA (discriminator): BERT's layer; embeddings of ``embedding_size`` projected to the hidden size by
``embeddings_project`` when the two differ; no pooler.

Head ``ElectraClassificationHead`` on [CLS]: dropout -> dense -> gelu -> dropout -> out_proj.
"""
from __future__ import annotations

from torch import Tensor, nn
from transformers import ElectraConfig, ElectraForSequenceClassification, ElectraModel
from transformers.models.electra.modeling_electra import ElectraClassificationHead

from . import register
from .base import Backbone, EmbeddingTables


class ElectraBackbone(Backbone):
    model_type = "electra"
    config_class = ElectraConfig
    encoder_class = ElectraModel
    hf_classifier_class = ElectraForSequenceClassification
    size_keys = Backbone.size_keys + ("embedding_size",)

    def embed(self, encoder: nn.Module, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        h = super().embed(encoder, input_ids, token_type_ids)
        return encoder.embeddings_project(h) if hasattr(encoder, "embeddings_project") else h

    def embedding_tables(self, encoder: nn.Module) -> EmbeddingTables:
        t = super().embedding_tables(encoder)
        return EmbeddingTables(t.word, t.position, t.token_type, t.norm, getattr(encoder, "embeddings_project", None))

    def build_head(self, config, num_labels: int) -> nn.Module:
        head = ElectraClassificationHead(config)
        head.out_proj = nn.Linear(config.hidden_size, num_labels)  # config.num_labels is the HF default
        return head

    def classify(self, model: nn.Module, cls: Tensor) -> Tensor:
        return model.classifier(cls[:, None])  # the head takes [B, T, D] and reads position 0

    def head_layers(self, model: nn.Module) -> list[tuple[nn.Linear, str | None]]:
        return [(model.classifier.dense, "gelu"), (model.classifier.out_proj, None)]


register(ElectraBackbone())
