"""The three long studies: memory_study, le_lm_table, translation.

Each runs end to end in its --quick mode; a second run of the same command finds every run
finished and trains nothing; a run stopped in the middle and started again ends exactly where an
uninterrupted one does (the checkpoints hold everything: model, optimizer, data generator,
carried state); the memory study's schedule spends its budget as it says; the language models
are matched in size; the translation data, tokenisation, split and BLEU are what they claim.
"""

import gzip
import hashlib
import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from example_modules import load_example

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    return load_example(name, "study_example_")


def png_or_told(out: Path, names, printed: str):
    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not installed" in printed
        return
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def interrupted_then_resumed(monkeypatch, train_call, stop_at_tick: int):
    """Run train_call() with a stop requested at its stop_at_tick-th checkpoint tick (it must
    raise Stop, leaving a checkpoint), then again to the end; returns the final result."""
    import study_runs

    original, ticks = study_runs.Run.tick, []

    def tick(self, state_fn):
        ticks.append(1)
        if len(ticks) == stop_at_tick:
            self.store.stop_requested = True
        return original(self, state_fn)

    monkeypatch.setattr(study_runs.Run, "tick", tick)
    with pytest.raises(study_runs.Stop) as stopped:
        train_call()
    monkeypatch.setattr(study_runs.Run, "tick", original)
    return stopped.value.args[0]


def same_run(a: dict, b: dict, fields):
    for f in fields:
        assert json.dumps(a[f]) == json.dumps(b[f]), f


# ----- memory_study ------------------------------------------------------------------------------
def test_memory_study_quick_and_a_second_run_trains_nothing(tmp_path, capsys):
    ms = load("memory_study")
    argv = ["--quick", "--out", str(tmp_path), "--no-progress"]
    metrics = ms.main(argv)
    printed = capsys.readouterr().out
    assert metrics["runs"] and metrics["complete"] and metrics["flush_denormals"] in (True, False)
    for r in metrics["runs"]:
        assert 1 <= r["steps"] <= 30 and r["cpu_s"] > 0
        assert r["solved"] == (r["stopped_by"] == "solved")
        if not r["diverged"]:
            m = r["test_metric"]
            assert (m >= 0) if r["task"] == "adding" else (0 <= m <= 1)
            assert r["solved"] == ((m < 0.01) if r["task"] == "adding" else (m > 0.95))
    md = (tmp_path / "results.md").read_text()
    for text in ("### adding", "### copy", "tanh RNN", "LSTM (chrono)", "notes' length", "1000"):
        assert text in md and text in printed
    png_or_told(tmp_path, ["memory_study.png"], printed)
    again = ms.main(argv)
    assert "starting" not in capsys.readouterr().out
    assert again["runs"] == metrics["runs"]


def test_memory_study_resumes_a_stopped_run_exactly(tmp_path, monkeypatch):
    ms = load("memory_study")
    import study_runs

    args = ms.parse_args(["--quick", "--steps", "24", "--eval-every", "4"])
    task = ms.Task("copy", 4, args, np.random.default_rng(3))
    plain = ms.train(study_runs.RunStore(tmp_path / "a"), "k", "lstm", task, args, 5)
    store = study_runs.RunStore(tmp_path / "b", every_s=0.0)  # a checkpoint at every update
    key = interrupted_then_resumed(
        monkeypatch, lambda: ms.train(store, "k", "lstm", task, args, 5), stop_at_tick=9
    )
    assert key == "k" and store.checkpoint_path("k").exists()
    store.stop_requested = False
    resumed = ms.train(store, "k", "lstm", task, args, 5)
    same_run(plain, resumed, ["curve", "steps", "test_metric", "solved_at_step"])
    assert not store.checkpoint_path("k").exists() and store.result("k") == resumed


def test_memory_study_stops_a_run_at_the_solve_threshold(tmp_path, monkeypatch):
    ms = load("memory_study")
    import study_runs

    args = ms.parse_args(["--quick", "--steps", "50", "--eval-every", "5"])
    task = ms.Task("adding", 4, args, np.random.default_rng(0))
    monkeypatch.setattr(task, "solved", lambda metric: True)
    r = ms.train(study_runs.RunStore(tmp_path), "k", "gru", task, args, 0)
    assert r["solved"] and r["solved_at_step"] == 5 == r["steps"] and r["stopped_by"] == "solved"


