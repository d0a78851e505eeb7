"""bench/session_options.py: session-option variants of one pruned graph, same logits, one-line errors."""
import json

import pytest

from adapler.bench.session_options import VARIANTS, main, parse_variants


def test_unknown_variant_is_named():
    assert parse_variants("base, no-arena") == ["base", "no-arena"]
    with pytest.raises(ValueError, match="unknown session variant fast; choose from base, no-mem-pattern"):
        parse_variants("base,fast")


def test_variants_of_a_pruned_graph(tmp_path, pruned_export_dir, sentiment_csv):
    out_file = tmp_path / "opts.json"
    main([str(pruned_export_dir), "--data", sentiment_csv, "--texts", "3", "--repeats", "2", "--threads", "1",
          "--json", str(out_file)])
    out = json.loads(out_file.read_text())
    assert out["graph"] == "model.ort.onnx" and out["inputs"] == 3
    assert list(out["variants"]) == list(VARIANTS) and out["variants"]["base"]["ratio"] == 1.0
    assert out["variants"]["no-mem-pattern"]["options"] == {"enable_mem_pattern": False}
    assert all(v["ms"] > 0 for v in out["variants"].values())
    with pytest.raises(SystemExit, match="already exists"):
        main([str(pruned_export_dir), "--data", sentiment_csv, "--json", str(out_file)])
    with pytest.raises(SystemExit, match="model.x.onnx does not exist; pass --graph"):
        main([str(pruned_export_dir), "--data", sentiment_csv, "--graph", "model.x.onnx"])
    with pytest.raises(SystemExit, match="unknown session variant"):
        main([str(pruned_export_dir), "--data", sentiment_csv, "--variants", "turbo"])
