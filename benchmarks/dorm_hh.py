"""DORM on real preference pairs: HH-RLHF harmless (test split) cut into four training sources whose labels
are flipped at 0, 10, 20 and 40%, the LLaMA-Factory DPO demo pairs as a fifth (unflipped) source, a clean
D_val, a clean selection split (hyperparameters are chosen on it) and clean held-out test pairs.

The reward model is MiniLM with `model.tuning: head`: the frozen backbone's mean-pooled features are
computed once per text (cached in ``--work``/features-minilm.pt) and a linear head trains, which makes a
run take seconds on a CPU core. Three stages, each writing raw records under ``--out``, each skipping
what is already there:

    python benchmarks/dorm_hh.py --stage budget   # unweighted: selection accuracy against steps and lr
    python benchmarks/dorm_hh.py --stage search   # dorm: alpha, beta, eta_w and the w-gradient's scale
    python benchmarks/dorm_hh.py --stage final    # the four variants, 3 seeds, clean test pairs
    python benchmarks/dorm_hh.py --report         # the tables docs/results.md shows

The budget and search stages score the selection split only; the final stage alone scores test pairs.

``--split hh`` (the default, the first version's split) draws D_val, the selection and the test pairs from
HH only. ``--split every-source`` (issue 21) also holds out clean DPO demo pairs for each of them, cut at
HH's fractions, so that D_val, selection and test are samples of the mixture the training pool draws
from (docs/methods/dorm.md, "Which distribution D_val stands for"); its records go to ``--out``/every_source.

``--data sst2-pairs`` (issue 21) is a second preference set, one a MiniLM head can learn: pairs of a
sentence SST-2's annotators labelled positive (chosen) and one they labelled negative (rejected) under one
prompt (SST2_PROMPT), paired at random without reuse (seed 0) within each SST-2 file: D_val and selection
from stsa.binary.dev, test from stsa.binary.test, the four flipped training sources from stsa.binary.train
(sst2_split). It has one split, so ``--split`` is for ``--data hh`` only; its records go to
``--out``/sst2_pairs, and which pairs it pairs and flips to ``--out``/sst2_pairs/pairs.json.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from shared_data import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA
HH = DATA / "hh_rlhf_harmless" / "harmless-base_test.jsonl.gz"
DEMO = DATA / "llamafactory_dpo_en_demo" / "dpo_en_demo.json"
SST2 = DATA / "sst2_sentences"
# the instruction both sentences of a pair answer: the one labelled positive follows it (docs/methods/dorm.md)
SST2_PROMPT = "Write one sentence of a positive review of a movie."
DATAS = ("hh", "sst2-pairs")
FLIPS = (0.0, 0.1, 0.2, 0.4)
VARIANTS = ("unweighted", "prior", "bilevel-no-prior", "dorm")
OUT = ROOT / "benchmarks" / "results" / "dorm_hh"
N_TEST, N_VAL, N_SELECT, PER_SOURCE = 500, 150, 150, 375
SPLITS = ("hh", "every-source")
MODES = (*SPLITS, "sst2-pairs")  # what split() cuts: HH's two splits, and --data sst2-pairs's one
# every-source: the demo's 300 pairs cut at HH's fractions (500, 150, 150 of the 2,300 pairs used), the rest trains
DEMO_TEST, DEMO_VAL, DEMO_SELECT = (round(300 * n / 2300) for n in (N_TEST, N_VAL, N_SELECT))
MAX_LENGTH = 128
BATCH = 32
PRIOR_STEPS = 250  # the budget grid's shortest run, already at its plateau of selection accuracy
# the budget stage's grid (unweighted) and the search stage's grid (dorm), both on the selection split
BUDGET_LRS = (1e-3, 3e-3, 1e-2)
BUDGET_STEPS = (250, 1000, 3000)
SEARCH = {"alpha": (10.0, 1.0), "beta": (1.0, 0.1), "eta_w": (1e-3, 1e-1, 1.0), "w_gradient": ("per-example",)}
# added after the grid above moved no weight by more than 0.07 (eq. 3.10's data term measured 1e-3 to 3e-3
# per draw): larger steps, and a weaker pull towards the prior (2 beta eta_w < 2 keeps the pull stable)
EXTRA = {
    "dorm": [{"alpha": 10.0, "beta": 0.01, "eta_w": e, "w_gradient": "per-example"} for e in (1.0, 10.0)],
    "bilevel-no-prior": [{"alpha": 10.0, "beta": 1.0, "eta_w": e, "w_gradient": "per-example"} for e in (10.0, 100.0)],
}
THESIS = {"alpha": 10.0, "beta": 1.0, "eta_w": 1e-3}  # app. I.3, run with both w-gradient scales
# every-source's search, smaller (two seeds of ~35 s runs on a shared core): the thesis's values, the eta_w
# that moved weights on the hh split, and for dorm the prior's reading chosen by benchmarks/dorm_prior.py
READING = {"q_form": "absolute", "u_coefficient": 0.0}
ES_ETAS = {"bilevel-no-prior": (1e-3, 0.1, 1.0, 10.0)}
ES_DORM = [(1.0, 1e-3), (1.0, 1.0), (0.01, 1.0), (0.01, 10.0)]  # (beta, eta_w)
# added after the grid above left the demo source lowest: w rescaled to mean 1 after each step (at eta_w >= 10
# every weight grew, which scales theta's training loss, not the sources' shares) and more bilevel steps
_NORM = {"w_gradient": "per-example", "w_normalise": "mean"}
ES_EXTRA = {
    "bilevel-no-prior": [{**THESIS, **_NORM, "eta_w": e, "steps": n} for n in (250, 1000) for e in (1.0, 10.0, 100.0)],
    "dorm": [
        {**THESIS, **_NORM, "beta": 0.01, "eta_w": e, "steps": n, **READING}
        for n in (250, 1000)
        for e in (1.0, 10.0, 30.0)
    ],
}
SEARCH_SEEDS = (0, 1)
# sst2-pairs, --stage prior-readings: eq. 3.5's q and eq. 3.6's u coefficient, as written and READING's, crossed
PRIOR_READINGS = [{"q_form": q, "u_coefficient": c} for q in ("range", "absolute") for c in (1.0, 0.0)]
MANY_SEEDS = tuple(range(10))  # --stage seeds
BALANCE = round(N_VAL / DEMO_VAL)  # --stage balanced: the demo's D_val pairs listed this many times
FINAL_SEEDS = (0, 1, 2)


def _portable(obj):
    """``obj`` with this checkout's and the data folder's absolute paths made relative (records are committed)."""
    text = json.dumps(obj).replace(str(DATA), "../shared/data").replace(str(ROOT) + "/", "")
    return json.loads(text)


def split(work: Path, mode: str = "hh") -> dict:
    """Shuffle HH's pairs once (seed 0), cut disjoint test, validation, selection and per-source training
    sets, flip the first round(flip * n) pairs of each source in a seeded order, write JSONL files. Each of
    test, validation and selection is a list of source entries: HH's, and under ``every-source`` the demo's
    (shuffled once, seed 0, cut into DEMO_TEST, DEMO_VAL, DEMO_SELECT pairs, the rest a training source)."""
    if mode == "sst2-pairs":
        return sst2_split(work)
    if mode not in SPLITS:
        sys.exit(f"--split must be one of {', '.join(SPLITS)}, not '{mode}'")
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    random.Random(0).shuffle(rows)
    need = N_TEST + N_VAL + N_SELECT + PER_SOURCE * len(FLIPS)
    if len(rows) < need:
        sys.exit(f"{HH} has {len(rows)} pairs; this split needs {need}")
    work.mkdir(parents=True, exist_ok=True)

    def write(name: str, part: list[dict]) -> str:
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        return str(path)

    cuts = itertools.accumulate((N_TEST, N_VAL, N_SELECT))
    a, b, c = cuts
    files = {
        k: [{"name": k, "path": write(k, rows[lo:hi])}]
        for k, lo, hi in (("test", 0, a), ("validation", a, b), ("selection", b, c))
    }
    sources = []
    for k, flip in enumerate(FLIPS):
        part = [dict(r) for r in rows[c + k * PER_SOURCE : c + (k + 1) * PER_SOURCE]]
        order = list(range(len(part)))
        random.Random(100 + k).shuffle(order)
        for i in order[: round(flip * len(part))]:
            part[i] = {"chosen": part[i]["rejected"], "rejected": part[i]["chosen"]}
        name = f"hh-flip{int(flip * 100)}"
        sources.append({"name": name, "path": write(name, part), "format": "pairs"})
    demo = {"format": "pairs", "prompt_column": "conversations"}  # LLaMA-Factory's pairs, ShareGPT turns
    if mode == "hh":  # all 300 (GPT-4 judgments) train, unflipped
        sources.append({"name": "dpo-demo", "path": str(DEMO), **demo})
        return {"sources": sources, **files}
    pairs = json.loads(DEMO.read_text(encoding="utf-8"))
    random.Random(0).shuffle(pairs)
    a, b, c = itertools.accumulate((DEMO_TEST, DEMO_VAL, DEMO_SELECT))
    for k, lo, hi in (("test", 0, a), ("validation", a, b), ("selection", b, c), ("dpo-demo", c, len(pairs))):
        path = work / f"{k}-demo.json"
        path.write_text(json.dumps(pairs[lo:hi]), encoding="utf-8")
        entry = {"name": k if k == "dpo-demo" else f"{k}-demo", "path": str(path), **demo}
        (sources if k == "dpo-demo" else files[k]).append(entry)
    return {"sources": sources, **files}


def flipped_rows(prefix: str = "hh-") -> dict[str, set[int]]:
    """Per flipped source (``prefix``flip0, ...), the 1-based rows whose labels split() swapped (the same
    seeded order for HH's and SST-2's sources)."""
    out = {}
    for k, flip in enumerate(FLIPS):
        order = list(range(PER_SOURCE))
        random.Random(100 + k).shuffle(order)
        out[f"{prefix}flip{int(flip * 100)}"] = {i + 1 for i in order[: round(flip * PER_SOURCE)]}
    return out


def read_sst2(name: str) -> list[tuple[int, int, str]]:
    """(1-based line, label, sentence) of stsa.binary.``name``; a line that is not `0|1 sentence` fails."""
    path = SST2 / f"stsa.binary.{name}"
    if not path.is_file():
        sys.exit(f"{path} not found (SST-2 sentences, ../shared/data/sst2_sentences)")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        label, _, text = line.partition(" ")
        if label not in ("0", "1") or not text.strip():
            sys.exit(f"{path} line {i}: expected '<0|1> <sentence>', got {line[:60]!r}")
        out.append((i, int(label), text.strip()))
    return out


def sst2_pairs() -> dict[str, list[dict]]:
    """SST-2's sentences paired positive (chosen) against negative (rejected), per file: its positive and its
    negative sentences each shuffled (seeds 0 and 1), then zipped, so no sentence is in two pairs. A sentence
    whose text occurs on more than one line of the three files is left out (9 repeat inside train, 2 test
    sentences are also in train), so no text is in two splits. Keys 'train', 'dev', 'test'; each pair names
    its sentences' lines."""
    files = {name: read_sst2(name) for name in ("train", "dev", "test")}
    seen: dict[str, int] = {}
    for rows in files.values():
        for _, _, text in rows:
            seen[text] = seen.get(text, 0) + 1
    out = {}
    for name, rows in files.items():
        pos = [(i, t) for i, y, t in rows if y == 1 and seen[t] == 1]
        neg = [(i, t) for i, y, t in rows if y == 0 and seen[t] == 1]
        random.Random(0).shuffle(pos)
        random.Random(1).shuffle(neg)
        out[name] = [
            {"prompt": SST2_PROMPT, "chosen": p, "rejected": n, "positive_line": i, "negative_line": j}
            for (i, p), (j, n) in zip(pos, neg, strict=False)
        ]
    return out


