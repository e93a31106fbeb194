"""PyTorch programs run on minigrad with only their imports changed (and `nn.LSTM`/`nn.GRU`
spelled `models.LSTM`/`models.GRU`): the same source text is executed once with PyTorch and
once with minigrad, from the same initial weights, and the losses must agree.

The two programs follow the shape of PyTorch's own examples: the word-level language model of
pytorch/examples (embedding, LSTM, dropout, decoder, truncated BPTT with `repackage_hidden`,
gradient clipping, a hand-written SGD update), and the attention seq2seq of the "NLP From
Scratch: Translation with a Sequence to Sequence Network and Attention" tutorial (a GRU
encoder whose outputs are written into a preallocated tensor, `loss += criterion(...)`, greedy
decoding with `topk`).
"""

import textwrap

import numpy as np
import pytest
import torch

import minigrad

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
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p.grad, alpha=-LR)
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
