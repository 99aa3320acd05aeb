"""Does a search signal rank architectures? Sample cells, train each briefly with several seeds, and measure how
well every registered proxy orders them by seed-mean test accuracy (Kendall tau, Spearman rho, bootstrap 95%
intervals), next to the ceiling that training noise allows (tau between two training seeds).

Proxies (higher must mean better):

* ``sahd_batch`` / ``sahd_identity``: LightSNN's SAHD score at initialisation, batch-norm normalising with the
  scoring batch's statistics (what the search uses) or left as the identity;
* ``naswot``: NASWOT's Hamming kernel score (SNASNet);
* ``neg_spikes``: minus the spikes per sample at initialisation (a baseline);
* ``neg_convs``: minus the number of convolution (dense cells: linear) edges (a baseline: any proxy must beat it);
* ``short_train``: validation accuracy after ``short_epochs`` epochs of the real training, with its own seed;
* ``screen``: validation accuracy after ``screen_fraction`` of one epoch (one pass over that share of the training
  split), with its own seed: the search's screening rung;
* ``supernet``: validation accuracy with the weights inherited from AutoSNN's one-shot supernet, trained for
  ``supernet_epochs`` epochs (:mod:`.supernet`; saved as ``supernet.pt`` in the folder), as the evolution
  strategy measures it.

Besides each proxy's rank agreement, the report measures the search's two-stage pipeline on the sampled cells
(:func:`pipeline_quality`): the default search keeps the share of its pool that refinement trains (8 of 25)
by its preselection signal (``preselection``: the screening rung, or the zero-cost score when the search's
defaults screen nothing) and chooses among them by short training (``selection``); ``pipeline`` gives the recall
of the true top quartile among the kept cells and the chosen cell's percentile, for every proxy as the
preselector (the search adds hardware terms; these figures are the proxy's alone).

Trainings are the expensive part: every finished one is written to ``proxy_check_state.json`` at once, and a
rerun with the same folder redoes none.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..arch.builder import build_network
from ..arch.genotype import cell_key, parse_cell_key
from ..cache import ResultCache
from ..data import load_dataset
from ..errors import OptionError, ResumeError
from ..hw_models import load_target
from ..io_utils import check_writable, write_bytes_atomic, write_json_atomic
from ..limits import DEFAULT_THREADS, check_device, check_fraction, check_seed, check_threads
from ..run_folder import RunFolder
from ..sim.seeding import build_seeded, computing_threads, resolve_device
from .evaluate import Evaluator, ScoreConfig
from .names import DEFAULT_SCREEN_FRACTION
from .refine import pool_sample_size
from .runner import SearchConfig, scoring_batches, template_architecture
from .space import SearchSpace

PROXIES = ("sahd_batch", "sahd_identity", "naswot", "neg_spikes", "neg_convs", "short_train", "screen", "supernet")
SELECTION_PROXY = "short_train"  # what the search's refinement chooses by (its first rung)
BASELINES = ("neg_spikes", "neg_convs")
STATE_FILE = "proxy_check_state.json"
REPORT_FILE = "proxy_check.json"
PLOT_FILE = "proxy_check.png"


@dataclass(frozen=True)
class ProxyCheckConfig:
    """What to sample and how long to train."""

    dataset: str = "digits"
    data_dir: str | None = None
    target: str = "loihi2"
    candidates: int = 40
    epochs: int = 4
    seeds: int = 2
    short_epochs: int = 1
    timesteps: int = 8
    width: int | None = None
    seed: int = 0
    bootstrap: int = 1000
    max_samples: int | None = None
    supernet_epochs: int = 5
    screen_fraction: float = DEFAULT_SCREEN_FRACTION
    threads: int = DEFAULT_THREADS
    device: str = "auto"

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_threads(self.threads)
        check_device(self.device)
        if self.candidates < 4:
            raise OptionError(f"--candidates must be at least 4 for a rank correlation, got {self.candidates}")
        if self.seeds < 1 or self.epochs < 1 or self.short_epochs < 1 or self.supernet_epochs < 1:
            raise OptionError("--seeds, --epochs, --short-epochs and --supernet-epochs must be at least 1")
        check_fraction(self.screen_fraction, "--screen-fraction")


def sample_cells(count: int, seed: int, allow_backward: bool = True, dense: bool = False) -> list[str]:
    """``count`` distinct valid cells (canonical keys), drawn with ``seed`` (of dense populations with ``dense``)."""
    space = SearchSpace(allow_backward=allow_backward, dense=dense)
    if count > space.size():
        raise OptionError(f"--candidates {count} exceeds the {space.size()} distinct (canonical) cells of the space")
    rng = np.random.default_rng(seed)
    keys: list[str] = []
    while len(keys) < count:
        key = cell_key(space.sample(rng))
        if key not in keys:
            keys.append(key)
    return keys


def _finite(values: list[float]) -> np.ndarray:
    """-inf (degenerate scores) ranks below every finite value."""
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    floor = (finite.min() - 1.0) if finite.size else 0.0
    return np.where(np.isfinite(array), array, floor)


def rank_agreement(proxy: list[float], accuracy: list[float], bootstrap: int, seed: int) -> dict:
    """Kendall tau and Spearman rho of ``proxy`` against ``accuracy``, with bootstrap 95% intervals."""
    from scipy.stats import kendalltau, spearmanr

    x, y = _finite(proxy), np.asarray(accuracy, dtype=float)

    def both(a, b):
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            return 0.0, 0.0
        return float(kendalltau(a, b).statistic), float(spearmanr(a, b).statistic)

    tau, rho = both(x, y)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(bootstrap):
        index = rng.integers(0, len(x), len(x))
        t, r = both(x[index], y[index])
        taus.append(t)
        rhos.append(r)
    return {"kendall_tau": tau, "tau_ci95": [float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))],
            "spearman_rho": rho, "rho_ci95": [float(np.percentile(rhos, 2.5)), float(np.percentile(rhos, 97.5))]}


def open_state(path: Path, config: ProxyCheckConfig) -> ResultCache:
    """The proxy check's cache of proxies and accuracies per candidate; a file written with other settings is
    refused (fields added to the configuration later take their default in older files)."""
    cache = ResultCache(path, asdict(config), {}, results_key="candidates", every_s=0.0)
    if path.is_file():
        try:
            stored, cache.results, _ = ResultCache.read(path, results_key="candidates")
        except ResumeError as exc:
            raise ResumeError(f"{exc}; delete it to start over") from None
        defaults = asdict(ProxyCheckConfig())
        stored = stored if isinstance(stored, dict) else {}
        if any(stored.get(key, defaults[key]) != value for key, value in asdict(config).items()):
            raise ResumeError(f"{path} was written with other settings; use another --out or the same options")
    return cache


def run_proxy_check(config: ProxyCheckConfig, out_dir: str | Path,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Score, train and correlate; writes the state, ``proxy_check.json`` and ``proxy_check.png`` (holding the
    folder, with the configuration's thread count)."""
    out = Path(out_dir)
    resolve_device(config.device)  # a device this machine lacks is refused before anything is written
    check_writable(out, "--out", folder=True)
    with RunFolder(out).writing("proxy-check"), computing_threads(config.threads):
        return _run_proxy_check(config, out, progress)


