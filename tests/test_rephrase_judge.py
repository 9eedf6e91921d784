"""Rephrasers (offline rules; the chat path against a local stub server) and the gpt-score judges."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prefalign.data.examples import Example, TaskDataset
from prefalign.errors import ConfigError, DataError, UserError
from prefalign.evaluation.judge import OFFLINE_JUDGE, ChatJudge, OfflineJudge, gpt_score, parse_score, token_f1
from prefalign.shifts.registry import apply_shift
from prefalign.shifts.rephrase import (
    ALPACA_PROMPT,
    BOOLQ_PROMPT,
    RECORD_PROMPT,
    STYLES,
    ChatRephraser,
    RuleBasedRephraser,
    build_prompt,
    make_rephraser,
    parse_numbered,
    yes_no,
)
from prefalign.utils.endpoints import ChatEndpoint, EndpointError


class Stub:
    """A local OpenAI-compatible chat server: answers from a queue of (status, body) and records requests."""

    def __init__(self):
        self.replies: list[tuple[int, object]] = []
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                stub.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                status, body = stub.replies.pop(0) if stub.replies else (500, {"error": "no reply queued"})
                if isinstance(body, str):
                    body = {"choices": [{"message": {"role": "assistant", "content": body}}]}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def endpoint(self, **kw) -> ChatEndpoint:
        return ChatEndpoint(self.base, "stub-model", api_key="sk-test", backoff=0.0, **kw)


@pytest.fixture
def stub():
    s = Stub()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


BOOLQ_REPLY = '1) Casual: "Yeah, totally."\n2) Formal: "Indeed, it is."\n3) Expressive: "Oh, absolutely yes!"'


# -- the paper's prompts and the reply parser -------------------------------------------------------------
def test_prompts_are_the_papers_and_end_with_the_item():
    assert BOOLQ_PROMPT.startswith(
        "You are given a question and a yes/no answer. Please rewrite the answer in "
        "three different styles: 1) Casual, 2) Formal, 3) Expressive."
    )
    assert '3) Expressive: "Absolutely, without a doubt!"' in BOOLQ_PROMPT
    assert "Try to express the same information using different words and sentence structures." in RECORD_PROMPT
    assert "1) Terse, 2) Elaborate, and 3) Conversational" in ALPACA_PROMPT
    prompt = build_prompt("boolq", "is the sea salty", "Yes.")
    assert prompt.endswith('Question: "is the sea salty"\nAnswer: "Yes."\nRephrased Answers:')
    assert build_prompt("alpaca", "Say hi.", "Hi.").endswith("Rephrased Responses:")


@pytest.mark.parametrize(
    "reply",
    [
        BOOLQ_REPLY,
        '**1) Casual:** "Yeah, totally."\n**2) Formal:** "Indeed, it is."\n**3) Expressive:** "Oh, absolutely yes!"',
        "Sure, here they are:\n\n1. Casual: Yeah, totally.\n2. Formal: Indeed, it is.\n"
        "3. Expressive: Oh, absolutely yes!",
        'Casual: "Yeah, totally."\nFormal: "Indeed, it is."\nExpressive: "Oh, absolutely yes!"',
    ],
)
def test_parse_numbered_variants(reply):
    assert parse_numbered(reply, 3, ("Casual", "Formal", "Expressive")) == [
        "Yeah, totally.",
        "Indeed, it is.",
        "Oh, absolutely yes!",
    ]


def test_parse_numbered_keeps_inner_lists_of_long_answers():
    reply = (
        "1) Terse: Steps: mix, cook.\n2) Elaborate: Follow these steps:\n1. Mix the batter.\n2. Cook it.\n"
        '3. Serve.\n3) Conversational: "So you mix it, then cook it!"'
    )
    items = parse_numbered(reply, 3, ("Terse", "Elaborate", "Conversational"))
    assert items[0] == "Steps: mix, cook."
    assert items[1] == "Follow these steps:\n1. Mix the batter.\n2. Cook it.\n3. Serve."
    assert items[2] == "So you mix it, then cook it!"
    assert parse_numbered('1) "A one."\n2) "A two."\n3) "A three."') == ["A one.", "A two.", "A three."]


def test_parse_numbered_fails_with_a_one_line_error():
    with pytest.raises(DataError, match="could not find 3 numbered rephrasings") as err:
        parse_numbered("1) only one\nand nothing else")
    assert "\n" not in str(err.value)


# -- the offline rephraser -----------------------------------------------------------------------------------
def test_rule_based_rephraser_is_deterministic_and_keeps_meaning():
    r = RuleBasedRephraser(seed=0)
    for answer, is_yes in (("Yes.", True), ("No.", False)):
        out = r.rephrase("boolq", "is the sea salty", answer)
        assert list(out) == list(STYLES["boolq"])
        assert all(yes_no(text) is is_yes for text in out.values())
        assert out == RuleBasedRephraser(seed=0).rephrase("boolq", "is the sea salty", answer)
    rec = r.rephrase("record", "passage", "Henri Becquerel")
    assert len(set(rec.values())) == 3 and all("Henri Becquerel" in v for v in rec.values())
    alp = r.rephrase("alpaca", "Describe tea.", "Sure! Tea is really a very popular drink. It is made from leaves.")
    assert alp["terse"] == "Tea is a popular drink. It is made from leaves."
    assert "Describe tea." in alp["elaborate"] and "Tea is really a very popular drink." in alp["elaborate"]
    assert "It's made from leaves." in alp["conversational"]
    seeds = {tuple(RuleBasedRephraser(seed=s).rephrase("record", f"p{s}", "X").values()) for s in range(6)}
    assert len(seeds) > 1


def test_rule_based_rephraser_refuses_non_yes_no_and_unknown_tasks():
    with pytest.raises(DataError, match="yes or no"):
        RuleBasedRephraser().rephrase("boolq", "q", "perhaps")
    with pytest.raises(ConfigError, match="no rephrasing styles"):
        RuleBasedRephraser().rephrase("sst2", "q", "a")


def test_make_rephraser_without_endpoint_env(monkeypatch):
    for var in ("PREFALIGN_API_BASE", "PREFALIGN_API_MODEL", "PREFALIGN_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert isinstance(make_rephraser("rule", 3), RuleBasedRephraser)
    with pytest.raises(ConfigError, match="PREFALIGN_API_BASE"):
        make_rephraser("chat")


# -- the chat path against the stub ---------------------------------------------------------------------------
def test_chat_rephraser_against_stub(stub):
    stub.replies.append((200, BOOLQ_REPLY))
    r = ChatRephraser(stub.endpoint())
    assert r.rephrase("boolq", "is the sea salty", "Yes.") == {
        "casual": "Yeah, totally.",
        "formal": "Indeed, it is.",
        "expressive": "Oh, absolutely yes!",
    }
    assert r.rephrase("boolq", "is the sea salty", "Yes.")["formal"] == "Indeed, it is."  # cached
    (req,) = stub.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "stub-model" and req["body"]["temperature"] == 0.0
    assert req["body"]["messages"][0]["content"].startswith(BOOLQ_PROMPT)
    assert "stub-model" in r.name and "sk-test" not in r.name


def test_chat_rephraser_from_env_drives_a_shift(stub, monkeypatch):
    monkeypatch.setenv("PREFALIGN_API_BASE", stub.base.removesuffix("/v1"))  # bare host: /v1 is added
    monkeypatch.setenv("PREFALIGN_API_MODEL", "stub-model")
    monkeypatch.delenv("PREFALIGN_API_KEY", raising=False)
    stub.replies += [(200, BOOLQ_REPLY), (200, '1) "Nah."\n2) "It is not."\n3) "No way!"')]
    data = TaskDataset(
        [Example(text="p", text_pair="q1", label=1), Example(text="p", text_pair="q2", label=0)],
        ["no", "yes"],
        name="b",
    )
    shifted, card = apply_shift("boolq-ps", data, {"rephraser": "chat", "styles": ["formal"]})
    assert [ex.answer for ex in shifted] == ["Indeed, it is.", "It is not."]
    assert card["parameters"]["rephraser"].startswith("chat (stub-model")
    assert all(req["auth"] is None for req in stub.requests)


def test_endpoint_retries_server_errors(stub):
    stub.replies += [(503, {"error": "busy"}), (200, "Score: 7")]
    assert stub.endpoint(retries=1).chat([{"role": "user", "content": "x"}]) == "Score: 7"
    assert len(stub.requests) == 2


@pytest.mark.parametrize(
    "reply, match",
    [
        ((401, {"error": {"message": "bad key"}}), "refused the request: HTTP 401"),
        ((200, {"unexpected": True}), "not a chat completion"),
        ((500, {"error": "down"}), "failed after 2 attempts"),
    ],
)
def test_endpoint_errors_are_one_line_user_errors(stub, reply, match):
    stub.replies += [reply, reply]
    with pytest.raises(EndpointError, match=match) as err:
        stub.endpoint(retries=1).chat([{"role": "user", "content": "x"}])
    assert isinstance(err.value, UserError) and "\n" not in str(err.value) and "sk-test" not in str(err.value)


def test_unreachable_endpoint_and_bad_config():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(EndpointError, match="failed after 1 attempts"):
        ChatEndpoint(f"http://127.0.0.1:{port}", "m", retries=0, timeout=2).chat([])
    with pytest.raises(ConfigError, match="http"):
        ChatEndpoint("ftp://x", "m")
    assert ChatEndpoint("https://api.example.com/v1/", "m").url == "https://api.example.com/v1/chat/completions"
    assert ChatEndpoint("http://h:1/chat/completions", "m").url == "http://h:1/chat/completions"


# -- judges -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply, score",
    [
        ("Score: 8\nGood.", 8.0),
        ("**Score:** 9/10", 9.0),
        ("I'd say 6 out of 10.", 6.0),
        ("7", 7.0),
        ("Score: 7.5", 7.5),
    ],
)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply, match", [("Score: 11", "outside the 1-10"), ("no idea", "no 1-10 score")])
def test_parse_score_errors(reply, match):
    with pytest.raises(DataError, match=match):
        parse_score(reply)


def test_chat_judge_against_stub(stub):
    stub.replies += [(200, "Score: 8\nCoherent and complete."), (200, "Score: 4")]
    result = gpt_score(["Say hi.", "Add 2+2."], ["Hi!", "4"], ["Hello!", "5"], ChatJudge(stub.endpoint()))
    assert result == {"mean": 6.0, "n": 2, "judge": "chat judge (stub-model @ " + stub.base.split("/")[2] + ")"}
    prompt = stub.requests[0]["body"]["messages"][0]["content"]
    assert all(word in prompt for word in ("coherence", "completeness", "adherence", "1 to 10", "Say hi.", "Hello!"))


def test_offline_judge_is_labelled_a_stand_in():
    judge = OfflineJudge()
    assert judge.name == OFFLINE_JUDGE == "offline stand-in (token-overlap), not GPT-4o"
    assert judge.score("i", "The cat sat.", "the cat sat") == 10.0
    assert judge.score("i", "The cat sat.", "dogs run") == 1.0
    assert token_f1("a cat sat down", "the cat sat") == pytest.approx(0.8)
    result = gpt_score(["i", "j"], ["The cat sat.", "x y"], ["the cat sat", "z"])
    assert result == {"mean": 5.5, "n": 2, "judge": OFFLINE_JUDGE}


def test_gpt_score_checks_its_inputs():
    with pytest.raises(DataError, match="as many"):
        gpt_score(["a"], ["b", "c"], ["d"])
    with pytest.raises(DataError, match="no items"):
        gpt_score([], [], [])
