"""Fused CPU kernels for the neuron step (issue 32): the spike, the reset and their surrogate gradient, and the whole
step in Loihi's fixed-point arithmetic, each one pass over a population's state instead of the five to twenty
elementwise torch operations (each a fresh tensor and a pass over memory) that compute them otherwise.

The kernels are compiled by numba on first use (cached on disk) and compute the same values as the torch operations
of :mod:`hwnas.sim.neuron`, bit for bit: the same float operations in the same order and precision, no contraction
into fused multiply-adds (``tests/test_fused.py`` compares both, values and gradients). The torch operations remain
the path on a GPU, while a graph is traced for ONNX export, for dtypes other than float32 and float64, and inside
:func:`plain_operations`.
"""

from __future__ import annotations

import numpy as np
import torch

from .layout import layout_of
from .switch import ThreadSwitch, tracing

_plain = ThreadSwitch()
_kernels = None


def plain_operations():
    """Within the block (``with plain_operations():``, this thread), compute with torch's operations instead of the
    fused kernels."""
    return _plain.setting()


def applies(*tensors: torch.Tensor) -> bool:
    """True when the fused kernels compute for ``tensors``: on the CPU, float32 or float64, not while tracing a graph
    and not inside :func:`plain_operations`."""
    if _plain or tracing():
        return False
    return all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)


def _empty(shape, dtype: torch.dtype, layout: torch.memory_format) -> torch.Tensor:
    """A fresh tensor in ``layout`` (a flat buffer for the kernels: any shape but a four-dimensional one is
    contiguous)."""
    if layout is torch.channels_last and len(shape) == 4:
        return torch.empty(shape, dtype=dtype, memory_format=torch.channels_last)
    return torch.empty(shape, dtype=dtype)


def _flat(t: torch.Tensor, layout: torch.memory_format = torch.contiguous_format) -> np.ndarray:
    """A one-dimensional numpy view of ``t``'s elements in the memory order of ``layout`` (copied into that
    layout first when it is not already in it): every operand of one kernel call walks the same order."""
    t = t.detach()
    if layout is torch.channels_last and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(-1).numpy()
    return t.contiguous().view(-1).numpy()


def _compile():
    """The numba kernels, compiled (or loaded from numba's cache) once per process; compiled without the disk
    cache where no cache folder is writable (a read-only install, a container)."""
    global _kernels
    if _kernels is None:
        from numba import njit

        try:
            _kernels = _build(njit(cache=True, nogil=True, boundscheck=False))
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            _kernels = _build(njit(cache=False, nogil=True, boundscheck=False))
    return _kernels