def _run_proxy_check(config: ProxyCheckConfig, out: Path, progress: Callable[[str], None] | None) -> dict:
    from ..training.loop import evaluate, short_training
    from .supernet import Supernet

    say = progress or (lambda message: None)
    state = open_state(out / STATE_FILE, config)
    target = load_target(config.target)
    splits = load_dataset(config.dataset, config.data_dir, config.timesteps, config.seed, config.max_samples)
    search_defaults = SearchConfig(dataset=config.dataset, timesteps=config.timesteps, width=config.width,
                                   seed=config.seed)
    dense = target.network == "dense"
    template = template_architecture(search_defaults, splits, target.timing, target.network)
    device = resolve_device(config.device)
    batches = scoring_batches(search_defaults, splits)
    scorers = {
        "sahd_batch": Evaluator(batches, ScoreConfig("sahd", bn_mode="batch"), device),
        "sahd_identity": Evaluator(batches, ScoreConfig("sahd", bn_mode="identity"), device),
        "naswot": Evaluator(batches, ScoreConfig("naswot", bn_mode="batch"), device),
    }
    keys = sample_cells(config.candidates, config.seed, dense=dense)
    started = time.perf_counter()
    supernet = None
    for number, key in enumerate(keys, start=1):
        entry = state.results.setdefault(key, {"proxies": {}, "test_accuracy": {}})
        arch = template.with_cell(parse_cell_key(key))
        if any(name not in entry["proxies"] for name in (*scorers, "neg_spikes", "neg_convs")):
            for name, evaluator in scorers.items():
                result = evaluator.evaluate(build_seeded(lambda: build_network(arch), config.seed, arch.key))
                entry["proxies"][name] = result["score"]
                if name == "sahd_batch":
                    entry["proxies"]["neg_spikes"] = -result["spikes_per_sample"]
            entry["proxies"]["neg_convs"] = -float(sum(edge.op in ("conv3x3", "linear") for edge in arch.cell))
            state.save()
        if "supernet" not in entry["proxies"]:
            if supernet is None:  # trained once (or read back from supernet.pt) when a candidate needs it
                supernet = Supernet(template, SearchSpace(dense=dense), config.seed, device)
                supernet.train(splits, config.supernet_epochs, 2e-3, search_defaults.batch_size,
                               out / "supernet.pt", say)
            inherited = supernet.candidate(arch.cell, splits, search_defaults.batch_size)
            entry["proxies"]["supernet"] = evaluate(inherited, splits, "val", arch, config.seed)[0]
            state.save()
        runs = [(str(s), config.epochs, 1.0) for s in range(config.seeds)]
        runs += [("short_train", config.short_epochs, 1.0), ("screen", 1, config.screen_fraction)]
        for label, epochs, fraction in runs:
            done, split = (entry["proxies"], "val") if label in PROXIES else (entry["test_accuracy"], "test")
            if label in done:
                continue
            train_seed = 1000 * (config.seed + 1) + {"short_train": 999, "screen": 998}.get(label, 0) + \
                (int(label) if split == "test" else 0)
            done[label] = short_training(arch, splits, epochs, train_seed, split, device, fraction).accuracy
            state.save()
            length = f"{fraction:g} of an epoch" if fraction < 1 else f"{epochs} epochs"
            say(f"[{number}/{len(keys)}] {key}: {'seed ' + label if split == 'test' else label} training "
                f"({length}) -> {split} accuracy {100 * done[label]:.2f}% ({time.perf_counter() - started:.0f} s)")
    report = summarise(state.results, keys, config)
    report["seconds_this_run"] = time.perf_counter() - started
    write_json_atomic(out / REPORT_FILE, report)
    plot(report, state.results, keys, out / PLOT_FILE)
    return report


