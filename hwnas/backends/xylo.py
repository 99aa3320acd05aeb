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


MAX_HIDDEN_NEURONS = 992  # XyloAudio 3 (rockpool's mapper default); output neuron ids follow the hidden ones


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


def map_nir(graph) -> tuple[XyloCore, dict[str, np.ndarray]]:
    """A NIR graph on one XyloAudio 3 core, by rockpool (``from_nir``, ``mapper``, ``global_quantize``), and where
    the mapper placed each neuron node: its name -> the indices of its neurons among the core's hidden neurons (or,
    for the node feeding the graph's output, among the output neurons)."""
    xylo = rockpool_xylo()
    from rockpool.nn.modules import from_nir
    from rockpool.transform.quantize_methods import global_quantize

    executor = from_nir(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = xylo.mapper(_module_graph(executor, graph), weight_dtype="float", threshold_dtype="float",
                           dash_dtype="float", max_hidden_neurons=MAX_HIDDEN_NEURONS)
        spec.update(global_quantize(**spec))
    names = {id(module): name for name, module in executor.named_children()}
    placement = {}
    for module in find_neuron_modules(spec["mapped_graph"]):
        ids = np.asarray(module.hw_ids, np.int64)
        placement[names[id(module.computational_module)]] = ids - MAX_HIDDEN_NEURONS * (ids >= MAX_HIDDEN_NEURONS)
    return XyloCore.from_specification(spec), placement


def find_neuron_modules(mapped_graph) -> list:
    """The neuron modules of rockpool's mapped graph (each with its ``hw_ids``)."""
    from rockpool.graph import GenericNeurons, find_modules_of_subclass

    return list(find_modules_of_subclass(mapped_graph, GenericNeurons))


def _module_graph(executor, graph):
    """rockpool's computational graph of the modules ``from_nir`` built, joined by ``graph``'s edges, from the
    module the input feeds to the one that feeds the output. (rockpool's own ``as_graph`` of that executor takes
    the last module nirtorch 2.6 executes as the output: nirtorch orders depth-first, so with fan-in a weight
    module can come last.)"""
    import rockpool.graph as rg

    modules = {name: executor.get_submodule(name).as_graph() for name in graph.nodes if name not in ("input", "output")}
    for src, dst in graph.edges:
        if src in modules and dst in modules:
            rg.connect_modules(modules[src], modules[dst])
    first = next(dst for src, dst in graph.edges if src == "input")
    last = next(src for src, dst in graph.edges if dst == "output")
    return rg.GraphHolder(modules[first].input_nodes, modules[last].output_nodes, "hwnas_xylo_network", executor)


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
