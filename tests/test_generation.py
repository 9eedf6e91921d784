"""Generation tasks on a tiny LLaMA (grouped-query attention): LM-loss batches, DCPC's loss on them,
generating with the prefix cache in place (greedy and beam search of 3), scoring, and train()."""

from __future__ import annotations

import json
import types

import pytest
import torch
import torch.nn.functional as F
from transformers import LogitsProcessor, LogitsProcessorList

from conftest import build_tiny
from helpers_cli import save_tiny_model
from helpers_models import clone_state
from prefalign.data.collator import Collator, PromptFormat, build_task_spec
from prefalign.data.examples import Example, TaskDataset
from prefalign.errors import ConfigError
from prefalign.generation import evaluate_generation, generate, generate_from_ids, gold_polarity
from prefalign.methods.base import Method, MethodConfig
from prefalign.methods.dcpc import DCPCConfig, DCPCModel
from prefalign.models.classifier import TaskSpec
from prefalign.models.prefix import build_prefix_cache, extend_attention_mask, text_init_kv

ALL_GATES = dict(tau_cos=0.0, tau_ambiguity=0.0, similarity_center=False)
TEXT = "read the review and say if it is positive or negative"


def toy_qa(n: int = 8, offset: int = 0) -> TaskDataset:
    """Reviews whose answer is the sentiment word (several references for some)."""
    pos, neg = ["good", "great", "lovely", "superb"], ["bad", "awful", "poor", "dull"]
    examples = []
    for i in range(offset, offset + n):
        label = i % 2
        word = (pos if label else neg)[i % 4]
        extra = " very" * (i % 3)  # prompts of different lengths
        answer = "positive" if label else "negative"
        examples.append(
            Example(
                text=f"the movie was{extra} {word}",
                answer=answer,
                references=[answer, f"a {answer} review"],
                meta={"label": "yes" if label else "no"},
            )
        )
    return TaskDataset(examples, [], name="toy-qa")


@pytest.fixture
def llama(vocab_file):
    return build_tiny("llama", vocab_file)


def collator_for(lm, max_length: int = 64) -> Collator:
    return Collator(lm.tokenizer, lm.geometry, 0, PromptFormat(), max_length)


def dcpc(lm, data=None, **params) -> DCPCModel:
    spec = build_task_spec(data or toy_qa(), lm.geometry, lm.tokenizer, PromptFormat())
    return DCPCModel(lm.model, lm.tokenizer, lm.geometry, spec, DCPCConfig(**params))


def perturb_pcm(model: DCPCModel) -> DCPCModel:
    """The PCM starts as the identity (zero projection or zero M); give it a random one so prefixes differ per
    example (issue 15 made 'gate' the default reading, which has M and no projection)."""
    with torch.no_grad():
        if model.pcm.mode == "elementwise":
            model.pcm.proj[1].weight.normal_(std=0.5)
        else:
            model.pcm.meta.normal_(std=20.0)  # s = M p_pref scales rows by 1 + s: p_pref differs little per input
        model.pcm.aux[2].weight.normal_(std=3.0)  # a peaked, input-dependent p_pref
    return model


class FixedPrefix(Method):
    """A stand-in method: the same prefix for every example, or none."""

    def __init__(self, lm, kv: torch.Tensor | None) -> None:
        super().__init__(lm.model, lm.tokenizer, lm.geometry, TaskSpec(num_classes=1, generation=True), MethodConfig())
        self.kv, self.classifier = kv, types.SimpleNamespace(model=lm.model)

    def prefixes(self, input_ids, attention_mask):
        return None if self.kv is None else self.kv.unsqueeze(0).expand(len(input_ids), *self.kv.shape)


class Recorder(LogitsProcessor):
    """Keeps the scores generate sees at each step (raw logits under greedy search)."""

    def __init__(self) -> None:
        self.steps = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores.detach().clone())
        return scores


