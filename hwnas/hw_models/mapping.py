"""Placing a spiking network's neuron populations onto a target's cores.

Model (hwnas' own; each assumption stated):

* A population is cut into *blocks* of consecutive neurons in position-major order (all channels of one pixel,
  then the next pixel), so a block of a convolutional layer needs only the input window around its pixels.
* A block fits a core when its neurons, its input axons (distinct source neurons with a synapse into the
  block, counted per source population) and its synapse bits stay within the core's limits. A synapse takes
  ``synapse_bits``, less the weight bits its connection does not use when it holds fewer than the target's
  ``weight_bits`` (a compressed connection; :func:`synapse_storage_bits`); pruned (zero) weights are no synapses.
  On a target with ``core.shared_conv_weights`` (Loihi's hierarchical connectivity) a convolution's synapses
  are not stored per neuron: the block stores the convolution's kernel once (all of it, whatever share of the
  layer the block holds: conservative), and only the other connections' synapses per neuron.
  Each population is cut greedily into the largest blocks that fit; blocks are then packed next-fit onto cores
  (small blocks of consecutive layers share a core; shared input axons are not deduplicated: conservative).
* A neuron that cannot fit a core even alone breaks rule ``fanin`` or ``synapse-memory``; it is still placed
  (alone) so that the rest of the mapping and its energy can be reported.
* Cores are numbered in placement order and laid out chip by chip, tile by tile on the target's mesh
  (``cores_per_tile``, ``mesh_tiles_x`` x ``mesh_tiles_y``; chips side by side along x). A spike is one message
  per destination core; it costs the in-tile spike energy plus one hop energy per tile crossed east-west and
  north-south. Every neuron of a block needs one output axon per destination core it reaches (rule ``fanout``).
* The input layer is driven from outside the chip (host or sensor): it takes no core, but its axons count
  into the first layer's fan-in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..sim.graph import INPUT
from ..sim.network import SpikingNetwork
from ..sim.ops.conv import _Convolution
from ..sim.ops.identity import Identity
from .rules import (
    ConstraintError,
    check_core_budget,
    check_core_fanout,
    check_neuron_fanin,
    check_neuron_synapses,
    check_total_cores,
)
from .targets import Target


@dataclass
class Block:
    """Neurons ``start:stop`` (position-major order) of one layer, placed on core ``core``."""

    layer: str
    start: int
    stop: int
    core: int
    axons_in: int
    synapse_bits: int

    @property
    def neurons(self) -> int:
        return self.stop - self.start


@dataclass
class Core:
    """One core's position on the mesh and its use."""

    index: int
    chip: int
    x: int
    y: int
    blocks: list[Block] = field(default_factory=list)
    axons_out: int = 0

    @property
    def neurons(self) -> int:
        return sum(b.neurons for b in self.blocks)

    @property
    def axons_in(self) -> int:
        return sum(b.axons_in for b in self.blocks)

    @property
    def synapse_bits(self) -> int:
        return sum(b.synapse_bits for b in self.blocks)


@dataclass
class Route:
    """Per spike of a layer's neuron (averaged over its neurons): messages, energy and time to deliver it."""

    messages_per_spike: float = 0.0
    energy_per_spike_j: float = 0.0
    time_per_spike_s: float = 0.0


