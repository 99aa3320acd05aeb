"""From an :class:`~hwnas.arch.genotype.Architecture` to the :class:`~hwnas.sim.network.SpikingNetwork` it
describes: stem, cell, downsampling, cell, classifier."""

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
    """Build the network of ``arch``: stem, cell, downsample, cell, classifier.

    ``cell_edges`` overrides the architecture's cell with any edge list (several ops per pair make the pruning
    strategy's supernet). Populations are named ``stem``, ``cell1.n1`` .. ``cell2.n3``, ``down`` (max-pool only)
    and ``output``; ``edge_modules`` maps every cell edge to the module keys of its connections (both cells).
    """
    edges = tuple(e for e in (cell_edges if cell_edges is not None else arch.cell) if e.op != "zero")
    channels, height, width_px = arch.input_shape
    c = arch.width
    full = (c, height, width_px)
    half = (c, height // 2, width_px // 2)
    populations = [Population("stem", full, arch.neuron)]
    connections: list[tuple[Connection, Synapse]] = [(Connection(INPUT, "stem"), ConvBN(channels, c))]
    edge_modules: dict[Edge, list[str]] = {}

    def add_cell(prefix: str, input_name: str, shape: tuple[int, ...], wrap_input=None) -> str:
        names = {0: input_name, 1: f"{prefix}.n1", 2: f"{prefix}.n2", 3: f"{prefix}.n3"}
        for node in (1, 2, 3):
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

    cell1_out = add_cell("cell1", "stem", full)
    if arch.downsample == "maxpool":
        populations.append(Population("down", half, OR_NEURON))
        connections.append((Connection(cell1_out, "down"), SumPool(2)))
        cell2_out = add_cell("cell2", "down", half)
    else:
        cell2_out = add_cell("cell2", cell1_out, half, wrap_input=lambda s: AvgPoolThen(s, 2))
    populations.append(Population("output", (arch.num_classes,), arch.neuron))
    connections.append((Connection(cell2_out, "output"), FlattenLinear(c * half[1] * half[2], arch.num_classes)))
    net = SpikingNetwork(arch.input_shape, populations, connections, "output", arch.timing)
    net.edge_modules = edge_modules
    return net
