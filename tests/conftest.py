"""Shared fixtures: small architectures and a fast search configuration."""

from __future__ import annotations

import pytest
import torch

from hwnas.arch.genotype import Architecture


def make_cell(spec: str):
    """Cell from a compact text, e.g. '0-1:conv3x3 0-2:zero ...' (the canonical key format)."""
    from hwnas.arch.genotype import parse_cell_key

    return parse_cell_key(spec)


CHAIN = "0-1:conv3x3 0-2:zero 0-3:zero 1-2:conv3x3 1-3:zero 2-3:conv3x3"
FEEDBACK = "0-1:conv3x3 0-2:skip 0-3:zero 1-2:conv3x3 1-3:conv3x3< 2-3:conv3x3"  # node 3 feeds node 1 back


# Tests that take two seconds or more (trainings, Lava, Ray, whole searches; measured with --durations on the 2-core
# VM, 2026-12-06): `make test-fast` (pytest -m "not slow") leaves them out, about 40 s for the rest. The golden
# numbers stay in the fast lane: they guard every refactor.
SLOW_TESTS = frozenset({
    "tests/test_xylo_flow.py::test_hwnas_run_on_xylo_ends_with_the_trained_model_equal_to_the_core",
    "tests/test_xylo_flow.py::test_the_python_api_runs_the_xylo_flow_in_memory",
    "tests/test_api.py::test_search_train_export_on_a_tonic_style_dataset_in_memory",
    "tests/test_batchnorm.py::test_trained_network_computes_the_same_in_training_and_evaluation",
    "tests/test_budget.py::test_a_budget_trains_on_a_recorded_share_that_repeats_the_search",
    "tests/test_budget.py::test_the_estimate_counts_the_prune_rounds_at_most",
    "tests/test_budget.py::test_the_estimate_leaves_the_result_as_it_is",
    "tests/test_cli.py::test_estimate_prints_per_layer_table",
    "tests/test_cli.py::test_search_command_writes_run_folder_and_prints_winner",
    "tests/test_compress.py::test_an_untrained_compression_changes_nothing",
    "tests/test_compress.py::test_compress_cli_writes_a_run_that_lava_computes_as_the_twin",
    "tests/test_compress.py::test_the_same_seed_compresses_to_the_same_network",
    "tests/test_distributed.py::test_a_cuda_device_this_machine_lacks_is_refused_in_one_line",
    "tests/test_distributed.py::test_a_search_on_two_ray_workers_gives_the_serial_result",
    "tests/test_distributed.py::test_ray_is_imported_only_for_workers",
    "tests/test_distributed.py::test_the_run_records_its_device_option_and_training_can_override_it",
    "tests/test_evolution.py::test_evolution_search_end_to_end_and_resume",
    "tests/test_evolution.py::test_supernet_training_resumes_to_the_same_weights",
    "tests/test_interop.py::test_snntorch_reads_the_portable_export_and_computes_the_same_spikes",
    "tests/test_lava.py::test_a_trained_run_computes_what_lava_fixed_point_computes",
    "tests/test_lava.py::test_connections_with_bits_of_their_own_compute_in_lava_what_the_twin_and_the_trained_net_compute",
    "tests/test_lava.py::test_deploy_lava_cli_prints_identical_layers_and_saves_npz",
    "tests/test_lava.py::test_lava_float_and_fixed_reproduce_hwnas_exactly",
    "tests/test_lava.py::test_netx_export_loads_in_lava_and_matches_hwnas_integer_simulation",
    "tests/test_lava.py::test_validate_cli_writes_json_and_plot",
    "tests/test_onnx.py::test_export_command_onnx",
    "tests/test_onnx.py::test_onnx_output_spikes_equal_hwnas",
    "tests/test_proxy_check.py::test_proxy_check_cli_reports_every_proxy_and_resumes_without_retraining",
    "tests/test_reliability.py::test_fuzz_hostile_options",
    "tests/test_reliability.py::test_hostile_nir_values_are_named",
    "tests/test_reliability.py::test_the_search_result_does_not_depend_on_the_machines_threads",
    "tests/test_reliability.py::test_two_searches_into_one_folder_at_once",
    "tests/test_scale.py::test_nmnist_search_returns_a_feasible_winner_without_dead_populations",
    "tests/test_scale.py::test_preflight_fits_a_skeleton_to_loihi2_at_benchmark_shapes",
    "tests/test_scale.py::test_preflight_with_conv_downsampling_tries_doubling_widths_first",
    "tests/test_scale.py::test_skeletons_are_searched_with_the_cells",
    "tests/test_scale.py::test_widths_per_stage_search_with_conv_downsampling",
    "tests/test_scores.py::test_rate_calibration_brings_every_population_to_the_target_rate",
    "tests/test_search.py::test_a_checkpoint_from_before_the_screening_resumes_without_it",
    "tests/test_search.py::test_a_continued_training_starts_as_a_short_training_and_keeps_its_best_epoch",
    "tests/test_search.py::test_a_whole_epoch_screening_is_the_first_rungs_training",
    "tests/test_search.py::test_interrupted_prune_search_resumes_to_the_same_cell",
    "tests/test_search.py::test_refine_after_prune_draws_its_pool_from_the_whole_space",
    "tests/test_search.py::test_refine_halves_the_field_and_lets_short_training_choose",
    "tests/test_search.py::test_the_screening_rung_chooses_the_refined_candidates_by_a_brief_training",
    "tests/test_imported.py::test_an_imported_run_equals_lava_fixed_point_layer_by_layer",
    "tests/test_imported.py::test_an_snntorch_network_trained_from_digits_exports_to_netx_and_runs_in_lava",
    "tests/test_train.py::test_estimate_uses_trained_weights_when_present",
    "tests/test_train.py::test_train_writes_a_model_that_reloads",
})


