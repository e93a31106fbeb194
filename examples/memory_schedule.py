"""The memory study's schedule and tables: which runs come next, when a setting counts as
having solved a length, and the verdict on each of the notes' feasible lengths. Kept apart from
the training loop of `memory_study.py` so that both stay short."""

from common import markdown_table

SETTINGS = ("rnn", "irnn", "irnn-sgd", "lstm", "lstm-b0", "lstm-chrono", "gru", "rnn-orth")
DEFAULT_SETTINGS = ["rnn", "irnn", "irnn-sgd", "lstm", "lstm-chrono", "gru"]
LABELS = {
    "rnn": "tanh RNN",
    "irnn": "IRNN (Adam)",
    "irnn-sgd": "IRNN (SGD, Le et al.)",
    "lstm": "LSTM (b_f = 1)",
    "lstm-b0": "LSTM (PyTorch init)",
    "lstm-chrono": "LSTM (chrono)",
    "gru": "GRU",
    "rnn-orth": "tanh RNN (orthogonal W_hh)",
}
CLAIM = {"rnn": 100, "lstm": 500, "gru": 1000}  # Huang's slides: "empirical feasible length"
CELL_OF = {s: s.split("-")[0] for s in SETTINGS}  # whose claim applies (none for the IRNN)


def run_key(task, setting, T, seed):
    return f"{task}-{setting}-T{T}-s{seed}"


# ----- the schedule ----------------------------------------------------------------------------
def need(args, rule=None) -> int:
    """Seeds that must solve a length: a majority (the tables' definition of solved), or one
    under --stop-rule all (which then schedules longer lengths more generously)."""
    return args.seeds // 2 + 1 if (rule or "majority") == "majority" else 1


def status(results, task, setting, T, args, rule=None):
    """'solved', 'failed' (no longer reachable), or 'open', for one setting at one length."""
    done = [results.get(run_key(task, setting, T, s)) for s in range(args.seeds)]
    solved = sum(1 for r in done if r and r["solved"])
    failed = sum(1 for r in done if r and not r["solved"])
    if solved >= need(args, rule):
        return "solved"
    return "failed" if failed > args.seeds - need(args, rule) else "open"


def eligible(results, task, setting, T, seed, args) -> bool:
    """Run this seed unless the setting failed the previous length or already failed this one
    (a seed still runs after a length is decided solved: it gives the spread)."""
    lengths, rule = lengths_of(args, task), args.stop_rule
    i = lengths.index(T)
    if i > 0 and status(results, task, setting, lengths[i - 1], args, rule) != "solved":
        return False
    return status(results, task, setting, T, args, rule) != "failed"


def plan(args):
    return [
        (task, setting, T, seed)
        for T in sorted(set(args.lengths) | set(args.copy_lengths))
        for seed in range(args.seeds)
        for task in args.tasks
        for setting in args.settings
        if T in lengths_of(args, task)
    ]


def lengths_of(args, task) -> list:
    return args.lengths if task == "adding" else args.copy_lengths


# ----- report ----------------------------------------------------------------------------------
def cell_text(r) -> str:
    if r["diverged"]:
        return "diverged"
    if r["solved"]:
        return f"{r['solved_at_step']}"
    return ("{:.3f}" if r["task"] == "adding" else "{:.2f}").format(r["test_metric"])


def longest(results, task, setting, args):
    solved = [
        T for T in lengths_of(args, task) if status(results, task, setting, T, args) == "solved"
    ]
    return max(solved, default=None)


