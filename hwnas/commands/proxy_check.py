"""``hwnas proxy-check``: how well each search signal ranks architectures on your data."""

from __future__ import annotations

import argparse
import sys

from ..limits import DEFAULT_THREADS
from ..nas.names import DEFAULT_SCREEN_FRACTION
from .common import DEVICE_HELP, device_name, fraction_of_one, positive_int, seed_int


def add_parser(commands) -> None:
    """Declare ``hwnas proxy-check``."""
    check = commands.add_parser(
        "proxy-check", help="measure whether the search's signals rank architectures: train sampled cells, correlate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Samples --candidates cells (seeded), trains each for --epochs with --seeds training seeds (the code of\n"
            "hwnas train, float weights), and reports for every proxy the Kendall tau and Spearman rho against the\n"
            "seed-mean test accuracy with bootstrap 95% intervals, plus the ceiling set by training noise (tau\n"
            "between two seeds). Proxies: sahd_batch (the search's zero-cost score), sahd_identity, naswot, neg_spikes and\n"
            "neg_convs (baselines any proxy must beat), short_train (validation accuracy after --short-epochs of\n"
            "training, its own seed), screen (after --screen-fraction of one epoch: the search's screening rung,\n"
            "what chooses the candidates it refines) and supernet (validation accuracy with the weights of AutoSNN's one-shot\n"
            "supernet after --supernet-epochs, as --strategy evolution scores). A proxy passes with tau >= 0.3, the interval above 0 and tau above both\n"
            "baselines. Writes proxy_check.json and proxy_check.png; rerun the same command to continue after an\n"
            "interruption (finished trainings are kept in proxy_check_state.json)."),
        epilog="examples:\n  hwnas proxy-check --out runs/proxy\n  hwnas proxy-check --candidates 12 --epochs 2 --out runs/quick")
    check.add_argument("--dataset", default="digits", help="dataset (default: %(default)s)")
    check.add_argument("--data-dir", default=None, help="folder that holds the dataset's files")
    check.add_argument("--target", default="loihi2", help="target: sets the timing model (default: %(default)s)")
    check.add_argument("--candidates", type=positive_int, default=40, help="sampled cells (default: %(default)s)")
    check.add_argument("--epochs", type=positive_int, default=4, help="training epochs per seed (default: %(default)s)")
    check.add_argument("--seeds", type=positive_int, default=2, help="training seeds per cell (default: %(default)s)")
    check.add_argument("--short-epochs", type=positive_int, default=1,
                       help="epochs of the short-training proxy (default: %(default)s)")
    check.add_argument("--screen-fraction", type=fraction_of_one, default=DEFAULT_SCREEN_FRACTION,
                       help="share of an epoch of the screening proxy (default: %(default)s, the search's)")
    check.add_argument("--supernet-epochs", type=positive_int, default=5,
                       help="epochs of the one-shot supernet of the supernet proxy (default: %(default)s)")
    check.add_argument("--timesteps", type=positive_int, default=8, help="timesteps per sample (default: %(default)s)")
    check.add_argument("--width", type=positive_int, default=None, help="channels (default: the search's)")
    check.add_argument("--seed", type=seed_int, default=0, help="seed of the sampling (default: %(default)s)")
    check.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                       help="torch's compute threads (results depend on them; default: %(default)s)")
    check.add_argument("--device", type=device_name, default="auto", help=DEVICE_HELP + " (default: %(default)s)")
    check.add_argument("--max-samples", type=positive_int, default=None,
                       help="use at most this many samples of the dataset (default: all)")
    check.add_argument("--out", default="runs/proxy-check", help="output folder (default: %(default)s)")
    check.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run or continue the check and print the table."""
    from ..nas.proxy_check import PROXIES, ProxyCheckConfig, run_proxy_check

    config = ProxyCheckConfig(dataset=args.dataset, data_dir=args.data_dir, target=args.target,
                              candidates=args.candidates, epochs=args.epochs, seeds=args.seeds,
                              short_epochs=args.short_epochs, timesteps=args.timesteps, width=args.width,
                              seed=args.seed, max_samples=args.max_samples, supernet_epochs=args.supernet_epochs,
                              screen_fraction=args.screen_fraction,
                              threads=args.threads, device=args.device)
    try:
        report = run_proxy_check(config, args.out, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print("\ninterrupted: finished trainings are kept; run the same command to continue", file=sys.stderr)
        return 130
    print(f"{report['candidates']} cells on {args.dataset}, {args.epochs} epochs x {args.seeds} seeds; seed-mean "
          f"test accuracy {100 * report['accuracy_range'][0]:.1f}-{100 * report['accuracy_range'][1]:.1f}%")
    print(f"{'proxy':14s} {'tau':>6s} {'95% interval':>16s} {'rho':>6s} {'95% interval':>16s}  passes")
    for name in PROXIES:
        row = report["proxies"][name]
        verdict = {True: "yes", False: "no"}.get(report["passes"].get(name), "baseline")
        print(f"{name:14s} {row['kendall_tau']:6.3f} [{row['tau_ci95'][0]:6.3f}, {row['tau_ci95'][1]:6.3f}] "
              f"{row['spearman_rho']:6.3f} [{row['rho_ci95'][0]:6.3f}, {row['rho_ci95'][1]:6.3f}]  {verdict}")
    if "seed_ceiling" in report:
        row = report["seed_ceiling"]
        print(f"{'seed ceiling':14s} {row['kendall_tau']:6.3f} [{row['tau_ci95'][0]:6.3f}, {row['tau_ci95'][1]:6.3f}] "
              f"{row['spearman_rho']:6.3f}   (tau between two training seeds of the same cells)")
    for stage in ("preselection", "selection"):
        row = report[stage]
        print(f"the search's {stage}: {row['proxy']}, tau {row['kendall_tau']:.3f} "
              f"[{row['tau_ci95'][0]:.3f}, {row['tau_ci95'][1]:.3f}]")
    print(f"the search's pipeline on these cells (keep the best {report['pipeline']['sahd_batch']['kept']} of "
          f"{report['candidates']} by a preselecting proxy, choose among them by {report['selection']['proxy']}):")
    for name, row in report["pipeline"].items():
        mark = "  <- the search's" if name == report["preselection"]["proxy"] else ""
        print(f"  {name:14s} top-quartile recall {100 * row['top_quartile_recall']:5.1f}%, chosen cell at percentile "
              f"{row['chosen_percentile']:5.1f} ({'top quartile' if row['chosen_in_top_quartile'] else 'below it'})"
              f"{mark}")
    print(f"written: {args.out}/proxy_check.json, {args.out}/proxy_check.png")
    return 0
