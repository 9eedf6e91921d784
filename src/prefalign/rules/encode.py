"""The two model readings PRBoost needs of a text: its top-k words for the blank (eq. 2.4) and its sentence
embedding (eq. 2.5 and the weak model's features). Both are computed once per text and cached on disk."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForMaskedLM

from ..errors import ConfigError, DataError
from ..models.loading import LoadedModel, load_backbone
from ..utils.atomic_files import write_text_atomically
from .config import MASK

# Words that fill a blank often and say nothing about a label.
STOP_WORDS = frozenset(
    """the and for that this with from are was were has have had been being its his her their our your you they
    she him them who what which when where why how not but all any can could would should will may might must
    about into over after before than then there here also just only very more most some such one two new
    said says say like get got out off now one not yes its it's it is""".split()
)
_WORD_STARTS = ("Ġ", "▁")


def template_parts(template: str) -> tuple[str, str]:
    """(text before {text}, text between {text} and [MASK]) of a decoder's template; a ConfigError if
    the blank is not last or the input does not come before it."""
    if MASK not in template or "{text}" not in template:
        raise ConfigError(f"prompt.template needs both {{text}} and {MASK}")
    head, _, tail = template.partition(MASK)
    if tail.strip():
        raise ConfigError(
            f"prompt.template: a decoder fills the blank at the end, so {MASK} must end the template "
            f"(got {tail.strip()!r} after it); e.g. '{{text}} This news is about {MASK}'"
        )
    if "{text}" not in head:
        raise ConfigError(f"prompt.template: put {{text}} before {MASK} for a decoder")
    before, _, between = head.partition("{text}")
    return before, between.rstrip()


def word_vocabulary(tokenizer, min_length: int = 3) -> tuple[np.ndarray, list[str]]:
    """(ids of tokens that are whole candidate words, their lower-cased words).

    A token is a word start when its piece begins with a BPE / SentencePiece space marker (or, for a
    word-level vocabulary without markers, always); its word must be alphabetic, at least ``min_length``
    letters and not a stop word; special tokens never are.
    """
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    markers = any(p and p.startswith(_WORD_STARTS) for p in pieces)
    special = set(tokenizer.all_special_ids)
    ids, words = [], []
    for i, piece in enumerate(pieces):
        if piece is None or i in special:
            continue
        if markers and not piece.startswith(_WORD_STARTS):
            continue
        word = piece.lstrip("".join(_WORD_STARTS)).lower()
        if word.isalpha() and word.isascii() and len(word) >= min_length and word not in STOP_WORDS:
            ids.append(i)
            words.append(word)
    return np.asarray(ids, dtype=np.int64), words


@torch.no_grad()
def top_words(
    lm: LoadedModel,
    texts: Sequence[str],
    template: str,
    k: int,
    *,
    max_length: int = 128,
    batch_size: int = 16,
    min_word_length: int = 3,
) -> list[list[str]]:
    """The k most probable distinct words for the blank of each text's prompt (eq. 2.4), most probable first.

    A decoder: the template ends at the blank and the next-token distribution is p(MASK = v | x_p). An
    encoder with a masked-LM head (``load_prompting_model``): [MASK] may stand anywhere ("[MASK] News:
    {text}") and the head's distribution at that position is used.
    """
    if not lm.geometry.is_decoder:
        if getattr(lm.model, "get_output_embeddings", lambda: None)() is None:
            raise ConfigError(
                f"prompt.model '{lm.name}' is an encoder without a masked-LM head (MiniLM ships none); use a "
                "decoder such as smollm2-135m or an encoder checkpoint with its MLM head"
            )
        return _masked_top_words(lm, texts, template, k, max_length, batch_size, min_word_length)
    tok = lm.tokenizer
    before, between = template_parts(template)
    vocab_ids, vocab_words = word_vocabulary(tok, min_word_length)
    if len(vocab_ids) == 0:
        raise ConfigError(f"prompt.model '{lm.name}': its vocabulary has no whole-word tokens to propose")
    head_ids = tok(before, add_special_tokens=False)["input_ids"] if before else []
    tail_ids = tok(between, add_special_tokens=False)["input_ids"] if between else []
    bos = [tok.bos_token_id] if getattr(tok, "bos_token_id", None) is not None else []
    room = max(1, max_length - len(head_ids) - len(tail_ids) - len(bos))
    sequences = []
    for text in texts:
        text_ids = tok((" " if before else "") + text.strip(), add_special_tokens=False)["input_ids"][:room]
        sequences.append(bos + head_ids + text_ids + tail_ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    vocab_t = torch.as_tensor(vocab_ids)
    out: list[list[str]] = []
    model = lm.model
    model.eval()
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):  # left padding: the last position is every prompt's blank
            ids[row, width - len(seq) :] = torch.as_tensor(seq)
            mask[row, width - len(seq) :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1, :]
        scores = logits[:, vocab_t].float()
        order = scores.argsort(dim=1, descending=True)
        out.extend(_distinct(order[row].tolist(), vocab_words, k) for row in range(len(chunk)))
    return out


