"""Step time, peak memory and inference latency of DCPC, its ablations and P-Tuning v2, as ratios.

    python benchmarks/speed_memory.py                      # the grid docs/performance.md reports (make bench)
    python benchmarks/speed_memory.py --quick              # tiny model only, two configurations, a smoke run
    python benchmarks/speed_memory.py --models minilm --batches 16 --prefixes 16 --rounds 5
    python benchmarks/speed_memory.py --device cuda --dtype bf16   # the same on a GPU, bf16 backbone

One configuration = (model, batch size, prefix length). Each runs in its own fresh subprocess,
which builds every method (the four ablations only at the grid's ``ablations_at`` prefix
lengths) on one shared frozen backbone and one fixed batch of Rotten Tomatoes reviews, then:

* time: per round, one optimizer step (zero_grad, forward, backward, AdamW step) of every
  method in turn, the order rotated each round, so machine drift hits all methods alike; a ratio
  is the median over rounds of the per-round ratio (paired), after ``--warmup`` untimed rounds.
  On CPU the time is the CPU time of the one compute thread (``time.thread_time``), which the
  other processes of a shared machine do not inflate the way they do wall time; wall-time ratios
  are kept too (``*_wall``). On CUDA: wall time, synchronised;
* inference: per round, one ``no_grad`` eval-mode forward of the batch, interleaved the same way;
* memory: peak memory of one steady-state optimizer step above the memory held just before it
  (activations, gradients and temporaries; the weights, optimizer state and libraries are not
  counted). On CPU: the kernel's peak resident set size (VmHWM, reset through
  /proc/self/clear_refs before each step) minus VmRSS before it, with glibc's mmap threshold fixed
  so freed tensors go back to the kernel at once. On CUDA: torch.cuda.max_memory_allocated.
  Each method's step is measured ``--memory-repeats`` times and the median kept.

"floor" is the frozen backbone's forward and backward with no prefix at all: a trainable zero
vector is added to the word embeddings, so the backward pass runs through every layer exactly as
it must for a deep prefix, with the same task loss and head; no prefix method can be cheaper.

Writes benchmarks/results/speed_memory_<model>[_<device>-<dtype>].json (every raw time and
ratio) and a PNG of the ratios next to it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE_METHODS = ("floor", "ptuning-v2", "dcpc")
ABLATIONS = ("dcpc-no-clpa", "dcpc-no-pcm", "dcpc-no-ambiguity", "dcpc-no-clpa-pcm")
# Our LoRA baseline through prefalign's runner (its classifier, loss and Method): r=4 on PEFT's
# default modules, and r=8 on every linear layer (method.target_modules: [all-linear]).
OUR_LORA = {"lora": {}, "lora-all8": {"r": 8, "target_modules": ["all-linear"]}}
# What a user would install instead, applied directly to transformers' AutoModelForSequenceClassification
# built from the same weights, outside prefalign: PEFT's prefix tuning (m virtual tokens, without
# and with its reparameterising MLP), PEFT's LoRA (r=4 default modules; r=8 all-linear) and plain
# full fine-tuning (every weight trains).
PEERS = ("peft-prefix", "peft-prefix-proj", "peft-lora", "peft-lora-all8", "hf-full-ft")
OTHERS = tuple(OUR_LORA) + PEERS
# DCPC with its prefix path as it was before the PCM wrote each example's prefix in one tensor (the delta,
# then static + delta as a second tensor): --with-before puts it in the rotation, so the change is measured
# within rounds against the same batch. Benchmark only; not a registered method.
BEFORE = ("dcpc-two-pass",)
# Our P-Tuning v2 (its prefix path, cache and loss) scoring a decoder the way PEFT's SEQ_CLS model does: a linear
# score (d -> C, no bias) at the last real token, in place of the verbalizer's log-probability over the whole
# vocabulary. --same-head puts it in the rotation: against peft-prefix it compares the prefix paths alone (the
# same head on both sides), against ptuning-v2 it measures the verbalizer head. Benchmark only.
SAME_HEAD = ("ptuning-v2-score",)
# DCPC with eq. 12 read between the softmax p_pref (method.pcm_kl: softmax) instead of the Gaussians: how much of
# DCPC's step the Gaussian KL's (B, B, d) tensors cost, measured inside a real step (--only). Benchmark only.
VARIANTS = {"dcpc-softmax-kl": {"pcm_kl": "softmax"}}
METHODS = BASE_METHODS + ABLATIONS + OTHERS + BEFORE + SAME_HEAD + tuple(VARIANTS)
INFER_METHODS = BASE_METHODS + OTHERS + BEFORE + SAME_HEAD
# The comparisons issue 19 states targets for: (method, reference, measure, at most).
PAIR_TARGETS = (
    ("ptuning-v2", "peft-prefix", "step", 1.00),
    ("lora", "peft-lora", "step", 1.05),
    ("lora-all8", "peft-lora-all8", "step", 1.05),
    ("dcpc", "ptuning-v2", "step", 1.05),
    ("dcpc", "floor", "step", 1.10),
    ("dcpc", "ptuning-v2", "infer", 1.02),
    ("dcpc", "ptuning-v2", "memory", 1.10),
)
# Pairs reported beside the targets without one of their own.
PAIRS = PAIR_TARGETS + (
    ("ptuning-v2", "peft-prefix-proj", "step", None),
    ("ptuning-v2", "peft-prefix", "infer", None),
    ("lora", "peft-lora", "infer", None),
    ("ptuning-v2", "peft-prefix", "memory", None),
    ("lora", "peft-lora", "memory", None),
    ("dcpc", "dcpc-two-pass", "infer", None),
    ("dcpc", "dcpc-two-pass", "step", None),
    ("dcpc", "dcpc-two-pass", "memory", None),
    ("ptuning-v2-score", "peft-prefix", "step", None),
    ("ptuning-v2-score", "peft-prefix", "infer", None),
    ("ptuning-v2", "ptuning-v2-score", "step", None),
    ("ptuning-v2", "ptuning-v2-score", "infer", None),
    ("dcpc-softmax-kl", "ptuning-v2", "step", None),
    ("dcpc", "dcpc-softmax-kl", "step", None),
)
# The grid `make bench` runs (CPU, 1 thread): per model, batch sizes, prefix lengths, the prefix
# lengths at which the four ablations are measured too, timed rounds, memory repeats.
# The peers (OTHERS) are measured at the ``peers_at`` batch sizes, at prefix length 16 (PEFT's 16
# virtual tokens).
GRID = {
    "tiny": dict(
        batches=(8, 16, 32, 64),
        prefixes=(8, 16, 24),
        ablations_at=(8, 16, 24),
        peers_at=(16, 64),
        rounds=15,
        memory_repeats=2,
    ),
    "minilm": dict(
        batches=(8, 16, 32, 64),
        prefixes=(8, 16, 24),
        ablations_at=(16,),
        peers_at=(16, 64),
        rounds=3,
        memory_repeats=1,
    ),
    "smollm2-135m": dict(batches=(8, 16), prefixes=(16,), ablations_at=(), peers_at=(16,), rounds=3, memory_repeats=1),
}
QUICK = {"tiny": dict(batches=(8, 64), prefixes=(16,), ablations_at=(16,), peers_at=(64,), rounds=5, memory_repeats=1)}
PEERS_PREFIX = 16
# DCPC settings as docs/results.md trains them (tau_cos at its default, 0.3); the gates decide which pairs count;
# the Gaussian KL is computed on the gated pairs only, every other pair term on all pairs (dcpc_gate_rate_probe.py).
DCPC_PARAMS: dict = {}


# -- one configuration, in its own process ------------------------------------------------------
def build_backbone(name: str, dtype: str):
    """The frozen backbone: 'tiny' is a random 2-layer BERT (hidden 64) with MiniLM's tokenizer."""
    import torch

    from prefalign.models.loading import load_backbone
    from prefalign.models.tiny import tiny_backbone

    torch_dtype = {"fp32": "float32", "bf16": "bfloat16"}[dtype]
    if name != "tiny":
        return load_backbone(name, dtype=torch_dtype)
    backbone = tiny_backbone(
        "bert",
        load_backbone("minilm").tokenizer,
        0,
        name="tiny",
        hidden_size=64,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    backbone.model.to(getattr(torch, torch_dtype))
    return backbone


class Floor:
    """The frozen backbone's forward + backward with no prefix (see the module docstring)."""

    def __init__(self, backbone, task) -> None:
        import torch

        from prefalign.models.classifier import PrefixClassifier

        self.classifier = PrefixClassifier(backbone.model, backbone.geometry, task)
        emb = backbone.model.get_input_embeddings()
        self.shift = torch.nn.Parameter(torch.zeros(backbone.geometry.hidden_size))
        self.active = False  # the hook acts only inside this object's own forward (the backbone is shared)
        emb.register_forward_hook(lambda _m, _i, out: out + self.shift.to(out.dtype) if self.active else None)

    def parameters(self):
        return [self.shift] + [p for p in self.classifier.parameters() if p.requires_grad]

    def to(self, device):
        self.classifier.to(device)
        self.shift.data = self.shift.data.to(device)
        return self

    def train(self, mode: bool = True):
        self.classifier.train(mode)

    def eval(self):
        self.classifier.eval()

    def __call__(self, input_ids, attention_mask, labels=None, token_type_ids=None, **_):
        import torch.nn.functional as F

        from prefalign.methods.dcpc.model import MethodOutput, soft_cross_entropy

        self.active = True
        try:
            out = self.classifier(input_ids, attention_mask, None, token_type_ids=token_type_ids)
        finally:
            self.active = False
        loss = (
            None if labels is None else soft_cross_entropy(out.logits, F.one_hot(labels, out.logits.shape[-1]).float())
        )
        return MethodOutput(loss=loss, logits=out.logits)


class Peer:
    """A peer outside prefalign: transformers' sequence classifier built from the backbone's weights,
    with PEFT's prefix tuning or LoRA applied directly (``get_peft_model``), or every weight trained.

    Decoders get transformers' classifier too (a linear score read at the last real token), as a
    user who skipped prefalign would build it; encoders read BERT's pooler, PEFT's SEQ_CLS choice.
    """

    def __init__(self, name: str, backbone, num_labels: int, prefix_length: int) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        config = copy.deepcopy(backbone.model.config)
        config.num_labels = num_labels
        config.pad_token_id = backbone.tokenizer.pad_token_id
        model = AutoModelForSequenceClassification.from_config(config)
        base = backbone.model.base_model if backbone.geometry.is_decoder else backbone.model
        model.base_model.load_state_dict(base.state_dict())  # the same weights (strict: every key)
        model.to(next(base.parameters()).dtype)
        if name == "hf-full-ft":
            self.model = model
        else:
            from peft import LoraConfig, PrefixTuningConfig, TaskType, get_peft_model

            cfg = {
                "peft-prefix": lambda: PrefixTuningConfig(
                    task_type=TaskType.SEQ_CLS, num_virtual_tokens=prefix_length, prefix_projection=False
                ),
                "peft-prefix-proj": lambda: PrefixTuningConfig(
                    task_type=TaskType.SEQ_CLS, num_virtual_tokens=prefix_length, prefix_projection=True
                ),
                "peft-lora": lambda: LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, lora_dropout=0.0),
                "peft-lora-all8": lambda: LoraConfig(
                    task_type=TaskType.SEQ_CLS, r=8, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"
                ),
            }[name]()
            self.model = get_peft_model(model, cfg)
        self.torch = torch

    def parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def to(self, device):
        self.model.to(device)
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)

    def eval(self):
        self.model.eval()

    def __call__(self, input_ids, attention_mask, labels=None, token_type_ids=None, **_):
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)


