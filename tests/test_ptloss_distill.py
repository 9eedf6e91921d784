"""`prefalign distill` and the ptloss method: the teacher's cached distributions, the losses in training,
Algorithm 2 run before training, and one-line errors for bad input. Tiny random models throughout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from conftest import build_tiny, make_tokenizer, toy_sentiment
from helpers_cli import assert_one_error, run_main, save_tiny_model, toy_rows, write_csv
from helpers_models import sentiment_setup
from prefalign.data.examples import Example, TaskDataset
from prefalign.errors import DataError
from prefalign.methods import build_method, method_config
from prefalign.methods.ptloss.teacher import teacher_distributions


def save_classifier(vocab_file, dest, labels, seed=0):
    """A tiny random BertForSequenceClassification folder with its tokenizer and class names."""
    tokenizer = make_tokenizer(vocab_file)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest, model, tokenizer


@pytest.fixture(scope="module")
def files(vocab_file, tmp_path_factory):
    d = tmp_path_factory.mktemp("distill")
    return {
        "student": save_tiny_model("bert", vocab_file, d / "student"),
        "teacher": save_classifier(vocab_file, d / "teacher", ["negative", "positive"])[0],
        "train": write_csv(d / "train.csv", toy_rows(48, seed=0)),
        "dir": d,
    }


def test_teacher_distributions_are_cached_and_reused_only_when_teacher_and_data_match(vocab_file, tmp_path):
    folder, model, tokenizer = save_classifier(vocab_file, tmp_path / "t", ["positive", "negative"])
    data = toy_sentiment(12)
    probs, info = teacher_distributions(str(folder), data, batch_size=5, cache=tmp_path / "cache")
    with torch.no_grad():
        enc = tokenizer([ex.text for ex in data.examples], padding=True, return_tensors="pt")
        direct = torch.softmax(model(**enc).logits.double(), -1).numpy()
    # the teacher names its classes (positive, negative): its columns come back in the data's order
    assert np.allclose(probs, direct[:, ::-1], atol=1e-6) and not info["cached"]
    again, info2 = teacher_distributions(str(folder), data, cache=tmp_path / "cache")
    assert info2["cached"] and np.array_equal(again, probs)
    assert info2["cache_file"].endswith(".safetensors")
    # other data, or another teacher's weights: computed afresh
    changed = TaskDataset([Example(text="the plot was dull", label=0), *data.examples[1:]], data.label_names)
    assert not teacher_distributions(str(folder), changed, cache=tmp_path / "cache")[1]["cached"]
    save_classifier(vocab_file, folder, ["positive", "negative"], seed=1)
    fresh, info3 = teacher_distributions(str(folder), data, cache=tmp_path / "cache")
    assert not info3["cached"] and not np.allclose(fresh, probs)


def test_prepare_puts_the_teacher_into_the_targets_and_searches(vocab_file, tmp_path):
    lm = build_tiny("bert", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=24, soft=True)
    cfg = method_config("ptloss", {"search_orders": 2, "search_trials": 3, "search_dir": str(tmp_path / "s")})
    model = build_method(cfg, lm, spec)
    soft_before = [ex.soft_label for ex in ds.examples]
    out = model.prepare(collator, ds, seed=0)
    # no teacher: the data's own targets (soft labels where given, else one-hot) are the teacher
    assert [ex.soft_label for ex in ds.examples][0] == soft_before[0] == [0.6, 0.4]
    assert ds.examples[1].soft_label == [0.0, 1.0]
    record = json.loads((tmp_path / "s" / "search.json").read_text())
    assert len(record["tried"]) == 6 and (tmp_path / "s" / "search.png").is_file()
    assert model.config.eps == record["best"]["eps"] and out["search_best_q"] == record["best"]["q"]
    batch = collator(ds.examples[:8])
    assert torch.equal(batch["target_dist"], torch.tensor([ex.soft_label for ex in ds.examples[:8]]))


def test_empty_validation_set_is_a_data_error(vocab_file):
    lm = build_tiny("bert", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=8)
    unlabelled = TaskDataset([Example(text="good film", soft_label=[0.2, 0.8])] * 4, ds.label_names)
    model = build_method(method_config("ptloss"), lm, spec)
    with pytest.raises(DataError, match="empty validation set"):
        model.prepare(collator, unlabelled, seed=0)


def distill_argv(files, out_dir, *sets, teacher=None):
    base = [
        f"data.train={files['train']}",
        "training.max_steps=4",
        "training.eval_steps=2",
        "training.batch_size=8",
        "training.progress=false",
        "training.device=cpu",
        f"training.output_dir={out_dir}",
        "method.search_orders=2",
        "method.search_trials=3",
        "method.search_examples=20",
        f"method.teacher_cache={files['dir'] / 'cache'}",
        *sets,
    ]
    argv = ["distill", "--teacher", str(teacher or files["teacher"]), "--student", str(files["student"])]
    return argv + [a for s in base for a in ("--set", s)]


def test_distill_cli_searches_trains_and_reuses_the_cached_teacher(files, tmp_path):
    rc, out, err = run_main(distill_argv(files, tmp_path / "run"))
    assert rc == 0, err
    assert "distilled" in out and "coefficients (Q" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    search = json.loads((tmp_path / "run" / "search" / "search.json").read_text())
    assert search["examples"] == 20 and len(search["tried"]) == 6
    assert metrics["search_best_q"] == search["best"]["q"] and metrics["teacher_cached"] == 0.0
    saved = json.loads((tmp_path / "run" / "adapter" / "prefalign_config.json").read_text())
    assert saved["method"] == "ptloss" and saved["method_config"]["eps"] == search["best"]["eps"]
    # the teacher distilled from a prefalign adapter too: the student just trained becomes a teacher
    rc, out, err = run_main(
        distill_argv(files, tmp_path / "run2", "method.loss=kl", teacher=tmp_path / "run" / "adapter")
    )
    assert rc == 0, err
    assert "distilled" in out and "coefficients" not in out  # loss kl: no search
    # same teacher and data again: the cached distributions are read, not recomputed
    rc, _, err = run_main(distill_argv(files, tmp_path / "run3", "method.loss=kl"))
    assert rc == 0, err
    assert json.loads((tmp_path / "run3" / "metrics.json").read_text())["metrics"]["teacher_cached"] == 1.0


@pytest.mark.parametrize(
    "loss,sets",
    [
        ("temperature", ["method.temperature=2"]),
        ("label-smoothing", []),
        ("focal", []),
        ("flooding", []),
        ("annealing", []),
        ("ptloss", ["method.eps=[[1.0, 0.5], [2.0, 0.0]]"]),
    ],
)
def test_every_loss_trains(files, tmp_path, loss, sets):
    rc, _, err = run_main(distill_argv(files, tmp_path / loss, f"method.loss={loss}", *sets))
    assert rc == 0, err
    metrics = json.loads((tmp_path / loss / "metrics.json").read_text())["metrics"]
    assert metrics["train_steps"] == 4 and np.isfinite(metrics["train_loss"])
    assert "search_best_q" not in metrics  # the given eps, or a loss without coefficients: no search


def test_early_stopped_kd_stops_at_its_fraction(files, tmp_path):
    rc, _, err = run_main(distill_argv(files, tmp_path / "eskd", "method.loss=eskd", "method.eskd_fraction=0.5"))
    assert rc == 0, err
    assert json.loads((tmp_path / "eskd" / "metrics.json").read_text())["metrics"]["train_steps"] == 2


def test_bad_input_gets_one_line(files, vocab_file, tmp_path):
    d = files["dir"]
    three = save_classifier(vocab_file, d / "three", ["negative", "neutral", "positive"])[0]
    other = save_classifier(vocab_file, d / "other", ["cat", "dog"])[0]
    cases = [
        (distill_argv(files, tmp_path / "a", teacher=files["student"]), ["not a classifier"]),
        (distill_argv(files, tmp_path / "b", teacher=three), ["3 classes", "2"]),
        (distill_argv(files, tmp_path / "c", teacher=other), ["class sets differ"]),
        (distill_argv(files, tmp_path / "d", "method.eps=[20.0]"), ["outside the search range"]),
        (distill_argv(files, tmp_path / "e", "method.search_low=5", "method.search_high=1"), ["search_low"]),
        (distill_argv(files, tmp_path / "f", "method.name=lora"), ["distill trains method ptloss"]),
        (distill_argv(files, tmp_path / "g", teacher=tmp_path / "nowhere"), ["teacher"]),
    ]
    for argv, needles in cases:
        rc, _, err = run_main(argv)
        assert_one_error(rc, err, *needles)


def test_a_searched_run_resumes_from_its_checkpoint_and_ends_as_the_uninterrupted_one(files, tmp_path):
    """--resume compares the config as given (eps null), not the eps the search filled in; the search is read
    back from its search.json and training continues from the checkpoint, ending bit for bit where the
    uninterrupted run ended."""
    from safetensors.torch import load_file

    run = tmp_path / "run"
    rc, _, err = run_main(distill_argv(files, run, "training.save_total_limit=3"))
    assert rc == 0, err
    uninterrupted = load_file(run / "adapter" / "prefalign_weights.safetensors")
    # killed between step 2's checkpoint and the end: no later checkpoint, no adapter
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    shutil.rmtree(run / "adapter")
    rc, out, err = run_main([*distill_argv(files, run, "training.save_total_limit=3"), "--resume"])
    assert rc == 0, err
    search = json.loads((run / "search" / "search.json").read_text())
    assert "coefficients (Q" in out and len(search["tried"]) == 6
    a, b = uninterrupted, load_file(run / "adapter" / "prefalign_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_distill_overwrites_a_finished_run_only_when_asked(files, tmp_path):
    rc, _, err = run_main(distill_argv(files, tmp_path / "r", "method.loss=kl"))
    assert rc == 0, err
    rc, _, err = run_main(distill_argv(files, tmp_path / "r", "method.loss=kl"))
    assert_one_error(rc, err, "already holds a run", "--overwrite")
    rc, _, err = run_main([*distill_argv(files, tmp_path / "r", "method.loss=kl"), "--overwrite"])
    assert rc == 0, err


def test_ctrl_c_says_how_to_continue_the_search_or_the_run(files, tmp_path, monkeypatch):
    import prefalign.training.run as run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "train", interrupted)
    out = tmp_path / "r"
    rc, _, err = run_main(distill_argv(files, out))
    assert rc == 130
    assert err.strip() == (
        f"prefalign: interrupted; every coefficient set tried so far is in {out}/search/search.json; "
        "run the same command again to continue the search where it stopped"
    )
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    rc, _, err = run_main(distill_argv(files, out))
    assert err.strip() == (
        f"prefalign: interrupted; run the same command with --resume to continue from the last checkpoint in "
        f"{out}/checkpoints (one is written every 2 steps)"
    )


def test_searches_with_other_settings_get_their_own_folder_beside_the_teacher_cache(files, vocab_file, tmp_path):
    lm = build_tiny("bert", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=24)
    cache = tmp_path / "cache"
    folders = []
    for extra in ({}, {"q_distance": "squared", "q_entropy": False}):
        options = {"teacher": str(files["teacher"]), "teacher_cache": str(cache), "search_orders": 1}
        model = build_method(method_config("ptloss", {**options, "search_trials": 2, **extra}), lm, spec)
        model.prepare(collator, ds, seed=0)
        folders.append(sorted(p.name for p in cache.glob("search-*")))
    assert len(folders[0]) == 1 and len(folders[1]) == 2  # the second search did not overwrite the first
    settings = {json.loads((cache / name / "search.json").read_text())["settings"]["distance"] for name in folders[1]}
    assert settings == {"l2", "squared"}
