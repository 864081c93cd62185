"""The dashboard's pages (through AppTest), the playground (through gradio_client) and a real-browser walkthrough,
all against a real Label Studio seeded here and a real backend connected to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from labelloop.auth import hash_password
from labelloop.serving.store import Store
from labelloop.serving.versions import UNTRAINED_VERSION
from labelloop.studio import projects
from labelloop.studio.localstudio import free_port, wait_healthy
from tests.integration.conftest import ARTIFACTS, BackendProcess, chromium, wait_for

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
  </Choices>
</View>"""
# Written for these tests: twenty reviews each way, different enough not to count as near duplicates.
POSITIVE = [
    "The phone is fast and the battery easily lasts two days.", "My blender crushes ice in seconds, love it.",
    "This jacket kept me warm and dry on a rainy hike.", "Great laptop: light, quiet and the screen is sharp.",
    "The kettle boils quickly and looks lovely in our kitchen.", "Such a cosy lamp, the warm light is perfect.",
    "Roomy backpack with comfy straps, worth every penny.", "Stunning photos from this camera, even at dusk.",
    "Comfortable chair, my back pain is gone after a week.", "Printer set itself up and prints beautifully.",
    "Rich, clear sound from such a small speaker!", "Elegant watch, keeps perfect time, I adore it.",
    "The tent went up in five minutes and survived a storm.", "Best night's sleep in years on this mattress.",
    "Strong wifi in every room since we installed this router.", "Gorgeous colours on this monitor, highly recommended.",
    "The vacuum picks up all the dog hair, fantastic.", "Powerful drill with a battery that never quits.",
    "Soft scarf, beautiful pattern, got many compliments.", "Perfectly golden toast every morning, delighted.",
]
NEGATIVE = [
    "Screen cracked on day three and support ignored me.", "Blade came loose and the motor smells burnt.",
    "Seams ripped apart after the first wash.", "Overheats constantly and the keyboard is mushy.",
    "Leaks from the bottom, a complete waste of money.", "Flickers nonstop and the switch already broke.",
    "Zipper snapped and a strap tore off within a month.", "Blurry pictures, and the lens cap does not fit.",
    "Wobbly legs and two screws were missing from the box.", "Jams on every page, I regret buying it.",
    "Crackling noise at any volume, returned it.", "Strap broke and the glass scratched immediately.",
    "Poles bent in light wind, water poured inside.", "Sagging after two weeks, my back hurts more now.",
    "Drops the connection every hour, utterly useless.", "Dead pixels out of the box and a buzzing sound.",
    "Loses suction after a minute, very disappointing.", "Chuck slips and the charger died on day two.",
    "Scratchy wool, and the dye stained my coat.", "Burns one side and leaves the other raw, awful.",
]
PASSWORD = "correct horse battery"
APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def _choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


AUDIT_SHARE = "0.3"  # a third of the seeded tasks are audit tasks, so the small project has an audit split


@pytest.fixture(scope="module")
def seeded(ls, label_studio, tmp_path_factory):
    """A labeled sentiment project (two annotations on some tasks, one planted mislabel, one duplicate) with the
    backend connected and trained on it. Yields ``(project_id, home, backend)``."""
    home = tmp_path_factory.mktemp("home")
    tasks = []
    for i, (good, bad) in enumerate(zip(POSITIVE, NEGATIVE)):
        tasks.append({"data": {"text": good}, "annotations": [{"result": _choice("Positive")}] * (2 if i < 3 else 1)})
        tasks.append({"data": {"text": bad}, "annotations": [{"result": _choice("Negative")}]})
    # The planted mislabel: clearly positive, labeled Negative.
    tasks.append({"data": {"text": "Absolutely wonderful toaster, I love it and use it every morning."},
                  "annotations": [{"result": _choice("Negative")}]})
    tasks += [{"data": {"text": "Is the charger included in the box?"}},
              {"data": {"text": "Is the charger included in the box?"}},
              {"data": {"text": "Which colours does the cover come in?"}}]
    project = projects.create_project(ls, "Dashboard test", CONFIG, tasks)
    backend = BackendProcess(home, {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
                                    "LABELLOOP_AUDIT_SHARE": AUDIT_SHARE})
    try:
        ml = projects.connect_backend(ls, project.id, backend.url)
        ls.ml.train(id=ml.id)
        wait_for(lambda: (ls.projects.get(id=project.id).model_version or "").startswith("labelloop-v"),
                 timeout=180, what="the backend's first trained version")
        yield project.id, home, backend
    finally:
        backend.stop()


