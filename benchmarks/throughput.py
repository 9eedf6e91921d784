"""End-to-end throughput as users see it: `prefalign train` and `prefalign predict` against a plain loop.

    python benchmarks/throughput.py --model minilm                      # CPU, fp32, one thread
    python benchmarks/throughput.py --model smollm2-135m --device cuda --bf16
    python benchmarks/throughput.py --model tiny --steps 2,6 --predict 64,256   # a smoke run
    python benchmarks/throughput.py --report benchmarks/results/throughput_*.json

Both sides train the same thing on the same model and the same CSV files of Rotten Tomatoes
reviews: 16 trainable prefix positions on the frozen backbone, batch ``--batch``, AdamW, reviews cut
at 64 tokens. prefalign's side is the CLI, `prefalign train` with method ptuning-v2 (its task head,
Trainer, logging, checkpointing and final validation pass) and `prefalign predict` on the adapter it
wrote; the plain side is a hand-written loop over transformers' AutoModelForSequenceClassification with
PEFT's PrefixTuningConfig (16 virtual tokens): tokenise a batch, forward, backward, step; then
one pass over the same validation file and ``save_pretrained``; predicting loads the saved adapter
and writes the same JSON lines.

Each command runs as its own process, timed from start to exit (imports, model load, data
reading, writing included); the CPU time of the process (user + system) is kept beside the wall
time. Every command runs at two sizes (``--steps``, ``--predict``) and the table reports:

* examples per second of the whole command at the larger size (what a user waits for), and
* marginal examples per second: the extra examples over the extra time between the two sizes,
  so start-up, model load and the fixed final work cancel and only the per-batch cost is left.

The order of the runs alternates prefalign / plain so load drift on a shared machine hits both.
Writes benchmarks/results/throughput_<model>[_<device>-<dtype>][_<tag>].json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PREFIX = 16


def write_csv(path: Path, examples, names) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for ex in examples:
            w.writerow([ex.text, names[ex.label]])


def model_folder(name: str, work: Path) -> str:
    """A folder the CLI and transformers both load: the alias's own, or the tiny model saved once."""
    from prefalign.models.loading import resolve_model_path

    if name != "tiny":
        return resolve_model_path(name)
    sys.path.insert(0, str(HERE))
    import speed_memory

    folder = work / "tiny-model"
    if not folder.exists():
        backbone = speed_memory.build_backbone("tiny", "fp32")
        backbone.model.save_pretrained(folder)
        backbone.tokenizer.save_pretrained(folder)
    return str(folder)


# -- the plain loop ---------------------------------------------------------------------------------
def read_rows(path: str) -> tuple[list[str], list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def plain_train(a: dict) -> None:
    """Hand-written training loop: transformers + PEFT prefix tuning, no prefalign."""
    import torch
    from peft import PrefixTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    device = a["device"]
    tok = AutoTokenizer.from_pretrained(a["model"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts, labels = read_rows(a["train"])
    names = sorted(set(labels))
    model = AutoModelForSequenceClassification.from_pretrained(
        a["model"], num_labels=len(names), pad_token_id=tok.pad_token_id, use_safetensors=True
    )
    if a["bf16"]:
        model.to(torch.bfloat16)
    model = get_peft_model(model, PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=PREFIX))
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    order = torch.randperm(len(texts)).tolist()
    b = a["batch"]
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=a["bf16"])
    t0 = time.perf_counter()
    for step in range(a["steps"]):
        idx = [order[(step * b + i) % len(order)] for i in range(b)]
        enc = tok([texts[i] for i in idx], truncation=True, max_length=64, padding=True, return_tensors="pt")
        y = torch.tensor([names.index(labels[i]) for i in idx])
        enc = {k: v.to(device) for k, v in enc.items()}
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model(**enc, labels=y.to(device)).loss
        loss.backward()
        opt.step()
    loop = time.perf_counter() - t0
    vtexts, vlabels = read_rows(a["validation"])
    model.eval()
    correct = 0
    with torch.no_grad(), autocast:
        for i in range(0, len(vtexts), 64):
            enc = tok(vtexts[i : i + 64], truncation=True, max_length=64, padding=True, return_tensors="pt")
            pred = model(**{k: v.to(device) for k, v in enc.items()}).logits.argmax(-1).tolist()
            correct += sum(names[p] == y for p, y in zip(pred, vlabels[i : i + 64]))
    model.save_pretrained(a["out"])
    Path(a["out"], "labels.json").write_text(json.dumps(names))
    print("LOOP", json.dumps({"loop_seconds": loop, "validation_accuracy": correct / max(len(vtexts), 1)}))


def plain_predict(a: dict) -> None:
    """Hand-written prediction: load the base model and the saved PEFT adapter, write JSON lines."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = a["device"]
    tok = AutoTokenizer.from_pretrained(a["model"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    names = json.loads(Path(a["adapter"], "labels.json").read_text())
    base = AutoModelForSequenceClassification.from_pretrained(
        a["model"], num_labels=len(names), pad_token_id=tok.pad_token_id, use_safetensors=True
    )
    if a["bf16"]:
        base.to(torch.bfloat16)
    model = PeftModel.from_pretrained(base, a["adapter"]).to(device).eval()
    texts, _ = read_rows(a["data"])
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=a["bf16"])
    t0 = time.perf_counter()
    lines = []
    with torch.no_grad(), autocast:
        for i in range(0, len(texts), 64):
            enc = tok(texts[i : i + 64], truncation=True, max_length=64, padding=True, return_tensors="pt")
            probs = torch.softmax(model(**{k: v.to(device) for k, v in enc.items()}).logits.float(), -1).cpu()
            for t, p in zip(texts[i : i + 64], probs):
                lines.append(
                    json.dumps(
                        {
                            "text": t,
                            "label": names[int(p.argmax())],
                            "probabilities": {n: round(float(v), 6) for n, v in zip(names, p)},
                        }
                    )
                )
    loop = time.perf_counter() - t0
    Path(a["output"]).write_text("\n".join(lines) + "\n")
    print("LOOP", json.dumps({"loop_seconds": loop}))


# -- the harness ------------------------------------------------------------------------------------
def timed(cmd: list[str], env: dict) -> dict:
    """Run one command as its own process: wall seconds, CPU seconds (user + system), its LOOP line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    loop = next((json.loads(x[5:]) for x in proc.stdout.splitlines() if x.startswith("LOOP ")), {})
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), **loop}


