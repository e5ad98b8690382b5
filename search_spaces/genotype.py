"""The genotype: one point of the unrolled-LISTA design space, as frozen, validated data.

Layer ``k`` (1-based, 1..K) computes ``x(k)`` from earlier outputs (docs/design.md §2):

* ``inputs[k-1]`` is the LWA origin set P(k): layer 1 reads ``(0,)`` (x(0) = 0); layer
  k >= 2 reads a sorted subset of 1..k-1 that always holds k-1.
* ``neurons[k-1]`` is the neuron type (a name in :data:`search_spaces.neurons.NEURONS`).
* ``lags[k-1]`` is the sorted set of open LM lags j in 1..J with k-1-j >= 0.
* ``weights`` is the network's weight parameterisation (a name in :data:`search_spaces.weights.WEIGHTS`;
  ``free``, today's tied Wb, Wx, by default; it is left out of the JSON then, so earlier genotypes keep their hash).

A sampler sees the genotype as a flat list of named categorical decisions
(``conn_k_i``, ``neuron_k``, ``lag_k_j``, ``weights``); see :class:`SearchSpace`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nasdun.core.errors import NasdunError
from search_spaces.neurons import NEURONS
from search_spaces.weights import DEFAULT_WEIGHTS, WEIGHTS

Choice = int | str


@dataclass(frozen=True)
class Decision:
    """One categorical decision of the search space: a stable name and its finite choices."""

    name: str
    choices: tuple[Choice, ...]


@dataclass(frozen=True)
class Genotype:
    """An unrolled network of ``layers`` layers; see the module docstring for the fields."""

    inputs: tuple[tuple[int, ...], ...]
    neurons: tuple[str, ...]
    lags: tuple[tuple[int, ...], ...]
    max_lag: int = 2
    weights: str = DEFAULT_WEIGHTS

    def __post_init__(self) -> None:
        k_total = len(self.inputs)
        if k_total < 1:
            raise NasdunError("a genotype needs at least 1 layer; got 0")
        if isinstance(self.max_lag, bool) or not isinstance(self.max_lag, int) or not 0 <= self.max_lag <= MAX_LAG:
            raise NasdunError(f"max_lag must be an integer in 0..{MAX_LAG}; got {self.max_lag!r}")
        if len(self.neurons) != k_total:
            raise NasdunError(f"genotype has {k_total} layers but {len(self.neurons)} neuron types; expected {k_total}")
        if len(self.lags) != k_total:
            raise NasdunError(f"genotype has {k_total} layers but {len(self.lags)} lag sets; expected {k_total}")
        for k, origins in enumerate(self.inputs, start=1):
            _check_origins(k, origins)
        for k, name in enumerate(self.neurons, start=1):
            if name not in NEURONS:
                raise NasdunError(f"layer {k}: unknown neuron {name!r}; expected one of: {', '.join(NEURONS.names())}")
        for k, lags in enumerate(self.lags, start=1):
            _check_lags(k, lags, self.max_lag)
        if not isinstance(self.weights, str) or self.weights not in WEIGHTS:
            raise NasdunError(f"unknown weight parameterisation {self.weights!r}; expected one of: {', '.join(WEIGHTS.names())}")
        object.__setattr__(self, "weights", WEIGHTS.canonical(self.weights))

    # -- views ------------------------------------------------------------------------------
    @property
    def layers(self) -> int:
        return len(self.inputs)

    def extra_inputs(self, k: int) -> tuple[int, ...]:
        """Origins of layer k (1-based) beyond its immediate predecessor."""
        return tuple(i for i in self.inputs[k - 1] if i != k - 1)

    @property
    def n_extra(self) -> int:
        """Number of open optional LWA connections."""
        return sum(len(self.extra_inputs(k)) for k in range(1, self.layers + 1))

    def order(self, k: int) -> int:
        """LM order of layer k: 1 + the number of open lags."""
        return 1 + len(self.lags[k - 1])

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layers": self.layers,
            "max_lag": self.max_lag,
            "inputs": [list(o) for o in self.inputs],
            "neurons": list(self.neurons),
            "lags": [list(q) for q in self.lags],
        }
        if self.weights != DEFAULT_WEIGHTS:  # the default is left out: genotypes written before it existed keep their hash
            out["weights"] = self.weights
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the basis of :attr:`hash`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """Stable 12-hex-digit identity of the architecture."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        if not isinstance(data, Mapping):
            raise NasdunError(f"a genotype must be a JSON object; got {type(data).__name__}")
        known = {"layers", "max_lag", "inputs", "neurons", "lags", "weights"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NasdunError(f"unknown genotype key(s) {unknown}; expected keys: {sorted(known)}")
        missing = sorted({"inputs", "neurons", "lags"} - set(data))
        if missing:
            raise NasdunError(f"genotype is missing key(s) {missing}")
        inputs = tuple(
            tuple(_integer(i, f"inputs[{k}]") for i in _listed(o, f"inputs[{k}]")) for k, o in enumerate(_listed(data["inputs"], "inputs"))
        )
        lags = tuple(tuple(_integer(j, f"lags[{k}]") for j in _listed(q, f"lags[{k}]")) for k, q in enumerate(_listed(data["lags"], "lags")))
        neurons = tuple(_text(n, "neurons") for n in _listed(data["neurons"], "neurons"))
        max_lag = _integer(data.get("max_lag", 2), "max_lag", high=MAX_LAG)
        if len(inputs) > MAX_LAYERS:
            raise NasdunError(f"genotype has {len(inputs)} layers; expected at most {MAX_LAYERS}")
        if "layers" in data and _integer(data["layers"], "layers", high=MAX_LAYERS) != len(inputs):
            raise NasdunError(f"genotype says layers={data['layers']!r} but lists {len(inputs)} input sets")
        weights = _text(data.get("weights", DEFAULT_WEIGHTS), "weights", "a weight parameterisation")
        return cls(inputs=inputs, neurons=neurons, lags=lags, max_lag=max_lag, weights=weights)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise NasdunError(f"genotype is not valid JSON: {err}") from None
        return cls.from_dict(data)

    # -- the reference code's integer string --------------------------------------------------
    def to_arch_string(self) -> str:
        """The design-space paper's code format: one integer per layer, ``_``-joined.

        For 0-based layer ``k``, bit ``b`` set means it also reads the output of 0-based layer
        ``k-2-b``; in 1-based terms layer ``L`` reads extra origin ``i = L-2-b``.
        """
        codes = []
        for k in range(1, self.layers + 1):
            codes.append(sum(1 << (k - 2 - i) for i in self.extra_inputs(k)))
        return "_".join(str(c) for c in codes)

    @classmethod
    def from_arch_string(cls, text: str, neurons: str = "soft", max_lag: int = 2) -> Genotype:
        """Parse the integer string (soft neurons, no LM lags unless told otherwise)."""
        try:
            codes = [int(tok) for tok in text.strip().split("_")]
        except ValueError:
            raise NasdunError(f"bad architecture string {text!r}; expected integers joined by '_'") from None
        inputs: list[tuple[int, ...]] = []
        for k, code in enumerate(codes, start=1):
            if code < 0 or code >= (1 << max(k - 2, 0)):
                raise NasdunError(f"architecture string {text!r}: layer {k} has code {code}, expected 0..{(1 << max(k - 2, 0)) - 1}")
            extra = [k - 2 - b for b in range(k) if code >> b & 1]
            inputs.append((0,) if k == 1 else tuple(sorted({*extra, k - 1})))
        return cls(inputs=tuple(inputs), neurons=(neurons,) * len(codes), lags=((),) * len(codes), max_lag=max_lag)

    def to_spec(self) -> str:
        """The whole genotype in one line, ``<arch string>|<neurons>|<lags>``: the paper's integer string for the
        connections, the neuron of each layer (comma-joined names), and per layer the open LM lags as a bitmask
        (bit j-1 set: lag j open), ``_``-joined; e.g. 2NO-LISTA at K = 4 is ``0_0_0_0|soft,soft,soft,soft|0_1_1_1``.
        A fourth part names the weight parameterisation where it is not ``free`` (``...|0_1_1_1|analytic``).
        Unlike :meth:`to_arch_string`, two different genotypes never share it."""
        lags = "_".join(str(sum(1 << (j - 1) for j in q)) for q in self.lags)
        tail = "" if self.weights == DEFAULT_WEIGHTS else f"|{self.weights}"
        return f"{self.to_arch_string()}|{','.join(self.neurons)}|{lags}{tail}"

    @classmethod
    def from_spec(cls, text: str, max_lag: int = 2) -> Genotype:
        """Parse :meth:`to_spec`'s line."""
        parts = text.strip().split("|")
        if len(parts) not in (3, 4):
            raise NasdunError(
                f"genotype spec {text!r}; expected <arch string>|<neurons>|<lags>[|<weights>], e.g. 0_0_0_0|soft,soft,soft,soft|0_1_1_1"
            )
        base = cls.from_arch_string(parts[0], max_lag=max_lag)
        neurons = tuple(n.strip() for n in parts[1].split(","))
        try:
            masks = [int(tok) for tok in parts[2].split("_")]
        except ValueError:
            raise NasdunError(f"genotype spec {text!r}: lags {parts[2]!r}; expected integers joined by '_'") from None
        if len(neurons) != base.layers or len(masks) != base.layers:
            raise NasdunError(
                f"genotype spec {text!r}: {len(neurons)} neurons and {len(masks)} lag masks for {base.layers} layers; expected one each"
            )
        lags = tuple(tuple(j for j in range(1, max_lag + 1) if m >> (j - 1) & 1) for m in masks)
        if any(m >> max_lag for m in masks):
            raise NasdunError(f"genotype spec {text!r}: a lag mask above {(1 << max_lag) - 1}; expected lags 1..{max_lag}")
        weights = parts[3].strip() if len(parts) == 4 else DEFAULT_WEIGHTS
        return cls(inputs=base.inputs, neurons=neurons, lags=lags, max_lag=max_lag, weights=weights)

    @classmethod
    def build(
        cls,
        layers: int,
        extra: Mapping[int, Sequence[int]] | None = None,
        neurons: str | Sequence[str] = "soft",
        lags: Mapping[int, Sequence[int]] | None = None,
        max_lag: int = 2,
        weights: str = DEFAULT_WEIGHTS,
    ) -> Genotype:
        """Convenience constructor from extra origins and open lags per 1-based layer."""
        if not isinstance(layers, int) or layers < 1:
            raise NasdunError(f"layers must be an integer >= 1; got {layers!r}")
        extra = extra or {}
        lags = lags or {}
        inputs = tuple((0,) if k == 1 else tuple(sorted({*extra.get(k, ()), k - 1})) for k in range(1, layers + 1))
        neuron_list = (neurons,) * layers if isinstance(neurons, str) else tuple(neurons)
        lag_sets = tuple(tuple(sorted(lags.get(k, ()))) for k in range(1, layers + 1))
        return cls(inputs=inputs, neurons=neuron_list, lags=lag_sets, max_lag=max_lag, weights=weights)


MAX_LAYERS = 1024  # bounds checked before any loop runs over them
MAX_LAG = 64


def _listed(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise NasdunError(f"malformed genotype: {where}={value!r}; expected a list")
    return list(value)


def _integer(value: Any, where: str, high: int | None = None) -> int:
    """An integer as written: ``1.7``, ``1.0``, ``true`` and ``"1"`` are refused, not coerced."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise NasdunError(f"malformed genotype: {where} holds {value!r}; expected an integer")
    if value < 0 or (high is not None and value > high):
        raise NasdunError(f"malformed genotype: {where}={value}; expected an integer in 0..{high if high is not None else 'K'}")
    return value


def _text(value: Any, where: str, what: str = "a neuron name") -> str:
    if not isinstance(value, str):
        raise NasdunError(f"malformed genotype: {where} holds {value!r}; expected {what}")
    return value


def _check_origins(k: int, origins: tuple[int, ...]) -> None:
    if k == 1:
        if tuple(origins) != (0,):
            raise NasdunError(f"layer 1 reads only x(0); got inputs {list(origins)}, expected [0]")
        return
    for i in origins:
        if i >= k:
            raise NasdunError(f"layer {k} reads layer {i}, a later layer; expected origins in 1..{k - 1}")
        if i < 1:
            raise NasdunError(f"layer {k} reads origin {i}; expected origins in 1..{k - 1} (x(0) = 0 carries nothing)")
    if list(origins) != sorted(set(origins)):
        raise NasdunError(f"layer {k}: inputs {list(origins)} must be sorted and without repeats")
    if k - 1 not in origins:
        raise NasdunError(f"layer {k}: inputs {list(origins)} close the immediate predecessor {k - 1}, which is always open")


def _check_lags(k: int, lags: tuple[int, ...], max_lag: int) -> None:
    if list(lags) != sorted(set(lags)):
        raise NasdunError(f"layer {k}: lags {list(lags)} must be sorted and without repeats")
    for j in lags:
        if not 1 <= j <= min(max_lag, k - 1):
            raise NasdunError(f"layer {k}: lag {j} is not available; expected lags in 1..{min(max_lag, k - 1)}")


@dataclass(frozen=True)
class SearchSpace:
    """Which decisions are searched, at which size; unsearched families keep their defaults.

    Size at K = 16, J = 2 with everything searched: 2^105 connectivities x 6^16 neuron choices x 2^29 lag patterns
    x 5 weight parameterisations (with the six built-in neurons and five built-in kinds).
    """

    layers: int = 16
    max_lag: int = 2
    neurons: tuple[str, ...] = field(default_factory=lambda: tuple(NEURONS.names()))  # every registered type
    search_conn: bool = True
    search_neurons: bool = True
    search_lags: bool = True
    default_neuron: str = "soft"
    weights: tuple[str, ...] = field(default_factory=lambda: tuple(WEIGHTS.names()))  # every registered kind; one: not searched

    def __post_init__(self) -> None:
        if not isinstance(self.layers, int) or self.layers < 1:
            raise NasdunError(f"search space layers must be an integer >= 1; got {self.layers!r}")
        if not isinstance(self.max_lag, int) or self.max_lag < 0:
            raise NasdunError(f"search space max_lag must be an integer >= 0; got {self.max_lag!r}")
        if not self.neurons:
            raise NasdunError("search space neurons is empty; expected one or more neuron types")
        object.__setattr__(self, "neurons", tuple(self.neurons))
        for name in (*self.neurons, self.default_neuron):
            NEURONS.get(name)
        if not self.weights:
            raise NasdunError("search space weights is empty; expected one or more weight parameterisations")
        object.__setattr__(self, "weights", tuple(WEIGHTS.canonical(w) for w in self.weights))

    def decisions(self) -> tuple[Decision, ...]:
        out: list[Decision] = []
        if self.search_conn:
            out += [Decision(f"conn_{k}_{i}", (0, 1)) for k in range(3, self.layers + 1) for i in range(1, k - 1)]
        if self.search_neurons:
            out += [Decision(f"neuron_{k}", tuple(self.neurons)) for k in range(1, self.layers + 1)]
        if self.search_lags:
            out += [Decision(f"lag_{k}_{j}", (0, 1)) for k in range(1, self.layers + 1) for j in range(1, self.max_lag + 1) if k - 1 - j >= 0]
        if len(self.weights) > 1:
            out.append(Decision("weights", tuple(self.weights)))
        return tuple(out)

    def decode(self, values: Mapping[str, Choice]) -> Genotype:
        """Decisions -> genotype; every decision of the space must be given, and nothing else."""
        names = {d.name: d for d in self.decisions()}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise NasdunError(f"unknown decision(s) {unknown[:5]} for this search space")
        missing = [n for n in names if n not in values]
        if missing:
            raise NasdunError(f"missing decision(s) {missing[:5]} ({len(missing)} in all)")
        for name, value in values.items():
            if value not in names[name].choices:
                raise NasdunError(f"decision {name}={value!r}; expected one of {list(names[name].choices)}")
        extra = {k: [i for i in range(1, k - 1) if values.get(f"conn_{k}_{i}", 0)] for k in range(1, self.layers + 1)}
        neurons = [str(values.get(f"neuron_{k}", self.default_neuron)) for k in range(1, self.layers + 1)]
        lags = {k: [j for j in range(1, self.max_lag + 1) if values.get(f"lag_{k}_{j}", 0)] for k in range(1, self.layers + 1)}
        return Genotype.build(self.layers, extra, neurons, lags, self.max_lag, str(values.get("weights", self.weights[0])))

    def encode(self, genotype: Genotype) -> dict[str, Choice]:
        """Genotype -> decisions; refuses a genotype this space cannot express."""
        if genotype.layers != self.layers or genotype.max_lag != self.max_lag:
            raise NasdunError(f"genotype has K={genotype.layers}, J={genotype.max_lag}; this space has K={self.layers}, J={self.max_lag}")
        values: dict[str, Choice] = {}
        for d in self.decisions():
            if d.name == "weights":
                values[d.name] = genotype.weights
                continue
            kind, *idx = d.name.split("_")
            k = int(idx[0])
            if kind == "conn":
                values[d.name] = int(int(idx[1]) in genotype.inputs[k - 1])
            elif kind == "neuron":
                values[d.name] = genotype.neurons[k - 1]
            else:
                values[d.name] = int(int(idx[1]) in genotype.lags[k - 1])
        if self.decode(values) != genotype:
            raise NasdunError(f"genotype {genotype.hash} uses choices outside this search space")
        return values


#: The space of the design-space and HNO papers (LWA, three neurons, lags; free weights): the space of every study
#: before the field's stronger designs joined (the shipped `paper` reference's random genotypes were drawn from it).
CLASSIC = {"neurons": ("soft", "relu", "lrelu"), "weights": ("free",)}


def classic_space(layers: int, max_lag: int = 2) -> SearchSpace:
    """:data:`CLASSIC` at K = ``layers``."""
    return SearchSpace(layers=layers, max_lag=max_lag, **CLASSIC)  # type: ignore[arg-type]


def common_size(genotypes: Sequence[Genotype], what: str) -> tuple[int, int]:
    """(K, J) shared by all ``genotypes``; ``what`` names the group in the error (e.g. "the cohort")."""
    if not genotypes:
        raise NasdunError(f"{what} has no genotype")
    K, J = genotypes[0].layers, genotypes[0].max_lag
    for g in genotypes:
        if (g.layers, g.max_lag) != (K, J):
            raise NasdunError(f"genotype {g.hash} has K={g.layers}, J={g.max_lag}; {what} has K={K}, J={J}")
    return K, J
