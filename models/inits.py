"""Gate-bias initialisations of the LSTM for long time lags.

An LSTM's memory lasts about 1 / (1 - f) steps, f the forget gate's value; with PyTorch's
U(-1/sqrt(H), 1/sqrt(H)) biases f starts near sigma(0) = 0.5 and the cell forgets within a
few steps until training raises it.

    forget_bias_init_(lstm, 1.0)   b_f = 1, so f starts near sigma(1) = 0.73 (Gers, Schmidhuber
                                   & Cummins 2000; Jozefowicz, Zaremba & Sutskever 2015)
    chrono_init_(lstm, t_max)      b_f ~ log(U(1, t_max - 1)) and b_i = -b_f: characteristic
                                   forgetting times spread over [1, t_max] (Tallec & Ollivier
                                   2018, "Can recurrent neural networks warp time?")

Both act on every layer and direction of a `models.LSTM`, or on an `LSTMCell`, in place, and
return it. The gate order is PyTorch's (i, f, g, o); the input and recurrent biases add, so the
value goes into bias_ih and the recurrent bias of the same gate is set to 0.
"""

import numpy as np

import minigrad as mg

__all__ = ["forget_bias_init_", "chrono_init_"]


def _gate_biases(lstm, owner):
    """[(bias_ih, bias_hh)] of every layer and direction, checked to be an LSTM's."""
    params = dict(lstm.named_parameters())
    pairs = [(p, params[name.replace("bias_ih", "bias_hh")]) for name, p in params.items()
             if name.startswith("bias_ih")]  # fmt: skip
    H = getattr(lstm, "hidden_size", None)
    if not pairs or H is None or any(p.shape != (4 * H,) for pair in pairs for p in pair):
        raise ValueError(f"{owner}: needs an LSTM or LSTMCell with biases, got {type(lstm)}")
    return pairs, H


def forget_bias_init_(lstm, value=1.0):
    """Set every forget-gate bias b_if + b_hf to `value` (b_if = value, b_hf = 0)."""
    pairs, H = _gate_biases(lstm, "forget_bias_init_")
    with mg.no_grad():
        for b_ih, b_hh in pairs:
            b_ih.data[H : 2 * H] = value
            b_hh.data[H : 2 * H] = 0.0
    return lstm


def chrono_init_(lstm, t_max):
    """Chrono initialisation: b_f = log(u), u ~ U(1, t_max - 1) per unit, and b_i = -b_f (both
    recurrent parts 0), drawn from minigrad's global generator (mg.manual_seed)."""
    if not t_max > 2:
        raise ValueError(f"chrono_init_: t_max must exceed 2, got {t_max!r}")
    pairs, H = _gate_biases(lstm, "chrono_init_")
    rng = mg.random.generator()
    with mg.no_grad():
        for b_ih, b_hh in pairs:
            b_f = np.log(rng.uniform(1.0, t_max - 1.0, H))
            b_ih.data[:H] = -b_f
            b_ih.data[H : 2 * H] = b_f
            b_hh.data[: 2 * H] = 0.0
    return lstm
