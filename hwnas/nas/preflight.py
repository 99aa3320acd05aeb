"""Pre-flight: choose the macro skeletons (widths per stage, stages, head pooling) for the target before anything
is scored.

A skeleton can be tried without any simulation: its network is built with a given cell and mapped onto the
target's cores. If the lightest cell (one convolution from the cell's input to its output) breaks a rule of the
target (fan-in, synaptic memory, cores) or the user's ``--max-cores``, no cell in that skeleton can fit; if the
heaviest (a convolution on every pair) fits, every cell does. Skeletons are tried in order of preference (widest
first, doubling widths before even ones with conv downsampling, then fewest stages, then least head pooling);
the first ``--skeletons`` K in which every cell fits are the search's (the first is the primary one), else the
first in which some do. When none fits, the search stops at once with one line naming the rule, the layer, the
figure, the limit and what to change, instead of scoring candidates that can never be deployed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ..arch.builder import build_network
from ..arch.genotype import Architecture, Edge, default_width
from ..errors import ArchitectureError, SearchError
from ..hw_models.mapping import map_network
from ..hw_models.rules import ConstraintError
from ..sim.ops.base import pooled_shape

LIGHTEST_CELL = (Edge(0, 1, "zero"), Edge(0, 2, "zero"), Edge(0, 3, "conv3x3"), Edge(1, 2, "zero"),
                 Edge(1, 3, "zero"), Edge(2, 3, "zero"))
# every pair a convolution: every population, the most connections a cell can have
HEAVIEST_CELL = tuple(Edge(src, dst, "conv3x3") for src, dst in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)))
# the heaviest chain (--deployable netx): a convolution on every step of the longest path
HEAVIEST_CHAIN = (Edge(0, 1, "conv3x3"), Edge(0, 2, "zero"), Edge(0, 3, "zero"), Edge(1, 2, "conv3x3"),
                  Edge(1, 3, "zero"), Edge(2, 3, "conv3x3"))
# a dense cell's lightest and heaviest (hwnas.arch.dense), and the widths the pre-flight tries for it, widest first
LIGHTEST_DENSE_CELL = tuple(Edge(e.src, e.dst, "linear" if e.op != "zero" else "zero") for e in LIGHTEST_CELL)
HEAVIEST_DENSE_CELL = tuple(Edge(e.src, e.dst, "linear") for e in HEAVIEST_CELL)
DENSE_WIDTHS = (64, 32, 16, 8)
STAGE_CHOICES = (2, 3, 4)
HEAD_POOL_CHOICES = (1, 2, 4)
NO_CELL_FITS = "not even the lightest cell fits"  # a --width-choices width's verdict when it is left out
STEM_TWIN = 2  # --stem-pool auto: each kept skeleton also with its input 2 x 2 pooled into the stem (a stride-2 stem)
MIN_WIDTH = 4
ADVICE = {
    "fanin": "pool more before the classifier (--head-pool, --stages) or lower --width",
    "synapse-memory": "lower --width",
    "cores": "lower --width, add --stages, or choose a target with more chips",
    "fanout": "lower --width or add --stages",
    "max-cores": "raise --max-cores or lower --width",
}


@dataclass(frozen=True)
class Skeleton:
    """The macro choices of a network: channels per stage, cells (stages), head pooling before the classifier."""

    widths: tuple[int, ...]
    head_pool: int
    stem_pool: int = 1

    @property
    def stages(self) -> int:
        return len(self.widths)

    def describe(self) -> str:
        width = "/".join(map(str, self.widths)) if len(set(self.widths)) > 1 else str(self.widths[0])
        stem = f", a stride-{self.stem_pool} stem" if self.stem_pool > 1 else ""
        return f"width {width}, {self.stages} stages, head pooling {self.head_pool}{stem}"

    def to_dict(self) -> dict:
        """JSON-ready form (``widths`` only when they differ between stages, ``stem_pool`` only when > 1)."""
        uneven = {"widths": list(self.widths)} if len(set(self.widths)) > 1 else {}
        stem = {"stem_pool": self.stem_pool} if self.stem_pool > 1 else {}
        return {"width": self.widths[0], "stages": self.stages, "head_pool": self.head_pool, **uneven, **stem}


def skeleton_options(input_shape: tuple[int, int, int], width: int | None, stages: int | None,
                     head_pool: int | None, widths: tuple[int, ...] | None = None,
                     grow: bool = False) -> list[Skeleton]:
    """Skeletons in order of preference within the user's bounds (a given option is fixed; None: the search
    chooses among widths from the input-size default down to 4, 2-4 stages and head pooling 1, 2 or 4).
    ``widths`` fixes the width of every stage; ``grow`` (conv downsampling) tries each width doubling at every
    stage before the same width throughout."""
    if widths:
        bases, stage_counts = [tuple(widths)], [len(widths)]
    else:
        if width is not None:
            first = [width]
        else:
            first, w = [], default_width(input_shape)
            while w >= MIN_WIDTH:
                first.append(w)
                w //= 2
        stage_counts = [stages] if stages is not None else list(STAGE_CHOICES)
        bases = [(w,) for w in first]
    side = min(input_shape[1], input_shape[2])
    options = []
    for base in bases:
        for s in stage_counts:
            if len(base) == s:
                growths = [base]
            else:
                growths = ([tuple(base[0] * 2 ** i for i in range(s))] if grow else []) + [(base[0],) * s]
            for stage_widths in growths:
                for h in ([head_pool] if head_pool is not None else HEAD_POOL_CHOICES):
                    if side // 2 ** (s - 1) // h >= 1:
                        options.append(Skeleton(stage_widths, h))
    return options


def check_skeleton(template: Architecture, target, max_cores: int | None, cell=LIGHTEST_CELL) -> list[ConstraintError]:
    """The rules ``cell`` (default: the lightest) in ``template``'s skeleton breaks on ``target`` (empty: fits)."""
    net = build_network(template.with_cell(cell))
    mapping = map_network(net, target, stop_early=True, core_budget=max_cores)
    broken = list(mapping.violations)
    if not broken and max_cores is not None:
        try:
            mapping.check(max_cores)
        except ConstraintError as exc:
            broken.append(exc)
    return broken


