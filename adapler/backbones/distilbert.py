"""DistilBERT: its own names for BERT's post-LayerNorm layer, no token types, no pooler.

Layer: attention.{q_lin,k_lin,v_lin,out_lin}, sa_layer_norm, ffn.{lin1,activation,lin2,dropout},
output_layer_norm (no dropout after out_lin). Positions: a learned table, or a fixed sinusoidal one
(``sinusoidal_pos_embds``) stored in the same weight, so both load the same way.
Head on [CLS]: pre_classifier -> ReLU -> dropout -> classifier.

The config says dim / hidden_dim / n_layers / n_heads / activation; ``DistilBertConfig`` already
answers hidden_size, num_hidden_layers and num_attention_heads, and ``prepare`` adds
intermediate_size and hidden_act, the other BERT names the rest of adapler reads.
"""
from __future__ import annotations

from torch import Tensor, nn
from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

from . import register
from .base import Backbone, EmbeddingTables, LayerPieces, Shape


class DistilBertHead(nn.Module):
    def __init__(self, config: DistilBertConfig, num_labels: int):
        super().__init__()
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.classifier = nn.Linear(config.dim, num_labels)

    def forward(self, cls: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.pre_classifier(cls).relu()))


class DistilBertBackbone(Backbone):
    model_type = "distilbert"
    config_class = DistilBertConfig
    encoder_class = DistilBertModel
    hf_classifier_class = DistilBertForSequenceClassification
    size_keys = ("dim", "hidden_dim", "n_layers", "n_heads", "vocab_size", "max_position_embeddings")
    hidden_key, heads_key = "dim", "n_heads"
    hf_head_keys = {"classifier.pre_classifier.": "pre_classifier.", "classifier.classifier.": "classifier."}

    def prepare(self, config):
        config.intermediate_size = config.hidden_dim
        config.hidden_act = config.activation
        return config

    def config_from_dict(self, config: dict):
        # the BERT-named copies config_dict adds would override dim & co. through attribute_map
        bert_names = ("hidden_size", "num_hidden_layers", "num_attention_heads")
        return self.prepare(DistilBertConfig.from_dict({k: v for k, v in config.items() if k not in bert_names}))

    def shape(self, config) -> Shape:
        return Shape(config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.max_position_embeddings,
                     config.activation, config.dropout)

    def uses_token_types(self, config) -> bool:
        return False

    def build_encoder(self, config, pooler: bool) -> nn.Module:
        return self._with_pooler_attr(DistilBertModel(self.prepare(config)))

    def load_encoder(self, name: str) -> nn.Module:
        encoder = self._with_pooler_attr(DistilBertModel.from_pretrained(name, use_safetensors=True))
        self.prepare(encoder.config)
        return encoder

    def build_head(self, config, num_labels: int) -> nn.Module:
        return DistilBertHead(config, num_labels)

    def embed(self, encoder: nn.Module, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        return encoder.embeddings(input_ids=input_ids)  # no token types

    def embedding_tables(self, encoder: nn.Module) -> EmbeddingTables:
        e = encoder.embeddings
        return EmbeddingTables(e.word_embeddings.weight, e.position_embeddings.weight, None, e.LayerNorm)

    def layers(self, encoder: nn.Module) -> list[LayerPieces]:
        return [LayerPieces(b.attention.q_lin, b.attention.k_lin, b.attention.v_lin, b.attention.out_lin, nn.Identity(),
                            b.sa_layer_norm, b.ffn.lin1, b.ffn.activation, encoder.config.activation, b.ffn.lin2,
                            b.ffn.dropout, b.output_layer_norm)
                for b in encoder.transformer.layer]

    def classify(self, model: nn.Module, cls: Tensor) -> Tensor:
        return model.classifier(cls)

    def head_layers(self, model: nn.Module) -> list[tuple[nn.Linear, str | None]]:
        return [(model.classifier.pre_classifier, "relu"), (model.classifier.classifier, None)]


register(DistilBertBackbone())
