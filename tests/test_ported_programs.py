"""PyTorch programs on minigrad with only their imports changed, and the harness that runs
PyTorch's own programs the same way.

The first two tests are short programs written in this project after the shape of PyTorch's
own examples: the word-level language model of pytorch/examples (embedding, LSTM, dropout,
decoder, truncated BPTT with `repackage_hidden`, gradient clipping, the hand-written SGD update
`p.data.add_(p.grad, alpha=-lr)`), and the attention seq2seq of the "NLP From Scratch:
Translation with a Sequence to Sequence Network and Attention" tutorial (a GRU encoder whose
outputs are written into a preallocated tensor, `loss += criterion(...)`, greedy decoding with
`topk`). The same source text is executed once with PyTorch and once with minigrad (`nn.LSTM`
and `nn.GRU` spelled `models.LSTM`/`models.GRU`), from the same initial weights, and the losses
must agree.

The other tests check the harness in tests/ported/ that runs PyTorch's own programs from a
reader's clones of their repositories (which this repository does not carry): the launcher
(run_program.py), the comparison (program_runs.py) and the script (check_programs.py). Here
they run small programs written inline, in PyTorch's idiom, on both frameworks.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import minigrad

PORTED = Path(__file__).resolve().parent / "ported"
sys.path.insert(0, str(PORTED))
import check_programs  # noqa: E402
import program_runs  # noqa: E402
from program_runs import Mismatch, Script, compare  # noqa: E402
from run_program import source_with_overrides  # noqa: E402

TORCH_IMPORTS = """
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
LSTM, GRU = nn.LSTM, nn.GRU
"""

MINIGRAD_IMPORTS = """
import minigrad as torch
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import LSTM, GRU
"""

WORD_LM = """
class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nhid, self.nlayers = nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.decoder.out_features)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                weight.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


device = torch.device("cpu")
model = RNNModel(NTOKEN, 16, 24, 2).to(device)
load_initial_weights(model)
criterion = nn.NLLLoss()
data = torch.tensor(CORPUS, dtype=torch.long).view(-1, BSZ).to(device)
hidden = model.init_hidden(BSZ)
losses = []
for i in range(0, data.size(0) - 1, BPTT):
    seq_len = min(BPTT, len(data) - 1 - i)
    inputs, targets = data[i:i + seq_len], data[i + 1:i + 1 + seq_len].reshape(-1)
    model.zero_grad()
    hidden = repackage_hidden(hidden)
    output, hidden = model(inputs, hidden)
    loss = criterion(output, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-LR)
    losses.append(loss.item())
"""

SEQ2SEQ = """
class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = GRU(hidden_size, hidden_size)

    def forward(self, input, hidden):
        embedded = self.embedding(input).view(1, 1, -1)
        return self.gru(embedded, hidden)

    def initHidden(self):
        return torch.zeros(1, 1, self.hidden_size, device=device)


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, max_length):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attn = nn.Linear(hidden_size * 2, max_length)
        self.attn_combine = nn.Linear(hidden_size * 2, hidden_size)
        self.gru = GRU(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, input, hidden, encoder_outputs):
        embedded = self.embedding(input).view(1, 1, -1)
        attn_weights = F.softmax(self.attn(torch.cat((embedded[0], hidden[0]), 1)), dim=1)
        attn_applied = torch.bmm(attn_weights.unsqueeze(0), encoder_outputs.unsqueeze(0))
        output = torch.cat((embedded[0], attn_applied[0]), 1)
        output = F.relu(self.attn_combine(output).unsqueeze(0))
        output, hidden = self.gru(output, hidden)
        return F.log_softmax(self.out(output[0]), dim=1), hidden, attn_weights