def choose_skeletons(base: Architecture, target, width: int | None, stages: int | None, head_pool: int | None,
                     max_cores: int | None = None, heaviest=HEAVIEST_CELL, widths: tuple[int, ...] | None = None,
                     keep: int = 1, stem_twin: int | None = None,
                     width_choices: tuple[int, ...] | None = None) -> tuple[list[Architecture], dict]:
    """The template architectures with the skeletons the search uses on ``target`` (the primary one first), and a
    report of the pre-flight.

    The first ``keep`` skeletons (in order of preference) in which every cell fits, judged by the space's
    ``heaviest`` cell (default: a convolution on every pair; :data:`HEAVIEST_CHAIN` for a space of chains); when
    there is none, the first in which the lightest cell fits alone (then the hardware terms reject the cells that
    do not); :class:`SearchError` (one line) when not even the lightest cell fits any skeleton. A target without
    cores takes the first ``keep``. With ``stem_twin`` k (``--stem-pool auto``), each kept skeleton's twin behind
    a stride-k stem follows the kept ones: the same stages and head pooling, every layer k^2 times smaller, and k
    times its widths (the same convolution work; the same widths where every cell fits only those, or where the user
    fixed them), where its input is large enough and the lightest cell fits it. When no skeleton fits at full
    resolution, the stride-k stem's own skeletons (widths chosen for the pooled input) are the search's. With
    ``width_choices`` (``--width-choices``, widest first) the pre-flight chooses one skeleton at each width as it
    would for that ``width`` alone; a width at which not even the lightest cell fits is left out, or with
    ``stem_twin`` searched only behind the stride-k stem when it fits there."""
    started = time.perf_counter()

    def choose(template: Architecture) -> tuple[list[Architecture], dict]:
        if width_choices:
            return _choose_at_widths(template, target, width_choices, stages, head_pool, max_cores, heaviest, started)
        return _choose(template, target, width, stages, head_pool, max_cores, heaviest, widths, keep, started)

    try:
        chosen, report = choose(base)
    except SearchError as full_resolution:
        if stem_twin is None:
            raise
        # no full-resolution skeleton fits: the stride-2 stem's own (widths chosen for the pooled input) alone
        try:
            chosen, report = choose(replace(base, stem_pool=stem_twin))
        except (SearchError, ArchitectureError):
            raise full_resolution from None
        report["verdict"] += f"; only behind a stride-{stem_twin} stem"
        return chosen, report
    if stem_twin is None:
        return chosen, report
    twins, names = [], {template.skeleton_key for template in chosen}
    for template in chosen:
        # widths chosen by the pre-flight: k times wider first, which keeps every convolution's multiply-accumulates
        # (k^2 fewer pixels, k^2 times the channel pairs) and halves the neurons at k = 2; then the same widths.
        # The first in which every cell fits, else the first in which the lightest does.
        twin = None
        for factor in (stem_twin, 1) if width is None and widths is None and not width_choices else (1,):
            candidate, heavy, reason = _stem_twin(template, stem_twin, factor, target, max_cores, heaviest)
            if candidate is None:
                report["rejected"].append(reason)
                continue
            if twin is None or heavy:
                twin = candidate
            if heavy:  # every cell fits: no narrower twin is tried
                break
        if twin is not None and twin.skeleton_key not in names:
            names.add(twin.skeleton_key)
            twins.append(twin)
            report["skeletons"].append(skeleton_of(twin).to_dict())
    for width in width_choices or ():
        if not any(template.width == width for template in chosen):
            twins += _behind_stem_only(base, target, width, stem_twin, stages, head_pool, max_cores, heaviest,
                                       report, started)
    report["seconds"] = time.perf_counter() - started
    return chosen + twins, report


