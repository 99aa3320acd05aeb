"""NeuroBench's metrics for hwnas networks, under NeuroBench's names, and a NeuroBench model that runs an hwnas
network inside NeuroBench's own harness.

NeuroBench (Yik et al., "The neurobench framework for benchmarking neuromorphic computing algorithms and
systems", Nature Communications 16, 1545, 2025; the ``neurobench`` package 2.x) defines, per model:

- ``footprint``: bytes of the model's parameters and buffers (as the framework stores them: float32 here);
- ``parameter_count``: number of parameters;
- ``connection_sparsity``: share of zero weights among the weights of the connection layers (Linear, Conv);
- ``activation_sparsity``: share of zero activations over all neuron layers, timesteps and samples;
- ``synaptic_operations``: per sample, ``effective_acs`` (accumulates: each non-zero *binary* input to a
  connection layer times its non-zero fan-out), ``effective_macs`` (the same for non-binary input, e.g. an
  analog image).

hwnas counts on the network as the chip runs it: every connection is synapses, so a skip (identity) or pooling
connection causes synaptic operations too, and pooling folded into a convolution costs a spike's fan-out through
the pooled position. NeuroBench's harness, run on a PyTorch model, sees only Linear and Conv layers and pooled
(non-binary) inputs. On a network of convolutions and linear layers only, the two agree exactly (tested with the
``neurobench`` package, ``tests/test_metrics.py``). Weights are counted as deployed (quantised when trained so).
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .sim.activity import ActivityStats
from .sim.graph import INPUT
from .sim.network import SpikingNetwork
from .sim.ops import AvgPoolThen
from .sim.quantize import deployed_weight, fake_quantize_bias

NAMES = ("footprint", "parameter_count", "connection_sparsity", "activation_sparsity", "synaptic_operations")


def deployed_layers(network: SpikingNetwork) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor | None]]:
    """Per weighted connection (module key): its Conv2d or Linear layer, the weight and the bias as deployed."""
    layers = {}
    for key, synapse in network.synapses.items():
        inner = synapse.inner if isinstance(synapse, AvgPoolThen) else synapse
        layer = getattr(inner, "conv", None) or getattr(inner, "linear", None)
        if layer is None:
            continue
        weight_format = getattr(inner, "weight_format", None)
        bias = layer.bias.detach().cpu() if layer.bias is not None else None
        if bias is not None and weight_format is not None:
            bias = fake_quantize_bias(bias)
        layers[key] = (layer, deployed_weight(layer.weight, weight_format), bias)
    return layers


def deployed_network(network: SpikingNetwork) -> SpikingNetwork:
    """The network as deployed, on the CPU: batch-norm folded (a copy when it was not), untouched otherwise."""
    tensors = itertools.chain(network.parameters(), network.buffers())
    if network.is_folded and next(tensors, torch.empty(0)).device.type == "cpu":
        return network
    copied = copy.deepcopy(network).cpu()
    if not copied.is_folded:
        copied.fold_batchnorm()
    return copied


def input_is_binary(inputs: torch.Tensor) -> bool:
    """True when every input value is 0 or 1 (spikes: NeuroBench counts accumulates, not multiply-accumulates)."""
    return bool(((inputs == 0) | (inputs == 1)).all())


def encoded_input_is_binary(x: torch.Tensor, kind: str, encoding: str) -> bool:
    """Whether the network input made from data ``x`` is spikes: rate-coded images are; analog images presented
    directly and event frames holding counts above 1 are not."""
    return (kind != "frames" and encoding == "rate") or input_is_binary(x)


def neurobench_metrics(network: SpikingNetwork, activity: ActivityStats, binary_input: bool) -> dict:
    """NeuroBench's metrics of ``network`` from the activity of a run (per sample; see the module docstring for
    what hwnas counts as a synapse). ``binary_input``: the run's input was spikes (0/1). Footprint, parameters and
    connection sparsity are those of the deployed network (batch-norm folded)."""
    deployed = deployed_network(network)
    weights = [weight for _, weight, _ in deployed_layers(deployed).values()]
    total_weights = sum(int(w.numel()) for w in weights)
    zero_weights = sum(int((w == 0).sum()) for w in weights)
    tensors = list(deployed.parameters()) + list(deployed.buffers())
    table = activity.per_sample()
    input_synops = sum(row["synops"] for row in table.values() if row["kind"] == "input")
    spiking_synops = sum(row["synops"] for row in table.values() if row["kind"] != "input")
    totals = activity.totals_per_sample()
    return {
        "footprint": sum(int(t.numel()) * t.element_size() for t in tensors),
        "parameter_count": sum(int(p.numel()) for p in deployed.parameters()),
        "connection_sparsity": zero_weights / total_weights if total_weights else 0.0,
        "activation_sparsity": 1.0 - totals["firing_rate"],
        "synaptic_operations": {
            "effective_acs": spiking_synops + (input_synops if binary_input else 0.0),
            "effective_macs": 0.0 if binary_input else input_synops,
        },
    }


def summary_line(metrics: dict) -> str:
    """NeuroBench's metrics in one line for the command line."""
    ops = metrics["synaptic_operations"]
    return (f"NeuroBench: footprint {metrics['footprint'] / 1024:.1f} KiB ({metrics['parameter_count']} parameters), "
            f"connection sparsity {metrics['connection_sparsity']:.3f}, activation sparsity "
            f"{metrics['activation_sparsity']:.3f}, {ops['effective_acs']:.0f} ACs and {ops['effective_macs']:.0f} "
            "MACs per sample")


