"""The data PyTorch's example programs would download, synthesised small enough that each program
runs in seconds. Each function writes into the run's working directory."""

import numpy as np


def wikitext(workdir):
    """data/{train,valid,test}.txt: a small wikitext-like corpus of repeating phrases."""
    words = "the cat sat on a mat and the dog ran to the park".split()
    rng = np.random.default_rng(0)
    (workdir / "data").mkdir()
    for name, lines in [("train", 60), ("valid", 12), ("test", 12)]:
        text = ""
        for i in range(lines):
            n = int(rng.integers(4, 10))
            text += " ".join(words[(i + j) % len(words)] for j in range(n)) + "\n"
        (workdir / "data" / f"{name}.txt").write_text(text)


NAMES = {
    "Italian": ["Abbascia", "Abbadelli", "Acconci", "Affini", "Agostini", "Albanesi", "Alberti"],
    "Russian": ["Ababkov", "Abakumov", "Abramov", "Adamovich", "Agafonov", "Akimov", "Zhukov"],
    "German": ["Abbing", "Abel", "Achterberg", "Adam", "Adler", "Bachmeier", "Schmidt"],
    "Spanish": ["Abana", "Abano", "Abarca", "Abaroa", "Abascal", "Sandoval", "Zamorano"],
    "Chinese": ["Ang", "Au-Yong", "Bai", "Chen", "Chung", "Huang", "Zhang"],
}


def names(workdir):
    """data/names/<Language>.txt, one name per line (with an accent, as the real files have)."""
    folder = workdir / "data" / "names"
    folder.mkdir(parents=True)
    for language, lines in NAMES.items():
        (folder / f"{language}.txt").write_text("\n".join(lines + ["Ślusàrski"]) + "\n")


ENG_FRA = [
    ("I am too cold.", "Je suis trop froid."),
    ("She is five years younger than me.", "Elle a cinq ans de moins que moi."),
    ("She is too short.", "Elle est trop petit."),
    ("I am not scared of dying.", "Je ne crains pas de mourir."),
    ("He is a talented young director.", "C'est un jeune directeur plein de talent."),
    ("You are very kind.", "Vous êtes très gentil."),
    ("We are happy.", "Nous sommes heureux."),
    ("They are here.", "Ils sont ici."),
    ("I am hungry.", "J'ai faim."),
    ("This is not a pair the filter keeps.", "Ce n'est pas une paire gardée."),
]


def eng_fra(workdir):
    """data/eng-fra.txt: tab-separated English-French pairs, holding every French word the
    translation tutorial's final evaluateAndShowAttention sentences use."""
    (workdir / "data").mkdir()
    lines = "\n".join(f"{en}\t{fr}" for en, fr in ENG_FRA) + "\n"
    (workdir / "data" / "eng-fra.txt").write_text(lines, encoding="utf-8")
