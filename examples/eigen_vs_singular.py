"""Which condition on W predicts vanishing gradients: its eigenvalues or its singular values?

Minlie Huang's slides ("Recurrent Neural Networks", the vanishing/exploding gradient slide) state
both conditions for a linear recurrent net h_t = W h_{t-1}: "singular value of W < 1 =>
gradient vanishes, > 1 => explodes", and, quoting Pascanu, Mikolov & Bengio (2013), "it is
sufficient for the largest eigenvalue of the recurrent weight matrix to be smaller than 1 for
long term components to vanish (as t -> infinity)". The two differ exactly for matrices that
are far from normal: the spectral radius rho(W) (largest |eigenvalue|) governs the long-run
rate, ||W^T||^(1/T) -> rho(W) (Gelfand's formula), while the largest singular value sigma_1(W)
only bounds each step, ||W^T|| <= sigma_1^T, and with rho < 1 < sigma_1 the product can grow for
a while before it decays. As rho <= sigma_1 always, "rho > 1 > sigma_1" cannot occur.

For each condition this program builds --matrices random n x n matrices with a chosen rho and
sigma_1 (W = Q (L + s N) Q^T: Q random orthogonal, L diagonal with eigenvalues in [-rho, rho]
one of them rho, N strictly upper triangular Gaussian, s found by bisection so that
sigma_1(W) is the target) and measures the spectral norm of dh_T/dh_0 for T = 1..--steps:

    linear   h_t = W h_{t-1} + U x_t          dh_T/dh_0 = W^T
    tanh     h_t = tanh(W h_{t-1} + U x_t)    dh_T/dh_0 = prod_t diag(1 - h_t^2) W

x_t ~ N(0, 1) (4 inputs), U ~ N(0, s^2 / 4) for each s of --input-scales (the tanh net is
near-linear with small inputs and saturated with large ones), h_0 = 0. The Jacobians of every step
come from one forward-mode pass of minigrad (mg.jvp with n tangent directions through the
unrolled net), checked against the hand product in float64.

    python examples/eigen_vs_singular.py            # seconds
    python examples/eigen_vs_singular.py --quick    # the test suite runs this

Writes to --out (default examples/results/eigen_vs_singular/): results.md, metrics.json,
eigen_vs_singular.png.
"""

import argparse
import time

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from common import (
    add_common_arguments,
    markdown_table,
    output_folder,
    pyplot,
    save_figure,
    write_json,
    write_text,
)

import minigrad as mg

NAME = "eigen_vs_singular"
# (label, spectral radius, largest singular value)
CONDITIONS = (
    ("rho < 1, sigma_1 < 1", 0.9, 0.97),
    ("rho < 1 < sigma_1", 0.9, 3.0),
    ("rho = sigma_1 < 1 (normal)", 0.9, 0.9),
    ("1 < rho < sigma_1", 1.05, 1.5),
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(p, NAME)
    p.add_argument("--hidden", type=int, help="n, the state size (default 16)")
    p.add_argument("--steps", type=int, help="the longest T (default 200)")
    p.add_argument("--matrices", type=int, help="random matrices per condition (default 5)")
    p.add_argument(
        "--input-scales", type=float, nargs="+", default=[0.1, 1.0], help="U's scales (0.1 1)"
    )
    args = p.parse_args(argv)
    defaults = (
        dict(hidden=8, steps=40, matrices=2)
        if args.quick
        else dict(hidden=16, steps=200, matrices=5)
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def sigma1(W) -> float:
    return float(np.linalg.norm(W, 2))


def spectral_radius(W) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(W))))


def matrix_with(rho: float, sigma: float, n: int, rng) -> np.ndarray:
    """A real n x n matrix with spectral radius rho and largest singular value sigma."""
    if sigma < rho:
        raise ValueError(f"matrix_with: sigma_1 = {sigma} < rho = {rho} is impossible")
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = rng.uniform(-rho, rho, n)
    eig[0] = rho
    N = np.triu(rng.standard_normal((n, n)), 1)
    build = lambda s: Q @ (np.diag(eig) + s * N) @ Q.T
    lo, hi = 0.0, 1.0
    while sigma1(build(hi)) < sigma:
        hi *= 2
    for _ in range(100):  # sigma_1 grows monotonically enough in s for bisection
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sigma1(build(mid)) < sigma else (lo, mid)
    if sigma1(build(0.0)) > sigma:  # only when sigma == rho is asked of a normal matrix
        return build(0.0)
    return build(hi)


