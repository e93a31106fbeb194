"""Run ten of PyTorch's own programs on PyTorch and on minigrad, from your clones of
https://github.com/pytorch/examples and https://github.com/pytorch/tutorials, and print a
markdown table of what agreed.

    python tests/ported/check_programs.py --examples PATH --tutorials PATH [--only NAME ...]

The repository does not carry these programs: each is found by its path in those repositories
(`PROGRAMS` below). Where the clone holds the commit a program was checked at, its files are
taken from that commit (`git show`); otherwise, or with --working-tree, from the clone's
checked-out files, and the table says so.

Each program runs twice, each run in its own process (run_program.py): once on PyTorch, once
on minigrad, in float64, from PyTorch's own initial weights and with the same random draws. Its
source is executed as it is, with only its imports pointed at minigrad and, where a program
trains for hours, a few constants made smaller (each such replaced line is counted in the
table, with why). The data a program would download is synthesised (synthetic_data.py).
Every loss it called backward() on, everything it printed and the final weights of every module
it built are compared to a relative 1e-9 (program_runs.py), and a program that trains must
show it (the mean of its last k losses below that of its first k).

Exit status 1 when a program does not do what the table expects of it: give PyTorch's numbers
to the end, or, for the ones known to stop (`Stop`), the same numbers up to that line.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import program_runs
import synthetic_data
from program_runs import Mismatch, Script, compare, trained
from run_program import source_with_overrides

EXAMPLES, TUTORIALS = "examples", "tutorials"
EXAMPLES_AT = "77f55b912142e11fcfdf5b530231fb9c52f181e8"


@dataclass(frozen=True)
class Stop:
    """Where minigrad's run is known to stop (the line's code, the error's type), and why."""

    file: str
    code: str
    error: str
    why: str


@dataclass(frozen=True)
class Program:
    repository: str  # EXAMPLES or TUTORIALS
    folder: str  # the program's folder in that repository
    commit: str  # the commit it was checked at
    files: tuple[str, ...]  # the program's own files in that folder
    scripts: tuple[Script, ...]
    data: object = None  # writes the program's data into the run's working directory
    why_changed: str = ""  # why lines beyond the imports change (Script.overrides)
    trains_k: int | None = None  # the mean of the last k losses must be below the first k's
    stops_at: Stop | None = None


def one_script(file, *overrides):
    return (Script(file, (), tuple(overrides)),)


WLM_ARGS = ("--data", "data", "--emsize", "16", "--nhid", "16", "--epochs", "2", "--batch_size")
WLM_ARGS += ("4", "--bptt", "8", "--dropout", "0", "--log-interval", "5")
# This revision of the Bi-LSTM CRF tutorial concatenates 0-d tensors, which PyTorch refuses since
# 0.4 (it fails on PyTorch itself); the tutorial's later revisions add `.view(1)` at these two
# places, and so does this check.
CAT_OF_SCALARS = (
    (
        "alphas_t.append(log_sum_exp(next_tag_var))",
        "alphas_t.append(log_sum_exp(next_tag_var).view(1))",
    ),
    (
        "viterbivars_t.append(next_tag_var[0][best_tag_id])",
        "viterbivars_t.append(next_tag_var[0][best_tag_id].view(1))",
    ),
)
SHORTER = "made smaller, to run in seconds"

