"""Tiny random models and a toy task, built in-process: no downloads."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from prefalign.data.examples import Example, TaskDataset
from prefalign.models.loading import LoadedModel, prepare_tokenizer
from prefalign.models.tiny import tiny_backbone

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module, with benchmarks/ on sys.path for the helpers its scripts import from
    beside them (shared_data, op_profile)."""
    folder = str(ROOT / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORDS = (
    "good great fine lovely superb bad awful poor dull boring movie film plot actor scene story "
    "the a is was and but not very quite really it this that of to in with review sentiment answer "
    "positive negative cause effect because so man woman rain sun went store yes no"
).split()


@pytest.fixture(scope="session")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ":", ".", ","] + WORDS) + "\n")
    return str(path)


def make_tokenizer(vocab_file):
    """A word-level tokenizer over WORDS, with BERT-style [CLS]/[SEP] and a pad token."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(open(vocab_file).read().split())}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        eos_token="[SEP]",
    )
    prepare_tokenizer(tok)
    return tok


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One torch thread: tiny models pay more for thread start-up than they gain, and a busy
    2-core machine makes two threads far slower; on an idle one MiniLM runs as fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Two-process tests (DDP, FSDP) run torch.distributed over gloo on the CPU.
needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)


def build_tiny(kind: str, vocab_file: str, seed: int = 0, **overrides) -> LoadedModel:
    """A tiny random 'bert', 'llama' (grouped-query attention) or 'gpt2' with a word tokenizer
    (prefalign.models.tiny); ``overrides`` replace config fields."""
    return tiny_backbone(kind, make_tokenizer(vocab_file), seed, **overrides)


@pytest.fixture
def tiny_bert(vocab_file):
    return build_tiny("bert", vocab_file)


@pytest.fixture
def tiny_llama(vocab_file):
    return build_tiny("llama", vocab_file)


@pytest.fixture
def tiny_gpt2(vocab_file):
    return build_tiny("gpt2", vocab_file)


def toy_sentiment(n: int = 64, seed: int = 0, soft: bool = False) -> TaskDataset:
    """Short reviews whose label follows a positive or negative word: learnable in a few steps."""
    rng = random.Random(seed)
    pos, neg = ["good", "great", "lovely", "superb"], ["bad", "awful", "poor", "dull"]
    examples = []
    for i in range(n):
        label = i % 2
        word = rng.choice(pos if label else neg)
        text = f"the {rng.choice(['movie', 'film', 'plot'])} was {rng.choice(['very', 'really', 'quite'])} {word}"
        soft_label = None
        if soft and i % 4 == 0:
            soft_label = [0.3, 0.7] if label else [0.6, 0.4]
        examples.append(Example(text=text, label=label, soft_label=soft_label))
    return TaskDataset(examples, ["negative", "positive"], name="toy")


def toy_choice(n: int = 16, seed: int = 0) -> TaskDataset:
    rng = random.Random(seed)
    examples = []
    for _i in range(n):
        label = rng.randint(0, 1)
        right, wrong = "the sun", "the rain"
        choices = [right, wrong] if label == 0 else [wrong, right]
        examples.append(Example(text="the man went to the store because", choices=choices, label=label))
    return TaskDataset(examples, ["choice1", "choice2"], name="toy-choice")