class _SpikeProbe(nn.Module):
    """Identity on one population's spikes of one step, so that NeuroBench's activation hooks see them."""

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return spikes


class NeuroBenchView(nn.Module):
    """An hwnas network as NeuroBench's harness can measure it: per weighted connection a plain Conv2d or Linear
    holding the deployed weights, per population a probe; :meth:`replay` passes a run's recorded spikes through
    them, step by step, in the order the simulator feeds them."""

    def __init__(self, network: SpikingNetwork) -> None:
        super().__init__()
        network = deployed_network(network)
        self.network = [network]  # a list: not a submodule, so NeuroBench counts only the views below
        self.connections = nn.ModuleDict()
        for key, (layer, weight, bias) in deployed_layers(network).items():
            if isinstance(layer, nn.Conv2d):
                view = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, padding=layer.padding,
                                 bias=bias is not None)
            else:
                view = nn.Linear(layer.in_features, layer.out_features, bias=bias is not None)
            with torch.no_grad():
                view.weight.copy_(weight)
                if bias is not None:
                    view.bias.copy_(bias)
            self.connections[key] = view
        self.probes = nn.ModuleDict({name.replace(".", "_"): _SpikeProbe() for name in network.populations})

    def replay(self, inputs: torch.Tensor, timing: str | None = None) -> torch.Tensor:
        """Run time-major ``inputs`` (T, B, ...) in the network, pass every step's spikes through the views and
        probes, and return the logits."""
        network = self.network[0]
        out = network(inputs, record=True, timing=timing)
        steps, batch = out.codes[network.output].shape[:2]
        padding = inputs.new_zeros((steps - inputs.shape[0], *inputs.shape[1:]))
        spikes = {INPUT: torch.cat([inputs, padding])}
        for name, codes in out.codes.items():
            spikes[name] = codes.reshape(steps, batch, *network.populations[name].shape)
        for conn in network.active_connections():
            if conn.module_key not in self.connections:  # no weights: NeuroBench sees no layer there
                continue
            view, synapse = self.connections[conn.module_key], network.synapses[conn.module_key]
            for t in range(steps):
                source = spikes[conn.src][t]
                if isinstance(synapse, AvgPoolThen):
                    source = F.avg_pool2d(source, synapse.kernel_size)
                view(source.flatten(1) if isinstance(view, nn.Linear) else source)
        for name in network.populations:
            for t in range(steps):
                self.probes[name.replace(".", "_")](spikes[name][t])
        return out.logits


def neurobench_model(network: SpikingNetwork | nn.Module, timing: str | None = None):
    """A ``neurobench.models.NeuroBenchModel`` of an hwnas network (or of hwnas' trained classifier), for
    NeuroBench's ``Benchmark``: data batches are (B, T, *input_shape) as NeuroBench specifies, predictions the
    class indices. Needs the ``neurobench`` package."""
    try:
        from neurobench.models import NeuroBenchModel
    except ImportError:
        from .errors import OptionError

        raise OptionError("neurobench_model needs the neurobench package (pip install neurobench)") from None
    network = getattr(network, "network", network)
    if not isinstance(network, SpikingNetwork):
        raise TypeError(f"expected an hwnas SpikingNetwork, got {type(network).__name__}")

    class HwnasNeuroBenchModel(NeuroBenchModel):
        """An hwnas network measured by NeuroBench (see :class:`hwnas.metrics.NeuroBenchView`)."""

        def __init__(self) -> None:
            super().__init__()
            self.view = NeuroBenchView(network)
            self.view.eval()
            self.add_activation_module(_SpikeProbe)

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self.view.replay(batch.transpose(0, 1).float(), timing).argmax(1)

        def __net__(self) -> nn.Module:
            return self.view

    return HwnasNeuroBenchModel()


__all__ = ["NAMES", "NeuroBenchView", "deployed_layers", "deployed_network", "encoded_input_is_binary",
           "input_is_binary", "neurobench_metrics", "neurobench_model", "summary_line"]