@dataclass
class Mapping:
    """Where every layer lives, what each core uses, how spikes travel, and the rules broken (if any)."""

    target: Target
    cores: list[Core]
    blocks: dict[str, list[Block]]
    routes: dict[str, Route]
    synop_shares: dict[str, dict[str, float]]
    violations: list[ConstraintError]
    complete: bool = True  # False when an oversized network was rejected before placing its blocks

    def cores_of(self, layer: str) -> list[int]:
        """Indices of the cores holding (part of) ``layer``."""
        return sorted({b.core for b in self.blocks.get(layer, [])})

    @property
    def feasible(self) -> bool:
        return not self.violations

    def check(self, max_cores: int | None = None) -> None:
        """Raise the first rule violation (the target's rules, then the optional core budget)."""
        if self.violations:
            raise self.violations[0]
        if max_cores is not None:
            check_core_budget(len(self.cores), max_cores)

    def utilisation(self) -> list[dict]:
        """Per core: layers, neurons, input and output axons and synapse bits, each also as a share of the limit."""
        core_spec = self.target.core
        rows = []
        for core in self.cores:
            rows.append({
                "core": core.index, "chip": core.chip, "x": core.x, "y": core.y,
                "layers": sorted({b.layer for b in core.blocks}),
                "neurons": core.neurons, "neurons_share": core.neurons / core_spec.neurons,
                "axons_in": core.axons_in, "axons_in_share": core.axons_in / core_spec.fanin_axons,
                "axons_out": core.axons_out, "axons_out_share": core.axons_out / core_spec.fanout_axons,
                "synapse_bits": core.synapse_bits, "synapse_share": core.synapse_bits / core_spec.synapse_memory_bits,
            })
        return rows

    def summary(self) -> dict:
        """Cores used, feasibility and the per-core table."""
        return {"cores": len(self.cores) if self.complete else None, "complete": self.complete,
                "cores_available": self.target.chip.cores, "feasible": self.feasible,
                "violations": [str(v) for v in self.violations], "per_core": self.utilisation()}


def position_major(values: torch.Tensor) -> torch.Tensor:
    """A population's values flattened in the order blocks cut it: position by position, channels fastest."""
    return values.permute(1, 2, 0).flatten() if values.dim() == 3 else values.flatten()


def block_mask(shape: tuple[int, ...], start: int, stop: int) -> torch.Tensor:
    """0/1 mask of neurons ``start:stop`` in position-major order, shaped like the population."""
    flat = torch.zeros(math.prod(shape))
    flat[start:stop] = 1.0
    if len(shape) == 3:
        channels, height, width = shape
        return flat.reshape(height, width, channels).permute(2, 0, 1)
    return flat.reshape(shape)


def map_network(net: SpikingNetwork, target: Target, attempts: int = 6, stop_early: bool = False,
                core_budget: int | None = None) -> Mapping:
    """Place ``net`` onto ``target``'s cores; rule violations are collected in ``Mapping.violations``.

    When a core's neurons need more output axons than the core has (rule ``fanout``), the layers on it are
    re-cut into smaller blocks, each on cores of their own, and the mapping is redone (up to ``attempts`` times).
    ``stop_early``: when a single neuron already breaks a rule, return at once without placing blocks (an
    incomplete mapping: enough to know the network cannot fit, as the search's pre-flight needs), and also when
    it needs more than ``core_budget`` cores counting neurons and synapse memory alone.
    """
    if not target.is_hardware:
        raise ValueError(f"target {target.name} has no cores to map onto")
    if target.network == "dense":  # one core holds every population (map_dense_core)
        return map_dense_core(net, target)
    limit = target.core.fanout_axons
    caps: dict[str, int] = {}
    memo = _Memo()  # what every attempt would count again (few layers change between attempts)
    mapping = _map_once(net, target, caps, stop_early, core_budget, memo)
    for _ in range(attempts - 1):
        overloaded = [core for core in mapping.cores if core.axons_out > limit]
        if not mapping.complete or not overloaded:
            break
        changed = False
        for core in overloaded:
            for layer in {b.layer for b in core.blocks}:
                largest = max(b.neurons for b in core.blocks if b.layer == layer)
                # 5% below the proportional cut: output axons shrink less than linearly with a block (halos)
                cap = max(1, int(0.95 * largest * limit / core.axons_out))
                if cap < caps.get(layer, largest + 1):
                    caps[layer] = cap
                    changed = True
        if not changed:
            break
        mapping = _map_once(net, target, caps, memo=memo)
    return mapping