def random_kv(lm, m: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(lm.geometry.num_layers, 2, m, lm.geometry.kv_dim, generator=g) * 2


# -- the collator ------------------------------------------------------------------------------------
def test_collator_labels_only_the_answer_and_eos(llama):
    tok, data = llama.tokenizer, toy_qa(4)
    batch = collator_for(llama)(data.examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert labels.shape == ids.shape
    for i, ex in enumerate(data.examples):
        answer = tok(" " + ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        prompt = tok(ex.text + "\nAnswer:")["input_ids"][:-1]  # default decoder rendering, no eos after it
        n = len(prompt) + len(answer)
        assert ids[i, :n].tolist() == prompt + answer and mask[i].sum() == n
        assert (labels[i, : len(prompt)] == -100).all() and (labels[i, n:] == -100).all()
        assert labels[i, len(prompt) : n].tolist() == answer
        assert tok.decode(prompt[-2:]) == "answer :"


def test_collator_cuts_the_prompt_never_the_answer(llama):
    ex = Example(text="the movie was " + "very " * 40 + "good", answer="a very good movie")
    batch = collator_for(llama, max_length=16)([ex])
    answer = llama.tokenizer(" " + ex.answer, add_special_tokens=False)["input_ids"] + [llama.tokenizer.eos_token_id]
    n = batch["input_ids"].shape[1]
    assert 12 <= n <= 16
    assert batch["labels"][0, -len(answer) :].tolist() == answer
    assert (batch["labels"][0, : n - len(answer)] == -100).all()
    prompt = batch["input_ids"][0, : n - len(answer)].tolist()
    assert llama.tokenizer.decode(prompt[-2:]) == "answer :"  # the text was cut, not the template


def test_prompt_batch_is_left_padded_prompts(llama):
    data = toy_qa(3)
    col = collator_for(llama)
    batch = col.prompt_batch(data.examples)
    full = col(data.examples)
    for i in range(3):
        n_prompt = int((full["labels"][i] == -100).logical_and(full["attention_mask"][i] == 1).sum())
        row = batch["input_ids"][i][batch["attention_mask"][i] == 1]
        assert row.tolist() == full["input_ids"][i, :n_prompt].tolist()
        assert batch["attention_mask"][i, -1] == 1  # every prompt ends at the last column
    right = col.prompt_batch(data.examples, padding_side="right")
    assert (right["attention_mask"][:, 0] == 1).all()


def test_encoders_refuse_generation_tasks(tiny_bert):
    data = toy_qa(2)
    with pytest.raises(ConfigError, match="generation needs a decoder"):
        build_task_spec(data, tiny_bert.geometry, tiny_bert.tokenizer, PromptFormat())
    with pytest.raises(ConfigError, match="generation needs a decoder"):
        Collator(tiny_bert.tokenizer, tiny_bert.geometry, 0)(data.examples)


# -- the LM loss and DCPC on generation batches ----------------------------------------------------------
def test_lm_loss_and_answer_distribution_match_a_hand_computation(llama):
    torch.manual_seed(0)
    model = dcpc(llama, use_ambiguity=False, use_alignment=False, use_pcm=False).eval()  # P-Tuning v2
    batch = collator_for(llama)(toy_qa(4).examples)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    with torch.no_grad():
        prefix = model.prefixes(ids, mask)
        out = model.classifier.lm_forward(ids, mask, prefix, labels)
        cache = build_prefix_cache(prefix, llama.geometry, llama.model.config)
        logits = llama.model(
            input_ids=ids, attention_mask=extend_attention_mask(mask, prefix.shape[3]), past_key_values=cache
        ).logits
        expected = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert model(**batch).loss.item() == pytest.approx(expected.item(), rel=1e-5)  # the task loss alone
        for i in range(len(ids)):
            at = (labels[i, 1:] != -100).nonzero().squeeze(-1)
            mean = torch.softmax(logits[i, at], -1).mean(0)
            assert torch.allclose(out.answer_probs[i], mean, atol=1e-6)


def test_dcpc_generation_batch_trains_only_prefix_and_pcm(llama):
    torch.manual_seed(0)
    model = dcpc(llama, **ALL_GATES)
    batch = collator_for(llama)(toy_qa(6).examples)
    backbone_before = clone_state(llama.model)
    model.train()
    out = model(**batch)
    assert torch.isfinite(out.loss)
    assert {"loss_task", "loss_ambiguity", "loss_align", "loss_kl"} <= set(out.terms)
    assert out.terms["gate_cos_rate"].item() == 1.0 and out.terms["loss_ambiguity"].item() > 0
    assert out.logits.shape == (6, llama.model.config.vocab_size)
    out.loss.backward()
    trainable = model.trainable_parameters()
    assert trainable and all(n.startswith(("prefix.", "pcm.")) for n in trainable)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable.values())
    assert any(p.grad.abs().sum() > 0 for n, p in trainable.items() if n.startswith("pcm."))
    for name, p in llama.model.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    opt = torch.optim.AdamW(list(trainable.values()), lr=1e-2)
    opt.step()
    for name, tensor in llama.model.state_dict().items():
        assert torch.equal(tensor, backbone_before[name]), name


def test_prefixes_are_static_plus_the_pcm_delta_without_sampling(llama):
    torch.manual_seed(0)
    model = perturb_pcm(dcpc(llama)).train()  # prefixes() never samples, whatever the mode
    batch = collator_for(llama).prompt_batch(toy_qa(3).examples)
    with torch.no_grad():
        a = model.prefixes(**batch)
        b = model.prefixes(**batch)
    m, geo = model.config.prefix_length, llama.geometry
    assert a.shape == (3, geo.num_layers, 2, m, geo.kv_dim) and torch.equal(a, b)
    assert (a[0] - a[1]).abs().max() > 1e-2  # the PCM makes them per-example
    assert model.training


# -- generate with the prefix in place ------------------------------------------------------------------
def test_greedy_generation_logits_equal_the_prefixed_forward(llama):
    """Each step's logits equal an unpadded forward over prompt + tokens so far, prefix in the cache."""
    kv, m = random_kv(llama), 4
    method = FixedPrefix(llama, kv)
    col = collator_for(llama)
    prompts = col.prompt_ids(toy_qa(3).examples)  # different lengths: left padding inside the batch
    rec = Recorder()
    texts = generate_from_ids(
        method, llama.tokenizer, prompts, num_beams=1, max_new_tokens=3, logits_processor=LogitsProcessorList([rec])
    )
    assert len(texts) == 3 and len(rec.steps) == 3
    tokens = torch.stack([s.argmax(-1) for s in rec.steps], 1)
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            ids = torch.tensor([prompt + tokens[i, :2].tolist()])
            cache = build_prefix_cache(kv.unsqueeze(0), llama.geometry, llama.model.config)
            logits = llama.model(
                input_ids=ids, attention_mask=torch.ones(1, m + ids.shape[1], dtype=torch.long), past_key_values=cache
            ).logits[0]
            for step in range(3):
                assert torch.allclose(rec.steps[step][i], logits[len(prompt) - 1 + step], atol=1e-4), (i, step)


def test_beam_search_of_three_with_per_example_prefixes(llama):
    """Beam search runs with per-example (PCM) prefixes; a batch gives what each prompt gives alone."""
    torch.manual_seed(0)
    model = perturb_pcm(dcpc(llama)).eval()
    prompts = collator_for(llama).prompt_ids(toy_qa(3).examples)
    rec = Recorder()
    batched = generate_from_ids(
        model,
        llama.tokenizer,
        prompts,
        num_beams=3,
        max_new_tokens=4,
        batch_size=3,
        logits_processor=LogitsProcessorList([rec]),
    )
    assert all(isinstance(t, str) for t in batched) and len(batched) == 3
    for i, p in enumerate(prompts):
        alone = Recorder()
        text = generate_from_ids(
            model, llama.tokenizer, [p], num_beams=3, max_new_tokens=4, logits_processor=LogitsProcessorList([alone])
        )
        assert text[0] == batched[i]
        # Every step's beam scores (3 rows per example, example-major) match the prompt's own run.
        for step in range(len(alone.steps)):
            assert torch.allclose(rec.steps[step][3 * i : 3 * i + 3], alone.steps[step], atol=1e-4), (i, step)
    texts = generate(model, llama.tokenizer, ["the movie was good\nanswer:"], num_beams=3, max_new_tokens=4)
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_a_prefix_changes_what_is_generated(llama):
    prompts = collator_for(llama).prompt_ids(toy_qa(2).examples)
    with_prefix, without = Recorder(), Recorder()
    generate_from_ids(
        FixedPrefix(llama, random_kv(llama)),
        llama.tokenizer,
        prompts,
        num_beams=1,
        max_new_tokens=1,
        logits_processor=LogitsProcessorList([with_prefix]),
    )
    generate_from_ids(
        FixedPrefix(llama, None),
        llama.tokenizer,
        prompts,
        num_beams=1,
        max_new_tokens=1,
        logits_processor=LogitsProcessorList([without]),
    )
    assert not torch.allclose(with_prefix.steps[0], without.steps[0], atol=1e-3)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_text_prefix_generates_as_the_text_before_the_prompt(llama, num_beams):
    """A prefix of text T's keys/values (text_init_kv) generates exactly what T + prompt does without one."""
    m = 6
    kv = text_init_kv(llama.model, llama.tokenizer, llama.geometry, TEXT, m)
    text_ids = llama.tokenizer(TEXT, add_special_tokens=False)["input_ids"][:m]
    prompts = collator_for(llama).prompt_ids(toy_qa(3).examples)
    rec_prefix, rec_text = Recorder(), Recorder()
    a = generate_from_ids(
        FixedPrefix(llama, kv),
        llama.tokenizer,
        prompts,
        num_beams=num_beams,
        max_new_tokens=4,
        logits_processor=LogitsProcessorList([rec_prefix]),
    )
    b = generate_from_ids(
        FixedPrefix(llama, None),
        llama.tokenizer,
        [text_ids + p for p in prompts],
        num_beams=num_beams,
        max_new_tokens=4,
        logits_processor=LogitsProcessorList([rec_text]),
    )
    assert a == b
    assert torch.allclose(rec_prefix.steps[0], rec_text.steps[0], atol=1e-4)


# -- scoring ------------------------------------------------------------------------------------------------
class Canned(torch.nn.Module):
    """A method whose 'generation' we fix by monkeypatching generate_from_ids."""


@pytest.fixture
def canned(monkeypatch):
    def use(texts):
        monkeypatch.setattr("prefalign.generation.scoring.generate_from_ids", lambda *a, **k: list(texts))

    return use


def test_evaluate_generation_f1_em(llama, canned):
    data = toy_qa(2)  # references: [negative, a negative review], [positive, a positive review]
    canned(["Negative.", "a positive movie"])
    out = evaluate_generation(None, llama, data, "f1-em")
    # "positive movie" vs "positive": P = 1/2, R = 1 -> 2/3 (vs "positive review" only 1/2): the max is 2/3.
    f1 = (1.0 + 2 / 3) / 2
    assert out["n"] == 2 and out["em"] == 0.5 and out["f1"] == pytest.approx(f1)
    assert out["f1_em"] == pytest.approx((out["f1"] + out["em"]) / 2)


def test_evaluate_generation_yes_no_accuracy(llama, canned):
    data = toy_qa(4)  # meta labels: no, yes, no, yes
    assert [gold_polarity(ex) for ex in data.examples] == ["no", "yes", "no", "yes"]
    canned(["Nope, not at all.", "Absolutely!", "Indeed it is.", "the movie"])
    assert evaluate_generation(None, llama, data, "accuracy") == {"n": 4, "accuracy": 0.5}
    styled = Example(text="is it good", answer="Yeah, for sure.")  # no meta label: the answer's polarity
    assert gold_polarity(styled) == "yes"
    assert gold_polarity(Example(text="q", answer="x", meta={"label": 0})) == "no"


def test_evaluate_generation_gpt_score_calls_the_judge(llama, canned, monkeypatch):
    calls = {}

    def gpt_score(instructions, references, responses, judge):
        calls.update(instructions=instructions, references=references, responses=responses, judge=judge)
        return {"mean": 7.5, "n": len(responses), "judge": "fake"}

    monkeypatch.setattr("prefalign.generation.scoring.gpt_score", gpt_score)
    data = toy_qa(2)
    canned(["x", "y"])
    out = evaluate_generation(None, llama, data, "gpt-score")
    assert out == {"n": 2, "gpt_score": 7.5, "judge": "fake"}
    assert calls["responses"] == ["x", "y"] and calls["references"] == ["negative", "positive"]
    assert calls["instructions"][0] == data[0].text and calls["judge"] is None
    with pytest.raises(ConfigError):
        evaluate_generation(None, llama, data, "bleu")


def test_evaluate_generation_gpt_score_with_the_offline_judge(llama, canned):
    pytest.importorskip("prefalign.evaluation.judge")
    from prefalign.evaluation.judge import OFFLINE_JUDGE

    # References are the answers, "negative" and "positive". The stand-in scores 1 + 9 x token F1:
    # "Negative." -> F1 1 -> 10; "a positive film" -> tokens [positive, film], P 1/2, R 1, F1 2/3 -> 7.
    canned(["Negative.", "a positive film"])
    out = evaluate_generation(None, llama, toy_qa(2), "gpt-score")
    assert out == {"n": 2, "gpt_score": pytest.approx((10.0 + 7.0) / 2), "judge": OFFLINE_JUDGE}
    canned(["the movie was good", "positive"])  # no overlap -> 1; exact -> 10
    assert evaluate_generation(None, llama, toy_qa(2), "gpt-score")["gpt_score"] == pytest.approx(5.5)


# -- train() end to end ------------------------------------------------------------------------------------------
def test_train_on_a_generation_task_reports_f1_em(vocab_file, tmp_path):
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    model_dir = save_tiny_model("llama", vocab_file, tmp_path / "tiny-llama")
    cfg = ExperimentConfig.from_dict(
        {
            "model": {"name": str(model_dir)},
            "data": {"max_length": 32},
            "method": {"name": "dcpc", "prefix_length": 4, **ALL_GATES},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 3,
                "eval_steps": 2,
                "batch_size": 4,
                "eval_batch_size": 4,
                "learning_rate": 1e-2,
                "device": "cpu",
                "progress": False,
                "logging_steps": 1,
            },
        }
    )
    result = train(cfg, splits=(toy_qa(8), toy_qa(4, offset=8), toy_qa(4, offset=12)))
    m = result.metrics
    assert {"test_f1", "test_em", "test_f1_em", "validation_loss"} <= set(m)
    assert 0.0 <= m["test_f1_em"] <= 1.0 and m["test_f1_em"] == pytest.approx((m["test_f1"] + m["test_em"]) / 2)
    assert m["train_steps"] == 3
    history = json.loads((tmp_path / "run" / "log_history.json").read_text())
    assert any("eval_loss" in h for h in history)
    saved = json.loads((tmp_path / "run" / "adapter" / "prefalign_config.json").read_text())
    assert saved["task"]["generation"] is True
    from prefalign.methods import load_method

    loaded, _ = load_method(tmp_path / "run" / "adapter", result.backbone)
    assert loaded.task.generation


def test_soft_prompt_methods_generate_as_their_tokens_before_the_prompt(llama):
    """Prompt tuning's soft tokens (here: the embeddings of real text) go in through inputs_embeds."""
    text_ids = llama.tokenizer(TEXT, add_special_tokens=False)["input_ids"][:5]

    class SoftText(FixedPrefix):
        def __init__(self):
            super().__init__(llama, None)

        def soft_prompt(self, batch_size):
            return llama.model.get_input_embeddings()(torch.tensor(text_ids)).unsqueeze(0).expand(batch_size, -1, -1)

    prompts = collator_for(llama).prompt_ids(toy_qa(3).examples)
    rec_soft, rec_text = Recorder(), Recorder()
    a = generate_from_ids(
        SoftText(),
        llama.tokenizer,
        prompts,
        num_beams=3,
        max_new_tokens=3,
        logits_processor=LogitsProcessorList([rec_soft]),
    )
    b = generate_from_ids(
        FixedPrefix(llama, None),
        llama.tokenizer,
        [text_ids + p for p in prompts],
        num_beams=3,
        max_new_tokens=3,
        logits_processor=LogitsProcessorList([rec_text]),
    )
    assert a == b and torch.allclose(rec_soft.steps[0], rec_text.steps[0], atol=1e-4)


def test_generation_metric_comes_from_the_task_registry():
    from prefalign.tasks import TASKS
    from prefalign.training.config import DataConfig

    assert DataConfig().generation_metric == "f1-em"  # files without a registered task: SQuAD-style f1-em
    for name, task in TASKS.items():
        assert DataConfig(task=name).generation_metric == task.metric


# -- baselines on generation tasks --------------------------------------------------------------------
def test_lora_generates_through_its_own_adapted_copy(llama):
    from prefalign.methods import build_method, method_config

    spec = build_task_spec(toy_qa(), llama.geometry, llama.tokenizer, PromptFormat())
    lora = build_method(method_config("lora", {}), llama, spec)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(std=1.0)
    prompts = ["the movie was good", "the movie was very bad"]
    adapted = generate(lora, llama.tokenizer, prompts, num_beams=1, max_new_tokens=4, do_sample=False)
    plain = generate(FixedPrefix(llama, None), llama.tokenizer, prompts, num_beams=1, max_new_tokens=4, do_sample=False)
    assert adapted != plain  # the caller's backbone has no adapters; the method's copy does


def test_lora_and_full_ft_train_on_a_generation_task(vocab_file, tmp_path):
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    model_dir = save_tiny_model("llama", vocab_file, tmp_path / "tiny-llama")
    for method in ("lora", "full-ft"):
        cfg = ExperimentConfig.from_dict(
            {
                "model": {"name": str(model_dir)},
                "data": {"max_length": 32},
                "method": {"name": method},
                "training": {
                    "output_dir": str(tmp_path / method),
                    "max_steps": 2,
                    "eval_steps": 2,
                    "batch_size": 4,
                    "eval_batch_size": 4,
                    "learning_rate": 1e-3,
                    "device": "cpu",
                    "progress": False,
                },
            }
        )
        result = train(cfg, splits=(toy_qa(8), toy_qa(4, offset=8), toy_qa(4, offset=12)))
        assert 0.0 <= result.metrics["test_f1_em"] <= 1.0 and result.metrics["train_steps"] == 2


def test_prompt_tuning_trains_on_a_generation_task_as_its_tokens_before_the_prompt(llama):
    """Prompt tuning's LM loss with the embeddings of real text as its soft tokens is the plain model's loss on
    that text followed by the prompt and answer (the text unlabelled): generation puts them there too."""
    from prefalign.methods import build_method, method_config

    text_ids = llama.tokenizer(TEXT, add_special_tokens=False)["input_ids"][:5]
    data = toy_qa(4)
    spec = build_task_spec(data, llama.geometry, llama.tokenizer, PromptFormat())
    model = build_method(method_config("prompt-tuning", {"num_virtual_tokens": len(text_ids)}), llama, spec)
    with torch.no_grad():
        model.prompt.embedding.weight.copy_(llama.model.get_input_embeddings()(torch.tensor(text_ids)))
    batch = collator_for(llama)(data.examples)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    n = len(text_ids)
    with torch.no_grad():
        out = model.eval()(**batch)
        plain = llama.model(
            input_ids=torch.cat([torch.tensor(text_ids).expand(len(ids), -1), ids], 1),
            attention_mask=torch.cat([mask.new_ones(len(ids), n), mask], 1),
        ).logits
    full = torch.cat([labels.new_full((len(ids), n), -100), labels], 1)
    expected = F.cross_entropy(plain[:, :-1].reshape(-1, plain.shape[-1]), full[:, 1:].reshape(-1), ignore_index=-100)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    model.train()
    model(**batch).loss.backward()
    assert model.prompt.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method, params", [("pedro", {}), ("lpt", {"prompt_length": 2, "bottleneck": 4})])
def test_input_dependent_baselines_train_on_the_prompt_as_they_generate(method, params, llama):
    """PEDRO's and LPT's generators read the prompt only: the answer distribution a training forward gives over
    prompt + generated tokens is the mean of the step distributions generate() saw (greedy, 3 tokens), and
    differs from the frozen model's."""
    from prefalign.methods import build_method, method_config

    data = toy_qa(3)
    spec = build_task_spec(data, llama.geometry, llama.tokenizer, PromptFormat())
    torch.manual_seed(0)
    model = build_method(method_config(method, params), llama, spec).eval()
    with torch.no_grad():  # PEDRO's up-projection starts at zero (the identity): move every generator
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.5)
    prompts = collator_for(llama).prompt_ids(data.examples)  # different lengths: left padding when generating
    rec = Recorder()
    generate_from_ids(
        model, llama.tokenizer, prompts, num_beams=1, max_new_tokens=3, logits_processor=LogitsProcessorList([rec])
    )
    tokens = torch.stack([step.argmax(-1) for step in rec.steps], 1)  # (3, 3)
    width = max(len(p) for p in prompts) + 3
    pad = llama.tokenizer.pad_token_id
    ids = torch.full((3, width), pad)
    labels = torch.full((3, width), -100)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        n = len(p)
        ids[i, : n + 3] = torch.tensor(p + tokens[i].tolist())
        labels[i, n : n + 3] = tokens[i]
        mask[i, : n + 3] = 1
    with torch.no_grad():
        trained = model(input_ids=ids, attention_mask=mask, labels=labels).logits.exp()
        frozen = torch.stack(
            [
                torch.softmax(llama.model(input_ids=ids[i : i + 1, : len(p) + 2]).logits[0, len(p) - 1 :], -1).mean(0)
                for i, p in enumerate(prompts)
            ]
        )
    expected = torch.stack([torch.softmax(s, -1) for s in rec.steps], 0).mean(0)
    torch.testing.assert_close(trained, expected, atol=1e-5, rtol=1e-4)
    if method == "pedro":  # LPT's placeholders change the frozen model's context, so only PEDRO's can match it
        assert not torch.allclose(trained, frozen, atol=1e-3)
    # Beam search expands the batch (one mask row per beam): a batch generates what each prompt does alone.
    batch = generate_from_ids(model, llama.tokenizer, prompts, num_beams=3, max_new_tokens=3)
    alone = [generate_from_ids(model, llama.tokenizer, [p], num_beams=3, max_new_tokens=3)[0] for p in prompts]
    assert batch == alone


