"""bench/paired_accuracy.py: paired difference, bootstrap interval, exact McNemar, file checks."""
import json

import numpy as np
import pytest

from adapler.bench.paired_accuracy import compare_files, main
from adapler.stats import mcnemar_exact, paired_difference


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(9, 1) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_exact(3, 3) == 1.0


def test_paired_difference():
    base = np.ones(200, bool)
    model = base.copy()
    model[:4] = False  # 4 texts lost
    model_gain = model.copy()
    model_gain[:1] = True
    r = paired_difference(base, model, samples=2000, drop=1.0)
    assert r["diff_points"] == pytest.approx(-2.0) and r["only_base_right"] == 4 and r["only_model_right"] == 0
    lo, hi = r["ci95_points"]
    assert lo < -2.0 < hi <= 0.0 and not r["within_points_at_95"]
    assert paired_difference(base, model, samples=2000, drop=5.0)["within_points_at_95"]
    same = paired_difference(base, base.copy(), samples=500)
    assert same["diff_points"] == 0 and same["ci95_points"] == [0.0, 0.0] and same["mcnemar_p"] == 1.0
    assert paired_difference(base, model_gain, samples=500)["diff_points"] == pytest.approx(-1.5)
    with pytest.raises(ValueError, match="same, non-empty set"):
        paired_difference(base, base[:10])


def _write(path, ids, labels, preds, data="d", split="test", predictions=True):
    m = {"data": data, "split": split, "accuracy": float(np.mean(np.array(labels) == np.array(preds)))}
    if predictions:
        m["predictions"] = {"ids": ids, "labels": labels, "preds": preds}
    path.write_text(json.dumps(m))
    return path


def test_files_and_errors(tmp_path):
    ids = [f"x:{i}" for i in range(50)]
    labels = [i % 2 for i in range(50)]
    base = _write(tmp_path / "ft.json", ids, labels, labels)
    worse = _write(tmp_path / "m.json", ids, labels, [1 - v if i < 5 else v for i, v in enumerate(labels)])
    out = compare_files(base, [worse], samples=500)
    r = out["models"][str(worse)]
    assert r["diff_points"] == pytest.approx(-10.0) and r["n_examples"] == 50 and r["model_accuracy"] == 0.9
    other = _write(tmp_path / "o.json", ids[::-1], labels[::-1], labels[::-1])
    with pytest.raises(ValueError, match="evaluated on other examples"):
        compare_files(base, [other])
    old = _write(tmp_path / "old.json", ids, labels, labels, predictions=False)
    with pytest.raises(ValueError, match="has no per-example predictions; write it again"):
        compare_files(base, [old])
    out_file = tmp_path / "cmp.json"
    main([str(base), str(worse), "--samples", "200", "--json", str(out_file)])
    assert json.loads(out_file.read_text())["models"][str(worse)]["only_base_right"] == 5
    with pytest.raises(SystemExit, match="already exists"):
        main([str(base), str(worse), "--json", str(out_file)])
    with pytest.raises(SystemExit, match="no per-example predictions"):
        main([str(base), str(old)])
    with pytest.raises(SystemExit, match="--drop not negative"):
        main([str(base), str(worse), "--drop", "-1"])