def build_model(name: str, backbone, task, prefix_length: int, num_labels: int):
    """(model, trainable parameters) of one method of the rotation."""
    from prefalign.methods import build_method, method_config

    if name == "floor":
        model = Floor(backbone, task)
        return model, model.parameters()
    if name in PEERS:
        model = Peer(name, backbone, num_labels, prefix_length)
        return model, model.parameters()
    if name in BEFORE:
        import types

        model = build_method(method_config("dcpc", {"prefix_length": prefix_length, **DCPC_PARAMS}), backbone, task)
        model._prefix_for = types.MethodType(two_pass_prefix_for, model)
        return model, list(model.trainable_parameters().values())
    if name in VARIANTS:
        cfg = method_config("dcpc", {"prefix_length": prefix_length, **DCPC_PARAMS, **VARIANTS[name]})
        model = build_method(cfg, backbone, task)
        return model, list(model.trainable_parameters().values())
    if name in SAME_HEAD:
        model = build_method(method_config("ptuning-v2", {"prefix_length": prefix_length}), backbone, task)
        score = score_head(model.classifier, num_labels)  # a submodule: trainable_parameters() now holds it
        params = list(model.trainable_parameters().values())
        assert sum(p is score.weight for p in params) == 1
        return model, params
    if name in OUR_LORA:  # injects LoRA into the backbone in place: give it a copy of its own
        model = build_method(method_config("lora", OUR_LORA[name]), copy.deepcopy(backbone), task)
    else:
        model = build_method(method_config(name, {"prefix_length": prefix_length, **DCPC_PARAMS}), backbone, task)
    return model, list(model.trainable_parameters().values())