def _build(jit):
    """The kernels, each decorated with ``jit``."""

    @jit
    def spike_reset(v, theta, spikes, v_out, active):  # pragma: no cover - numba-compiled
        # (v - theta) > 0 is v > theta in IEEE arithmetic; the reset v (1 - s) of a spiking neuron is v * 0: +0, or
        # NaN for an infinite membrane, as torch computes it. active[0]: the non-zero spikes and membranes after
        # the reset (neuron.count_active where du = 1)
        zero = v.dtype.type(0.0)
        one = v.dtype.type(1.0)
        count = 0
        for i in range(v.size):
            if v[i] - theta > zero:
                spikes[i] = one
                v_out[i] = v[i] * zero
                count += 1
                if v_out[i] != zero:
                    count += 1
            else:
                spikes[i] = zero
                v_out[i] = v[i]
                if v[i] != zero:
                    count += 1
        active[0] = count

    @jit
    def spike_reset_grad(v, theta, slope, grad_spikes, has_spikes, grad_v, has_v, grad_in):  # pragma: no cover
        # autograd through spike(v - theta) and v (1 - s): the surrogate of the spike's gradient (its own plus the
        # reset's -grad_v v), over (1 + slope |v - theta|)^2, plus grad_v (1 - s)
        zero = v.dtype.type(0.0)
        one = v.dtype.type(1.0)
        for i in range(v.size):
            over = v[i] - theta
            if has_spikes and has_v:
                g = grad_spikes[i] - grad_v[i] * v[i]
            elif has_spikes:
                g = grad_spikes[i]
            else:
                g = -(grad_v[i] * v[i])
            denominator = abs(over) * slope + one
            surrogate = g / (denominator * denominator)
            if has_v:
                surrogate = grad_v[i] * (one - (one if over > zero else zero)) + surrogate
            grad_in[i] = surrogate

    @jit
    def loihi_step(current, u_prev, v_prev, keep_u, keep_v, wrap, bias, threshold, limit,
                   spikes, u, v_out, v_kept, flags, count_u, active):  # pragma: no cover
        # whole numbers of 1/4096 in float64: every product below is exact, truncation is towards zero
        unit = 4096.0
        ku = keep_u / unit
        kv = keep_v / unit
        period = 2.0 * limit
        keep = v_kept.size > 0
        count = 0
        for i in range(current.size):
            ui = np.float64(current[i]) * unit
            if keep_u:
                ui += np.trunc(u_prev[i] * ku)
            if wrap:
                shifted = ui + (limit - 1.0)
                ui = shifted - np.floor(shifted / period) * period - (limit - 1.0)
            vi = np.trunc(v_prev[i] * kv) + ui
            if bias != 0.0:
                vi += bias
            flag = 0
            if vi < -limit + 1.0:
                vi = -limit + 1.0
                flag = 2
            elif vi > limit - 1.0:
                vi = limit - 1.0
                flag = 2
            u[i] = ui
            if keep:
                v_kept[i] = vi
            if vi > threshold:
                spikes[i] = 1.0
                v_out[i] = 0.0
                flag |= 1
            else:
                spikes[i] = 0.0
                v_out[i] = vi
            if keep:
                flags[i] = flag
            # neuron.count_active: |v + s| + |u| non-zero where the current decays, else v and s each counted
            if count_u:
                if abs(v_out[i] + np.float64(spikes[i])) + abs(u[i]) != 0.0:
                    count += 1
            else:
                if v_out[i] != 0.0:
                    count += 1
                if spikes[i] != 0.0:
                    count += 1
        active[0] = count

    @jit
    def loihi_step_grad(v, flags, grad_spikes, has_spikes, grad_u, has_u, grad_v, has_v, keep_u, keep_v,
                        threshold, slope, grad_current, grad_u_prev, want_u, grad_v_prev, want_v):  # pragma: no cover
        # the backward of neuron._LoihiStep, one element at a time in its order of operations
        unit = 4096.0
        ku = keep_u / unit
        kv = keep_v / unit
        for i in range(v.size):
            vi = np.float64(v[i])
            g = np.float64(grad_spikes[i]) if has_spikes else 0.0
            if has_v:
                g -= grad_v[i] * vi
            denominator = abs((vi - threshold) / unit) * slope + 1.0
            membrane = g / (denominator * denominator) / unit
            if has_v:
                membrane += 0.0 if flags[i] & 1 else grad_v[i]
            if flags[i] & 2:
                membrane = 0.0
            if want_v:
                grad_v_prev[i] = membrane * kv
            if has_u:
                membrane += grad_u[i]
            if want_u:
                grad_u_prev[i] = membrane * ku
            grad_current[i] = membrane * unit

    @jit
    def channel_sums(x, total, squares):  # pragma: no cover - numba-compiled
        # x: (N, C, M); float64 sums of x and of its exact squares, four accumulators per (n, c) in a fixed order
        n_count, c_count, m_count = x.shape
        for n in range(n_count):
            for c in range(c_count):
                s0 = s1 = s2 = s3 = 0.0
                q0 = q1 = q2 = q3 = 0.0
                last = m_count - m_count % 4
                for i in range(0, last, 4):
                    a = np.float64(x[n, c, i])
                    b = np.float64(x[n, c, i + 1])
                    d = np.float64(x[n, c, i + 2])
                    e = np.float64(x[n, c, i + 3])
                    s0 += a
                    s1 += b
                    s2 += d
                    s3 += e
                    q0 += a * a
                    q1 += b * b
                    q2 += d * d
                    q3 += e * e
                for i in range(last, m_count):
                    a = np.float64(x[n, c, i])
                    s0 += a
                    q0 += a * a
                total[c] += (s0 + s1) + (s2 + s3)
                squares[c] += (q0 + q1) + (q2 + q3)

    @jit
    def channel_sums_last(x, total, squares):  # pragma: no cover - numba-compiled
        # x: (M, C), channels last; float64 sums of x and of its exact squares per channel, rows in order
        rows, c_count = x.shape
        for m in range(rows):
            for c in range(c_count):
                a = np.float64(x[m, c])
                total[c] += a
                squares[c] += a * a

    return spike_reset, spike_reset_grad, loihi_step, loihi_step_grad, channel_sums, channel_sums_last


def channel_sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel of ``x`` (N, C, ...), the float64 sums of its values and of their squares (exact: a float32
    square fits a float64), in one pass and a fixed order."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    if layout_of(x) is torch.channels_last:
        _compile()[5](_flat(x, torch.channels_last).reshape(-1, x.shape[1]), total.numpy(), squares.numpy())
    else:
        _compile()[4](x.detach().contiguous().reshape(x.shape[0], x.shape[1], -1).numpy(), total.numpy(),
                      squares.numpy())
    return total, squares