def _behind_stem_only(base: Architecture, target, width: int, stem_pool: int, stages, head_pool, max_cores, heaviest,
                      report: dict, started: float) -> list[Architecture]:
    """A ``--width-choices`` width at which not even the lightest cell fits at full resolution, chosen behind a
    stride-``stem_pool`` stem as :func:`_choose` would (its stages and head pooling for the pooled input): the
    template when it fits there (``report``'s skeletons and verdict say so), else none."""
    left_out = f"width {width}: {NO_CELL_FITS}"  # what _choose_at_widths' verdict says of the width
    try:
        templates, behind = _choose(replace(base, stem_pool=stem_pool), target, width, stages, head_pool, max_cores,
                                    heaviest, None, 1, started)
    except (SearchError, ArchitectureError):
        report["verdict"] = report["verdict"].replace(left_out, f"{left_out}, nor behind a stride-{stem_pool} stem")
        return []
    report["skeletons"] += behind["skeletons"]
    report["rejected"] += behind["rejected"]
    report["tried"] += behind["tried"]
    report["verdict"] = report["verdict"].replace(
        left_out, f"width {width}, only behind a stride-{stem_pool} stem: {behind['verdict']}")
    return templates


def _choose_at_widths(base: Architecture, target, width_choices: tuple[int, ...], stages, head_pool, max_cores,
                      heaviest, started: float) -> tuple[list[Architecture], dict]:
    """:func:`_choose` at each of ``width_choices`` (widest first): one skeleton per width, the widths at which not
    even the lightest cell fits left out (the narrowest one's :class:`SearchError` when that is every width)."""
    chosen, reports, failures = [], [], []
    for width in width_choices:
        try:
            templates, report = _choose(base, target, width, stages, head_pool, max_cores, heaviest, None, 1, started)
        except SearchError as exc:
            failures.append((width, exc))
            continue
        chosen += templates
        reports.append((width, report))
    if not chosen:
        raise failures[-1][1]
    report = {"skeleton": reports[0][1]["skeleton"],
              "skeletons": [skeleton for _, r in reports for skeleton in r["skeletons"]],
              "verdict": "; ".join(f"width {width}: {r['verdict']}" for width, r in reports)
              + "".join(f"; width {width}: {NO_CELL_FITS}" for width, _ in failures),
              "tried": sum(r["tried"] for _, r in reports),
              "rejected": [entry for _, r in reports for entry in r["rejected"]],
              "seconds": time.perf_counter() - started}
    return chosen, report


