"""Triton kernels of ``adapler::TokenDrop`` (optional dependency, CUDA tensors only).

Two kernels: a scan per row (keep flags, stable slots, kept count), then one program per output slot
that writes ``index``/``mask_c`` and copies the hidden row. ``TRITON_AVAILABLE`` is False (and
``TRITON_UNAVAILABLE_REASON`` says why) where Triton does not import; ``gpu.token_drop_gpu`` then uses torch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .keep_rule import check_inputs

__all__ = ["TRITON_AVAILABLE", "TRITON_UNAVAILABLE_REASON", "token_drop_triton"]

try:  # optional dependency
    import triton
    import triton.language as tl

    TRITON_AVAILABLE = True
    TRITON_UNAVAILABLE_REASON = ""
except Exception as exc:  # ImportError, or a broken install
    triton = None
    tl = None
    TRITON_AVAILABLE = False
    TRITON_UNAVAILABLE_REASON = f"Triton not installed ({type(exc).__name__}: {exc})"

if TRITON_AVAILABLE:

    @triton.jit
    def _td_scan_rows(scores_ptr, mask_ptr, thr_ptr, thr_stride, order_ptr, count_ptr, T, BLOCK_T: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK_T)
        inb = offs < T
        s = tl.load(scores_ptr + row * T + offs, mask=inb, other=0.0)
        m = tl.load(mask_ptr + row * T + offs, mask=inb, other=0)
        thr = tl.load(thr_ptr + row * thr_stride)
        keep = (((m == 1) & (s >= thr)) | (offs == 0)) & inb
        k = keep.to(tl.int32)
        csum = tl.cumsum(k, axis=0)  # inclusive prefix -> stable slot = csum - 1
        tl.store(order_ptr + row * T + (csum - 1), offs, mask=keep)
        tl.store(count_ptr + row, tl.sum(k, axis=0))

    @triton.jit
    def _td_write_rows(hidden_ptr, order_ptr, count_ptr, hidden_c_ptr, mask_c_ptr, index_ptr, T, D, L,
                       BLOCK_D: tl.constexpr):
        slot = tl.program_id(0)
        row = tl.program_id(1)
        valid = slot < tl.load(count_ptr + row)
        src = tl.where(valid, tl.load(order_ptr + row * T + slot), -1).to(tl.int64)
        out_row = row.to(tl.int64) * L + slot
        tl.store(index_ptr + out_row, src)
        tl.store(mask_c_ptr + out_row, valid.to(tl.int64))
        src_base = (row.to(tl.int64) * T + src) * D
        for d0 in range(0, D, BLOCK_D):
            offs = d0 + tl.arange(0, BLOCK_D)
            dm = offs < D
            x = tl.load(hidden_ptr + src_base + offs, mask=dm & valid, other=0.0)
            tl.store(hidden_c_ptr + out_row * D + offs, x, mask=dm)


def token_drop_triton(
    hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton kernels (scan per row, then one program per output slot). CUDA tensors only.

    Not run in CI (no GPU, no Triton there); ``gpu.token_drop_gpu`` compares it with ``token_drop_torch``
    on first use per device/dtype.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError(TRITON_UNAVAILABLE_REASON)
    b, t, d = check_inputs(hidden, scores, mask, threshold)
    if not hidden.is_cuda:
        raise ValueError("token_drop_triton needs CUDA tensors")
    hidden = hidden.contiguous()
    scores = scores.to(torch.float32).contiguous()
    mask = mask.to(torch.int64).contiguous()
    thr = threshold.reshape(-1).to(device=hidden.device, dtype=torch.float32).contiguous()
    order = torch.empty((b, t), dtype=torch.int32, device=hidden.device)
    count = torch.empty((b,), dtype=torch.int32, device=hidden.device)
    if b == 0:
        return hidden.new_zeros((0, 1, d)), mask.new_zeros((0, 1)), mask.new_full((0, 1), -1)
    _td_scan_rows[(b,)](scores, mask, thr, 0 if thr.numel() == 1 else 1, order, count, t,
                        BLOCK_T=triton.next_power_of_2(t))
    length = int(count.max())  # the one sync
    hidden_c = torch.empty((b, length, d), dtype=hidden.dtype, device=hidden.device)
    mask_c = torch.empty((b, length), dtype=torch.int64, device=hidden.device)
    index = torch.empty((b, length), dtype=torch.int64, device=hidden.device)
    block_d = min(1024, triton.next_power_of_2(max(d, 1)))
    _td_write_rows[(length, b)](hidden, order, count, hidden_c, mask_c, index, t, d, length, BLOCK_D=block_d)
    return hidden_c, mask_c, index
