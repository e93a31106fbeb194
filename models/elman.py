"""The lecture notes' two recurrent networks with an output at every step, in their own names.

U: input-to-hidden weights, W: the recurrent weights, V: hidden-to-output weights, b and c the
biases. A batch is carried as rows, so the notes' `W h` (matrix times column vector) is
`matvec(W, h)` here, i.e. h @ W.T for every row h.

`ElmanRNN` has hidden-to-hidden recurrence (Goodfellow et al., fig. 10.3):

    a_t = b + W h_{t-1} + U x_t
    h_t = tanh(a_t)
    o_t = c + V h_t
    y^_t = softmax(o_t)          (the loss, e.g. F.cross_entropy(o_t, y_t), applies softmax)

`OutputToHiddenRNN` has recurrence only from the output at one step to the hidden units at
the next (fig. 10.4):

    h_t = tanh(b + W o_{t-1} + U x_t)      running free: the model's own previous output
    h_t = tanh(b + W y_{t-1} + U x_t)      teacher forcing: the previous *target* instead
    o_t = c + V h_t

Teacher forcing is what maximum likelihood asks for, and it decouples the time steps: with
y_{t-1} given, h_t depends on nothing computed at another step, so all T steps are computed at
once, with no loop and no backpropagation through time.
"""

import math

import numpy as np

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F

from .cells import check_sizes, float_input

__all__ = ["ElmanRNN", "OutputToHiddenRNN", "matvec"]


def matvec(M, v):
    """M v for every row vector v of a batch (v: (..., n), M: (m, n)) -> (..., m)."""
    return F.linear(v, M)


def _uniform(shape, bound):
    p = nn.Parameter(np.empty(shape, mg.get_default_dtype()))
    nn.init.uniform_(p, -bound, bound)
    return p


def _sequence(owner, x, size):
    """x (T, B, size) or unbatched (T, size) -> (x as (T, B, size), batched)."""
    x = float_input(owner, x)
    if x.ndim not in (2, 3) or x.shape[-1] != size:
        raise ValueError(
            f"{owner}: expected input of shape (seq, batch, {size}) or (seq, {size}), got {x.shape}"
        )
    return (x, True) if x.ndim == 3 else (x.unsqueeze(1), False)


class ElmanRNN(nn.Module):
    """Elman network with an output at every step, in the lecture notes' names:

        a_t = b + W h_{t-1} + U x_t
        h_t = tanh(a_t)
        o_t = c + V h_t

    U (hidden, input), W (hidden, hidden), V (output, hidden), b (hidden,), c (output,), all
    from U(-1/sqrt(hidden), 1/sqrt(hidden)). In `RNN`'s names: U = weight_ih_l0, W =
    weight_hh_l0, b = bias_ih_l0 + bias_hh_l0, and V, c a Linear head.

    forward(x, h0=None, return_hidden=False): x (T, B, input_size) or (T, input_size).
    Returns (o (T, B, output_size), h_T); with return_hidden also the list [h_1, ..., h_T]
    (call `retain_grad()` on them to read dL/dh_t after backward).
    """

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        check_sizes(
            "ElmanRNN", input_size=input_size, hidden_size=hidden_size, output_size=output_size
        )
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        k = 1.0 / math.sqrt(hidden_size)
        self.U = _uniform((hidden_size, input_size), k)
        self.W = _uniform((hidden_size, hidden_size), k)
        self.V = _uniform((output_size, hidden_size), k)
        self.b = _uniform((hidden_size,), k)
        self.c = _uniform((output_size,), k)

    def forward(self, x, h0=None, return_hidden=False):
        x, batched = _sequence("ElmanRNN", x, self.input_size)
        T, B, H = x.shape[0], x.shape[1], self.hidden_size
        if h0 is None:
            h = mg.zeros(B, H, dtype=x.dtype)
        else:
            h = float_input("ElmanRNN", h0, "h0")
            if h.shape != ((B, H) if batched else (H,)):
                raise ValueError(
                    f"ElmanRNN: h0 must have shape {(B, H) if batched else (H,)}, got {h.shape}"
                )
            h = h if batched else h.unsqueeze(0)
        U, W, V, b, c = self.U, self.W, self.V, self.b, self.c
        hidden = []
        for t in range(T):
            a = b + matvec(W, h) + matvec(U, x[t])  # a_t = b + W h_{t-1} + U x_t
            h = a.tanh()  # h_t = tanh(a_t)
            hidden.append(h)
        o = c + matvec(V, mg.stack(hidden))  # o_t = c + V h_t, for every t at once
        if not batched:
            o, h = o.squeeze(1), h.squeeze(0)
        return (o, h, hidden) if return_hidden else (o, h)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, {self.output_size}"


