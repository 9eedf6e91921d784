"""`prefalign report`: the page built from a tiny run (trained on a shifted dataset with its card, with
probe outputs below it) is self-contained and holds every part, checked on its HTML structure."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

from conftest import toy_sentiment
from helpers_cli import assert_one_error, run_main
from helpers_probes import tiny_llama_dir, toy_csv, train_tiny
from prefalign.analysis.report import build_report
from prefalign.shifts.cards import write_card, write_dataset_jsonl
from prefalign.shifts.registry import apply_shift


class Page(HTMLParser):
    """Tags, attributes and text of a page, enough to check its structure."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.section_text: dict[str, list[str]] = {}
        self.current: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self.current = attrs.get("id")

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        self.text.append(data)
        if self.current:
            self.section_text.setdefault(self.current, []).append(data)

    def all(self, tag):
        return [a for t, a in self.tags if t == tag]

    def section(self, sid) -> str:
        return " ".join(self.section_text.get(sid, []))


@pytest.fixture(scope="module")
def run_dir(vocab_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    model = tiny_llama_dir(vocab_file, root)
    shifted, card = apply_shift("sst2-p", toy_sentiment(48), {}, seed=0)
    data_dir = root / "data" / "toy-p"
    write_dataset_jsonl(data_dir / "train.jsonl", shifted)
    write_card(data_dir, {**card, "task": "toy", "split": "train"}, filename="train.card")
    run = train_tiny(
        model,
        data_dir / "train.jsonl",
        root / "run",
        "dcpc",
        6,
        "method.use_pcm=true",
        "method.tau_cos=0.0",
        "data.label_names=[negative, positive]",
    )
    rc, _, err = run_main(
        [
            "probe",
            "drift",
            "--adapter",
            str(run / "adapter"),
            "--data",
            str(toy_csv(root / "test.csv", 24)),
            "--num-pairs",
            "3",
            "-o",
            str(run / "probes" / "drift"),
        ]
    )
    assert rc == 0, err
    return run


def test_report_is_self_contained_and_complete(run_dir, tmp_path):
    rc, out, err = run_main(["report", str(run_dir), "-o", str(tmp_path / "r.html")])
    assert rc == 0, err
    assert "self-contained" in out
    html = (tmp_path / "r.html").read_text()
    page = Page(html)
    assert [a["id"] for a in page.all("section")] == ["run", "metrics", "training", "probes", "cards"]
    # nothing is fetched: no scripts, stylesheets or remote images; every image is an embedded PNG
    assert not page.all("script") and not page.all("link")
    images = page.all("img")
    assert len(images) >= 2  # the training curves and the drift figure
    for img in images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html
    # every part
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert "validation_accuracy" in page.section("metrics")
    assert f"{metrics['validation_accuracy']:.4f}" in page.section("metrics")
    training = page.section("training")
    for series in (
        "loss_task",
        "loss_ambiguity",
        "loss_align",
        "loss_kl",
        "gate_cos_rate",
        "gate_ambiguity_rate",
        "eval_accuracy",
    ):
        assert series in training, series
    probes = page.section("probes")
    assert "drift.png" in probes and "cosine_similarity" in probes and "preference drift over 3 pairs" in probes
    cards = page.section("cards")
    assert "train.card.json" in cards and "sst2-p" in cards
    assert "dcpc" in page.section("run")


def test_report_default_path_and_empty_dir_error(run_dir, tmp_path):
    path = build_report(run_dir)
    assert path == run_dir / "report.html" and path.stat().st_size > 10_000
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run_main(["report", str(empty)])
    assert_one_error(rc, err, "no run outputs")
    rc, _, err = run_main(["report", str(tmp_path / "missing")])
    assert_one_error(rc, err, "not found")
