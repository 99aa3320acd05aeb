"""``hwnas estimate``: per-layer energy, spikes, synaptic operations and cores of an architecture on a target."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import positive_float, positive_int, seed_int


def add_parser(commands) -> None:
    """Declare ``hwnas estimate DIR_OR_ARCH_JSON``."""
    estimate = commands.add_parser(
        "estimate", help="energy, latency and cores of an architecture on a target, layer by layer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Simulate an architecture (a search run folder or its architecture.json) on validation samples in the\n"
            "target's timing model, map it onto the target's cores, and print per layer: neurons, cores, spikes,\n"
            "synaptic operations and energy per inference, then the totals and the latency per step.\n"
            "A run folder with a trained model.pt (hwnas train) is estimated with its trained weights; without one,\n"
            "with the untrained weights the search scored (batch-norm with batch statistics). A .nir graph is run\n"
            "on the dataset's test split with the weights it stores."),
        epilog="example:\n  hwnas estimate runs/search-20261123-101500 --target loihi")
    estimate.add_argument("source", metavar="DIR_OR_ARCH_JSON", help="search run folder, architecture JSON file, or a .nir graph")
    estimate.add_argument("--steps", type=positive_int, default=None,
                          help="steps per sample for a .nir that records no timesteps")
    estimate.add_argument("--dt", type=positive_float, default=None,
                          help="seconds per step for a .nir (default: its hwnas.dt_s metadata; graphs in per-step "
                               "units, as sinabs and snnTorch write them, need --dt 1)")
    estimate.add_argument("--target", default=None,
                          help="target name or TOML path (default: the run's target, else loihi2)")
    estimate.add_argument("--dataset", default=None, help="dataset (default: the run's dataset, else digits)")
    estimate.add_argument("--data-dir", default=None, help="folder that holds the dataset's files")
    estimate.add_argument("--samples", type=positive_int, default=64,
                          help="validation samples to simulate (default: %(default)s)")
    estimate.add_argument("--seed", type=seed_int, default=None, help="seed of weights and encoding (default: the run's, else 0)")
    estimate.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write the estimate as JSON")
    estimate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load, simulate, map, estimate, print."""
    from ..arch.imported import load_architecture
    from ..errors import HwnasError, OptionError
    from ..hw_models import load_target
    from ..io_utils import check_writable
    from ..limits import DEFAULT_THREADS, check_seed, recorded_threads
    from ..run_folder import RunFolder
    from ..sim.seeding import computing_threads

    if args.json_out:  # before the work, so that its result is not lost
        check_writable(args.json_out, "--json")
    source = Path(args.source)
    if source.suffix == ".nir":
        with computing_threads(DEFAULT_THREADS):  # results depend on the thread count: a fixed one
            return _run_nir(args, source)
    folder = RunFolder(source if source.is_dir() else source.parent)
    arch_path = folder.architecture if source.is_dir() else source
    if not arch_path.exists():
        raise OptionError(f"no architecture at {arch_path} (give a search run folder or an architecture JSON file)")
    arch = load_architecture(arch_path)
    try:
        run_config = folder.search_config()
    except HwnasError:  # an unreadable report only loses the defaults it would give
        run_config = {}
    target = load_target(args.target or run_config.get("target", "loihi2"))
    dataset = args.dataset or run_config.get("dataset", "digits")
    seed = args.seed if args.seed is not None else check_seed(run_config.get("seed", 0), "the run's seed")
    threads = recorded_threads(run_config)
    with computing_threads(threads):
        return _estimate_run(args, arch, folder, target, dataset, args.data_dir or run_config.get("data_dir"), seed)


def _estimate_run(args: argparse.Namespace, arch, folder, target, dataset: str, data_dir: str | None,
                  seed: int) -> int:
    """Estimate a run folder's trained network (model.pt), else its untrained architecture."""
    from ..data import load_dataset
    from ..hw_models.estimate import estimate_architecture

    splits = load_dataset(dataset, data_dir, arch.timesteps, seed)
    trained = folder.model
    if trained.is_file():
        return _run_trained(args, trained, target, splits, seed)
    estimate, mapping, simulated = estimate_architecture(arch, target, splits, args.samples, seed)

    print(f"{arch.key}  on {target.name} ({simulated.timing} timing), {estimate.samples} {dataset} samples, "
          f"{estimate.steps} steps each, untrained weights (no model.pt yet)")
    return _print(args, estimate, mapping, target, {"architecture": arch.to_dict()})


