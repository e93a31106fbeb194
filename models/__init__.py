"""Recurrent architectures built only from minigrad's public API.

Nothing here is a recurrent op of the framework: every model unrolls its cell in a Python
loop of ordinary ops, and backpropagation through time is the generic `backward()` over the
unrolled graph. `models.reference_bptt` holds the same networks' BPTT derived by hand, in
NumPy, which the tests compare with autograd.
"""

from . import reference_bptt, tbptt
from .attention import AdditiveAttention, MultiplicativeAttention, masked_softmax
from .cells import GRUCell, LSTMCell, RNNCell
from .elman import ElmanRNN, OutputToHiddenRNN
from .heads import HierarchicalRNN, LanguageModel, SequenceClassifier, SequenceTagger
from .inits import chrono_init_, forget_bias_init_
from .layers import GRU, IRNN, LSTM, RNN, identity_init_, make_rnn
from .seq2seq import Hypothesis, Seq2Seq
from .tbptt import detach_state

__all__ = [
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    "IRNN",
    "identity_init_",
    "make_rnn",
    "forget_bias_init_",
    "chrono_init_",
    "ElmanRNN",
    "OutputToHiddenRNN",
    "AdditiveAttention",
    "MultiplicativeAttention",
    "masked_softmax",
    "Seq2Seq",
    "Hypothesis",
    "LanguageModel",
    "SequenceClassifier",
    "SequenceTagger",
    "HierarchicalRNN",
    "detach_state",
    "tbptt",
    "reference_bptt",
]