def fake(sched, args, outcomes):
    """results from {(task, setting, T): [solved per seed]}."""
    results = {}
    for (task, setting, T), solved in outcomes.items():
        for s, ok in enumerate(solved):
            results[sched.run_key(task, setting, T, s)] = dict(solved=ok)
    return results


def test_memory_study_schedule_spends_the_budget_near_the_limit():
    ms, sched = load("memory_study"), load("memory_schedule")
    args = ms.parse_args(["--lengths", "50", "100", "200", "--copy-lengths", "10", "50"])
    assert [p[2] for p in sched.plan(args) if p[:2] == ("copy", "gru")] == [10] * 3 + [50] * 3
    assert [p[2] for p in sched.plan(args) if p[:2] == ("adding", "gru")] == [
        50,
        50,
        50,
        100,
        100,
        100,
        200,
        200,
        200,
    ]
    copy_later = [k for k, p in enumerate(sched.plan(args)) if p[0] == "copy" and p[2] == 50]
    assert min(copy_later) > max(k for k, p in enumerate(sched.plan(args)) if p[2] == 10)
    ok = lambda *a: sched.eligible(results, "adding", "lstm", *a, args)
    results = fake(sched, args, {("adding", "lstm", 50): [True, False, True]})
    assert sched.status(results, "adding", "lstm", 50, args) == "solved"
    assert ok(100, 0) and ok(100, 2)  # solved by a majority: the next length runs
    results = fake(sched, args, {("adding", "lstm", 50): [True, False]})
    assert ok(50, 2) and not ok(100, 0)  # undecided: the third seed first
    results = fake(sched, args, {("adding", "lstm", 50): [False, False]})
    assert sched.status(results, "adding", "lstm", 50, args) == "failed"
    assert not ok(50, 2) and not ok(100, 0)  # decided: no third seed, no longer length
    args.stop_rule = "all"  # go on while any seed solves; stop only when every seed failed
    results = fake(sched, args, {("adding", "lstm", 50): [False, False, True]})
    assert ok(100, 0)
    assert sched.status(results, "adding", "lstm", 50, args, "majority") == "failed"
    assert sched.longest(results, "adding", "lstm", args) is None  # the table: majority only


def test_memory_study_verdicts_decide_each_claim_as_soon_as_they_can():
    ms, sched = load("memory_study"), load("memory_schedule")
    args = ms.parse_args(["--tasks", "adding", "--settings", "rnn", "lstm", "lstm-chrono"])
    verdict = lambda results, cell: next(
        line for line in sched.verdicts(results, args, False).splitlines() if f"| {cell} " in line
    )
    ok3, no2 = [True] * 3, [False, False]
    results = fake(
        ms,
        args,
        {
            ("adding", "rnn", 50): ok3,
            ("adding", "rnn", 100): no2,  # the claim is 100: failed at it, decided
            ("adding", "lstm", 200): ok3,
            ("adding", "lstm", 500): no2,
            ("adding", "lstm-chrono", 200): ok3,  # chrono may still reach 500: undecided
        },
    )
    assert "not reached at this budget (longest solved: 50)" in verdict(results, "rnn")
    assert "undecided yet (longest solved so far: 200)" in verdict(results, "lstm")
    results.update(fake(sched, args, {("adding", "lstm-chrono", 500): ok3}))
    assert "reached (solved T=500); longer lengths not run yet" in verdict(results, "lstm")
    results.update(fake(sched, args, {("adding", "lstm-chrono", 1000): [True]}))
    assert "reached (solved T=500); T=1000 undecided yet" in verdict(results, "lstm")
    results.update(fake(sched, args, {("adding", "lstm-chrono", 1000): [True, False, False]}))
    assert "reached (solved T=500); T=1000 failed" in verdict(results, "lstm")
    results.update(fake(sched, args, {("adding", "lstm-chrono", 1000): [True, True]}))
    assert "reached (solved T=1000): longer than the notes' limit" in verdict(results, "lstm")