def score_head(classifier, num_labels: int):
    """Give a decoder's PrefixClassifier transformers' sequence-classification head (for SAME_HEAD): a linear
    score, no bias, initialised as transformers does (normal, std initializer_range), read at each row's last
    real token (right padding) instead of the verbalizer's log-probability. Returns the score layer."""
    import types

    import torch

    if not classifier.geo.is_decoder:
        raise SystemExit("ptuning-v2-score is for decoders (encoders already score through a small linear head)")
    model = classifier.model
    score = torch.nn.Linear(classifier.geo.hidden_size, num_labels, bias=False)
    torch.nn.init.normal_(score.weight, std=getattr(model.config, "initializer_range", 0.02))
    score.to(device=next(model.parameters()).device, dtype=next(model.parameters()).dtype)
    classifier.score = score

    def scores(self, hidden, head_input, input_ids, attention_mask, score_mask):
        last = attention_mask.long().sum(-1) - 1
        return self.score(hidden[torch.arange(hidden.shape[0], device=hidden.device), last]).float()

    classifier._scores = types.MethodType(scores, classifier)
    return score


def two_pass_prefix_for(self, input_ids, attention_mask, per: int = 1, *, sample: bool, rows: bool = False):
    """DCPCModel._prefix_for before the one-tensor change (commit 4f6cc95's parent), for --with-before: the
    delta, then static + delta as a second tensor, always materialised (``rows`` is ignored)."""
    import dataclasses

    from prefalign.models.classifier import masked_mean

    static = self.prefix()
    n_examples = input_ids.shape[0] // per
    words = self.classifier.model.get_input_embeddings()(input_ids)
    e_in = masked_mean(words.float(), attention_mask)
    if per > 1:
        e_in = e_in.view(n_examples, per, -1).mean(1)
    pcm_out = self.pcm(e_in, static, sample=sample)
    prefix = static.unsqueeze(0) + pcm_out.delta
    pcm_out = dataclasses.replace(pcm_out, delta=prefix)
    if per > 1:
        prefix = prefix.repeat_interleave(per, dim=0)
    return prefix, pcm_out