def test_chat_judge_without_an_endpoint_fails_before_training(vocab_file, tmp_path, monkeypatch):
    from prefalign.errors import UserError
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    for var in ("PREFALIGN_API_BASE", "PREFALIGN_API_MODEL", "PREFALIGN_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    cfg = ExperimentConfig.from_dict(
        {
            "model": {"name": str(tmp_path / "never-loaded")},
            "method": {"name": "ptuning-v2"},
            "training": {"output_dir": str(tmp_path / "run"), "judge": "chat", "max_steps": 1},
        }
    )
    with pytest.raises(UserError, match="PREFALIGN_API_BASE"):
        train(cfg, splits=(toy_qa(8), toy_qa(4, offset=8), toy_qa(4, offset=12)))
    assert not (tmp_path / "run").exists()


def test_cli_predict_generates_answers_and_eval_explains_itself(vocab_file, tmp_path):
    from helpers_cli import run_main, write_jsonl
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    model_dir = save_tiny_model("llama", vocab_file, tmp_path / "tiny-llama")
    cfg = ExperimentConfig.from_dict(
        {
            "model": {"name": str(model_dir)},
            "data": {"max_length": 32},
            "method": {"name": "ptuning-v2", "prefix_length": 2},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 1,
                "eval_steps": 1,
                "batch_size": 4,
                "device": "cpu",
                "progress": False,
            },
        }
    )
    train(cfg, splits=(toy_qa(8), toy_qa(4, offset=8), toy_qa(4, offset=12)))
    adapter = str(tmp_path / "run" / "adapter")
    rc, out, err = run_main(["predict", "--adapter", adapter, "--text", "the movie was good", "--text", "bad"])
    assert rc == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [line["text"] for line in lines] == ["the movie was good", "bad"]
    assert all(isinstance(line["answer"], str) for line in lines)
    data = write_jsonl(tmp_path / "qs.jsonl", [{"text": "the movie was lovely"}])
    rc, out, err = run_main(["predict", "--adapter", adapter, "--data", str(data), "-o", str(tmp_path / "a.jsonl")])
    assert rc == 0 and json.loads((tmp_path / "a.jsonl").read_text())["text"] == "the movie was lovely"
    rc, _, err = run_main(["eval", "--adapter", adapter, "--data", str(data)])
    assert rc == 2 and err.strip().splitlines()[-1].startswith("prefalign: error:") and "generation task" in err


@pytest.mark.parametrize("method", ["bias-aware", "ltuning-prefix"])
def test_methods_that_only_classify_refuse_a_generation_task_before_a_model_loads(method, tmp_path):
    from prefalign.methods import method_class
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    cfg = ExperimentConfig.from_dict(
        {
            "model": {"name": str(tmp_path / "no-model")},  # never loaded
            "method": {"name": method},
            "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "progress": False},
        }
    )
    why = method_class(method).generation_refusal
    with pytest.raises(ConfigError, match=rf"^method {method} cannot train a generation task \(toy-qa\): "):
        train(cfg, splits=(toy_qa(4), toy_qa(2, offset=4), toy_qa(2, offset=6)))
    assert why and "use " in why  # it names what to use instead