def test_memory_study_verdicts_need_runs(capsys):
    """A study restricted with --settings/--lengths gives no verdict on what it never ran: a cell
    without a setting, or without a run, is "not run", and a claim past the lengths run is "not
    run" at that length, not "not reached"."""
    ms, sched = load("memory_study"), load("memory_schedule")
    args = ms.parse_args(["--tasks", "adding", "--settings", "lstm", "--lengths", "50", "100"])

    def runs(outcomes):
        results = fake(sched, args, outcomes)
        for key, r in results.items():
            task, setting = next((t, s) for t, s, _ in outcomes if key.startswith(f"{t}-{s}-T"))
            r.update(task=task, setting=setting, diverged=False, cpu_s=1.0, test_metric=0.1)
            r.update(solved_at_step=100 if r["solved"] else None)
        return results

    def verdict(text, cell):
        return next(line for line in text.splitlines() if line.startswith(f"| {cell} "))

    text, complete = sched.report({}, args)  # nothing run yet
    assert not complete
    assert "not run (no rnn setting in --settings)" in verdict(text, "rnn")
    assert "not run (no gru setting in --settings)" in verdict(text, "gru")
    assert "| not run yet" in verdict(text, "lstm")

    ok3 = [True] * 3
    text, complete = sched.report(runs({("adding", "lstm", 50): ok3}), args)
    assert not complete and "undecided yet (longest solved so far: 50)" in verdict(text, "lstm")

    results = runs({("adding", "lstm", 50): ok3, ("adding", "lstm", 100): ok3})
    text, complete = sched.report(results, args)
    assert complete and "not reached" not in text
    assert "T=500 not run (longest solved: 100; lengths run: 50, 100)" in verdict(text, "lstm")
    assert "not run (no rnn setting in --settings)" in verdict(text, "rnn")

    # a failure at a length up to the claim does decide it, --lengths restricted or not
    results = runs({("adding", "lstm", 50): ok3, ("adding", "lstm", 100): [False, False]})
    text, complete = sched.report(results, args)
    assert complete
    assert "not reached at this budget (longest solved: 50)" in verdict(text, "lstm")
    assert "not reached" not in verdict(text, "rnn") + verdict(text, "gru")


def test_results_files_are_replaced_whole(tmp_path):
    common = load("common")
    path = common.write_json(tmp_path / "metrics.json", {"a": 1})
    common.write_text(path, "replaced\n")
    assert path.read_text() == "replaced\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_memory_study_rnn_orth_is_the_tanh_rnn_with_an_orthogonal_recurrent_matrix(tmp_path):
    ms = load("memory_study")
    import minigrad as mg

    task = ms.Task("adding", 4, ms.parse_args(["--quick"]), np.random.default_rng(0))
    weights = {}
    for setting in ("rnn", "rnn-orth"):
        mg.manual_seed(7)
        rnn = ms.Model(setting, task, 8).rnn
        weights[setting] = rnn.weight_ih_l0.numpy().copy(), rnn.weight_hh_l0.numpy().copy()
        W = weights[setting][1]
        assert np.allclose(W @ W.T, np.eye(8), atol=1e-5) == (setting == "rnn-orth"), setting
    assert np.array_equal(weights["rnn"][0], weights["rnn-orth"][0])  # the rest: PyTorch's init
    argv = ["--quick", "--tasks", "adding", "--settings", "rnn-orth", "--out", str(tmp_path)]
    metrics = ms.main(argv + ["--no-progress"])
    assert metrics["runs"] and {r["setting"] for r in metrics["runs"]} == {"rnn-orth"}
    assert "| tanh RNN (orthogonal W_hh) |" in (tmp_path / "results.md").read_text()