def unrolled(W, U, xs, tanh: bool):
    """h_1 .. h_T as a function of h_0, in minigrad: the net whose Jacobians are measured."""
    Wt, Ut = mg.tensor(W), mg.tensor(U)

    def run(h0):
        h, hs = h0, []
        for x in xs:
            a = Wt @ h + Ut @ mg.tensor(x)
            h = a.tanh() if tanh else a
            hs.append(h)
        return mg.stack(hs)

    return run


def as_array(t) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, mg.Tensor) else np.asarray(t)


def jacobian_norms(W, U, xs, tanh: bool):
    """||dh_T/dh_0||_2 for T = 1..len(xs) by forward mode, and the largest relative
    difference from the hand product prod_t diag(f'(a_t)) W."""
    n = W.shape[0]
    h0 = mg.zeros(n, dtype=mg.float64)
    hs, tangents = mg.jvp(unrolled(W, U, xs, tanh), (h0,), (np.eye(n),), batched=True)
    hs, J = as_array(hs), np.moveaxis(as_array(tangents), 0, -1)  # J[t] = dh_t/dh_0 (n, n)
    norms = np.linalg.norm(J, 2, axis=(1, 2))
    hand, worst = np.eye(n), 0.0
    for t in range(len(xs)):
        step = W * (1 - hs[t] ** 2)[:, None] if tanh else W
        hand = step @ hand
        worst = max(worst, float(np.abs(hand - J[t]).max() / max(np.abs(hand).max(), 1e-300)))
    return norms, worst


def nets(args):
    """(name, input scale) of the nets measured: the linear one, then tanh at each scale."""
    return [("linear", 1.0)] + [(f"tanh, inputs x{s:g}", s) for s in args.input_scales]


def measure(args):
    rng = np.random.default_rng(args.seed)
    n, T = args.hidden, args.steps
    out = {}
    for label, rho, sigma in CONDITIONS:
        rows = []
        for _ in range(args.matrices):
            W = matrix_with(rho, sigma, n, rng)
            U = rng.standard_normal((n, 4)) / 2
            xs = rng.standard_normal((T, 4))
            row = dict(rho=spectral_radius(W), sigma_1=sigma1(W))
            for kind, scale in nets(args):
                norms, diff = jacobian_norms(W, scale * U, xs, kind != "linear")
                row[kind] = dict(norms=norms, jvp_vs_hand=diff, **summarise(norms, T))
            rows.append(row)
        out[label] = dict(rho=rho, sigma_1=sigma, matrices=rows)
    return out


def summarise(norms, T) -> dict:
    """Peak, where it falls below 1 for good, and the per-step rate over the second half."""
    below = np.nonzero(norms >= 1)[0]
    half = T // 2
    tail = norms[T - 1] / norms[half - 1] if norms[half - 1] > 0 else 0.0
    return dict(
        peak=float(norms.max()),
        peak_T=int(norms.argmax()) + 1,
        last_T_at_or_above_1=int(below[-1]) + 1 if len(below) else 0,
        norm_at_T=float(norms[-1]),
        rate_second_half=float(tail ** (1 / (T - half))) if tail > 0 else 0.0,
    )


def span(values, fmt) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{lo:{fmt}}-{hi:{fmt}}"


def verdict(label, cond, args) -> str:
    """One line per condition: the range over its matrices, for each net."""
    parts = []
    for kind, _ in nets(args):
        xs = [m[kind] for m in cond["matrices"]]
        parts.append(
            f"{kind}: peak {span([x['peak'] for x in xs], '.3g')} at T = "
            f"{span([x['peak_T'] for x in xs], 'd')}, {span([x['norm_at_T'] for x in xs], '.3g')}"
            f" at T = {args.steps}, rate {span([x['rate_second_half'] for x in xs], '.3f')}"
        )
    return f"{label} (rho {cond['rho']}, sigma_1 {cond['sigma_1']}): " + "; ".join(parts) + "."


