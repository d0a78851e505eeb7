"""export/packed_session.py: batch 1 on model.ort.onnx, larger batches on model.ort.packed.onnx, outputs
identical to each graph run alone."""
import numpy as np
import pytest

from adapler.errors import ExportError, UsageError
from conftest import ragged_batch


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tiny_bert_dir, ort_library):
    from adapler.export.onnx import write_export_dir
    from test_export import pruned_checkpoint
    tmp = tmp_path_factory.mktemp("packed_session")
    _, ckpt = pruned_checkpoint(tmp, tiny_bert_dir)
    write_export_dir(ckpt, tmp / "export", custom=False, std=False, quantize="int8", packed=True)
    return tmp / "export"


@pytest.mark.parametrize("int8", [False, True])
def test_batch_1_runs_padded_and_larger_batches_packed(export_dir, int8):
    from adapler.export.packed_session import graph_files, open_padded_or_packed
    from adapler.plugins.token_drop.ort_session import create_session
    sess = open_padded_or_packed(export_dir, int8=int8, threads=1)
    padded_path, packed_path = graph_files(export_dir, int8)
    assert padded_path.name == ("model.ort.int8.onnx" if int8 else "model.ort.onnx")
    alone = {"padded": create_session(padded_path, threads=1), "packed": create_session(packed_path, threads=1)}
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "kept_lengths"]
    for batch, graph in ((1, "padded"), (2, "packed"), (5, "packed")):
        ids, mask = ragged_batch(batch, 20, batch)
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        assert sess.session_for(batch) is getattr(sess, graph)
        got, want = sess.run(None, feed), alone[graph].run(None, feed)
        assert len(got) == 2
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        logits = sess.run(["logits"], feed)
        np.testing.assert_array_equal(logits[0], want[0])


def test_min_packed_batch_moves_the_switch(export_dir):
    from adapler.export.packed_session import open_padded_or_packed
    sess = open_padded_or_packed(export_dir, threads=1, min_packed_batch=8)
    assert sess.session_for(7) is sess.padded and sess.session_for(8) is sess.packed
    with pytest.raises(UsageError, match="min_packed_batch must be an integer >= 1, got 0"):
        open_padded_or_packed(export_dir, min_packed_batch=0)


def test_missing_packed_graph_names_the_export_option(tmp_path):
    from adapler.export.packed_session import open_padded_or_packed
    (tmp_path / "model.ort.onnx").write_bytes(b"")
    with pytest.raises(ExportError, match=r"has no model\.ort\.packed\.onnx; export the checkpoint with "
                                          r"`python cli\.py export CKPT --packed`"):
        open_padded_or_packed(tmp_path)
    with pytest.raises(ExportError, match=r"has no model\.ort\.int8\.onnx; .*--packed --quantize int8`"):
        open_padded_or_packed(tmp_path, int8=True)
