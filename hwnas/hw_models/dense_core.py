"""Placing a network of dense populations onto a dense core (a Xylo core, issue 34).

Such a core holds every population at once: the hidden populations on its hidden neurons, the output population on
its output neurons, each connection in one of three dense matrices. So the mapping is one core with one block per
population; its rules are the core's sizes (``[dense]`` of the target: input channels, hidden neurons, output
neurons), and a spike needs no routing. The energy model of :mod:`hwnas.hw_models.energy` then charges the target's
per-event figures (on xylo-audio3: SynSense's cycle counts at a proxy energy per cycle).
"""

from __future__ import annotations

import math

from ..sim.graph import INPUT
from .mapping import Block, Mapping, Route, _new_core, _synop_shares
from .rules import ConstraintError
from .targets import Target


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
    sizes = (("inputs", "input", math.prod(net.input_shape), spec.inputs, "input channels"),
             ("hidden-neurons", None, hidden, spec.hidden_neurons, "hidden neurons"),
             ("outputs", net.output, net.populations[net.output].neurons, spec.outputs, "output neurons"))
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