def sst2_split(work: Path, manifest: Path | None = None) -> dict:
    """--data sst2-pairs: D_val (the first N_VAL dev pairs), selection (the next N_SELECT), test (the first
    N_TEST test pairs), and four training sources of PER_SOURCE train pairs, the first round(flip * n) of each
    in HH's seeded order swapped (chosen the negative sentence, 'flipped' true). Writes JSONL files under
    ``work``, and, if given, ``manifest``: every pair's two lines and each source's flipped rows."""
    from prefalign.utils.atomic_files import write_text_atomically

    pairs = sst2_pairs()
    need = {"train": PER_SOURCE * len(FLIPS), "dev": N_VAL + N_SELECT, "test": N_TEST}
    for name, n in need.items():
        if len(pairs[name]) < n:
            sys.exit(f"stsa.binary.{name} gives {len(pairs[name])} pairs; this split needs {n}")
    cuts = {
        "test": pairs["test"][:N_TEST],
        "validation": pairs["dev"][:N_VAL],
        "selection": pairs["dev"][N_VAL : N_VAL + N_SELECT],
    }
    flipped = flipped_rows("sst2-")
    for k, (name, rows) in enumerate(flipped.items()):
        part = [dict(r, flipped=False) for r in pairs["train"][k * PER_SOURCE : (k + 1) * PER_SOURCE]]
        for row in rows:
            r = part[row - 1]
            part[row - 1] = {**r, "chosen": r["rejected"], "rejected": r["chosen"], "flipped": True}
        cuts[name] = part
    files = {}
    for name, part in cuts.items():
        path = work / f"{name}.jsonl"
        write_text_atomically(path, "".join(json.dumps(r) + "\n" for r in part))
        files[name] = {"name": name, "path": str(path), "format": "pairs", "prompt_column": "prompt"}
    if manifest is not None:
        record = {
            "what": "benchmarks/dorm_hh.py --data sst2-pairs: each pair's stsa.binary line numbers "
            "(positive, negative) and each training source's flipped rows (1-based)",
            "prompt": SST2_PROMPT,
            "files": {"test": "test", "validation": "dev", "selection": "dev", **{n: "train" for n in flipped}},
            "pairs": {n: [[r["positive_line"], r["negative_line"]] for r in part] for n, part in cuts.items()},
            "flipped_rows": {n: sorted(rows) for n, rows in flipped.items()},
        }
        write_text_atomically(manifest, json.dumps(record) + "\n")
    return {
        "sources": [files[n] for n in flipped],
        **{k: [files[k]] for k in ("test", "validation", "selection")},
    }