def summarise(candidates: dict[str, dict], keys: list[str], config: ProxyCheckConfig) -> dict:
    """Rank agreement of every proxy with seed-mean test accuracy, the seed ceiling, and the verdict."""
    accuracies = [[candidates[k]["test_accuracy"][str(s)] for s in range(config.seeds)] for k in keys]
    mean = [float(np.mean(a)) for a in accuracies]
    proxies = {}
    for name in PROXIES:
        values = [candidates[k]["proxies"][name] for k in keys]
        proxies[name] = rank_agreement(values, mean, config.bootstrap, config.seed)
    report = {"config": asdict(config), "candidates": len(keys), "mean_accuracy": float(np.mean(mean)),
              "accuracy_range": [float(min(mean)), float(max(mean))], "proxies": proxies}
    if config.seeds >= 2:
        first = [a[0] for a in accuracies]
        second = [a[1] for a in accuracies]
        report["seed_ceiling"] = rank_agreement(first, second, config.bootstrap, config.seed)
    search = SearchConfig()
    preselection = search_preselection_proxy(search)
    report["preselection"] = {"proxy": preselection, **proxies[preselection]}
    report["selection"] = {"proxy": SELECTION_PROXY, **proxies[SELECTION_PROXY]}
    keep_share = search_keep_share(search)
    report["pipeline"] = {name: pipeline_quality([candidates[k]["proxies"][name] for k in keys],
                                                 [candidates[k]["proxies"][SELECTION_PROXY] for k in keys],
                                                 mean, keep_share)
                          for name in PROXIES if name != SELECTION_PROXY}
    best_baseline = max(proxies[b]["kendall_tau"] for b in BASELINES)
    report["passes"] = {name: bool(row["kendall_tau"] >= 0.3 and row["tau_ci95"][0] > 0
                                   and row["kendall_tau"] > best_baseline)
                        for name, row in proxies.items() if name not in BASELINES}
    report["top_quartile_accuracy"] = float(np.percentile(mean, 75))
    return report


