"""The answer a search owes its user: did the best network it found beat the hand designs, and by how much?

Reads results-table rows only. A row is a *hand design* when its genotype is one of the presets
at the run's K (its ``preset`` column names it, whoever proposed it); every other row is a
*found* network. Both sides are ranked by validation ``nmse_db`` (the search reward) among rows
trained to the end (status ``ok``); test values are those of the same rows. ``gain_db`` > 0
means the found network is better (lower NMSE) by that many dB.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from search_spaces.genotype import Genotype
from search_spaces.presets import display_name, existing

METRIC = "pooled nmse_db"  # the verdict's dB: total error over total energy of the split (docs/design.md §4); Table 1 is nmse_db_mean
CLOSE_DB = 0.3  # 2NO-LISTA's test value under `final` moved 0.8 dB between two fresh seeds (docs/results/samplers.md)


def hand_designs(layers: int, max_lag: int) -> dict[str, Genotype]:
    """The hand designs at this (K, J), by name; designs equal at this K share one entry (the first name)."""
    out: dict[str, Genotype] = {}
    for name, g in existing(layers, max_lag):
        if all(g != other for other in out.values()):
            out[name] = g
    return out


def preset_names(layers: int, max_lag: int) -> dict[str, str]:
    """genotype hash -> the hand-design names it equals at this (K, J), joined by ``=`` (e.g. ``lfista=dense`` at K = 3)."""
    names: dict[str, list[str]] = {}
    for name, g in existing(layers, max_lag):
        names.setdefault(g.hash, []).append(name)
    return {h: "=".join(v) for h, v in names.items()}


def display(preset: str) -> str:
    """A ``preset`` cell as readers see it (``lfista=dense`` -> ``LFISTA=Dense-LISTA``); other names unchanged."""
    return "=".join(display_name(p) for p in preset.split("="))


def preset_of(row: Mapping[str, Any]) -> str:
    """The row's ``preset`` cell as text: "" for a found network (a missing column, None, or NaN read back from CSV)."""
    value = row.get("preset")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def hand_design_rows(df: Any) -> Any:
    """A results frame's rows that are hand designs (:func:`preset_of` non-empty), as a boolean Series."""
    import pandas as pd

    return pd.Series([bool(preset_of(r)) for r in df.to_dict("records")], index=df.index, dtype=bool)


