"""A coreference project against a real Label Studio: made from the template, linked, learned, exported."""

from __future__ import annotations

import os

from tests.integration.conftest import exported_rows, labelloop_cli, open_in_label_studio, published_version, wait_for
from tests.integration.test_backend_label_studio import check_stored_predictions, current_predictions, tasks_of
from tests.unit.serving.test_relations import result, story


def test_coreference_project_from_the_template_learns_links_and_exports_them(ls, label_studio, start_backend,
                                                                              tmp_path):
    backend = start_backend(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token,
                            LABELLOOP_AUDIT_SHARE="0")
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(tmp_path / "home")}

    cli = labelloop_cli(env)

    created = cli("project", "create", "--title", "coref", "--template", "coreference", "--labels", "PER,LOC",
                  "--connect", backend.url)
    assert created.returncode == 0, created.stderr
    project_id = int(created.stdout.split("created project ")[1].split()[0])
    label_config = ls.projects.get(id=project_id).label_config

    stories = [story(k) for k in range(24)]
    ls.projects.import_tasks(id=project_id, request=[{"text": t} for t, _, _ in stories])
    by_text = {t.data["text"]: t.id for t in tasks_of(ls, project_id)}
    for text, spans, links in stories[:18]:
        ls.annotations.create(id=by_text[text], result=result(text, spans, links), project=project_id)

    version = wait_for(lambda: published_version(ls, backend.url, project_id), timeout=240,
                       what="the trained linker's predictions in the project")
    tasks = check_stored_predictions(ls, project_id, label_config, version)  # regions and relations validate
    linked = 0
    for text, _, _ in stories[18:]:
        task = next(t for t in tasks if t.data["text"] == text)
        stored = current_predictions(task, version)[-1]["result"]
        ids = {r["id"]: (r["value"]["start"], r["value"]["end"]) for r in stored if r["type"] == "labels"}
        for r in stored:
            if r["type"] == "relation":
                assert r["from_id"] in ids and r["to_id"] in ids and r["labels"] == ["coref"]
                linked += 1
    assert linked >= 6  # Label Studio stored the relations between the predicted spans
    # ... and its labeling page draws them: the predicted mentions highlighted, the links labeled
    text = stories[18][0]
    task = next(t for t in tasks if t.data["text"] == text)
    stored = current_predictions(task, version)[-1]["result"]
    driver = open_in_label_studio(label_studio, project_id, task.id, "label-studio-coreference")
    try:
        from selenium.webdriver.common.by import By

        drawn = driver.find_elements(By.CSS_SELECTOR, "[class*=htx-highlight]")
        assert len(drawn) == sum(r["type"] == "labels" for r in stored)
        page = driver.find_element(By.TAG_NAME, "body").text
        assert page.count("coref") >= sum(r["type"] == "relation" for r in stored) > 0
    finally:
        driver.quit()

    rows = exported_rows(cli, project_id, tmp_path / "data")
    assert len(rows) == 18
    gold = {t: (spans, links) for t, spans, links in stories[:18]}
    for row in rows:
        spans, links = gold[row["text"]]
        assert [(s["start"], s["end"], s["label"]) for s in row["spans"]] == spans
        assert sorted((x["from"], x["to"]) for x in row["relations"]) == sorted(links)