def table(results, args):
    rows, T = [], args.steps
    for label, cond in results.items():
        for kind, _ in nets(args):
            xs = [m[kind] for m in cond["matrices"]]
            rows.append(
                [
                    label,
                    kind,
                    f"{np.median([x['peak'] for x in xs]):.3g}",
                    f"{np.median([x['peak_T'] for x in xs]):.0f}",
                    f"{np.median([x['last_T_at_or_above_1'] for x in xs]):.0f}",
                    f"{np.median([x['norm_at_T'] for x in xs]):.3g}",
                    f"{np.median([x['rate_second_half'] for x in xs]):.3f}",
                ]
            )
    headers = ["condition", "net", "peak norm", "at T", "last T with norm >= 1"]
    headers += [f"norm at T={T}", "rate, 2nd half"]
    return markdown_table(headers, rows)


def plot(results, args, out):
    plt = pyplot()
    if plt is None:
        return None
    kinds = [kind for kind, _ in nets(args)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4.3), sharey=True)
    T = np.arange(1, args.steps + 1)
    for ax, kind in zip(axes, kinds, strict=True):
        for i, (label, cond) in enumerate(results.items()):
            for j, m in enumerate(cond["matrices"]):
                ax.semilogy(
                    T,
                    m[kind]["norms"],
                    color=f"C{i}",
                    alpha=0.6,
                    lw=1,
                    label=label if j == 0 else None,
                )
            if kind == "linear":
                ax.semilogy(T, cond["rho"] ** T, color=f"C{i}", ls=":", lw=1)
        ax.axhline(1, color="k", lw=0.6)
        ax.set(xlabel="T", title=f"{kind}: ||dh_T/dh_0||" + (" (dotted: rho^T)" * (ax is axes[0])))
        ax.set_ylim(1e-20, 1e8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("spectral norm")
    axes[0].legend(fontsize=8)
    return save_figure(fig, out / f"{NAME}.png")


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = output_folder(args.out, NAME, args.quick)
    started, cpu0 = time.perf_counter(), time.process_time()
    results = measure(args)
    T = args.steps
    worst = max(
        m[k]["jvp_vs_hand"] for c in results.values() for m in c["matrices"] for k, _ in nets(args)
    )
    lines = [verdict(label, results[label], args) for label, _, _ in CONDITIONS]
    off = max(
        abs(m["linear"]["rate_second_half"] - m["rho"])
        for c in results.values()
        for m in c["matrices"]
    )
    lines.append(
        f"Linear net: the per-step rate over the second half is within {off:.3f} of "
        "rho(W) for every matrix, whatever sigma_1 is."
    )
    lines.append("rho > 1 > sigma_1: impossible (rho <= sigma_1 for every matrix).")
    lines.append(
        f"Forward-mode Jacobians against the hand product: largest relative difference {worst:.2e}."
    )
    text = (
        f"n = {args.hidden}, {args.matrices} random matrices per condition, T = 1..{T}; "
        f"medians over the matrices:\n\n{table(results, args)}\n\n"
        + "\n".join(f"- {line}" for line in lines)
    )
    print(text)
    write_text(out / "results.md", f"# Eigenvalue against singular-value conditions\n\n{text}\n")
    figure = plot(results, args, out)
    metrics = dict(
        example=NAME,
        quick=args.quick,
        settings={k: str(v) if k == "out" else v for k, v in vars(args).items()},
        conditions=results,
        jvp_vs_hand_max_rel=worst,
        linear_rate_minus_rho_max=off,
        verdicts=lines,
        figure=None if figure is None else figure.name,
        cpu_s=time.process_time() - cpu0,
        wall_s=time.perf_counter() - started,
    )
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'results.md'}, {out / 'metrics.json'}, figure {figure}")
    return metrics


if __name__ == "__main__":
    main()