def _prefix(names: list[str]) -> str:
    """'hh-' or 'sst2-': what the flipped sources' names start with (the first source is the 0% one)."""
    return names[0].removesuffix("flip0")


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney)."""
    pos, neg = scores[positive], scores[~positive]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def flip_summary(result, cfg) -> dict:
    """Do the final weights (and w0, and w - w0) sit lower on the HH pairs whose labels were flipped? The AUC
    of low values on flipped among all HH training pairs, and hh-flip40's mean w on flipped and kept pairs."""
    names = [s.name for s in cfg.sources]
    prefix = _prefix(names)
    rows = flipped_rows(prefix)
    sizes = [PER_SOURCE if n in rows else len(result.weights) - PER_SOURCE * len(rows) for n in names]
    starts = list(itertools.accumulate([0, *sizes]))
    flipped = np.zeros(len(result.weights), dtype=bool)
    for k, n in enumerate(names):
        for r in rows.get(n, ()):
            flipped[starts[k] + r - 1] = True
    hh_part = np.zeros(len(result.weights), dtype=bool)
    hh_part[: starts[len(rows)]] = True
    w, w0 = result.weights.numpy(), result.prior.numpy() if len(result.prior) else np.ones(len(result.weights))
    out = {f"auc_low_{k}": auc(-v[hh_part], flipped[hh_part]) for k, v in (("w", w), ("w0", w0), ("dw", w - w0))}
    k = names.index(f"{prefix}flip40")
    part = slice(starts[k], starts[k + 1])
    groups = (("flipped", flipped[part]), ("kept", ~flipped[part]))
    out[f"{prefix}flip40"] = {g: float(w[part][m].mean()) for g, m in groups}
    return out