def _distinct(order: list[int], vocab_words: list[str], k: int) -> list[str]:
    seen: list[str] = []
    for j in order:
        word = vocab_words[j]
        if word not in seen:
            seen.append(word)
            if len(seen) == k:
                break
    return seen


@torch.no_grad()
def _masked_top_words(lm, texts, template, k, max_length, batch_size, min_word_length) -> list[list[str]]:
    tok = lm.tokenizer
    if tok.mask_token is None:
        raise ConfigError(f"prompt.model '{lm.name}': its tokenizer has no mask token")
    vocab_ids, vocab_words = word_vocabulary(tok, min_word_length)
    if len(vocab_ids) == 0:
        raise ConfigError(f"prompt.model '{lm.name}': its vocabulary has no whole-word tokens to propose")
    frame = len(tok(template.replace("{text}", "").replace(MASK, tok.mask_token))["input_ids"])
    room = max(1, max_length - frame)
    prompts = []
    for text in texts:  # truncate the input, never the template
        ids = tok(text.strip(), add_special_tokens=False)["input_ids"][:room]
        prompts.append(template.replace("{text}", tok.decode(ids)).replace(MASK, tok.mask_token))
    vocab_t = torch.as_tensor(vocab_ids)
    lm.model.eval()
    out: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        enc = tok(prompts[start : start + batch_size], padding=True, return_tensors="pt")
        logits = lm.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        rows, cols = (enc["input_ids"] == tok.mask_token_id).nonzero(as_tuple=True)
        first = {}
        for r, c in zip(rows.tolist(), cols.tolist()):
            first.setdefault(r, c)
        for r in range(enc["input_ids"].shape[0]):
            scores = logits[r, first[r], vocab_t].float()
            out.append(_distinct(scores.argsort(descending=True).tolist(), vocab_words, k))
    return out


def load_prompting_model(name: str) -> LoadedModel:
    """A prompting model by alias, folder or hub id: a decoder as prefalign loads it, or an encoder with the
    masked-LM head its checkpoint ships (refused, in one line, when the checkpoint has none)."""
    lm = load_backbone(name)
    if lm.geometry.is_decoder:
        return lm
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(lm.path, use_safetensors=True, output_loading_info=True)
    except Exception as exc:
        raise ConfigError(
            f"prompt.model '{name}': cannot load a masked-LM head ({str(exc).splitlines()[0][:160]})"
        ) from None
    if info.get("missing_keys"):
        raise ConfigError(
            f"prompt.model '{name}' is an encoder whose checkpoint has no masked-LM head (missing "
            f"{sorted(info['missing_keys'])[0]}, ...); use a decoder such as smollm2-135m"
        )
    model.eval()
    return LoadedModel(model=model, tokenizer=lm.tokenizer, geometry=lm.geometry, name=lm.name, path=lm.path)


@torch.no_grad()
def embed(lm: LoadedModel, texts: Sequence[str], *, max_length: int = 128, batch_size: int = 32) -> np.ndarray:
    """Mean-pooled last hidden states (sentence-transformers' pooling for MiniLM), float32 (texts x hidden)."""
    tok = lm.tokenizer
    model = lm.model
    model.eval()
    chunks = []
    for start in range(0, len(texts), batch_size):
        enc = tok(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
        hidden = out.hidden_states[-1]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        chunks.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
    if not chunks:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)


def cache_key(kind: str, model: str, settings: dict, texts: Sequence[str]) -> str:
    """A file name stem that changes with the model, the settings and every text."""
    h = hashlib.sha256(json.dumps([kind, model, settings], sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return f"{kind}-{h.hexdigest()[:24]}"


class EncodingCache:
    """Embeddings (.npy, read without pickle) and top-k word lists (.json) in a folder, keyed by content."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def embeddings(self, key: str, compute) -> np.ndarray:
        path = self.folder / f"{key}.npy"
        if path.is_file():
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"cached embeddings {path} are unreadable ({exc}); delete the file") from None
        value = np.asarray(compute(), dtype=np.float32)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, value, allow_pickle=False)
        tmp.replace(path)
        return value

    def words(self, key: str, texts: Sequence[str], compute) -> list[list[str]]:
        """Top-k words per text, cached per text (``key`` names the model and settings), so overlapping text
        lists (another seed's clean set) pay only for the texts not seen before."""
        path = self.folder / f"{key}.json"
        known: dict = json.loads(path.read_text()) if path.is_file() else {}
        ids = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:20] for t in texts]
        missing = [i for i, h in enumerate(ids) if h not in known]
        if missing:
            fresh = compute([texts[i] for i in missing])
            for i, words in zip(missing, fresh):
                known[ids[i]] = words
            write_text_atomically(path, json.dumps(known))
        return [known[h] for h in ids]