# Tests that run Lava's Loihi 2 model (besides every test of tests/test_lava.py): `pytest -m "not lava"` leaves them
# out where Lava is not installed or too slow to start.
LAVA_TESTS = frozenset({
    "tests/test_api.py::test_search_train_export_on_a_tonic_style_dataset_in_memory",
    "tests/test_compress.py::test_compress_cli_writes_a_run_that_lava_computes_as_the_twin",
    "tests/test_imported.py::test_an_imported_run_equals_lava_fixed_point_layer_by_layer",
    "tests/test_imported.py::test_an_snntorch_network_trained_from_digits_exports_to_netx_and_runs_in_lava",
    "tests/test_interop.py::test_conv_then_sum_pool_then_threshold_runs_in_hwnas_and_in_lava",
    "tests/test_interop.py::test_an_snntorch_graph_runs_in_hwnas_as_snntorch_runs_it",
    "tests/test_interop.py::test_integrate_and_fire_neurons_integrate_without_leak",
    "tests/test_interop.py::test_a_norse_graph_runs_in_hwnas_as_norse_runs_it",
    "tests/test_reliability.py::test_a_graph_without_weights_runs_in_every_backend",
})


def pytest_collection_modifyitems(items):
    for item in items:
        test = item.nodeid.split("[")[0]
        if test in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if test in LAVA_TESTS or test.startswith("tests/test_lava.py::"):
            item.add_marker(pytest.mark.lava)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


def small_arch(cell: str = CHAIN, **overrides) -> Architecture:
    """An 8x8 single-channel architecture with 4 channels, for fast tests."""
    values = dict(cell=make_cell(cell), input_shape=(1, 8, 8), num_classes=10, width=4, timesteps=4,
                  timing="pipelined")
    values.update(overrides)
    return Architecture(**values)


FAST_SEARCH = dict(timesteps=4, width=4, batch_size=16, repeats=1, refine=0)  # score-only: no trainings


