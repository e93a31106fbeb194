"""Misuse fails early, with a message that names the op, the shapes involved and what to do."""

import re

import numpy as np
import pytest

import minigrad as mg


def _raises(exc, *fragments):
    """pytest.raises(exc) whose message must contain every fragment, literally."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# ----- shapes -------------------------------------------------------------------------------------
def test_add_of_incompatible_shapes_names_the_op_and_both_shapes():
    with _raises(ValueError, "add", "(2, 3)", "(4,)"):
        mg.zeros(2, 3) + mg.zeros(4)
    with _raises(ValueError, "mul", "(2, 3)", "(2,)"):
        mg.zeros(2, 3) * np.zeros(2)
    with _raises(ValueError, "maximum", "(3,)", "(2,)"):
        mg.maximum(mg.zeros(3), mg.zeros(2))
    with _raises(ValueError, "less", "(3,)", "(2,)"):
        _ = mg.zeros(3) < mg.zeros(2)


def test_matmul_of_misaligned_shapes_names_both_shapes():
    with _raises(ValueError, "matmul", "(2, 3)", "(4, 5)", "3 != 4"):
        mg.zeros(2, 3) @ mg.zeros(4, 5)
    with _raises(ValueError, "matmul", "(3,)", "(2,)"):
        mg.zeros(3) @ mg.zeros(2)
    with _raises(ValueError, "matmul", "(2, 3, 4)", "(3, 4, 5)", "batch dims"):
        mg.zeros(2, 3, 4) @ mg.zeros(3, 4, 5)
    with _raises(ValueError, "matmul", "at least 1-D"):
        mg.tensor(2.0) @ mg.zeros(3)


def test_cat_and_stack_of_mismatched_shapes():
    with _raises(ValueError, "cat", "(2, 3)", "(2, 4)"):
        mg.cat([mg.zeros(2, 3), mg.zeros(2, 4)], axis=0)
    with _raises(ValueError, "stack", "(2,)", "(3,)"):
        mg.stack([mg.zeros(2), mg.zeros(3)])
    with _raises(ValueError, "cat", "non-empty"):
        mg.cat([])


def test_reshape_expand_permute_squeeze_name_the_shapes():
    with _raises(ValueError, "reshape", "(2, 3)", "(4, 2)"):
        mg.zeros(2, 3).reshape(4, 2)
    with _raises(ValueError, "expand", "(2, 3)", "(4, 3)"):
        mg.zeros(2, 3).expand(4, 3)
    with _raises(ValueError, "permute", "(0, 0)"):
        mg.zeros(2, 3).permute(0, 0)
    with _raises(ValueError, "squeeze", "(2, 3)"):
        mg.zeros(2, 3).squeeze(0)


def test_where_of_incompatible_shapes_and_non_boolean_condition():
    with _raises(ValueError, "where", "(2,)", "(3,)"):
        mg.where(np.array([True, False]), mg.zeros(3), 0.0)
    with _raises(TypeError, "where", "boolean"):
        mg.where(np.array([1, 0]), mg.zeros(2), 1.0)


def test_reductions_reject_bad_axes_and_empty_extremes():
    with _raises(ValueError, "sum", "axis 2", "2 dims"):
        mg.zeros(2, 3).sum(axis=2)
    with _raises(ValueError, "mean", "repeated axis"):
        mg.zeros(2, 3).mean(axis=(0, -2))
    with _raises(ValueError, "max", "empty", "(0, 3)"):
        mg.zeros(0, 3).max(axis=0)
    with _raises(ValueError, "mean", "empty"):
        mg.zeros(0).mean()


def test_split_chunk_and_clip_arguments():
    with _raises(ValueError, "split", "[2, 2]", "(5,)"):
        mg.zeros(5).split([2, 2])
    with _raises(ValueError, "split", "positive"):
        mg.zeros(5).split(0)
    with _raises(ValueError, "chunk", "positive"):
        mg.zeros(5).chunk(0)
    with _raises(ValueError, "clip", "min 1", "max 0"):
        mg.zeros(2).clip(1.0, 0.0)


# ----- autograd misuse ----------------------------------------------------------------------------
def test_backward_on_a_non_scalar_needs_a_gradient():
    y = mg.zeros(2, 3, requires_grad=True) * 2
    with _raises(RuntimeError, "(2, 3)", ".sum()"):
        y.backward()
    with _raises(ValueError, "(3,)", "(2, 3)"):
        y.backward(np.ones(3))


def test_second_backward_through_a_freed_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with _raises(RuntimeError, "second time", "retain_graph=True"):
        loss.backward()


def test_backward_of_a_tensor_that_does_not_require_grad():
    with _raises(RuntimeError, "requires_grad=True"):
        (mg.ones(2) * 2).sum().backward()


def test_integer_tensors_cannot_require_grad():
    with _raises(TypeError, "int64", "float"):
        mg.tensor([1, 2], requires_grad=True)
    t = mg.arange(3)
    with _raises(TypeError, "float"):
        t.requires_grad = True
    assert t.float().dtype == np.float32  # the conversion the message suggests


def test_requires_grad_cannot_be_turned_off_on_a_computed_tensor():
    y = mg.ones(2, requires_grad=True) * 2
    with _raises(RuntimeError, "detach()"):
        y.requires_grad = False


def test_hooks_need_a_tensor_that_requires_grad():
    with _raises(RuntimeError, "register_hook", "require grad"):
        mg.ones(2).register_hook(lambda g: g)


def test_in_place_assignment_to_a_leaf_that_requires_grad():
    x = mg.ones(3, requires_grad=True)
    with _raises(RuntimeError, "setitem", "leaf", "no_grad"):
        x[0] = 5.0
    with mg.no_grad():
        x[0] = 5.0
    assert x.data[0] == 5.0


# ----- dtypes -------------------------------------------------------------------------------------
def test_unknown_dtypes_say_which_are_supported():
    with _raises(TypeError, "complex64", "float32", "float64"):
        mg.tensor([1.0], dtype="complex64")
    with _raises(TypeError, "bfloat16", "float32"):
        mg.tensor([1.0], dtype="bfloat16")  # NumPy has no such name
    with _raises(TypeError, "float16", "float32"):
        mg.zeros(2, dtype=np.float16)
    with _raises(TypeError, "complex"):
        mg.tensor([1 + 2j])


def test_default_dtype_must_be_floating():
    with _raises(TypeError, "set_default_dtype", "float dtype"):
        mg.set_default_dtype(int)
    with _raises(TypeError, "unsupported dtype", "float32, float64"):
        mg.set_default_dtype("bfloat16")
    assert mg.get_default_dtype() == np.float32  # unchanged by the failed calls


def test_gradcheck_wants_float64_inputs_that_require_grad():
    with _raises(TypeError, "float32", "float64"):
        mg.gradcheck(lambda t: t * 2, [mg.ones(2, requires_grad=True)])
    with _raises(ValueError, "requires_grad=True"):
        mg.gradcheck(lambda t: t * 2, [mg.ones(2, dtype=mg.float64)])


# ----- indexing -----------------------------------------------------------------------------------
def test_getitem_out_of_range_names_the_shape():
    x = mg.zeros(3, 4)
    with _raises(IndexError, "getitem", "(3, 4)"):
        x[3]
    with _raises(IndexError, "getitem", "(3, 4)"):
        x[:, -5]
    with _raises(IndexError, "getitem", "(3, 4)"):
        x[np.array([0, 7])]
    with _raises(IndexError, "getitem", "(3, 4)"):
        x[0, 0, 0]


def test_float_index_arrays_are_rejected():
    x = mg.zeros(3, 4)
    with _raises(IndexError, "integer or boolean", "float"):
        x[np.array([0.0, 1.0])]
    with _raises(IndexError, "integer or boolean", "float"):
        x[mg.tensor([0.0, 1.0])]
    with _raises(IndexError, "integer or boolean"):
        x[[0.5, 1.0], 0]


def test_unsupported_operands():
    with _raises(TypeError, "str"):
        mg.zeros(2) + "a"
    with _raises(ValueError, "ambiguous", "(2,)"):
        bool(mg.zeros(2))
    with _raises(ValueError, "item", "(2,)"):
        mg.zeros(2).item()
