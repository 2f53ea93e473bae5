"""Jobs through the add-on client and a real backend process running the tiny random model on the CPU."""

from __future__ import annotations

import pytest
from service_helpers import EVENT_TIMEOUT_S, LONG_JOB_STEPS, AnyEvent, check_result_arrays

from hymotion.shared.errors import HyMotionError
from hymotion.shared.protocol import PROTOCOL_VERSION, is_terminal


def collect(client, jobs: list[str]) -> list[AnyEvent]:
    """Every event, in arrival order, until each of ``jobs`` has ended."""
    events: list[AnyEvent] = []
    open_jobs = set(jobs)
    while open_jobs:
        arrived = client.wait_events(timeout=EVENT_TIMEOUT_S)
        assert arrived, f"no event within {EVENT_TIMEOUT_S} s; jobs still open: {open_jobs}"
        events += arrived
        open_jobs -= {job for job in jobs if any(is_terminal(event, job) for event in arrived)}
    return events


def test_hello_describes_the_backend_before_any_model_loads(client) -> None:
    hello = client.hello
    assert hello.protocol == PROTOCOL_VERSION and hello.pid == client.pid
    assert hello.model == "tiny-random" and hello.plan == "auto"
    assert {model.name for model in hello.models} == {"lite", "standard"}
    for model in hello.models:
        assert model.available or model.download_command.startswith(f"hymotion download --variant {model.name}")


def test_generate_streams_progress_then_each_result_as_it_is_ready_then_done(client) -> None:
    prompts = ["a person walks forward", "a person jumps"]
    job = client.submit_generate(prompts, durations=[1.0, 1.5], seeds=[3, 4, 5], steps=3)
    events = list(client.iter_events(job, timeout=EVENT_TIMEOUT_S))
    kinds = [event.TYPE for event in events]
    assert kinds[0] == "queued" and kinds[-1] == "done"
    assert "progress" in kinds[: kinds.index("result")]

    sampling = [event for event in events if event.TYPE == "progress" and event.stage == "sampling"]
    total = sampling[-1].total
    assert [event.step for event in sampling] == list(range(1, total + 1)), "one progress event per sampling step"
    assert total >= 2 * 3, "six clips should sample in at least two batches on the CPU plan"
    last_sampling = max(i for i, event in enumerate(events) if event in sampling)
    assert kinds.index("result") < last_sampling, "the first batch's clips must arrive before the job ends"

    results = [event for event in events if event.TYPE == "result"]
    assert events[-1].results == len(results) == 6
    assert [result.index for result in results] == list(range(6))
    assert sorted((r.prompt_index, r.seed) for r in results) == [(p, s) for p in (0, 1) for s in (3, 4, 5)]
    for result in results:
        assert result.prompt == prompts[result.prompt_index]
        assert result.frames == (30, 45)[result.prompt_index] and result.fps == 30
        assert result.model == "tiny-random" and result.plan == "cpu"
        check_result_arrays(result)


def test_queued_jobs_run_one_after_the_other(client) -> None:
    first = client.submit_generate(["a person waves"], durations=[1.0], steps=3)
    second = client.submit_generate(["a person sits down"], durations=[1.0], steps=3)
    events = collect(client, [first, second])
    queued = {event.job: event.position for event in events if event.TYPE == "queued"}
    assert queued[second] == 1
    first_done = next(i for i, event in enumerate(events) if is_terminal(event, first))
    second_work = [i for i, event in enumerate(events) if event.job == second and event.TYPE != "queued"]
    assert events[first_done].TYPE == "done" and events[-1].TYPE == "done"
    assert min(second_work) > first_done


def test_cancel_stops_the_running_job_drops_a_queued_one_and_the_next_job_runs(client) -> None:
    running = client.submit_generate(["a person dances"], durations=[1.0], steps=LONG_JOB_STEPS)
    doomed = client.submit_generate(["a person bows"], durations=[1.0], steps=LONG_JOB_STEPS)
    behind = client.submit_generate(["a person claps"], durations=[1.0], steps=2)
    for event in client.iter_events(running, timeout=EVENT_TIMEOUT_S):
        if event.TYPE == "progress" and event.stage == "sampling":
            break
    status = client.status()
    assert (status.state, status.job, status.stage) == ("running", running, "sampling")
    assert status.queue == [doomed, behind] and status.loaded
    assert client.ping() < 5.0

    client.cancel(doomed)
    client.cancel(running)
    rest = list(client.iter_events(running, timeout=EVENT_TIMEOUT_S))
    assert rest[-1].TYPE == "error" and rest[-1].code == "cancelled"
    assert [(e.TYPE, getattr(e, "code", None)) for e in client.iter_events(doomed, timeout=EVENT_TIMEOUT_S)] == [
        ("queued", None),
        ("error", "cancelled"),
    ]
    assert [e.TYPE for e in client.iter_events(behind, timeout=EVENT_TIMEOUT_S)][-1] == "done"
    assert client.status().state == "idle"


def test_a_refused_generate_ends_its_job_with_an_error_naming_the_field(client) -> None:
    job = client.submit_generate(["a person jumps"], durations=[99.0])
    events = list(client.iter_events(job, timeout=EVENT_TIMEOUT_S))
    assert [(e.TYPE, e.code, e.field) for e in events] == [("error", "bad_request", "durations")]
    assert "99" in events[0].message and events[0].hint


def test_the_client_refuses_a_malformed_request_before_sending_it(client) -> None:
    with pytest.raises(HyMotionError) as refused:
        client.submit_generate(["a person jumps"], steps="5")
    assert refused.value.code == "bad_request" and refused.value.field == "steps"
    assert client.ping() < 5.0
