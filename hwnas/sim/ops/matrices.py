"""Connections as sparse (destination, source) matrices in hwnas' flat (C, H, W) order, for the chip's
representation (:mod:`hwnas.sim.lowering`) and the integer twin."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse


def conv_matrix(weight: np.ndarray, in_shape: tuple[int, ...], padding: int, stride: int = 1,
                groups: int = 1) -> sparse.csr_matrix:
    """A convolution (cross-correlation, as torch computes it; zero padding, no dilation) as a (out, in) sparse
    matrix. ``weight`` is (C_out, C_in / groups, k_h, k_w)."""
    c_out, c_in_group, kh, kw = weight.shape
    _, height, width = in_shape
    out_h, out_w = (height + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1
    oc, ic, dy, dx, oy, ox = np.meshgrid(np.arange(c_out), np.arange(c_in_group), np.arange(kh), np.arange(kw),
                                         np.arange(out_h), np.arange(out_w), indexing="ij")
    iy, ix = oy * stride + dy - padding, ox * stride + dx - padding
    inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
    w = weight[oc, ic, dy, dx]
    keep = inside & (w != 0)
    channel = (oc // (c_out // groups)) * c_in_group + ic  # the input channel within the output channel's group
    rows = (oc * out_h + oy) * out_w + ox
    cols = (channel * height + iy) * width + ix
    return sparse.csr_matrix((w[keep], (rows[keep], cols[keep])),
                             shape=(c_out * out_h * out_w, c_in_group * groups * height * width))


def pool_matrix(in_shape: tuple[int, ...], k: int, value: float) -> sparse.csr_matrix:
    """Non-overlapping k x k pooling with weight ``value`` as a (out, in) sparse matrix (floor-cut border)."""
    c, height, width = in_shape
    out_h, out_w = height // k, width // k
    ch, oy, ox, dy, dx = np.meshgrid(np.arange(c), np.arange(out_h), np.arange(out_w), np.arange(k), np.arange(k),
                                     indexing="ij")
    rows = ((ch * out_h + oy) * out_w + ox).ravel()
    cols = ((ch * height + oy * k + dy) * width + ox * k + dx).ravel()
    return sparse.csr_matrix((np.full(rows.size, value), (rows, cols)), shape=(c * out_h * out_w, c * height * width))
