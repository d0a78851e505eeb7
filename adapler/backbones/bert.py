"""BERT (and MiniLM, which is a BERT): the layout the encoder loop was written for.

Head: the optional pooler (dense + tanh on [CLS], inside ``BertModel``) -> dropout -> ``classifier``.
"""
from __future__ import annotations

from torch import Tensor, nn
from transformers import BertConfig, BertForSequenceClassification, BertModel

from . import register
from .base import Backbone


class BertBackbone(Backbone):
    model_type = "bert"
    config_class = BertConfig
    encoder_class = BertModel
    hf_classifier_class = BertForSequenceClassification

    def build_encoder(self, config, pooler: bool) -> nn.Module:
        return BertModel(config, add_pooling_layer=pooler)

    def load_encoder(self, name: str) -> nn.Module:
        return BertModel.from_pretrained(name, use_safetensors=True)

    def build_head(self, config, num_labels: int) -> nn.Module:
        return nn.Linear(config.hidden_size, num_labels)

    def classify(self, model: nn.Module, cls: Tensor) -> Tensor:
        pooler = model.bert.pooler
        pooled = pooler.activation(pooler.dense(cls)) if pooler is not None else cls
        return model.classifier(model.dropout(pooled))

    def head_layers(self, model: nn.Module) -> list[tuple[nn.Linear, str | None]]:
        pooler = model.bert.pooler
        return ([(pooler.dense, "tanh")] if pooler is not None else []) + [(model.classifier, None)]

    def hf_problem(self, model: nn.Module) -> str | None:
        if model.bert.pooler is None:
            return "the model has no pooler, which BertForSequenceClassification always applies"
        return None


register(BertBackbone())
