"""The Lava backend: a lowered network as a graph of Lava processes, run in Lava's Loihi 2 simulator.

Mapping (every process is Lava's own, except the recorders of :mod:`hwnas.backends.lava_procs.recorder`):

* a population -> ``LIFReset`` (a ``LIF`` that zeroes u and v at the first step of every sample window);
* a convolution -> ``Conv``; any other connection (identity, pooling, average-pool-then-conv, the classifier)
  -> ``Sparse`` (or ``Dense`` when most weights are non-zero); skip fan-in is several connections into one
  ``a_in``, feedback edges are ordinary connections (Lava allows cycles);
* Lava's ``Conv`` fixed-point model ignores ``weight_exp``, so a fixed-point convolution with a negative
  exponent becomes a ``Sparse`` connection (which applies it), one with a non-negative exponent a ``Conv``
  with the shift folded into its integer weights (the same arithmetic);
* the input comes from a ``RingBuffer`` holding every sample, padded to the window; every connection's
  in-flight buffer is zeroed by a ``Reset`` process at the last step of each window, so samples are
  independent exactly as in hwnas' simulator.

Lava arrays are (x, y, channel) where hwnas' are (channel, y, x): shapes are reversed and flat indices
permuted at the border of this module. Every connection delivers one step later (pipelined timing): hwnas
step t of sample k is Lava step k * window + t + 1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import HwnasError
from ..sim.graph import INPUT
from ..sim.integer import Rasters, check_binary
from ..sim.lowering import LoweredNetwork
from ..sim.quantize import WeightFormat

MODES = ("fixed", "float")
DENSE_SHARE = 0.5  # a connection with more non-zero weights than this share is a Dense process


class LavaError(HwnasError):
    """Lava refused or failed to run the graph."""


def lava_missing() -> str | None:
    """Why Lava cannot run here (a one-line reason), or None when it is installed."""
    import importlib.util
    import sys

    try:  # lava-nc's runtime (lava-dl alone installs the namespace package 'lava' too)
        found = importlib.util.find_spec("lava.magma") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return (f"Lava is not installed in this Python ({sys.version.split()[0]}): install hwnas with its lava extra "
                "(pip install -e '.[lava]', Python 3.10; make does)")
    return None


def require_lava(backends, alternative: str) -> None:
    """A one-line :class:`OptionError` (``"<why>, or <alternative>"``) when any of ``backends`` (names) is a Lava
    one and Lava cannot run here; ``{lava}`` in ``alternative`` is replaced by those names, comma-separated."""
    from ..errors import OptionError

    lava = [name for name in backends if name.startswith("lava")]
    missing = lava_missing() if lava else None
    if missing:
        raise OptionError(f"{missing}, or {alternative.format(lava=','.join(lava))}")


def import_lava_runtime() -> None:
    """Import Lava's runtime, which calls ``multiprocessing.set_start_method("fork")`` when first imported and
    fails when anything in this process fixed the start method before (torch and tqdm can). The start method is
    'fork' either way on Linux, so an already-fixed 'fork' is released for Lava to set again."""
    import importlib
    import multiprocessing
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    missing = lava_missing()
    if missing:
        raise LavaError(missing)
    current = multiprocessing.get_start_method(allow_none=True)
    if current is not None:
        if current != "fork":
            raise LavaError(f"Lava needs the 'fork' start method of multiprocessing, this process uses '{current}'")
        multiprocessing.set_start_method(None, force=True)
    importlib.import_module("lava.magma.runtime.message_infrastructure.multiprocessing")


def lava_order(shape: tuple[int, ...]) -> tuple[tuple[int, ...], np.ndarray]:
    """Lava's shape for an hwnas shape, and the permutation p with lava_flat[i] = hwnas_flat[p[i]]."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    return tuple(reversed(shape)), index.transpose(tuple(reversed(range(len(shape))))).ravel()


