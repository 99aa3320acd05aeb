"""The Xylo backend (issue 34): a NIR graph mapped onto a Xylo core by SynSense's own tools and run in SynSense's
bit-accurate simulator.

rockpool (SynSense's library, AGPL-3.0-or-later) and xylosim (its C++ simulator) are an optional extra,
``pip install 'hwnas[xylo]'``, imported here only, and lazily: hwnas stays MIT-licensed and runs without them.
The flow is the vendor's: ``rockpool.nn.modules.from_nir`` reads the graph, the XyloAudio 3 ``mapper`` places it on
the core's hidden and output neurons, ``global_quantize`` turns it into the chip's integers and ``XyloSim`` runs it.
The integer specification becomes an :class:`~hwnas.sim.xylo.XyloCore`, which hwnas' twin runs too.
"""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np

from ..errors import HwnasError
from ..sim.xylo import XyloCore, XyloRecord

# rockpool 3.1.0 imports two modules that need SynSense's hardware driver (samna) without the guard it puts around
# its other driver modules, so `import rockpool.devices.xylo` fails without samna. Both hold device code only (the
# XyloAudio 3 PDM microphone board, the Xylo IMU power model); registering them as empty modules before the import
# leaves every simulator and mapper untouched. samna itself is never installed: its packages here are stubs that
# download from elsewhere.
_DRIVER_ONLY_MODULES = ("rockpool.devices.xylo.syns65302.afe_samna_pdm",
                        "rockpool.devices.xylo.syns63300.power_cycles_model")


class XyloUnavailable(HwnasError):
    """rockpool or xylosim is not installed."""


def rockpool_xylo():
    """rockpool's XyloAudio 3 package (``rockpool.devices.xylo.syns65302``), imported without samna; a one-line
    :class:`XyloUnavailable` when the ``xylo`` extra is not installed."""
    try:
        import xylosim  # noqa: F401  (XyloSim is a placeholder without it)
    except ImportError:
        raise XyloUnavailable("the Xylo backend needs rockpool and xylosim: pip install 'hwnas[xylo]'") from None
    try:
        import samna  # noqa: F401
    except ImportError:
        for name in _DRIVER_ONLY_MODULES:
            sys.modules.setdefault(name, types.ModuleType(name))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from rockpool.devices.xylo import syns65302
    except ImportError as error:
        raise XyloUnavailable(f"the Xylo backend needs rockpool and xylosim: pip install 'hwnas[xylo]' ({error})") \
            from None
    return syns65302


def map_nir(graph) -> XyloCore:
    """A NIR graph on one XyloAudio 3 core, by rockpool: ``from_nir``, ``mapper`` and ``global_quantize``."""
    xylo = rockpool_xylo()
    from rockpool.nn.modules import from_nir
    from rockpool.transform.quantize_methods import global_quantize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = xylo.mapper(from_nir(graph).as_graph(), weight_dtype="float", threshold_dtype="float",
                           dash_dtype="float")
        spec.update(global_quantize(**spec))
    return XyloCore.from_specification(spec)


def run_xylosim(core: XyloCore, counts: np.ndarray) -> XyloRecord:
    """``core`` in rockpool's ``XyloSim`` on input spike counts (samples, steps, inputs), each sample from a zero
    state, with the states it records."""
    xylo = rockpool_xylo()
    counts = np.asarray(counts)
    if counts.ndim == 2:
        counts = counts[None]
    sim = xylo.XyloSim.from_specification(**core.specification())
    runs = []
    for sample in counts:
        sim.reset_state()
        output, _, record = sim(sample.astype(np.int64), record=True)
        # XyloSim's record omits the second synapse's current, which its simulator layer keeps
        record["Isyn2"] = np.array(sim._xylo_layer.rec_i_syn2).T
        runs.append({"Output": output, **record})

    def stack(key):
        return np.stack([np.asarray(run[key]).reshape(counts.shape[1], -1) for run in runs]).astype(np.int64)

    return XyloRecord(hidden_spikes=stack("Spikes"), output_spikes=stack("Output"), vmem=stack("Vmem"),
                      isyn=np.stack([stack("Isyn"), stack("Isyn2")], axis=-1), vmem_out=stack("Vmem_out"),
                      isyn_out=stack("Isyn_out"))
