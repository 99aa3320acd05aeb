"""From an :class:`~hwnas.arch.genotype.Architecture` to the :class:`~hwnas.sim.network.SpikingNetwork` it
describes: stem, cells with downsampling between them, optional head pooling, classifier."""

from __future__ import annotations

from ..sim.graph import INPUT, Connection, Population
from ..sim.network import SpikingNetwork
from ..sim.neuron import OR_NEURON
from ..sim.ops import AvgPoolThen, ConvBN, FlattenLinear, Identity, SumPool, Synapse
from .dense import DenseArchitecture, build_dense_network, is_dense
from .genotype import Architecture, Edge


def cell_synapse(edge: Edge, width: int) -> Synapse:
    """The connection that implements a non-zero cell op."""
    if edge.op == "conv3x3":
        return ConvBN(width, width)
    if edge.op == "skip":
        return Identity()
    raise ValueError(f"op {edge.op} has no connection")


def build_network(arch: Architecture | DenseArchitecture, cell_edges: tuple[Edge, ...] | None = None) -> SpikingNetwork:
    """Build the network of ``arch``: stem, cell, then per further stage a downsampling and a cell, an optional
    head pooling, the classifier. With ``stem_pool`` k > 1 the stem's convolution takes the input average-pooled
    k x k (a stride-k convolution on the chip), and every later layer is k^2 times smaller.

    ``cell_edges`` overrides the architecture's cell with any edge list (several ops per pair make the pruning
    strategy's supernet). Populations are named ``stem``, ``cell<s>.n1`` .. ``cell<s>.n3``, ``down``, ``down2``, ..
    (max-pool downsampling: OR neurons; conv downsampling: spiking neurons behind average pooling then a 3x3
    convolution to the next stage's width), ``head`` (head pooling: an OR population after max-pool downsampling,
    spiking neurons behind an average pool then a convolution otherwise) and ``output``; ``edge_modules`` maps
    every cell edge to the module keys of its connections (all cells). Nodes without edges get no population.
    A :class:`~hwnas.arch.dense.DenseArchitecture` builds its network of dense populations
    (:func:`~hwnas.arch.dense.build_dense_network`).
    """
    if is_dense(arch):
        return build_dense_network(arch, cell_edges)
    edges = tuple(e for e in (cell_edges if cell_edges is not None else arch.cell) if e.op != "zero")
    channels, height, width_px = arch.input_shape
    widths = arch.stage_widths
    c, k = widths[0], arch.stem_pool
    shape = (c, height // k, width_px // k)
    populations = [Population("stem", shape, arch.neuron)]
    stem: Synapse = ConvBN(channels, c) if k == 1 else AvgPoolThen(ConvBN(channels, c), k)  # a stride-k stem
    connections: list[tuple[Connection, Synapse]] = [(Connection(INPUT, "stem"), stem)]
    edge_modules: dict[Edge, list[str]] = {}

    def add_cell(prefix: str, input_name: str, shape: tuple[int, ...], wrap_input=None) -> str:
        names = {0: input_name, 1: f"{prefix}.n1", 2: f"{prefix}.n2", 3: f"{prefix}.n3"}
        used = {node for edge in edges for node in (edge.src, edge.dst)} | {3}
        for node in (1, 2, 3):
            if node in used:  # a node without edges (dead in a canonical cell) has no population
                populations.append(Population(names[node], shape, arch.neuron))
        for edge in edges:
            synapse = cell_synapse(edge, shape[0])
            if edge.backward:
                conn = Connection(names[edge.dst], names[edge.src], backward=True, tag=edge.op)
            else:
                if edge.src == 0 and wrap_input is not None:
                    synapse = wrap_input(synapse)
                conn = Connection(names[edge.src], names[edge.dst], tag=edge.op)
            connections.append((conn, synapse))
            edge_modules.setdefault(edge, []).append(conn.module_key)
        return names[3]

    def add_pooling(name: str, source: str, k: int, new_channels: int) -> str:
        """A k x k pooling population: OR neurons after max-pooling, else spiking neurons behind a strided conv."""
        pooled = (new_channels, shape[1] // k, shape[2] // k)
        if arch.downsample == "maxpool":
            populations.append(Population(name, pooled, OR_NEURON))
            connections.append((Connection(source, name), SumPool(k)))
        else:
            populations.append(Population(name, pooled, arch.neuron))
            connections.append((Connection(source, name), AvgPoolThen(ConvBN(shape[0], new_channels), k)))
        return name

    out = add_cell("cell1", "stem", shape)
    for stage in range(2, arch.stages + 1):
        if arch.downsample == "avgpool":  # folded into the cell's input edges: no population
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
            out = add_cell(f"cell{stage}", out, shape, wrap_input=lambda s: AvgPoolThen(s, 2))
            continue
        down = add_pooling("down" if stage == 2 else f"down{stage - 1}", out, 2, widths[stage - 1])
        shape = populations[-1].shape
        out = add_cell(f"cell{stage}", down, shape)
    if arch.head_pool > 1:
        out = add_pooling("head", out, arch.head_pool, shape[0])
        shape = populations[-1].shape
    populations.append(Population("output", (arch.num_classes,), arch.neuron))
    connections.append((Connection(out, "output"), FlattenLinear(shape[0] * shape[1] * shape[2], arch.num_classes)))
    net = SpikingNetwork(arch.input_shape, populations, connections, "output", arch.timing)
    net.edge_modules = edge_modules
    return net
