"""RoBERTa and XLM-RoBERTa: BERT's layer, different embeddings and head.

- Position ids start at ``padding_idx + 1`` and are counted over non-pad tokens
  (``RobertaEmbeddings`` does this itself from ``input_ids``), so the usable length is
  ``max_position_embeddings - padding_idx - 1`` (512 for the released 514-row tables).
- One token type row (``type_vocab_size`` 1): tokenizers send no ``token_type_ids``; zeros are used.
- Head ``RobertaClassificationHead`` on ``<s>``: dropout -> dense -> tanh -> dropout -> out_proj.
"""
from __future__ import annotations

from torch import Tensor, nn
from transformers import (RobertaConfig, RobertaForSequenceClassification, RobertaModel, XLMRobertaConfig,
                          XLMRobertaForSequenceClassification, XLMRobertaModel)
from transformers.models.roberta.modeling_roberta import RobertaClassificationHead

from . import register
from .base import Backbone, EmbeddingTables, Shape


class RobertaBackbone(Backbone):
    model_type = "roberta"
    config_class = RobertaConfig
    encoder_class = RobertaModel
    hf_classifier_class = RobertaForSequenceClassification

    def build_encoder(self, config, pooler: bool) -> nn.Module:
        return self.encoder_class(config, add_pooling_layer=False)  # the head has its own dense layer

    def load_encoder(self, name: str) -> nn.Module:
        return self.encoder_class.from_pretrained(name, use_safetensors=True, add_pooling_layer=False)

    @staticmethod
    def _first_position(config) -> int:
        return (config.pad_token_id if config.pad_token_id is not None else 1) + 1

    def shape(self, config) -> Shape:
        s = super().shape(config)
        return Shape(s.hidden, s.ffn, s.layers, s.heads, config.max_position_embeddings - self._first_position(config),
                     s.act, s.dropout)

    def embedding_tables(self, encoder: nn.Module) -> EmbeddingTables:
        t = super().embedding_tables(encoder)  # real tokens of a right-padded row sit at padding_idx + 1 + i
        return EmbeddingTables(t.word, t.position[self._first_position(encoder.config):], t.token_type, t.norm)

    def build_head(self, config, num_labels: int) -> nn.Module:
        head = RobertaClassificationHead(config)
        head.out_proj = nn.Linear(config.hidden_size, num_labels)  # config.num_labels is the HF default
        return head

    def classify(self, model: nn.Module, cls: Tensor) -> Tensor:
        return model.classifier(cls[:, None])  # the head takes [B, T, D] and reads position 0

    def head_layers(self, model: nn.Module) -> list[tuple[nn.Linear, str | None]]:
        return [(model.classifier.dense, "tanh"), (model.classifier.out_proj, None)]


class XLMRobertaBackbone(RobertaBackbone):
    model_type = "xlm-roberta"
    config_class = XLMRobertaConfig
    encoder_class = XLMRobertaModel
    hf_classifier_class = XLMRobertaForSequenceClassification


register(RobertaBackbone())
register(XLMRobertaBackbone())