def config(files: dict, out_dir: Path, seed: int, variant: str, scored: str, lr: float, steps: int, dorm: dict):
    return {
        "sources": files["sources"],
        "validation": files["validation"],
        "test": files[scored],
        "model": {"name": "minilm", "tuning": "head", "max_length": MAX_LENGTH},
        "dorm": {"variant": variant, "prior_steps": PRIOR_STEPS, "mc_passes": 8, **dorm},
        "training": {
            "output_dir": str(out_dir),
            "steps": steps,
            "batch_size": BATCH,
            "learning_rate": lr,
            "seed": seed,
            "log_every": max(steps // 60, 1),
            "checkpoint_every": 0,
            "eval_batch_size": 256,
        },
    }


class Runner:
    """Loads MiniLM once, fills its feature cache from disk, runs configs and writes one record each."""

    def __init__(self, work: Path, mode: str = "hh", out: Path | None = None) -> None:
        from prefalign.models.loading import load_backbone
        from prefalign.reward.model import feature_cache

        self.work = work
        self.backbone = load_backbone("minilm")
        self.cache_path = work / "features-minilm.pt"
        self.cache = feature_cache(self.backbone.model)
        if self.cache_path.is_file():
            self.cache.update(torch.load(self.cache_path, weights_only=True))
        self.saved_size = sum(len(v) for v in self.cache.values())
        self.mode = mode
        if mode == "sst2-pairs":  # its pairs and flips listed beside the records
            self.files = sst2_split(work / "data-sst2-pairs", out / "pairs.json" if out else None)
        else:
            self.files = split(work / ("data" if mode == "hh" else "data-every-source"), mode)

    def save_cache(self) -> None:
        size = sum(len(v) for v in self.cache.values())
        if size == self.saved_size:
            return
        self.saved_size = size
        tmp = self.cache_path.with_suffix(".tmp")
        torch.save(self.cache, tmp)
        tmp.replace(self.cache_path)

    def run(self, record_path: Path, cfg_dict: dict, extra: dict) -> dict:
        from prefalign.reward import RewardConfig, read_source, read_sources, score_pairs, train_reward
        from prefalign.utils.atomic_files import write_text_atomically

        if record_path.exists():
            return json.loads(record_path.read_text())
        cfg = RewardConfig.from_dict(cfg_dict)
        t0 = time.time()
        result = train_reward(cfg, backbone=self.backbone)
        scored = read_sources(cfg.test, cfg.model.head_attributes)  # every test entry, in order
        margins = [round(s["margin"], 6) for s in score_pairs(result.model.eval(), scored, 256)]
        counts = {t.name: len(read_source(t, 0, cfg.model.head_attributes)) for t in cfg.test}
        curves = json.loads((Path(cfg.training.output_dir) / "weight_curves.json").read_text())
        record = {
            **extra,
            "scored": cfg.test[0].name,
            "config": _portable(cfg_dict),
            "metrics": result.metrics,
            "margins": margins,
            **({"scored_counts": counts} if len(counts) > 1 else {}),
            **({"flips": flip_summary(result, cfg)} if cfg.dorm.variant != "unweighted" else {}),
            "weight_curves": curves,
            "seconds": round(time.time() - t0, 1),
            "machine": "2 shared CPU cores, 1 thread",
        }
        write_text_atomically(record_path, json.dumps(record, indent=1))
        self.save_cache()
        w = result.metrics["final_mean_weight"]
        print(
            f"{record_path.name}: {cfg.test[0].name} acc {result.metrics['test_pairwise_accuracy']:.4f}, w "
            + ", ".join(f"{k} {v:.3f}" for k, v in w.items())
            + f" ({record['seconds']:.0f} s)",
            flush=True,
        )
        return record


def budget(r: Runner, out: Path) -> None:
    for lr, steps in itertools.product(BUDGET_LRS, BUDGET_STEPS):
        name = f"budget/lr{lr:g}_steps{steps}_seed0.json"
        cfg = config(r.files, r.work / "budget", 0, "unweighted", "selection", lr, steps, {})
        r.run(out / name, cfg, {"stage": "budget", "seed": 0, "variant": "unweighted", "lr": lr, "steps": steps})


def chosen_budget(out: Path) -> tuple[float, int]:
    """(lr, steps) with the best selection accuracy; ties go to fewer steps, then the smaller lr."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "budget").glob("*.json"))]
    if not recs:
        sys.exit("run --stage budget first")
    best = max(recs, key=lambda x: (x["metrics"]["test_pairwise_accuracy"], -x["steps"], -x["lr"]))
    return best["lr"], best["steps"]


def search_grid(variant: str = "dorm", mode: str = "hh") -> list[dict]:
    """The settings tried on the selection split: the thesis's values first (under both w-gradient scales),
    then SEARCH's grid; bilevel-no-prior has beta = 0, so only alpha and eta_w vary. ``every-source``: its
    smaller grid (ES_ETAS, ES_DORM at alpha 10, dorm under eq. 3.5-3.6 as written and under READING) and
    its ES_EXTRA; ``sst2-pairs``: the same smaller grid without ES_EXTRA."""
    extra = ES_EXTRA if mode == "every-source" else {"bilevel-no-prior": [], "dorm": []}  # sst2-pairs: none
    if mode != "hh" and variant == "bilevel-no-prior":
        return [
            {**THESIS, "alpha": a, "eta_w": e, "w_gradient": "per-example"}
            for a in (10.0, 1.0)
            for e in ES_ETAS[variant]
        ] + extra[variant]
    if mode != "hh" and variant == "dorm":
        one = [{**THESIS, "beta": b, "eta_w": e, "w_gradient": "per-example"} for b, e in ES_DORM]
        return one + [{**d, **READING} for d in one] + extra[variant]
    if variant == "unweighted":  # w stays 1: only alpha (L_val against alpha L_tr in theta's step) matters
        return [{**THESIS, "w_gradient": "per-example"}, {**THESIS, "alpha": 1.0, "w_gradient": "per-example"}]
    grid = [dict(zip(SEARCH, values)) for values in itertools.product(*SEARCH.values())]
    if variant == "bilevel-no-prior":
        grid = [g for g in grid if g["beta"] == THESIS["beta"]]
    thesis = [{**THESIS, "w_gradient": scale} for scale in ("per-example", "batch-mean")]
    return thesis + [g for g in grid if g not in thesis] + EXTRA[variant]


def _tag(variant: str, d: dict) -> str:
    tail = "_qabsolute_u0" if d.get("q_form") == "absolute" else ""
    tail += ("_wmean" if d.get("w_normalise") == "mean" else "") + (f"_steps{d['steps']}" if "steps" in d else "")
    return f"{variant}_a{d['alpha']:g}_b{d['beta']:g}_eta{d['eta_w']:g}_{d['w_gradient']}{tail}"


def _run_args(d: dict, steps: int) -> tuple[int, dict]:
    """A grid entry's number of steps (the budget's unless it names its own) and its dorm section."""
    return d.get("steps", steps), {k: v for k, v in d.items() if k != "steps"}


def search(r: Runner, out: Path) -> None:
    lr, steps = chosen_budget(out)
    for seed in SEARCH_SEEDS:
        for variant in ("unweighted", "dorm", "bilevel-no-prior"):
            for d in search_grid(variant, r.mode):
                n, dorm = _run_args(d, steps)
                cfg = config(r.files, r.work / "search", seed, variant, "selection", lr, n, dorm)
                extra = {"stage": "search", "seed": seed, "variant": variant, "dorm": d}
                r.run(out / f"search/{_tag(variant, d)}_seed{seed}.json", cfg, extra)


def search_table(out: Path, variant: str = "dorm", mode: str = "hh") -> tuple[str, dict]:
    """Markdown of the search for ``variant``, and its chosen setting: the best mean selection accuracy
    over the search seeds (ties: the thesis's values first, then the grid's order)."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "search").glob("*.json"))]
    rows = []
    for d in search_grid(variant, mode):
        rs = [x for x in recs if x["variant"] == variant and x["dorm"] == d]
        if not rs:
            continue
        acc = statistics.mean(x["metrics"]["test_pairwise_accuracy"] for x in rs)
        names = rs[0]["weight_curves"]["sources"]
        w = {n: statistics.mean(x["metrics"]["final_mean_weight"][n] for x in rs) for n in names}
        lowest = [min(x["metrics"]["final_mean_weight"].items(), key=lambda kv: kv[1])[0] for x in rs]
        lowest = lowest if variant != "unweighted" else ["-"]  # every weight stays 1
        rows.append((d, acc, w, lowest, len(rs)))
    if not rows:
        return "", {}
    chosen = max(rows, key=lambda row: row[1])[0]
    names = list(rows[0][2])
    reading_head = " | prior reading" if mode != "hh" else ""
    head = f"| {variant}: alpha | beta | eta_w | w-gradient{reading_head} | seeds | selection acc. (mean) | "
    lines = [
        head + " | ".join(f"w {n}" for n in names) + " | lowest w, per seed |",
        "|---" * (7 + (mode != "hh") + len(names)) + "|",
    ]
    for d, acc, w, lowest, n in rows:
        beta = {"bilevel-no-prior": "0", "unweighted": "-"}.get(variant, f"{d['beta']:g}")
        mark = (", w mean 1" if d.get("w_normalise") == "mean" else "") + (
            f", {d['steps']} steps" if "steps" in d else ""
        )
        mark += " **chosen**" if d == chosen else ""
        reading = ("q absolute, c 0 | " if "q_form" in d else "eq. 3.5-3.6 | ") if mode != "hh" else ""
        lines.append(
            f"| {d['alpha']:g} | {beta} | {d['eta_w']:g} | {d['w_gradient']}{mark} | {reading}{n} | {100 * acc:.1f} | "
            + " | ".join(f"{w[k]:.4f}" for k in names)
            + f" | {', '.join(lowest)} |"
        )
    return "\n".join(lines), chosen