def per_step_cnn(seed: int = 0, size: int = 18, classes: int = 4, channels: int = 4, scale: float = 1.0):
    """A NIR graph shaped as the NIR paper's N-MNIST CNN (a sinabs export: strided 5x5 convolution, IF neurons,
    sum pooling before the next weights, Flatten, Affine with zero bias), small: 2 x ``size`` x ``size`` input,
    ``channels`` channels, ``classes`` outputs; per-step units (r 1, threshold 1, no dt recorded), random weights
    that keep every layer firing on sparse events."""
    import nir
    import numpy as np

    rng = np.random.default_rng(seed)

    def weights(*shape):
        fan_in = int(np.prod(shape[1:]))
        return (rng.normal(0.6, 1.0, shape) * scale * 2.5 / np.sqrt(fan_in)).astype(np.float32)

    def neuron(*shape):
        return nir.IF(r=np.ones(shape, np.float32), v_threshold=np.ones(shape, np.float32))

    first = (size + 2 - 5) // 2 + 1
    pooled, pooled2 = first // 2, first // 4
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, size, size])}),
        "0": nir.Conv2d(input_shape=(size, size), weight=weights(channels, 2, 5, 5), stride=2, padding=1,
                        dilation=1, groups=1, bias=np.zeros(channels, np.float32)),
        "1": neuron(channels, first, first),
        "2": nir.Conv2d(input_shape=(first, first), weight=weights(channels, channels, 3, 3), stride=1, padding=1,
                        dilation=1, groups=1, bias=np.zeros(channels, np.float32)),
        "3": neuron(channels, first, first),
        "4": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "5": nir.Conv2d(input_shape=(pooled, pooled), weight=weights(channels, channels, 3, 3), stride=1, padding=1,
                        dilation=1, groups=1, bias=np.zeros(channels, np.float32)),
        "6": neuron(channels, pooled, pooled),
        "7": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "8": nir.Flatten(input_type={"input": np.array([channels, pooled2, pooled2])}, start_dim=0, end_dim=-1),
        "9": nir.Affine(weight=weights(12, channels * pooled2 * pooled2), bias=np.zeros(12, np.float32)),
        "10": neuron(12),
        "11": nir.Affine(weight=weights(classes, 12), bias=np.zeros(classes, np.float32)),
        "12": neuron(classes),
        "output": nir.Output(output_type={"output": np.array([classes])}),
    }
    order = ["input", *map(str, range(13)), "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])))


def write_nmnist_file(path, events):
    """N-MNIST's 40-bit format: x, y, polarity bit + 23-bit timestamp (big-endian bytes)."""
    raw = bytearray()
    for x, y, p, ts in events:
        raw += bytes([x, y, (p << 7) | ((ts >> 16) & 0x7F), (ts >> 8) & 0xFF, ts & 0xFF])
    path.write_bytes(bytes(raw))


def write_aedat4_file(path, events, width: int = 128, height: int = 128):
    """A minimal AEDAT 4.0 file (the format of CIFAR10-DVS's recordings; iniVation's DV software usually compresses
    its packets and appends a table of them, which readers may do without): the magic line, an uncompressed IOHeader
    flatbuffer whose XML description declares one event stream of ``width`` x ``height``, then one size-prefixed
    EventPacket flatbuffer ("EVTS") holding ``events``: (t in microseconds, x, y, on)."""
    import struct

    description = (f'<dv version="2.0"><node name="outInfo" path="/mainModule/output/"><node name="0" '
                   f'path="/mainModule/output/0/"><attr key="compression" type="string">NONE</attr>'
                   f'<attr key="typeIdentifier" type="string">EVTS</attr><node name="info" '
                   f'path="/mainModule/output/0/info/"><attr key="sizeX" type="int">{width}</attr>'
                   f'<attr key="sizeY" type="int">{height}</attr></node></node></node></dv>').encode()
    # IOHeader: root offset, "IOHE", vtable (3 fields: only the description present), table, string
    header = struct.pack("<I4s", 20, b"IOHE") + struct.pack("<HHHHH", 10, 8, 0, 0, 4) + b"\0\0"
    header += struct.pack("<iI", 20 - 8, 4) + struct.pack("<I", len(description)) + description + b"\0"
    # EventPacket (size-prefixed): size, root offset, "EVTS", vtable (1 field), table, vector of 16-byte structs
    # (t int64, x int16, y int16, on bool, 3 bytes of padding) starting 8-byte aligned
    elements = b"".join(struct.pack("<qhh?3x", t, x, y, bool(on)) for t, x, y, on in events)
    packet = struct.pack("<I4s", 16, b"EVTS") + struct.pack("<HHH", 6, 8, 4) + b"\0\0"
    packet += struct.pack("<iI", 20 - 12, 4) + struct.pack("<I", len(events)) + elements
    packet = struct.pack("<I", len(packet)) + packet
    path.write_bytes(b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header
                     + struct.pack("<iI", 0, len(packet)) + packet)


def write_banded_nmnist(root, per_class: int = 12, test_per_class: int = 4, classes: int = 3, events: int = 300):
    """N-MNIST-format recordings that a small network learns in a few epochs: digit d's events fall in the
    d-th vertical band of the 34 x 34 sensor (``classes`` bands)."""
    import numpy as np

    rng = np.random.default_rng(0)
    band = 34 // classes
    for split, count in (("Train", per_class), ("Test", test_per_class)):
        for digit in range(classes):
            folder = root / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True)
            for k in range(count):
                stamps = np.sort(rng.integers(0, 300_000, events))
                write_nmnist_file(folder / f"{k:05d}.bin", [
                    (int(rng.integers(digit * band, digit * band + band)), int(rng.integers(0, 34)),
                     int(rng.integers(0, 2)), int(t)) for t in stamps])


SMALL_SEARCH = ["--strategy", "random", "--candidates", "2", "--timesteps", "4", "--width", "4", "--batch-size", "16",
                "--repeats", "1", "--refine", "0", "--quiet"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny trained and exported run folder for the whole session (a 2-cell random search on digits, 1 float
    + 1 QAT epoch, NIR): tests that change it copy it first, or write into a subfolder of their own."""
    from hwnas.cli import main

    out = tmp_path_factory.mktemp("shared") / "run"
    assert main(["search", *SMALL_SEARCH, "--out", str(out)]) == 0
    assert main(["train", str(out), "--epochs", "1", "--qat-epochs", "1", "--quiet"]) == 0
    assert main(["export", str(out)]) == 0
    return out
