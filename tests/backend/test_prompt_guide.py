"""Prompt guidance: one test per warning, clean prompts stay clean, durations follow the actions, the rewriter is
optional and never raises."""

from __future__ import annotations

import socket
import time

import pytest
from backend_helpers import TRICKLE_BYTES, StubPrompter

from hymotion.shared import prompt_guide
from hymotion.shared.jobs import MAX_DURATION, MIN_DURATION
from hymotion.shared.prompt_guide import analyse, explain_duration, rewrite_prompt, suggest_duration

OFFICIAL_EXAMPLES = [
    "A person performs a squat, then pushes a barbell overhead using the power from standing up.",
    "A person climbs upward, moving up the slope.",
    "A person stands up from the chair, then stretches their arms.",
    "A person walks unsteadily, then slowly sits down.",
]


@pytest.mark.parametrize(
    "prompt",
    OFFICIAL_EXAMPLES
    + [
        "a person waves",
        "a person raises the left hand, then the other",
        "a person walks like a penguin",
        "a person does a bear crawl, then stands up",
        "a person jogs forward and jumps over a hurdle",
    ],
)
def test_good_prompts_get_no_warnings_and_no_hints(prompt: str) -> None:
    advice = analyse(prompt)
    assert advice.codes == []
    assert advice.word_count == len(prompt.split())


@pytest.mark.parametrize(
    ("prompt", "code"),
    [
        ("two people hug each other", prompt_guide.MULTI_PERSON),
        ("a man and a woman dance together", prompt_guide.MULTI_PERSON),
        ("a person shakes hands with a friend", prompt_guide.MULTI_PERSON),
        ("a boxer punches his opponent", prompt_guide.MULTI_PERSON),
        ("a dog runs and jumps", prompt_guide.NON_HUMANOID),
        ("a person rides a horse", prompt_guide.NON_HUMANOID),
        ("a bird flaps its wings", prompt_guide.NON_HUMANOID),
        ("close-up shot of a person jumping", prompt_guide.CAMERA),
        ("the camera pans left as a person runs", prompt_guide.CAMERA),
        ("a person dances in a dark forest", prompt_guide.SCENE),
        ("a person walks at night in the rain", prompt_guide.SCENE),
        ("a tall man wearing a red jacket", prompt_guide.APPEARANCE),
        ("a person in a suit walks forward", prompt_guide.APPEARANCE),
        ("a woman feels very sad", prompt_guide.EMOTION_ONLY),
        ("a person smiles and winks", prompt_guide.FACE_OR_FINGERS),
        ("a person snaps their fingers", prompt_guide.FACE_OR_FINGERS),
        ("a seamless walk cycle", prompt_guide.LOOP),
        ("a person runs in a loop forever", prompt_guide.LOOP),
        ("a person runs in place", prompt_guide.IN_PLACE),
        ("a person walks on a treadmill", prompt_guide.IN_PLACE),
        ("una persona camina hacia adelante y luego salta con los brazos", prompt_guide.NON_ENGLISH),
        ("ein Mann läuft und springt über die Straße", prompt_guide.NON_ENGLISH),
        ("一个人向前走然后挥手", prompt_guide.NON_ENGLISH),
        ("человек идёт вперёд", prompt_guide.NON_ENGLISH),
    ],
)
def test_unsupported_content_is_warned_with_a_suggestion(prompt: str, code: str) -> None:
    advice = analyse(prompt)
    matching = [note for note in advice.warnings if note.code == code]
    assert matching, f"{code} not raised for {prompt!r}: {advice.codes}"
    assert matching[0].message and matching[0].suggestion


def test_in_place_warning_points_at_the_add_on_option() -> None:
    (note,) = [n for n in analyse("a person walks in place").warnings if n.code == prompt_guide.IN_PLACE]
    assert "In Place" in note.suggestion


def test_prompt_over_60_words_is_warned_and_over_the_token_limit_says_it_is_cut() -> None:
    words = ("a person walks forward, then turns left and waves " * 20).split()
    medium = " ".join(words[:65])
    long = " ".join(words[:100])
    assert analyse(" ".join(words[:60])).codes == []
    (medium_note,) = [n for n in analyse(medium).warnings if n.code == prompt_guide.TOO_LONG]
    (long_note,) = [n for n in analyse(long).warnings if n.code == prompt_guide.TOO_LONG]
    assert "65 words" in medium_note.message and "cut" not in medium_note.message
    assert "cut" in long_note.message and str(prompt_guide.MAX_TEXT_TOKENS) in long_note.message


