import json

import numpy as np
import pytest

from nasdun.core.errors import NasdunError
from search_spaces import PRESETS, Genotype, SearchSpace, preset
from search_spaces.presets import MENG2021_ARCH, resolve_archs

MENG_EXTRA = {4: {1}, 5: {3}, 6: {3, 4}, 7: {2, 3, 4}, 8: {1, 3, 5}, 9: {2, 3}, 10: {1, 2, 3, 4, 5, 8}, 11: {1, 5, 6, 7},
              12: {8}, 13: {4, 7, 8}, 14: {4, 6, 9}, 15: {1, 4, 5, 9, 10}, 16: {1, 3, 4, 5, 6, 7, 9, 14}}  # fmt: skip


@pytest.mark.parametrize("name", PRESETS.names())
def test_presets_round_trip_json_and_decisions(name):
    g = preset(name, 16)
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_json(g.to_json()).hash == g.hash
    space = SearchSpace(layers=16)
    assert space.decode(space.encode(g)) == g


def test_preset_gate_counts():
    assert preset("lfista").n_extra == 14
    assert preset("dense").n_extra == 105
    assert preset("meng2021").n_extra == 42
    assert preset("lista").n_extra == 0
    assert sum(len(q) for q in preset("2no").lags) == 15
    assert sum(len(q) for q in preset("3no").lags) == 29
    assert preset("2no").lags[0] == () and preset("3no").lags[1] == (1,) and preset("3no").lags[2] == (1, 2)


def test_meng2021_matches_published_origins_and_string():
    g = preset("meng2021")
    for k in range(1, 17):
        assert set(g.extra_inputs(k)) == MENG_EXTRA.get(k, set()), k
    assert g.to_arch_string() == MENG2021_ARCH
    assert Genotype.from_arch_string(MENG2021_ARCH) == g


def test_hash_is_stable_and_distinguishes():
    hashes = {preset(n).hash for n in PRESETS.names()}
    assert len(hashes) == len(PRESETS.names())
    assert preset("lista").hash == Genotype.build(16).hash
    assert len(preset("lista").hash) == 12


def test_search_space_size():
    space = SearchSpace(layers=16, max_lag=2)
    names = [d.name for d in space.decisions()]
    assert sum(n.startswith("conn_") for n in names) == 105
    assert sum(n.startswith("neuron_") for n in names) == 16
    assert sum(n.startswith("lag_") for n in names) == 29
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"inputs": [[0], [1], [1, 4]], "neurons": ["soft"] * 3, "lags": [[], [], []]}, "later layer"),
        ({"inputs": [[0], [1], [1]], "neurons": ["soft"] * 3, "lags": [[], [], []]}, "immediate predecessor 2"),
        ({"inputs": [[0], [1], [2]], "neurons": ["soft", "tanh", "soft"], "lags": [[], [], []]}, "unknown neuron 'tanh'"),
        ({"inputs": [[0], [1], [2]], "neurons": ["soft"] * 2, "lags": [[], [], []]}, "3 layers but 2 neuron"),
        ({"layers": 4, "inputs": [[0], [1], [2]], "neurons": ["soft"] * 3, "lags": [[], [], []]}, "layers=4"),
        ({"inputs": [[0], [1], [2]], "neurons": ["soft"] * 3, "lags": [[1], [], []]}, "layer 1: lag 1 is not available"),
        ({"inputs": [[0], [1], [2]], "neurons": ["soft"] * 3, "lags": [[], [], [3]]}, "lag 3"),
        ({"inputs": [[1], [1], [2]], "neurons": ["soft"] * 3, "lags": [[], [], []]}, "layer 1 reads only x(0)"),
        ({"inputs": [[0]], "neurons": ["soft"], "lags": [[]], "colour": 1}, "unknown genotype key"),
        ({"inputs": [[0], [1], [1.7, 2]], "neurons": ["soft"] * 3, "lags": [[], [], []]}, "inputs[2] holds 1.7; expected an integer"),
        ({"inputs": [[0], [1], [True, 2]], "neurons": ["soft"] * 3, "lags": [[], [], []]}, "inputs[2] holds True; expected an integer"),
        ({"inputs": [[0], [1], [2]], "neurons": ["soft"] * 3, "lags": [[], [1.0], []]}, "lags[1] holds 1.0; expected an integer"),
        ({"inputs": [[0]], "neurons": ["soft"], "lags": [[]], "max_lag": float("inf")}, "max_lag holds inf; expected an integer"),
        ({"inputs": [[0]], "neurons": ["soft"], "lags": [[]], "max_lag": 10**400}, "expected an integer in 0..64"),
        ({"inputs": [[0]], "neurons": [3], "lags": [[]]}, "neurons holds 3; expected a neuron name"),
        ({"inputs": "0,1", "neurons": ["soft"], "lags": [[]]}, "inputs='0,1'; expected a list"),
        ({"layers": True, "inputs": [[0]], "neurons": ["soft"], "lags": [[]]}, "layers holds True"),
    ],
)
def test_bad_genotypes_give_one_line_errors(data, fragment):
    with pytest.raises(NasdunError) as err:
        Genotype.from_dict(data)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_arch_strings_and_presets():
    with pytest.raises(NasdunError, match="layer 3 has code 2"):
        Genotype.from_arch_string("0_0_2")
    with pytest.raises(NasdunError, match="integers joined"):
        Genotype.from_arch_string("0_x")
    with pytest.raises(NasdunError, match="unknown preset 'listaa'.*lista, lfista"):
        preset("listaa")
    with pytest.raises(NasdunError, match="at most 16 layers"):
        preset("meng2021", 20)


def test_decode_rejects_bad_decisions():
    space = SearchSpace(layers=4)
    values = space.encode(preset("lista", 4))
    with pytest.raises(NasdunError, match="neuron_1='tanh'"):
        space.decode({**values, "neuron_1": "tanh"})
    with pytest.raises(NasdunError, match="unknown decision"):
        space.decode({**values, "conn_9_1": 1})
    del values["lag_2_1"]
    with pytest.raises(NasdunError, match="missing decision"):
        space.decode(values)


def test_resolve_archs_reads_json_files(tmp_path):
    g = preset("lfista", 5)
    (tmp_path / "mine.json").write_text(json.dumps({"genotype": g.to_dict()}))
    got = resolve_archs(f"lista,{tmp_path / 'mine.json'}", layers=5)
    assert [n for n, _ in got] == ["lista", "mine"] and got[1][1] == g
    with pytest.raises(NasdunError, match="has 5 layers; expected layers=6"):
        resolve_archs(str(tmp_path / "mine.json"), layers=6)
    with pytest.raises(NasdunError, match="more than once"):
        resolve_archs("lista,lista", layers=5)


def test_spec_encodes_connections_neurons_and_lags_and_round_trips():
    from search_spaces import preset

    assert preset("2no", 4).to_spec() == "0_0_0_0|soft,soft,soft,soft|0_1_1_1"
    assert preset("lista", 4).to_arch_string() == preset("2no", 4).to_arch_string()  # the paper's string cannot tell them apart
    assert preset("lista", 4).to_spec() != preset("2no", 4).to_spec()
    space = SearchSpace(layers=6)
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()})
        assert Genotype.from_spec(g.to_spec()) == g
    with pytest.raises(NasdunError, match="expected <arch string>\\|<neurons>\\|<lags>"):
        Genotype.from_spec("0_0_0")
    with pytest.raises(NasdunError, match="a lag mask above 3"):
        Genotype.from_spec("0_0|soft,soft|0_4")