def train(input_tensor, target_tensor, encoder, decoder, enc_opt, dec_opt, criterion):
    encoder_hidden = encoder.initHidden()
    enc_opt.zero_grad()
    dec_opt.zero_grad()
    encoder_outputs = torch.zeros(MAX_LENGTH, encoder.hidden_size, device=device)
    loss = 0
    for ei in range(input_tensor.size(0)):
        encoder_output, encoder_hidden = encoder(input_tensor[ei], encoder_hidden)
        encoder_outputs[ei] = encoder_output[0, 0]
    decoder_input = torch.tensor([[SOS]], device=device)
    decoder_hidden = encoder_hidden
    for di in range(target_tensor.size(0)):
        decoder_output, decoder_hidden, _ = decoder(decoder_input, decoder_hidden, encoder_outputs)
        if di % 2 == 0:  # teacher forcing on even steps, greedy on odd ones
            decoder_input = target_tensor[di]
        else:
            topv, topi = decoder_output.topk(1)
            decoder_input = topi.squeeze().detach()
        loss += criterion(decoder_output, target_tensor[di])
    loss.backward()
    enc_opt.step()
    dec_opt.step()
    return loss.item() / target_tensor.size(0)


device = torch.device("cpu")
encoder = EncoderRNN(VOCAB, 12).to(device)
decoder = AttnDecoderRNN(12, VOCAB, MAX_LENGTH).to(device)
load_initial_weights(encoder)
load_initial_weights(decoder)
enc_opt = optim.SGD(encoder.parameters(), lr=0.05)
dec_opt = optim.Adam(decoder.parameters(), lr=0.01)
criterion = nn.NLLLoss()
losses = []
for source, target in PAIRS:
    source = torch.tensor(source, dtype=torch.long, device=device).view(-1, 1)
    target = torch.tensor(target, dtype=torch.long, device=device).view(-1, 1)
    losses.append(train(source, target, encoder, decoder, enc_opt, dec_opt, criterion))
"""


def _initial_weights(framework, seed):
    """load_initial_weights(model): the same float64 weights by parameter name in both."""

    def load(model):
        rng = np.random.default_rng(seed + len(list(model.parameters())))
        state = {k: rng.uniform(-0.3, 0.3, tuple(v.shape)) for k, v in model.state_dict().items()}
        if framework == "torch":
            state = {k: torch.tensor(v) for k, v in state.items()}
        model.load_state_dict(state)

    return load


def _run(program, framework, constants):
    imports = TORCH_IMPORTS if framework == "torch" else MINIGRAD_IMPORTS
    namespace = dict(constants, load_initial_weights=_initial_weights(framework, 0))
    exec(compile(textwrap.dedent(imports + program), f"<{framework}>", "exec"), namespace)
    return np.array(namespace["losses"])


@pytest.fixture(autouse=True)
def float64():
    torch_default, mg_default = torch.get_default_dtype(), minigrad.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    minigrad.set_default_dtype(minigrad.float64)
    yield
    torch.set_default_dtype(torch_default)
    minigrad.set_default_dtype(mg_default)


def test_the_word_language_model_ports_with_its_imports_changed():
    corpus = (np.arange(4 * 36) * 7 % 30).tolist()  # a periodic text, quick to learn
    constants = dict(NTOKEN=30, BSZ=4, BPTT=7, LR=2.0, CORPUS=corpus)
    theirs = _run(WORD_LM, "torch", constants)
    ours = _run(WORD_LM, "minigrad", constants)
    assert len(ours) == 5 and ours[-1] < ours[0]  # it trains
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


def test_the_attention_seq2seq_tutorial_ports_with_its_imports_changed():
    rng = np.random.default_rng(1)
    pairs = [
        (
            rng.integers(2, 15, rng.integers(2, 6)).tolist() + [1],
            rng.integers(2, 15, rng.integers(2, 6)).tolist() + [1],
        )
        for _ in range(12)
    ]
    constants = dict(VOCAB=15, MAX_LENGTH=8, SOS=0, PAIRS=pairs)
    theirs = _run(SEQ2SEQ, "torch", constants)
    ours = _run(SEQ2SEQ, "minigrad", constants)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


# ----- the launcher, on programs written here -------------------------------------------------
def write_program(folder, text, name="main.py"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


# A tagger trained for `steps` steps (3 after the override), with random draws printed first.
TAGGER = """
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h, _ = self.lstm(x)
        return F.log_softmax(self.out(F.dropout(h, 0.25, self.training)), dim=-1)