def _run_trained(args: argparse.Namespace, model_path: Path, target, splits, seed: int) -> int:
    """Estimate the trained network of a run folder (model.pt) on validation samples."""
    from ..hw_models.estimate import encode_samples, estimate_network
    from ..training.model_file import load_model

    net, arch, _ = load_model(model_path)
    x = encode_samples(splits, "val", args.samples, arch.timesteps, arch.encoding, seed)
    estimate, mapping = estimate_network(net, target, x)
    print(f"{arch.key}  on {target.name} ({target.timing} timing), {estimate.samples} {splits.name} validation "
          f"samples, {estimate.steps} steps each, trained weights ({model_path})")
    return _print(args, estimate, mapping, target, {"architecture": arch.to_dict(), "model": str(model_path)})


def _run_nir(args: argparse.Namespace, source: Path) -> int:
    """Estimate a NIR graph (trained weights as stored) on the test split of a dataset."""
    from ..data import load_dataset
    from ..errors import OptionError
    from ..formats.nir import check_run_memory, load, read_graph, recorded_architecture
    from ..hw_models import load_target
    from ..hw_models.estimate import encode_samples, estimate_network

    graph = read_graph(source)
    arch = recorded_architecture(graph)
    steps = args.steps or (arch.timesteps if arch else None)
    if steps is None:
        raise OptionError(f"{source} records no timesteps: pass --steps")
    target = load_target(args.target or "loihi2")
    if not target.is_hardware:
        raise OptionError(f"target '{target.name}' has no hardware model to estimate with")
    check_run_memory(graph, args.samples, steps, 1, "estimate")
    net = load(graph, dt_s=args.dt, timing=target.timing)
    dataset = args.dataset or "digits"
    splits = load_dataset(dataset, args.data_dir, steps, args.seed or 0)
    x = encode_samples(splits, "test", args.samples, steps, arch.encoding if arch else "rate", args.seed or 0)
    estimate, mapping = estimate_network(net, target, x)
    print(f"{source}  on {target.name} ({target.timing} timing), {estimate.samples} {dataset} test samples, "
          f"{estimate.steps} steps each, weights as stored in the graph")
    return _print(args, estimate, mapping, target, {"nir": str(source)}, net.output)


def _print(args: argparse.Namespace, estimate, mapping, target, extra: dict, output: str | None = None) -> int:
    """The per-layer table, totals and feasibility; also as JSON with ``--json``. With the ``output`` population
    named (a graph read from NIR), every hidden layer that never spiked is named beside the table."""
    from ..backends.compare import silence_notes
    from ..io_utils import write_json_atomic
    from ..sim.graph import INPUT

    header = f"{'layer':10s} {'neurons':>8s} {'cores':>5s} {'spikes/inf':>11s} {'synops/inf':>11s} {'energy/inf':>11s} {'share':>6s}"
    print(header)
    print("-" * len(header))
    total = estimate.energy_j or 1.0
    for layer in estimate.layers:
        print(f"{layer.layer:10s} {layer.neurons:8d} {layer.cores:5d} {layer.spikes:11.1f} {layer.synops:11.0f} "
              f"{_joules(layer.energy_j):>11s} {100 * layer.energy_j / total:5.1f}%")
    totals = estimate.totals()
    print("-" * len(header))
    print(f"{'total':10s} {sum(l.neurons for l in estimate.layers):8d} {str(totals['cores']):>5s} "
          f"{totals['spikes']:11.1f} {totals['synops']:11.0f} {_joules(totals['energy_j']):>11s}")
    print(f"energy: synaptic ops {_joules(totals['synop_energy_j'])}, neuron updates {_joules(totals['update_energy_j'])}, "
          f"spike routing {_joules(totals['route_energy_j'])}")
    print(f"latency: {totals['step_time_s'] * 1e6:.3g} us per step (slowest core + sync; max {totals['max_step_time_s'] * 1e6:.3g} us), "
          f"{totals['inference_time_s'] * 1e6:.3g} us per inference")
    if output is not None:
        hidden = {layer.layer: layer.spikes for layer in estimate.layers if layer.layer != INPUT}
        for note in silence_notes(hidden, output, estimate.samples):
            print(note)
    if mapping.violations:
        for violation in mapping.violations:
            print(f"infeasible: {violation}")
    else:
        print(f"feasible: {len(mapping.cores)} of {target.chip.cores} cores")
    if args.json_out:
        write_json_atomic(args.json_out, {**extra, "estimate": estimate.to_dict(), "mapping": mapping.summary()})
        print(f"written to {args.json_out}")
    return 0 if mapping.feasible else 1


def _joules(value: float) -> str:
    for scale, unit in ((1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} J"
