"""The playground's defaults: version A is the serving version and B the one before; projects by title."""

from types import SimpleNamespace

import pytest

pytest.importorskip("gradio")

from labelloop.dashboard.playground import NONE, _choices, _versions  # noqa: E402
from labelloop.serving.versions import UNTRAINED_VERSION  # noqa: E402


def _service(versions, current, title="Reviews"):
    records = [SimpleNamespace(model_version=v) for v in versions]  # oldest first, as the store keeps them
    projects = SimpleNamespace(get=lambda id: SimpleNamespace(title=title))
    return SimpleNamespace(
        version_records=lambda pid: records, projects=lambda: [7],
        current_record=lambda pid: next((r for r in records if r.model_version == current), None),
        client_for=lambda pid, timeout=None: SimpleNamespace(projects=projects))


def test_version_a_is_the_serving_one_and_b_the_one_before():
    service = _service(["labelloop-v1", "labelloop-v2", "labelloop-v3"], "labelloop-v3")
    assert _versions(service, 7) == (["labelloop-v3", "labelloop-v2", "labelloop-v1", UNTRAINED_VERSION],
                                     "labelloop-v3", "labelloop-v2")
    rolled_back = _service(["labelloop-v1", "labelloop-v2", "labelloop-v3"], "labelloop-v2")
    assert _versions(rolled_back, 7)[1:] == ("labelloop-v2", "labelloop-v1")
    assert _versions(_service([], None), 7) == ([UNTRAINED_VERSION], UNTRAINED_VERSION, NONE)


def test_projects_are_listed_by_title_and_id():
    project, first, second = _choices(_service(["labelloop-v1"], "labelloop-v1"))
    assert project.choices == [("Reviews (#7)", 7)] and project.value == 7
    assert first.value == "labelloop-v1" and second.value == UNTRAINED_VERSION
    untitled = _choices(_service(["labelloop-v1"], "labelloop-v1", title=""))[0]
    assert untitled.choices == [("project 7", 7)]


def test_password_checks_run_off_the_event_loop_one_at_a_time():
    """A login spray ran scrypt on the event loop: page latency went from 92 ms to 3.1 s."""
    import asyncio
    import threading
    import time

    from labelloop.dashboard.playground import login_check

    running, most = [0], [0]
    lock = threading.Lock()

    class SlowUsers:
        def check(self, username, password):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.3)  # as a scrypt hash costs
            with lock:
                running[0] -= 1
            return password == "right"

    async def main():
        check = login_check(SlowUsers())
        gaps, last = [], time.monotonic()

        async def ticker():
            nonlocal last
            for _ in range(20):
                await asyncio.sleep(0.02)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        results = await asyncio.gather(check("a", "wrong"), check("a", "right"), check("b", "wrong"), ticker())
        return results[:3], max(gaps)

    results, worst_gap = asyncio.run(main())
    assert results == [False, True, False]
    assert worst_gap < 0.2 and most[0] == 1  # the loop kept ticking; one check at a time