def _stem_twin(template: Architecture, stem_pool: int, factor: int, target, max_cores: int | None,
               heaviest) -> tuple[Architecture | None, bool, dict | None]:
    """``template`` behind a stride-``stem_pool`` stem with ``factor`` times its widths, whether ``heaviest`` fits
    it too, and None; or None, False and the pre-flight's record of why it cannot be (too small an input, a rule
    the lightest cell breaks)."""
    widths = tuple(w * factor for w in template.stage_widths)
    skeleton = Skeleton(widths, template.head_pool, stem_pool)
    try:
        twin = replace(template, stem_pool=stem_pool, width=widths[0],
                       widths=widths if len(set(widths)) > 1 else ())
    except ArchitectureError as exc:
        return None, False, {"skeleton": skeleton.to_dict(), "rule": None, "violation": str(exc)}
    if not target.is_hardware:
        return twin, True, None
    broken = check_skeleton(twin, target, max_cores)
    if broken:
        return None, False, {"skeleton": skeleton.to_dict(), "rule": broken[0].rule, "violation": str(broken[0])}
    return twin, not check_skeleton(twin, target, max_cores, heaviest), None


def skeleton_of(template: Architecture) -> Skeleton:
    """The macro choices of ``template``."""
    return Skeleton(template.stage_widths, template.head_pool, template.stem_pool)


def _choose(base: Architecture, target, width, stages, head_pool, max_cores, heaviest, widths, keep,
            started: float) -> tuple[list[Architecture], dict]:
    """:func:`choose_skeletons` without the stem twins."""
    options = [replace(option, stem_pool=base.stem_pool) for option in skeleton_options(
        pooled_shape(base.input_shape, base.stem_pool), width, stages, head_pool, widths, base.downsample == "conv")]
    if not options:
        raise SearchError(f"no skeleton: {stages or len(widths or ())} stages with head pooling {head_pool} shrink "
                          f"the {base.input_shape[1]}x{base.input_shape[2]} input below one pixel")
    templates, rejected = [], []
    for skeleton in options:
        try:
            even = len(set(skeleton.widths)) == 1
            templates.append((skeleton, replace(base, width=skeleton.widths[0], stages=skeleton.stages,
                                                head_pool=skeleton.head_pool,
                                                widths=() if even else skeleton.widths)))
        except ArchitectureError as exc:
            rejected.append((skeleton, None, str(exc)))
    if not target.is_hardware:
        kept = templates[:keep]
        return [t for _, t in kept], _report([s for s, _ in kept], "no hardware model", len(kept), rejected, started)
    light_fits, fitting, crowded = [], [], set()
    for tried, (skeleton, template) in enumerate(templates, start=1):
        family = (skeleton.widths[0], skeleton.widths[-1] > skeleton.widths[0])  # first width; growing or not
        if family in crowded and light_fits:
            continue  # heavy cells cannot fit, and a fallback for light cells is already known
        broken = check_skeleton(template, target, max_cores, LIGHTEST_CELL)
        if broken:
            rejected.append((skeleton, broken[0].rule, str(broken[0])))
            continue
        light_fits.append((skeleton, template))
        if family in crowded:
            continue
        heavy = check_skeleton(template, target, max_cores, heaviest)
        if not heavy:
            fitting.append((skeleton, template))
            if len(fitting) == keep:
                break
        elif heavy[0].rule != "fanin":
            # cores, memory or fan-out: the full-resolution stage decides them, and more stages or pooling only
            # add populations; at this width heavy cells cannot fit
            crowded.add(family)
    if fitting:
        return [t for _, t in fitting], _report([s for s, _ in fitting], "every cell fits", tried, rejected, started)
    if light_fits:
        skeleton, template = light_fits[0]
        return [template], _report([skeleton], "the lightest cell fits; heavier cells may not", len(templates),
                                   rejected, started)
    skeleton, rule, violation = rejected[-1]  # the least demanding skeleton tried
    advice = ADVICE.get(rule, "choose a larger target")
    raise SearchError(f"no skeleton fits {target.name} (tried {len(rejected)} in "
                      f"{time.perf_counter() - started:.1f} s); even the lightest cell with {skeleton.describe()} "
                      f"breaks {violation}; {advice}")


