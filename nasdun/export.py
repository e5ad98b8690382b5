r"""`nasdun export`: a trained network as one self-contained TorchScript file.

The file maps measurements ``b`` (B, m) to estimates ``x`` = x(K) (B, n) and needs nothing but
PyTorch to run::

    net = torch.jit.load("net.pt")          # nasdun need not be installed
    x = net(b)                               # b: (B, m) float32
    info = json.loads(net.metadata)          # genotype, setting, metrics, where it came from

:class:`ExportedNetwork` is the update rule of docs/design.md §2 written again with plain
tensor operations for one candidate (no custom autograd function, no registry), so that
TorchScript can compile it; the trained parameters are folded into buffers:

.. math::
    z(k) &= W_b b + W_x \sum_{i} w_{k,i}\, x(i), \qquad w_{k,i} = c_{k,i}\, g_{k,i} / |P(k)| \\
    u(k) &= s\,\mathrm{relu}(s\, z - \theta_k) + \sigma_k \min(z - \theta_k, 0), \qquad
            s = \mathrm{sign}(z)\ \text{if the neuron is symmetric, else } 1 \\
    x(k) &= \big(1 - h_k - \textstyle\sum_j qb_{k,j}\big)\, x(k-1) + h_k u(k) + \textstyle\sum_j qb_{k,j}\, x(k-1-j)

(the neuron as its point of the piecewise-linear family, :data:`search_spaces.neurons.PIECEWISE`;
h_k = 1 and qb = 0 for an order-1 layer). A test checks it against :class:`trainers.model.UnrolledLISTA`
and checks the loaded file's test NMSE against the run's row.
"""

import json  # no `from __future__ import annotations`: TorchScript reads this module's annotations as types
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from nasdun.errors import NasdunError


class ExportedNetwork(nn.Module):
    """One trained unrolled network; ``forward(b)`` returns x(K). See the module docstring."""

    Wb: torch.Tensor
    Wx: torch.Tensor
    theta: torch.Tensor
    w: torch.Tensor
    hk: torch.Tensor
    qb: torch.Tensor
    sym: torch.Tensor
    slope: torch.Tensor
    psi: torch.Tensor

    def __init__(self, model: Any, metadata: str, psi: torch.Tensor | None = None) -> None:
        super().__init__()
        from search_spaces.neurons import PIECEWISE

        if model.P != 1:
            raise NasdunError(f"export takes one network; got a cohort of {model.P}")
        g = model.genotypes[0]
        missing = sorted({n for n in g.neurons if n not in PIECEWISE})
        if missing:
            raise NasdunError(f"neuron type(s) {missing} have no piecewise form; export supports {', '.join(PIECEWISE)}")
        with torch.no_grad():
            self.register_buffer("Wb", model.Wb[0].detach().float().clone())  # (n, m)
            self.register_buffer("Wx", model.Wx[0].detach().float().clone())  # (n, n)
            self.register_buffer("theta", model.theta[0].detach().float().clone())  # (K,)
            self.register_buffer("w", (model.coef * model.gate * model.inv_count[..., None])[0].detach().float().clone())  # (K, K)
            hk = torch.where(model.has_lag, model.h, torch.ones_like(model.h))[0]
            self.register_buffer("hk", hk.detach().float().clone())  # (K,)
            self.register_buffer("qb", (model.lag * model.beta)[0].detach().float().clone())  # (K, J)
        self.register_buffer("sym", torch.tensor([PIECEWISE[n][0] for n in g.neurons], dtype=torch.float32))  # (K,)
        self.register_buffer("slope", torch.tensor([PIECEWISE[n][1] for n in g.neurons], dtype=torch.float32))  # (K,)
        self.register_buffer("psi", torch.zeros(0, 0) if psi is None else psi.detach().float().clone())  # (n_f, n): f = Psi x
        self.has_psi: bool = psi is not None
        self.K: int = g.layers
        self.J: int = int(self.qb.shape[1])
        self.metadata: str = metadata

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        Bb = b.to(self.Wb.dtype) @ self.Wb.t()  # (B, n); float64 (or any float) measurements are computed in float32
        xs = [torch.zeros_like(Bb)]  # xs[i] = x(i), x(0) = 0
        for k in range(1, self.K + 1):
            z = Bb
            if k > 1:
                xt = torch.zeros_like(Bb)
                for i in range(1, k):
                    xt = xt + self.w[k - 1, i - 1] * xs[i]
                z = Bb + xt @ self.Wx.t()
            sym, th = self.sym[k - 1], self.theta[k - 1]
            s = torch.sign(z) * sym + (1.0 - sym)
            u = s * torch.relu(s * z - th) + self.slope[k - 1] * torch.clamp(z - th, max=0.0)
            q = self.qb[k - 1]
            x = (1.0 - self.hk[k - 1] - q.sum()) * xs[k - 1] + self.hk[k - 1] * u
            for j in range(1, self.J + 1):
                if k - 1 - j > 0:  # x(0) = 0 adds nothing (its beta is in the first coefficient)
                    x = x + q[j - 1] * xs[k - 1 - j]
            xs.append(x)
        if self.has_psi:  # a setting with a synthesis basis: the signal f = Psi x(K)
            return xs[self.K] @ self.psi.t()
        return xs[self.K]