def test_no_concrete_action_gives_a_hint_not_a_warning() -> None:
    advice = analyse("a person with a lot of energy")
    assert [note.code for note in advice.hints] == [prompt_guide.NO_ACTION]
    assert advice.warnings == []


def test_appearance_with_an_action_says_it_is_ignored_and_without_says_nothing_moves() -> None:
    with_action = analyse("a man wearing a hat jumps").warnings[0]
    without = analyse("a man wearing a hat").warnings[0]
    assert "ignored" in with_action.message
    assert "nothing to animate" in without.message


def test_empty_prompt_has_zero_words_and_no_advice() -> None:
    advice = analyse("   ")
    assert advice.word_count == 0 and advice.codes == []


def _prompt_with_actions(count: int) -> str:
    verbs = ["walks forward", "jumps", "turns left", "sits down", "stands up", "waves", "kicks", "spins", "bows"]
    return "a person " + ", then ".join(verbs[:count])


def test_duration_grows_with_the_number_of_actions_and_is_clamped() -> None:
    durations = [suggest_duration(_prompt_with_actions(count)) for count in range(1, 10)]
    assert durations == sorted(durations)
    assert durations[0] < durations[2] < durations[4]
    assert all(MIN_DURATION <= seconds <= MAX_DURATION for seconds in durations)
    assert durations[-1] == MAX_DURATION
    assert "capped" in explain_duration(_prompt_with_actions(9)).explanation


def test_duration_counts_repeats_and_ignores_simultaneous_actions() -> None:
    once = explain_duration("a person jumps")
    twice = explain_duration("a person jumps twice")
    with_while = explain_duration("a person walks forward while waving")
    assert once.action_count == 1 and twice.action_count == 2
    assert twice.seconds > once.seconds
    assert with_while.action_count == 1
    assert suggest_duration("a person slowly sits down") > suggest_duration("a person sits down")
    assert "2 actions" in explain_duration("a person walks, then sits down").explanation


def test_duration_without_actions_is_one_short_action() -> None:
    suggestion = explain_duration("a person")
    assert suggestion.action_count == 0
    assert suggestion.seconds == suggest_duration("a person waves")
    assert "No action" in suggestion.explanation


def test_analyse_includes_the_duration_suggestion() -> None:
    assert analyse("a person walks, then jumps").duration == explain_duration("a person walks, then jumps")


@pytest.fixture(autouse=True)
def _no_prompter_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (prompt_guide.PROMPTER_URL_ENV, prompt_guide.PROMPTER_MODEL_ENV, prompt_guide.PROMPTER_KEY_ENV,
                 *prompt_guide.OFFLINE_ENVS):
        monkeypatch.delenv(name, raising=False)


def test_rewriter_returns_the_caption_and_duration_from_the_endpoint(prompter: StubPrompter) -> None:
    prompter.content = '<think>x</think>```json\n{"duration": 150, "short_caption": "A person walks, then waves."}\n```'
    result, reason = rewrite_prompt("persona camina y saluda", base_url=prompter.url, model="prompter", api_key="k")
    assert reason == ""
    assert result is not None
    assert result.prompt == "A person walks, then waves."
    assert result.duration == 5.0
    path, headers, body = prompter.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer k"
    assert body["model"] == "prompter"
    assert "persona camina y saluda" in body["messages"][0]["content"]