PROGRAMS = {
    "word_language_model": Program(
        EXAMPLES,
        "word_language_model",
        EXAMPLES_AT,
        ("main.py", "model.py", "data.py"),
        (Script("main.py", WLM_ARGS),),
        synthetic_data.wikitext,
        trains_k=5,
        stops_at=Stop(
            "main.py",
            "torch.save(model, f)",
            "TypeError",
            "minigrad's checkpoints never pickle a module object: save model.state_dict()",
        ),
    ),
    "time_sequence_prediction": Program(
        EXAMPLES,
        "time_sequence_prediction",
        EXAMPLES_AT,
        ("generate_sine_wave.py", "train.py"),
        (
            Script("generate_sine_wave.py", (), (("L = 1000", "L = 40"), ("N = 100", "N = 8"))),
            Script("train.py", ("--steps", "2"), (("future = 1000", "future = 10"),)),
        ),
        why_changed=f"the waves' length and count and the predicted future {SHORTER}",
        trains_k=3,
    ),
    "seq2seq_translation": Program(
        TUTORIALS,
        "intermediate_source",
        "803c1b1273a47bc53bb6cd5f63eecfb897bbc856",
        ("seq2seq_translation_tutorial.py",),
        one_script(
            "seq2seq_translation_tutorial.py",
            ("hidden_size = 256", "hidden_size = 32"),
            (
                "trainIters(encoder1, attn_decoder1, 75000, print_every=5000)",
                "trainIters(encoder1, attn_decoder1, 60, print_every=10)",
            ),
        ),
        synthetic_data.eng_fra,
        why_changed=f"hidden size and iterations {SHORTER}",
        trains_k=10,
    ),
    "char_rnn_classification": Program(
        TUTORIALS,
        "intermediate_source",
        "10098032865151e891c6074522207880f0e68fd3",
        ("char_rnn_classification_tutorial.py",),
        one_script(
            "char_rnn_classification_tutorial.py",
            ("n_iters = 100000", "n_iters = 400"),
            ("print_every = 5000", "print_every = 50"),
            ("plot_every = 1000", "plot_every = 50"),
            ("n_confusion = 10000", "n_confusion = 50"),
        ),
        synthetic_data.names,
        why_changed=f"iterations and reporting intervals {SHORTER}",
        trains_k=50,
    ),
    "char_rnn_generation": Program(
        TUTORIALS,
        "intermediate_source",
        "4ce8b871ef249dfacc1b389108842a0c2c0805b7",
        ("char_rnn_generation_tutorial.py",),
        one_script(
            "char_rnn_generation_tutorial.py",
            ("n_iters = 100000", "n_iters = 300"),
            ("print_every = 5000", "print_every = 50"),
            ("plot_every = 500", "plot_every = 50"),
        ),
        synthetic_data.names,
        why_changed=f"iterations and reporting intervals {SHORTER}",
        trains_k=50,
    ),
    "lstm_tagger": Program(
        TUTORIALS,
        "beginner_source/nlp",
        "f77e1c2c11be5d612ed9adbc73a8b82904162c23",
        ("sequence_models_tutorial.py",),
        one_script("sequence_models_tutorial.py"),
        trains_k=20,
    ),
    "bilstm_crf": Program(
        TUTORIALS,
        "beginner_source/nlp",
        "546ebc600c1972a19cc2aa858b081b85ac7bbf12",
        ("advanced_tutorial.py",),
        one_script("advanced_tutorial.py", *CAT_OF_SCALARS, ("        300):", "        30):")),
        why_changed="`.view(1)` twice, where this revision concatenates 0-d tensors, which "
        f"PyTorch itself refuses since 0.4 (later revisions add it); epochs {SHORTER}",
        trains_k=20,
    ),
    "bag_of_words": Program(
        TUTORIALS,
        "beginner_source/nlp",
        "016d0cc077f60c82b8497d4c7f92051ce40cafee",
        ("deep_learning_tutorial.py",),
        one_script("deep_learning_tutorial.py"),
        trains_k=20,
    ),
    "ngram_language_model": Program(
        TUTORIALS,
        "beginner_source/nlp",
        "537d2173d209f790135701fa4dcdea2f73e718b7",
        ("word_embeddings_tutorial.py",),
        one_script("word_embeddings_tutorial.py"),
        trains_k=100,
    ),
    "tensor_introduction": Program(
        TUTORIALS,
        "beginner_source/nlp",
        "cb7cc08cd2e436ace74fa66ae823382abd39fc6d",
        ("pytorch_tutorial.py",),
        one_script("pytorch_tutorial.py"),
    ),
}


# ----- finding a program in a clone ---------------------------------------------------------
def git(clone, *args):
    return subprocess.run(["git", "-C", str(clone), *args], capture_output=True, text=True)


def program_source(program, clone, scratch, working_tree):
    """(the folder holding the program's files, where they came from). From the recorded
    commit where the clone has it, else from the clone's checked-out files."""
    has_commit = git(clone, "cat-file", "-e", f"{program.commit}^{{commit}}").returncode == 0
    if has_commit and not working_tree:
        folder = scratch / "source" / program.folder
        folder.mkdir(parents=True)
        for file in program.files:
            shown = git(clone, "show", f"{program.commit}:{program.folder}/{file}")
            if shown.returncode != 0:
                raise FileNotFoundError(shown.stderr.strip())
            (folder / file).write_text(shown.stdout, encoding="utf-8")
        return folder, f"at {program.commit[:12]}"
    folder = Path(clone) / program.folder
    missing = [f"{program.folder}/{f}" for f in program.files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"not in {clone}: {', '.join(missing)}")
    head = git(clone, "rev-parse", "--short=12", "HEAD").stdout.strip() or "not a git clone"
    return folder, f"working tree ({head}), checked at {program.commit[:12]}"