def _conv_weight(weight: np.ndarray) -> np.ndarray:
    """hwnas (C_out, C_in, ky, kx) cross-correlation kernel -> Lava (C_out, kx, ky, C_in); Lava's Conv flips the
    kernel (a true convolution), so it is flipped here in advance."""
    return np.ascontiguousarray(weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


def run_lava(lowered: LoweredNetwork, inputs: np.ndarray, mode: str = "fixed",
             progress: Callable[[int, int], None] | None = None, chunk: int = 32) -> Rasters:
    """Run ``inputs`` (T, B, *input_shape) through ``lowered`` in Lava's simulator, sample after sample.

    ``mode`` ``fixed`` selects the bit-accurate fixed-point models (``Loihi2SimCfg(select_tag="fixed_pt")``),
    ``float`` the floating-point ones. The runtime is stopped on every exit path, Ctrl-C included.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    import_lava_runtime()
    from lava.magma.core.run_configs import Loihi2SimCfg

    inputs = np.asarray(inputs, dtype=np.float64)
    if tuple(inputs.shape[2:]) != lowered.input_shape:
        raise LavaError(f"inputs have shape {list(inputs.shape[2:])} per step, the graph expects "
                        f"{list(lowered.input_shape)}")
    steps_in, batch = inputs.shape[:2]
    window = steps_in + lowered.latency_steps
    total = window * batch
    with tempfile.TemporaryDirectory(prefix="hwnas-lava-") as folder:
        graph = _build(lowered, inputs, mode, window, Path(folder))
        source = graph["source"]
        config = Loihi2SimCfg(select_tag="fixed_pt" if mode == "fixed" else "floating_pt")
        # A pause exactly at a window's last step, where the Reset processes write through their reference
        # ports, hangs Lava's runtime: each run stops one step into the next window instead.
        ends = [min((done + chunk) * window + 1, total) for done in range(0, batch, chunk)]
        _run_then_stop(source, ends, config, "the graph",
                       lambda index: progress(min((index + 1) * chunk, batch), batch) if progress else None)
        return _read(lowered, graph, batch, window, total)


def _run_then_stop(source, ends: list[int], config, what: str, after=None) -> None:
    """Run the graph of ``source`` up to each step in ``ends`` in turn (``after(index)`` after each), then stop
    the runtime, whatever happened; Lava's own errors become one :class:`LavaError` line."""
    from lava.magma.core.run_conditions import RunSteps

    ran = 0
    try:
        for index, end in enumerate(ends):
            source.run(condition=RunSteps(num_steps=end - ran), run_cfg=config)
            ran = end
            if after:
                after(index)
    except (KeyboardInterrupt, HwnasError):
        raise
    except Exception as exc:  # Lava reports compile and runtime failures with many exception types
        raise LavaError(f"Lava could not run {what}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    finally:
        try:
            source.stop()
        except Exception:  # a runtime that never started has nothing to stop
            pass


def _recorded(path: Path, steps: int, perm: np.ndarray, dtype: str) -> np.ndarray:
    """A recorder's file (steps, size) with its columns put back from Lava's order into hwnas' order."""
    lava = np.array(np.memmap(path, dtype=dtype, mode="r", shape=(steps, perm.size)))
    ours = np.empty_like(lava)
    ours[:, perm] = lava
    return ours


def run_netx(path: str, inputs: np.ndarray, populations: list[tuple[str, int]]) -> Rasters:
    """Load a netx HDF5 with ``lava.lib.dl.netx.hdf5.Network`` and run 0/1 ``inputs`` (T, B, *shape) through it in
    fixed-point, one window of T steps per sample; ``populations`` names the layers (name, neurons) in order.

    netx resets each layer one step after the one before it, which makes every window compute zero-delay timing
    (see :func:`hwnas.backends.fixed_point.simulate_fixed`); layer k's window of sample s starts at step
    s T + k + 1. Only spikes are recorded (``output_current`` is None).
    """
    import_lava_runtime()
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer

    from .lava_procs.recorder import Recorder

    steps_in, batch = inputs.shape[:2]
    depth = len(populations)
    total = batch * steps_in + depth + 1
    in_shape, in_perm = lava_order(tuple(inputs.shape[2:]))
    flat = check_binary(np.asarray(inputs)).reshape(steps_in, batch, -1)[:, :, in_perm]
    data = np.zeros((total, flat.shape[2]), np.int64)
    data[: batch * steps_in] = flat.transpose(1, 0, 2).reshape(batch * steps_in, -1)
    with tempfile.TemporaryDirectory(prefix="hwnas-netx-") as folder:
        try:
            network = Network(net_config=str(path), reset_interval=steps_in, reset_offset=1)
        except Exception as exc:  # netx raises many kinds of errors for files it cannot read
            raise LavaError(f"netx could not load {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        if len(network.layers) != depth:
            raise LavaError(f"{path} has {len(network.layers)} layers, expected {depth}")
        source = RingBuffer(data=data.T.reshape(*in_shape, total))
        source.s_out.connect(network.inp)
        files = []
        for i, (layer, (name, neurons)) in enumerate(zip(network.layers, populations)):
            files.append(_memmap(Path(folder) / f"{i}.spikes", total, neurons, "uint8"))
            recorder = Recorder(shape=layer.neuron.s_out.shape, path=str(files[-1]), steps=total, dtype="uint8")
            layer.neuron.s_out.connect(recorder.a_in)
        _run_then_stop(source, [total], Loihi2SimCfg(select_tag="fixed_pt"), str(path))
        spikes = {}
        for k, ((name, neurons), file) in enumerate(zip(populations, files), start=1):
            shape = tuple(network.layers[k - 1].neuron.s_out.shape)
            _, perm = lava_order(tuple(reversed(shape)))
            ours = _recorded(file, total, perm, "uint8")
            windows = ours[k: k + batch * steps_in]  # row = step - 1; layer k's first window starts at step k + 1
            spikes[name] = windows.reshape(batch, steps_in, neurons).astype(bool)
    return Rasters(spikes, None, None)


def _build(lowered: LoweredNetwork, inputs: np.ndarray, mode: str, window: int, folder: Path) -> dict:
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.reset import Reset
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import Sparse

    from .lava_procs.recorder import Recorder

    fixed = mode == "fixed"
    steps_in, batch = inputs.shape[:2]
    total = window * batch
    in_shape, in_perm = lava_order(lowered.input_shape)
    flat = inputs.reshape(steps_in, batch, -1)[:, :, in_perm]
    data = np.zeros((batch, window, flat.shape[2]))
    data[:, :steps_in] = flat.transpose(1, 0, 2)
    data = data.reshape(total, -1).T.reshape(*in_shape, total)
    graded = not np.isin(data, (0, 1)).all()
    if fixed:
        data = check_binary(data)
    source = RingBuffer(data=data)
    ports = {INPUT: (source.s_out, lowered.input_shape)}

    lifs, recorders, files = {}, {}, {}
    for name, pop in lowered.populations.items():
        shape, perm = lava_order(pop.shape)
        if fixed:
            p = pop.fixed()
            lif = LIFReset(shape=shape, du=p["du"], dv=p["dv"], vth=p["vth"], bias_exp=p["bias_exp"],
                           bias_mant=p["bias_mant"][perm].reshape(shape), reset_interval=window, reset_offset=1)
        else:
            lif = LIFReset(shape=shape, du=pop.du, dv=pop.dv, vth=pop.theta, bias_exp=0,
                           bias_mant=pop.bias[perm].reshape(shape), reset_interval=window, reset_offset=1)
        lifs[name] = lif
        ports[name] = (lif.s_out, pop.shape)
        files[name] = _memmap(folder / f"{len(files)}.spikes", total, pop.neurons, "uint8")
        recorders[name] = Recorder(shape=shape, path=str(files[name]), steps=total, dtype="uint8")
        lif.s_out.connect(recorders[name].a_in)

    out_pop = lowered.populations[lowered.output]
    current_file = _memmap(folder / "output.current", total, out_pop.neurons, "float64")
    current_recorder = Recorder(shape=lava_order(out_pop.shape)[0], path=str(current_file), steps=total,
                                dtype="float64")
    resets = []
    for conn in lowered.connections:
        src_port, src_shape = ports[conn.src]
        dst_pop = lowered.populations[conn.dst]
        dst_shape, dst_perm = lava_order(dst_pop.shape)
        message_bits = 24 if (conn.src == INPUT and graded) else 0
        use_conv = conn.kind == "conv" and (not fixed or conn.exponent >= 0)
        if use_conv:
            weight = (np.asarray(conn.mantissa) << conn.exponent) if fixed else np.asarray(conn.weight)
            process = Conv(weight=_conv_weight(weight), input_shape=lava_order(src_shape)[0], padding=conn.padding,
                           num_message_bits=message_bits)
            src_port.connect(process.s_in)
            out = process.a_out
            buffer = process.a_buf
        else:
            _, src_perm = lava_order(src_shape)
            matrix = conn.as_matrix(src_shape, integer=fixed).tocsr()[dst_perm][:, src_perm]
            kwargs = {}
            if fixed:  # b-bit mantissas sit in the top b of Lava's 8 bits (hwnas.sim.quantize): same values
                shift = WeightFormat(bits=conn.weight_bits).chip_shift
                matrix = matrix * (1 << shift) if shift else matrix
                kwargs = {"weight_exp": conn.exponent - shift, "num_weight_bits": conn.weight_bits}
            if matrix.nnz > DENSE_SHARE * matrix.shape[0] * matrix.shape[1]:
                process = Dense(weights=matrix.toarray(), num_message_bits=message_bits, **kwargs)
            else:
                process = Sparse(weights=matrix, num_message_bits=message_bits, **kwargs)
            (src_port.flatten() if len(src_shape) > 1 else src_port).connect(process.s_in)
            out = process.a_out.reshape(dst_shape) if len(dst_shape) > 1 else process.a_out
            buffer = process.a_buff
        out.connect(lifs[conn.dst].a_in)
        if conn.dst == lowered.output:
            out.connect(current_recorder.a_in)
        reset = Reset(reset_value=0, interval=window, offset=window - 1)
        reset.connect_var(buffer)
        resets.append(reset)
    return {"source": source, "fixed": fixed, "files": files, "current": current_file, "resets": resets, "recorders": recorders}


def _memmap(path: Path, steps: int, size: int, dtype: str) -> Path:
    np.memmap(path, dtype=dtype, mode="w+", shape=(steps, size)).flush()
    return path


def _read(lowered: LoweredNetwork, graph: dict, batch: int, window: int, total: int) -> Rasters:
    spikes = {}
    for name, path in graph["files"].items():
        pop = lowered.populations[name]
        ours = _recorded(path, total, lava_order(pop.shape)[1], "uint8")
        spikes[name] = ours.reshape(batch, window, pop.neurons).astype(bool)
    out_pop = lowered.populations[lowered.output]
    current = _recorded(graph["current"], total, lava_order(out_pop.shape)[1], "float64")
    summed = current.reshape(batch, window, -1).sum(1)
    return Rasters(spikes, summed / lowered.weight_format.scale if graph["fixed"] else summed, None)
