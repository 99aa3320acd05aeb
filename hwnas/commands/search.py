"""``hwnas search``: training-free, hardware-aware architecture search."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import OptionError
from .common import (DEVICE_HELP, device_name, fraction_of_one, non_negative_float, non_negative_int,
                     positive_float, positive_int, positive_int_list, seed_int, stem_pool_option)

EXIT_INTERRUPTED = 130


def add_parser(commands) -> None:
    """Declare ``hwnas search`` and its options."""
    from ..arch.choices import DOWNSAMPLES, ENCODINGS, TIMINGS
    from ..data import DATASETS
    from ..hw_models import builtin_targets
    from ..nas.config import SearchConfig as D  # the library's defaults are the command line's
    from ..nas.names import BN_MODES, DEPLOYABLES, SCORE_NAMES, STRATEGIES

    search = commands.add_parser(
        "search", help="find a spiking cell: SAHD score + the target's energy and core limits, short trainings choose",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Search the LightSNN/SNASNet cell space (4-node cell; each of the 6 node pairs carries zero, skip or\n"
            "conv3x3, forward or as temporal feedback; cells equal once edges that cannot reach the output are\n"
            "dropped count once) inside the skeleton stem -> cell -> (downsample -> cell) x (stages - 1) ->\n"
            "[head pooling] -> classifier. Before scoring, a pre-flight fits the skeleton to the target: the widest\n"
            "width, fewest stages and least head pooling whose lightest cell fits the chip's cores (or it stops at\n"
            "once naming the rule that cannot be met). Every candidate is simulated at initialisation on the same batches, in the target's\n"
            "timing model, and scored from its binary spike codes; candidates whose codes are silent or\n"
            "duplicated are marked degenerate and ranked last. On a hardware target every candidate is also\n"
            "mapped onto the chip's cores (candidates that break a design rule or budget are rejected, with the\n"
            "rule) and its energy per inference enters the fitness:\n"
            "    fitness = score - energy_weight * log2(energy / 1 uJ)\n"
            "The zero-cost score may not rank cells on your data (hwnas proxy-check measures it: on digits it\n"
            "does not, on event data it ranks the wrong way), so by default the --screen 25 best candidates by\n"
            "fitness (a prune search first adds 24 random cells) each train on --screen-fraction (one) epoch, the\n"
            "--refine 8 best of them go through successive halving of short trainings (1, 2, 4 epochs; with\n"
            "--refine-epochs 1 a whole-epoch screening is the first rung's training), and the\n"
            "winner maximises 100 * validation accuracy - refine_energy_weight * log2(trained energy / 1 uJ).\n"
            "The run folder gets architecture.json (the winner), search.csv (every evaluation), report.json\n"
            "(with the winner's per-layer energy and core use), pareto.png and checkpoint.json (for --resume)."),
        epilog="examples:\n"
               "  hwnas search --target loihi2                      prune search + refinement on the digits data\n"
               "  hwnas search --refine 0                           training-free: the score alone decides\n"
               "  hwnas search --strategy random --candidates 1000  SNASNet-style random search\n"
               "  hwnas search --strategy evolution                 AutoSNN: supernet + spike-aware evolution\n"
               "  hwnas search --energy-weight 0                    ignore energy (rules still apply)\n"
               "  hwnas search --target software                    no hardware: zero-delay timing, no limits\n"
               "  hwnas search --deployable netx                    a winner that hwnas export --format netx writes\n"
               "  hwnas search --dataset nmnist --data-dir ~/data   N-MNIST from ~/data/NMNIST\n"
               "  hwnas search --resume runs/search-20261123-101500 continue an interrupted search")
    group = search.add_argument_group("target and data")
    group.add_argument("--target", default=D.target,
                       help=f"built-in target ({', '.join(builtin_targets())}) or a path to a target TOML file; "
                            "it sets the timing model, the core limits and the energy model (default: %(default)s)")
    group.add_argument("--dataset", default=D.dataset,
                       help="dataset: " + "; ".join(f"{k}: {v}" for k, v in DATASETS.items()) + " (default: %(default)s)")
    group.add_argument("--data-dir", default=None, help="folder that holds the dataset's files (not needed for digits)")
    group.add_argument("--max-samples", type=positive_int, default=None,
                       help="read at most this many samples per split (event and CIFAR data)")
    group.add_argument("--timesteps", type=positive_int, default=D.timesteps,
                       help="steps each input is presented for (event data is binned into this many frames; "
                            "default: %(default)s)")
    group.add_argument("--encoding", choices=ENCODINGS, default=D.encoding,
                       help="static images: rate = Bernoulli spikes with the pixel intensity as probability, "
                            "direct = the analog image as input current every step (default: %(default)s)")
    group = search.add_argument_group("search space")
    group.add_argument("--width", type=positive_int, default=D.width,
                       help="channels of stem and cells (default: the widest that fits the target, starting from 16 "
                            "for inputs up to 16x16, 32 up to 64x64, else 64, halving down to 4)")
    group.add_argument("--stages", type=positive_int, default=D.stages,
                       help="cells, each after the first behind a 2x2 downsampling (default: the fewest of 2-4 that "
                            "fit the target)")
    group.add_argument("--head-pool", type=positive_int, default=D.head_pool, metavar="K",
                       help="K x K pooling before the classifier (as --downsample), cutting its fan-in by K^2 "
                            "(default: the least of 1, 2, 4 that fits the target)")
    group.add_argument("--stem-pool", type=stem_pool_option, default=D.stem_pool, metavar="K|auto",
                       help="K x K average pooling of the input into the stem's convolution (a stride-K stem, as the "
                            "NIR paper's N-MNIST CNN starts): every later layer K^2 times smaller; 'auto': search "
                            "each skeleton also behind a stride-2 stem at twice its widths (the same convolution "
                            "work, half the neurons), the energy term and the refinement's trainings choose "
                            "(default: %(default)s, no pooling)")
    group.add_argument("--widths", type=positive_int_list, default=D.widths, metavar="W1,W2,..",
                       help="channels of each stage, e.g. 8,16,32 (fixes the stages; widths that change need "
                            "--downsample conv, chosen when left out; default: one width throughout, or with "
                            "--downsample conv doubling at each stage when that fits)")
    group.add_argument("--width-choices", type=positive_int_list, default=D.width_choices, metavar="W1,W2,..",
                       help="search cells at each of these widths together, e.g. 8,12,16: the pre-flight keeps a "
                            "skeleton at each (its stages and head pooling chosen as for --width), cells that break "
                            "the target's rules at a width are rejected there, the energy term and the refinement's "
                            "trainings choose; the prune strategy prunes a supernet at each width; a width whose "
                            "search would not fit in memory is left out (with --stem-pool auto, one no cell fits at full "
                            "resolution is tried behind the stride-2 stem); the widest kept at full resolution is the "
                            "primary skeleton, "
                            "whose costs a --budget-minutes fit measures first (default: one width)")
    group.add_argument("--skeletons", type=positive_int, default=D.skeletons, metavar="K",
                       help="keep the K most preferred skeletons in which every cell fits and search cells and "
                            "skeletons together: every candidate is a cell in one of them (the prune strategy prunes "
                            "a supernet in each), the energy term and the refinement's trainings choose (default: "
                            "%(default)s, the pre-flight's first)")
    group.add_argument("--downsample", choices=DOWNSAMPLES, default=D.downsample,
                       help="maxpool = OR of spikes in 2x2 (a sum-pool into threshold-0.5 neurons); avgpool = linear, "
                            "folded into the next connection; conv = 2x2 average pooling then a 3x3 convolution "
                            "(a strided convolution) into spiking neurons, which may change the width; head pooling "
                            "follows the same choice (default: maxpool; conv with --widths that change; avgpool "
                            "with --deployable netx)")
    group.add_argument("--no-backward", dest="allow_backward", action="store_false", default=D.allow_backward,
                       help="forward edges only (no temporal feedback edges in the cell)")
    group.add_argument("--deployable", choices=DEPLOYABLES, default=D.deployable,
                       help="any = every cell hwnas, Lava and Norse run (deploy from NIR); netx = only networks "
                            "lava-dl's netx HDF5 holds, as Loihi 2 hardware users deploy: cells that are one chain "
                            "of skip/conv edges, average-pool downsampling and head pooling folded into strided "
                            "convolutions, no feedback (default: %(default)s)")
    group.add_argument("--timing", choices=TIMINGS, default=D.timing,
                       help="override the target's timing model: zero-delay (GPU simulators) or pipelined "
                            "(one step per connection, as on Loihi)")
    group.add_argument("--du", type=float, default=D.du, help="current decay (1 = current-free LIF; default: %(default)s)")
    group.add_argument("--dv", type=float, default=D.dv, help="membrane decay (default: %(default)s)")
    group.add_argument("--theta", type=float, default=D.theta, help="firing threshold (default: %(default)s)")
    group = search.add_argument_group("strategy and score")
    group.add_argument("--strategy", choices=STRATEGIES, default=D.strategy,
                       help="prune = LightSNN pruning by importance over a supernet; random = SNASNet random "
                            "sampling of --candidates cells; evolution = AutoSNN: train a one-shot supernet "
                            "(uniform single-path sampling), then evolve cells scored by their accuracy with the "
                            "supernet's weights times (spikes / average spikes)^lambda (default: %(default)s)")
    group.add_argument("--candidates", type=positive_int, default=D.candidates,
                       help="cells scored by the random strategy (default: %(default)s)")
    group.add_argument("--population", type=positive_int, default=D.population,
                       help="evolution: random cells to start with, and new cells per generation, bred from the "
                            "best half so far by mutation or crossover (default: %(default)s)")
    group.add_argument("--generations", type=non_negative_int, default=D.generations,
                       help="evolution: generations after the first (default: %(default)s)")
    group.add_argument("--supernet-epochs", type=positive_int, default=D.supernet_epochs,
                       help="evolution: epochs of the supernet's training, saved in DIR/supernet.pt after each "
                            "(default: %(default)s)")
    group.add_argument("--spike-lambda", type=float, default=D.spike_lambda,
                       help="evolution: lambda of AutoSNN's fitness Acc x (N / N_avg)^lambda; negative favours "
                            "fewer spikes (default: %(default)s, AutoSNN's)")
    group.add_argument("--score", choices=SCORE_NAMES, default=D.score,
                       help="sahd = sparsity-aware Hamming distance (SNASNet/LightSNN); naswot = plain Hamming "
                            "kernel of the concatenated codes (default: %(default)s)")
    group.add_argument("--batch-size", type=positive_int, default=D.batch_size,
                       help="samples per scoring batch, i.e. kernel size (LightSNN: 64; default: %(default)s)")
    group.add_argument("--repeats", type=positive_int, default=D.repeats,
                       help="scoring batches whose scores are averaged (SNASNet: 2; default: %(default)s)")
    group.add_argument("--bn-mode", choices=BN_MODES, default=D.bn_mode,
                       help="batch = batch-norm with the scoring batch's statistics (as SNASNet scores; keeps "
                            "untrained nets from going silent); identity = fresh batch-norm (default: %(default)s)")
    group.add_argument("--no-reset", dest="reset_state", action="store_false",
                       help="run the repeats as one stream without resetting neuron state in between")
    group.add_argument("--refine", type=non_negative_int, default=D.refine, metavar="K",
                       help="multi-fidelity: take K candidates (the best of the --screen screened ones; without a "
                            "screening the K best by fitness, a prune search first adding 3K random cells) through "
                            "successive halving of short trainings, and choose by validation accuracy plus the energy "
                            "term (default: %(default)s; 0 = the score alone decides; see README, "
                            "hwnas proxy-check)")
    group.add_argument("--screen", type=non_negative_int, default=D.screen, metavar="S",
                       help="screening rung: train the S best-fitness candidates on --screen-fraction of an epoch "
                            "each and refine the K best of them (default: %(default)s; 0 or S <= K = the K "
                            "best-fitness candidates are refined, as before the screening rung existed)")
    group.add_argument("--screen-fraction", type=fraction_of_one, default=D.screen_fraction, metavar="F",
                       help="share of an epoch each screened candidate trains on (default: %(default)s)")
    group.add_argument("--train-fraction", type=fraction_of_one, default=D.train_fraction, metavar="F",
                       help="share of the training split (drawn with --seed, the same samples in every rung) the "
                            "screening and the halving rungs train on (default: %(default)s)")
    group.add_argument("--val-samples", type=positive_int, default=D.val_samples, metavar="N",
                       help="validation samples that rank the screening and the rungs: a class-balanced subset drawn "
                            "with --seed (default: the whole validation split; with --budget-minutes at most 2000); "
                            "the last rung, when it continues an earlier one (--refine 3 or more), validates on the "
                            "whole split")
    group.add_argument("--budget-minutes", type=positive_float, default=D.budget_minutes, metavar="M",
                       help="fit --train-fraction so that the search takes about M minutes by the estimate it prints "
                            "before it starts, and fit it again to the candidates the scores chose, before the first "
                            "training (measured on this machine: results then depend on its speed; the share used is "
                            "recorded and printed, so --train-fraction repeats the search); a budget that cannot hold "
                            "the zero-cost part and the validation passes is refused (default: none)")
    group.add_argument("--refine-epochs", type=positive_int, default=D.refine_epochs,
                       help="epochs of the first halving rung; each later rung doubles them (default: %(default)s)")
    group.add_argument("--refine-energy-weight", type=non_negative_float, default=D.refine_energy_weight,
                       help="accuracy points one doubling of energy costs when refining (default: %(default)s)")
    group = search.add_argument_group("hardware terms (hardware targets only)")
    group.add_argument("--energy-weight", type=non_negative_float, default=D.energy_weight,
                       help="score points one doubling of energy per inference costs (default: %(default)g; 0 = rank by "
                            "score alone, design rules still apply)")
    group.add_argument("--max-cores", type=positive_int, default=None,
                       help="reject candidates that need more cores than this (rule max-cores)")
    group.add_argument("--max-energy", type=positive_float, default=None, metavar="JOULES",
                       help="reject candidates whose energy per inference exceeds this, e.g. 2e-5 (rule max-energy)")
    group = search.add_argument_group("run")
    group.add_argument("--seed", type=seed_int, default=D.seed, help="seed of everything random (default: %(default)s)")
    group.add_argument("--threads", type=positive_int, default=D.threads,
                       help="torch's compute threads; results depend on the thread count, so a run fixes it (and records "
                            "it) instead of taking the machine's: the same seed and thread count give the same result "
                            "whatever the machine's cores (default: %(default)s; more are faster on large inputs)")
    group.add_argument("--device", type=device_name, default=D.device, help=DEVICE_HELP + " (default: %(default)s)")
    group.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="score candidates and run refinement trainings as tasks on a local Ray cluster of N "
                            "worker processes (each with --threads threads; needs pip install 'hwnas[ray]'); the "
                            "results are those of a run without workers (default: none, one process)")
    group.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="run those tasks on the running Ray cluster at ADDR (e.g. 10.0.0.5:6379 or auto) "
                            "instead; hwnas must be installed on its nodes")
    group.add_argument("--out", default=None, help="run folder (default: runs/search-<date>-<time>)")
    group.add_argument("--resume", metavar="DIR", default=None,
                       help="continue the search in DIR with its recorded options (giving other search options is an "
                            "error; --workers, --ray-address and --quiet may be given), re-scoring nothing")
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    search.set_defaults(handler=run, option_default=search.get_default)


def run(args: argparse.Namespace) -> int:
    """Run or resume a search and print the winner."""
    from types import SimpleNamespace

    from ..api import search
    from ..nas.config import SearchConfig
    from ..nas.refine import epoch_share
    from ..progress import ProgressBar
    from .common import config_options

    options = config_options(SearchConfig, args)
    if args.resume:
        given = [name for name, value in [*options.items(), ("out", args.out)] if value != args.option_default(name)]
        if given:
            option = "--" + given[0].replace("_", "-")
            raise OptionError(f"--resume continues with the search's recorded options; {option} cannot change them "
                              "(start a new search to use other options)")
        options = {}  # the checkpoint's options
        out = Path(args.resume)
        if out.is_file():
            out = out.parent  # accept a file of the run folder, e.g. its checkpoint.json
    else:
        out = Path(args.out) if args.out else Path("runs") / time.strftime("search-%Y%m%d-%H%M%S")
    bar = ProgressBar(enabled=not args.quiet)
    try:
        found = search(options.pop("dataset", None), options.pop("target", None), out=out, resume=bool(args.resume),
                       progress=bar if not args.quiet else False, workers=args.workers,
                       ray_address=args.ray_address, **options)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: progress saved in {out / 'checkpoint.json'}; continue with: hwnas search --resume {out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    outcome = SimpleNamespace(report=found.report, winner=SimpleNamespace(**found.winner), out_dir=found.folder)
    report, winner = outcome.report, outcome.winner
    print(f"winner: {winner.cell}")
    skeleton = report["skeleton"]
    preflight = report["preflight"]
    width = "/".join(map(str, skeleton["widths"])) if len(set(skeleton["widths"])) > 1 else skeleton["width"]
    stem = f"a stride-{skeleton['stem_pool']} stem, " if skeleton.get("stem_pool", 1) > 1 else ""
    kept = preflight.get("skeletons", [])
    searched = f"{len(kept)} skeletons searched, " if len(kept) > 1 else ""
    print(f"  skeleton: {stem}width {width}, {skeleton['stages']} stages, {skeleton['downsample']} downsampling, head "
          f"pooling {skeleton['head_pool']} (pre-flight: {preflight['verdict']}; {searched}{preflight['tried']} tried, "
          f"{len(preflight['rejected'])} rejected, {preflight['seconds']:.1f} s)")
    signal = report.get("signal", {})
    if signal.get("refine"):
        chosen = next(r for r in signal["pool"] if (r["cell"], r["skeleton"]) == (winner.cell, winner.skeleton))
        screen = signal.get("screen")
        among = (f"the {screen['kept']} best of {screen['screened']} screened on {epoch_share(screen['fraction'])} "
                 "each" if screen else f"the {len(signal['pool'])} best by {signal['preselected_by']} fitness")
        print(f"  chosen by {signal['chosen_by']} among {among}: {100 * chosen['refine_accuracy']:.2f}% after "
              f"{chosen['refine_epochs']} epoch(s), refined fitness {chosen['refine_fitness']:.4g}")
    if signal.get("refine"):
        from ..run_folder import RunFolder
        from ..nas.front import refined_front, separation_line

        front = refined_front(RunFolder(outcome.out_dir))
        separation = signal.get("separation")
        if separation:
            print("  " + separation_line(separation, front, outcome.out_dir))
        if len(front) > 1:
            points = "; ".join(f"{n}: {100 * float(r['refine_accuracy']):.1f}% at "
                               f"{1e6 * float(r['refine_energy_j']):.3g} uJ" for n, r in enumerate(front, 1))
            print(f"  accuracy-energy front of the refined candidates ({points}): hwnas train "
                  f"{outcome.out_dir} --pick K trains point K instead of the winner")
    if "refined_estimate" in report:
        refined = report["refined_estimate"]
        print(f"  on {report['target']['name']} after its {refined['training_epochs']}-epoch refinement training: "
              f"{refined['energy_j'] * 1e6:.3g} uJ per inference")
    if winner.accuracy is not None:
        measured = (f"  spike-aware fitness {winner.score:.4g} (validation accuracy {100 * winner.accuracy:.2f}% with "
                    f"the supernet's weights; supernet N_avg {signal['supernet']['spikes_avg']:.0f}), firing rate "
                    f"{winner.firing_rate:.3f}, ")
    else:
        measured = f"  {report['config']['score']} score {winner.score:.4g}, firing rate at init {winner.firing_rate:.3f}, "
    print(measured + f"{winner.spikes_per_sample:.0f} spikes and {winner.synops_per_sample:.0f} synaptic ops per sample, "
          f"latency {winner.latency_steps} steps ({report['timing']} timing, target {report['target']['name']})")
    if "estimate" in report:
        config = report["config"]
        weight = config["refine_energy_weight"] if config["strategy"] == "evolution" else config["energy_weight"]
        totals = report["estimate"]["totals"]
        print(f"  on {report['target']['name']}: {totals['energy_j'] * 1e6:.3g} uJ per inference, {totals['cores']} of "
              f"{report['mapping']['cores_available']} cores, {totals['step_time_s'] * 1e6:.3g} us per step "
              f"(untrained activity); fitness {winner.fitness:.4g} with energy weight {weight:g}")
        rules = ", ".join(f"{rule} {count}" for rule, count in sorted(report["broken_rules"].items())) or "none"
        print(f"  infeasible: {report['infeasible']} of the {report['candidates']} candidate cells scored (rules "
              f"broken: {rules})")
    kinds = report.get("evaluations_of", {})
    of = f" ({kinds['cells']} of cells, {kinds['supernets']} of the supernet)" if kinds.get("supernets") else ""
    estimated = report.get("time_estimate", {}).get("total_s")
    estimated = f" (estimated {estimated[0]:.0f}-{estimated[1]:.0f} s)" if estimated else ""
    print(f"  {report['evaluations']} evaluations{of} in {report['search_seconds']:.1f} s{estimated}; "
          f"degenerate (silent or duplicate spike codes): {100 * report['degenerate_share']:.1f}%")
    files = ", ".join(report["files"][k] for k in ("architecture", "search", "report", "pareto") if k in report["files"])
    print(f"results in {outcome.out_dir}/: {files}")
    return 0