@pytest.fixture
def dashboard_env(monkeypatch, seeded, label_studio):
    project_id, home, _ = seeded
    for name, value in {"LABELLOOP_HOME": str(home), "LABEL_STUDIO_URL": label_studio.url,
                        "LABEL_STUDIO_API_KEY": label_studio.token, "LABELLOOP_DASHBOARD_USER": "lead",
                        "LABELLOOP_AUDIT_SHARE": AUDIT_SHARE, "LABELLOOP_FINETUNE": "auto",
                        "LABELLOOP_DASHBOARD_PASSWORD_HASH": hash_password(PASSWORD)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LABELLOOP_DASHBOARD_NO_AUTH", raising=False)
    return project_id, home


def _app():
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()  # settings and clients are made once per server; each test is a new server
    st.cache_data.clear()
    return AppTest.from_file(str(APP), default_timeout=180)


def _logged_in():
    at = _app().run()
    at.text_input[0].input("lead")
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def _on_page(project_id: int, page: str):
    at = _logged_in()
    at.sidebar.selectbox[0].select(project_id).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [str(m.value) for m in at.metric] + [e.value for e in at.success]
    parts += [e.value for e in at.error] + [e.value for e in at.info] + [e.value for e in at.caption]
    return "\n".join(parts)


def test_login_is_required(dashboard_env):
    at = _app().run()
    assert [t.value for t in at.title] == ["LabelLoop"] and not at.metric  # the form, nothing else
    at.text_input[0].input("lead")
    at.text_input[1].input("wrong password")
    at.button[0].click().run()
    assert "Wrong user name or password" in at.error[0].value
    at = _logged_in()
    assert [t.value for t in at.title] == ["Overview"]


def test_overview_and_quality_pages(dashboard_env, ls):
    project_id, _ = dashboard_env
    at = _logged_in()
    at.sidebar.selectbox[0].select(project_id).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tasks"] == "44" and metrics["Labeled"] == "41" and metrics["Annotations"] == "44"
    assert not at.exception
    # Every annotation was made within the same hour: a bar says so, not an empty line chart.
    assert "All 44 annotations within" in _texts(at) or "per hour" in _texts(at), _texts(at)

    at.switch_page("app_pages/quality.py").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tasks with several annotations"] == "3" and metrics["Fleiss' kappa"] == "1.00"
    assert metrics["Duplicate groups"] == "1" and metrics["Test texts in train"] == "0"
    issues = at.dataframe[0].value
    assert "Absolutely wonderful toaster" in " ".join(issues["text"].head(3))
    issues = issues[issues["text"].str.contains("Absolutely wonderful toaster")]
    assert issues.iloc[0]["given"] == "Negative" and issues.iloc[0]["suggested"] == "Positive"
    assert issues.iloc[0]["open"].endswith(f"/projects/{project_id}/data?task={issues.iloc[0]['task_id']}")


def test_active_learning_and_augment_pages(dashboard_env, ls, monkeypatch):
    project_id, _ = dashboard_env
    at = _on_page(project_id, "active_learning")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Serving rung"] == "head" and metrics["Model version"].startswith("labelloop-v")
    assert int(metrics["Audit tasks annotated"]) > 0 and "Next fine-tune: at 100 training labels" in _texts(at)
    queue = next(d.value for d in at.dataframe if "score" in d.value.columns)
    assert len(queue) == 3 and queue["score"].is_monotonic_increasing  # the three unlabeled tasks
    # The curve waits for the gate's minimum of annotated audit tasks, then shows accuracy with its n and interval.
    assert "the curve appears at 30" in _texts(at)
    monkeypatch.setenv("LABELLOOP_MIN_AUDIT", "3")
    at = _on_page(project_id, "active_learning")
    assert "Accuracy on n=" in _texts(at) and "95% Wilson intervals" in _texts(at)
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")

    at.switch_page("app_pages/augment.py").run()
    at.multiselect[0].set_value(["swap"])
    at.button[0].click().run()  # the form's Preview
    assert not at.exception, at.exception
    preview = at.dataframe[0].value
    assert len(preview) > 0 and set(preview["method"]) == {"random-swap"}
    before = ls.projects.get(id=project_id).task_number
    next(b for b in at.button if b.label.startswith("Add ")).click().run()
    assert ls.projects.get(id=project_id).task_number == before + len(preview)


def _wait_for_run(home: Path, run_id: str, timeout: float = 300) -> str:
    from labelloop.finetune.registry import RunRegistry

    registry = RunRegistry(home)
    return wait_for(lambda: registry.get(run_id).status not in ("queued", "running") and registry.get(run_id).status,
                    timeout=timeout, what=f"run {run_id} to finish")


def test_train_and_runs_pages_launch_compare_and_promote(dashboard_env, ls):
    project_id, home = dashboard_env
    at = _on_page(project_id, "train")
    next(b for b in at.button if b.label.startswith("Export approved labels")).click().run()
    assert at.text_input(key="cfg_train_file").value.endswith("train.jsonl")
    at.text_input(key="cfg_epochs").input("1")
    at.text_input(key="run_name").input("apptest-run")
    next(b for b in at.button if b.label == "Launch run").click().run()
    assert not at.exception, at.exception
    assert "Started run apptest-run" in _texts(at)
    assert _wait_for_run(home, "apptest-run") == "succeeded"
    from labelloop.finetune.config import RunConfig
    from labelloop.finetune.registry import RunRegistry

    registry = RunRegistry(home)
    assert registry.project_of("apptest-run") == project_id  # the export said which project the data came from
    registry.create(RunConfig(task="classification", project=project_id + 1000), name="another-projects-run")

    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    listed = set(at.dataframe[0].value["run"])
    assert "apptest-run" in listed and "another-projects-run" not in listed
    at.toggle[0].set_value(True).run()
    assert "another-projects-run" in set(at.dataframe[0].value["run"])
    at.toggle[0].set_value(False).run()
    comparison = at.dataframe[1].value
    assert {"base", "run"} <= set(comparison.index) and "accuracy" in comparison.columns
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the confusion matrix
    # Promote sends the run to the gate, which has no disagreement labels yet: not promoted, unless the lead
    # overrides it; from then on the page shows the gate's evidence, the serving model beside the run.
    assert "Promote sends this run to the gate" in _texts(at)
    next(b for b in at.button if b.label == "Promote").click().run()
    assert not at.exception, at.exception
    assert any("was not promoted" in e.value and "--force" in e.value for e in at.error), _texts(at)
    at.run()
    gate = at.dataframe[-1].value
    assert list(gate[""]) == ["serving", "this run"]
    assert {"accuracy (audit, stratified)", "95% low", "95% high", "labels"} <= set(gate.columns)
    assert "disagreement labels of a budget of" in _texts(at)
    next(c for c in at.checkbox if c.label.startswith("Promote even if")).check().run()
    next(b for b in at.button if b.label == "Promote").click().run()
    assert not at.exception, at.exception
    assert f"project {project_id} now serves run apptest-run" in _texts(at)
    assert "forced past the gate" in _texts(at)
    version = ls.projects.get(id=project_id).model_version
    assert version.startswith("labelloop-v")
    next(b for b in at.button if b.label.startswith("Roll back")).click().run()
    assert ls.projects.get(id=project_id).model_version != version, _texts(at)


def test_playground_compares_versions_behind_a_login(seeded, label_studio, tmp_path):
    from gradio_client import Client

    project_id, home, _ = seeded
    port = free_port()
    env = {**os.environ, "LABELLOOP_HOME": str(home), "LABELLOOP_DASHBOARD_USER": "lead",
           "LABELLOOP_DASHBOARD_PASSWORD_HASH": hash_password(PASSWORD)}
    log = tmp_path / "playground.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "labelloop.cli", "playground", "--port", str(port)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), timeout=120, what="the playground")
        versions = [v.model_version for v in Store(home).versions(project_id)]
        # Before a login, nothing names a project or a version: not the page, not its config or API info.
        for path in ("/", "/config", "/info", "/gradio_api/info"):
            page = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).text
            assert "Dashboard test" not in page and not any(v in page for v in versions), path
            assert f'"value": {project_id}' not in page and f'"value":{project_id}' not in page, path
        with pytest.raises(ValueError, match="Could not login"):
            Client(f"http://127.0.0.1:{port}/", auth=("lead", "wrong"), verbose=False)
        client = Client(f"http://127.0.0.1:{port}/", auth=("lead", PASSWORD), verbose=False)
        a, _, b, _ = client.predict(project_id, "I love it, works wonderfully.", versions[-1], UNTRAINED_VERSION,
                                    api_name="/compare")
        assert a["label"] == "Positive" and b["label"] in ("Positive", "Negative")
        assert {c["label"] for c in a["confidences"]} == {"Positive", "Negative"}
        variants = client.predict("The battery lasts two full days and charges fast.", "Positive", ["swap"],
                                  api_name="/augment")
        assert variants["data"] and all(row[0] == "random-swap" for row in variants["data"])
        # Guessing is throttled: after 5 wrong passwords this address waits, whatever the password.
        codes = [httpx.post(f"http://127.0.0.1:{port}/login", data={"username": "lead", "password": f"guess{i}"},
                            timeout=10).status_code for i in range(8)]
        assert codes[:5] == [400] * 5 and codes[-1] == 429, codes
        locked = httpx.post(f"http://127.0.0.1:{port}/login", data={"username": "lead", "password": PASSWORD},
                            timeout=10)
        assert locked.status_code == 429 and "try again in" in locked.text
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert PASSWORD not in log.read_text()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.mark.skipif(chromium() is None and os.environ.get("LABELLOOP_REQUIRE_BROWSER") != "1",
                    reason="Debian chromium and chromium-driver are not installed (.ci/run installs them)")
