"""bench/torch_drop_kernel.py: the eager model with each token_drop CPU kernel, same outputs, timed paired."""
import json

import pytest

import adapler.ops as ops
from conftest import adapler_model


def test_probe_times_both_kernels_and_restores_the_op(tmp_path, tiny_bert_dir, sentiment_csv):
    from transformers import AutoTokenizer

    from adapler.bench.torch_drop_kernel import main
    from adapler.checkpoint import save_checkpoint
    ckpt = save_checkpoint(adapler_model(2, eta=0.9), tmp_path / "ckpt",
                           tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)), label_names=["a", "b"],
                           max_length=32)
    kernel = ops.token_drop_torch
    out_file = tmp_path / "k.json"
    main([str(ckpt), str(ckpt), "--data", sentiment_csv, "--texts", "3", "--repeats", "2", "--threads", "1",
          "--json", str(out_file)])
    assert ops.token_drop_torch is kernel  # the op's kernel is put back
    out = json.loads(out_file.read_text())
    assert out["texts"] == 3 and set(out["mean_ms"]) == {"dense", "token_drop_torch", "token_drop_std"}
    assert all(v > 0 for v in out["mean_ms"].values()) and out["token_drop_torch_vs_std_median_ratio"] > 0
    with pytest.raises(SystemExit, match="already exists"):
        main([str(ckpt), str(ckpt), "--data", sentiment_csv, "--json", str(out_file)])
