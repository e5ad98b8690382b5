"""Problems given by an operator and data: problem files, a synthesis basis, natural-image CS, ISTA / FISTA."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from nasdun.interfaces.cli import main
from search_spaces.presets import preset
from trainers.problems.make import make_problem
from trainers.problems.operators import IMAGE_CS50, OperatorSetting, load_problem_file
from trainers.protocols import get_protocol

SMOKE = get_protocol("smoke")


def _problem_file(tmp_path, name="p.yaml", **data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _train(problem, genotypes, proto=SMOKE):
    from trainers.population import train_population

    return train_population(genotypes, problem, proto)


def test_dct_basis_is_orthonormal_and_scipys_2d_dct():
    from scipy.fft import dctn

    from trainers.problems.images import dct_basis

    psi = dct_basis(8)
    np.testing.assert_allclose(psi.T @ psi, np.eye(64), atol=1e-12)
    patch = np.random.default_rng(0).random((8, 8))
    np.testing.assert_allclose(psi.T @ patch.ravel(), dctn(patch, norm="ortho").ravel(), atol=1e-12)


def test_test_images_are_whole_held_out_and_tile_exactly():
    from trainers.problems.images import assemble, blocks, cropped

    s = IMAGE_CS50
    assert not set(s.test_images) & (set(s.train_images) | set(s.val_images)) and "camera" in s.test_images
    assert not set(s.train_images) & set(s.val_images)
    for name in s.test_images:
        img = cropped(name, 16)
        assert img.shape[0] % 16 == 0 and img.shape[1] % 16 == 0 and 0 <= img.min() and img.max() <= 1
        np.testing.assert_array_equal(assemble(blocks(name, 16), img.shape, 16), img)
    assert sum(blocks(n, 16).shape[0] for n in s.test_images) == s.n_test


def test_a_problem_file_without_a_basis_is_the_synthetic_maths_exactly(tmp_path):
    """phi.npy = small's D and its signals as files: the same measurements, and a LISTA trained on either
    gives the same table (no basis: f = x, today's maths)."""
    small = make_problem("small", seed=0, batch_size=64, dtype=torch.float64)
    np.save(tmp_path / "phi.npy", small.D.numpy())
    for split in ("train", "val", "test"):
        np.save(tmp_path / f"{split}.npy", getattr(small, split).x.numpy())
    path = _problem_file(tmp_path, phi="phi.npy", signals={s: f"{s}.npy" for s in ("train", "val", "test")})
    mine = make_problem(str(path), seed=0, batch_size=64, dtype=torch.float64)
    assert mine.psi is None and mine.setting.seed == small.setting.seed
    for split in ("train", "val", "test"):
        torch.testing.assert_close(getattr(mine, split).b, getattr(small, split).b, rtol=0, atol=1e-12)
    a = _train(make_problem("small", seed=0, batch_size=64), [preset("lista", 3)])[0]
    b = _train(make_problem(str(path), seed=0, batch_size=64), [preset("lista", 3)])[0]
    assert a.val_nmse_db == pytest.approx(b.val_nmse_db, abs=1e-4) and a.test_nmse_db == pytest.approx(b.test_nmse_db, abs=1e-4)
    assert a.iterations == b.iterations


def test_an_orthonormal_basis_scores_the_signal_as_the_code(tmp_path):
    """With Psi the 2-D DCT (orthonormal), NMSE of f = Psi x equals NMSE of x: the same network trained on
    (Phi, Psi) and on (Phi Psi, no basis) reaches the same values, through the basis in loss and scores."""
    from trainers.problems.images import dct_basis

    phi = np.random.default_rng(3).standard_normal((24, 64)) / np.sqrt(24)
    np.save(tmp_path / "phi.npy", phi)
    np.save(tmp_path / "a.npy", phi @ dct_basis(8))
    model = {"p": 0.1, "n_train": 1024, "n_val": 256, "n_test": 256}
    with_basis = make_problem(str(_problem_file(tmp_path, "b.yaml", phi="phi.npy", basis="dct", synthetic=model)), batch_size=64)
    without = make_problem(str(_problem_file(tmp_path, "c.yaml", phi="a.npy", synthetic=model)), batch_size=64)
    assert with_basis.psi is not None and with_basis.val.x.shape == (256, 64)
    torch.testing.assert_close(with_basis.D, without.D)
    torch.testing.assert_close(with_basis.val.x, without.val.x @ with_basis.psi.T)  # the same codes, seen as signals
    r1, r2 = _train(with_basis, [preset("lista", 3)])[0], _train(without, [preset("lista", 3)])[0]
    assert r1.val_nmse_db == pytest.approx(r2.val_nmse_db, abs=2e-3) and r1.test_nmse_db == pytest.approx(r2.test_nmse_db, abs=2e-3)


def _bad_cases(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "phi.npy", rng.standard_normal((10, 16)))
    np.save(tmp_path / "sig.npy", rng.standard_normal((200, 16)))
    np.save(tmp_path / "short.npy", rng.standard_normal((200, 15)))
    np.save(tmp_path / "nan.npy", np.full((10, 16), np.nan))
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    np.save(tmp_path / "psi.npy", rng.standard_normal((12, 20)))
    np.savez(tmp_path / "two.npz", a=np.zeros((10, 16)), b=np.zeros((10, 16)))
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    np.save(tmp_path / "complex.npy", rng.standard_normal((10, 16)) + 1j)
    np.save(tmp_path / "bool.npy", rng.random((10, 16)) > 0.5)
    np.save(tmp_path / "text.npy", rng.standard_normal((10, 16)).astype(str))
    np.save(tmp_path / "record.npy", np.zeros((10, 16), dtype=[("a", "f8"), ("b", "f8")]))
    np.save(tmp_path / "zeros.npy", np.zeros((10, 16)))
    np.save(tmp_path / "norows.npy", np.zeros((0, 16)))
    from numpy.lib import format as npy

    with open(tmp_path / "claims.npy", "wb") as fh:  # a header that claims a 72 TiB array over 1 KB of data
        npy.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (3_000_000, 3_000_000)})
        fh.write(np.zeros(128).tobytes())
    with open(tmp_path / "truncated.npy", "wb") as fh:
        npy.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (10, 16)})
        fh.write(np.zeros(20).tobytes())
    sig = {"train": "sig.npy", "val": "sig.npy", "test": "sig.npy"}
    return {
        "not a zip": ({"phi": "junk.npz", "signals": sig}, "junk.npz", "cannot be read as a numpy array"),
        "complex": ({"phi": "complex.npy", "signals": sig}, "complex.npy", "(complex); expected real numbers"),
        "boolean": ({"phi": "bool.npy", "signals": sig}, "bool.npy", "(boolean); expected real numbers"),
        "numeric text": ({"phi": "text.npy", "signals": sig}, "text.npy", "(text); expected real numbers"),
        "structured": ({"phi": "record.npy", "signals": sig}, "record.npy", "(a structured record); expected real numbers"),
        "all zeros": ({"phi": "zeros.npy", "signals": sig}, "zeros.npy", "is all zeros"),
        "zero rows": ({"phi": "norows.npy", "signals": sig}, "norows.npy", "shape (0, 16)"),
        "a huge header": ({"phi": "claims.npy", "signals": sig}, "claims.npy", "declares shape (3000000, 3000000) (9,000,000,000,000 entries)"),
        "a truncated file": ({"phi": "truncated.npy", "signals": sig}, "truncated.npy", "(1,280 bytes) but the file holds 160"),
        "missing file": ({"phi": "nope.npy", "signals": sig}, "phi file", "does not exist"),
        "not numpy": ({"phi": "junk.npy", "signals": sig}, "junk.npy", "cannot be read as a numpy array"),
        "3-D": ({"phi": "cube.npy", "signals": sig}, "cube.npy", "expected 2-D"),
        "NaN": ({"phi": "nan.npy", "signals": sig}, "nan.npy", "160 NaN or infinite entries"),
        "two arrays in an npz": ({"phi": "two.npz", "signals": sig}, "two.npz", "expected exactly one"),
        "basis does not fit": ({"phi": "phi.npy", "basis": "psi.npy", "signals": sig}, "psi.npy", "has 12 rows; expected n_f = 16"),
        "signals of the wrong length": ({"phi": "phi.npy", "signals": {**sig, "val": "short.npy"}}, "short.npy", "length 15; expected n_f = 16"),
        "a missing split": (
            {"phi": "phi.npy", "signals": {"train": "sig.npy", "val": "sig.npy"}},
            "p.yaml",
            "expected files for each of train, val, test",
        ),
        "unknown key": ({"phi": "phi.npy", "signals": sig, "noise": 3}, "p.yaml", "unknown key(s) ['noise']"),
        "no data": ({"phi": "phi.npy"}, "p.yaml", "expected exactly one of signals"),
        "bad probability": ({"phi": "phi.npy", "synthetic": {"p": 2}}, "p.yaml", "synthetic.p=2"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing file", "not numpy", "3-D", "NaN", "two arrays in an npz", "basis does not fit", "signals of the wrong length", "a missing split",
     "unknown key", "no data", "bad probability", "not a zip", "complex", "boolean", "numeric text", "structured", "all zeros", "zero rows",
     "a huge header", "a truncated file"],
)  # fmt: skip
def test_a_bad_problem_file_is_one_line_naming_the_file(case, tmp_path, capsys):
    data, names, says = _bad_cases(tmp_path)[case]
    path = _problem_file(tmp_path, **data)
    out = tmp_path / "run"
    assert main(["train", "--arch", "lista", "--layers", "2", "--protocol", "smoke", "--setting", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err and says in err, err
    assert not out.exists()


def test_dct_needs_a_square_signal_length(tmp_path):
    np.save(tmp_path / "phi.npy", np.ones((4, 12)))
    with pytest.raises(Exception, match="basis: dct needs square patches, n_f a square number; phi has 12 columns"):
        load_problem_file(_problem_file(tmp_path, phi="phi.npy", basis="dct", synthetic={"p": 0.1}))


@pytest.mark.slow
def test_an_own_problem_searches_from_one_yaml_and_a_resume_refuses_changed_data(tmp_path, capsys):
    """A fixed-mask inpainting operator (a selection matrix) with the DCT as basis, made in a few lines of numpy;
    `nasdun search` runs on it, the run records the data's digest, and a resume after the data changed is refused."""
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(64, size=40, replace=False))
    np.save(tmp_path / "mask.npy", np.eye(64)[keep])  # 40 of 64 pixels of an 8x8 patch observed
    path = _problem_file(tmp_path, "inpaint.yaml", phi="mask.npy", basis="dct", synthetic={"p": 0.15, "n_train": 1024, "n_val": 256, "n_test": 256})
    out = tmp_path / "s"
    args = [
        "search",
        "--setting",
        str(path),
        "--layers",
        "3",
        "--protocol",
        "smoke",
        "--budget",
        "4",
        "--cohort",
        "2",
        "--num-cpus",
        "2",
        "--promote-top",
        "0",
    ]
    assert main([*args, "--out", str(out)]) == 0
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and (df["status"] == "ok").all() and set(df["setting"]) == {str(path.resolve())}
    assert json.loads((out / "problem.json").read_text())["digest"] == load_problem_file(path).digest
    np.save(tmp_path / "mask.npy", np.eye(64)[keep[:-1]])  # one pixel fewer: other data
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--budget", "6", "--num-cpus", "2"]) == 2
    err = capsys.readouterr().err
    assert "the data changed" in err and "inpaint.yaml" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """LISTA and Dense-LISTA at K = 2 on image_cs50 (training set cut to 1,024 patches for the test's sake)."""
    from trainers.problems.make import register

    register(replace(IMAGE_CS50, name="image_cs50_tiny", n_train=1024, n_val=256, description="image_cs50, 1,024 training patches (tests)"))
    run = tmp_path_factory.mktemp("img") / "run"
    assert main(["train", "--arch", "lista,dense", "--layers", "2", "--protocol", "smoke", "--setting", "image_cs50_tiny", "--out", str(run)]) == 0
    return run


def test_an_image_setting_reports_each_test_images_psnr_as_scikit_image_computes_it(image_run):
    from skimage.metrics import peak_signal_noise_ratio

    from nasdun.runs.results import load_network
    from trainers.problems.images import assemble, cropped

    df = pd.read_csv(image_run / "results.csv")
    problem = make_problem("image_cs50_tiny", 0, batch_size=64)
    model = load_network(image_run, "lista")
    with torch.no_grad():
        f = problem.synthesize(model(problem.test.b, 2)[-1][0]).double().numpy()
    first = 0
    for name in IMAGE_CS50.test_images:
        img = cropped(name, 16)
        count = img.size // 256
        est = np.clip(assemble(f[first : first + count], img.shape, 16), 0, 1)
        first += count
        assert df.loc[df["name"] == "lista", f"psnr_{name}"].item() == pytest.approx(peak_signal_noise_ratio(img, est, data_range=1.0), abs=1e-3)
    lista = df[df["name"] == "lista"].iloc[0]
    assert lista["test_psnr"] == pytest.approx(np.mean([lista[f"psnr_{n}"] for n in IMAGE_CS50.test_images]))


@pytest.mark.slow
def test_reconstruct_draws_every_method_and_agrees_with_the_table(image_run, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["reconstruct", str(image_run), "--image", "camera", "--iterations", "30", "--out", str(out)]) == 0
    rec = json.loads((out / "reconstruct-camera.json").read_text())
    assert (out / "reconstruct-camera.png").stat().st_size > 10_000
    labels = list(rec["psnr_db"])
    assert labels[0].startswith("back-projection") and any(k.startswith("FISTA") for k in labels) and any(k.startswith("ISTA") for k in labels)
    lista = next(k for k in rec["networks"] if k.startswith("LISTA"))  # "LISTA", or "LISTA (the run's best)"
    assert rec["networks"][lista] == "lista" and len(set(rec["networks"].values())) == len(rec["networks"])  # no network twice
    df = pd.read_csv(image_run / "results.csv").set_index("name")
    assert rec["psnr_db"][lista] == pytest.approx(df.loc["lista", "psnr_camera"], abs=1e-3)  # the panel is the row's network
    assert main(["reconstruct", str(image_run), "--image", "moon", "--out", str(tmp_path / "r2")]) == 2
    assert "not a test image of image_cs50_tiny" in capsys.readouterr().err

    alone = tmp_path / "lista-only"  # the run's best is LISTA itself: one panel for it, not two of the same network
    assert main(["train", "--arch", "lista", "--layers", "2", "--protocol", "smoke", "--setting", "image_cs50_tiny", "--out", str(alone)]) == 0
    assert main(["reconstruct", str(alone), "--image", "camera", "--iterations", "30", "--out", str(tmp_path / "r3")]) == 0
    rec = json.loads((tmp_path / "r3" / "reconstruct-camera.json").read_text())
    assert rec["networks"] == {"LISTA (the run's best)": "lista"} and not any(k.startswith("best:") for k in rec["psnr_db"])


def test_an_exported_image_network_outputs_the_signal(image_run, tmp_path):
    from nasdun.runs.results import load_network

    assert main(["export", str(image_run), "--name", "dense", "--out", str(tmp_path / "n.pt")]) == 0
    net = torch.export.load(str(tmp_path / "n.pt")).module()
    problem = make_problem("image_cs50_tiny", 0, batch_size=64)
    b = problem.test.b[:50]
    with torch.no_grad():
        want = problem.synthesize(load_network(image_run, "dense")(b, 2)[-1][0])
    got = net(b)
    assert got.shape == (50, 256)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_k_ista_steps_are_the_untrained_lista_and_fista_reaches_the_lasso_solution():
    """ISTA for K steps = K layers of the untrained LISTA (same lam); FISTA after many steps = scikit-learn's Lasso
    (an independent coordinate-descent solver) on 1/2 ||b - A x||^2 + lam ||x||_1, i.e. alpha = lam / m."""
    from sklearn.linear_model import Lasso

    from trainers.classical import solve
    from trainers.model import UnrolledLISTA

    problem = make_problem("small", seed=0, batch_size=64, dtype=torch.float64)
    b = problem.test.b[:20]
    net = UnrolledLISTA([preset("lista", 5)], problem.D, lam=0.4)
    with torch.no_grad():
        torch.testing.assert_close(solve(problem.D, b, 0.4, 5), net(b)[-1][0], rtol=1e-10, atol=1e-12)
    lam = 0.05
    x = solve(problem.D, b[:3], lam, 5000, fista=True)
    m = problem.D.shape[0]
    for i in range(3):
        ref = Lasso(alpha=lam / m, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(problem.D.numpy(), b[i].numpy()).coef_
        np.testing.assert_allclose(x[i].numpy(), ref, atol=1e-5)


def test_a_learned_basis_is_seeded_cached_and_unit_norm(tmp_path, monkeypatch):
    from trainers.problems.operators import learned_basis

    monkeypatch.setenv("NASDUN_CACHE", str(tmp_path / "cache"))
    s = OperatorSetting(name="t", description="t", m=32, n=48, n_signal=64, basis="learned", source="images", patch=8,
                        train_images=("brick",), learn_patches=400, learn_epochs=1)  # fmt: skip
    first = learned_basis(s)
    assert first.shape == (64, 48) and np.allclose(np.linalg.norm(first, axis=0), 1.0)
    assert len(list((tmp_path / "cache").glob("learned-*.npy"))) == 1
    np.testing.assert_array_equal(learned_basis(s), first)  # read back from the cache
    monkeypatch.setenv("NASDUN_CACHE", str(tmp_path / "other"))
    np.testing.assert_allclose(learned_basis(s), first, atol=1e-10)  # learned again from the same seed: the same atoms


def test_retrain_on_an_image_setting_tables_psnr_with_the_highest_best(image_run, tmp_path):
    out = tmp_path / "rt"
    args = [
        "retrain",
        "--arch",
        "dense",
        "--against",
        "lista",
        "--settings",
        "image_cs50_tiny",
        "--seeds",
        "1",
        "--layers",
        "3",
        "--protocol",
        "smoke",
    ]
    assert main([*args, "--out", str(out)]) == 0
    table = pd.read_csv(out / "table_psnr.csv").iloc[0]
    assert table["dense_mean"] != table["lista_mean"] and table["best"] == ("dense" if table["dense_mean"] > table["lista_mean"] else "lista")
    images = pd.read_csv(out / "table_psnr_images.csv")
    assert list(images["setting"]) == [f"image_cs50_tiny / {n}" for n in sorted(IMAGE_CS50.test_images)]
    assert "higher is better" in (out / "table_psnr.md").read_text()


def test_the_verdict_of_an_image_search_says_the_psnr_gain():
    from nasdun.runs.verdict import judge

    def row(name, preset, val, test, psnr):
        return {"name": name, "preset": preset, "status": "ok", "val_nmse_db": val, "test_nmse_db": test, "test_psnr": psnr, "hash": name}

    c = judge([row("t1", "", -20.5, -20.4, 27.31), row("t0", "lista", -20.0, -19.9, 27.05)])
    assert c["gain_test_psnr"] == pytest.approx(0.26)
    assert c["verdict"].endswith("on test 0.50 dB better; test PSNR 27.31 vs 27.05 dB (+0.26)")
    assert "PSNR" not in judge([{**row("t1", "", -20.5, -20.4, 1.0), "test_psnr": float("nan")}, row("t0", "lista", -20, -19.9, 2.0)])["verdict"]