def lines_changed(folder, scripts):
    """How many of the programs' source lines the constant overrides replace."""
    changed = 0
    for script in scripts:
        original = (folder / script.file).read_text(encoding="utf-8")
        new = source_with_overrides(folder / script.file, script.overrides)
        opcodes = difflib.SequenceMatcher(
            None, original.splitlines(), new.splitlines()
        ).get_opcodes()
        changed += sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in opcodes if tag != "equal")
    return changed


# ----- running one program and judging it ---------------------------------------------------
@dataclass
class Row:
    name: str
    source: str = ""
    changed: str = ""
    losses: str = ""
    difference: str = ""
    verdict: str = ""
    ok: bool = False


def stopped_at(error):
    return f"{error['file']}:{error['line']} `{error['code']}` with {error['type']}"


def judge(program, ours, theirs):
    """(verdict, ok, agreement or None) for the two records."""
    if theirs["error"] is not None:
        return f"PyTorch's own run stops at {stopped_at(theirs['error'])}", False, None
    error, expected = ours["error"], program.stops_at
    try:
        agreement = compare(ours, theirs, complete=error is None)
    except Mismatch as e:
        where = f" (it then stops at {stopped_at(error)})" if error else ""
        return f"differs: {e}{where}", False, None
    verdict, ok = "same numbers", True
    if error is not None:
        stop = (error["file"], error["code"], error["type"])
        ok = expected is not None and stop == (expected.file, expected.code, expected.error)
        verdict += (
            f", then stops at {stopped_at(error)}: {expected.why if ok else error['message']}"
        )
    elif expected is not None:
        verdict += f" to the end, where `PROGRAMS` expects a stop at `{expected.code}`: update it"
        ok = False
    if program.trains_k:
        k = program.trains_k
        learns = trained(ours["losses"], k)
        verdict += f"; {'trains' if learns else 'does NOT train'}: last {k} losses' mean "
        verdict += f"{'<' if learns else '>='} first {k}'s"
        ok = ok and learns
    return verdict, ok, agreement


def check(name, program, clone, working_tree):
    row = Row(name)
    with tempfile.TemporaryDirectory(prefix=f"check-{name}-") as scratch:
        scratch = Path(scratch)
        try:
            folder, row.source = program_source(program, clone, scratch, working_tree)
            n = lines_changed(folder, program.scripts)
        except (FileNotFoundError, ValueError) as e:
            row.verdict = f"cannot run: {e}"
            return row
        row.source = (
            f"{program.repository}: `{program.folder}/{program.scripts[-1].file}` {row.source}"
        )
        row.changed = f"{n}: {program.why_changed}" if n else "0"
        try:
            ours, theirs = program_runs.run_both(
                folder, program.scripts, scratch / "runs", program.data
            )
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            row.verdict = f"the launcher failed: {str(e).strip().splitlines()[-1]}"
            return row
    row.verdict, row.ok, agreement = judge(program, ours, theirs)
    row.losses = f"{len(ours['losses'])} of {len(theirs['losses'])}"
    if agreement is not None:
        modules = f"{agreement.modules} module{'s' * (agreement.modules != 1)}"
        weights = (
            "final weights not compared (it stopped)" if ours["error"] else f"weights of {modules}"
        )
        row.losses += f"; {agreement.prints} prints, {weights}"
        losses, tensors = agreement.loss_relative_difference, agreement.tensor_relative_difference
        row.difference = f"{losses:.1e} / {tensors:.1e}"
    return row


def markdown(rows):
    header = (
        "| program | source | lines changed beyond the imports | losses compared | largest "
        "relative difference (each loss / each printed or final tensor, to its largest entry) | "
        "verdict |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r.name, r.source, r.changed, r.losses, r.difference, r.verdict]
        lines.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=Path, help="a clone of pytorch/examples")
    parser.add_argument("--tutorials", type=Path, help="a clone of pytorch/tutorials")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(PROGRAMS))
    parser.add_argument(
        "--working-tree",
        action="store_true",
        help="run the clones' checked-out files even where they hold the recorded commits",
    )
    args = parser.parse_args(argv)
    clones = {EXAMPLES: args.examples, TUTORIALS: args.tutorials}
    if not any(clones.values()):
        parser.error("give --examples PATH, --tutorials PATH or both")
    rows = []
    for name in args.only or PROGRAMS:
        program = PROGRAMS[name]
        clone = clones[program.repository]
        if clone is None:
            rows.append(
                Row(name, verdict=f"not run: no --{program.repository} clone given", ok=True)
            )
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.append(check(name, program, clone, args.working_tree))
    print(markdown(rows))
    failed = [r.name for r in rows if not r.ok]
    if failed:
        print(f"\nnot as expected: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
