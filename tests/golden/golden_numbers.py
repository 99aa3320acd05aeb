"""Golden numbers: what hwnas computes today for a few fixture networks, pinned exactly.

The other tests compare implementations with each other (simulator with Lava, twin with Lava, ONNX with the
simulator); they would not notice every implementation moving together. This module computes, for fixture
networks in both timing models, hashes of every population's spike codes, the activity counters, logits,
latency and arrival steps, the ONNX unrolled counts, the lowered integers and the integer-twin rasters, the NIR
round trip, the mapping and energy on loihi2, and two small digits searches' ``search.csv`` (time column
dropped). ``tests/test_golden.py`` compares them with ``golden.json`` using ``==``.

Regenerate only for a change that is meant to change results, in its own commit that says why::

    .venv/bin/python tests/golden/golden_numbers.py --write
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GOLDEN_FILE = HERE / "golden.json"

DEFAULT_WINNER = "0-1:zero 0-2:skip 0-3:conv3x3 1-2:conv3x3 1-3:skip< 2-3:conv3x3<"
FEEDBACK = "0-1:conv3x3 0-2:skip 0-3:zero 1-2:conv3x3 1-3:conv3x3< 2-3:conv3x3"
CHAIN = "0-1:conv3x3 0-2:zero 0-3:zero 1-2:conv3x3 1-3:zero 2-3:conv3x3"
TIMINGS = ("pipelined", "zero-delay")
SEARCH = dict(timesteps=4, width=4, batch_size=16, repeats=1, refine=0)


def digest(array) -> str:
    """sha256 (first 16 hex digits) of an array's bytes, with its dtype and shape."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(array)
    head = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(head + array.tobytes()).hexdigest()[:16]


def _api():
    """Every hwnas name the golden numbers use, in one place (the only part a refactor may edit)."""
    from hwnas.arch.builder import build_network
    from hwnas.arch.genotype import Architecture, parse_cell_key
    from hwnas.formats.nir import load, to_nir
    from hwnas.formats.onnx import Unrolled
    from hwnas.hw_models import load_target
    from hwnas.hw_models.energy import estimate_energy
    from hwnas.hw_models.mapping import map_network
    from hwnas.nas.runner import SearchConfig, run_search
    from hwnas.nas.space import SearchSpace
    from hwnas.sim.integer import simulate_fixed
    from hwnas.sim.lowering import lower
    from hwnas.sim.quantize import WeightFormat
    from hwnas.sim.seeding import build_seeded

    def forward(net, inputs, timing, record=True):
        return net(inputs, record=record, timing=timing)

    def arrival(net, timing):
        return net.arrival_steps(timing)

    def latency(net, timing):
        return net.latency(timing)

    def unrolled(net, inputs, timing):
        return Unrolled(net, timing)(inputs)

    def twin(lowered, inputs, timing):
        return simulate_fixed(lowered, inputs, timing=timing)

    return dict(Architecture=Architecture, parse_cell_key=parse_cell_key, build_seeded=build_seeded,
                build_network=build_network, SearchSpace=SearchSpace, forward=forward, arrival=arrival,
                latency=latency, unrolled=unrolled, lower=lower, twin=twin, WeightFormat=WeightFormat,
                to_nir=to_nir, load_nir=load, load_target=load_target, map_network=map_network,
                estimate_energy=estimate_energy, SearchConfig=SearchConfig, run_search=run_search)


def fixtures(api) -> dict:
    """Name -> (network, timesteps, ablated module keys) of each fixture."""
    arch = lambda cell, **kw: api["Architecture"](  # noqa: E731
        cell=api["parse_cell_key"](cell), input_shape=(1, 8, 8), num_classes=10, width=kw.pop("width", 6),
        timesteps=4, **kw)
    nets = {}
    for name, a in (("default_winner", arch(DEFAULT_WINNER)), ("feedback", arch(FEEDBACK)),
                    ("avgpool_chain", arch(CHAIN, downsample="avgpool"))):
        nets[name] = api["build_seeded"](lambda a=a: api["build_network"](a), 0, name)
    template = arch(CHAIN, width=4)
    space = api["SearchSpace"]()
    every_edge = tuple(e for pair in space.choices for e in space.choices[pair] if e.op != "zero")
    supernet = api["build_seeded"](lambda: api["build_network"](template, every_edge), 0, "supernet")
    ablated = next(edge for edge in supernet.edge_modules if edge.key == "1-3:conv3x3<")
    supernet.set_disabled(set(supernet.edge_modules[ablated]))
    nets["supernet_ablated"] = supernet
    return nets


