"""The Xylo backend (issue 34): a NIR graph mapped onto a Xylo core by SynSense's own tools and run in SynSense's
bit-accurate simulator.

rockpool (SynSense's library, AGPL-3.0-or-later) and xylosim (its C++ simulator) are an optional extra,
``pip install 'hwnas[xylo]'``, imported here only, and lazily: hwnas stays MIT-licensed and runs without them.
The flow is the vendor's: ``rockpool.nn.modules.from_nir`` reads the graph, the chip's ``mapper`` (XyloAudio 3's or
Xylo IMU's, as the target names it) places it on the core's hidden and output neurons, ``global_quantize`` turns it
into the chip's integers and ``XyloSim`` runs it.
The integer specification becomes an :class:`~hwnas.sim.xylo.XyloCore`, which hwnas' twin runs too.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

import numpy as np

from ..errors import HwnasError
from ..sim.xylo import XyloCore, XyloRecord
from ..sim.xylo_neuron import MAX_INPUT_SPIKES

# rockpool 3.1.0 imports two modules that need SynSense's hardware driver (samna) without the guard it puts around
# its other driver modules, so `import rockpool.devices.xylo` fails without samna. Both hold device code only (the
# XyloAudio 3 PDM microphone board, the Xylo IMU power model); registering them as empty modules before the import
# leaves every simulator and mapper untouched. samna itself is never installed: its packages here are stubs that
# download from elsewhere.
_DRIVER_ONLY_MODULES = ("rockpool.devices.xylo.syns65302.afe_samna_pdm",
                        "rockpool.devices.xylo.syns63300.power_cycles_model")

# rockpool's packages of the Xylo chips hwnas targets (XyloAudio 3, Xylo IMU): each has its mapper and XyloSim
MODULES = ("syns65302", "syns63300")
DEFAULT_MODULE, DEFAULT_HIDDEN_NEURONS = "syns65302", 992


class XyloUnavailable(HwnasError):
    """rockpool or xylosim is not installed."""


def rockpool_xylo(module: str = DEFAULT_MODULE):
    """rockpool's package of a Xylo chip (``rockpool.devices.xylo.<module>``, by default XyloAudio 3's), imported
    without samna; a one-line :class:`XyloUnavailable` when the ``xylo`` extra is not installed."""
    if module not in MODULES:
        raise XyloUnavailable(f"rockpool module '{module}' is not one hwnas maps with (known: {', '.join(MODULES)})")
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
            return importlib.import_module(f"rockpool.devices.xylo.{module}")
    except ImportError as error:
        raise XyloUnavailable(f"the Xylo backend needs rockpool and xylosim: pip install 'hwnas[xylo]' ({error})") \
            from None


def map_nir(graph, target=None) -> tuple[XyloCore, dict[str, np.ndarray]]:
    """A NIR graph on one core of ``target`` (a Xylo target; default XyloAudio 3), by rockpool (``from_nir``, the
    chip's ``mapper``, ``global_quantize``), and where the mapper placed each neuron node: its name -> the indices of
    its neurons among the core's hidden neurons (or, for the node feeding the graph's output, among the output
    neurons)."""
    module = getattr(target, "rockpool_module", None) or DEFAULT_MODULE
    dense = getattr(target, "dense", None)
    hidden_limit = dense.hidden_neurons if dense is not None else DEFAULT_HIDDEN_NEURONS
    xylo = rockpool_xylo(module)
    from rockpool.nn.modules import from_nir
    from rockpool.transform.quantize_methods import global_quantize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch's deprecation of the loader rockpool calls
        executor = from_nir(graph)
        spec = xylo.mapper(_module_graph(executor, graph), weight_dtype="float", threshold_dtype="float",
                           dash_dtype="float", max_hidden_neurons=hidden_limit,
                           **({"max_output_neurons": dense.outputs} if dense is not None else {}))
        spec.update(global_quantize(**spec))
    names = {id(child): name for name, child in executor.named_children()}
    placement = {}
    for neurons in find_neuron_modules(spec["mapped_graph"]):
        ids = np.asarray(neurons.hw_ids, np.int64)
        placement[names[id(neurons.computational_module)]] = ids - hidden_limit * (ids >= hidden_limit)
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


def placement_order(net, placement: dict[str, np.ndarray]) -> np.ndarray:
    """Where rockpool placed hwnas' hidden neurons: hwnas' hidden neuron i (as :func:`~hwnas.sim.xylo.lower_xylo`
    lays them out) is rockpool's neuron ``order[i]``."""
    from ..formats.xylo import node_name
    from ..sim.xylo import hidden_order

    return np.concatenate([placement[node_name(name)] for name in hidden_order(net)])