def pick_row(run: str | Path, name: str | None = None, rank: int | None = None) -> dict[str, Any]:
    """The row to export: by ``name``, or the ``rank``-th best by validation nmse_db among rows with saved parameters."""
    from nasdun.results import read_table

    if (name is None) == (rank is None):
        raise NasdunError("give exactly one of --name NAME or --rank N")
    path = Path(run) / "params.pt"
    if not path.is_file():
        raise NasdunError(f"no saved parameters at {str(path)!r}; expected a run of nasdun train or search (searches keep their top-k)")
    saved = set(torch.load(path, map_location="cpu", weights_only=True)["networks"])
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
        raise NasdunError(f"--rank {rank}; expected 1..{len(ok)} (the networks of this run trained to the end with saved parameters)")
    return dict(ok.iloc[rank - 1])


def export_network(run: str | Path, out: str | Path, name: str | None = None, rank: int | None = None, force: bool = False) -> dict[str, Any]:
    """Write row ``name`` (or the ``rank``-th best) of ``run`` to ``out`` as TorchScript; returns its metadata.

    A search that was promoted is exported from its promotion (``RUN/promoted``: the networks its verdict compares,
    trained under the promotion's protocol); otherwise from the run's own table and parameters."""
    from nasdun import __version__
    from nasdun.results import load_network
    from nasdun.verdict import display, preset_of
    from trainers.problems import get_setting

    out = Path(out)
    if out.is_dir():
        raise NasdunError(f"--out {str(out)!r} is a directory; expected a file path such as net.pt")
    if out.exists() and not force:
        raise NasdunError(f"--out {str(out)!r} exists; choose a new file (or pass --force)")
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
        "metrics": metrics, "run": str(Path(run).resolve()), "source": str(source.resolve()), "promoted": source == promoted,
        "nasdun_version": __version__,
        "input": f"b: (B, {s.m}) measurements, float32 (float64 is cast)", "n_out": n_out,
        "output": f"x: (B, {s.n}) float32 estimate, x(K) of the network" if psi is None else f"f: (B, {n_out}) float32 signal, Psi x(K)",
    }  # fmt: skip
    text = json.dumps(meta, sort_keys=True)
    with warnings.catch_warnings():  # TorchScript is deprecated in torch >= 2.10 but still the one format torch.jit.load reads
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(ExportedNetwork(model, text, psi))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        torch.jit.save(scripted, str(tmp), _extra_files={"nasdun.json": text})
        tmp.replace(out)
    return meta