def _randomise_batchnorm(net, seed: int) -> None:
    """Give every batch-norm non-trivial statistics, so that folding yields non-zero biases."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.3 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                module.weight.copy_(0.8 + 0.4 * torch.rand(c, generator=generator))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))


def _activity(activity) -> dict:
    return {name: [layer.neurons, layer.kind, [float(v) for v in layer.spikes],
                   [float(v) for v in layer.active_updates], [float(v) for v in layer.synops]]
            for name, layer in activity.layers.items()}


def _inputs(shape, steps: int, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((steps, batch, *shape), 0.3, dtype=torch.float64), generator=generator)


def network_numbers(api) -> dict:
    """Every figure of every fixture network (float64 simulation)."""
    target = api["load_target"]("loihi2")
    result = {}
    for index, (name, net) in enumerate(fixtures(api).items()):
        inputs = _inputs(net.input_shape, 4, 12, index)
        entry = {}
        # untrained, batch-norm with batch statistics (what the search scores)
        net = net.double().train()
        for timing in TIMINGS:
            with torch.no_grad():
                out = api["forward"](net, inputs, timing)
            entry[f"untrained/{timing}"] = {
                "codes": {pop: digest(codes) for pop, codes in out.codes.items()},
                "activity": _activity(out.activity),
                "logits": digest(out.logits), "output_spikes": digest(out.output_spikes),
                "latency": out.latency_steps, "latency_query": api["latency"](net, timing),
                "arrival": {k: float(v) for k, v in api["arrival"](net, timing).items()},
            }
        # folded and quantised, as after training
        _randomise_batchnorm(net, index)
        net.eval()
        net.fold_batchnorm()
        net.set_weight_format(api["WeightFormat"](bits=8))
        net.double()
        for timing in TIMINGS:
            with torch.no_grad():
                out = api["forward"](net, inputs, timing)
                counts, logits = api["unrolled"](net, inputs, timing)
            entry[f"folded/{timing}"] = {
                "codes": {pop: digest(codes) for pop, codes in out.codes.items()},
                "activity": _activity(out.activity), "logits": digest(out.logits),
                "output_spikes": digest(out.output_spikes),
                "unrolled_counts": digest(counts), "unrolled_logits": digest(logits),
                "unrolled_equals_simulator": bool(torch.equal(counts, out.output_spikes)),
            }
            with torch.no_grad():
                counted = api["forward"](net, inputs, timing, record=False)
            entry[f"folded/{timing}"]["activity_unrecorded"] = _activity(counted.activity)
        lowered = api["lower"](net)
        entry["lowered"] = {
            "latency": lowered.latency_steps,
            "populations": {pop_name: {k: (digest(v) if isinstance(v, np.ndarray) else v)
                                       for k, v in pop.fixed().items()} for pop_name, pop in lowered.populations.items()},
            "connections": [[c.src, c.dst, c.backward, c.kind, c.exponent, c.padding, c.label,
                             digest(c.as_matrix(lowered.shape_of(c.src), integer=True).toarray()),
                             digest(c.as_matrix(lowered.shape_of(c.src)).toarray())] for c in lowered.connections],
        }
        binary = inputs.numpy().astype(np.int64)
        for timing in TIMINGS:
            rasters = api["twin"](lowered, binary, timing)
            entry[f"twin/{timing}"] = {
                "spikes": {pop: digest(r) for pop, r in rasters.spikes.items()},
                "output_current": digest(rasters.output_current),
                "active": {pop: [float(v) for v in a] for pop, a in rasters.active_updates.items()},
            }
        graph = api["to_nir"](net)
        loaded = api["load_nir"](graph, timing="pipelined").double()
        with torch.no_grad():
            out = api["forward"](loaded, inputs, "pipelined")
        entry["nir_round_trip"] = {
            "nodes": sorted(graph.nodes), "edges": sorted(map(list, graph.edges)),
            "populations": list(loaded.order),
            "connections": [[c.src, c.dst, c.backward] for c in loaded.connections],
            "codes": {pop: digest(codes) for pop, codes in out.codes.items()}, "logits": digest(out.logits),
        }
        with torch.no_grad():
            out = api["forward"](net, inputs, target.timing)
        mapping = api["map_network"](net, target)
        estimate = api["estimate_energy"](out.activity, mapping, target)
        entry["loihi2"] = {"mapping": mapping.summary(), "estimate": estimate.to_dict()}
        result[name] = entry
    return json.loads(json.dumps(result))


def search_numbers(api) -> dict:
    """``search.csv`` of a random and of a prune search on digits (the ``seconds`` column dropped)."""
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        for strategy, extra in (("random", {"candidates": 6}), ("prune", {})):
            config = api["SearchConfig"](strategy=strategy, **SEARCH, **extra)
            api["run_search"](config, Path(folder) / strategy)
            with open(Path(folder) / strategy / "search.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            result[strategy] = [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
    return result


def compute() -> dict:
    """All golden numbers."""
    api = _api()
    return {"networks": network_numbers(api), "searches": search_numbers(api)}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: golden_numbers.py --write   (regenerates tests/golden/golden.json)")
    numbers = compute()
    GOLDEN_FILE.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN_FILE}")
