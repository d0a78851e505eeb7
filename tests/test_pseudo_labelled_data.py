"""bench/pseudo_labelled_data.py: pool sentences, the held-out filter, and the folder it writes."""
import csv

from adapler.bench.pseudo_labelled_data import main, pool_sentences, without_held_out
from adapler.data import load_dataset
from conftest import probe_pair


def test_pool_sentences_split_filter_and_deduplicate():
    texts = ["One two three four five six. Short one! One two three four five six.\nA b c d e f g?",
             " ".join(["w"] * 46) + "."]
    assert pool_sentences(texts) == ["A b c d e f g?", "One two three four five six."]


def test_held_out_texts_are_never_trained_on():
    sentences = ["the film is a quiet triumph of craft .", "it drags , and the ending is flat .",
                 "plot summary : a man walks into a bar and the film is a quiet triumph of craft , says he .",
                 "nothing here resembles anything else at all ."]
    kept = without_held_out(sentences, held_out=["The film is a quiet triumph of craft!"],
                            seen=["It drags, and the ending is FLAT."])
    assert kept == ["nothing here resembles anything else at all ."]


def test_writes_train_plus_labelled_pool_and_the_untouched_splits(tmp_path, tiny_bert_dir, capsys):
    data_csv = probe_pair(tmp_path, tiny_bert_dir, tmp_path / "pruned")
    pool = tmp_path / "pool.csv"
    pool.write_text("text,label\n" + "".join(
        f'"review {i} opens slowly here . then review {i} finds its feet and soars ! short .",{("negative", "positive")[i % 2]}\n'
        for i in range(20)))
    out = tmp_path / "aug"
    args = ["--data", data_csv, "--pool", str(pool), "--teacher", str(tmp_path / "ft"), "--n", "5", "--out", str(out)]
    assert main(args) == 0
    data = load_dataset(data_csv)
    rows = {name: list(csv.DictReader(open(out / f"{name}.csv"))) for name in ("train", "dev", "test")}
    assert [r["text"] for r in rows["train"][:len(data.train)]] == [e.text for e in data.train]
    added = rows["train"][len(data.train):]
    assert len(added) == 5 and all(r["text"].startswith(("review", "then review")) for r in added)
    assert {r["label"] for r in added} <= set(data.label_names)
    assert [r["text"] for r in rows["test"]] == [e.text for e in data.test]
    assert [r["label"] for r in rows["dev"]] == [data.label_names[e.label] for e in data.dev]
    assert "40 pool sentences, 5 added" in capsys.readouterr().out
    assert main(args) == 5  # an existing --out is never overwritten