def prefalign_train_cmd(a: dict) -> list[str]:
    sets = {
        "model.name": a["model"],
        "model.dtype": "bfloat16" if a["bf16"] else "float32",
        "data.train": a["train"],
        "data.validation": a["validation"],
        "data.max_length": 64,
        "method.name": "ptuning-v2",
        "method.prefix_length": PREFIX,
        "training.output_dir": a["out"],
        "training.batch_size": a["batch"],
        "training.max_steps": a["steps"],
        "training.eval_steps": 10**6,
        "training.learning_rate": 1e-2,
        "training.device": a["device"],
        "training.bf16": str(a["bf16"]).lower(),
        "training.progress": "false",
        "training.seed": 0,
    }
    cmd = [sys.executable, "-m", "prefalign", "train"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def prefalign_predict_cmd(a: dict) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prefalign",
        "predict",
        "--adapter",
        str(Path(a["out"]) / "adapter"),
        "--data",
        a["data"],
        "--batch-size",
        "64",
        "-o",
        a["output"],
    ]


def rate(examples: int, seconds: float) -> float | None:
    """Examples per second; None where the time did not grow (noise larger than the work)."""
    return round(examples / seconds, 3) if seconds > 0 else None


def cell(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def run(args) -> dict:
    from prefalign.data import load_rotten_tomatoes

    steps, sizes = [int(x) for x in args.steps.split(",")], [int(x) for x in args.predict.split(",")]
    train_n = max(steps) * args.batch
    train, test = load_rotten_tomatoes(seed=0, max_train=train_n, max_test=max(sizes) + 64)
    names = train.label_names
    work = Path(args.work or tempfile.mkdtemp(prefix="prefalign-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    write_csv(work / "train.csv", train.examples, names)
    write_csv(work / "validation.csv", list(test.examples)[:64], names)
    for n in sizes:
        write_csv(work / f"predict_{n}.csv", list(test.examples)[64 : 64 + n], names)
    folder = model_folder(args.model, work)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    base = {"model": folder, "device": args.device, "bf16": args.bf16, "batch": args.batch}
    runs = {"train": {"prefalign": {}, "plain": {}}, "predict": {"prefalign": {}, "plain": {}}}
    for r in range(args.repeats):
        sides = ("prefalign", "plain") if r % 2 == 0 else ("plain", "prefalign")
        for n in steps:
            for side in sides:
                a = {
                    **base,
                    "steps": n,
                    "train": str(work / "train.csv"),
                    "validation": str(work / "validation.csv"),
                    "out": str(work / f"{side}_{n}"),
                }
                cmd = (
                    prefalign_train_cmd(a)
                    if side == "prefalign"
                    else [sys.executable, __file__, "--plain-train", json.dumps(a)]
                )
                m = timed(cmd, env)
                runs["train"][side].setdefault(str(n), []).append(m)
                print(f"train   {side:9s} {n:4d} steps: {m['wall_seconds']:.1f} s wall, {m['cpu_seconds']:.1f} s CPU")
        for n in sizes:
            for side in sides:
                a = {
                    **base,
                    "data": str(work / f"predict_{n}.csv"),
                    "output": str(work / f"{side}_pred_{n}.jsonl"),
                    "out": str(work / f"{side}_{max(steps)}"),
                    "adapter": str(work / f"plain_{max(steps)}"),
                }
                cmd = (
                    prefalign_predict_cmd(a)
                    if side == "prefalign"
                    else [sys.executable, __file__, "--plain-predict", json.dumps(a)]
                )
                m = timed(cmd, env)
                runs["predict"][side].setdefault(str(n), []).append(m)
                print(f"predict {side:9s} {n:4d} rows:  {m['wall_seconds']:.1f} s wall, {m['cpu_seconds']:.1f} s CPU")
    summary = {}
    for kind, counts in (("train", [n * args.batch for n in steps]), ("predict", sizes)):
        keys = [str(n) for n in (steps if kind == "train" else sizes)]
        lo, hi = keys[0], keys[-1]
        summary[kind] = {}
        for side in ("prefalign", "plain"):
            s = {}
            for clock in ("wall_seconds", "cpu_seconds"):
                t_lo = statistics.median(x[clock] for x in runs[kind][side][lo])
                t_hi = statistics.median(x[clock] for x in runs[kind][side][hi])
                label = clock.split("_")[0]
                s[f"examples_per_s_{label}"] = rate(counts[-1], t_hi)
                s[f"marginal_examples_per_s_{label}"] = rate(counts[-1] - counts[0], t_hi - t_lo)
            summary[kind][side] = s
        mine, plain = summary[kind]["prefalign"], summary[kind]["plain"]
        summary[kind]["prefalign_over_plain"] = {
            k: None if mine[k] is None or plain[k] is None else round(mine[k] / plain[k], 3) for k in plain
        }
    return {"runs": runs, "summary": summary, "work": str(work)}


def report(paths: list[str]) -> str:
    lines = [
        "| model | device | command | side | examples/s, whole command (wall) | examples/s, marginal (wall) "
        "| examples/s, whole command (CPU time) | examples/s, marginal (CPU time) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        d = json.loads(Path(path).read_text())
        for kind in ("train", "predict"):
            s = d["summary"][kind]
            for side in ("prefalign", "plain", "prefalign_over_plain"):
                q = s[side]
                label = {"prefalign_over_plain": "**prefalign / plain**"}.get(side, side)
                lines.append(
                    f"| {d['model']} | {d['device']} {'bf16' if d['bf16'] else 'fp32'} | {kind} | {label} | "
                    f"{cell(q['examples_per_s_wall'])} | {cell(q['marginal_examples_per_s_wall'])} | "
                    f"{cell(q['examples_per_s_cpu'])} | {cell(q['marginal_examples_per_s_cpu'])} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="tiny, minilm, smollm2-135m or a model folder")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--bf16", action="store_true", help="bf16 weights and autocast (GPU)")
    p.add_argument("--batch", type=int, default=16, help="training batch size (prediction: 64)")
    p.add_argument("--steps", default="10,40", help="two training lengths in steps (the marginal rate's ends)")
    p.add_argument("--predict", default="256,2048", help="two prediction sizes in examples")
    p.add_argument("--repeats", type=int, default=1, help="times each command runs (median kept)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of every command")
    p.add_argument("--work", help="folder for the data files and runs (default: a new temporary folder)")
    p.add_argument("--tag", default="", help="appended to the result file's name")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--report", nargs="+", metavar="JSON", help="print a markdown table of result files and exit")
    p.add_argument("--plain-train", help=argparse.SUPPRESS)
    p.add_argument("--plain-predict", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return
    if args.plain_train:
        return plain_train(json.loads(args.plain_train))
    if args.plain_predict:
        return plain_predict(json.loads(args.plain_predict))
    from prefalign.utils.atomic_files import write_text_atomically
    from prefalign.utils.environment import machine, versions

    t0 = time.time()
    result = {
        "command": "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": args.model,
        "device": args.device,
        "bf16": args.bf16,
        "batch": args.batch,
        "prefix_length": PREFIX,
        "threads": args.threads,
        "steps": args.steps,
        "predict": args.predict,
        "machine": machine(args.device),
        "versions": versions(),
        "load_average_before": os.getloadavg(),
        **run(args),
    }
    result["load_average_after"] = os.getloadavg()
    result["seconds"] = round(time.time() - t0, 1)
    suffix = "" if (args.device, args.bf16) == ("cpu", False) else f"_{args.device}-{'bf16' if args.bf16 else 'fp32'}"
    suffix += f"_{args.tag}" if args.tag else ""
    path = Path(args.out) / f"throughput_{args.model}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(result, indent=1))
    print(report([str(path)]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
