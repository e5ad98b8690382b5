"""Hand designs as points of the design space: each preset maps (K, J) to a Genotype.

:data:`PRESETS` is the one list of hand designs: what is registered here (with :func:`hand_design`) is trained
as a baseline by every search, study and retraining, counted by the verdict and shown by its display name, with
no other edit. ``hand`` in an architecture list stands for all of them (those that exist at its K).
"""

from __future__ import annotations

from collections.abc import Callable

from nasdun.core.errors import NasdunError
from nasdun.core.registry import Registry
from search_spaces.genotype import Genotype

PresetFn = Callable[[int, int], Genotype]
PRESETS: Registry[PresetFn] = Registry("preset")  # each maps (layers, max_lag) to a Genotype
HAND = "hand"  # in an architecture list: every registered hand design that exists at its K


def hand_design(name: str, display: str, aliases: tuple[str, ...] = (), paper_db: float | None = None) -> Callable[[PresetFn], PresetFn]:
    """Register a hand design under ``name`` (and ``aliases``), shown to readers as ``display``; ``paper_db`` is
    its published test nmse_db_mean (noiseless, K = 16) as the design-space paper's public notebook prints it, where it
    has one: LISTA -42.9, LFISTA -47.3, Dense -48.1, meng2021 -54.1 (the paper's Table 1 rounds differently: -43.3,
    -47.3, -48.3, -54.2)."""

    def add(fn: PresetFn) -> PresetFn:
        fn.display = display  # type: ignore[attr-defined]
        fn.paper_db = paper_db  # type: ignore[attr-defined]
        return PRESETS.register(name, fn, aliases=aliases)

    return add


def display_name(name: str) -> str:
    """How a hand design is shown (``2no`` -> ``2NO-LISTA``); any other name as it is."""
    return str(getattr(PRESETS.get(name), "display", name)) if name in PRESETS else name


def paper_figure(name: str) -> float | None:
    """The hand design's test nmse_db_mean (K = 16, noiseless) from the design-space paper's public notebook
    (:func:`hand_design` says how its Table 1 differs), or None: not a hand design, or not there (2NO/3NO come from
    another paper)."""
    return getattr(PRESETS.get(name), "paper_db", None) if name in PRESETS else None


def existing(layers: int, max_lag: int = 2) -> list[tuple[str, Genotype]]:
    """(name, genotype) of every hand design, in registry order, that exists at this (K, J): meng2021 beyond
    16 layers or 3no with max_lag < 2 do not."""
    out = []
    for name in PRESETS.names():
        try:
            out.append((name, preset(name, layers, max_lag)))
        except NasdunError:
            continue
    return out


#: The design-space paper's published searched network (K = 16), in its code's format.
MENG2021_ARCH = "0_0_0_2_1_3_14_42_48_249_284_4_152_328_4888_12193"


@hand_design("lista", "LISTA", paper_db=-42.9)
def lista(layers: int, max_lag: int = 2) -> Genotype:
    """LISTA: no extra connections, soft thresholds, order 1."""
    return Genotype.build(layers, max_lag=max_lag)


@hand_design("lfista", "LFISTA", paper_db=-47.3)
def lfista(layers: int, max_lag: int = 2) -> Genotype:
    """LFISTA: layer k >= 3 also reads x(k-2) (c initialised to 1 as in the reference code)."""
    return Genotype.build(layers, {k: [k - 2] for k in range(3, layers + 1)}, max_lag=max_lag)


@hand_design("dense", "Dense-LISTA", aliases=("dense-lista",), paper_db=-48.1)
def dense(layers: int, max_lag: int = 2) -> Genotype:
    """Dense-LISTA: every layer reads every earlier output."""
    return Genotype.build(layers, {k: list(range(1, k - 1)) for k in range(3, layers + 1)}, max_lag=max_lag)