def final(r: Runner, out: Path) -> None:
    lr, steps = chosen_budget(out)
    chosen = {v: search_table(out, v, r.mode)[1] for v in ("unweighted", "dorm", "bilevel-no-prior")}
    if not all(chosen.values()):
        sys.exit("run --stage search first")
    # prior: w fixed at dorm's w0, so dorm's reading of eq. 3.5-3.6, with unweighted's alpha
    reading = {k: chosen["dorm"][k] for k in READING if k in chosen["dorm"]}
    chosen["prior"] = {**chosen["unweighted"], **reading}
    for seed in FINAL_SEEDS:
        for variant in VARIANTS:
            d = chosen[variant]
            run_dir = r.work / "final" / f"seed{seed}_{variant}"
            n, dorm = _run_args(d, steps)
            cfg = config(r.files, run_dir, seed, variant, "test", lr, n, dorm)
            record = out / f"final/seed{seed}_{variant}.json"
            fresh = not record.exists()
            r.run(record, cfg, {"stage": "final", "seed": seed, "variant": variant})
            if fresh and variant in ("dorm", "bilevel-no-prior"):  # Figure 3.4 of this run, beside its record
                shutil.copyfile(run_dir / "weight_curves.png", out / f"final/seed{seed}_{variant}_weight_curves.png")


def balanced(r: Runner, out: Path) -> None:
    """every-source, a diagnosis on the selection pairs: the chosen dorm and bilevel-no-prior settings with the
    demo's D_val pairs listed BALANCE times (each D_val draw then about half demo, half HH), seeds 0-2. Does
    the demo source still end lowest when D_val weighs the two real sources equally?"""
    if r.mode != "every-source":
        sys.exit("--stage balanced needs --data hh --split every-source")
    lr, steps = chosen_budget(out)
    files = {**r.files, "validation": r.files["validation"][:1] + r.files["validation"][1:] * BALANCE}
    for seed in FINAL_SEEDS:
        for variant in ("bilevel-no-prior", "dorm"):
            n, dorm = _run_args(search_table(out, variant, r.mode)[1], steps)
            cfg = config(files, r.work / "balanced", seed, variant, "selection", lr, n, dorm)
            r.run(
                out / f"balanced/seed{seed}_{variant}.json",
                cfg,
                {"stage": "balanced", "seed": seed, "variant": variant},
            )


def prior_readings(r: Runner, out: Path) -> None:
    """sst2-pairs, a diagnosis on the selection pairs: the prior variant (w fixed at w0) under the four
    combinations of eq. 3.5's q (``range`` as written, ``absolute``) and eq. 3.6's u coefficient (1 as
    written, 0), seeds 0-1, at the budget and unweighted's alpha: which of the two changes decides whether
    the 40%-flipped source gets the lowest mean w0?"""
    if r.mode != "sst2-pairs":
        sys.exit("--stage prior-readings needs --data sst2-pairs")
    lr, steps = chosen_budget(out)
    base = search_table(out, "unweighted", r.mode)[1]
    if not base:
        sys.exit("run --stage search first")
    for seed in SEARCH_SEEDS:
        for d in PRIOR_READINGS:
            dorm = {**base, **d}
            cfg = config(r.files, r.work / "prior_readings", seed, "prior", "selection", lr, steps, dorm)
            extra = {"stage": "prior_readings", "seed": seed, "variant": "prior", "dorm": dorm}
            name = f"prior_q{d['q_form']}_c{d['u_coefficient']:g}_seed{seed}.json"
            r.run(out / "prior_readings" / name, cfg, extra)