def test_rewriter_reads_its_configuration_from_the_environment(
    prompter: StubPrompter, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompter.content = '{"duration": 9000, "short_caption": "A person runs."}'
    monkeypatch.setenv(prompt_guide.PROMPTER_URL_ENV, prompter.url + "/chat/completions")
    monkeypatch.setenv(prompt_guide.PROMPTER_MODEL_ENV, "served-name")
    assert prompt_guide.prompter_configured()
    result, reason = rewrite_prompt("a person runs")
    assert result is not None and reason == ""
    assert result.duration == MAX_DURATION
    assert prompter.requests[0][0] == "/v1/chat/completions"


def test_rewriter_unset_returns_none_with_the_settings_to_use() -> None:
    assert not prompt_guide.prompter_configured()
    result, reason = rewrite_prompt("a person waves")
    assert result is None
    assert prompt_guide.PROMPTER_URL_ENV in reason and prompt_guide.PROMPTER_MODEL_ENV in reason


def test_rewriter_unreachable_endpoint_falls_back() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result, reason = rewrite_prompt("a person waves", base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2)
    assert result is None and "unreachable" in reason


def test_rewriter_timeout_falls_back(prompter: StubPrompter) -> None:
    prompter.hang.set()
    result, reason = rewrite_prompt("a person waves", base_url=prompter.url, model="m", timeout=0.3)
    assert result is None and "unreachable" in reason


@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (500, "", "HTTP 500"),
        (200, "I think it takes five seconds.", "JSON object"),
        (200, '{"duration": 90}', "short_caption"),
        (200, '{"duration": "soon", "short_caption": "A person waves."}', "duration"),
    ],
)
def test_rewriter_bad_answers_fall_back_with_a_reason(
    prompter: StubPrompter, status: int, content: str, expected: str
) -> None:
    prompter.status, prompter.content = status, content
    result, reason = rewrite_prompt("a person waves", base_url=prompter.url, model="m")
    assert result is None and expected in reason


def test_endpoint_is_local_only_for_loopback() -> None:
    assert prompt_guide.endpoint_is_local("http://127.0.0.1:8000/v1")
    assert prompt_guide.endpoint_is_local("http://localhost:8000/v1")
    assert prompt_guide.endpoint_is_local("http://[::1]:8000/v1")
    assert not prompt_guide.endpoint_is_local("https://example.org/v1")


def test_rewriter_asks_only_http_endpoints() -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/v1", "127.0.0.1:8000/v1"):
        result, reason = rewrite_prompt("a person waves", base_url=url, model="m")
        assert result is None and "http://" in reason, url


def test_rewriter_follows_no_redirect_so_the_key_never_reaches_another_host(prompter: StubPrompter) -> None:
    other_host = StubPrompter()
    try:
        other_host.content = '{"duration": 90, "short_caption": "A person waves."}'
        prompter.redirect_to = other_host.url.replace("127.0.0.1", "localhost") + "/chat/completions"
        result, reason = rewrite_prompt("a person waves", base_url=prompter.url, model="m", api_key="secret-key")
        assert result is None and "302" in reason and "redirect" in reason
        assert other_host.requests == [], "the redirect target was never asked, so it never saw the key"
    finally:
        other_host.close()


def test_rewriter_gives_up_at_its_deadline_even_when_bytes_keep_trickling(prompter: StubPrompter) -> None:
    """The answer trickles for TRICKLE_BYTES x TRICKLE_GAP_S = 6 s; the deadline of 1 s holds for the whole exchange
    (3 s allows for a loaded machine; the old per-read timeout waited for all 6 s)."""
    prompter.content = '{"duration": 90, "short_caption": "A person waves."}'
    prompter.trickle_bytes = TRICKLE_BYTES
    started = time.monotonic()
    result, reason = rewrite_prompt("a person waves", base_url=prompter.url, model="m", timeout=1.0)
    assert time.monotonic() - started < 3.0
    assert result is None and "within 1 s" in reason


def test_rewriter_refuses_an_answer_over_the_size_cap(prompter: StubPrompter) -> None:
    prompter.content = '{"duration": 90, "short_caption": "A person waves."}'
    prompter.padding = 2 * prompt_guide.MAX_REPLY_BYTES
    result, reason = rewrite_prompt("a person waves", base_url=prompter.url, model="m")
    assert result is None and f"more than {prompt_guide.MAX_REPLY_BYTES} bytes" in reason


def test_rewriter_offline_asks_no_remote_endpoint_but_still_a_local_one(
    prompter: StubPrompter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result, reason = rewrite_prompt("a person waves", base_url="http://192.0.2.1/v1", model="m")
    assert result is None and reason.startswith("offline")
    result, reason = rewrite_prompt("a person waves", base_url="https://192.0.2.1/v1", model="m", online=False)
    assert result is None and reason.startswith("offline")
    prompter.content = '{"duration": 90, "short_caption": "A person waves."}'
    result, reason = rewrite_prompt("a person waves", base_url=prompter.url, model="m")
    assert result is not None and reason == ""
