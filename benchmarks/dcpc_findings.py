"""Issue 15's six findings about DCPC, measured on tiny random models (and, with --real, MiniLM and SmolLM2).

Run before and after a change to DCPC to see each finding hold or go away:

    PYTHONPATH=src python benchmarks/dcpc_findings.py            # tiny models, a few seconds
    PYTHONPATH=src python benchmarks/dcpc_findings.py --real     # also the starting L_align on the real models
    PYTHONPATH=src python benchmarks/dcpc_findings.py --real --output benchmarks/results/dcpc_findings.json

Each line prints one measured number and what it was in the issue; --output also writes them all as JSON
(with the command, versions and machine), the record docs/methods/dcpc.md cites.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from types import SimpleNamespace

import torch

from prefalign.data.collator import Collator, PromptFormat, build_task_spec
from prefalign.data.examples import Example, TaskDataset
from prefalign.methods.dcpc import DCPCConfig, DCPCModel, losses
from prefalign.methods.dcpc.pcm import PreferenceCorrection
from prefalign.models.introspect import ModelGeometry
from prefalign.models.tiny import tiny_backbone
from prefalign.utils.atomic_files import write_text_atomically
from prefalign.utils.environment import versions

LLAMA2_7B = ModelGeometry("llama", True, 32, 4096, 32, 32, 128)
REVIEWS = [
    ("a quietly devastating film with superb acting", 1),
    ("the plot is dull and the acting is worse", 0),
    ("one of the best movies of the year", 1),
    ("a tedious, overlong mess", 0),
    ("warm, funny and beautifully shot", 1),
    ("i wanted my two hours back", 0),
    ("the cast is wonderful and the script sparkles", 1),
    ("flat characters and a predictable ending", 0),
]
WORDS = (
    "negative positive review sentiment : a the film movie plot acting cast script is was and with of one best "
    "worst good bad dull superb"
).split()


def _tiny(kind: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    return tiny_backbone(kind, tok, 0)


def _model(lm, cfg: DCPCConfig):
    ds = TaskDataset([Example(text=t, label=y) for t, y in REVIEWS], ["negative", "positive"], name="reviews")
    prompt = PromptFormat(template="review: {text} sentiment:") if lm.geometry.is_decoder else PromptFormat()
    spec = build_task_spec(ds, lm.geometry, lm.tokenizer, prompt)
    batch = Collator(lm.tokenizer, lm.geometry, 2, prompt)(ds.examples)
    torch.manual_seed(0)
    return DCPCModel(lm.model, lm.tokenizer, lm.geometry, spec, cfg), batch


def align_gradient(lm) -> dict[str, float]:
    """Gradient norm of L_align alone on the static prefix and on the PCM (every pair gated in)."""
    grads = {}
    for lam in (1.0, 0.0):
        cfg = DCPCConfig(tau_cos=0.0, tau_ambiguity=0.0, similarity_center=False, use_ambiguity=False)
        cfg.lambda_align, cfg.lambda_kl = lam, 0.0
        model, batch = _model(lm, cfg)
        if model.pcm is not None:  # a non-zero PCM so its half of eq. 7 is not zero at the start
            with torch.no_grad():
                for p in model.pcm.parameters():
                    p.add_(0.05 * torch.randn_like(p))
        model.eval()
        model(**batch).loss.backward()
        grads[lam] = {n: p.grad.clone() for n, p in model.trainable_parameters().items() if p.grad is not None}
    diff = {n: (grads[1.0][n] - grads[0.0].get(n, 0)).norm().item() for n in grads[1.0]}
    return {
        "prefix": sum(v for n, v in diff.items() if n.startswith("prefix.")),
        "pcm": sum(v for n, v in diff.items() if n.startswith("pcm.")),
    }


def gate_on_agreement() -> float:
    """gate_ambiguity_rate for two identical 50/50 predictions at cosine 0.71 (issue: the gate opens)."""
    cfg = DCPCConfig(tau_cos=0.3, similarity_center=False, use_pcm=False, use_alignment=False)
    model = SimpleNamespace(config=cfg, training=False, pcm=None)
    emb = torch.tensor([[1.0, 0.0], [0.71, (1 - 0.71**2) ** 0.5]])
    out = SimpleNamespace(logits=torch.zeros(2, 2), last_pooled=emb, pooled=None)
    _, terms = DCPCModel.objective(model, out, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), None)
    return terms["gate_ambiguity_rate"].item()


def starting_terms(lm, **overrides) -> tuple[float, float]:
    """(L_task, L_align) at initialisation with the default config (plus ``overrides``), L_align over every
    pair; the PCM starts at zero, so L_align is its token half."""
    cfg = DCPCConfig(tau_cos=0.0, tau_ambiguity=0.0, similarity_center=False, **overrides)
    model, batch = _model(lm, cfg)
    model.eval()
    with torch.no_grad():
        terms = model(**batch).terms
    return terms["loss_task"].item(), terms["loss_align"].item()


def precision() -> dict[str, float]:
    torch.manual_seed(0)
    base = torch.randn(1, 1, 576, dtype=torch.float64)
    x64 = 300 * base / base.norm() + 1.2 * torch.randn(4, 1, 576, dtype=torch.float64) / 576**0.5
    ref = ((x64[:, None] - x64[None]) ** 2).sum(-1).mean(-1) / 576
    got = losses.pairwise_sq_distance(x64.float(), "mean").double()
    mu64 = 20 + 0.01 * torch.randn(4, 64, dtype=torch.float64)
    s64 = torch.full((4, 64), 0.05, dtype=torch.float64)
    kl_ref = (((mu64[:, None] - mu64[None]) ** 2) / (2 * s64[None] ** 2)).mean(-1)
    kl_got = losses.pairwise_gaussian_kl(mu64.float(), s64.float()).double()
    return {
        "distance_abs_error": (got - ref).abs().max().item(),
        "distance_true": ref[0, 1].item(),
        "kl_abs_error": (kl_got - kl_ref).abs().max().item(),
        "kl_true": kl_ref[0, 1].item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="also measure MiniLM and SmolLM2 (loads them)")
    parser.add_argument("--output", help="also write every number as JSON to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    record: dict = {"command": "python benchmarks/dcpc_findings.py " + " ".join(sys.argv[1:]), "findings": {}}
    found = record["findings"]
    for kind in ("bert", "llama"):
        lm = _tiny(kind)
        g = align_gradient(lm)
        found[f"1_align_grad_{kind}"] = g
        print(f"1 [{kind}] |grad L_align| on the static prefix {g['prefix']:.3g}, on the PCM {g['pcm']:.3g}")
    found["2_gate_ambiguity_rate_on_agreement"] = rate = gate_on_agreement()
    print(f"2 gate_ambiguity_rate for two agreeing 50/50 predictions at cos 0.71: {rate:.2f}")
    for kind in ("bert", "llama"):
        task, align = starting_terms(_tiny(kind))
        found[f"3_starting_terms_{kind}"] = {"loss_task": task, "loss_align": align}
        print(f"3 [{kind}] starting L_task {task:.3f}, L_align (every pair) {align:.3f}")
    pcm = PreferenceCorrection(LLAMA2_7B, DCPCConfig())
    found["4_pcm_parameters_llama2_7b"] = sum(p.numel() for p in pcm.parameters())
    print(f"4 default PCM parameters at LLaMA-2 7B: {found['4_pcm_parameters_llama2_7b'] / 1e6:.3f}M")
    for n in (2, 3):
        cos = losses.pairwise_cosine(torch.randn(n, 8), center=True)
        found[f"5_centred_cosine_batch_{n}"] = cos[~torch.eye(n, dtype=torch.bool)].mean().item()
        print(f"5 centred cosine off the diagonal at batch {n}: {found[f'5_centred_cosine_batch_{n}']:.3f}")
    p = precision()
    found["6_precision"] = p
    print(f"6 distance at norm 300: error {p['distance_abs_error']:.3g} on a true {p['distance_true']:.3g}")
    print(f"6 Gaussian KL at mu 20, sigma 0.05: error {p['kl_abs_error']:.3g} on a true {p['kl_true']:.3g}")
    if args.real:
        from prefalign.models.loading import load_backbone

        for name in ("minilm", "smollm2-135m"):
            lm = load_backbone(name)
            task, align = starting_terms(lm)
            _, raw = starting_terms(lm, align_normalize=False)
            found[f"3_starting_terms_{name}"] = {"loss_task": task, "loss_align": align, "loss_align_raw_states": raw}
            print(f"3 [{name}] starting L_task {task:.3f}, L_align (every pair) {align:.3f}, raw states {raw:.3f}")
    if args.output:
        record.update(machine=platform.platform(), torch_threads=torch.get_num_threads())
        record["versions"] = versions()
        write_text_atomically(args.output, json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
