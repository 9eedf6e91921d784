"""Generation with a method's prefixes in the cache, and scoring generation tasks by generating."""

from .generate import encode_prompts, generate, generate_batch, generate_from_ids, language_model
from .scoring import evaluate_generation, gold_polarity

__all__ = [
    "encode_prompts",
    "evaluate_generation",
    "generate",
    "generate_batch",
    "generate_from_ids",
    "gold_polarity",
    "language_model",
]
