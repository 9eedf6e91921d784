"""`prefalign probe drift` and `probe bias`: every per-layer quantity against a direct computation on
tiny random models, the multi-label reader, pair mining, and the CLI's outputs and errors."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from conftest import build_tiny, toy_sentiment
from helpers_cli import assert_one_error, run_main, write_jsonl
from helpers_models import DECODER_PROMPT, sentiment_setup
from helpers_probes import tiny_llama_dir, toy_csv, train_tiny
from prefalign.analysis.bias import contain_means, probe_bias
from prefalign.analysis.drift import COLUMNS, kl_divergence, levenshtein, probe_drift
from prefalign.analysis.layers import Subject, base_subject, read_layers
from prefalign.analysis.probe_data import Pair, ProbeRow, balanced_sample, mine_pairs, read_multilabel
from prefalign.data.collator import Collator
from prefalign.methods import build_method, method_config
from prefalign.models.classifier import masked_mean
from prefalign.models.prefix import build_prefix_cache, extend_attention_mask

# -- direct computations ---------------------------------------------------------------------------


def direct_hidden(lm, batch, prefix=None):
    """Hidden states of every layer straight from the backbone (prefix in the cache if given)."""
    base = lm.model.base_model if lm.geometry.is_decoder else lm.model
    kwargs = {}
    mask = batch["attention_mask"]
    if prefix is not None:
        kwargs["past_key_values"] = build_prefix_cache(prefix, lm.geometry, lm.model.config)
        mask = extend_attention_mask(mask, prefix.shape[3])
    if "token_type_ids" in batch:
        kwargs["token_type_ids"] = batch["token_type_ids"]
    with torch.no_grad():
        return base(
            input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True, **kwargs
        ).hidden_states


def direct_lens(lm, hidden, batch, vids):
    """Per layer: (log-probs of the label words, raw logits of them, top-10 ids) at the last real token."""
    last = batch["attention_mask"].sum(-1) - 1
    rows = torch.arange(len(last))
    out = []
    with torch.no_grad():
        for i, h in enumerate(hidden):
            x = h[rows, last]
            if i < len(hidden) - 1:  # the model norms its last layer itself
                x = lm.model.model.norm(x)
            logits = lm.model.lm_head(x).float()
            out.append((torch.log_softmax(logits, -1)[:, vids], logits[:, vids], logits.topk(10).indices))
    return out


@pytest.fixture
def llama(vocab_file):
    return build_tiny("llama", vocab_file)


def dcpc_subject(lm, name="dcpc", **params):
    ds, spec, collator = sentiment_setup(lm, n=8, soft=False)
    model = build_method(method_config(name, {"use_pcm": True, **params} if name == "dcpc" else params), lm, spec)
    with torch.no_grad():  # move the prefixes away from their text initialisation
        for p in model.prefix.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    return Subject(
        name=name, classifier=model.classifier, collator=collator, label_names=ds.label_names, method=model
    ), ds


# -- per-layer quantities ---------------------------------------------------------------------------


def test_base_decoder_layers_match_a_direct_logit_lens(llama):
    subject = base_subject(llama, ["negative", "positive"], DECODER_PROMPT)
    examples = toy_sentiment(6).examples
    r = read_layers(subject, examples, top_k=10, batch_size=4)
    batch = subject.collator(examples)
    hidden = direct_hidden(llama, batch)
    assert r.pooled.shape == (llama.geometry.num_layers + 1, 6, llama.geometry.hidden_size)
    vids = subject.classifier.verbalizer_ids
    for layer, (scores, raw, top) in enumerate(direct_lens(llama, hidden, batch, vids)):
        torch.testing.assert_close(r.pooled[layer], masked_mean(hidden[layer], batch["attention_mask"]))
        torch.testing.assert_close(r.class_scores[layer], scores)
        torch.testing.assert_close(r.label_logits[layer], raw)
        assert torch.equal(r.topk[layer], top)
    # the last layer is what the classifier itself scores
    torch.testing.assert_close(r.class_scores[-1], r.final_logits)


def test_dcpc_checkpoint_is_read_with_its_prefixes_in_place(llama):
    subject, ds = dcpc_subject(llama)
    examples = ds.examples[:5]
    r = read_layers(subject, examples, top_k=10)
    batch = subject.collator(examples)
    with torch.no_grad():
        prefix = subject.method.prefixes(batch["input_ids"], batch["attention_mask"])
    hidden = direct_hidden(llama, batch, prefix)
    for layer, (scores, _, top) in enumerate(direct_lens(llama, hidden, batch, subject.classifier.verbalizer_ids)):
        torch.testing.assert_close(r.pooled[layer], masked_mean(hidden[layer], batch["attention_mask"]))
        torch.testing.assert_close(r.class_scores[layer], scores)
        assert torch.equal(r.topk[layer], top)
    with torch.no_grad():
        torch.testing.assert_close(
            r.class_scores[-1],
            subject.method(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}).logits,
        )
    plain = read_layers(base_subject(llama, ds.label_names, DECODER_PROMPT), examples)
    assert not torch.allclose(plain.pooled[-1], r.pooled[-1])  # the prefix changed every layer above the input


def test_encoder_checkpoint_reads_its_head_on_every_layer(vocab_file):
    lm = build_tiny("bert", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=6, soft=False)
    model = build_method(method_config("ptuning-v2", {}), lm, spec).eval()
    subject = Subject(
        name="pt", classifier=model.classifier, collator=collator, label_names=ds.label_names, method=model
    )
    r = read_layers(subject, ds.examples)
    batch = collator(ds.examples)
    with torch.no_grad():
        prefix = model.prefixes(batch["input_ids"], batch["attention_mask"])
        hidden = direct_hidden(lm, batch, prefix)
        for layer, h in enumerate(hidden):
            expected = model.classifier.head(masked_mean(h, batch["attention_mask"]))
            torch.testing.assert_close(r.class_scores[layer], expected)
    assert r.topk is None
    torch.testing.assert_close(r.class_scores[-1], r.final_logits)
    pairs = [
        Pair(ProbeRow(ex.text, (ex.label,)), ProbeRow(ey.text, (ey.label,)))
        for ex, ey in zip(ds.examples[:3], ds.examples[3:])
    ]
    drift = probe_drift(subject, pairs)
    assert torch.isnan(drift.edit).all() and not torch.isnan(drift.kl).any()


def test_drift_quantities_match_direct_formulas(llama):
    subject, ds = dcpc_subject(llama)
    a, b = ds.examples[:4], ds.examples[4:8]
    pairs = [Pair(ProbeRow(x.text, (x.label,)), ProbeRow(y.text, (y.label,))) for x, y in zip(a, b)]
    result = probe_drift(subject, pairs, top_k=10)
    ra, rb = read_layers(subject, a), read_layers(subject, b)
    layers = llama.geometry.num_layers
    assert result.cosine.shape == (4, layers)
    for i in range(4):
        for layer in range(1, layers + 1):
            ea, eb = ra.pooled[layer, i].double(), rb.pooled[layer, i].double()
            assert math.isclose(
                float(result.cosine[i, layer - 1]), float(ea @ eb / (ea.norm() * eb.norm())), rel_tol=1e-6
            )
            pa, pb = (torch.softmax(r.class_scores[layer, i].double(), -1) for r in (ra, rb))
            kl = float(sum(pa[c] * math.log(pa[c] / pb[c]) for c in range(2)))
            assert math.isclose(float(result.kl[i, layer - 1]), kl, rel_tol=1e-6, abs_tol=1e-12)
            assert result.label_diff[i, layer - 1] == float(pa.argmax() != pb.argmax())
            ta, tb = ra.topk[layer, i].tolist(), rb.topk[layer, i].tolist()
            assert result.edit[i, layer - 1] == levenshtein(ta, tb)
            assert 0 <= result.edit[i, layer - 1] <= 10
    means = result.layer_means()
    assert [m["layer"] for m in means] == list(range(1, layers + 1))
    assert math.isclose(means[0]["kl_divergence"], float(result.kl[:, 0].mean()), rel_tol=1e-9)


def test_identical_inputs_do_not_drift(llama):
    subject, ds = dcpc_subject(llama)
    row = ProbeRow(ds.examples[0].text, (0,))
    result = probe_drift(subject, [Pair(row, row)])
    assert torch.allclose(result.cosine, torch.ones_like(result.cosine), atol=1e-6)
    assert (result.edit == 0).all() and (result.kl.abs() < 1e-9).all() and (result.label_diff == 0).all()


@pytest.mark.parametrize(
    "a,b,d",
    [
        ("", "", 0),
        ("abc", "", 3),
        ("kitten", "sitting", 3),
        ("abcd", "bcda", 2),
        ([1, 2, 3], [3, 2, 1], 2),
        ("same", "same", 0),
    ],
)
def test_levenshtein(a, b, d):
    assert levenshtein(a, b) == d == levenshtein(b, a)


def test_kl_divergence_is_directional_and_zero_on_equal():
    a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    pa, pb = torch.softmax(a.double(), -1), torch.softmax(b.double(), -1)
    assert math.isclose(float(kl_divergence(a, b)), float((pa * (pa / pb).log()).sum()), rel_tol=1e-12)
    assert float(kl_divergence(a, a)) == 0.0
    assert not math.isclose(float(kl_divergence(a, b)), float(kl_divergence(b, a)))


def test_bias_contain_means_match_a_loop(llama):
    subject, ds = dcpc_subject(llama)
    rows = [ProbeRow(ex.text, labels) for ex, labels in zip(ds.examples[:6], [(0,), (1,), (0, 1), (), (1,), (0,)])]
    result = probe_bias(subject, rows, ["negative", "positive"])
    r = read_layers(subject, [row.example() for row in rows])
    for layer in range(llama.geometry.num_layers):
        for c in range(2):
            inside = [float(r.label_logits[layer + 1, i, c]) for i, row in enumerate(rows) if c in row.labels]
            outside = [float(r.label_logits[layer + 1, i, c]) for i, row in enumerate(rows) if c not in row.labels]
            assert math.isclose(float(result.contain[layer, c]), sum(inside) / len(inside), rel_tol=1e-6)
            assert math.isclose(float(result.not_contain[layer, c]), sum(outside) / len(outside), rel_tol=1e-6)
    assert result.n_contain == [3, 3] and result.n_not_contain == [3, 3]
    # the data's label order is mapped onto the checkpoint's classes by name
    flipped = probe_bias(
        subject, [ProbeRow(row.text, tuple(1 - c for c in row.labels)) for row in rows], ["positive", "negative"]
    )
    torch.testing.assert_close(flipped.contain, result.contain.flip(-1))


def test_contain_means_empty_sets_are_nan():
    logits = torch.arange(6.0).view(1, 3, 2)
    contains = torch.tensor([[True, False], [True, False], [True, False]])
    con, nco = contain_means(logits, contains)
    assert con[0, 0] == 2.0 and torch.isnan(con[0, 1]) and torch.isnan(nco[0, 0]) and nco[0, 1] == 3.0


def test_bias_refuses_encoders(vocab_file):
    lm = build_tiny("bert", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=4, soft=False)
    model = build_method(method_config("ptuning-v2", {}), lm, spec).eval()
    subject = Subject(
        name="enc", classifier=model.classifier, collator=collator, label_names=ds.label_names, method=model
    )
    from prefalign.errors import ConfigError

    with pytest.raises(ConfigError, match="encoder"):
        probe_bias(subject, [ProbeRow("good", (1,))], ds.label_names)


# -- data ----------------------------------------------------------------------------------------------


def test_multilabel_reader_formats(tmp_path):
    jsonl = write_jsonl(
        tmp_path / "emo.jsonl",
        [
            {"text": "so angry and sad", "labels": ["anger", "sadness"]},
            {"text": "what a joy", "labels": ["joy"]},
            {"text": "meh", "labels": []},
            {"text": "grr", "labels": "anger"},
        ],
    )
    data = read_multilabel(jsonl, label_column="labels")
    assert data.label_names == ["anger", "joy", "sadness"]
    assert [r.labels for r in data.rows] == [(0, 2), (1,), (), (0,)]
    assert data.multi_label
    csv_path = tmp_path / "emo.csv"
    csv_path.write_text('text,label\n"so angry and sad",anger|sadness\nhappy,"[""joy""]"\nsad,2\n')
    data = read_multilabel(csv_path, label_names=["anger", "joy", "sadness"])
    assert [r.labels for r in data.rows] == [(0, 2), (1,), (2,)]
    from prefalign.errors import DataError

    with pytest.raises(DataError, match="not one of"):
        read_multilabel(csv_path, label_names=["anger", "joy"])
    with pytest.raises(DataError, match="no column"):
        read_multilabel(csv_path, label_column="labels")


def test_balanced_sample_takes_labels_in_turn():
    rows = [ProbeRow(f"t{i}", (0,)) for i in range(20)] + [ProbeRow(f"r{i}", (1,)) for i in range(3)]
    from prefalign.analysis.probe_data import ProbeData

    data = ProbeData(rows, ["common", "rare"], "x")
    sample = balanced_sample(data, 6, seed=0)
    assert sum(1 in r.labels for r in sample) == 3 and len(sample) == 6
    assert sample == balanced_sample(data, 6, seed=0)
    assert len(set(sample)) == 6


def test_mine_pairs_is_the_greedy_nearest_with_different_labels():
    torch.manual_seed(0)
    emb = torch.randn(12, 5)
    rows = [ProbeRow(f"text {i}", (i % 3 == 0,)) for i in range(12)]
    pairs = mine_pairs(rows, emb, 3)
    centred = torch.nn.functional.normalize(emb - emb.mean(0), dim=-1)
    sim = centred @ centred.T
    candidates = sorted(
        ((float(sim[i, j]), i, j) for i in range(12) for j in range(i + 1, 12) if rows[i].labels != rows[j].labels),
        reverse=True,
    )
    used, expected = set(), []
    for _s, i, j in candidates:
        if i not in used and j not in used:
            used.update((i, j))
            expected.append((i, j))
    assert [(rows.index(p.a), rows.index(p.b)) for p in pairs] == expected[:3]
    assert all(p.a.labels != p.b.labels for p in pairs)
    assert pairs == mine_pairs(rows, emb, 3)


# -- the CLI --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(vocab_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-runs")
    model = tiny_llama_dir(vocab_file, root)
    train = toy_csv(root / "train.csv", 48)
    test = toy_csv(root / "test.csv", 40, seed=3)
    return {
        "model": model,
        "test": test,
        "root": root,
        "ptuning": train_tiny(model, train, root / "pt", "ptuning-v2") / "adapter",
        "dcpc": train_tiny(model, train, root / "dcpc", "dcpc", 4, "method.use_pcm=true") / "adapter",
    }


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_probe_drift_base_and_checkpoints(runs, tmp_path):
    out = tmp_path / "drift"
    rc, stdout, err = run_main(
        [
            "probe",
            "drift",
            "--model",
            f"base={runs['model']}",
            "--adapter",
            str(runs["ptuning"]),
            "--adapter",
            f"DCPC={runs['dcpc']}",
            "--data",
            str(runs["test"]),
            "--num-pairs",
            "5",
            "--pool",
            "30",
            "-o",
            str(out),
        ]
    )
    assert rc == 0, err
    rows = read_csv(out / "drift.csv")
    assert tuple(rows[0]) == COLUMNS
    assert [r["model"] for r in rows] == ["base"] * 3 + ["ptuning-v2"] * 3 + ["DCPC"] * 3
    assert all(r["n_pairs"] == "5" for r in rows) and all(r["kl_divergence"] != "" for r in rows)
    assert (out / "drift.png").stat().st_size > 5000
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 5 and all(p["label_a"] != p["label_b"] for p in pairs)
    assert len(read_csv(out / "drift_pairs.csv")) == 3 * 5 * 3
    assert "preference drift over 5 pairs" in stdout and "KL(p_A || p_B)" in stdout and "DCPC:" in stdout
    assert (out / "drift_summary.txt").read_text().startswith("data: 5 pairs mined")
    # the same pairs from a file give the same numbers
    pairs_file = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"text_a": p["text_a"], "text_b": p["text_b"], "label_a": p["label_a"], "label_b": p["label_b"]}
            for p in pairs
        ],
    )
    rc, _, err = run_main(
        [
            "probe",
            "drift",
            "--adapter",
            f"DCPC={runs['dcpc']}",
            "--pairs",
            str(pairs_file),
            "-o",
            str(tmp_path / "again"),
        ]
    )
    assert rc == 0, err
    again = read_csv(tmp_path / "again" / "drift.csv")
    assert [r["kl_divergence"] for r in again] == [r["kl_divergence"] for r in rows if r["model"] == "DCPC"]


def test_cli_probe_bias_multilabel_before_after(runs, tmp_path):
    rows = [
        {"text": ex.text, "labels": [ex.label and "positive" or "negative"] + (["positive"] if i % 5 == 0 else [])}
        for i, ex in enumerate(toy_sentiment(30, seed=4).examples)
    ]
    data = write_jsonl(tmp_path / "multi.jsonl", rows)
    out = tmp_path / "bias"
    rc, stdout, err = run_main(
        [
            "probe",
            "bias",
            "--model",
            f"before={runs['model']}",
            "--adapter",
            f"after={runs['ptuning']}",
            "--data",
            str(data),
            "--label-column",
            "labels",
            "--max-examples",
            "20",
            "-o",
            str(out),
        ]
    )
    assert rc == 0, err
    table = read_csv(out / "bias.csv")
    assert set(table[0]) >= {"model", "layer", "label", "contain", "not_contain", "gap"}
    assert len(table) == 2 * 3 * 2
    for name in ("bias_before.png", "bias_after.png", "bias_compare.png"):
        assert (out / name).stat().st_size > 5000
    assert "multi-label" in stdout and "NOT Contain" in stdout and "spread of Contain" in stdout
    # the base model used the checkpoint's prompt: its label tokens are the checkpoint's
    assert "before label tokens: negative='negative'" in stdout.replace("Ġ", "")


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["probe"], ["drift or bias"]),
        (["probe", "drift", "--data", "x.csv", "-o", "o"], ["--model", "--adapter"]),
        (["probe", "drift", "--model", "MODEL", "-o", "o"], ["--data"]),
        (["probe", "drift", "--model", "MODEL", "--data", "missing.csv", "-o", "o"], ["missing.csv"]),
        (["probe", "drift", "--model", "MODEL", "--data", "DATA", "--task", "sst2", "-o", "o"], ["one data source"]),
        (["probe", "drift", "--model", "MODEL", "--data", "DATA", "--num-pairs", "0", "-o", "o"], ["--num-pairs"]),
        (["probe", "bias", "--adapter", "nowhere/adapter", "--data", "DATA", "-o", "o"], ["nowhere"]),
        (["probe", "bias", "--model", "MODEL", "--data", "DATA", "--label-names", "a,b", "-o", "o"], ["not one of"]),
    ],
)
def test_cli_probe_errors_are_one_line(runs, tmp_path, argv, needles):
    argv = [str(runs["model"]) if a == "MODEL" else str(runs["test"]) if a == "DATA" else a for a in argv]
    argv = [str(tmp_path / "o") if a == "o" else a for a in argv]
    rc, _, err = run_main(argv)
    assert_one_error(rc, err, *needles)


def test_cli_probe_bias_on_an_encoder_is_one_line(vocab_file, tmp_path):
    from helpers_cli import save_tiny_model

    model = save_tiny_model("bert", vocab_file, tmp_path / "bert")
    data = toy_csv(tmp_path / "d.csv", 8)
    rc, _, err = run_main(["probe", "bias", "--model", str(model), "--data", str(data), "-o", str(tmp_path / "o")])
    assert_one_error(rc, err, "encoder")


def test_base_collator_is_the_training_collator(llama):
    subject = base_subject(llama, ["negative", "positive"], DECODER_PROMPT, max_length=64)
    assert isinstance(subject.collator, Collator) and subject.collator.max_length == 64
    assert subject.has_readout and subject.verbalizer_tokens()


def test_cli_probe_drift_reads_a_registered_task(runs, tmp_path):
    folder = tmp_path / "sst2"
    folder.mkdir()
    rows = toy_sentiment(40, seed=5).examples
    for name, part in (("train.tsv", rows[:20]), ("dev.tsv", rows[20:])):
        (folder / name).write_text("sentence\tlabel\n" + "".join(f"{ex.text}\t{ex.label}\n" for ex in part))
    rc, stdout, err = run_main(
        [
            "probe",
            "drift",
            "--model",
            str(runs["model"]),
            "--task",
            "sst2",
            "--path",
            str(folder),
            "--num-pairs",
            "3",
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0, err
    assert "sst2/test" in stdout and len(read_csv(tmp_path / "o" / "drift.csv")) == 3


def test_cli_probe_drift_on_a_bare_encoder_has_no_label_readout(vocab_file, tmp_path):
    from helpers_cli import save_tiny_model

    model = save_tiny_model("bert", vocab_file, tmp_path / "bert")
    data = toy_csv(tmp_path / "d.csv", 16)
    rc, stdout, err = run_main(
        ["probe", "drift", "--model", str(model), "--data", str(data), "--num-pairs", "2", "-o", str(tmp_path / "o")]
    )
    assert rc == 0, err
    rows = read_csv(tmp_path / "o" / "drift.csv")
    assert all(r["cosine_similarity"] and not r["kl_divergence"] and not r["edit_distance"] for r in rows)
    assert "no label read-out" in stdout


def test_cli_base_prompt_from_flags(runs, tmp_path):
    rc, stdout, err = run_main(
        [
            "probe",
            "bias",
            "--model",
            str(runs["model"]),
            "--data",
            str(runs["test"]),
            "--template",
            r"review: {text}\nsentiment:",
            "--verbalizers",
            " positive, negative",
            "--label-names",
            "positive,negative",
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0, err
    assert "positive='positive', negative='negative'" in stdout
    assert "prompt 'review: {text}\\nsentiment:'" in stdout  # the typed \n became a line break
