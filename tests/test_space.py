import json

import numpy as np
import pytest
from conftest import CHAIN, FEEDBACK, small_arch

from hwnas.arch.genotype import Architecture, canonical_cell, cell_key, live_nodes, parse_cell_key
from hwnas.errors import ArchitectureError
from hwnas.nas.space import SearchSpace


def test_architecture_json_round_trip(tmp_path):
    arch = small_arch(FEEDBACK, downsample="avgpool", encoding="direct")
    arch.save(tmp_path / "a.json")
    again = Architecture.load(tmp_path / "a.json")
    assert again == arch
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["cell_key"] == FEEDBACK
    assert data["cell"][4] == {"pair": [1, 3], "op": "conv3x3", "direction": "backward"}


def test_space_size_and_validity():
    space = SearchSpace()
    cells = space.enumerate()
    # 3 choices on each pair (0, j), 5 on pairs (i, j) with i >= 1: 3^3 * 5^3 combinations, minus those whose
    # output cannot be reached through forward non-zero edges, counted once per canonical cell
    assert len(cells) == space.size() == 898
    assert len({cell_key(c) for c in cells}) == len(cells)
    assert all(space.is_valid(c) and canonical_cell(c) == c for c in cells)
    forward_only = SearchSpace(allow_backward=False)
    assert all(not e.backward for c in forward_only.enumerate() for e in c)
    assert forward_only.size() == sum(all(not e.backward for e in c) for c in cells)


def test_sampling_is_seeded_and_mutation_changes_one_pair():
    space = SearchSpace()
    a = [cell_key(space.sample(np.random.default_rng(3))) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    cell = space.sample(rng)
    for _ in range(20):
        new = space.mutate(cell, rng)
        assert space.is_valid(new) and canonical_cell(new) == new and new != cell
        assert sum(x != y for x, y in zip(cell, new)) >= 1
        cell = new


@pytest.mark.parametrize("spec,message", [
    ("0-1:zero 0-2:zero 0-3:zero 1-2:conv3x3 1-3:conv3x3 2-3:conv3x3", "not reachable"),
    ("0-1:conv3x3< 0-2:zero 0-3:zero 1-2:zero 1-3:zero 2-3:zero", "node 0"),
    ("0-1:conv5x5 0-2:zero 0-3:zero 1-2:zero 1-3:zero 2-3:zero", "unknown op"),
    ("0-1:conv3x3 0-2:zero 0-3:zero 1-2:zero 1-3:conv3x3", "exactly one edge on pair (2, 3)"),
])
def test_invalid_cells_are_rejected_with_reason(spec, message):
    with pytest.raises(ArchitectureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cell_key(spec)


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ('{"cell": []}', "missing field 'input_shape'"),
    ('[1, 2]', "must be a JSON object"),
])
def test_malformed_architecture_files(tmp_path, content, message):
    path = tmp_path / "architecture.json"
    path.write_text(content)
    with pytest.raises(ArchitectureError, match=message):
        Architecture.load(path)


def test_architecture_field_errors():
    data = small_arch(CHAIN).to_dict()
    data["timing"] = "instant"
    with pytest.raises(ArchitectureError, match="timing 'instant'"):
        Architecture.from_dict(data)
    data = small_arch(CHAIN).to_dict()
    data["widht"] = 3
    with pytest.raises(ArchitectureError, match="unknown field 'widht'"):
        Architecture.from_dict(data)


def test_canonical_cells_drop_what_cannot_reach_the_output():
    # the old digits default winner: nodes 1 and 2 only receive feedback and feed each other
    winner = parse_cell_key("0-1:zero 0-2:skip 0-3:conv3x3 1-2:conv3x3 1-3:skip< 2-3:conv3x3<")
    assert live_nodes(winner) == {0, 3}
    assert cell_key(canonical_cell(winner)) == "0-1:zero 0-2:zero 0-3:conv3x3 1-2:zero 1-3:zero 2-3:zero"
    arch = small_arch("0-1:zero 0-2:skip 0-3:conv3x3 1-2:conv3x3 1-3:skip< 2-3:conv3x3<")
    assert arch.key == "0-1:zero 0-2:zero 0-3:conv3x3 1-2:zero 1-3:zero 2-3:zero"
    from hwnas.arch.builder import build_network

    assert sorted(build_network(arch).populations) == ["cell1.n3", "cell2.n3", "down", "output", "stem"]
    # feedback into a node that reaches the output is kept
    loop = parse_cell_key(FEEDBACK)
    assert canonical_cell(loop) == loop and live_nodes(loop) == {0, 1, 2, 3}
    # a node driven only by a node nothing drives is dead
    orphan = parse_cell_key("0-1:zero 0-2:zero 0-3:conv3x3 1-2:conv3x3 1-3:zero 2-3:conv3x3")
    assert cell_key(canonical_cell(orphan)) == "0-1:zero 0-2:zero 0-3:conv3x3 1-2:zero 1-3:zero 2-3:zero"