@dataclass
class _Memo:
    """What one mapping's attempts share: the input axons of blocks (by layer, start, stop), the spikes' reach onto
    blocks (by connection and destination block), and the per-layer synapse counts and synaptic-op shares, which
    do not depend on the blocks."""

    axons: dict = field(default_factory=dict)
    reach: dict = field(default_factory=dict)
    stored: tuple | None = None
    shares: dict | None = None


def _map_once(net: SpikingNetwork, target: Target, caps: dict[str, int], stop_early: bool = False,
              core_budget: int | None = None, memo: _Memo | None = None) -> Mapping:
    """One placement, in its phases (:class:`_Placement`); ``caps`` limits the neurons per block of some layers
    (and keeps their cores unshared); ``memo`` keeps what earlier attempts counted (:class:`_Memo`). With ``stop_early``, a network that breaks a per-neuron rule or needs more cores than the chip
    (or ``core_budget``) by the cheap estimates returns an incomplete mapping at once."""
    memo = memo or _Memo()
    placement = _Placement(net, target, caps, memo)
    placement.check_neuron_rules()
    if stop_early and placement.violations:
        return placement.incomplete()
    if not placement.check_core_lower_bound():  # an oversized network is rejected before any axon is counted
        return placement.incomplete()
    if stop_early and not placement.check_core_estimate(core_budget):
        return placement.incomplete()
    blocks = placement.cut_blocks()
    cores = placement.pack_cores(blocks)
    routes = _route(net, target, placement.shapes, blocks, cores, memo.reach)
    placement.check_fanout(cores)
    return Mapping(target, cores, blocks, routes, placement.synop_shares(), placement.violations)