@hand_design("2no", "2NO-LISTA", aliases=("2no-lista",))
def two_no(layers: int, max_lag: int = 2) -> Genotype:
    """2NO-LISTA (HNO paper): lag 1 open for k >= 2, layer 1 plain."""
    if max_lag < 1:
        raise NasdunError(f"2no needs max_lag >= 1; got {max_lag}")
    return Genotype.build(layers, lags={k: [1] for k in range(2, layers + 1)}, max_lag=max_lag)


@hand_design("3no", "3NO-LISTA", aliases=("3no-lista",))
def three_no(layers: int, max_lag: int = 2) -> Genotype:
    """3NO-LISTA (HNO paper): lag 1 for k >= 2, lag 2 for k >= 3."""
    if max_lag < 2:
        raise NasdunError(f"3no needs max_lag >= 2; got {max_lag}")
    return Genotype.build(layers, lags={k: [1, 2][: k - 1] for k in range(2, layers + 1)}, max_lag=max_lag)


@hand_design("meng2021", "meng2021", paper_db=-54.1)
def meng2021(layers: int, max_lag: int = 2) -> Genotype:
    """The design-space paper's searched network; for K < 16 its first K layers (documented)."""
    full = Genotype.from_arch_string(MENG2021_ARCH, max_lag=max_lag)
    if layers > full.layers:
        raise NasdunError(f"meng2021 is defined for at most {full.layers} layers; got layers={layers}")
    return Genotype(full.inputs[:layers], full.neurons[:layers], full.lags[:layers], max_lag)


# -- the field's strongest designs (docs/design.md §2 item 5): weight parameterisations, support selection, gain gates.
# Each is its published form at our K; the untrained network equals the published iteration (tests/test_model.py).


def _lags(layers: int, max_lag: int, order: int) -> dict[int, list[int]]:
    """The HNO paper's lags: none (order 1), lag 1 from layer 2 (2NO), lags 1, 2 from layers 2, 3 (3NO)."""
    if order - 1 > max_lag:
        raise NasdunError(f"a {order}NO design needs max_lag >= {order - 1}; got {max_lag}")
    return {k: [1, 2][: min(order - 1, k - 1)] for k in range(2, layers + 1)}


@hand_design("lista_cp", "LISTA-CP", aliases=("lista-cp",))
def lista_cp(layers: int, max_lag: int = 2) -> Genotype:
    """LISTA-CP (Chen et al. 2018): coupled weights, a W per layer, soft thresholds."""
    return Genotype.build(layers, max_lag=max_lag, weights="coupled_untied")


@hand_design("lista_ss", "LISTA-SS", aliases=("lista-ss",))
def lista_ss(layers: int, max_lag: int = 2) -> Genotype:
    """LISTA-SS (Chen et al. 2018): LISTA's free weights with support selection."""
    return Genotype.build(layers, neurons="ss", max_lag=max_lag)


@hand_design("lista_cpss", "LISTA-CPSS", aliases=("lista-cpss", "cpss"))
def lista_cpss(layers: int, max_lag: int = 2) -> Genotype:
    """LISTA-CPSS (Chen et al. 2018, as published): coupled weights, a W per layer, support selection."""
    return Genotype.build(layers, neurons="ss", max_lag=max_lag, weights="coupled_untied")


@hand_design("tilista", "TiLISTA")
def tilista(layers: int, max_lag: int = 2) -> Genotype:
    """TiLISTA (Liu et al. 2019): one tied W, a learned step per layer, support selection."""
    return Genotype.build(layers, neurons="ss", max_lag=max_lag, weights="tied_step")


@hand_design("alista", "ALISTA")
def alista(layers: int, max_lag: int = 2) -> Genotype:
    """ALISTA (Liu et al. 2019): the analytic W, a learned step and threshold per layer, support selection."""
    return Genotype.build(layers, neurons="ss", max_lag=max_lag, weights="analytic")


