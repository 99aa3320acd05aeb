"""From an :class:`~hwnas.arch.genotype.Architecture` to the :class:`~hwnas.sim.network.SpikingNetwork` it
describes: stem, cells with downsampling between them, optional head pooling, classifier."""

from __future__ import annotations

from ..sim.graph import INPUT, Connection, Population
from ..sim.network import SpikingNetwork
from ..sim.neuron import OR_NEURON
from ..sim.ops import AvgPoolThen, ConvBN, FlattenLinear, Identity, SumPool, Synapse
from .genotype import Architecture, Edge


def cell_synapse(edge: Edge, width: int) -> Synapse:
    """The connection that implements a non-zero cell op."""
    if edge.op == "conv3x3":
        return ConvBN(width, width)
    if edge.op == "skip":
        return Identity()
    raise ValueError(f"op {edge.op} has no connection")


def build_network(arch: Architecture, cell_edges: tuple[Edge, ...] | None = None) -> SpikingNetwork:
    """Build the network of ``arch``: stem, cell, then per further stage a downsampling and a cell, an optional
    head pooling, the classifier.

    ``cell_edges`` overrides the architecture's cell with any edge list (several ops per pair make the pruning
    strategy's supernet). Populations are named ``stem``, ``cell<s>.n1`` .. ``cell<s>.n3``, ``down``, ``down2``, ..
    (max-pool downsampling only), ``head`` (head pooling) and ``output``; ``edge_modules`` maps every cell edge
    to the module keys of its connections (all cells). Nodes without edges get no population.
    """
    edges = tuple(e for e in (cell_edges if cell_edges is not None else arch.cell) if e.op != "zero")
    channels, height, width_px = arch.input_shape
    c = arch.width
    full = (c, height, width_px)
    populations = [Population("stem", full, arch.neuron)]
    connections: list[tuple[Connection, Synapse]] = [(Connection(INPUT, "stem"), ConvBN(channels, c))]
    edge_modules: dict[Edge, list[str]] = {}

    def add_cell(prefix: str, input_name: str, shape: tuple[int, ...], wrap_input=None) -> str:
        names = {0: input_name, 1: f"{prefix}.n1", 2: f"{prefix}.n2", 3: f"{prefix}.n3"}
        used = {node for edge in edges for node in (edge.src, edge.dst)} | {3}
        for node in (1, 2, 3):
            if node in used:  # a node without edges (dead in a canonical cell) has no population
                populations.append(Population(names[node], shape, arch.neuron))
        for edge in edges:
            synapse = cell_synapse(edge, c)
            if edge.backward:
                conn = Connection(names[edge.dst], names[edge.src], backward=True, tag=edge.op)
            else:
                if edge.src == 0 and wrap_input is not None:
                    synapse = wrap_input(synapse)
                conn = Connection(names[edge.src], names[edge.dst], tag=edge.op)
            connections.append((conn, synapse))
            edge_modules.setdefault(edge, []).append(conn.module_key)
        return names[3]

    shape = full
    out = add_cell("cell1", "stem", full)
    for stage in range(2, arch.stages + 1):
        shape = (c, shape[1] // 2, shape[2] // 2)
        if arch.downsample == "maxpool":
            down = "down" if stage == 2 else f"down{stage - 1}"
            populations.append(Population(down, shape, OR_NEURON))
            connections.append((Connection(out, down), SumPool(2)))
            out = add_cell(f"cell{stage}", down, shape)
        else:
            out = add_cell(f"cell{stage}", out, shape, wrap_input=lambda s: AvgPoolThen(s, 2))
    if arch.head_pool > 1:
        shape = (c, shape[1] // arch.head_pool, shape[2] // arch.head_pool)
        populations.append(Population("head", shape, OR_NEURON))
        connections.append((Connection(out, "head"), SumPool(arch.head_pool)))
        out = "head"
    populations.append(Population("output", (arch.num_classes,), arch.neuron))
    connections.append((Connection(out, "output"), FlattenLinear(c * shape[1] * shape[2], arch.num_classes)))
    net = SpikingNetwork(arch.input_shape, populations, connections, "output", arch.timing)
    net.edge_modules = edge_modules
    return net
