"""hwnas networks to and from NIR graphs (``.nir``, HDF5).

Node mapping (one NIR node per concept; each op writes and reads its own nodes, :mod:`hwnas.sim.ops`):

* a population of CUBA-LIF neurons -> ``CubaLIF`` (``LIF`` when du = 1, i.e. no synaptic current memory);
  a max-pool population of OR neurons (du = dv = 1, theta = 0.5) -> ``Threshold`` after a ``SumPool2d``;
* a convolution (batch-norm folded) -> ``Conv2d`` with bias; the classifier -> ``Flatten`` + ``Linear``;
  an average pool folded into the next connection -> ``AvgPool2d`` in front of it;
* a skip connection -> a plain edge (NIR sums every edge into a node); a backward (feedback) connection -> the
  same nodes, closing a cycle in the edge list.

Time: NIR is continuous-time and stores no dt. hwnas writes, for a step of ``dt`` seconds (forward Euler),
tau_syn = dt / du, tau_mem = dt / dv, r = tau_mem / dt and w_in = tau_syn / dt (so that the input gain is exactly
the trained weight), v_leak = bias / dv, and records dt and the convention in the graph's metadata
(``hwnas.dt_s``). Reading takes dt from there, or from the caller.

Thresholds: a network trained in Loihi's arithmetic (quantisation-aware training) writes each v_threshold
halfway between the chip's threshold and the next value of its 1/4096 membrane grid
(:meth:`~hwnas.sim.neuron.NeuronParams.exported_threshold`), so a membrane on the grid never ties with it and float32
and float64 simulators decide as the chip does; the chip's integer threshold, round(64 v_threshold), is unchanged.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np

from ..arch.genotype import Architecture
from ..arch.imported import ImportedArchitecture, architecture_from_dict
from ..errors import HwnasError, NirError, first_line
from ..io_utils import write_bytes_atomic
from ..sim.graph import INPUT, TIMINGS, Connection, Population
from ..sim.network import SpikingNetwork
from ..sim.neuron import NeuronParams
from ..sim.ops import synapse_from_nir
from ..sim.ops.chain import CHAIN_NODES, Scaled
from ..sim.quantize import MIN_WEIGHT_BITS, WeightFormat

DEFAULT_DT_S = 1e-3
READOUT = "readout"  # the NIR Output node; populations keep their hwnas names
CONVENTION = ("hwnas discrete-time CUBA-LIF, forward Euler with step dt_s: du = dt/tau_syn, dv = dt/tau_mem, "
              "input gain w_in*du = 1, r*dv = 1, bias = v_leak*dv, hard reset to v_reset, spike when v > v_threshold")


def to_nir(net: SpikingNetwork, arch: Architecture | None = None, dt_s: float = DEFAULT_DT_S):
    """Build the NIR graph of a (batch-norm folded) network."""
    import nir

    if not net.is_folded:
        raise NirError("fold batch-norm before exporting (train the network, or call fold_batchnorm)")
    nodes: dict = {INPUT: nir.Input(input_type={"input": np.array(net.input_shape)})}
    edges: list[tuple[str, str]] = []
    for name, pop in net.populations.items():
        nodes[name] = _neuron_node(pop, dt_s, net.arithmetic == "loihi")
    backward = []
    for conn in net.active_connections():
        synapse = net.synapses[conn.module_key]
        source_shape = net.input_shape if conn.src == INPUT else net.populations[conn.src].shape
        chain = synapse.nir_nodes(conn.module_key, source_shape)
        previous = conn.src
        for node_name, node in chain:
            nodes[node_name] = node
            edges.append((previous, node_name))
            previous = node_name
        edges.append((previous, conn.dst))
        if conn.backward:
            backward.append([conn.src, conn.dst, conn.tag])
    nodes[READOUT] = nir.Output(output_type={"output": np.array(net.populations[net.output].shape)})
    edges.append((net.output, READOUT))
    metadata = {"hwnas.dt_s": float(dt_s), "hwnas.convention": CONVENTION, "hwnas.timing": net.timing,
                "hwnas.backward": json.dumps(backward)}
    if arch is not None:
        metadata["hwnas.architecture"] = json.dumps(arch.to_dict())
    if net.chip_format is not None:  # trained in Loihi's arithmetic: the format the chip must store
        metadata["hwnas.weight_bits"] = int(net.chip_format.bits)
    layer_bits = net.layer_weight_bits()
    if layer_bits:  # compressed: connections with bits of their own, by the name of the op's NIR node(s)
        metadata["hwnas.layer_weight_bits"] = json.dumps(layer_bits, sort_keys=True)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _neuron_node(pop: Population, dt_s: float, loihi: bool):
    import nir

    p = pop.params
    if loihi:  # decide as the chip does in every float simulator, with no membrane value on the threshold
        p = dataclasses.replace(p, theta=p.exported_threshold())
    shape = pop.shape
    full = lambda value: np.full(shape, value, dtype=np.float32)  # noqa: E731
    if p.du == 1.0 and p.dv == 1.0 and p.bias == 0.0:
        return nir.Threshold(threshold=full(p.theta))
    if p.dv == 0.0:  # no leak: NIR's IF, whose step adds r dt times the input
        if p.du != 1.0 or p.bias != 0.0:
            raise NirError(f"population {pop.name}: a neuron without leak and with current decay or bias has no NIR node")
        return nir.IF(r=full(1.0 / dt_s), v_threshold=full(p.theta), v_reset=full(0.0))
    if p.du == 1.0:
        return nir.LIF(tau=full(dt_s / p.dv), r=full(1.0 / p.dv), v_leak=full(p.bias / p.dv),
                       v_threshold=full(p.theta), v_reset=full(0.0))
    return nir.CubaLIF(tau_syn=full(dt_s / p.du), tau_mem=full(dt_s / p.dv), r=full(1.0 / p.dv),
                       v_leak=full(p.bias / p.dv), v_threshold=full(p.theta), v_reset=full(0.0), w_in=full(1.0 / p.du))


def write(path: str | Path, graph) -> None:
    """Write a NIR graph atomically (a reader never sees a half-written file)."""
    import nir

    buffer = io.BytesIO()
    nir.write(buffer, graph)
    write_bytes_atomic(path, buffer.getvalue())


def export(net: SpikingNetwork, path: str | Path, arch: Architecture | None = None, dt_s: float = DEFAULT_DT_S) -> None:
    """Export a network to ``path`` as NIR."""
    write(path, to_nir(net, arch, dt_s))


def _metadata(graph) -> dict:
    return dict(getattr(graph, "metadata", {}) or {})


def _metadata_text(graph, key: str) -> str | None:
    value = _metadata(graph).get(key)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if value is not None and not isinstance(value, str):
        raise NirError(f"metadata {key} must be text, got {type(value).__name__}")
    return value


def _metadata_json(graph, key: str):
    text = _metadata_text(graph, key)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise NirError(f"metadata {key} is not valid JSON ({exc})") from None


def recorded_dt(graph) -> float | None:
    """The step the graph records in its ``hwnas.dt_s`` metadata (None when it records none); anything but a
    finite positive number of seconds is a one-line :class:`NirError`."""
    value = _metadata(graph).get("hwnas.dt_s")
    if value is None:
        return None
    try:
        dt_s = float(np.asarray(value).reshape(-1)[0]) if np.asarray(value).size == 1 else float("nan")
    except (TypeError, ValueError):
        dt_s = float("nan")
    if not 0 < dt_s < float("inf"):
        raise NirError(f"metadata hwnas.dt_s must be a positive number of seconds, got {value!r}")
    return dt_s


def recorded_weight_format(graph) -> WeightFormat | None:
    """The weight format a graph records in its ``hwnas.weight_bits`` metadata (written by a network trained in
    Loihi's arithmetic; None when it records none); anything but a whole number of bits in 2..16 is a one-line
    :class:`NirError`."""
    value = _metadata(graph).get("hwnas.weight_bits")
    if value is None:
        return None
    array = np.asarray(value).reshape(-1)
    if array.size != 1 or array.dtype.kind not in "iuf" or not float(array[0]).is_integer() or \
            not MIN_WEIGHT_BITS <= float(array[0]) <= 16:
        raise NirError(f"metadata hwnas.weight_bits must be a whole number of bits in {MIN_WEIGHT_BITS}..16, got "
                       f"{value!r}")
    return WeightFormat(bits=int(array[0]))


def recorded_layer_weight_bits(graph) -> dict[str, int]:
    """The bits of the connections a compressed network stores in a precision of their own
    (``hwnas.layer_weight_bits``: NIR node name of the op -> bits; empty when the graph records none)."""
    data = _metadata_json(graph, "hwnas.layer_weight_bits")
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(bits, int) and not isinstance(bits, bool) and
                                             MIN_WEIGHT_BITS <= bits <= 16 for bits in data.values()):
        raise NirError("metadata hwnas.layer_weight_bits must map node names to whole numbers of bits in "
                       f"{MIN_WEIGHT_BITS}..16")
    return {str(name): bits for name, bits in data.items()}


def recorded_architecture(graph) -> Architecture | ImportedArchitecture | None:
    """The hwnas architecture an exported graph records in its metadata (None for another tool's graph)."""
    data = _metadata_json(graph, "hwnas.architecture")
    if data is None:
        return None
    try:
        return architecture_from_dict(data)
    except HwnasError as exc:
        raise NirError(f"metadata hwnas.architecture: {exc}") from None


def read_graph(path: str | Path):
    """``nir.read`` with every failure (not HDF5, truncated, type mismatch) as a one-line :class:`NirError`; the
    file's node types and array sizes are checked before anything is read, so that an unknown node is named and a
    graph declaring more than this machine holds is refused without being loaded."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise NirError(f"no NIR file at {path}")
    grouped = _prescan(path)
    try:
        return nir.read(path)
    except Exception as exc:  # h5py, nir's type checks and its registry raise many kinds
        if "Type inference" not in str(exc) or not grouped:
            raise _unreadable(path, exc) from None
    try:  # NIR 1.0's type inference does not follow grouped convolutions: hwnas checks their shapes itself
        return nir.read(path, type_check=False)
    except Exception as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> NirError:
    """The one-line error for a file that h5py or nir could not read."""
    return NirError(f"cannot read {path} as NIR: {type(exc).__name__}: {first_line(exc)}")


def _nir_node_types() -> set[str]:
    import nir

    found, stack = set(), [nir.NIRNode]
    while stack:
        for cls in stack.pop().__subclasses__():
            if cls.__name__ not in found:
                found.add(cls.__name__)
                stack.append(cls)
    return found


def _prescan(path: Path) -> bool:
    """Check a NIR file's node types and the memory its arrays take, reading only HDF5's headers; True when it
    holds a grouped convolution (which NIR 1.0's type inference cannot follow)."""
    import h5py

    from ..limits import check_memory

    known = _nir_node_types()
    arrays = {"bytes": 0, "largest": (0, "", ()), "grouped": False}

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and name.endswith("/groups") and item.size == 1:
            arrays["grouped"] = arrays["grouped"] or bool(np.asarray(item[()]).reshape(-1)[0] != 1)
        if isinstance(item, h5py.Dataset):
            size = int(item.size) * int(item.dtype.itemsize)
            arrays["bytes"] += size
            if size > arrays["largest"][0]:
                arrays["largest"] = (size, name, tuple(item.shape))
        elif isinstance(item, h5py.Group) and "type" in item and isinstance(item["type"], h5py.Dataset):
            kind = item["type"][()]
            kind = kind.decode("utf-8", errors="replace") if isinstance(kind, bytes) else str(kind)
            if kind not in known:
                node = name.rsplit("/", 1)[-1]
                raise NirError(f"{path}: node '{node}' has type '{kind}', which is no NIR node type (NIR "
                               f"{nir_version()} knows {', '.join(sorted(known))})")

    try:
        with h5py.File(path, "r") as handle:
            if "node" not in handle:
                raise NirError(f"cannot read {path} as NIR: the file has no 'node' group")
            handle["node"].visititems(visit)
    except NirError:
        raise
    except Exception as exc:  # not HDF5, truncated: h5py raises OSError and others
        raise _unreadable(path, exc) from None
    _, name, shape = arrays["largest"]
    # the arrays are read, converted to float64 where checked, and copied into the simulator's tensors
    check_memory(4 * arrays["bytes"], f"reading {path} (arrays of {arrays['bytes'] / 2 ** 30:.3g} GiB; the largest, "
                 f"{name}, has shape {list(shape)})", "this graph is larger than this machine can simulate")
    return arrays["grouped"]


def graph_size(graph) -> tuple[int, int]:
    """(neurons, input values per step) a graph declares, read from its nodes without building anything."""
    neurons, input_size = 0, 0
    for node in graph.nodes.values():
        kind = type(node).__name__
        if kind in _NEURON_TYPES:  # parameters per neuron, or scalars and the node's input type (snnTorch)
            declared = np.asarray(node.threshold if kind == "Threshold" else node.v_threshold).size
            typed = (getattr(node, "input_type", None) or {}).get("input")
            typed = int(np.prod(np.asarray(typed, dtype=np.int64))) if typed is not None and np.size(typed) else 0
            neurons += max(int(declared), typed)
        elif kind == "Input":
            input_size += int(np.prod(np.asarray(node.input_type["input"], dtype=np.int64)))
    return neurons, input_size


def check_run_memory(graph, samples: int, steps: int, runs: int, what: str) -> None:
    """Refuse (one line) running ``samples`` x ``steps`` through ``runs`` recorded simulations of ``graph`` when
    that would not fit in this machine's memory."""
    from ..limits import check_simulation_memory

    neurons, input_size = graph_size(graph)
    check_simulation_memory(neurons, input_size, samples, steps, runs,
                            f"{what}: {samples} samples x {steps} steps of {neurons} neurons",
                            "lower --samples or --steps")


def nir_version() -> str:
    import nir

    return getattr(nir, "__version__", "?")


_NEURON_TYPES = ("CubaLIF", "LIF", "IF", "Threshold")  # NEURON_READERS' keys
_SYNAPSE_TYPES = CHAIN_NODES


def load(path_or_graph, dt_s: float | None = None, timing: str | None = None) -> SpikingNetwork:
    """Build hwnas' simulator of a NIR graph (ours or another tool's, within the supported node set).

    ``dt_s`` defaults to the graph's ``hwnas.dt_s`` metadata, ``timing`` to its ``hwnas.timing`` (else
    zero-delay). Unsupported nodes, dangling edges and inconsistent shapes raise :class:`NirError`.
    """
    graph = read_graph(path_or_graph) if isinstance(path_or_graph, (str, Path)) else path_or_graph
    if _metadata_text(graph, "hwnas.profile") == "xylo":  # hwnas.formats.xylo: Xylo's neuron, rockpool's units
        raise NirError("the graph is a network for a Xylo core in rockpool's conventions, which hwnas' NIR reader does "
                       "not take: validate its run folder with --target xylo-audio3 (XyloSim and hwnas' twin run it)")
    if dt_s is None:
        dt_s = recorded_dt(graph)
        if dt_s is None:
            raise NirError("the graph records no time step (no hwnas.dt_s metadata): pass dt explicitly (--dt, seconds per step; "
                           "graphs in per-step units, as sinabs and snnTorch write them, need --dt 1)")
    dt_s = float(dt_s)
    timing = timing or _metadata_text(graph, "hwnas.timing") or "zero-delay"
    if timing not in TIMINGS:
        raise NirError(f"timing '{timing}' is unknown (metadata hwnas.timing; hwnas knows {', '.join(TIMINGS)})")
    nodes = graph.nodes
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in nodes:
                raise NirError(f"dangling edge {src} -> {dst}: no node '{end}'")
    inputs = [name for name, node in nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        feeds = {name: [dst for src, dst in graph.edges if src == name] for name in inputs}
        listed = ", ".join(f"'{name}' ({'feeds ' + ', '.join(dsts) if dsts else 'feeds nothing'})"
                           for name, dsts in feeds.items())
        raise NirError(f"hwnas simulates graphs with exactly one Input node, found {len(inputs)}: {listed or 'none'} "
                       "(nir.read adds an Input node for every node whose input is not connected)")
    input_name = inputs[0]
    declared = np.asarray(nodes[input_name].input_type["input"]).reshape(-1)
    if declared.dtype.kind not in "iuf" or not np.all(np.isfinite(declared)) or np.any(declared < 1) or \
            np.any(declared != np.round(declared)):
        raise NirError(f"Input node '{input_name}': its type must be positive whole sizes, got {declared.tolist()}")
    input_shape = tuple(int(d) for d in declared)
    if len(input_shape) in (2, 4) and input_shape[0] == 1:
        input_shape = input_shape[1:]  # a batch dimension of 1, which nirtorch's tracer records (Norse's export)
    outputs = [name for name, node in nodes.items() if type(node).__name__ == "Output"]
    for name, node in nodes.items():
        kind = type(node).__name__
        if kind not in (*_NEURON_TYPES, *_SYNAPSE_TYPES, "Input", "Output"):
            raise NirError(f"unsupported NIR node '{name}' of type {kind} (hwnas reads "
                           f"{', '.join(_NEURON_TYPES + _SYNAPSE_TYPES)}, Input, Output)")
        _check_finite(name, node)
    successors: dict[str, list[str]] = {name: [] for name in nodes}
    for src, dst in graph.edges:
        successors[src].append(dst)

    read = {name: _population(name, node, dt_s) for name, node in nodes.items() if type(node).__name__ in _NEURON_TYPES}
    populations = {name: population for name, (population, _) in read.items()}
    gains = {name: gain for name, (_, gain) in read.items()}
    if not populations:
        raise NirError("the graph has no neuron nodes (CubaLIF, LIF, IF or Threshold)")
    readout = READOUT if READOUT in outputs else (outputs[0] if len(outputs) == 1 else None)
    if readout is None:
        raise NirError(f"cannot tell the graph's output among {outputs}: name it '{READOUT}' or keep one Output")
    feeding = [src for src, dst in graph.edges if dst == readout]
    if len(feeding) != 1 or feeding[0] not in populations:
        raise NirError(f"the Output node '{readout}' must be fed by exactly one neuron node")
    output = feeding[0]

    shapes = {input_name: input_shape, **{name: pop.shape for name, pop in populations.items()}}
    chains: list[tuple[str, str, list[str]]] = []
    for source in [input_name, *populations]:
        stack = [(next_node, []) for next_node in successors[source]]
        while stack:
            node_name, chain = stack.pop()
            kind = type(nodes[node_name]).__name__
            if node_name in populations:
                chains.append((source, node_name, chain))
            elif kind in _SYNAPSE_TYPES:
                if len(chain) > 8:
                    raise NirError(f"synapse chain from {source} through {' -> '.join(chain)} is too long")
                stack.extend((following, chain + [node_name]) for following in successors[node_name])
    backward = _backward_connections(_metadata_json(graph, "hwnas.backward"), chains, input_name)
    synapses = _read_synapses(chains, nodes, shapes, gains)
    connections, chain_names = [], {}
    for number, (src, dst, chain) in enumerate(chains):
        if populations[dst].shape != shapes[dst]:  # a shape known only from what flows in
            populations[dst] = dataclasses.replace(populations[dst], shape=shapes[dst])
        synapse = synapses[number]
        out_shape = synapse.output_shape(shapes[src])
        if tuple(out_shape) != tuple(shapes[dst]) and int(np.prod(out_shape)) != int(np.prod(shapes[dst])):
            raise NirError(f"shape mismatch: {src} -> {dst} delivers {list(out_shape)}, {dst} has {list(shapes[dst])}")
        tag = chain[-1] if chain else "skip"
        conn = Connection(INPUT if src == input_name else src, dst, (src, dst, tag) in backward,
                          tag=f"{number}.{tag}".replace(".", "_"))
        connections.append((conn, synapse))
        chain_names[conn.module_key] = (src, *chain, dst)
    unshaped = [name for name, pop in populations.items() if pop.shape is None]
    if unshaped:
        raise NirError(f"cannot tell the shape of neuron node '{unshaped[0]}': nothing flows into it and its "
                       "parameters are scalars")
    try:
        net = SpikingNetwork(input_shape, list(populations.values()), connections, output, timing)
    except ValueError as exc:
        raise NirError(f"cannot simulate the graph: {exc}") from None
    net.nir_chains = chain_names
    _apply_layer_weight_bits(net, recorded_layer_weight_bits(graph), chain_names)
    net.eval()
    return net


def _apply_layer_weight_bits(net: SpikingNetwork, layer_bits: dict[str, int], chain_names: dict) -> None:
    """Give each connection whose op's NIR node(s) the metadata names its recorded bits (an op's nodes are
    named after its module key at export, ``key`` or ``key.<part>``)."""
    if not layer_bits:
        return
    formats, found = {}, set()
    for module_key, chain in chain_names.items():
        for node_name in chain[1:-1]:
            owner = node_name if node_name in layer_bits else node_name.rsplit(".", 1)[0]
            if owner in layer_bits:
                formats[module_key] = WeightFormat(bits=layer_bits[owner])
                found.add(owner)
    missing = sorted(set(layer_bits) - found)
    if missing:
        raise NirError(f"metadata hwnas.layer_weight_bits names '{missing[0]}', which is no synapse node of the graph")
    net.set_layer_weight_formats(formats)


def _read_synapses(chains: list, nodes: dict, shapes: dict, gains: dict) -> list:
    """The op of every chain, in order. A population whose shape the graph does not give (None in ``shapes``:
    scalar parameters and no input type, as Norse writes them) takes the shape of what its first chain
    delivers; chains are read once their source's shape is known."""
    synapses: dict[int, object] = {}
    pending = list(range(len(chains)))
    while pending:
        ready = [number for number in pending if shapes[chains[number][0]] is not None]
        if not ready:
            src, dst, _ = chains[pending[0]]
            raise NirError(f"cannot tell the shape of neuron node '{src}': give its parameters per neuron, or its "
                           "input type")
        for number in ready:
            src, dst, chain = chains[number]
            synapse = synapse_from_nir(chain, nodes, shapes[src], f"{src} -> {dst}")
            if gains[dst] != 1.0:  # hwnas' neuron takes its input with gain 1: the connection carries the gain
                synapse = Scaled(synapse, gains[dst])
            if shapes[dst] is None:
                shapes[dst] = tuple(synapse.output_shape(shapes[src]))
            synapses[number] = synapse
            pending.remove(number)
    return [synapses[number] for number in range(len(chains))]


def _check_finite(name: str, node) -> None:
    """Every number a node holds must be finite (NaN or inf weights, thresholds or time constants would run but
    compute nothing meaningful)."""
    for field, value in vars(node).items():
        if isinstance(value, dict):
            continue  # input_type / output_type shapes, metadata
        array = np.asarray(value) if isinstance(value, (np.ndarray, np.generic, int, float)) else None
        if array is None or array.dtype.kind not in "biuf":
            continue
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = array.reshape(-1)[~np.isfinite(array.reshape(-1))][0]
            raise NirError(f"node '{name}' ({type(node).__name__}): {field} holds {bad} (every value must be finite)")


def _population(name: str, node, dt_s: float) -> tuple[Population, float]:
    """The population of a neuron node and the gain of its input (``w_in * du * r * dv``; hwnas' neuron has
    gain 1, so another gain is folded into the connections into it)."""
    kind = type(node).__name__

    def uniform(field: str, values) -> float:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if array.size == 0 or not np.allclose(array, array[0]):
            raise NirError(f"node '{name}' ({kind}): heterogeneous {field} is not supported")
        if field.startswith("tau") and not array[0] > 0:
            raise NirError(f"node '{name}' ({kind}): {field} must be a positive time constant, got {array[0]:g}")
        return float(array[0])

    def decay(field: str, tau) -> float:
        # dt / tau; a tau written in float32 for dt (a memoryless neuron) gives 1 +- 1e-7, which is 1
        value = dt_s / uniform(field, tau)
        return 1.0 if abs(value - 1.0) < 1e-6 else value

    try:
        params, gain, shape = NEURON_READERS[kind](name, node, dt_s, uniform, decay)
    except HwnasError as exc:
        if isinstance(exc, NirError):
            raise
        raise NirError(f"node '{name}' ({kind}): {exc} (is dt right?)") from None
    return Population(name, _neuron_shape(name, node, shape), params), gain


def _threshold_neuron(name, node, dt_s, uniform, decay):
    return NeuronParams(du=1.0, dv=1.0, theta=uniform("threshold", node.threshold)), 1.0, np.asarray(node.threshold).shape


def _if_neuron(name, node, dt_s, uniform, decay):
    gain = _gain(name, "IF", uniform("r", node.r) * dt_s)  # NIR: dv/dt = R I, no leak: a step's gain is R dt
    _check_reset(name, "IF", node)
    return NeuronParams(du=1.0, dv=0.0, theta=uniform("v_threshold", node.v_threshold)), gain, np.asarray(node.r).shape


def _lif_neuron(name, node, dt_s, uniform, decay):
    dv = decay("tau", node.tau)
    r, v_leak = uniform("r", node.r), uniform("v_leak", node.v_leak)
    gain = _gain(name, "LIF", r * dv)
    _check_reset(name, "LIF", node)
    params = NeuronParams(du=1.0, dv=dv, theta=uniform("v_threshold", node.v_threshold), bias=v_leak * dv)
    return params, gain, np.asarray(node.tau).shape


def _cuba_lif_neuron(name, node, dt_s, uniform, decay):
    du, dv = decay("tau_syn", node.tau_syn), decay("tau_mem", node.tau_mem)
    gain = _gain(name, "CubaLIF", uniform("w_in", node.w_in) * du * uniform("r", node.r) * dv)
    _check_reset(name, "CubaLIF", node)
    params = NeuronParams(du=du, dv=dv, theta=uniform("v_threshold", node.v_threshold),
                          bias=uniform("v_leak", node.v_leak) * dv)
    return params, gain, np.asarray(node.tau_mem).shape


# NIR neuron node type -> its reader: (name, node, dt_s, uniform(field, values), decay(field, tau)) -> (hwnas' neuron
# parameters, input gain, parameter shape); the one table that reads a neuron node (linear nodes: CHAIN_READERS)
NEURON_READERS = {"CubaLIF": _cuba_lif_neuron, "LIF": _lif_neuron, "IF": _if_neuron, "Threshold": _threshold_neuron}


def _neuron_shape(name: str, node, param_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """A neuron node's shape: its parameters' shape, or, where a producer wrote scalar parameters (snnTorch writes
    shape (1,)), the node's recorded input type; None when neither tells."""
    recorded = getattr(node, "input_type", None) or {}
    typed = np.asarray(recorded.get("input", []) if isinstance(recorded, dict) else [], dtype=np.int64).reshape(-1)
    if int(np.prod(param_shape)) == 1 and typed.size and int(np.prod(typed)) > 1:
        return tuple(int(d) for d in typed)
    if not param_shape and not typed.size:
        return None  # scalar parameters, no input type: the shape of what flows in (see _read_synapses)
    if typed.size and int(np.prod(typed)) > 0 and tuple(typed) != tuple(param_shape) and \
            int(np.prod(typed)) != int(np.prod(param_shape)):
        raise NirError(f"node '{name}' ({type(node).__name__}): parameters of shape {list(param_shape)} for "
                       f"neurons of shape {typed.tolist()}")
    return tuple(int(d) for d in param_shape)


def _gain(name: str, kind: str, value: float) -> float:
    """The input gain of a neuron node (1 within float32 rounding); a gain that is not positive is refused."""
    if not value > 0:
        raise NirError(f"node '{name}' ({kind}): input gain (w_in * du * r * dv) is {value:.6g}, must be positive")
    return 1.0 if np.isclose(value, 1.0, rtol=1e-5) else float(value)


def _check_reset(name: str, kind: str, node) -> None:
    reset = getattr(node, "v_reset", None)
    if reset is not None and not np.allclose(np.asarray(reset), 0.0):
        raise NirError(f"node '{name}' ({kind}): v_reset must be 0 (hwnas' neuron resets to zero)")


def _backward_connections(recorded, chains: list, input_name: str) -> set[tuple[str, str, str]]:
    """Connections that close a cycle: recorded by hwnas, else the back edges of a depth-first search."""
    found = set()
    if recorded is not None:
        if not isinstance(recorded, list) or not all(isinstance(r, list) and len(r) == 3 for r in recorded):
            raise NirError("metadata hwnas.backward must be a list of [source, destination, tag] triples")
        pairs = {(src, dst) for src, dst, _ in recorded}
        return {(s, d, chain[-1] if chain else "skip") for s, d, chain in chains if (s, d) in pairs}
    graph: dict[str, list] = {}
    for src, dst, chain in chains:
        graph.setdefault(src, []).append((dst, chain[-1] if chain else "skip"))
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for dst, tag in graph.get(node, []):
            if state.get(dst) == 1:
                found.add((node, dst, tag))
            elif dst not in state:
                visit(dst)
        state[node] = 2

    visit(input_name)
    for node in list(graph):
        if node not in state:
            visit(node)
    return found
