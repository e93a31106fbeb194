"""PyTorch layers minigrad does not implement, present so that a program which merely names one
(subclasses it, lists it) imports and runs; building one raises, saying so."""

from .module import Module


class Transformer(Module):
    """torch.nn.Transformer's name. minigrad has no Transformer (attention layers for recurrent
    models are in `models.attention`)."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            f"nn.Transformer: minigrad has no Transformer layer ({type(self).__name__} "
            "subclasses it); the recurrent layers are models.LSTM, models.GRU and models.RNN"
        )
