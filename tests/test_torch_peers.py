"""benchmarks/torch_peers.py: its lists of peers and of matrix products, the float64 agreement
of the GRU peers and of the custom LSTM cells, and its JSON report. The peers run in their own
processes, as the script runs them, at H=8."""

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lstm_lm  # noqa: E402
import numpy_baseline  # noqa: E402
import torch_peers as tp  # noqa: E402

H = 8
TOLERANCE = 1e-10


def test_peer_lists_follow_the_cell():
    assert tp.choose_peers("gru")[-1] == "torch_gru"
    assert tp.choose_peers("lstm", compiled=True)[-2:] == tp.COMPILED
    assert tp.choose_peers("lstm", custom=True)[-2:] == tp.CUSTOM
    assert tp.choose_peers("gru", subset=["numpy"]) == ["numpy"]
    with pytest.raises(ValueError, match="LSTM variants"):
        tp.choose_peers("gru", custom=True)
    with pytest.raises(ValueError, match="unknown peer"):
        tp.choose_peers("gru", subset=["torch_lstm"])
    assert set(tp.LAYER_KEYS) == set(lstm_lm.NAMES.values())


def _products_of_the_baseline(cell, monkeypatch):
    """(m, k, n) of every matrix product numpy_baseline's step makes, recorded as it runs."""
    products = []

    class Recorded(np.ndarray):
        def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
            if ufunc is np.matmul:
                a, b = inputs
                products.append((a.shape[0], a.shape[1], b.shape[1]))
            plain = [x.view(np.ndarray) if isinstance(x, Recorded) else x for x in inputs]
            if "out" in kwargs:
                kwargs["out"] = tuple(o.view(np.ndarray) for o in kwargs["out"])
            result = getattr(ufunc, method)(*plain, **kwargs)
            return result.view(Recorded) if isinstance(result, np.ndarray) else result

    class RecordingNumpy:  # numpy_baseline's `np`: every array it makes records its products
        def __getattr__(self, name):
            attr = getattr(np, name)
            if not callable(attr) or isinstance(attr, type):
                return attr

            def wrapped(*args, **kwargs):
                result = attr(*args, **kwargs)
                return result.view(Recorded) if type(result) is np.ndarray else result

            return wrapped

    monkeypatch.setattr(numpy_baseline, "np", RecordingNumpy())
    rng = np.random.default_rng(0)
    G = tp.GATES[cell]
    shapes = {
        "embed.weight": (tp.V, tp.E),
        "rnn.weight_ih_l0": (G * H, tp.E),
        "rnn.weight_hh_l0": (G * H, H),
        "rnn.bias_ih_l0": (G * H,),
        "rnn.bias_hh_l0": (G * H,),
        "fc.weight": (tp.V, H),
        "fc.bias": (tp.V,),
    }
    p = {k: rng.standard_normal(s).view(Recorded) for k, s in shapes.items()}
    tokens, targets = tp._data()
    h0 = np.zeros((tp.B, H)).view(Recorded)
    if cell == "gru":
        numpy_baseline.gru_lm(p, tokens, targets, h0)
    else:
        numpy_baseline.lstm_lm(p, tokens, targets, h0, h0)
    return products


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_matmul_shapes_are_the_products_the_baseline_makes(cell, monkeypatch):
    recorded = Counter(_products_of_the_baseline(cell, monkeypatch))
    # The baseline's embedding gradient is a one-hot product, a NumPy trick rather than a
    # product of the model (minigrad and PyTorch scatter-add): the floor leaves it out.
    recorded[(tp.V, tp.T * tp.B, tp.E)] -= 1
    assert +recorded == Counter(tp.matmul_shapes(H, tp.GATES[cell]))


@pytest.fixture(scope="module")
def lstm_weights(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("lstm") / "w.npz")
    tp.initial_weights("lstm", H, path)
    return path


def test_gru_peers_equal_the_numpy_baseline_in_float64(tmp_path):
    weights = str(tmp_path / "w.npz")
    tp.initial_weights("gru", H, weights)
    # The torch.compile peers run the eager peer's cell and loop: left out here, as compiling
    # takes a minute or more.
    checked = tp.check(tp.base_peers("gru"), "gru", H, weights, threads=1)
    assert checked.pop("numpy") == (None, None, 0.0)
    for peer, (diff, reference, _) in checked.items():
        assert reference == "numpy"
        assert diff < TOLERANCE, (peer, diff)


def test_custom_cells_equal_their_torch_twins_in_float64(lstm_weights):
    checked = tp.check(tp.CUSTOM, "lstm", H, lstm_weights, threads=1)
    for peer, (diff, reference, _) in checked.items():
        assert reference == tp.TWINS[peer]
        assert diff < TOLERANCE, (peer, diff)


def test_the_peephole_cell_without_peepholes_is_the_lstm(lstm_weights, tmp_path):
    """Checks the peephole cell against the NumPy LSTM, independently of its torch twin."""
    stored = dict(np.load(lstm_weights))
    assert all(np.abs(stored[k]).min() > 0 for k in tp.PEEPHOLE_KEYS)
    for key in tp.PEEPHOLE_KEYS:
        stored[key] = np.zeros_like(stored[key])
    weights = str(tmp_path / "no_peepholes.npz")
    np.savez(weights, **stored)

    def float64_run(peer):
        return tp._spawn(tp._run_args(peer, "lstm", H, weights, "--dtype", "float64"), 1)[0]

    cell, lstm = float64_run("minigrad_peephole"), float64_run("numpy")
    peephole_grads = {k: cell["grads"].pop(k) for k in tp.PEEPHOLE_KEYS}
    assert tp.max_difference(cell, lstm) < TOLERANCE
    assert all(np.abs(g).max() > 0 for g in peephole_grads.values())  # still learnable


def test_json_report_holds_every_measured_number(tmp_path, capsys):
    path = tmp_path / "report.json"
    args = ["--cell", "gru", "--hidden", str(H), "--rounds", "2", "--steps", "2"]
    tp.main([*args, "--peers", "numpy", "minigrad", "--json", str(path)])
    report = json.loads(path.read_text())
    assert (report["cell"], report["rounds"], report["steps"]) == ("gru", 2, 2)
    assert report["peers"] == ["numpy", "minigrad"] and report["threads"] == 1
    (size,) = report["sizes"]
    assert size["hidden"] == H
    assert size["step_gflop"] == tp.step_flops(H, 3) / 1e9
    for peer in report["peers"]:
        assert len(size["ms"][peer]) == len(size["process_s"][peer]) == 2
        assert size["median_ms"][peer] == np.median(size["ms"][peer]) > 0
    for lib in ("numpy", "torch"):
        assert size["gemm_floor_median_ms"][lib] == np.median(size["gemm_floor_ms"][lib]) > 0
    assert size["max_diff_float64"]["numpy"] is None
    assert size["max_diff_float64"]["minigrad"] < TOLERANCE
    assert size["checked_against"]["minigrad"] == "numpy"
    out = capsys.readouterr().out
    assert "| H | numpy | minigrad | GEMM floor NumPy |" in out and "Roofline" in out