def report(results, args) -> tuple:
    total = len(plan(args))
    done = len([k for k in results if k in {run_key(*p) for p in plan(args)}])
    open_left = sum(
        1 for p in plan(args) if run_key(*p) not in results and eligible(results, *p, args)
    )
    complete = open_left == 0
    parts = [
        f"Budget per run: at most {args.steps:,} updates of {args.batch} sequences or "
        f"{args.cpu_budget:,.0f} CPU seconds; hidden {args.hidden}; Adam lr {args.lr:g}, "
        f"clip {args.clip:g} (irnn-sgd: SGD lr {args.sgd_lr:g}, clip {args.sgd_clip:g}); "
        f"{args.seeds} seeds; solved at a length = solved in >= {need(args)} seeds.",
        (
            "All scheduled runs are done"
            if complete
            else f"**partial: {done} runs done, {open_left} of the next ones still to run**"
        )
        + f" ({total} in the full grid; runs "
        "past a failed length are not scheduled).",
    ]
    for task in args.tasks:
        rows = []
        for setting in args.settings:
            row = [LABELS[setting]]
            for T in lengths_of(args, task):
                rs = [results.get(run_key(task, setting, T, s)) for s in range(args.seeds)]
                texts = [cell_text(r) for r in rs if r]
                n_solved = sum(1 for r in rs if r and r["solved"])
                row.append(f"{n_solved}/{len(texts)}: " + ", ".join(texts) if texts else "-")
            best = longest(results, task, setting, args)
            cpu = sum(
                r["cpu_s"] for r in results.values() if (r["task"], r["setting"]) == (task, setting)
            )
            rows.append(row + ["none" if best is None else str(best), f"{cpu / 3600:.2f}"])
        what = "MSE < 0.01" if task == "adding" else f"accuracy > 0.95, S = {args.copy_symbols}"
        parts.append(
            f"### {task} ({what}): solved seeds / seeds run, then per seed the updates to solve "
            "or the final test metric\n\n"
            + markdown_table(
                ["setting", *(f"T={T}" for T in lengths_of(args, task)), "longest", "CPU h"], rows
            )
        )
    parts.append(
        "### The notes' feasible lengths at this budget\n\n" + verdicts(results, args, complete)
    )
    return "\n\n".join(parts), complete


def verdicts(results, args, complete) -> str:
    """One row per cell of the notes' claim and task. A verdict needs runs: a cell none of whose
    settings is in --settings, or whose settings have no run on the task, is "not run"; and
    "not reached" needs every setting of the cell to have failed a length up to the claim. A
    finished grid without such a failure (--lengths stopping short of the claim, or skipping
    it) says the claimed length was not run."""
    rows = []
    for cell, claim in CLAIM.items():
        settings = [s for s in args.settings if CELL_OF[s] == cell]
        for task in args.tasks:
            lengths = lengths_of(args, task)
            ran = [
                T
                for T in lengths
                if any(
                    results.get(run_key(task, s, T, seed))
                    for s in settings
                    for seed in range(args.seeds)
                )
            ]
            reach = {s: longest(results, task, s, args) or 0 for s in settings}
            best = max(reach.values(), default=0)
            nxt = next((T for T in lengths if T > claim), None)
            reachers = [s for s in settings if reach[s] >= claim] if nxt else []
            next_status = {status(results, task, s, nxt, args) for s in reachers}
            next_started = any(
                results.get(run_key(task, s, nxt, seed))
                for s in reachers
                for seed in range(args.seeds)
            )
            # every setting of the cell failed a length up to the claim: it cannot reach it
            all_stopped = bool(settings) and all(
                any(status(results, task, s, T, args) == "failed" for T in lengths if T <= claim)
                for s in settings
            )
            if not settings:
                verdict = f"not run (no {cell} setting in --settings)"
            elif not ran:
                verdict = "not run" + ("" if complete else " yet")
            elif best >= claim:
                verdict = f"reached (solved T={best})"
                if best > claim:
                    verdict += ": longer than the notes' limit"
                elif next_status == {"failed"}:
                    verdict += f"; T={nxt} failed"
                elif next_started:
                    verdict += f"; T={nxt} undecided yet"
                elif nxt:
                    verdict += "; longer lengths not run yet"
                else:
                    verdict += ", the study's longest length"
            elif all_stopped:
                verdict = f"not reached at this budget (longest solved: {best or 'none'})"
            elif complete:
                # nothing failed up to the claim, yet it was not solved: it was not in the grid
                verdict = (
                    f"T={claim} not run (longest solved: {best or 'none'}; lengths run: "
                    f"{', '.join(map(str, ran))})"
                )
            else:
                verdict = f"undecided yet (longest solved so far: {best or 'none'})"
            rows.append([cell, task, claim, verdict])
    return markdown_table(["cell (best setting)", "task", "notes' length", "this study"], rows)
