"""`torch.onnx`'s names, so that a program importing it runs until it actually exports.

minigrad has no ONNX exporter: its graphs are recorded op by op in Python and never traced into
a static graph, which is what an ONNX file describes.
"""


def export(model, args, f=None, *rest, **kwargs):
    raise NotImplementedError(
        f"onnx.export({type(model).__name__}, ...): minigrad has no ONNX export; save the "
        "weights with minigrad.save(model.state_dict(), path) instead"
    )