def make_batch(backbone, batch_size: int, max_length: int):
    """(task spec, batch): the first ``batch_size`` Rotten Tomatoes training reviews, collated."""
    from prefalign.data import Collator, PromptFormat, TaskDataset, build_task_spec, load_rotten_tomatoes
    from prefalign.tasks import get_task

    train, _ = load_rotten_tomatoes(seed=0, max_train=batch_size, max_test=1)
    data = TaskDataset(list(train.examples)[:batch_size], train.label_names, "bench")
    task = get_task("rotten_tomatoes")  # decoders read the registered task's prompt and label words
    prompt = (
        PromptFormat(template=task.decoder_template, verbalizers=task.verbalizers)
        if backbone.geometry.is_decoder
        else PromptFormat()
    )
    spec = build_task_spec(data, backbone.geometry, backbone.tokenizer, prompt)
    batch = Collator(backbone.tokenizer, backbone.geometry, data.num_classes, prompt, max_length)(data.examples)
    return spec, batch


class Meter:
    """Wall time (synchronised on CUDA) and step peak memory above the memory held before it."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.cuda = torch, device == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def memory_start(self) -> int:
        import gc

        gc.collect()
        self.sync()
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
            return self.torch.cuda.memory_allocated()
        with open("/proc/self/clear_refs", "w") as fh:  # resets VmHWM to the current RSS
            fh.write("5")
        return _proc_kib("VmRSS") * 1024

    def memory_peak(self) -> int:
        self.sync()
        return self.torch.cuda.max_memory_allocated() if self.cuda else _proc_kib("VmHWM") * 1024


def _proc_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def run_one(spec: dict) -> dict:
    """Measure one configuration; returns every raw measurement."""
    import torch

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    backbone = build_backbone(spec["model"], spec["dtype"])
    backbone.model.to(device)
    task, batch = make_batch(backbone, spec["batch_size"], spec["max_length"])
    batch = {k: v.to(device) for k, v in batch.items()}
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "target_dist")}
    models, optims = {}, {}
    # The methods that copy the backbone first, before the floor hooks the shared one.
    for name in sorted(spec["methods"], key=lambda n: n not in OTHERS):
        torch.manual_seed(0)
        model, params = build_model(name, backbone, task, spec["prefix_length"], task.num_classes)
        models[name], optims[name] = model.to(device), torch.optim.AdamW(params, lr=1e-4)
    models = {n: models[n] for n in spec["methods"]}
    meter = Meter(device)
    # bf16: the backbone's weights in bf16 and autocast around the forward, as `training.bf16` does.
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=spec["dtype"] == "bf16")

    def step(name: str) -> None:
        model, opt = models[name], optims[name]
        model.train()
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer(name: str) -> None:
        models[name].eval()
        with autocast:
            models[name](**inputs)

    names = list(spec["methods"])
    infer_names = [n for n in INFER_METHODS if n in names]
    wall = {"step": {n: [] for n in names}, "infer": {n: [] for n in infer_names}}
    cpu = {"step": {n: [] for n in names}, "infer": {n: [] for n in infer_names}}
    for r in range(spec["warmup"] + spec["rounds"]):
        for kind, fn, group in (("step", step, names), ("infer", infer, infer_names)):
            k = r % len(group)
            for name in group[k:] + group[:k]:  # rotated each round
                t0, c0 = meter.now(), time.thread_time()
                fn(name)
                if r >= spec["warmup"]:
                    wall[kind][name].append(meter.now() - t0)
                    cpu[kind][name].append(time.thread_time() - c0)
    memory = {n: [] for n in names}
    for _ in range(spec["memory_repeats"]):
        for name in names:
            # The previous step's gradients go first: for full fine-tuning they are as large as the
            # weights, and freeing them inside the step would hide that much of its peak.
            optims[name].zero_grad(set_to_none=True)
            before = meter.memory_start()
            step(name)
            memory[name].append(meter.memory_peak() - before)
    return {
        "config": spec,
        "tokens": int(batch["attention_mask"].sum()),
        "seq_len": int(batch["input_ids"].shape[1]),
        "wall_seconds": wall,
        "thread_cpu_seconds": cpu,
        "step_peak_bytes": memory,
        "process_peak_bytes": (torch.cuda.max_memory_allocated() if device == "cuda" else _proc_kib("VmHWM") * 1024),
    }


# -- the grid: one subprocess per configuration, then ratios, JSON and a plot --------------------
def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i] (same round, so drift cancels)."""
    return statistics.median(x / y for x, y in zip(a, b))