def prior_readings_table(out: Path) -> str:
    """Per --stage prior-readings run: the reading, how well a low w0 finds the flipped pairs (AUC), the
    40%-flipped source's w0 on its flipped and kept pairs, each source's mean z(u), mean z(q) and mean w0."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "prior_readings").glob("*.json"))]
    if not recs:
        return ""
    names = recs[0]["weight_curves"]["sources"]
    p = _prefix(names)
    order = [(d["q_form"], d["u_coefficient"]) for d in PRIOR_READINGS]
    recs.sort(key=lambda x: (order.index((x["dorm"]["q_form"], x["dorm"]["u_coefficient"])), x["seed"]))
    lines = [
        f"| q (eq. 3.5) | c (eq. 3.6) | seed | AUC low w0 | {p}flip40 w0: flipped / kept | "
        + " | ".join(f"z(u) {n}" for n in names)
        + " | "
        + " | ".join(f"z(q) {n}" for n in names)
        + " | "
        + " | ".join(f"w0 {n}" for n in names)
        + " | lowest w0 | selection acc. |",
        "|---" * (7 + 3 * len(names)) + "|",
    ]
    for x in recs:
        m, f, d = x["metrics"], x["flips"], x["dorm"]
        w0 = m["prior_mean_weight"]
        lines.append(
            f"| {d['q_form']} | {d['u_coefficient']:g} | {x['seed']} | {f['auc_low_w0']:.3f} | "
            f"{f[p + 'flip40']['flipped']:.3f} / {f[p + 'flip40']['kept']:.3f} | "
            + " | ".join(f"{m['prior_zu_mean'][n]:+.3f}" for n in names)
            + " | "
            + " | ".join(f"{m['prior_zq_mean'][n]:+.3f}" for n in names)
            + " | "
            + " | ".join(f"{w0[n]:.4f}" for n in names)
            + f" | {min(w0, key=w0.get)} | {100 * m['test_pairwise_accuracy']:.1f} |"
        )
    return "\n".join(lines)


def many_seeds(r: Runner, out: Path) -> None:
    """A diagnosis on the selection pairs: the chosen dorm and bilevel-no-prior settings over MANY_SEEDS, to
    count how often each source ends lowest (how much of 'every seed' the draws decide)."""
    lr, steps = chosen_budget(out)
    for seed in MANY_SEEDS:
        for variant in ("bilevel-no-prior", "dorm"):
            n, dorm = _run_args(search_table(out, variant, r.mode)[1], steps)
            cfg = config(r.files, r.work / "seeds", seed, variant, "selection", lr, n, dorm)
            r.run(out / f"seeds/seed{seed}_{variant}.json", cfg, {"stage": "seeds", "seed": seed, "variant": variant})


def seeds_table(out: Path) -> str:
    """Per variant over the --stage seeds runs: how often each source ends lowest of all, hh-flip40's rank
    among the HH sources, and each source's median final mean weight."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "seeds").glob("*.json"))]
    if not recs:
        return ""
    names = recs[0]["weight_curves"]["sources"]
    p = _prefix(names)
    group = "HH sources" if p == "hh-" else f"{p}flip sources"
    lines = [
        f"| variant | seeds | lowest of all {_count_word(len(names))}: count per source | "
        f"{p}flip40 lowest of the {group} | "
        + " | ".join(f"w {n} (median)" for n in names)
        + " | selection acc. (median) |",
        "|---" * (5 + len(names)) + "|",
    ]
    for v in ("bilevel-no-prior", "dorm"):
        rs = [x for x in recs if x["variant"] == v]
        if not rs:
            continue
        ws = [x["metrics"]["final_mean_weight"] for x in rs]
        lowest = [min(w, key=w.get) for w in ws]
        counts = ", ".join(f"{n} {lowest.count(n)}" for n in names if lowest.count(n))
        hh_low = sum(_flip40_rank(w) == 1 for w in ws)
        acc = statistics.median(100 * x["metrics"]["test_pairwise_accuracy"] for x in rs)
        lines.append(
            f"| {v} | {len(rs)} | {counts} | {hh_low} of {len(rs)} | "
            + " | ".join(f"{statistics.median(w[n] for w in ws):.4f}" for n in names)
            + f" | {acc:.1f} |"
        )
    return "\n".join(lines)


def paired_pair_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 10_000, seed: int = 0):
    """Mean accuracy difference a - b (seeds x pairs of 0/1), and a 95% interval from resampling the
    held-out pairs (the same resample for every seed, so each pair stays matched across seeds)."""
    diff = (a - b).mean(0)  # per pair, averaged over seeds
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(diff.mean()), float(lo), float(hi)


def budget_table(out: Path) -> str:
    recs = {(x["lr"], x["steps"]): x for x in (json.loads(p.read_text()) for p in (out / "budget").glob("*.json"))}
    lines = ["| learning rate | " + " | ".join(f"{s} steps" for s in BUDGET_STEPS) + " |"]
    lines.append("|---" * (1 + len(BUDGET_STEPS)) + "|")
    for lr in BUDGET_LRS:
        cells = [
            f"{100 * recs[(lr, s)]['metrics']['test_pairwise_accuracy']:.1f}" if (lr, s) in recs else "-"
            for s in BUDGET_STEPS
        ]
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    lr, steps = chosen_budget(out)
    lines.append(f"\nChosen: learning rate {lr:g}, {steps} steps (batch {BATCH}).")
    spread = []
    for st in BUDGET_STEPS:
        if (lr, st) in recs:
            margins = sorted(abs(m) for m in recs[(lr, st)]["margins"])
            spread.append(f"{st} steps {statistics.median(margins):.3f}")
    lines.append(
        f"Median |r(chosen) - r(rejected)| on the selection pairs at learning rate {lr:g}: {', '.join(spread)}."
    )
    return "\n".join(lines)


def _count_word(n: int) -> str:
    return {4: "four", 5: "five"}.get(n, str(n))


def _flip40_rank(weights: dict) -> int:
    """The 40%-flipped source's rank (1: lowest weight) among the flipped sources (hh-... or sst2-...)."""
    p = _prefix(list(weights))
    flipped = sorted((w, n) for n, w in weights.items() if n.startswith(f"{p}flip"))
    return 1 + [n for _, n in flipped].index(f"{p}flip40")


def _part_accuracy(record: dict, part: str) -> float:
    """Accuracy (%) on one test entry's pairs: the record's margins are the entries' pairs in order."""
    start = 0
    for name, n in record["scored_counts"].items():
        if name == part:
            return 100 * statistics.mean(m > 0 for m in record["margins"][start : start + n])
        start += n
    raise KeyError(part)