def _ok(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and _finite(r.get("val_nmse_db"))]


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _best(rows: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return min(rows, key=lambda r: (float(r["val_nmse_db"]), str(r.get("hash", "")))) if rows else None


def judge(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Best found vs best hand design: names, validation and test values, gains and the one-line verdict."""
    ok = _ok(rows)
    found = _best([r for r in ok if not preset_of(r)])
    hand = _best([r for r in ok if preset_of(r)])
    res: dict[str, Any] = {
        "best_found": None if found is None else str(found["name"]),
        "best_found_val_nmse_db": math.nan if found is None else float(found["val_nmse_db"]),
        "best_found_test_nmse_db": math.nan if found is None else float(found["test_nmse_db"]),
        "best_preset": None if hand is None else preset_of(hand),
        "best_preset_name": None if hand is None else str(hand["name"]),
        "best_preset_val_nmse_db": math.nan if hand is None else float(hand["val_nmse_db"]),
        "best_preset_test_nmse_db": math.nan if hand is None else float(hand["test_nmse_db"]),
    }
    res["gain_db"] = res["best_preset_val_nmse_db"] - res["best_found_val_nmse_db"]
    res["gain_test_db"] = res["best_preset_test_nmse_db"] - res["best_found_test_nmse_db"]
    res["best_is_hand_design"] = hand is not None and (found is None or res["gain_db"] < 0)
    if found is not None and hand is not None and _finite(found.get("test_psnr")) and _finite(hand.get("test_psnr")):  # image settings
        res["best_found_test_psnr"], res["best_preset_test_psnr"] = float(found["test_psnr"]), float(hand["test_psnr"])
        res["gain_test_psnr"] = res["best_found_test_psnr"] - res["best_preset_test_psnr"]
    res["verdict"] = verdict_line(res)
    return res


def answer(gain_db: float) -> str:
    """The plain answer for a validation margin (found minus hand design, dB; > 0: found better), by the stated rule:
    level when the margin is under :data:`CLOSE_DB`."""
    if abs(gain_db) < CLOSE_DB:
        return "level"
    return "found better" if gain_db > 0 else "hand design better"


ANSWERS = {
    "found better": "the search found a better network than every hand design",
    "level": f"level: the best found network and the best hand design are within {CLOSE_DB} dB, inside what a training seed moves",
    "hand design better": "a hand design is better than every network the search found",
}


def verdict_line(c: Mapping[str, Any]) -> str:
    """The plain answer, then the numbers, e.g. ``the search found a better network than every hand design — t00013
    -10.61 dB (val), -10.50 (test) vs 2NO-LISTA -10.19 (val), -10.02 (test): 0.42 dB better (val), 0.48 on test``."""
    if c["best_found"] is None and c["best_preset"] is None:
        return "no network was trained to the end: nothing to compare"
    if c["best_preset"] is None:
        return (
            f"best found {c['best_found']} {c['best_found_val_nmse_db']:.2f} dB (val), {c['best_found_test_nmse_db']:.2f} (test); "
            "no hand design was trained in this search (baselines off), so there is nothing to compare it with"
        )
    hand = f"{display(c['best_preset'])} {c['best_preset_val_nmse_db']:.2f} dB (val), {c['best_preset_test_nmse_db']:.2f} (test)"
    if c["best_found"] is None:
        return f"a hand design is best, {hand}: the search found no other network trained to the end"
    found = f"{c['best_found']} {c['best_found_val_nmse_db']:.2f} dB (val), {c['best_found_test_nmse_db']:.2f} (test)"
    gain, gain_test = c["gain_db"], c["gain_test_db"]
    word = "better" if gain >= 0 else "worse"
    on_test = f"on test {abs(gain_test):.2f} dB {'better' if gain_test >= 0 else 'worse'}"
    if "gain_test_psnr" in c:  # image settings: the test images' mean PSNR, found vs hand design
        on_test += f"; test PSNR {c['best_found_test_psnr']:.2f} vs {c['best_preset_test_psnr']:.2f} dB ({c['gain_test_psnr']:+.2f})"
    return f"{ANSWERS[answer(gain)]} — best found {found} vs best hand design {hand}: {abs(gain):.2f} dB {word} (val), {on_test}"


def ranks_like(protocol: str) -> str:
    """``ranks like paper at ρ 0.88, 0.96 where paper does not diverge, median |Δ| 0.6 dB on paper_small_k8``, from the
    measured agreement of ``protocol``; or that none is measured."""
    from trainers.protocols import agreement

    a = agreement(protocol)
    if a is None:
        return "is not measured against paper"
    if a["spearman"] == 1.0 and a["median_abs_delta_db"] == 0.0:
        return "is the reference itself"
    ok = f", {a['spearman_ok']:.2f} where paper does not diverge" if "spearman_ok" in a else ""
    return f"ranks like paper at ρ {a['spearman']:.2f}{ok}, median |Δ| {a['median_abs_delta_db']:.1f} dB on {a['reference']}"


def trusted_line(promoted: Mapping[str, Any] | None, screening: Mapping[str, Any], screen_protocol: str) -> str:
    """The search's verdict, one line (the search's last): the plain answer with its numbers (:func:`verdict_line`), then
    its provenance in parentheses. Promoted: under the promotion's protocol, which names how well it ranks, with HyperLISTA's value (no
    training) beside; otherwise the screening verdict, marked as such, with how well the screening protocol ranks."""
    screen = Path(str(screen_protocol)).stem
    if promoted:
        proto = Path(str(promoted["protocol"])).stem
        line = verdict_line({k.removeprefix("verdict_"): v for k, v in promoted.items() if k.startswith("verdict_")})
        close = abs(float(promoted.get("verdict_gain_db", math.nan))) < CLOSE_DB
        note = "; `nasdun confirm` retrains both on fresh seeds" if close else ""
        n, m = int(promoted.get("hand_designs", 0)), int(promoted.get("hand_designs_screened", 0))
        f, g = int(promoted.get("found", 0)), int(promoted.get("found_screened", 0))
        chosen = f"; found networks: the top {f} of {g} by screening" if 0 < f < g else ""
        chosen += f"; hand designs: the {n} of {m} that screened best" if 0 < n < m else ""
        hyper = promoted.get("hyperlista_test_nmse_db", math.nan)
        untrained = f"; HyperLISTA, without training, {float(hyper):.2f} dB (test)" if _finite(hyper) else ""
        return f"{line}{note} (under {proto}, which {ranks_like(proto)}; {METRIC}; screening under {screen}{chosen}{untrained})"
    return f"screening verdict: {screening['verdict']} (under {screen}, which {ranks_like(screen)}; no promotion: promote_top 0; {METRIC})"