def test_browser_walkthrough_login_train_promote(seeded, label_studio, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium()
    project_id, home, _ = seeded
    shots = ARTIFACTS / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "LABELLOOP_HOME": str(home), "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "LABELLOOP_DASHBOARD_USER": "lead",
           "LABELLOOP_DASHBOARD_PASSWORD_HASH": hash_password(PASSWORD), "LABELLOOP_AUDIT_SHARE": AUDIT_SHARE}
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "labelloop.cli", "dashboard", "--port", str(port)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = None
    try:
        wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", timeout=120, process=server, log=log)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        wait = WebDriverWait(driver, 120)

        def shot(name: str) -> None:
            time.sleep(1.0)  # let charts finish drawing
            driver.save_screenshot(str(shots / f"{name}.png"))

        def see(text: str, timeout: float = 120):
            WebDriverWait(driver, timeout).until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), text))

        def button(label: str):
            xpath = f"//button[.//p[starts-with(normalize-space(), '{label}')]]"
            element = wait.until(ec.element_to_be_clickable((By.XPATH, xpath)))
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
            element.click()

        def go(page: str) -> None:  # through the sidebar, as a lead does
            xpath = f"//a[@data-testid='stSidebarNavLink'][.//span[normalize-space()='{page}']]"
            wait.until(ec.element_to_be_clickable((By.XPATH, xpath))).click()

        def field(label: str):
            return wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"input[aria-label='{label}']")))

        driver.get(f"http://127.0.0.1:{port}/")
        field("User name").send_keys("lead")
        field("Password").send_keys(PASSWORD)
        shot("01-login")
        button("Log in")
        see("Projects")
        shot("02-overview")
        driver.refresh()  # a full reload keeps the login: the signed session cookie
        see("Logged in as lead")
        see("Projects")
        assert not driver.find_elements(By.CSS_SELECTOR, "input[aria-label='User name']")

        go("Train")
        button("Export approved labels")
        see("Exported")
        epochs = field("Passes over the training data (epochs)")
        epochs.send_keys(Keys.CONTROL, "a")
        epochs.send_keys("1", Keys.TAB)
        name = field("Run name (optional)")
        name.send_keys("browser-run", Keys.TAB)
        shot("03-train-form")
        button("Launch run")
        see("Started run browser-run")
        see("succeeded", timeout=400)
        status = driver.find_element(By.XPATH, "//p[contains(., 'Status:')]")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", status)
        shot("04-run-finished")
        assert _wait_for_run(home, "browser-run") == "succeeded"

        go("Runs")
        see("Serve a run")
        shot("05-runs")
        see("Promote sends this run to the gate")
        checkbox = wait.until(ec.element_to_be_clickable(
            (By.XPATH, "//label[.//p[starts-with(normalize-space(), 'Promote even if')]]")))
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", checkbox)
        checkbox.click()
        button("Promote")
        see("now serves run browser-run", timeout=180)
        shot("06-promoted")
    except Exception:
        if driver is not None:
            driver.save_screenshot(str(shots / "failure.png"))
        raise
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        (ARTIFACTS / "dashboard-browser.log").write_bytes(log.read_bytes())
    assert PASSWORD not in log.read_text()
