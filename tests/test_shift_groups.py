"""benchmarks/shift_groups.py: the test groups it scores are the ones the annotator-group shift relabels."""

from __future__ import annotations

from conftest import load_benchmark
from prefalign.data.examples import Example, TaskDataset
from prefalign.shifts.annotator_group import annotator_group_shift


def test_the_subset_other_group_is_exactly_what_the_shift_can_relabel():
    bench = load_benchmark("shift_groups")
    texts = ["good", "a fine short film", "bad", "dull and slow", " ".join(["long"] * 13), " ".join(["word"] * 14)]
    data = TaskDataset([Example(text=t, label=i % 2) for i, t in enumerate(texts)], ["negative", "positive"], "toy")
    shift = {"subset": "short", "max_words": 12, "toward": 0, "toward_index": 0}
    got = bench.groups(data.examples, shift)
    # short items are 0-3 (labels 0 1 0 1); the two long ones are 4 (label 0) and 5 (label 1)
    assert got == {"subset, toward": [0, 2], "subset, other": [1, 3], "rest, toward": [4], "rest, other": [5]}
    shifted, card = annotator_group_shift(data, rate=1.0)
    flipped = [i for i, ex in enumerate(shifted.examples) if ex.meta.get("shifted")]
    assert flipped == got["subset, other"] and card["hard_label_flips"] == 2


def test_prefix_attention_is_the_prefix_keys_share_and_the_backbone_gets_its_attention_back(vocab_file):
    import torch

    from conftest import build_tiny
    from helpers_models import sentiment_setup
    from prefalign.methods import registry

    bench = load_benchmark("shift_groups")
    torch.manual_seed(0)
    lm = build_tiny("llama", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=6)
    model = registry.build_method(registry.method_config("ptuning-v2", {"prefix_length": 4}), lm, spec).eval()
    before = lm.model.config._attn_implementation
    with torch.no_grad():
        scores = model(**collator(ds.examples)).logits
    shares = bench.prefix_attention(model, collator, ds.examples, batch_size=4)
    assert len(shares) == 6 and all(len(row) == lm.model.config.num_hidden_layers for row in shares)
    assert all(0.0 < x < 1.0 for row in shares for x in row)
    assert lm.model.config._attn_implementation == before
    with torch.no_grad():
        torch.testing.assert_close(model(**collator(ds.examples)).logits, scores)
    # The prefix's share at one layer, by hand from the eager attention weights of that layer.
    lm.model.set_attn_implementation("eager")
    caught = []
    layer = next(m for n, m in lm.model.named_modules() if n.endswith("layers.0.self_attn"))
    hook = layer.register_forward_hook(lambda _m, _i, out: caught.append(out[1]))
    batch = collator(ds.examples[:1])
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    hook.remove()
    lm.model.set_attn_implementation(before)
    last = int(batch["attention_mask"].sum()) - 1
    assert abs(float(caught[0][0, :, last, :4].sum(-1).mean()) - shares[0][0]) < 1e-5


def test_padding_lengthens_the_text_and_keeps_the_label_and_the_rest():
    bench = load_benchmark("shift_groups")
    items = [Example(text="good", label=1, meta={"shifted": True}), Example(text="dull film", label=0)]
    after = bench.padded(items, "it opened in spring .", "appended")
    before = bench.padded(items, "it opened in spring .", "prepended")
    assert [ex.text for ex in after] == ["good it opened in spring .", "dull film it opened in spring ."]
    assert [ex.text for ex in before] == ["it opened in spring . good", "it opened in spring . dull film"]
    assert [ex.label for ex in after + before] == [1, 0, 1, 0] and after[0].meta == {"shifted": True}
    assert items[0].text == "good"
