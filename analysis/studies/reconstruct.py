"""`nasdun reconstruct`: one test image of an image setting, seen through each method, each titled with its PSNR.

Panels: the original; the back-projection Phi^T b; FISTA and ISTA (1,000 iterations, lambda tuned
on validation); LISTA and the run's best network by validation (when the run kept their
parameters; one panel when the best is LISTA). Block by block (non-overlapping ``patch`` x ``patch`` blocks), as they are scored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasdun.core.errors import NasdunError


def reconstruct(run: str | Path, image: str, out: str | Path, force: bool = False, iters: int = 1000) -> dict[str, Any]:
    """Write ``OUT/reconstruct-IMAGE.{png,svg}`` and ``OUT/reconstruct-IMAGE.json`` (the PSNRs); returns the PSNRs."""
    from analysis.readers.plots import _plt, save
    from nasdun.runs.results import load_network, prepare_out_dir, read_table
    from trainers.classical import solve, tune
    from trainers.problems.images import assemble, psnr
    from trainers.problems.make import get_setting, make_problem
    from trainers.problems.operators import OperatorSetting, operator

    df = read_table(run)
    s = get_setting(str(df["setting"].iloc[0]))
    if not (isinstance(s, OperatorSetting) and s.images):  # the image fields below are an operator setting's
        raise NasdunError(f"run {str(run)!r} is on setting {s.name!r}, which has no test images; expected an image setting such as image_cs50")
    if image not in s.test_images:
        raise NasdunError(f"image={image!r} is not a test image of {s.name}; expected one of {', '.join(s.test_images)}", ("image",))
    out_dir = prepare_out_dir(out, force)
    problem = make_problem(s, 0, batch_size=min(64, s.n_train), dtype=torch.float64)
    first = sum(h * w for name, h, w in problem.layout[: s.test_images.index(image)]) // s.n_signal
    _, h, w = problem.layout[s.test_images.index(image)]
    count = (h * w) // s.n_signal
    b, truth = problem.test.b[first : first + count], problem.test.x[first : first + count]
    phi, _ = operator(s)
    panels: dict[str, np.ndarray] = {"original": truth.numpy(), "back-projection Φᵀb": (b @ torch.tensor(phi)).numpy()}
    for fista in (True, False):
        lam, _ = tune(problem, fista, iters)
        f = problem.synthesize(solve(problem.D, b, lam, iters, fista))
        panels[f"{'FISTA' if fista else 'ISTA'} ({iters} it., λ={lam:g})"] = f.numpy()
    names = _networks(run, df)
    for label, name in names.items():
        model = load_network(run, name).double()
        with torch.no_grad():
            panels[label] = problem.synthesize(model(b, model.K)[-1][0]).numpy()
    truth_img = assemble(truth.numpy(), (h, w), s.patch)
    scores = {label: psnr(assemble(est, (h, w), s.patch), truth_img) for label, est in panels.items() if label != "original"}
    plt, _ = _plt()
    cols = len(panels)
    fig, axes = plt.subplots(1, cols, figsize=(2.2 * cols, 2.6))
    for ax, (label, blocks_) in zip(axes, panels.items(), strict=True):
        ax.imshow(np.clip(assemble(blocks_, (h, w), s.patch), 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label if label == "original" else f"{label}\n{scores[label]:.2f} dB", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{image}, setting {s.name} ({s.m}/{s.n_signal} = {s.m / s.n_signal:.0%} measurements), run {Path(run).name}", fontsize=8)
    save(fig, out_dir, f"reconstruct-{image}")
    record = {"image": image, "setting": s.name, "run": str(Path(run).resolve()), "psnr_db": scores, "networks": names, "iterations": iters}
    (out_dir / f"reconstruct-{image}.json").write_text(json.dumps(record, indent=2))
    return record


def _networks(run: str | Path, df: Any) -> dict[str, str]:
    """Panel label -> row name: LISTA (a row equal to the hand design) and the best network by validation, among kept parameters."""
    from nasdun.runs.export import pick_row
    from nasdun.runs.results import read_params
    from nasdun.runs.verdict import display, preset_of

    path = Path(run) / "params.pt"
    saved = set(read_params(path)["networks"]) if path.is_file() else set()
    from search_spaces.presets import preset

    lista = preset("lista", int(df["layers"].iloc[0])).hash
    out: dict[str, str] = {}
    for row in df.to_dict("records"):  # a row equal to LISTA, whoever proposed it (train names it, a search marks it)
        if str(row["hash"]) == lista and str(row["name"]) in saved and row.get("status") == "ok":
            out["LISTA"] = str(row["name"])
            break
    if saved:
        best = pick_row(run, rank=1)
        if str(best["hash"]) == lista:  # the best is LISTA itself: one panel, not the same network twice
            out = {"LISTA (the run's best)": str(best["name"])}
        else:
            label = display(preset_of(best)) if preset_of(best) else str(best["name"])
            out[f"best: {label}"] = str(best["name"])
    return out