class OutputToHiddenRNN(nn.Module):
    """Recurrence from the output at one step to the hidden units at the next:

        h_t = tanh(b + W o_{t-1} + U x_t)      free running (the model's own output)
        h_t = tanh(b + W y_{t-1} + U x_t)      teacher forcing (the previous target)
        o_t = c + V h_t

    with nothing fed back at the first step (o_0 = y_0 = 0). `targets` says what the outputs
    are:
      'classes': o_t are logits over output_size classes and y_t integer classes. The fed-back
          vector is one_hot(y_{t-1}) under teacher forcing and one_hot(argmax o_{t-1}), the
          model's own prediction, when running free.
      'real': o_t and y_t are real vectors of size output_size, fed back as they are (running
          free, the gradient then flows back through the fed-back outputs).

    forward(x, y=None): x (T, B, input_size). With targets y ((T, B) classes or (T, B, K)
    vectors) it runs teacher-forced, all steps at once; without, it runs free, step by step.
    Returns o (T, B, output_size).
    """

    def __init__(self, input_size, hidden_size, output_size, targets="classes"):
        super().__init__()
        check_sizes(
            "OutputToHiddenRNN",
            input_size=input_size,
            hidden_size=hidden_size,
            output_size=output_size,
        )
        if targets not in ("classes", "real"):
            raise ValueError(
                f"OutputToHiddenRNN: targets must be 'classes' or 'real', got {targets!r}"
            )
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.targets = targets
        k = 1.0 / math.sqrt(hidden_size)
        self.U = _uniform((hidden_size, input_size), k)
        self.W = _uniform((hidden_size, output_size), k)  # output-to-hidden
        self.V = _uniform((output_size, hidden_size), k)
        self.b = _uniform((hidden_size,), k)
        self.c = _uniform((output_size,), k)

    def forward(self, x, y=None):
        x, batched = _sequence("OutputToHiddenRNN", x, self.input_size)
        if y is None:
            o = self.free_running(x)
        else:
            o = self.teacher_forced(x, self._targets(y, x, batched))
        return o if batched else o.squeeze(1)

    def _targets(self, y, x, batched):
        """The targets as vectors (T, B, K): one-hot for classes, as given for reals."""
        T, B, K = x.shape[0], x.shape[1], self.output_size
        if self.targets == "classes":
            arr = np.asarray(y.numpy() if isinstance(y, mg.Tensor) else y)
            arr = arr if batched else arr[:, None]
            if arr.shape != (T, B) or arr.dtype.kind not in "iu":
                raise ValueError(
                    f"OutputToHiddenRNN: class targets must be integers of shape {(T, B)}, "
                    f"got {arr.dtype} {arr.shape}"
                )
            if arr.min() < 0 or arr.max() >= K:
                raise ValueError(f"OutputToHiddenRNN: class targets must lie in [0, {K})")
            return mg.tensor(np.eye(K, dtype=x.dtype)[arr])
        y = float_input("OutputToHiddenRNN", y, "y")
        y = y if batched else y.unsqueeze(1)
        if y.shape != (T, B, K):
            raise ValueError(f"OutputToHiddenRNN: y must have shape {(T, B, K)}, got {y.shape}")
        return y

    def teacher_forced(self, x, y):
        """o for every step at once, given the targets y (T, B, K) as vectors."""
        U, W, V, b, c = self.U, self.W, self.V, self.b, self.c
        # [y_0 = 0, y_1, ..., y_{T-1}]: the target of the previous step, fed to each step
        y_prev = mg.cat([mg.zeros_like(y[:1]), y[:-1]], axis=0)
        h = (b + matvec(W, y_prev) + matvec(U, x)).tanh()  # h_t = tanh(b + W y_{t-1} + U x_t)
        return c + matvec(V, h)  # o_t = c + V h_t

    def free_running(self, x):
        """o step by step, each step fed the model's own previous output (or prediction)."""
        U, W, V, b, c = self.U, self.W, self.V, self.b, self.c
        T, B, K = x.shape[0], x.shape[1], self.output_size
        fed = mg.zeros(B, K, dtype=x.dtype)  # o_0 = 0
        outputs = []
        for t in range(T):
            h = (b + matvec(W, fed) + matvec(U, x[t])).tanh()  # h_t = tanh(b + W o_{t-1} + U x_t)
            o = c + matvec(V, h)  # o_t = c + V h_t
            outputs.append(o)
            if self.targets == "classes":  # feed back the prediction, one-hot (no gradient)
                fed = mg.tensor(np.eye(K, dtype=x.dtype)[o.numpy().argmax(axis=-1)])
            else:
                fed = o
        return mg.stack(outputs)

    def extra_repr(self):
        return (
            f"{self.input_size}, {self.hidden_size}, {self.output_size}, targets={self.targets!r}"
        )