class _Placement:
    """The state of one placement of a network's layers onto cores: per layer the prefix sums of stored synapse
    bits (per neuron, in the layer's order), the incoming synapses, and the rules broken so far."""

    def __init__(self, net: SpikingNetwork, target: Target, caps: dict[str, int], memo: _Memo):
        self.net, self.target, self.caps = net, target, caps
        self.memo = memo
        self.axon_cache = memo.axons
        self.core_spec, self.chip = target.core, target.chip
        self.shapes = {INPUT: net.input_shape, **{name: pop.shape for name, pop in net.populations.items()}}
        connections = net.active_connections()
        self.incoming = {name: [(net.synapses[c.module_key], c.src) for c in connections if c.dst == name]
                         for name in net.order}
        self.by_source: dict[str, dict[str, list]] = {}
        self.reach_kinds: dict[str, dict[str, list]] = {}
        for name in net.order:
            self.by_source[name] = {}
            for synapse, src in self.incoming[name]:
                self.by_source[name].setdefault(src, []).append(synapse)
            self.reach_kinds[name] = {src: [_reach_kind(synapse) for synapse in synapses]
                                      for src, synapses in self.by_source[name].items()}
        self.violations: list[ConstraintError] = []
        if memo.stored is None:
            memo.stored = _stored_synapses(net, target, self.shapes, self.incoming)
        self.prefixes, self.conv_prefixes, self.shared, self.widest = memo.stored

    def synop_shares(self) -> dict[str, dict[str, float]]:
        """:func:`_synop_shares` of the network, counted once per mapping."""
        if self.memo.shares is None:
            self.memo.shares = _synop_shares(self.net, self.shapes)
        return self.memo.shares

    def incomplete(self) -> Mapping:
        """The mapping of a network refused before its blocks were placed."""
        return Mapping(self.target, [], {}, {layer: Route() for layer in self.net.order},
                       self.synop_shares(), self.violations, complete=False)

    def note(self, check) -> None:
        """Run ``check``; a broken rule is recorded once per rule and layer."""
        try:
            check()
        except ConstraintError as exc:
            if not any(v.rule == exc.rule and v.layer == exc.layer for v in self.violations):
                self.violations.append(exc)

    def check_neuron_rules(self) -> None:
        """Phase 1: every neuron's fan-in axons and synapse memory within one core's."""
        for layer in self.net.order:
            widest = self.widest[layer]
            self.note(lambda: check_neuron_fanin(layer, widest[0], self.core_spec.fanin_axons, self.target.name))
            self.note(lambda: check_neuron_synapses(layer, widest[1], self.core_spec.synapse_memory_bits,
                                                    self.target.name))

    def input_axons(self, layer: str, start: int, stop: int) -> int:
        """Distinct source neurons that reach neurons ``start:stop`` of ``layer`` (cached): in closed form from a
        source whose connections into ``layer`` are dense same-size convolutions and identities
        (:func:`dense_reach`), else by counting a block mask's transposed connections."""
        key = (layer, start, stop)
        if key not in self.axon_cache:
            mask = None
            total = 0
            for src, synapses in self.by_source[layer].items():
                closed = dense_reach(self.reach_kinds[layer][src], self.shapes[layer], self.shapes[src], start, stop)
                if closed is not None:
                    total += closed
                    continue
                if mask is None:
                    mask = block_mask(self.shapes[layer], start, stop)
                reached = None
                for synapse in synapses:
                    hit = synapse.transpose_count(mask, self.shapes[src]) > 0
                    reached = hit if reached is None else (reached | hit)
                total += int(reached.sum())
            self.axon_cache[key] = total
        return self.axon_cache[key]

    def longest_block(self, layer: str, start: int) -> int:
        """End of the longest block from ``start`` within the neuron and synapse-memory limits (at least 1). A
        shared kernel is stored once or, where that is cheaper, as per-neuron synapses."""
        prefix, memory = self.prefixes[layer], self.core_spec.synapse_memory_bits
        end = _last_within(prefix, float(prefix[start]) + memory - self.shared[layer])
        if self.shared[layer]:
            per_neuron = prefix + self.conv_prefixes[layer]
            end = max(end, _last_within(per_neuron, float(per_neuron[start]) + memory))
        return max(start + 1, min(len(prefix) - 1, start + self.core_spec.neurons, end,
                                  start + self.caps.get(layer, 1 << 62)))

    def block_bits(self, layer: str, start: int, stop: int) -> int:
        """Synapse memory of neurons ``start:stop`` of ``layer``, a shared kernel stored the cheaper way."""
        stored = float(self.prefixes[layer][stop] - self.prefixes[layer][start])
        conv = float(self.conv_prefixes[layer][stop] - self.conv_prefixes[layer][start])
        return int(stored + min(self.shared[layer], conv))

    def fitting_block(self, layer: str, start: int, hint: int = 0) -> tuple[int, int]:
        """(end, input axons) of the longest block from ``start`` that also fits the core's fan-in axons; ``hint``:
        a likely length (the layer's previous block), tried first."""
        fanin = self.core_spec.fanin_axons
        stop = self.longest_block(layer, start)
        axons = self.input_axons(layer, start, stop)
        if axons > fanin and stop > start + 1:  # shorten by bisection until the axons fit
            low, high = start + 1, stop - 1
            guess = start + hint
            if low < guess < high:  # input axons grow with the block: the same end as bisecting, in fewer counts
                if self.input_axons(layer, start, guess) > fanin:
                    high = guess - 1
                elif self.input_axons(layer, start, guess + 1) > fanin:
                    low = high = guess
                else:
                    low = guess + 1
            while low < high:
                middle = (low + high + 1) // 2
                if self.input_axons(layer, start, middle) <= fanin:
                    low = middle
                else:
                    high = middle - 1
            stop = low
            axons = self.input_axons(layer, start, stop)
        return stop, axons

    def check_core_lower_bound(self) -> bool:
        """Phase 2: a lower bound of the cores from neurons and synapse memory alone, without the expensive axon
        and routing analysis of hundreds of blocks; False (and the rule recorded) when it exceeds the chip."""
        chip, lower_bound = self.chip, 0
        for layer in self.net.order:
            start = 0
            while start < len(self.prefixes[layer]) - 1 and lower_bound <= chip.cores:
                start = self.longest_block(layer, start)
                lower_bound += 1
        if lower_bound <= chip.cores:
            return True
        self.violations.append(ConstraintError(
            "cores", None, lower_bound, chip.cores,
            f"cores: network needs more than {chip.cores} cores (over {lower_bound - 1} counting neurons and "
            f"synapse memory alone), target {self.target.name} has {chip.cores} ({chip.chips} chip"
            f"{'s' if chip.chips != 1 else ''})"))
        return False

    def check_core_estimate(self, core_budget: int | None) -> bool:
        """Phase 3 (early stop only): an estimate with the axons too. Every block of a layer is as long as its first
        one (the first sits at the map's border, where the input window is cut, so it is the longest), and a layer
        that fits one block counts by the share of the core it fills (small layers share cores): low rather than
        high. False (and the rule recorded) when it exceeds the chip or the budget."""
        core_spec, chip = self.core_spec, self.chip
        needed = 0.0
        for layer in self.net.order:
            total = len(self.prefixes[layer]) - 1
            stop, axons = self.fitting_block(layer, 0)
            if stop < total:
                needed += total / stop
            else:
                needed += max(total / core_spec.neurons, axons / core_spec.fanin_axons,
                              self.block_bits(layer, 0, total) / core_spec.synapse_memory_bits)
        estimate = math.ceil(needed - 1e-9)
        if estimate <= min(chip.cores, core_budget or chip.cores):
            return True
        rule, allowed = ("cores", chip.cores) if estimate > chip.cores else ("max-cores", core_budget)
        self.violations.append(ConstraintError(
            rule, None, estimate, allowed,
            f"{rule}: network needs about {estimate} cores (estimated from each layer's first block, fan-in "
            f"axons included), {'the budget is' if rule == 'max-cores' else f'target {self.target.name} has'} "
            f"{allowed}"))
        return False

    def cut_blocks(self) -> dict[str, list[Block]]:
        """Phase 4: each layer cut into the longest blocks that fit a core, in the layer's order."""
        blocks: dict[str, list[Block]] = {}
        for layer in self.net.order:
            total = len(self.prefixes[layer]) - 1
            blocks[layer] = []
            start = 0
            while start < total:
                previous = blocks[layer][-1].neurons if blocks[layer] else 0
                stop, axons = self.fitting_block(layer, start, previous)
                blocks[layer].append(Block(layer, start, stop, -1, axons, self.block_bits(layer, start, stop)))
                start = stop
        return blocks

    def pack_cores(self, blocks: dict[str, list[Block]]) -> list[Core]:
        """Phase 5: blocks packed in order onto cores, a block sharing the last core while it fits (capped layers
        alone); the chip's core count checked."""
        core_spec, caps, cores = self.core_spec, self.caps, []
        for layer in self.net.order:
            for block in blocks[layer]:
                current = cores[-1] if cores else None
                alone = block.layer in caps or (current is not None and any(b.layer in caps for b in current.blocks))
                if current is None or alone or not (
                        current.neurons + block.neurons <= core_spec.neurons
                        and current.axons_in + block.axons_in <= core_spec.fanin_axons
                        and current.synapse_bits + block.synapse_bits <= core_spec.synapse_memory_bits):
                    current = _new_core(len(cores), self.target)
                    cores.append(current)
                block.core = current.index
                current.blocks.append(block)
        try:
            check_total_cores(len(cores), self.chip.cores, self.chip.chips, self.target.name)
        except ConstraintError as exc:
            self.violations.append(exc)
        return cores

    def check_fanout(self, cores: list[Core]) -> None:
        """Phase 7 (after routing): every core's output axons within its fan-out."""
        for core in cores:
            try:
                check_core_fanout(",".join(sorted({b.layer for b in core.blocks})), core.index, core.axons_out,
                                  self.core_spec.fanout_axons, self.target.name)
            except ConstraintError as exc:
                self.violations.append(exc)