def same_core(core: XyloCore, mapped: XyloCore, placement: dict[str, np.ndarray], net) -> bool:
    """True when rockpool's ``mapped`` core is hwnas' ``core`` with its hidden neurons placed by ``placement``."""
    order = placement_order(net, placement)
    if sorted(order.tolist()) != list(range(core.hidden)) or mapped.hidden != core.hidden:
        return False
    back = np.argsort(order)  # rockpool's neuron j is hwnas' neuron back[j]
    from ..formats.xylo import node_name

    outputs = placement[node_name(net.output)]  # hwnas' output neuron k is rockpool's outputs[k]

    def synapses(weights, rows):  # both synapses, the one hwnas leaves empty included
        full = np.zeros(weights.shape[:2] + (2,), np.int64)
        full[..., :weights.shape[2]] = weights
        return full[rows] if rows is not None else full

    hidden = ("dash_mem", "dash_syn", "threshold", "bias")
    output = ("dash_mem_out", "dash_syn_out", "threshold_out", "bias_out")
    return (np.array_equal(synapses(core.weights_in, None), synapses(mapped.weights_in, None)[:, order])
            and np.array_equal(synapses(core.weights_rec, None), synapses(mapped.weights_rec, order)[:, order])
            and np.array_equal(core.weights_out, mapped.weights_out[order][:, outputs])
            and all(np.array_equal(getattr(core, name), getattr(mapped, name)[order]) for name in hidden)
            and all(np.array_equal(getattr(core, name), getattr(mapped, name)[outputs]) for name in output)
            and [sorted(back[a] for a in mapped.aliases[j]) for j in order] == [sorted(a) for a in core.aliases]
            and (core.weight_shift_in, core.weight_shift_rec, core.weight_shift_out)
            == (mapped.weight_shift_in, mapped.weight_shift_rec, mapped.weight_shift_out))


XYLO_BACKENDS = ("hwnas_xylo", "xylosim")  # besides the trained network itself
XYLO_PAIRS = (("trained", "hwnas_xylo"), ("hwnas_xylo", "xylosim"), ("trained", "xylosim"))


def core_input(inputs, window: int) -> np.ndarray:
    """Network input (steps, samples, channels, 1, 1) as a core's spike counts (samples, ``window``, channels):
    rounded and clipped to 0..15 as the xylo arithmetic takes them, zero after the input's steps, while the
    populations behind the stem catch up."""
    counts = np.asarray(inputs.detach().cpu().numpy() if hasattr(inputs, "detach") else inputs)
    counts = counts.reshape(counts.shape[0], counts.shape[1], -1)
    padded = np.zeros((counts.shape[1], window, counts.shape[2]), np.int64)
    # whole counts, at most 15: what the chip's input takes, and what the xylo arithmetic computes with
    padded[:, :counts.shape[0]] = np.clip(np.rint(counts), 0, MAX_INPUT_SPIKES).astype(np.int64).transpose(1, 0, 2)
    return padded


def _core_rasters(net, record: XyloRecord, core: XyloCore, scale_out: float, hidden_order: np.ndarray,
                  output_order: np.ndarray):
    """A core's record as hwnas' :class:`~hwnas.sim.integer.Rasters`: spike counts per population and the output
    population's input current summed over the steps (the hidden spikes of each step but the last, through the
    output weights, in float units)."""
    from ..sim.integer import Rasters
    from ..sim.xylo import hidden_layout

    hidden = record.hidden_spikes[:, :, hidden_order]
    spikes = {name: hidden[:, :, first:end] for name, (first, end) in hidden_layout(net).items()}
    spikes[net.output] = record.output_spikes[:, :, output_order]
    current = hidden[:, :-1].sum(1) @ core.weights_out / scale_out
    return Rasters(spikes, current.astype(np.float64), None)


