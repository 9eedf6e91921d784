"""`prefalign rules discover` and `apply`: PRBoost's rounds (thesis sec. 2.4), resumable, and labelling new
texts with an accepted rule set."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..models.loading import load_backbone
from ..utils.atomic_files import write_text_atomically
from ..utils.environment import versions
from . import core
from .config import RulesConfig
from .data import read_texts
from .encode import EncodingCache, cache_key, embed, load_prompting_model, top_words
from .review import simulated_review, terminal_review, word_label_counts
from .store import (
    accepted_prompt_rules,
    accepted_words,
    load_rules,
    new_document,
    pattern_rules,
    save_rules,
    undecided,
)
from .weak import WeakModel, feature_stats, train_weak_model

STATE = "state.json"
RULES = "rules.json"


# ---------------------------------------------------------------------------------------------------------------
# Encoders: the prompting model and the embedding model, loaded on first use, readings cached


class Encoders:
    """Top-k words (eq. 2.4) and embeddings (eq. 2.5) of texts, each computed once and cached on disk."""

    def __init__(self, matching: dict, cache_dir: str | Path, prompt_lm=None, embed_lm=None):
        self.m = matching
        self.cache = EncodingCache(cache_dir)
        self._prompt_lm = prompt_lm
        self._embed_lm = embed_lm

    def _load(self, name: str):
        return load_backbone(name)

    @property
    def prompt_lm(self):
        if self._prompt_lm is None:
            self._prompt_lm = load_prompting_model(self.m["prompt_model"])
        return self._prompt_lm

    @property
    def embed_lm(self):
        if self._embed_lm is None:
            self._embed_lm = self._load(self.m["embedding_model"])
        return self._embed_lm

    def words(self, texts: list[str]) -> list[list[str]]:
        settings = {k: self.m[k] for k in ("template", "top_k", "max_length", "min_word_length")}
        key = cache_key("words", self.m["prompt_model"], settings, [])
        return self.cache.words(
            key,
            texts,
            lambda todo: top_words(
                self.prompt_lm,
                todo,
                self.m["template"],
                self.m["top_k"],
                max_length=self.m["max_length"],
                batch_size=self.m.get("batch_size", 16),
                min_word_length=self.m["min_word_length"],
            ),
        )

    def embeddings(self, texts: list[str]) -> np.ndarray:
        key = cache_key("emb", self.m["embedding_model"], {"max_length": self.m["embed_max_length"]}, texts)
        return self.cache.embeddings(key, lambda: embed(self.embed_lm, texts, max_length=self.m["embed_max_length"]))


def matching_settings(cfg: RulesConfig) -> dict:
    """What `apply` needs to match rules as `discover` did (stored in the rules file)."""
    return {
        "prompt_model": cfg.prompt.model,
        "template": cfg.prompt.template,
        "top_k": cfg.prompt.top_k,
        "max_length": cfg.prompt.max_length,
        "batch_size": cfg.prompt.batch_size,
        "min_word_length": cfg.prompt.min_word_length,
        "embedding_model": cfg.match.embedding_model,
        "embed_max_length": cfg.match.max_length,
        "alpha": cfg.match.alpha,
        "rule_embedding": cfg.match.rule_embedding,
        "threshold": None,
    }


# ---------------------------------------------------------------------------------------------------------------
# Labelling texts with a rule set


def rule_embeddings(rules: list[dict], enc: Encoders) -> np.ndarray:
    """e_rj: the embedding of each rule's source instance, or of its accepted words joined by spaces."""
    if not rules:
        return np.zeros((0, 1))
    if enc.m.get("rule_embedding", "instance") == "words":
        return enc.embeddings([" ".join(accepted_words(r)) for r in rules])
    return enc.embeddings([r["source_text"] for r in rules])


def prompt_scores(rules: list[dict], emb: np.ndarray, words: list[list[str]], enc: Encoders) -> np.ndarray:
    """s_j of eq. 2.7 for every (text, accepted prompt rule)."""
    if not rules:
        return np.zeros((len(emb), 0))
    sim_a = core.cosine_matrix(emb, rule_embeddings(rules, enc))
    sim_b = core.overlap_matrix(words, [accepted_words(r) for r in rules], enc.m["top_k"])
    return core.matching_scores(sim_a, sim_b, enc.m["alpha"])