def _reach_kind(synapse) -> int | None:
    """How a connection's source neurons reach a block, for :func:`dense_reach`: the radius of a dense, stride-1,
    same-padded square convolution (every tap non-zero), -1 for an identity, None for anything else."""
    if isinstance(synapse, Identity):
        return -1
    conv = getattr(synapse, "conv", None)
    if not isinstance(synapse, _Convolution) or not isinstance(conv, torch.nn.Conv2d):
        return None
    k = conv.kernel_size
    if (k[0] != k[1] or k[0] % 2 == 0 or conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1
            or tuple(conv.padding) != (k[0] // 2, k[0] // 2)):
        return None
    return k[0] // 2 if bool(synapse._nonzero().all()) else None


def dense_reach(kinds: list[int | None], shape: tuple[int, ...], src_shape: tuple[int, ...], start: int,
                stop: int) -> int | None:
    """Distinct source neurons that reach neurons ``start:stop`` (position-major) of a population of ``shape``
    through connections of the given kinds (:func:`_reach_kind`), without building a mask: identities alone reach
    the block's own neurons; a dense convolution of radius r reaches every channel of every source position within
    r rows and columns of a position the block touches (an identity adds nothing to it). None where a kind has no
    closed form or the shapes do not fit one."""
    if not kinds or any(kind is None for kind in kinds):
        return None
    if all(kind == -1 for kind in kinds):
        return stop - start if tuple(src_shape) == tuple(shape) else None
    if len(shape) != 3 or len(src_shape) != 3 or tuple(shape[1:]) != tuple(src_shape[1:]):
        return None
    channels, height, width = shape
    radius = max(kinds)
    first, last = start // channels, (stop - 1) // channels  # positions the block touches, raster order
    first_row, first_col = divmod(first, width)
    last_row, last_col = divmod(last, width)

    def columns(row: int) -> tuple[int, int]:
        return (first_col if row == first_row else 0, last_col if row == last_row else width - 1)

    positions = 0
    for y in range(max(0, first_row - radius), min(height - 1, last_row + radius) + 1):
        low, high = max(first_row, y - radius), min(last_row, y + radius)
        if high - low >= 2 or (low != first_row and low < high) or (high != last_row and low < high):
            spans = [(0, width - 1)]  # a full row among them
        elif low == high:
            spans = [columns(low)]
        else:  # the first and the last row, adjacent: two spans, one when they meet
            (a0, a1), (b0, b1) = columns(low), columns(high)
            spans = [(0, width - 1)] if b1 >= a0 - 1 else [(b0, b1), (a0, a1)]
        covered, reach_end = 0, -1
        for lo, hi in spans:  # dilated by the radius, clipped; spans come in column order
            lo, hi = max(0, lo - radius, reach_end + 1), min(width - 1, hi + radius)
            if hi >= lo:
                covered += hi - lo + 1
                reach_end = hi
        positions += covered
    return positions * src_shape[0]


def _last_within(prefix: torch.Tensor, budget: float) -> int:
    """The last index whose prefix sum is within ``budget``."""
    return int(torch.searchsorted(prefix, torch.tensor([budget], dtype=torch.float64), right=True)) - 1


def synapse_storage_bits(synapse, target: Target) -> int:
    """Bits one synapse of the op ``synapse`` takes in a core's memory: the target's ``synapse_bits`` (a weight of
    the target's full precision with its encoding), less the weight bits a connection stored in fewer bits
    (compressed, :mod:`hwnas.compression`) does not use."""
    fmt = synapse.deployed_format(None)
    if fmt is None or target.weight_bits is None or fmt.bits >= target.weight_bits:
        return target.core.synapse_bits
    return max(1, target.core.synapse_bits - (target.weight_bits - fmt.bits))


def _stored_synapses(net: SpikingNetwork, target: Target, shapes: dict, incoming: dict) -> tuple[dict, dict, dict, dict]:
    """Per layer: prefix sums (position-major: a block's synapse bits in O(1)) of the bits of the synapses stored
    per destination neuron, and of the synapses of the connections whose kernel the target can share instead; the
    bits such kernels take once per block; and (fan-in axons, synapse bits) of its widest single neuron. A neuron's
    synapses each come from a distinct source neuron: its fan-in is its synapse count."""
    core_spec = target.core
    prefixes: dict[str, torch.Tensor] = {}
    conv_prefixes: dict[str, torch.Tensor] = {}
    shared: dict[str, int] = {}
    widest: dict[str, tuple[int, int]] = {}

    def prefix_sums(values: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros(1, dtype=torch.float64), position_major(values).double().cumsum(0)])

    for layer in net.order:
        shape = shapes[layer]
        per_neuron, stored, sharable = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
        shared[layer] = 0
        for synapse, src in incoming[layer]:
            fanin = synapse.fanin(shapes[src]).reshape(shape)
            bits_each = synapse_storage_bits(synapse, target)
            per_neuron = per_neuron + fanin
            kernel = synapse.kernel_weights() if core_spec.shared_conv_weights else None
            if kernel is None:
                stored = stored + fanin * bits_each
            else:
                sharable = sharable + fanin * bits_each
                shared[layer] += kernel * bits_each
        prefixes[layer], conv_prefixes[layer] = prefix_sums(stored), prefix_sums(sharable)
        bits = stored + torch.clamp(sharable, max=shared[layer])
        widest[layer] = (int(per_neuron.max()) if per_neuron.numel() else 0,
                         int(bits.max()) if bits.numel() else 0)
    return prefixes, conv_prefixes, shared, widest


def _route(net: SpikingNetwork, target: Target, shapes: dict, blocks: dict[str, list[Block]],
           cores: list[Core], reach: dict) -> dict[str, Route]:
    """Per layer, the messages, energy and time one spike costs to reach the cores of its destinations; adds each
    core's output axons (one per destination core a neuron reaches). ``reach`` keeps, by connection and destination
    block, which source neurons reach the block (for the next attempt; never written into: ``|`` below makes new
    tensors)."""
    connections = net.active_connections()
    routes = {layer: Route() for layer in net.order}
    for layer in net.order:
        outgoing = [(c.module_key, c.dst) for c in connections if c.src == layer]
        if not outgoing:
            continue
        reached_per_core: dict[int, torch.Tensor] = {}
        for key, dst in outgoing:
            for block in blocks[dst]:
                if (key, block.start, block.stop) not in reach:
                    reach[key, block.start, block.stop] = net.synapses[key].transpose_count(
                        block_mask(shapes[dst], block.start, block.stop), shapes[layer]) > 0
                hit = reach[key, block.start, block.stop]
                previous = reached_per_core.get(block.core)
                reached_per_core[block.core] = hit if previous is None else (previous | hit)
        total = math.prod(shapes[layer])
        route = routes[layer]
        # a block is a run of neurons in position-major order: its senders to a core are a difference of prefix sums
        # (every source block's senders to a core in one tensor operation, not one per pair)
        starts = torch.tensor([source.start for source in blocks[layer]])
        stops = torch.tensor([source.stop for source in blocks[layer]])
        senders_to = {}
        for core_index, reached in reached_per_core.items():
            before = torch.cat([torch.zeros(1, dtype=torch.int64), position_major(reached).cumsum(0)])
            senders_to[core_index] = (before[stops] - before[starts]).tolist()
        for i, source in enumerate(blocks[layer]):
            origin = cores[source.core]
            for core_index, senders_per_block in senders_to.items():
                senders = senders_per_block[i]
                if not senders:
                    continue
                destination = cores[core_index]
                dx, dy = abs(origin.x - destination.x), abs(origin.y - destination.y)
                energy = target.energy.spike_in_tile_j + dx * target.energy.hop_ew_j + dy * target.energy.hop_ns_j
                seconds = target.time.spike_in_tile_s + dx * target.time.hop_ew_s + dy * target.time.hop_ns_s
                route.messages_per_spike += senders / total
                route.energy_per_spike_j += senders * energy / total
                route.time_per_spike_s += senders * seconds / total
                origin.axons_out += senders
    return routes


def _synop_shares(net: SpikingNetwork, shapes: dict) -> dict[str, dict[str, float]]:
    """For every source layer, the share of its synaptic operations that lands in each destination layer."""
    shares: dict[str, dict[str, float]] = {}
    for source in [INPUT, *net.order]:
        per_destination: dict[str, float] = {}
        for conn in net.active_connections():
            if conn.src == source:
                count = float(net.synapses[conn.module_key].fanin(shapes[source]).sum())
                per_destination[conn.dst] = per_destination.get(conn.dst, 0.0) + count
        whole = sum(per_destination.values())
        shares[source] = {dst: (count / whole if whole else 0.0) for dst, count in per_destination.items()}
    return shares


def _new_core(index: int, target: Target) -> Core:
    chip = target.chip
    chip_index, local = divmod(index, chip.cores_per_chip)
    tile = local // chip.cores_per_tile
    return Core(index, chip_index, chip_index * chip.mesh_tiles_x + tile % chip.mesh_tiles_x, tile // chip.mesh_tiles_x)


# ----- a dense core (a Xylo core, issue 34) ---------------------------------------------------------------------
# Such a core holds every population at once: the hidden populations on its hidden neurons, the output population
# on its output neurons, each connection in one of three dense matrices. So the mapping is one core with one block
# per population; its rules are the core's sizes ([dense] of the target: input channels, hidden neurons, output
# neurons, the hidden neurons the input may feed and that may feed the output), and a spike needs no routing. The
# energy model then charges the target's per-event figures (on xylo-audio3: SynSense's cycle counts at a proxy
# energy per cycle).

def map_dense_core(net, target: Target) -> Mapping:
    """``net`` (dense populations) on ``target``'s dense core: one block per population on core 0, and a
    :class:`ConstraintError` in ``Mapping.violations`` for every size the core cannot hold."""
    spec = target.dense
    shapes = {INPUT: tuple(net.input_shape), **{name: pop.shape for name, pop in net.populations.items()}}
    core = _new_core(0, target)
    blocks = {}
    for name in net.order:
        incoming = [c for c in net.active_connections() if c.dst == name]
        synapses = sum(int(net.synapses[c.module_key].fanin(shapes[c.src]).sum()) for c in incoming)
        axons = sum(math.prod(shapes[c.src]) for c in incoming)
        block = Block(name, 0, net.populations[name].neurons, 0, axons, synapses * target.core.synapse_bits)
        core.blocks.append(block)
        blocks[name] = [block]
    violations = []
    hidden = sum(net.populations[name].neurons for name in net.order if name != net.output)
    fed = {c.dst for c in net.active_connections() if c.src == INPUT and c.dst != net.output}
    feeding = {c.src for c in net.active_connections() if c.dst == net.output and c.src != INPUT}
    sizes = (("inputs", "input", math.prod(net.input_shape), spec.inputs, "input channels"),
             ("hidden-neurons", None, hidden, spec.hidden_neurons, "hidden neurons"),
             ("outputs", net.output, net.populations[net.output].neurons, spec.outputs, "output neurons"),
             ("input-neurons", None, sum(net.populations[n].neurons for n in fed), spec.input_expansion_neurons,
              "hidden neurons fed by the input"),
             ("output-neurons", None, sum(net.populations[n].neurons for n in feeding), spec.output_expansion_neurons,
              "hidden neurons feeding the output"))
    for rule, layer, value, limit, what in sizes:
        if value > limit:
            violations.append(ConstraintError(rule, layer, value, limit, f"{rule}: the network needs {value} {what}, "
                                                                         f"target {target.name} has {limit}"))
    for conn in net.active_connections():
        if conn.src == INPUT and conn.dst == net.output:
            violations.append(ConstraintError("input-to-output", conn.dst, 1, 0, "input-to-output: the input reaches "
                                              f"the output neurons directly, which {target.name} cannot do"))
    routes = {name: Route() for name in [INPUT, *net.order]}
    return Mapping(target, [core], blocks, routes, _synop_shares(net, shapes), violations)