@hand_design("glista", "GLISTA")
def glista(layers: int, max_lag: int = 2) -> Genotype:
    """GLISTA (Wu et al. 2020): LISTA-CPSS with gain gates on every layer's input (without its overshoot gates:
    docs/design.md says why)."""
    return Genotype.build(layers, neurons="gain_ss", max_lag=max_lag, weights="coupled_untied")


@hand_design("2no_glista", "2NO-GLISTA", aliases=("2no-glista",))
def two_no_glista(layers: int, max_lag: int = 2) -> Genotype:
    """2NO-GLISTA (the HNO paper's own network): GLISTA with 2NO's lag 1 from layer 2."""
    return Genotype.build(layers, neurons="gain_ss", lags=_lags(layers, max_lag, 2), max_lag=max_lag, weights="coupled_untied")


@hand_design("2no_cpss", "2NO-CPSS", aliases=("2no-cpss",))
def two_no_cpss(layers: int, max_lag: int = 2) -> Genotype:
    """2NO-CPSS: the HNO paper's crossing of 2NO with LISTA-CPSS (proposed there, not measured)."""
    return Genotype.build(layers, neurons="ss", lags=_lags(layers, max_lag, 2), max_lag=max_lag, weights="coupled_untied")


@hand_design("2no_alista", "2NO-ALISTA", aliases=("2no-alista",))
def two_no_alista(layers: int, max_lag: int = 2) -> Genotype:
    """2NO-ALISTA: the HNO paper's crossing of 2NO with ALISTA (proposed there, not measured)."""
    return Genotype.build(layers, neurons="ss", lags=_lags(layers, max_lag, 2), max_lag=max_lag, weights="analytic")


def preset(name: str, layers: int = 16, max_lag: int = 2) -> Genotype:
    """The hand design ``name`` at K = ``layers``."""
    return PRESETS.get(name)(layers, max_lag)


def read_genotype_file(token: str) -> Genotype:
    """A genotype JSON file (a bare genotype, or any JSON whose ``genotype`` key holds one, e.g. avg.json)."""
    import json
    from pathlib import Path

    path = Path(token)
    if not path.is_file():
        raise NasdunError(f"architecture file {token!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise NasdunError(f"architecture file {token!r} is not valid JSON: {err}") from None
    return Genotype.from_dict(data.get("genotype", data) if isinstance(data, dict) else data)


def resolve_arch(token: str, layers: int = 16, max_lag: int = 2) -> tuple[str, Genotype]:
    """A preset name or a genotype JSON file -> (row name, genotype at K = ``layers``)."""
    from pathlib import Path

    token = token.strip()
    if token.endswith(".json"):
        g = read_genotype_file(token)
        if g.layers != layers:
            raise NasdunError(f"architecture file {token!r} has {g.layers} layers; expected layers={layers}", ("layers",))
        return Path(token).stem, g
    return PRESETS.canonical(token), preset(token, layers, max_lag)


def infer_layers(spec: str) -> int | None:
    """K of the first genotype file in a comma list (``avg.json,lista`` -> the file's K); None if it names none."""
    files = [t.strip() for t in spec.split(",") if t.strip().endswith(".json")]
    return read_genotype_file(files[0]).layers if files else None


def resolve_archs(spec: str, layers: int = 16, max_lag: int = 2) -> list[tuple[str, Genotype]]:
    """A comma-separated list of preset names, genotype JSON files and ``hand`` (every hand design that exists at
    this K, :func:`existing`); names must be unique."""
    items: list[tuple[str, Genotype]] = []
    for tok in (t.strip() for t in spec.split(",")):
        if tok.lower() == HAND:
            items += existing(layers, max_lag)
        elif tok:
            items.append(resolve_arch(tok, layers, max_lag))
    if not items:
        raise NasdunError(f"archs={spec!r} names no architecture; expected e.g. lista,2no or a file.json", ("archs",))
    names = [n for n, _ in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise NasdunError(f"archs={spec!r} names {dup} more than once", ("archs",))
    return items
