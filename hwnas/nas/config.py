"""The configuration of a search: every option that determines its result, with the defaults that the library
and the command line share. Importable without torch (the command line's help reads the defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..arch.choices import DOWNSAMPLES, ENCODINGS, TIMINGS
from ..errors import OptionError, ResumeError
from ..limits import DEFAULT_THREADS, check_device, check_fraction, check_seed, check_threads
from .names import (BN_MODES, DEFAULT_REFINE, DEFAULT_REFINE_ENERGY_WEIGHT, DEFAULT_SCREEN, DEFAULT_SCREEN_FRACTION,
                    DEFAULT_SPIKE_LAMBDA, DEPLOYABLES, STRATEGIES)

# Default --energy-weight: score points per doubling of energy. Measured on digits/loihi2 (200 random cells, seed 0):
# SAHD scores spread over 39 points and energies over 3.6 doublings; the best-scoring cell stays the winner up
# to a weight of 6 and an all-skip cell with 0.22x its energy wins from 8 on. At 4 the prune strategy already
# trades 6.6 score points for 0.72x energy (bench/hw_fitness.py); energy does not decide alone.
DEFAULT_ENERGY_WEIGHT = 4.0
STEM_POOL_AUTO = "auto"  # --stem-pool auto: every skeleton with a stride-1 and with a stride-2 stem


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search's result (with the seed, the same config gives the same result).

    The defaults are the command line's: ``hwnas search`` takes every default from here."""

    target: str = "loihi2"
    dataset: str = "digits"
    data_dir: str | None = None
    strategy: str = "prune"
    candidates: int = 100
    timesteps: int = 8
    width: int | None = None
    stages: int | None = None
    head_pool: int | None = None
    # k > 1: the stem's convolution takes the input k x k average-pooled (a stride-k stem); "auto": the pre-flight
    # keeps each skeleton with a stride-1 stem and with a stride-2 one, and the search chooses between them
    stem_pool: int | str = 1
    widths: tuple[int, ...] | None = None  # channels per stage (fixes the stages); None: one width throughout
    skeletons: int = 1  # skeletons the pre-flight keeps for the search (every candidate is a cell in one of them)
    # several widths searched together: the pre-flight keeps a skeleton at each (widest first, the primary one), and
    # the hardware terms reject the cells that break a rule of the target at their width
    width_choices: tuple[int, ...] | None = None
    downsample: str | None = None     # None: maxpool; conv for growing widths; avgpool when deployable is netx
    encoding: str = "rate"
    timing: str | None = None
    allow_backward: bool | None = None  # None: True, or False when deployable is netx
    deployable: str = "any"
    score: str = "sahd"
    batch_size: int = 64
    repeats: int = 2
    bn_mode: str = "batch"
    reset_state: bool = True
    du: float = 1.0
    dv: float = 0.75
    theta: float = 1.0
    seed: int = 0
    threads: int = DEFAULT_THREADS  # torch's intra-op threads: results depend on them, so the run fixes them
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N; results depend on it like on threads
    max_samples: int | None = None
    energy_weight: float = DEFAULT_ENERGY_WEIGHT
    max_cores: int | None = None
    max_energy: float | None = None
    refine: int = DEFAULT_REFINE
    refine_epochs: int = 1
    refine_energy_weight: float = DEFAULT_REFINE_ENERGY_WEIGHT
    screen: int = DEFAULT_SCREEN  # candidates screened by a brief training to choose the refined ones; 0: by fitness
    screen_fraction: float = DEFAULT_SCREEN_FRACTION  # share of an epoch each screened candidate trains
    train_fraction: float = 1.0  # share of the training split the screening and the rungs train on (seeded)
    budget_minutes: float | None = None  # fit train_fraction so that the estimated search takes this long
    # validation samples that rank the screening and the rungs (a seeded, class-balanced subset of the validation
    # split; a last rung that continues another uses the whole split); None: all of it, or, with a budget, at most
    # BUDGET_VALIDATION_SAMPLES (recorded when chosen)
    val_samples: int | None = None
    population: int = 16          # evolution: candidates per generation (and random ones to start)
    generations: int = 6          # evolution: rounds of mutation and crossover
    supernet_epochs: int = 5      # evolution: epochs of the one-shot supernet's training
    spike_lambda: float = DEFAULT_SPIKE_LAMBDA  # evolution: lambda of F = Acc x (N / N_avg)^lambda

    def __post_init__(self) -> None:
        positive = {"candidates": self.candidates, "timesteps": self.timesteps, "repeats": self.repeats,
                    "skeletons": self.skeletons, "population": self.population,
                    "supernet_epochs": self.supernet_epochs}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"--{name} must be a positive integer, got {value!r}")
        if isinstance(self.stem_pool, str) and self.stem_pool.strip().lower() == STEM_POOL_AUTO:
            object.__setattr__(self, "stem_pool", STEM_POOL_AUTO)
        if self.stem_pool != STEM_POOL_AUTO and (isinstance(self.stem_pool, bool) or not isinstance(
                self.stem_pool, int) or self.stem_pool < 1):
            raise OptionError(f"--stem-pool must be a positive integer or '{STEM_POOL_AUTO}', got {self.stem_pool!r}")
        for name in ("width", "stages", "head_pool"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise OptionError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("energy_weight", "refine_energy_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise OptionError(f"--{name.replace('_', '-')} must be a finite non-negative number, got {value!r}")
        if self.max_cores is not None and (not isinstance(self.max_cores, int) or self.max_cores < 1):
            raise OptionError(f"--max-cores must be a positive integer, got {self.max_cores!r}")
        if self.max_energy is not None and not self.max_energy > 0:
            raise OptionError(f"--max-energy must be a positive number of joules, got {self.max_energy!r}")
        if isinstance(self.generations, bool) or not isinstance(self.generations, int) or self.generations < 0:
            raise OptionError(f"--generations must be a non-negative integer, got {self.generations!r}")
        if isinstance(self.spike_lambda, bool) or not isinstance(self.spike_lambda, (int, float)) \
                or not -10 <= self.spike_lambda <= 10:
            raise OptionError(f"--spike-lambda must be a number in [-10, 10], got {self.spike_lambda!r}")
        if self.strategy == "evolution" and self.stem_pool == STEM_POOL_AUTO:
            raise OptionError("--strategy evolution searches cells in one skeleton (its supernet's): --stem-pool auto "
                              "needs two; give --stem-pool 1 or 2")
        if self.strategy == "evolution" and self.skeletons != 1:
            raise OptionError("--strategy evolution searches cells in one skeleton (its supernet's): leave "
                              "--skeletons at 1")
        if self.refine < 0 or self.refine_epochs < 1:
            raise OptionError(f"--refine must be >= 0 and --refine-epochs >= 1, got {self.refine}, {self.refine_epochs}")
        if isinstance(self.screen, bool) or not isinstance(self.screen, int) or self.screen < 0:
            raise OptionError(f"--screen must be a non-negative integer, got {self.screen!r}")
        check_fraction(self.screen_fraction, "--screen-fraction")
        check_fraction(self.train_fraction, "--train-fraction")
        if self.val_samples is not None and (isinstance(self.val_samples, bool) or not isinstance(
                self.val_samples, int) or self.val_samples < 1):
            raise OptionError(f"--val-samples must be a positive integer, got {self.val_samples!r}")
        if self.budget_minutes is not None and (isinstance(self.budget_minutes, bool) or not isinstance(
                self.budget_minutes, (int, float)) or not 0 < self.budget_minutes < float("inf")):
            raise OptionError(f"--budget-minutes must be a positive number of minutes, got {self.budget_minutes!r}")
        if self.max_samples is not None and self.max_samples < 1:
            raise OptionError(f"--max-samples must be a positive integer, got {self.max_samples!r}")
        if self.deployable not in DEPLOYABLES:
            raise OptionError(f"--deployable '{self.deployable}' is unknown (choose {', '.join(DEPLOYABLES)})")
        uneven = self._check_widths()
        self._check_width_choices()
        netx = self.deployable == "netx"
        if self.downsample is None:
            object.__setattr__(self, "downsample", "conv" if uneven else "avgpool" if netx else "maxpool")
        if self.allow_backward is None:
            object.__setattr__(self, "allow_backward", not netx)
        if netx and (self.downsample == "maxpool" or self.allow_backward):
            raise OptionError("--deployable netx needs --downsample avgpool or conv and no feedback edges (netx "
                              "holds a feed-forward chain of convolution and dense layers, without pooling layers); "
                              "leave --downsample out and it is chosen")
        if uneven and self.downsample != "conv":
            raise OptionError(f"--widths {','.join(map(str, self.widths))} change channels between stages: only "
                              "--downsample conv (a strided convolution into spiking neurons) can")
        choices = {"strategy": STRATEGIES, "downsample": DOWNSAMPLES, "encoding": ENCODINGS, "bn_mode": BN_MODES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise OptionError(f"--{name.replace('_', '-')} '{getattr(self, name)}' is unknown (choose {', '.join(allowed)})")
        if self.timing is not None and self.timing not in TIMINGS:
            raise OptionError(f"--timing '{self.timing}' is unknown (choose {', '.join(TIMINGS)})")
        check_seed(self.seed)
        check_threads(self.threads)
        check_device(self.device)
        for name in ("du", "dv"):
            if getattr(self, name) == 0:
                raise OptionError(f"--{name} 0 (no decay) has no finite NIR time constant (tau = dt/{name}), so the "
                                  f"winner could not be exported: use a small positive decay such as 0.01")
        from ..sim.neuron import NeuronParams
        from .evaluate import ScoreConfig

        ScoreConfig(self.score, self.batch_size, self.repeats, self.bn_mode, self.reset_state)
        try:
            NeuronParams(du=self.du, dv=self.dv, theta=self.theta)
        except Exception as exc:  # ArchitectureError on a bad neuron parameter
            raise OptionError(str(exc)) from None

    def _check_widths(self) -> bool:
        """Check --widths against --width and --stages; True when the widths differ between stages."""
        if self.widths is None:
            return False
        widths = self.widths
        if (isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)) or not widths
                or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths)):
            raise OptionError(f"--widths must be positive integers, one per stage, got {widths!r}")
        object.__setattr__(self, "widths", tuple(widths))
        if self.width is not None and self.width != widths[0]:
            raise OptionError(f"--width {self.width} and --widths {widths[0]},...: give one of them")
        if self.stages is not None and self.stages != len(widths):
            raise OptionError(f"--stages {self.stages} but --widths names {len(widths)} stages: give one of them")
        return len(set(widths)) > 1

    def _check_width_choices(self) -> None:
        """Check --width-choices (at least two distinct positive widths; not with --width, --widths or --skeletons)
        and keep them widest first."""
        choices = self.width_choices
        if choices is None:
            return
        if (isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple))
                or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in choices)
                or len(set(choices)) < 2):
            raise OptionError(f"--width-choices must be two or more distinct positive widths, got {choices!r}")
        given = [name for name, value in (("--width", self.width), ("--widths", self.widths),
                                          ("--skeletons", self.skeletons != 1)) if value]
        if given:
            raise OptionError(f"--width-choices and {given[0]} both choose the widths: give one of them")
        if self.strategy == "evolution":
            raise OptionError("--strategy evolution searches cells in one skeleton (its supernet's): --width-choices "
                              "needs several; give --width")
        object.__setattr__(self, "width_choices", tuple(sorted(set(choices), reverse=True)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SearchConfig":
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - names:
            raise ResumeError(f"checkpoint configuration has unknown fields {sorted(set(data) - names) if isinstance(data, dict) else data!r}")
        if "screen" not in data:  # written before the screening rung existed: its candidates were chosen by fitness
            data = {**data, "screen": 0}
        return cls(**data)