def _report(skeletons: list[Skeleton], verdict: str, tried: int, rejected: list, started: float) -> dict:
    return {"skeleton": skeletons[0].to_dict(), "skeletons": [s.to_dict() for s in skeletons], "verdict": verdict,
            "tried": tried, "rejected": [{"skeleton": s.to_dict(), "rule": r, "violation": v} for s, r, v in rejected],
            "seconds": time.perf_counter() - started}


def heaviest_cell_of(template, chains_only: bool = False):
    """The heaviest cell a template's search may score: every pair a convolution (a chain of them with
    ``chains_only``), or every pair a linear edge in a dense network."""
    if getattr(template, "input_channels", None) is not None:  # a DenseArchitecture
        return HEAVIEST_DENSE_CELL
    return HEAVIEST_CHAIN if chains_only else HEAVIEST_CELL


def choose_dense_width(base, target, width: int | None) -> tuple[list, dict]:
    """The pre-flight of a dense network (hwnas.arch.dense) on a dense core: the widest of ``width`` (given) or
    :data:`DENSE_WIDTHS` at which the heaviest cell fits the core (else the lightest, then the hardware terms
    reject the cells that do not); :class:`SearchError` (one line) when not even the lightest cell fits."""
    from ..hw_models.mapping import map_dense_core

    started = time.perf_counter()
    rejected, light = [], None
    for tried, w in enumerate([width] if width else DENSE_WIDTHS, start=1):
        template = replace(base, width=w)
        skeleton = Skeleton((w,), 1)
        if not target.is_hardware:
            return [template], _report([skeleton], "no hardware model", tried, rejected, started)
        broken = map_dense_core(build_network(template.with_cell(LIGHTEST_DENSE_CELL)), target).violations
        if broken:
            rejected.append((skeleton, broken[0].rule, str(broken[0])))
            continue
        light = light or (skeleton, template)
        heavy = map_dense_core(build_network(template.with_cell(HEAVIEST_DENSE_CELL)), target).violations
        if not heavy:
            return [template], _report([skeleton], "every cell fits", tried, rejected, started)
        rejected.append((skeleton, heavy[0].rule, "the heaviest cell breaks " + str(heavy[0])))
    if light:
        return [light[1]], _report([light[0]], "the lightest cell fits; heavier cells may not", len(rejected),
                                   rejected, started)
    skeleton, rule, violation = rejected[-1]
    advice = "read the input in fewer channels (a -rows dataset has up to 16)" if rule == "inputs" else \
        "lower --width" if rule in ("hidden-neurons", "input-neurons", "output-neurons") else "choose a larger target"
    raise SearchError(f"no width fits {target.name}: even the lightest cell at width {skeleton.widths[0]} breaks "
                      f"{violation}; {advice}")