def final_table(out: Path) -> str:
    """Test accuracy and final mean weights per variant (median over seeds), the DORM - unweighted
    differences, and which source ends lowest under each weighted variant per seed."""
    recs = {(x["seed"], x["variant"]): x for x in (json.loads(p.read_text()) for p in (out / "final").glob("*.json"))}
    seeds = sorted({s for s, _ in recs})
    names = next(iter(recs.values()))["weight_curves"]["sources"]
    parts = next(iter(recs.values())).get("scored_counts", {})  # every-source: test pairs per real source
    lines = [
        "| variant | seeds | clean test accuracy (median) | per seed | "
        + "".join(f"{k} ({n} pairs), median | " for k, n in parts.items())
        + " | ".join(f"w {n}" for n in names)
        + f" | lowest w, per seed | rank of {_prefix(names)}flip40 among the {_prefix(names)[:-1]} sources"
        + " (1: lowest), per seed |",
        "|---" * (6 + len(parts) + len(names)) + "|",
    ]
    for v in VARIANTS:
        rs = [recs[(s, v)] for s in seeds if (s, v) in recs]
        if not rs:
            continue
        accs = [100 * x["metrics"]["test_pairwise_accuracy"] for x in rs]
        w = {n: statistics.median(x["metrics"]["final_mean_weight"][n] for x in rs) for n in names}
        lowest, ranks = "-", "-"
        if v != "unweighted":
            lowest = ", ".join(min(x["metrics"]["final_mean_weight"].items(), key=lambda kv: kv[1])[0] for x in rs)
            ranks = " / ".join(str(_flip40_rank(x["metrics"]["final_mean_weight"])) for x in rs)
        part_accs = "".join(f"{statistics.median(_part_accuracy(x, k) for x in rs):.1f} | " for k in parts)
        lines.append(
            f"| {v} | {len(rs)} | {statistics.median(accs):.1f} | {' / '.join(f'{a:.1f}' for a in accs)} | "
            + part_accs
            + " | ".join(f"{w[n]:.4f}" for n in names)
            + f" | {lowest} | {ranks} |"
        )
    lines += ["", "| difference (test accuracy, points) | per seed: mean [paired bootstrap 95%] | pooled over seeds |"]
    lines.append("|---|---|---|")
    for v in ("dorm", "prior", "bilevel-no-prior"):
        both = [s for s in seeds if (s, v) in recs and (s, "unweighted") in recs]
        if not both:
            continue
        a = np.array([[m > 0 for m in recs[(s, v)]["margins"]] for s in both], dtype=float)
        b = np.array([[m > 0 for m in recs[(s, "unweighted")]["margins"]] for s in both], dtype=float)
        cells = []
        for k, s in enumerate(both):
            d, lo, hi = paired_pair_bootstrap(a[k : k + 1], b[k : k + 1])
            cells.append(f"seed {s}: {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        d, lo, hi = paired_pair_bootstrap(a, b)
        lines.append(f"| {v} - unweighted | {'; '.join(cells)} | {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |")
    return "\n".join(lines)


def signals_table(out: Path) -> str:
    """Per final run that moves w, each source's mean of alpha (l(theta) - l(u)) over the logged points
    (positive pushes its weights down), and for the prior: each source's mean standardised u and q."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "final").glob("*.json"))]
    names = recs[0]["weight_curves"]["sources"]
    lines = ["| run | quantity | " + " | ".join(names) + " |", "|---" * (2 + len(names)) + "|"]
    for x in sorted(recs, key=lambda x: (VARIANTS.index(x["variant"]), x["seed"])):
        label = f"{x['variant']}, seed {x['seed']}"
        points = [p["signal"] for p in x["weight_curves"]["points"] if "signal" in p]
        if points:
            means = [statistics.mean(p[k] for p in points if p[k] is not None) for k in range(len(names))]
            lines.append(
                f"| {label} | alpha (l(theta) - l(u)), x1000 | " + " | ".join(f"{1000 * m:+.2f}" for m in means) + " |"
            )
        for key, what in (("prior_zu_mean", "z(u) of eq. 3.6"), ("prior_zq_mean", "z(q) of eq. 3.6")):
            if key in x["metrics"] and x["variant"] == "prior":
                lines.append(
                    f"| {label} | {what} | " + " | ".join(f"{x['metrics'][key][n]:+.3f}" for n in names) + " |"
                )
    return "\n".join(lines)


def readings_table(out: Path) -> str:
    """sst2-pairs: dorm's search runs at the thesis's values (alpha 10, beta 1, eta_w 1e-3) under eq. 3.5-3.6
    as written and under READING: how well a low w0 finds the flipped training pairs (AUC), the 40%-flipped
    source's mean final w on its flipped and kept pairs, and per source the mean standardised q of eq. 3.6 and
    the mean w0 (the prior's weights, before the bilevel steps)."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "search").glob("dorm_*.json"))]
    recs = [x for x in recs if {k: x["dorm"][k] for k in THESIS} == THESIS]
    if not recs:
        return ""
    names = recs[0]["weight_curves"]["sources"]
    p = _prefix(names)
    lines = [
        f"| prior reading | seed | AUC low w0 | {p}flip40 w: flipped / kept | "
        + " | ".join(f"z(q) {n}" for n in names)
        + " | "
        + " | ".join(f"w0 {n}" for n in names)
        + " | lowest w0 |",
        "|---" * (5 + 2 * len(names)) + "|",
    ]
    for x in sorted(recs, key=lambda x: ("q_form" in x["dorm"], x["seed"])):
        m, f = x["metrics"], x["flips"]
        reading = "q absolute, c 0" if "q_form" in x["dorm"] else "eq. 3.5-3.6"
        w0 = m["prior_mean_weight"]
        lines.append(
            f"| {reading} | {x['seed']} | {f['auc_low_w0']:.3f} | "
            f"{f[p + 'flip40']['flipped']:.3f} / {f[p + 'flip40']['kept']:.3f} | "
            + " | ".join(f"{m['prior_zq_mean'][n]:+.3f}" for n in names)
            + " | "
            + " | ".join(f"{w0[n]:.4f}" for n in names)
            + f" | {min(w0, key=w0.get)} |"
        )
    return "\n".join(lines)


def weights_table(out: Path) -> str:
    """Each weighted final run's per-source mean final weight, one row per seed (1: the lowest of the row)."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "final").glob("*.json"))]
    recs = sorted(
        (x for x in recs if x["variant"] != "unweighted"), key=lambda x: (VARIANTS.index(x["variant"]), x["seed"])
    )
    names = recs[0]["weight_curves"]["sources"]
    lines = [
        "| variant | seed | " + " | ".join(f"w {n}" for n in names) + " | lowest |",
        "|---" * (3 + len(names)) + "|",
    ]
    for x in recs:
        w = x["metrics"]["final_mean_weight"]
        lowest = min(w, key=w.get)
        cells = " | ".join(f"**{w[n]:.4f}**" if n == lowest else f"{w[n]:.4f}" for n in names)
        lines.append(f"| {x['variant']} | {x['seed']} | {cells} | {lowest} |")
    return "\n".join(lines)


def flips_table(out: Path) -> str:
    """Per weighted final run (and --stage balanced run): does w sit lower on the flipped HH pairs (AUC of low
    w, of low w0 and of low w - w0 on flipped among all HH training pairs; hh-flip40's mean w on its flipped
    and kept pairs), and each source's eq. 3.10 signal, mean +- standard error over the logged points."""
    recs = [json.loads(p.read_text()) for stage in ("final", "balanced") for p in sorted((out / stage).glob("*.json"))]
    recs = [x for x in recs if "flips" in x]
    names = recs[0]["weight_curves"]["sources"]
    p = _prefix(names)
    lines = [
        f"| run | D_val | AUC low w | AUC low w0 | AUC low w - w0 | {p}flip40 w: flipped / kept | "
        + " | ".join(f"signal {n}, x1000" for n in names)
        + " | lowest w |",
        "|---" * (7 + len(names)) + "|",
    ]
    for x in recs:
        f = x["flips"]
        cells = []
        for k in range(len(names)):
            v = [p["signal"][k] for p in x["weight_curves"]["points"] if "signal" in p and p["signal"][k] is not None]
            cells.append(
                f"{1000 * statistics.mean(v):+.1f} ± {1000 * statistics.stdev(v) / len(v) ** 0.5:.1f}" if v else "-"
            )
        lowest = min(x["metrics"]["final_mean_weight"].items(), key=lambda kv: kv[1])[0]
        dval = f"HH + demo x{BALANCE}, selection" if x["stage"] == "balanced" else "HH + demo, test"
        dval = "SST-2 dev, test" if p == "sst2-" else dval
        lines.append(
            f"| {x['variant']}, seed {x['seed']} | {dval} | {f['auc_low_w']:.3f} | {f['auc_low_w0']:.3f} | "
            f"{f['auc_low_dw']:.3f} | {f[p + 'flip40']['flipped']:.3f} / {f[p + 'flip40']['kept']:.3f} | "
            + " | ".join(cells)
            + f" | {lowest} |"
        )
    return "\n".join(lines)


def minutes(out: Path) -> float:
    stages = ("budget", "search", "final", "balanced", "seeds", "prior_readings")
    paths = [p for stage in stages for p in (out / stage).glob("*.json")]
    return sum(json.loads(p.read_text())["seconds"] for p in paths) / 60


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("budget", "search", "final", "balanced", "seeds", "prior-readings"))
    p.add_argument(
        "--data",
        default="hh",
        help=f"the preference set: {', '.join(DATAS)} (sst2-pairs: SST-2 sentences paired positive over negative)",
    )
    p.add_argument(
        "--split",
        help=f"--data hh only: where D_val, selection and test pairs come from, {', '.join(SPLITS)} (default hh); "
        "--data sst2-pairs has one split (dev: D_val and selection, test: test) and takes no --split",
    )
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "dorm_hh")
    p.add_argument(
        "--out",
        type=Path,
        help="records (default: benchmarks/results/dorm_hh; every-source: its every_source/, sst2-pairs: sst2_pairs/)",
    )
    p.add_argument("--report", action="store_true", help="print the tables from the records in --out")
    args = p.parse_args(argv)
    if args.data not in DATAS:
        sys.exit(f"--data must be one of {', '.join(DATAS)}, not '{args.data}'")
    if args.data == "sst2-pairs" and args.split is not None:
        sys.exit("--split is for --data hh only (hh or every-source); --data sst2-pairs has one split")
    if args.split is not None and args.split not in SPLITS:
        sys.exit(f"--split must be one of {', '.join(SPLITS)}, not '{args.split}'")
    mode = args.split or "hh" if args.data == "hh" else args.data
    args.out = args.out or {"hh": OUT, "every-source": OUT / "every_source", "sst2-pairs": OUT / "sst2_pairs"}[mode]
    if args.report:
        searches = [search_table(args.out, v, mode)[0] for v in ("unweighted", "dorm", "bilevel-no-prior")]
        flips = [weights_table(args.out), flips_table(args.out), seeds_table(args.out)] if mode != "hh" else []
        if mode == "sst2-pairs":
            flips += [readings_table(args.out), prior_readings_table(args.out)]
        flips = [t for t in flips if t]  # sst2-pairs may have no --stage seeds records
        print(budget_table(args.out), *searches, final_table(args.out), signals_table(args.out), *flips, sep="\n\n")
        print(f"\n{minutes(args.out):.1f} min of run time in {args.out}")
        return
    if not args.stage:
        p.error("give --stage or --report")
    if args.stage == "prior-readings" and mode != "sst2-pairs":  # before the model loads
        sys.exit("--stage prior-readings needs --data sst2-pairs")
    torch.set_num_threads(1)
    runner = Runner(args.work, mode, args.out)
    stages = {"budget": budget, "search": search, "final": final, "balanced": balanced, "seeds": many_seeds}
    stages["prior-readings"] = prior_readings
    stages[args.stage](runner, args.out)


if __name__ == "__main__":
    main()
