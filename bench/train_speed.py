"""Training speed (issue 32): seconds per training batch (forward over T + latency steps, BPTT backward, Adam
step) and per image, against the same batch's convolutions alone (forward and backward, replayed in isolation
at the shapes the training used, in the standard layout and channels_last: the lower bound of a training step),
in float arithmetic (with batch-norm) and in Loihi's fixed-point arithmetic (quantisation-aware, batch-norm
folded). Target: at most 2x its convolutions on the CPU and on a GPU.

Default: the winner of issue 30's MNIST search (``0-1:conv3x3 0-2:conv3x3 0-3:conv3x3 1-2:skip 1-3:zero 2-3:skip``), width
8, two stages, 1x28x28 inputs (synthetic intensities: speed does not depend on them), T 8, batch 64, loihi2's
pipelined timing, one thread. On the CPU each step is also timed with torch's operations in place of hwnas' fused
kernels (:mod:`hwnas.sim.fused`) and in the standard layout instead of channels_last (:mod:`hwnas.sim.layout`), each
pair alternated in one process. ``--profile`` adds the operators that take the
most time in a float step.

    .venv/bin/python bench/train_speed.py [--device cuda] [--threads 2] [--profile]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.arch.builder import build_network  # noqa: E402
from hwnas.arch.genotype import Architecture, parse_cell_key  # noqa: E402
from hwnas.data.splits import encode_batch  # noqa: E402
from hwnas.sim.fused import plain_operations  # noqa: E402
from hwnas.sim.layout import standard_layout  # noqa: E402
from hwnas.sim.quantize import WeightFormat  # noqa: E402
from hwnas.sim.seeding import build_seeded, resolve_device  # noqa: E402

WINNER = "0-1:conv3x3 0-2:conv3x3 0-3:conv3x3 1-2:skip 1-3:zero 2-3:skip"
EPOCH_IMAGES = 5600  # issue 30's training split (8,000 digits less validation and test)


def median_seconds(run, repeats: int, device: torch.device, warm: bool = True) -> float:
    """Median wall time of ``run()`` (``repeats`` calls, one when 0) after one warm-up call unless ``warm`` is
    False (CUDA synchronised)."""
    if warm:
        run()
    times = []
    for _ in range(max(repeats, 1)):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def alternated(run, other, repeats: int, device: torch.device) -> tuple[float, float, float]:
    """Median seconds of ``run()`` as hwnas runs it and inside the context ``other()`` (torch's operations in place
    of the fused kernels, or the standard layout), the two alternated in this process, and the median of the
    paired ratios (hwnas' / other): a comparison that the shared machine's drifting speed leaves alone."""
    run()
    with other():
        run()
    own_times, other_times = [], []
    for _ in range(repeats):
        own_times.append(median_seconds(run, 0, device, warm=False))
        with other():
            other_times.append(median_seconds(run, 0, device, warm=False))
    ratios = sorted(a / b for a, b in zip(own_times, other_times))
    middle = len(ratios) // 2
    return sorted(own_times)[middle], sorted(other_times)[middle], ratios[middle]


def compared(run, repeats: int, device: torch.device) -> tuple[tuple, tuple | None]:
    """:func:`alternated` against torch's operations and against the standard layout (on the CPU; on a GPU hwnas
    runs torch's operations in the standard layout, and both comparisons are the same run)."""
    if device.type != "cpu":
        seconds = median_seconds(run, repeats, device)
        return (seconds, seconds, 1.0), None
    return alternated(run, plain_operations, repeats, device), alternated(run, standard_layout, repeats, device)


def training_step(net, optimizer, x, y, arch, generator):
    """One batch of ``hwnas train``'s loop: encode, forward, cross-entropy, backward, Adam step."""
    def run() -> None:
        batch = encode_batch(x, "static", arch.timesteps, arch.encoding, generator).to(y.device)
        loss = F.cross_entropy(net(batch).logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return run


def recorded_convolutions(net, step) -> list[tuple[tuple, torch.nn.Conv2d]]:
    """(input shape, module) of every ``nn.Conv2d`` call in one training step."""
    calls = []
    hooks = [module.register_forward_hook(lambda m, inputs, _: calls.append((tuple(inputs[0].shape), m)))
             for module in net.modules() if isinstance(module, torch.nn.Conv2d)]
    step()
    for hook in hooks:
        hook.remove()
    return calls


def convolutions_alone(calls, device: torch.device, layout) -> callable:
    """Replay the calls' convolutions, forward and backward (input and weight gradients), in ``layout``."""
    generator = torch.Generator().manual_seed(0)
    prepared = []
    for shape, module in calls:
        x = (torch.rand(shape, generator=generator) < 0.2).float().to(device).contiguous(memory_format=layout)
        weight = module.weight.detach().clone().contiguous(memory_format=layout).requires_grad_(True)
        prepared.append((x.requires_grad_(True), weight, module.stride, module.padding))

    def run() -> None:
        for x, weight, stride, padding in prepared:
            out = F.conv2d(x, weight, None, stride, padding)
            out.backward(torch.ones_like(out))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", default=WINNER)
    parser.add_argument("--input-shape", default="1,28,28")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="print the operators of a float step by time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    shape = tuple(int(d) for d in args.input_shape.split(","))
    arch = Architecture(cell=parse_cell_key(args.cell), input_shape=shape, num_classes=10, width=args.width,
                        timesteps=args.timesteps, timing="pipelined", stages=args.stages)
    net = build_seeded(lambda: build_network(arch), 0, arch.key).to(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((args.batch, *shape), generator=generator)
    y = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    net.pool_batchnorm_steps()
    step = training_step(net, optimizer, x, y, arch, generator)
    calls = recorded_convolutions(net, step)
    lower_bound = {name: median_seconds(convolutions_alone(calls, device, layout), args.repeats, device)
                   for name, layout in (("standard", torch.contiguous_format), ("channels_last", torch.channels_last))}
    best_layout = min(lower_bound, key=lower_bound.get)
    rows = [("float (batch-norm)", *compared(step, args.repeats, device))]
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            step()
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        profile_table = prof.key_averages().table(sort_by=sort, row_limit=15)
    net.eval()
    net.fold_batchnorm()
    fmt = WeightFormat(bits=8)
    net.set_arithmetic("loihi", fmt, True)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
    rows.append(("loihi fixed point (QAT)", *compared(training_step(net, optimizer, x, y, arch, generator),
                                                      args.repeats, device)))
    print(f"{arch.key}, width {arch.width}, {arch.stages} stages, input {list(shape)}, T {arch.timesteps} + "
          f"{net.latency_steps} latency steps, batch {args.batch}, {len(calls)} convolution calls per step; "
          f"{device}, {args.threads} thread(s)")
    print(f"its convolutions alone (forward + backward): {1000 * lower_bound['standard']:.1f} ms standard layout, "
          f"{1000 * lower_bound['channels_last']:.1f} ms channels_last")
    for label, (seconds, plain, ratio), layouts in rows:
        per_image = seconds / args.batch
        print(f"{label:26s} {1000 * seconds:8.1f} ms per batch, {1000 * per_image:6.2f} ms per image "
              f"(~{per_image * EPOCH_IMAGES:.0f} s per epoch of {EPOCH_IMAGES} images); "
              f"{seconds / lower_bound[best_layout]:.2f}x its convolutions ({best_layout}; target <= 2)")
        if device.type == "cpu":
            print(f"{'':26s} with torch's operations instead of the fused kernels {1000 * plain:.1f} ms; "
                  f"fused / torch's = {ratio:.2f} (median of {args.repeats} alternated pairs)")
            _, standard, ratio = layouts
            print(f"{'':26s} in the standard layout instead of channels_last {1000 * standard:.1f} ms; "
                  f"channels_last / standard = {ratio:.2f} (median of {args.repeats} alternated pairs)")
    print(f"{time.strftime('%Y-%m-%d')}, {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    if args.profile:
        print(profile_table)


if __name__ == "__main__":
    main()