def spike_and_reset(v: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Without gradient: spikes where ``v > theta``, the membrane after the reset, in ``v``'s dtype, and the number
    of non-zero spikes plus non-zero membranes after the reset (0-dim int64: the active neurons where the current
    does not decay, :func:`hwnas.sim.neuron.count_active`)."""
    layout = layout_of(v)
    spikes, v_out = _empty(v.shape, v.dtype, layout), _empty(v.shape, v.dtype, layout)
    active = torch.zeros((), dtype=torch.int64)
    dtype = np.float32 if v.dtype == torch.float32 else np.float64
    _compile()[0](_flat(v, layout), dtype(theta), _flat(spikes, layout), _flat(v_out, layout),
                  active.view(1).numpy())
    return spikes, v_out, active


class SpikeReset(torch.autograd.Function):
    """``s = spike(v - theta)`` (fast-sigmoid surrogate of ``slope``) and ``v (1 - s)`` in one pass, forward and
    backward, with autograd's values and gradients through those operations; keeps only ``v`` for the backward.
    The third output is :func:`spike_and_reset`'s count of active neurons (no gradient)."""

    @staticmethod
    def forward(ctx, v, theta, slope):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        spikes, v_out, active = spike_and_reset(v, theta)
        ctx.save_for_backward(v)
        ctx.constants = (theta, slope)
        ctx.mark_non_differentiable(active)
        return spikes, v_out, active

    @staticmethod
    def backward(ctx, grad_spikes, grad_v, _grad_active):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        theta, slope = ctx.constants
        if grad_spikes is None and grad_v is None:
            return None, None, None
        dtype = np.float32 if v.dtype == torch.float32 else np.float64
        empty = np.empty(0, dtype)
        layout = layout_of(v)
        grad_in = _empty(v.shape, v.dtype, layout)
        _compile()[1](_flat(v, layout), dtype(theta), dtype(slope),
                      empty if grad_spikes is None else _flat(grad_spikes.to(v.dtype), layout), grad_spikes is not None,
                      empty if grad_v is None else _flat(grad_v.to(v.dtype), layout), grad_v is not None,
                      _flat(grad_in, layout))
        return grad_in, None, None


def loihi_forward(current: torch.Tensor, u_prev: torch.Tensor, v_prev: torch.Tensor, keep_u: int, keep_v: int,
                  wrap: bool, bias: float, threshold: float, limit: int, keep_for_backward: bool,
                  count_u: bool = True):
    """One step of Loihi's fixed-point neuron (see :func:`hwnas.sim.neuron.loihi_lif_step`): spikes in ``current``'s
    dtype, ``u`` and the reset ``v`` in float64; with ``keep_for_backward``, also the membrane before the reset
    (clamped) and per neuron a flag byte (1: fired, 2: saturated); last, the active neurons
    (:func:`hwnas.sim.neuron.count_active`, ``count_u`` where the current decays; 0-dim int64)."""
    layout = layout_of(current)
    spikes = _empty(current.shape, current.dtype, layout)
    u = _empty(current.shape, torch.float64, layout)
    v_out = _empty(current.shape, torch.float64, layout)
    # float64: a graded input's current is off the 1/64 grid, and so is the membrane (float32 would round it)
    v_kept = _empty(current.shape if keep_for_backward else (0,), torch.float64, layout)
    flags = _empty(current.shape if keep_for_backward else (0,), torch.uint8, layout)
    active = torch.zeros((), dtype=torch.int64)
    _compile()[2](_flat(current, layout), _flat(u_prev, layout), _flat(v_prev, layout), keep_u, keep_v, wrap,
                  float(bias), float(threshold), float(limit), _flat(spikes, layout), _flat(u, layout),
                  _flat(v_out, layout), _flat(v_kept, layout), _flat(flags, layout), bool(count_u),
                  active.view(1).numpy())
    return spikes, u, v_out, v_kept, flags, active


def loihi_backward(v: torch.Tensor, flags: torch.Tensor, grad_spikes, grad_u, grad_v, keep_u: int, keep_v: int,
                   threshold: float, slope: float, current_dtype: torch.dtype, want_u: bool, want_v: bool):
    """The gradients of :func:`loihi_forward`'s step with respect to the current, ``u`` and ``v`` before it (None
    where not wanted), from the kept membrane and flags; ``grad_*`` may be None."""
    empty = np.empty(0, np.float64)
    layout = layout_of(v)
    grad_current = _empty(v.shape, current_dtype, layout)  # the kernel rounds each float64 gradient into it
    grad_u_prev = _empty(v.shape if want_u else (0,), torch.float64, layout)
    grad_v_prev = _empty(v.shape if want_v else (0,), torch.float64, layout)
    _compile()[3](_flat(v, layout), _flat(flags, layout),
                  empty if grad_spikes is None else _flat(grad_spikes, layout), grad_spikes is not None,
                  empty if grad_u is None else _flat(grad_u.double(), layout), grad_u is not None,
                  empty if grad_v is None else _flat(grad_v.double(), layout), grad_v is not None,
                  keep_u, keep_v, float(threshold), float(slope), _flat(grad_current, layout),
                  _flat(grad_u_prev, layout), want_u, _flat(grad_v_prev, layout), want_v)
    return grad_current, grad_u_prev if want_u else None, grad_v_prev if want_v else None