def search_preselection_proxy(config: SearchConfig) -> str:
    """The proxy of this check that ranks like the search's preselection of ``config``: its screening rung, else
    its zero-cost score (the supernet's accuracy for the evolution)."""
    if config.refine and config.screen > config.refine:
        return "screen"
    if config.strategy == "evolution":
        return "supernet"
    return "naswot" if config.score == "naswot" else f"sahd_{config.bn_mode}"


def search_keep_share(config: SearchConfig) -> float:
    """The share of its pool that the search of ``config`` refines: a prune search's pool is its final cell and
    :func:`~hwnas.nas.refine.pool_sample_size` random cells (25 for --refine 8), of which the screening rung
    (or the fitness, without one) keeps ``refine``."""
    pool = pool_sample_size(config.refine, config.screen) + 1
    if config.screen > config.refine:
        pool = min(pool, config.screen)
    return min(1.0, config.refine / pool)


def pipeline_quality(preselect: list[float], select: list[float], accuracy: list[float], keep_share: float) -> dict:
    """The search's two stages on sampled cells: keep the ``keep_share`` of them (at least 2) with the highest
    ``preselect`` values, choose the kept cell with the highest ``select`` value. Returns how many were kept, the
    recall of the top quartile by ``accuracy`` (share of those cells that were kept), and the chosen cell's
    accuracy, its percentile (share of cells at or below it) and whether it is in the top quartile."""
    count = len(accuracy)
    keep = min(count, max(2, round(keep_share * count)))
    first, second = _finite(preselect), _finite(select)
    kept = sorted(range(count), key=lambda i: (-first[i], i))[:keep]
    quartile = float(np.percentile(accuracy, 75))
    top = {i for i in range(count) if accuracy[i] >= quartile}
    chosen = max(kept, key=lambda i: (second[i], -i))
    return {"kept": keep, "of": count, "top_quartile_recall": len(top & set(kept)) / len(top),
            "chosen_accuracy": float(accuracy[chosen]),
            "chosen_percentile": 100.0 * float(np.mean([a <= accuracy[chosen] for a in accuracy])),
            "chosen_in_top_quartile": bool(accuracy[chosen] >= quartile)}


def plot(report: dict, candidates: dict[str, dict], keys: list[str], path: Path) -> None:
    """One scatter per proxy: proxy value against seed-mean test accuracy, tau in the title."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = report["config"]["seeds"]
    mean = [float(np.mean([candidates[k]["test_accuracy"][str(s)] for s in range(seeds)])) for k in keys]
    columns = 3
    rows = math.ceil(len(PROXIES) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows))
    for ax, name in zip(np.ravel(axes), PROXIES):
        values = _finite([candidates[k]["proxies"][name] for k in keys])
        ax.scatter(values, [100 * m for m in mean], s=14)
        row = report["proxies"][name]
        ax.set_title(f"{name}: tau {row['kendall_tau']:.2f} [{row['tau_ci95'][0]:.2f}, {row['tau_ci95'][1]:.2f}]",
                     fontsize=9)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("test accuracy (%)", fontsize=8)
    for ax in np.ravel(axes)[len(PROXIES):]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
