"""Per-sentence d x d Jacobians of row-wise maps, batched: a short-run chain z_0 -> z_K with its noise
held fixed (its log-determinant gives the change-of-variables density), or the gradient map
z -> grad_z NLL(x|z) (its Jacobian is the Hessian of a Laplace approximation).

A row-wise map sends each sentence's z[b] to out[b], and row b depends on row b only, so the full
Jacobian is block diagonal with one d x d block per sentence. `batched_jacobian` gets all blocks from
ONE differentiable pass of the map over the whole batch and ONE batched backward pass:
`torch.autograd.grad(..., is_grads_batched=True)` pushes the d cotangents e_1 .. e_d (each applied to
every row at once) through the graph together (vmap), and cotangent e_i yields row i of every
sentence's block. The forward values are computed once, not d times. `replicated_log_det` gives the
same log-determinants in a form that is cheap to differentiate again (step-size learning).
`reference_log_det` is the slow per-sentence, per-output-dimension version the chain's
log-determinant is tested and benchmarked against.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Callable

import torch
from torch import Tensor

RowwiseMap = Callable[[Tensor, Tensor], Tensor]
"""f(z [n, d], rows [n]) -> out [n, d], differentiable: output row r is the map of item rows[r]
(e.g. the chain of sentence rows[r] with its own fixed noise) at z[r], and depends on z[r] only."""
LogDet = Callable[[RowwiseMap, Tensor], tuple[Tensor, Tensor]]


def batched_jacobian(fn: RowwiseMap, z: Tensor) -> tuple[Tensor, Tensor]:
    """fn(z) [N, d] and the per-row Jacobians [N, d, d] ([n, i, j] = d out[n, i] / d z[n, j])."""
    num, dim = z.shape
    start = z.detach().clone().requires_grad_(True)
    basis = torch.eye(dim, device=z.device, dtype=z.dtype).unsqueeze(1).expand(dim, num, dim)
    with torch.enable_grad():
        out = fn(start, torch.arange(num, device=z.device))
        (grads,) = torch.autograd.grad(out, start, grad_outputs=basis, is_grads_batched=True)
    return out.detach(), grads.transpose(0, 1)


def batched_log_det(chain: RowwiseMap, z0: Tensor) -> tuple[Tensor, Tensor]:
    """End points z_K [N, d] and log |det dz_K/dz_0| [N] for the N start points z0 [N, d]."""
    end, jacobian = batched_jacobian(chain, z0)
    return end, torch.linalg.slogdet(jacobian).logabsdet


def replicated_log_det(chain: RowwiseMap, z0: Tensor) -> tuple[Tensor, Tensor]:
    """The same values as `batched_log_det`, differentiable with respect to what the chain depends on
    besides z0 (e.g. its step sizes, for step-size learning).

    The chain runs on d copies of each start point and copy i of sentence n gives row i of its block
    through one plain backward pass (create_graph): d times the forward work of `batched_log_det`, but
    no vmap, whose batched backward leaves a graph that is several times slower to differentiate again.
    """
    num, dim = z0.shape
    start = z0.detach().repeat_interleave(dim, dim=0).requires_grad_(True)
    with torch.enable_grad():
        out = chain(start, torch.arange(num, device=z0.device).repeat_interleave(dim)).view(num, dim, dim)
        own_row = out.diagonal(dim1=1, dim2=2).sum()  # copy i of sentence n contributes its output i
        (grads,) = torch.autograd.grad(own_row, start, create_graph=True)
    return out[:, 0], torch.linalg.slogdet(grads.view(num, dim, dim)).logabsdet


def reference_log_det(chain: RowwiseMap, z0: Tensor) -> tuple[Tensor, Tensor]:
    """The same as `batched_log_det`, one sentence and one output dimension at a time (slow; for checks)."""
    ends, log_dets = [], []
    for n in range(z0.shape[0]):
        start = z0[n:n + 1].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            end = chain(start, torch.tensor([n], device=z0.device))[0]
            grads = [torch.autograd.grad(end[i], start, retain_graph=True)[0][0] for i in range(end.shape[0])]
        ends.append(end.detach())
        log_dets.append(torch.linalg.slogdet(torch.stack(grads)).logabsdet)
    return torch.stack(ends), torch.stack(log_dets)


def double_backward_ready(device: torch.device) -> ExitStack:
    """Kernels whose backward can be differentiated and batched for the Jacobian passes.

    CUDA: cuDNN's LSTM has no double backward. CPU: oneDNN's LSTM backward has no batching rule, so the
    batched backward would loop over the d cotangents for it; the native LSTM kernels batch.
    """
    stack = ExitStack()
    if device.type == "cuda":
        stack.enter_context(torch.backends.cudnn.flags(enabled=False))
    else:
        stack.enter_context(torch.backends.mkldnn.flags(enabled=False, allow_tf32=None))  # None: leave TF32 alone
    return stack
