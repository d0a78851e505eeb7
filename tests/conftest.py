import os

import pytest
import torch
from transformers import BertConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)


def tiny_config(layers: int = 4, hidden: int = 64) -> BertConfig:
    return BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=4,
                      intermediate_size=2 * hidden, vocab_size=30522, max_position_embeddings=128,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def ragged_batch(batch: int = 5, max_len: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, max_len + 1, (batch,), generator=g)
    lengths[0] = max_len
    ids = torch.randint(1000, 30000, (batch, max_len), generator=g)
    mask = (torch.arange(max_len)[None] < lengths[:, None]).long()
    ids = ids * mask
    ids[:, 0] = 101
    ids[torch.arange(batch), lengths - 1] = 102
    return ids, mask


@pytest.fixture
def tiny():
    return tiny_config()