def test_memory_study_a_second_learning_rate_gets_its_own_folder(tmp_path, monkeypatch):
    ms = load("memory_study")

    def output_folder(out, name, quick=False):  # common.output_folder, rooted in tmp_path
        folder = Path(out or tmp_path / name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    monkeypatch.setattr(ms, "output_folder", output_folder)
    default, other = ms.parse_args([]), ms.parse_args(["--lr", "1e-2"])
    assert ms.study_folder(default) == tmp_path / "memory_study"
    assert ms.study_folder(other) == tmp_path / "memory_study" / "lr0.01"
    given = ms.parse_args(["--lr", "1e-2", "--out", str(tmp_path / "x")])
    assert ms.study_folder(given) == tmp_path / "x"  # --out is taken as given
    import minigrad.optim as optim

    made, adam = [], optim.Adam
    monkeypatch.setattr(optim, "Adam", lambda params, lr: made.append(lr) or adam(params, lr=lr))
    argv = ["--quick", "--tasks", "adding", "--settings", "rnn", "--no-progress", "--out"]
    first = ms.main(argv + [str(tmp_path / "a"), "--lr", "0.01"])
    assert made and set(made) == {0.01} and first["settings"]["lr"] == 0.01
    # the folder is the lr 0.01 study's: another learning rate or size is refused, runs or report
    lr_refused = r"--lr 0.001 \(its runs: 0.01\)"
    for extra, refused in (
        (["--lr", "0.001"], lr_refused),
        (["--lr", "0.001", "--report"], lr_refused),
        (["--lr", "0.01", "--hidden", "9"], r"--hidden 9 \(its runs: 8\)"),
    ):
        made.clear()
        with pytest.raises(SystemExit, match="holds runs of other settings: " + refused):
            ms.main(argv + [str(tmp_path / "a"), *extra])
        assert not made
    assert ms.main(argv + [str(tmp_path / "a"), "--lr", "0.01"])["runs"] == first["runs"]


# ----- le_lm_table -------------------------------------------------------------------------------
def test_le_lm_table_quick_matched_sizes_and_a_second_run_trains_nothing(tmp_path, capsys):
    lm = load("le_lm_table")
    argv = ["--quick", "--out", str(tmp_path)]
    metrics = lm.main(argv)
    printed = capsys.readouterr().out
    runs = metrics["runs"]
    assert metrics["complete"] and len(runs) == 6 * 2  # the table's five kinds and the GRU
    lstm = next(r["parameters"] for r in runs if r["kind"] == "lstm")
    for r in runs:
        assert abs(r["parameters"] - lstm) <= 0.1 * lstm, r["shape"]
        assert r["steps"] == 6 or r["diverged"]
        assert r["diverged"] or (math.isfinite(r["val_bpc"]) and r["val_bpc"] > 0)
    assert {r["shape"] for r in runs if r["kind"] == "irnn1p"} == {
        r["shape"] for r in runs if r["kind"] == "rnn1p"
    }
    md = (tmp_path / "results.md").read_text()
    for text in ("IRNN, 4 layers", "tanh RNN, 1 layer + projection", "68.8", "The table's order"):
        assert text in md and text in printed
    png_or_told(tmp_path, ["le_lm_table.png"], printed)
    lm.main(argv)
    assert "starting" not in capsys.readouterr().out


def test_le_lm_table_models_match_the_tables_shapes():
    lm = load("le_lm_table")
    args = lm.parse_args([])
    lstm = lm.count(lm.build("lstm", 65, args))
    for kind, layers in (("irnn4", 4), ("rnn4", 4), ("irnn1p", 1), ("rnn1p", 1)):
        model = lm.build(kind, 65, args)
        assert model.rnn.num_layers == layers and abs(lm.count(model) - lstm) < 0.02 * lstm
        proj = None if model.projection is None else model.projection.out_features
        shape = (kind, 65, args.embed, model.rnn.hidden_size, layers, proj)
        assert lm.n_params(*shape) == lm.count(model)
        assert (model.projection is not None) == kind.endswith("p")
    assert lm.build("irnn4", 65, args).rnn.nonlinearity == "relu"
    assert lm.build("rnn4", 65, args).rnn.nonlinearity == "tanh"


@pytest.mark.parametrize("kind", ["lstm", "rnn4"])
def test_le_lm_table_resumes_a_stopped_run_exactly(kind, tmp_path, monkeypatch):
    lm = load("le_lm_table")
    import study_runs

    args = lm.parse_args(["--quick", "--steps", "14"])  # passes over the streams: state reset
    corpus = lm.load_corpus(args.data, quick=True)
    plain = lm.train(study_runs.RunStore(tmp_path / "a"), "k", kind, 3, corpus, args)
    store = study_runs.RunStore(tmp_path / "b", every_s=0.0)
    interrupted_then_resumed(
        monkeypatch, lambda: lm.train(store, "k", kind, 3, corpus, args), stop_at_tick=5
    )
    store.stop_requested = False
    resumed = lm.train(store, "k", kind, 3, corpus, args)
    same_run(plain, resumed, ["curve", "val_curve", "val_bpc", "steps"])


# ----- translation -------------------------------------------------------------------------------
def test_translation_quick_and_a_second_run_trains_nothing(tmp_path, capsys):
    tr = load("translation")
    argv = ["--quick", "--out", str(tmp_path)]
    metrics = tr.main(argv)
    printed = capsys.readouterr().out
    assert metrics["complete"] and set(metrics["runs"]) == {"attention-s0", "none-s0"}
    for r in metrics["runs"].values():
        for name in ("greedy", "beam"):
            assert 0 <= r[name]["bleu"] <= 100
            assert sum(n for _, n in r[name]["by_length"].values()) == 40
        assert r["steps"] == 8 and "case:lc" in r["signature"] and "tok:13a" in r["signature"]
    att, none = metrics["runs"]["attention-s0"], metrics["runs"]["none-s0"]
    assert att["parameters"] > none["parameters"]  # the same network plus W, U, v
    md = (tmp_path / "results.md").read_text()
    for text in ("with attention", "without attention", "BLEU greedy", "English words"):
        assert text in md and text in printed
    png_or_told(tmp_path, ["bleu_by_length.png", "learning_curves.png", "attention.png"], printed)
    saved = json.loads((tmp_path / "runs" / "attention-s0.json").read_text())
    assert len(saved["greedy"]["hypotheses"]) == 40
    for ex in saved["attention_examples"]:
        w = np.array(ex["attention"])
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
        assert w.shape[1] == len(ex["source"])
    tr.main(argv)
    assert "starting" not in capsys.readouterr().out


def test_translation_tokens_and_bleu():
    tr = load("translation")
    toks = tr.tokenize("Qu\u2019est-ce que c'est ? J'ai 3 ans.")
    assert toks == ["qu'", "est-ce", "que", "c'", "est", "?", "j'", "ai", "3", "ans", "."]
    assert tr.detokenize(toks) == "qu'est-ce que c'est ? j'ai 3 ans ."
    refs = [["le chat dort sur le lit.", "j'ai vu le chat sur le lit."], ["il pleut depuis hier !"]]
    hyps = ["j'ai vu le chat sur le lit .", "il pleut depuis hier !"]
    assert tr.bleu(hyps, refs)[0] == pytest.approx(100.0)  # each matches one reference
    assert tr.bleu(["le chien mange sur le lit .", "il neige"], refs)[0] < 30.0


def test_translation_split_keeps_every_english_sentence_on_one_side():
    tr = load("translation")
    pairs = tr.read_pairs(tr.DATA, quick=False)
    train, val, test = tr.split(pairs, 2000)
    test_en = {en for en, _ in test}
    assert len(test) == 2000 and not test_en & {en for en, _ in train}
    assert not test_en & {en for en, _ in val} and not {en for en, _ in val} & {
        en for en, _ in train
    }
    assert len(train) + len(val) + sum(len(frs) for _, frs in test) == len(pairs) == 76037
    again = tr.split(pairs, 2000)[2]
    assert again == test  # seeded


def test_the_tatoeba_copy_is_the_one_its_source_describes():
    folder = EXAMPLES / "data" / "tatoeba_eng_fra"
    source = (folder / "SOURCE.md").read_text(encoding="utf-8")
    assert "CC BY 2.0 FR" in source and "tatoeba.org" in source
    data = (folder / "eng-fra.txt.gz").read_bytes()
    stated = re.search(r"\bcompressed: [\d,]+ bytes, sha256 `([0-9a-f]{64})`", source).group(1)
    assert hashlib.sha256(data).hexdigest() == stated
    lines = gzip.decompress(data).decode("utf-8").splitlines()
    assert len(lines) == 76037 and all(line.count("\t") == 1 for line in lines)


def test_two_processes_share_a_folders_runs(tmp_path):
    import study_runs

    first, second = study_runs.RunStore(tmp_path), study_runs.RunStore(tmp_path)
    with first.claim("a") as mine, second.claim("a") as theirs, second.claim("b") as other:
        assert mine and not theirs and other  # one holder per run
    first.finish("a", {"x": 1})
    with second.claim("a") as again:
        assert not again  # finished meanwhile: nobody runs it again
    assert second.results() == {"a": {"x": 1}}


def test_subnormals_are_flushed_inside_the_block_only():
    import platform

    import study_runs

    tiny = np.float32(1e-38)  # normal; half of it is subnormal
    with study_runs.flushed_denormals() as on:
        inside = tiny * np.float32(0.5)
    outside = tiny * np.float32(0.5)
    assert outside == np.float32(5e-39) and outside > 0  # the default mode is back
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert on and inside == 0.0
    else:
        assert not on and inside == outside
