r"""`nasdun export`: a trained network as one self-contained ``torch.export`` program (``.pt2``).

The file maps measurements ``b`` (B, m) to estimates ``x`` = x(K) (B, n) and needs nothing but
PyTorch to run::

    extra = {"nasdun.json": ""}
    program = torch.export.load("net.pt2", extra_files=extra)   # nasdun need not be installed
    x = program.module()(b)                                    # b: (B, m) float32, any B
    info = json.loads(extra["nasdun.json"])                     # genotype, setting, metrics, where it came from

The program is a trace of :class:`trainers.model.UnrolledLISTA` itself (one candidate, its trained
parameters): the update rule is written once, in the model, and the export cannot drift from it (a test
checks the loaded file against the model and against the run's row). ``torch.export`` is what PyTorch
2.13 recommends in place of TorchScript (``torch.jit.script`` / ``torch.jit.load`` are deprecated there). The
batch size is dynamic; a wrong width or dtype of ``b`` is refused by the program's own input check, which
names the expected value.
"""

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from nasdun.core.errors import NasdunError

META = "nasdun.json"  # the metadata's name among the program's extra files


class ExportedNetwork(nn.Module):
    """One trained network (a P = 1 :class:`trainers.model.UnrolledLISTA`): ``forward(b)`` returns x(K), or the signal
    Psi x(K) where the setting has a synthesis basis."""

    def __init__(self, model: Any, psi: torch.Tensor | None = None) -> None:
        super().__init__()
        if model.P != 1:
            raise NasdunError(f"export takes one network; got a cohort of {model.P}")
        model = copy.deepcopy(model)  # the caller's model is left as it was
        with torch.no_grad():  # contiguous copies: each tensor of the program owns its storage
            for name, t in list(model.named_parameters()) + list(model.named_buffers()):
                owner, _, leaf = name.rpartition(".")
                target = model.get_submodule(owner) if owner else model
                data = t.detach().float().contiguous().clone() if t.is_floating_point() else t.detach().contiguous().clone()
                if isinstance(t, nn.Parameter):
                    setattr(target, leaf, nn.Parameter(data, requires_grad=False))
                else:
                    target.register_buffer(leaf, data)
        self.model = model
        self.has_psi = psi is not None
        self.register_buffer("psi", torch.zeros(0, 0) if psi is None else psi.detach().float().contiguous().clone())  # (n_f, n)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        x = self.model(b)[-1][0]  # (B, n)
        return x @ self.psi.T if self.has_psi else x


def export_program(model: Any, psi: torch.Tensor | None, example: torch.Tensor) -> Any:
    """The ``torch.export`` program of ``model`` (P = 1) with a dynamic batch, traced on ``example`` (B, m)."""
    net = ExportedNetwork(model, psi).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = torch.export.Dim("batch", min=1)
        return torch.export.export(net, (example.float(),), dynamic_shapes={"b": {0: batch}}, strict=False)


def pick_row(run: str | Path, name: str | None = None, rank: int | None = None) -> dict[str, Any]:
    """The row to export: by ``name``, or the ``rank``-th best by validation nmse_db among rows with saved parameters."""
    from nasdun.runs.results import read_params, read_table

    if (name is None) == (rank is None):
        raise NasdunError("give exactly one of name=NAME or rank=N", ("name", "rank"))
    path = Path(run) / "params.pt"
    if not path.is_file():
        raise NasdunError(f"no saved parameters at {str(path)!r}; expected a run of nasdun train or search (searches keep their top-k)")
    saved = set(read_params(path)["networks"])
    df = read_table(run)
    if name is not None:
        rows = df[df["name"].astype(str) == name]
        if rows.empty:
            raise NasdunError(f"no row {name!r} in {str(Path(run) / 'results.csv')!r}")
        if name not in saved:
            raise NasdunError(f"{name!r} has no saved parameters in {str(path)!r}; saved: {', '.join(sorted(saved))}")
        return dict(rows.iloc[0])
    ok = df[(df["status"] == "ok") & df["name"].astype(str).isin(saved)].sort_values(["val_nmse_db", "hash"], kind="mergesort")
    assert rank is not None
    if not 1 <= rank <= len(ok):
        raise NasdunError(f"rank={rank}; expected 1..{len(ok)} (the networks of this run trained to the end with saved parameters)", ("rank",))
    return dict(ok.iloc[rank - 1])


def export_network(run: str | Path, out: str | Path, name: str | None = None, rank: int | None = None, force: bool = False) -> dict[str, Any]:
    """Write row ``name`` (or the ``rank``-th best) of ``run`` to ``out`` as a ``torch.export`` program; returns its metadata.

    A search that was promoted is exported from its promotion (``RUN/promoted``: the networks its verdict compares,
    trained under the promotion's protocol); otherwise from the run's own table and parameters."""
    from nasdun import __version__
    from nasdun.runs.results import check_out_file, load_network
    from nasdun.runs.verdict import display, preset_of
    from trainers.problems.make import get_setting

    out = check_out_file(out, force)  # a directory, a file without force, a read-only place: named now, not after the trace
    source = Path(run)
    promoted = source / "promoted"
    if (promoted / "promote.csv").is_file() and (promoted / "params.pt").is_file():  # the verdict's networks, trained under final
        source = promoted
    row = pick_row(source, name, rank)
    if source == promoted:
        marks = pd.read_csv(promoted / "promote.csv", keep_default_na=False).set_index("name")["preset"].astype(str)
        row["preset"] = marks.get(str(row["name"]), "")
    model = load_network(source, str(row["name"]))
    g = model.genotypes[0]
    s = get_setting(str(row["setting"]))
    basis = s.synthesis_basis()
    psi = None if basis is None else torch.tensor(basis)
    n_out = s.n if psi is None else psi.shape[0]
    metrics = {k: float(row[k]) for k in ("val_nmse_db", "val_nmse_db_mean", "test_nmse_db", "test_nmse_db_mean") if k in row}
    preset = preset_of(row)
    meta = {
        "name": str(row["name"]), "hash": g.hash, "preset": preset, "preset_display": display(preset) if preset else "",
        "genotype": g.to_dict(), "arch_string": g.to_arch_string(), "spec": g.to_spec(), "layers": g.layers,
        "setting": s.name, "m": s.m, "n": s.n, "seed": int(row["seed"]), "protocol": str(row["protocol"]),
        "metrics": metrics, "run": Path(run).resolve().name, "source": "promoted" if source == promoted else ".", "promoted": source == promoted,
        "nasdun_version": __version__,
        "weights": g.weights, "input": f"b: (B, {s.m}) measurements, float32", "n_out": n_out,
        "output": f"x: (B, {s.n}) float32 estimate, x(K) of the network" if psi is None else f"f: (B, {n_out}) float32 signal, Psi x(K)",
    }  # fmt: skip
    text = json.dumps(meta, sort_keys=True)
    program = export_program(model.cpu(), psi, torch.zeros(2, s.m))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(program, str(tmp), extra_files={META: text})
    tmp.replace(out)
    return meta