torch.manual_seed(7)
drop = nn.Dropout(0.5)
print(torch.randn(2, 3), torch.rand(4), F.dropout(torch.ones(8), 0.5), drop(torch.ones(8)))
model = Tagger()
head = nn.Linear(2, 1)  # a library module the program does not subclass
optimizer = optim.SGD(model.parameters(), lr=0.5)
x, tags = torch.randn(5, 1, 3), torch.tensor([0, 1, 1, 0, 1])
steps = 40
for step in range(steps):
    optimizer.zero_grad()
    loss = F.nll_loss(model(x).view(5, 2), tags)
    loss.backward()
    optimizer.step()
    print("step", step, loss.item())
print(head(torch.rand(2)), {"steps": steps}, [0.5, None], x.size(0), tags.sum().item())
"""
THREE_STEPS = (Script("main.py", (), (("steps = 40", "steps = 3"),)),)


@pytest.fixture(scope="module")
def tagger_runs(tmp_path_factory):
    """(minigrad's record, PyTorch's record, the weights PyTorch's run saved) for TAGGER."""
    tmp = tmp_path_factory.mktemp("tagger")
    program = write_program(tmp / "program", TAGGER)
    ours, theirs = program_runs.run_both(program, THREE_STEPS, tmp / "runs")
    return ours, theirs, json.loads((tmp / "runs" / "weights.json").read_text())


def test_a_program_gives_pytorchs_numbers_on_minigrad(tagger_runs):
    ours, theirs, _ = tagger_runs
    assert ours["error"] is None and theirs["error"] is None, ours["output"] + theirs["output"]
    agreement = compare(ours, theirs)
    assert (agreement.losses, agreement.prints, agreement.modules) == (3, 5, 2)  # override
    assert agreement.tensor_relative_difference < program_runs.RTOL
    assert ours["prints"][-1][1:] == [{"dict": [["steps", 3]]}, [0.5, None], 5, 3]


def test_the_weights_are_pytorchs_captured_by_name(tagger_runs):
    """The program's own Tagger is captured when its constructor returns, the bare Linear at
    its first call; minigrad's run loads PyTorch's initial weights into both by name, so the
    first loss (before any update) is the same, and so are the final weights."""
    ours, theirs, saved = tagger_runs
    lstm = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert [(m["class"], list(m["state"])) for m in saved] == [
        ("Tagger", [f"lstm.{n}" for n in lstm] + ["out.weight", "out.bias"]),
        ("Linear", ["weight", "bias"]),
    ]
    assert np.shape(saved[0]["state"]["lstm.weight_ih_l0"]) == (16, 3)
    np.testing.assert_allclose(ours["losses"][0], theirs["losses"][0], rtol=1e-12)
    final = [{k: np.asarray(v) for k, v in m.items()} for m in ours["final_state"]]
    assert list(final[0]) == list(saved[0]["state"])
    moved = final[0]["out.weight"] - np.asarray(saved[0]["state"]["out.weight"])
    assert np.abs(moved).max() > 1e-3  # trained from PyTorch's weights, not just copied back
    np.testing.assert_array_equal(final[1]["weight"], saved[1]["state"]["weight"])  # untrained


def test_both_frameworks_draw_from_one_numpy_stream(tagger_runs):
    """After manual_seed(7), randn, rand and the dropout masks (F.dropout and nn.Dropout) are
    NumPy's default_rng(7) draws, in order, in both runs."""
    ours, theirs, _ = tagger_runs
    rng = np.random.default_rng(7)
    expected = [
        rng.standard_normal((2, 3)),
        rng.random(4),
        (rng.random(8) >= 0.5) * 2.0,
        (rng.random(8) >= 0.5) * 2.0,
    ]
    for record in (ours, theirs):
        printed = [np.asarray(p["tensor"]) for p in record["prints"][0]]
        for got, want in zip(printed, expected, strict=True):
            np.testing.assert_array_equal(got, want)
    assert 0 < expected[2].sum() < 16  # the masks drop some entries and keep some


# Which modules the imports gave, then an error on a known line (8).
IMPORTS_THEN_ERROR = """
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader
names = [type(torch.zeros(1)), nn.Linear, nn.LSTM, nn.GRU, F.relu, optim.Adam, DataLoader]
print([name.__module__ for name in names])
torch.ones(2, 3) @ torch.ones(2, 3)
print("not reached")
"""


def test_the_imports_resolve_to_minigrad_and_the_error_is_recorded(tmp_path):
    program = write_program(tmp_path / "program", IMPORTS_THEN_ERROR)
    ours, theirs = program_runs.run_both(program, [Script("main.py")], tmp_path / "runs")
    modules = {"torch": theirs["prints"][0][0], "minigrad": ours["prints"][0][0]}
    assert all(m.split(".")[0] == "torch" for m in modules["torch"]), modules
    packages = [m.split(".")[0] for m in modules["minigrad"]]
    assert packages == ["minigrad", "minigrad", "models", "models", *["minigrad"] * 3], modules
    for record, error in [(theirs, "RuntimeError"), (ours, "ValueError")]:
        stop = record["error"]
        assert (stop["file"], stop["line"], stop["type"]) == ("main.py", 8, error), stop
        assert stop["code"] == "torch.ones(2, 3) @ torch.ones(2, 3)"
        assert len(record["prints"]) == 1
    assert "(2, 3)" in ours["error"]["message"] and "matmul" in ours["error"]["message"]


# A loss that minigrad's run changes by 1 part in 10^7 (or 10^14 below the tolerance).
PERTURBED = """
import torch
import torch.nn as nn
on_minigrad = type(torch.zeros(1)).__module__.split(".")[0] == "minigrad"
model = nn.Linear(3, 1)
loss = model(torch.ones(4, 3)).pow(2).mean() * (1 + PERTURBATION * on_minigrad)
loss.backward()
"""


def test_a_perturbed_minigrad_run_fails_the_comparison(tmp_path):
    program = write_program(tmp_path / "program", PERTURBED)
    perturb = Script("main.py", (), (("PERTURBATION", "1e-7"),))
    ours, theirs = program_runs.run_both(program, [perturb], tmp_path / "runs")
    assert ours["error"] is None and theirs["error"] is None, ours["output"] + theirs["output"]
    relative = abs(ours["losses"][0] / theirs["losses"][0] - 1)
    assert 0.5e-7 < relative < 2e-7
    with pytest.raises(Mismatch, match=r"losses\[0\]"):
        compare(ours, theirs)


# ----- the comparison, on records made here ---------------------------------------------------
def record(losses=(1.0, 0.5), prints=(["epoch", 1, {"tensor": [1.0, 2.0]}],), state=None):
    state = [{"w": [[1.0, -2.0]]}] if state is None else state
    return {"losses": list(losses), "prints": [list(p) for p in prints], "final_state": state}


@pytest.mark.parametrize(
    "ours, where",
    [
        (record(losses=(1.0, 0.5 + 1e-8)), r"losses\[1\]"),
        (record(losses=(1.0,)), "losses: 1 here, 2"),
        (record(prints=(["epoch", 1, {"tensor": [1.0, 2.1]}],)), r"prints\[0\]\[2\]\[1\]"),
        (record(prints=(["epoch", 2, {"tensor": [1.0, 2.0]}],)), r"prints\[0\]\[1\]"),
        (record(prints=(["Epoch", 1, {"tensor": [1.0, 2.0]}],)), r"prints\[0\]\[0\]"),
        (record(prints=(["epoch", 1, {"tensor": [[1.0, 2.0]]}],)), "shape"),
        (record(state=[{"w": [[1.0, -2.0000001]]}]), r"final_state\[0\].w\[0, 1\]"),
        (record(state=[{"v": [[1.0, -2.0]]}]), r"final_state\[0\]: \['v'\] here"),
        (record(state=[]), "final_state: 0 modules here, 1"),
    ],
)
def test_each_kind_of_difference_is_a_mismatch(ours, where):
    with pytest.raises(Mismatch, match=where):
        compare(ours, record())


def test_differences_within_the_tolerance_and_timings_agree():
    ours = record(
        losses=(1.0 * (1 + 1e-12), 0.5),
        prints=(["epoch", 1, {"tensor": [1.0, 2.0 * (1 - 3e-11)]}], ["| 7m 2s | ms/batch 10.5"]),
    )
    theirs = record(prints=(["epoch", 1, {"tensor": [1.0, 2.0]}], ["| 0m 1s | ms/batch 3.25"]))
    agreement = compare(ours, theirs)
    assert agreement.loss_relative_difference == pytest.approx(1e-12, rel=1e-3)
    assert agreement.tensor_relative_difference == pytest.approx(3e-11, rel=1e-3)


def test_a_run_that_stopped_early_must_match_as_far_as_it_went():
    theirs = record(losses=(1.0, 0.5, 0.25))
    assert compare(record(losses=(1.0,), prints=()), theirs, complete=False).losses == 1
    with pytest.raises(Mismatch, match=r"losses\[0\]"):
        compare(record(losses=(1.1,), prints=()), theirs, complete=False)


def test_an_override_must_occur_exactly_once(tmp_path):
    path = tmp_path / "main.py"
    path.write_text("n = 10\nm = 10\n")
    assert source_with_overrides(path, [("m = 10", "m = 2")]) == "n = 10\nm = 2\n"
    for old in ("= 10", "k = 10"):
        with pytest.raises(ValueError, match=f"main.py: override '{old}' occurs"):
            source_with_overrides(path, [(old, "x")])


# ----- check_programs.py, on a clone made here ------------------------------------------------
def git(clone, *args):
    command = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout


def test_check_programs_runs_the_recorded_commit_and_reports_a_difference(
    tmp_path, monkeypatch, capsys
):
    """A clone whose recorded commit holds a program minigrad runs with PyTorch's numbers and
    whose working tree holds a perturbed one: the script runs the commit and passes, and with
    --working-tree it reports the difference and exits 1."""
    clone = tmp_path / "examples"
    write_program(clone / "tiny", PERTURBED.replace("PERTURBATION", "0.0"))
    git(clone, "init", "-q")
    git(clone, "add", ".")
    git(clone, "commit", "-q", "-m", "tiny")
    commit = git(clone, "rev-parse", "HEAD").strip()
    write_program(clone / "tiny", PERTURBED.replace("PERTURBATION", "1e-7"))
    override = (Script("main.py", (), (("torch.ones(4, 3)", "torch.ones(6, 3)"),)),)
    tiny = check_programs.Program(
        "examples", "tiny", commit, ("main.py",), override, why_changed="a bigger batch"
    )
    monkeypatch.setattr(check_programs, "PROGRAMS", {"tiny": tiny})
    arguments = ["--examples", str(clone), "--only", "tiny"]

    assert check_programs.main(arguments) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| program | source | lines changed beyond the imports |")
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:4] == [
        "tiny",
        f"examples: `tiny/main.py` at {commit[:12]}",
        "1: a bigger batch",
        "1 of 1; 0 prints, weights of 1 module",
    ]
    assert cells[5] == "same numbers"

    assert check_programs.main([*arguments, "--working-tree"]) == 1
    cells = [c.strip() for c in capsys.readouterr().out.splitlines()[2].strip("|").split("|")]
    assert cells[1].startswith("examples: `tiny/main.py` working tree (")
    assert cells[5].startswith("differs: losses[0]: "), cells