def timer(raw: dict) -> str:
    """The time the ratios use: on CPU the compute thread's CPU time (one torch thread, so all the
    work runs on it; time the scheduler gives other processes on the shared machine is not counted);
    on CUDA wall time, synchronised."""
    return "wall_seconds" if raw["config"]["device"] == "cuda" else "thread_cpu_seconds"


def summarise(raw: dict) -> dict:
    """Medians and the ratios the targets are stated in (docs/performance.md)."""
    t, inf, mem = raw[timer(raw)]["step"], raw[timer(raw)]["infer"], raw["step_peak_bytes"]
    wt = raw["wall_seconds"]["step"]
    row = {
        "model": raw["config"]["model"],
        "batch_size": raw["config"]["batch_size"],
        "prefix_length": raw["config"]["prefix_length"],
        "seq_len": raw["seq_len"],
        "tokens": raw["tokens"],
        "timer": timer(raw),
        "step_ms": {n: round(1000 * statistics.median(v), 3) for n, v in t.items()},
        "step_wall_ms": {n: round(1000 * statistics.median(v), 3) for n, v in wt.items()},
        "infer_ms": {n: round(1000 * statistics.median(v), 3) for n, v in inf.items()},
        "step_peak_mib": {n: round(statistics.median(v) / 2**20, 2) for n, v in mem.items()},
        "process_peak_mib": round(raw["process_peak_bytes"] / 2**20, 1),
    }
    ratios = {}
    for n in t:
        if n in ("floor", "ptuning-v2"):
            continue
        ratios[n] = {
            "step_vs_ptuning": paired_ratio(t[n], t["ptuning-v2"]),
            "step_vs_floor": paired_ratio(t[n], t["floor"]),
            "memory_vs_ptuning": statistics.median(mem[n]) / max(statistics.median(mem["ptuning-v2"]), 1),
            "memory_vs_floor": statistics.median(mem[n]) / max(statistics.median(mem["floor"]), 1),
            # second reading: wall time, which other processes on a shared machine disturb
            "step_vs_ptuning_wall": paired_ratio(wt[n], wt["ptuning-v2"]),
            "step_vs_floor_wall": paired_ratio(wt[n], wt["floor"]),
        }
        if n in inf:
            ratios[n]["infer_vs_ptuning"] = paired_ratio(inf[n], inf["ptuning-v2"])
            ratios[n]["infer_vs_floor"] = paired_ratio(inf[n], inf["floor"])
    ratios["ptuning-v2"] = {
        "step_vs_floor": paired_ratio(t["ptuning-v2"], t["floor"]),
        "step_vs_floor_wall": paired_ratio(wt["ptuning-v2"], wt["floor"]),
        "memory_vs_floor": statistics.median(mem["ptuning-v2"]) / max(statistics.median(mem["floor"]), 1),
        "infer_vs_floor": paired_ratio(inf["ptuning-v2"], inf["floor"]),
    }
    measures = {"step": t, "infer": inf}
    pairs = []
    for a, b, measure, target in PAIRS:
        if a not in t or b not in t:
            continue
        if measure == "memory":
            value = statistics.median(mem[a]) / max(statistics.median(mem[b]), 1)
        else:
            value = paired_ratio(measures[measure][a], measures[measure][b])
        pairs.append({"method": a, "reference": b, "measure": measure, "ratio": round(value, 3), "target": target})
    row["pairs"] = pairs
    row["ratios"] = {n: {k: round(v, 3) for k, v in r.items()} for n, r in ratios.items()}
    return row


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Step-time and memory ratios of DCPC (and ablations) to P-Tuning v2 against batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prefalign.utils.atomic_files import save_figure_atomically

    keys = (
        ("step_vs_ptuning", "step time / P-Tuning v2", 1.05),
        ("step_vs_floor", "step time / floor", 1.10),
        ("memory_vs_ptuning", "step peak memory / P-Tuning v2", 1.10),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    names = [
        n
        for n in METHODS
        if n not in ("floor", "ptuning-v2") + OTHERS + SAME_HEAD and any(n in r["ratios"] for r in rows)
    ]
    prefixes = sorted({r["prefix_length"] for r in rows})
    for ax, (key, label, target) in zip(axes, keys):
        for name in names:
            for m, style in zip(prefixes, ("-", "--", ":")):
                pts = sorted(
                    (r["batch_size"], r["ratios"][name][key])
                    for r in rows
                    if r["prefix_length"] == m and name in r["ratios"]
                )
                if not pts:
                    continue
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    style,
                    marker="o",
                    ms=3,
                    label=f"{name} m={m}",
                    color=f"C{names.index(name)}",
                )
        if key == "step_vs_floor":
            for m, style in zip(prefixes, ("-", "--", ":")):
                pts = sorted((r["batch_size"], r["ratios"]["ptuning-v2"][key]) for r in rows if r["prefix_length"] == m)
                ax.plot(
                    [p[0] for p in pts], [p[1] for p in pts], style, marker="x", color="grey", label=f"ptuning-v2 m={m}"
                )
        ax.axhline(target, color="red", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_title(f"{label} (target <= {target})", fontsize=9)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure_atomically(fig, path, dpi=110)


LABELS = {"step": "step", "infer": "inference", "memory": "step peak memory"}


def pair_label(pair: dict) -> str:
    return f"{pair['method']} / {pair['reference']} {LABELS[pair['measure']]}"


def verdict(pair: dict) -> str:
    if pair["target"] is None:
        return ""
    return f" (<= {pair['target']:.2f}: {'met' if pair['ratio'] <= pair['target'] else 'MISSED'})"


def row_pairs(row: dict) -> list[dict]:
    """A row's target comparisons; rows written before the peers existed have DCPC's ratios only."""
    if "pairs" in row:
        return row["pairs"]
    keys = {("ptuning-v2", "step"): "step_vs_ptuning", ("floor", "step"): "step_vs_floor"}
    keys |= {("ptuning-v2", "infer"): "infer_vs_ptuning", ("ptuning-v2", "memory"): "memory_vs_ptuning"}
    return [
        {"method": a, "reference": b, "measure": m, "ratio": row["ratios"]["dcpc"][keys[b, m]], "target": t}
        for a, b, m, t in PAIR_TARGETS
        if a == "dcpc"
    ]


def targets_table(paths: list[str], prefix: int = 16) -> list[str]:
    """Every ratio issue 19 states a target for (PAIR_TARGETS), one column per row of a result file."""
    cols = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        for r in d["rows"]:
            if r["prefix_length"] == prefix:
                cols.append((f"{d['model']} B={r['batch_size']}", {pair_label(p): p for p in row_pairs(r)}))
    lines = ["| ratio (target) | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for a, b, m, t in PAIRS:
        label = pair_label({"method": a, "reference": b, "measure": m})
        if not any(label in c for _, c in cols):
            continue
        cells = []
        for _, c in cols:
            p = c.get(label)
            cells.append(
                "-"
                if p is None
                else f"{p['ratio']:.3f}" + ("" if t is None else (" met" if p["ratio"] <= t else " **missed**"))
            )
        lines.append(
            f"| {label} ({'<= ' + format(t, '.2f') if t is not None else 'no target'}) | " + " | ".join(cells) + " |"
        )
    return lines


def peers_table(d: dict) -> list[str]:
    """Every method of the rows that hold the peers: times and ratios to P-Tuning v2 and to the floor."""
    lines = []
    for r in d["rows"]:
        if not any(n in r["step_ms"] for n in OTHERS + SAME_HEAD):
            continue
        lines += [
            f"Batch {r['batch_size']}, m = {r['prefix_length']} ({r['tokens']} tokens): ratios to P-Tuning v2 "
            "(PT2) and to the floor, medians of within-round ratios:",
            "",
            "| method | step ms | step / PT2 | step / floor | inference ms | inference / PT2 | inference / floor "
            "| step peak MiB | memory / PT2 | memory / floor |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n in r["step_ms"]:
            q = r["ratios"].get(n, {})
            if n == "ptuning-v2":
                q = {**q, "step_vs_ptuning": 1.0, "infer_vs_ptuning": 1.0, "memory_vs_ptuning": 1.0}
            if n == "floor":
                q = {"step_vs_floor": 1.0, "infer_vs_floor": 1.0, "memory_vs_floor": 1.0}
                p2 = r["ratios"]["ptuning-v2"]
                q |= {k.replace("floor", "ptuning"): 1 / p2[k] for k in ("step_vs_floor", "infer_vs_floor")}
                q["memory_vs_ptuning"] = 1 / p2["memory_vs_floor"] if p2["memory_vs_floor"] else float("nan")

            def f(key, q=q):
                return f"{q[key]:.3f}" if key in q else "-"

            infer = r["infer_ms"].get(n)
            lines.append(
                f"| {n} | {r['step_ms'][n]:.1f} | {f('step_vs_ptuning')} | {f('step_vs_floor')} | "
                f"{'-' if infer is None else format(infer, '.1f')} | {f('infer_vs_ptuning')} | {f('infer_vs_floor')} | "
                f"{r['step_peak_mib'][n]:.1f} | {f('memory_vs_ptuning')} | {f('memory_vs_floor')} |"
            )
        lines.append("")
    return lines


def report(paths: list[str]) -> str:
    """Markdown tables of the ratios in result files (what docs/performance.md shows)."""
    lines = ["Targets (m = 16; every row of the files given):", ""]
    lines += targets_table(paths) + [""]
    for path in paths:
        d = json.loads(Path(path).read_text())
        lines += [
            f"**{d['model']}**, {d['device']} {d['dtype']}, {d['threads']} thread(s), timer: "
            f"{d['rows'][0]['timer']} ({Path(path).name})",
            "",
        ]
        lines += peers_table(d)
        lines += [
            "| batch | m | tokens | floor ms | P-Tuning v2 ms | DCPC ms | DCPC / PT2 step | DCPC / floor step "
            "| PT2 / floor step | DCPC / PT2 step peak memory | DCPC / PT2 inference |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in d["rows"]:
            dc, pt, ms = r["ratios"]["dcpc"], r["ratios"]["ptuning-v2"], r["step_ms"]
            lines.append(
                f"| {r['batch_size']} | {r['prefix_length']} | {r['tokens']} | {ms['floor']:.1f} | "
                f"{ms['ptuning-v2']:.1f} | {ms['dcpc']:.1f} | {dc['step_vs_ptuning']:.3f} | "
                f"{dc['step_vs_floor']:.3f} | {pt['step_vs_floor']:.3f} | {dc['memory_vs_ptuning']:.3f} | "
                f"{dc['infer_vs_ptuning']:.3f} |"
            )
        abl = [r for r in d["rows"] if "dcpc-no-clpa" in r["ratios"]]
        if abl:
            names = [n for n in BASE_METHODS + ABLATIONS if n not in ("floor", "ptuning-v2")]
            lines += [
                "",
                "Step time / P-Tuning v2's and step peak memory / P-Tuning v2's, per variant:",
                "",
                "| batch | m | " + " | ".join(names) + " |",
                "|---|---|" + "---|" * len(names),
            ]
            for r in abl:
                cells = [
                    f"{r['ratios'][n]['step_vs_ptuning']:.3f} / {r['ratios'][n]['memory_vs_ptuning']:.3f}"
                    for n in names
                ]
                lines.append(f"| {r['batch_size']} | {r['prefix_length']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated: tiny, minilm, smollm2-135m (default: all)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default: the model's grid)")
    p.add_argument("--prefixes", default=None, help="comma-separated prefix lengths (default: the model's grid)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per configuration (default: the grid's)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument(
        "--memory-repeats", type=int, default=None, help="memory measurements per method (default: the grid's)"
    )
    p.add_argument("--max-length", type=int, default=64, help="review length cap in tokens (the demo's 64)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the machine is shared)")
    p.add_argument("--quick", action="store_true", help="tiny model, batch 8 and 64, prefix 16: a smoke run")
    p.add_argument(
        "--no-peers",
        dest="peers",
        action="store_false",
        help="leave out our LoRA and the peers (PEFT prefix tuning and LoRA, plain full fine-tuning)",
    )
    p.add_argument("--no-ablations", dest="ablations", action="store_false", help="leave out DCPC's four ablations")
    p.add_argument(
        "--with-before",
        action="store_true",
        help="add dcpc-two-pass, DCPC's prefix path before the one-tensor change, to the rotation",
    )
    p.add_argument(
        "--same-head",
        action="store_true",
        help="add ptuning-v2-score (our P-Tuning v2 with PEFT's linear score head; decoders) to the rotation",
    )
    p.add_argument(
        "--only",
        default=None,
        help="comma-separated methods to measure beside floor, ptuning-v2 and dcpc, in place of the peers and "
        "ablations (e.g. peft-prefix)",
    )
    p.add_argument("--tag", default="", help="appended to the result file's name: speed_memory_<model>_<tag>.json")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--report", nargs="+", metavar="JSON", help="print markdown tables of result files and exit")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return
    if args.one:
        print("RESULT " + json.dumps(run_one(json.loads(args.one))), flush=True)
        return
    only = None
    if args.only is not None:  # checked before anything is measured
        only = tuple(n for n in args.only.split(",") if n)
        choices = [n for n in METHODS if n not in BASE_METHODS]
        unknown = [n for n in only if n not in choices]
        if unknown:
            sys.exit(f"--only: unknown method(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
    grid = QUICK if args.quick else GRID
    models = args.models.split(",") if args.models else list(grid)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if (args.device, args.dtype) == ("cpu", "fp32") else f"_{args.device}-{args.dtype}"
    if args.tag:
        suffix += f"_{args.tag}"
    if args.quick:
        suffix += "_quick"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        # Freed tensors go straight back to the kernel, so RSS follows live memory (see the docstring).
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "MALLOC_TRIM_THRESHOLD_": "65536",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for model in models:
        g = grid.get(model) or GRID[model]
        batches = [int(x) for x in args.batches.split(",")] if args.batches else g["batches"]
        prefixes = [int(x) for x in args.prefixes.split(",")] if args.prefixes else g["prefixes"]
        rows, raws, t0, load0 = [], [], time.time(), os.getloadavg()
        for b in batches:
            for m in prefixes:
                methods = BASE_METHODS + (ABLATIONS if args.ablations and m in g["ablations_at"] else ())
                if args.peers and m == PEERS_PREFIX and b in (batches if args.batches else g["peers_at"]):
                    methods += OTHERS
                if only is not None:
                    methods = BASE_METHODS + only
                if args.with_before:
                    methods += BEFORE
                if args.same_head:
                    methods += SAME_HEAD
                spec = {
                    "model": model,
                    "batch_size": b,
                    "prefix_length": m,
                    "rounds": args.rounds or g["rounds"],
                    "warmup": args.warmup,
                    "memory_repeats": args.memory_repeats or g["memory_repeats"],
                    "max_length": args.max_length,
                    "device": args.device,
                    "dtype": args.dtype,
                    "threads": args.threads,
                    "methods": list(methods),
                }
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", json.dumps(spec)], env=env, capture_output=True, text=True
                )
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    sys.exit(f"{model} batch {b} prefix {m} failed:\n{proc.stderr[-3000:]}")
                raw = json.loads(line[len("RESULT ") :])
                row = summarise(raw)
                raws.append(raw)
                rows.append(row)
                d = row["ratios"]["dcpc"]
                print(
                    f"{model:>13} B={b:<3} m={m:<3} step ms: floor {row['step_ms']['floor']:.1f} "
                    f"ptv2 {row['step_ms']['ptuning-v2']:.1f} dcpc {row['step_ms']['dcpc']:.1f} | dcpc/ptv2 "
                    f"{d['step_vs_ptuning']:.3f} dcpc/floor {d['step_vs_floor']:.3f} mem/ptv2 "
                    f"{d['memory_vs_ptuning']:.3f} infer/ptv2 {d.get('infer_vs_ptuning', float('nan')):.3f}",
                    flush=True,
                )
                for pair in row["pairs"]:
                    if {pair["method"], pair["reference"]} & set(OTHERS + SAME_HEAD):
                        print(f"{'':>13} {pair_label(pair)} {pair['ratio']:.3f}{verdict(pair)}", flush=True)
                # Written after every configuration, so a run stopped early keeps what it measured.
                path = write_result(args, argv, model, suffix, rows, raws, t0, out, load0)
        plot(
            rows,
            path.with_suffix(".png"),
            f"{model}, {args.device} {args.dtype}, {args.threads} thread(s): ratios (median over interleaved rounds)",
        )
        print(f"wrote {path} and {path.with_suffix('.png')}", flush=True)


def write_result(
    args, argv, model: str, suffix: str, rows: list, raws: list, t0: float, out: Path, load0: tuple = ()
) -> Path:
    """The result file of one model: every row and raw measurement so far, the command, machine, load."""
    from prefalign.utils.atomic_files import write_text_atomically
    from prefalign.utils.environment import machine, versions

    result = {
        "command": "python benchmarks/speed_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": model,
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
        "max_length": args.max_length,
        "dcpc_params": DCPC_PARAMS,
        "machine": machine(args.device),
        "versions": versions(),
        "load_average": os.getloadavg(),  # at the end (1, 5, 15 min)
        "load_average_start": list(load0),
        "seconds": round(time.time() - t0, 1),
        "rows": rows,
        "raw": raws,
    }
    path = out / f"speed_memory_{model}{suffix}.json"
    write_text_atomically(path, json.dumps(result, indent=1))
    return path


if __name__ == "__main__":
    main()