def pattern_votes(doc: dict, texts: list[str]) -> np.ndarray:
    """Lambda of the keyword and regex rules (texts x rules), ABSTAIN where a rule does not fire."""
    rules = pattern_rules(doc)
    try:
        pats = [core.compile_rule(r["kind"], r["pattern"]) for r in rules]
    except Exception as exc:
        raise DataError(f"a regex rule does not compile ({exc}); fix its pattern in the rules file") from None
    fires = core.match_matrix(texts, pats)
    return core.vote_matrix(fires, [doc["labels"].index(r["label"]) for r in rules])


def combine(pattern: np.ndarray, prompt_labels: np.ndarray, prompt_top: np.ndarray, k: int) -> np.ndarray:
    """Each text's weak label: the majority over the firing keyword/regex rules (one vote each) and its best
    prompt rule (one vote, if above sigma); ties go to the larger summed score (a pattern rule scores 1)."""
    votes = np.concatenate([pattern, prompt_labels[:, None]], axis=1)
    scores = np.concatenate([np.ones(pattern.shape), prompt_top[:, None]], axis=1)
    return core.majority_vote(votes, k, scores)


def label_with_rules(
    doc: dict, texts: list[str], emb: np.ndarray, words: list[list[str]], enc: Encoders, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(weak label or ABSTAIN, best prompt-rule score) per text under the document's accepted rules."""
    k = len(doc["labels"])
    rules = accepted_prompt_rules(doc)
    scores = prompt_scores(rules, emb, words, enc)
    labels, top = core.soft_match(scores, [doc["labels"].index(r["label"]) for r in rules], threshold)
    return combine(pattern_votes(doc, texts), labels, top, k), top


# ---------------------------------------------------------------------------------------------------------------
# The rounds


@dataclass
class Split:
    texts: list[str]
    y: np.ndarray | None
    emb: np.ndarray
    words: list[list[str]] | None = None


@dataclass
class DiscoverResult:
    """Where a discover run stands: rounds done, whether a review is waiting, the record."""

    output_dir: Path
    rounds_done: int
    waiting_for_review: bool
    record: dict = field(default_factory=dict)


def _read(cfg: RulesConfig, name: str, need: bool):
    t = getattr(cfg, name)
    return read_texts(t.path, t.text_column, t.label_column, cfg.labels, need, t.limit)


def _apply_to_dev(
    doc: dict,
    dev: Split,
    enc: Encoders,
    fallback: np.ndarray,
    grid: list[float],
    tune: str = "combined",
    min_matches: int = 3,
) -> tuple[float, float]:
    """sigma from the grid and its dev score. 'combined': the labelling (rules where they match, the current
    ensemble elsewhere) most accurate, ties to the stricter sigma. 'rule_accuracy': the prompt rules' own
    accuracy on the dev texts they match (at least ``min_matches``), ties to the looser sigma."""
    rules = accepted_prompt_rules(doc)
    if not rules:
        return max(grid), float("nan")
    scores = prompt_scores(rules, dev.emb, dev.words, enc)
    pattern = pattern_votes(doc, dev.texts)
    k = len(doc["labels"])
    rule_labels = [doc["labels"].index(r["label"]) for r in rules]
    if tune == "rule_accuracy":
        best = (-1.0, max(grid))
        for sigma in sorted(grid, reverse=True):
            labels, _ = core.soft_match(scores, rule_labels, sigma)
            hit = labels != core.ABSTAIN
            if hit.sum() >= min_matches:
                acc = float((labels[hit] == dev.y[hit]).mean())
                if acc >= best[0]:
                    best = (acc, float(sigma))
        return best[1], best[0]
    best = (-1.0, max(grid))
    for sigma in sorted(grid):  # eq. 2.7's sigma: the labelling (rules, else the current model) most accurate
        labels, top = core.soft_match(scores, rule_labels, sigma)
        combined = combine(pattern, labels, top, k)
        acc = float((np.where(combined == core.ABSTAIN, fallback, combined) == dev.y).mean())
        if acc >= best[0]:
            best = (acc, float(sigma))
    return best[1], best[0]


def _rule_dev_stats(doc: dict, dev: Split, enc: Encoders, threshold: float) -> None:
    """Each rule's coverage and accuracy on dev, written into the document."""
    labels = doc["labels"]
    pv = pattern_votes(doc, dev.texts)
    for j, rule in enumerate(pattern_rules(doc)):
        cov, acc = core.coverage_accuracy(pv[:, j], dev.y)
        rule["dev_coverage"], rule["dev_accuracy"] = round(cov, 4), None if acc is None else round(acc, 4)
    rules = accepted_prompt_rules(doc)
    scores = prompt_scores(rules, dev.emb, dev.words, enc)
    for j, rule in enumerate(rules):
        hit = np.where(scores[:, j] > threshold, labels.index(rule["label"]), core.ABSTAIN)
        cov, acc = core.coverage_accuracy(hit, dev.y)
        rule["dev_coverage"], rule["dev_accuracy"] = round(cov, 4), None if acc is None else round(acc, 4)


def _accuracy(p: np.ndarray, y: np.ndarray | None) -> float | None:
    return None if y is None else float((p.argmax(1) == y).mean())


def _propose(doc: dict, state: dict, clean: Split, enc: Encoders, cfg: RulesConfig, round_: int) -> None:
    """Eq. 2.1-2.4: the top-n large-error clean instances become prompt rules with k candidate words each."""
    hard = core.top_hard(np.asarray(state["weights"]), cfg.boost.top_n, state["used"] if cfg.boost.exclude_used else ())
    known = {(r["label"], w) for r in accepted_prompt_rules(doc) for w in accepted_words(r)}
    for i in hard:
        text = clean.texts[i]
        words = [w for w in clean.words[i] if (doc["labels"][clean.y[i]], w) not in known]
        doc["rules"].append(
            {
                "id": f"r{round_}-i{i}",
                "kind": "prompt",
                "label": doc["labels"][int(clean.y[i])],
                "round": round_,
                "source_text": text,
                "prompt": cfg.prompt.template.replace("{text}", text),
                "boost_weight": round(float(state["weights"][i]), 6),
                "accepted_by": None,
                "candidates": [{"word": w, "decision": "pending"} for w in words],
            }
        )
        state["used"].append(int(i))


def discover(cfg: RulesConfig, *, prompt_lm=None, embed_lm=None, stdin=None, stdout=None, log=print) -> DiscoverResult:
    """Run (or continue) PRBoost's rounds; stops early, resumable, when a person's review is pending."""
    start = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rules_path, state_path = out / RULES, out / STATE
    k = len(cfg.labels)
    enc = Encoders(matching_settings(cfg), cfg.cache_dir or out / "cache", prompt_lm, embed_lm)

    pool_texts, pool_y = _read(cfg, "unlabelled", False)
    clean_texts, clean_y = _read(cfg, "clean", True)
    dev_texts, dev_y = _read(cfg, "dev", True)
    log(f"texts: {len(pool_texts)} unlabelled, {len(clean_texts)} clean, {len(dev_texts)} dev")
    pool = Split(pool_texts, pool_y, enc.embeddings(pool_texts), enc.words(pool_texts))
    clean = Split(clean_texts, clean_y, enc.embeddings(clean_texts), enc.words(clean_texts))
    dev = Split(dev_texts, dev_y, enc.embeddings(dev_texts), enc.words(dev_texts))
    test = None
    if cfg.test.path:
        tt, ty = _read(cfg, "test", True)
        test = Split(tt, ty, enc.embeddings(tt))
    stats = feature_stats(pool.emb)

    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("config_fingerprint") != _fingerprint(cfg):
            raise ConfigError(
                f"{out} holds a run of another config (texts, labels or rule settings differ); "
                "use a new output_dir or delete it to start again"
            )
        doc = load_rules(rules_path)
    else:
        doc = new_document(cfg.labels, enc.m)
        for i, r in enumerate(cfg.seed_rules):
            doc["rules"].append(
                {
                    "id": f"seed-{i}",
                    "kind": r.kind,
                    "pattern": r.pattern,
                    "label": r.label,
                    "round": 0,
                    "accepted_by": "seed",
                }
            )
        state = {
            "config_fingerprint": _fingerprint(cfg),
            "rounds_done": -1,
            "weights": [1.0 / len(clean.texts)] * len(clean.texts),
            "alphas": [],
            "errors": [],
            "used": [],
            "threshold": max(cfg.match.thresholds),
            "history": [],
            "kappa": [],
        }
    models = [
        WeakModel.load(out / f"model-{t}.safetensors", pool.emb.shape[1], k, cfg.weak_model)
        for t in range(state["rounds_done"] + 1)
    ]
    counts = word_label_counts(pool.words, pool.y, k) if pool.y is not None else None

    def save() -> None:
        save_rules(rules_path, doc)
        write_text_atomically(state_path, json.dumps(state, indent=1))

    for t in range(state["rounds_done"] + 1, cfg.boost.rounds + 1):
        if t > 0:
            if not any(r.get("round") == t for r in doc["rules"] if r["kind"] == "prompt"):
                _propose(doc, state, clean, enc, cfg, t)
                save()
                n = sum(1 for _ in undecided(doc, t))
                log(
                    f"round {t}: proposed {n} candidate words"
                    if n
                    else f"round {t}: no candidates (every clean instance was used: boost.exclude_used, top_n)"
                )
            if any(True for _ in undecided(doc, t)):
                if cfg.review.reviewer == "simulated":
                    if counts is None:
                        raise ConfigError(
                            "simulated reviewers need the pool's true labels: set unlabelled.label_column"
                        )
                    agreement = simulated_review(
                        doc,
                        t,
                        counts,
                        reviewers=cfg.review.reviewers,
                        error_rate=cfg.review.error_rate,
                        precision=cfg.review.oracle_precision,
                        min_support=cfg.review.oracle_min_support,
                        rng=np.random.default_rng([cfg.seed, t]),
                    )
                    state["kappa"].append({"round": t, **agreement})
                    save()
                elif cfg.review.reviewer == "terminal":
                    terminal_review(rules_path, stdin=stdin, stdout=stdout)
                    doc = load_rules(rules_path)
                if any(True for _ in undecided(doc, t)):
                    log(
                        f"round {t}: candidates wait for review in {rules_path} (`prefalign rules review --rules "
                        f"{rules_path}`, or export/import); run discover again to continue"
                    )
                    return DiscoverResult(out, state["rounds_done"], True, {})
        # Weak labels under every accepted rule, sigma tuned on dev against the current ensemble.
        fallback = (
            core.ensemble([m.predict_proba(dev.emb) for m in models]).argmax(1) if models else np.full(len(dev.y), -2)
        )
        sigma, dev_acc_rules = _apply_to_dev(
            doc, dev, enc, fallback, cfg.match.thresholds, cfg.match.tune, cfg.match.min_dev_matches
        )
        state["threshold"] = sigma
        doc["matching"]["threshold"] = sigma
        weak, _ = label_with_rules(doc, pool.texts, pool.emb, pool.words, enc, sigma)
        matched = weak != core.ABSTAIN
        if matched.sum() == 0:
            raise DataError("no rule matches any unlabelled text; add seed rules that fire on the pool")
        x_train, y_train = pool.emb[matched], weak[matched]
        if cfg.weak_model.train_on_clean:
            x_train = np.concatenate([x_train, clean.emb])
            y_train = np.concatenate([y_train, clean.y])
        model = train_weak_model(x_train, y_train, pool.emb[~matched], k, cfg.weak_model, cfg.seed + t, stats)
        model.save(out / f"model-{t}.safetensors")
        models.append(model)
        # Eq. 2.1-2.3 on the clean set.
        pred = model.predict_proba(clean.emb).argmax(1)
        weights, alpha, err = core.boosting_step(np.asarray(state["weights"]), clean.y, pred, k)
        state["weights"], state["alphas"], state["errors"] = (
            weights.tolist(),
            state["alphas"] + [alpha],
            state["errors"] + [err],
        )
        _rule_dev_stats(doc, dev, enc, sigma)
        cov, acc = core.coverage_accuracy(weak, pool.y)
        equal = core.ensemble([m.predict_proba(dev.emb) for m in models])
        # The accepted prompt rules alone on the pool at every sigma of the grid: what tuning chose between.
        prules = accepted_prompt_rules(doc)
        pscores = prompt_scores(prules, pool.emb, pool.words, enc)
        curve = []
        for s in cfg.match.thresholds if prules else []:
            labels, _ = core.soft_match(pscores, [cfg.labels.index(r["label"]) for r in prules], s)
            curve.append([s, *core.coverage_accuracy(labels, pool.y)])
        entry = {
            "round": t,
            "accepted_prompt_rules": len(accepted_prompt_rules(doc)),
            "accepted_words": sum(len(accepted_words(r)) for r in accepted_prompt_rules(doc)),
            "threshold": sigma,
            "pool_coverage": cov,
            "pool_rule_accuracy": acc,
            "prompt_rules_on_pool": curve,  # [sigma, coverage, accuracy (gold labels, if any)]
            "clean_error": err,
            "alpha": alpha,
            "dev_accuracy_model": _accuracy(model.predict_proba(dev.emb), dev.y),
            "dev_accuracy_ensemble": _accuracy(equal, dev.y),
        }
        if test is not None:
            probs = [m.predict_proba(test.emb) for m in models]
            entry["test_accuracy_model"] = _accuracy(probs[-1], test.y)
            entry["test_accuracy_ensemble"] = _accuracy(core.ensemble(probs), test.y)
            entry["test_accuracy_ensemble_alpha"] = _accuracy(core.ensemble(probs, state["alphas"]), test.y)
        state["history"].append(entry)
        state["rounds_done"] = t
        save()
        log(
            f"round {t}: {entry['accepted_prompt_rules']} prompt rules, coverage {cov:.3f}, sigma {sigma:g}, "
            f"dev accuracy (ensemble) {entry['dev_accuracy_ensemble']:.4f}"
        )

    record = {
        "config": cfg.to_dict(),
        "rounds": state["history"],
        "kappa": state["kappa"],
        "alphas": state["alphas"],
        "versions": versions(),
    }
    if test is not None and models:
        probs = [m.predict_proba(test.emb) for m in models]
        weights = state["alphas"] if cfg.boost.ensemble_weights == "alpha" else None
        record["test_predictions"] = {
            "prboost": core.ensemble(probs, weights).argmax(1).tolist(),
            "last_model": probs[-1].argmax(1).tolist(),
            "round0_model": probs[0].argmax(1).tolist(),
        }
        record["test_labels"] = test.y.tolist()
    if cfg.baselines and test is not None:
        record["baselines"] = baselines(doc, cfg, pool, clean, test, stats, enc)
    record["seconds_this_call"] = time.perf_counter() - start
    write_text_atomically(out / "record.json", json.dumps(record, indent=1))
    return DiscoverResult(out, state["rounds_done"], False, record)


def _fingerprint(cfg: RulesConfig) -> dict:
    d = cfg.to_dict()
    return {k: d[k] for k in ("labels", "unlabelled", "clean", "dev", "seed_rules", "prompt", "match", "seed")}


def _scored(head: WeakModel, test: Split) -> dict:
    pred = head.predict_proba(test.emb).argmax(1)
    return {"accuracy": float((pred == test.y).mean()), "predictions": pred.tolist()}


def baselines(doc, cfg: RulesConfig, pool: Split, clean: Split, test: Split, stats, enc: Encoders) -> dict:
    """Table 2.2's comparisons at our scale, each scored on the test set (with its per-item predictions)."""
    k = len(cfg.labels)
    seed_doc = {**doc, "rules": [r for r in doc["rules"] if r.get("accepted_by") == "seed"]}
    no_st = type(cfg.weak_model)(**{**cfg.weak_model.to_dict(), "self_training": False})
    out: dict = {}
    tv = pattern_votes(seed_doc, test.texts)
    mv_test = core.majority_vote(tv, k)
    cov, acc = core.coverage_accuracy(mv_test, test.y)
    out["rule_matching"] = {
        "accuracy": float((mv_test == test.y).mean()),  # an abstain counts as wrong
        "coverage": cov,
        "accuracy_on_covered": acc,
        "predictions": mv_test.tolist(),
    }
    pv = pattern_votes(seed_doc, pool.texts)
    mv = core.majority_vote(pv, k)
    m = mv != core.ABSTAIN
    head = train_weak_model(pool.emb[m], mv[m], pool.emb[~m], k, no_st, cfg.seed, stats)
    out["majority_vote"] = _scored(head, test)
    head = train_weak_model(
        np.concatenate([pool.emb[m], clean.emb]),
        np.concatenate([mv[m], clean.y]),
        pool.emb[~m],
        k,
        no_st,
        cfg.seed,
        stats,
    )
    out["majority_vote+clean"] = _scored(head, test)
    try:
        soft = snorkel_label_model(pv, k, cfg.seed)
    except ImportError:
        out["label_model"] = {"skipped": "pip install snorkel (the [rules] extra) for Snorkel's LabelModel"}
    except ValueError as exc:  # Snorkel's own checks, e.g. fewer than 3 labelling functions
        out["label_model"] = {"skipped": f"Snorkel's LabelModel: {exc}"}
    else:
        head = train_weak_model(pool.emb[m], soft[m], pool.emb[~m], k, no_st, cfg.seed, stats)
        out["label_model"] = _scored(head, test)
        head = train_weak_model(pool.emb[m], soft[m].argmax(1), pool.emb[~m], k, no_st, cfg.seed, stats)
        out["label_model_argmax"] = _scored(head, test)  # its most probable label instead of the distribution
        onehot = np.eye(k)[clean.y]
        head = train_weak_model(
            np.concatenate([pool.emb[m], clean.emb]),
            np.concatenate([soft[m], onehot]),
            pool.emb[~m],
            k,
            no_st,
            cfg.seed,
            stats,
        )
        out["label_model+clean"] = _scored(head, test)
    head = train_weak_model(clean.emb, clean.y, pool.emb[:0], k, no_st, cfg.seed, stats)
    out["clean_only"] = _scored(head, test)
    if pool.y is not None:
        head = train_weak_model(pool.emb, pool.y, pool.emb[:0], k, no_st, cfg.seed, stats)
        out["pool_gold_labels"] = _scored(head, test)
    return out


def snorkel_label_model(votes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Snorkel's LabelModel (matrix completion, Ratner et al. 2019) fitted on the label matrix; its soft labels.
    Rows where no rule fires get its class prior; callers keep the covered rows."""
    from snorkel.labeling.model import LabelModel

    lm = LabelModel(cardinality=k, verbose=False, device="cpu")
    lm.fit(votes, n_epochs=500, seed=seed, log_freq=1000, progress_bar=False)
    return lm.predict_proba(votes)


# ---------------------------------------------------------------------------------------------------------------
# apply


def apply_rules(doc: dict, texts: list[str], *, prompt_lm=None, embed_lm=None, cache_dir=None) -> list[dict]:
    """Label texts with a rules document: one row per text with its label (None: no rule matched), the
    ids of the keyword/regex rules that fired and the best prompt rule with its score."""
    k = len(doc["labels"])
    m = doc["matching"]
    rules = accepted_prompt_rules(doc)
    pv = pattern_votes(doc, texts)
    prules = pattern_rules(doc)
    if rules:
        missing = [
            key for key in ("prompt_model", "embedding_model", "top_k", "alpha", "threshold") if m.get(key) is None
        ]
        if missing:
            raise DataError(f"the rules file's 'matching' lacks {missing}; run discover to fill them in")
        with tempfile.TemporaryDirectory(prefix="prefalign-rules-") as tmp:
            enc = Encoders(m, cache_dir or tmp, prompt_lm, embed_lm)
            scores = prompt_scores(rules, enc.embeddings(texts), enc.words(texts), enc)
        labels, top = core.soft_match(scores, [doc["labels"].index(r["label"]) for r in rules], m["threshold"])
        best = scores.argmax(1)
    else:
        labels, top, best = np.full(len(texts), core.ABSTAIN), np.zeros(len(texts)), np.zeros(len(texts), dtype=int)
    final = combine(pv, labels, top, k)
    rows = []
    for i, text in enumerate(texts):
        rows.append(
            {
                "text": text,
                "label": None if final[i] == core.ABSTAIN else doc["labels"][final[i]],
                "fired": [prules[j]["id"] for j in np.flatnonzero(pv[i] != core.ABSTAIN)],
                "prompt_rule": rules[best[i]]["id"] if rules and labels[i] != core.ABSTAIN else None,
                "prompt_score": round(float(top[i]), 4) if rules else None,
            }
        )
    return rows