def validate_xylo(net, inputs, labels, target, graph=None, backends: tuple[str, ...] = XYLO_BACKENDS,
                  progress=None):
    """The trained network (in the xylo arithmetic), hwnas' twin of its core (``hwnas_xylo``) and SynSense's
    XyloSim on rockpool's mapping of its Xylo NIR graph (``graph``, else the network's own; ``xylosim``), on
    ``inputs`` (steps, samples, channels, 1, 1): spikes per layer, accuracy, the pairs compared layer by layer, and
    the energy per inference on ``target`` predicted from the trained network's spikes and from XyloSim's."""
    import time

    import torch

    from ..hw_models.energy import estimate_energy
    from ..hw_models.mapping import map_network
    from ..sim.integer import Rasters
    from ..sim.xylo import lower_xylo, simulate_xylo
    from .compare import accuracy
    from .validate import Validation, activity_from, compare_rasters, feedback_only

    say = progress or (lambda message: None)
    steps, samples = inputs.shape[:2]
    window = steps + net.latency()
    arrival = net.arrival_steps()
    layers = sorted(net.order, key=lambda name: arrival[name])
    result = Validation(samples, steps, window, layers, feedback_only(net), net.output)
    scales, _ = net.xylo_neurons()
    core = lower_xylo(net)
    counts = core_input(inputs, window)
    rasters, seconds = {}, {}
    started = time.perf_counter()
    with torch.no_grad():
        out = net(inputs.float(), record=True)
    active = {name: np.array(layer.active_updates) for name, layer in out.activity.layers.items() if name in layers}
    rasters["trained"] = Rasters({name: codes.numpy().transpose(1, 0, 2).astype(np.int64)
                                  for name, codes in out.codes.items()}, out.logits.numpy() * steps, active)
    seconds["trained"] = time.perf_counter() - started
    identity = np.arange(core.hidden), np.arange(core.outputs)
    if "hwnas_xylo" in backends:
        started = time.perf_counter()
        say(f"hwnas_xylo: the twin of the core ({core.hidden} hidden neurons), {samples} samples")
        rasters["hwnas_xylo"] = _core_rasters(net, simulate_xylo(core, counts), core, scales[net.output], *identity)
        seconds["hwnas_xylo"] = time.perf_counter() - started
    if "xylosim" in backends:
        from ..formats.xylo import node_name, to_xylo_nir

        started = time.perf_counter()
        say(f"xylosim: rockpool maps the graph and XyloSim runs {samples} samples")
        mapped, placement = map_nir(graph if graph is not None else to_xylo_nir(net), target)
        record = run_xylosim(mapped, counts)
        rasters["xylosim"] = _core_rasters(net, record, core, scales[net.output], placement_order(net, placement),
                                           placement[node_name(net.output)])
        seconds["xylosim"] = time.perf_counter() - started
    result.seconds = seconds
    for name, measured in rasters.items():
        result.spikes[name] = {layer: float(measured.spikes[layer].sum()) / samples for layer in layers}
        value = accuracy(measured.output_current, labels)
        if value is not None:
            result.accuracy[name] = value
    for reference, backend in XYLO_PAIRS:
        if reference in rasters and backend in rasters:
            rows = compare_rasters(rasters[reference], rasters[backend], layers)
            result.pairs[f"{reference}/{backend}"] = {"reference": reference, "backend": backend, "check": "exact",
                                                      "identical": all(r["identical"] for r in rows.values()),
                                                      "layers": rows}
    if target is not None and target.is_hardware:
        mapping = map_network(net, target)
        predicted = estimate_energy(out.activity, mapping, target)
        measured_on = "xylosim" if "xylosim" in rasters else "hwnas_xylo"
        measured = estimate_energy(activity_from(rasters[measured_on], net, inputs, active), mapping, target)
        result.energy = {"target": target.name, "predicted_j": predicted.energy_j, "measured_j": measured.energy_j,
                         "measured_on": measured_on,
                         "prediction_error": (predicted.energy_j - measured.energy_j) / measured.energy_j
                         if measured.energy_j else 0.0,
                         "predicted": predicted.to_dict(), "measured": measured.to_dict()}
    return result
