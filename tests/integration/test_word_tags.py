"""A part-of-speech project against a real Label Studio: made from the template, tagged, learned, exported."""

from __future__ import annotations

import os

import numpy as np

from tests.integration.conftest import exported_rows, labelloop_cli, open_in_label_studio, published_version, wait_for
from tests.integration.test_backend_label_studio import check_stored_predictions, current_predictions, tasks_of
from tests.unit.serving.test_word_tags import regions, sentence

TAGS = "DET,NOUN,VERB,ADJ,PUNCT"


def test_pos_project_from_the_template_learns_word_tags_and_exports_them(ls, label_studio, start_backend, tmp_path):
    backend = start_backend(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token,
                            LABELLOOP_AUDIT_SHARE="0")
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(tmp_path / "home")}

    cli = labelloop_cli(env)

    created = cli("project", "create", "--title", "pos", "--template", "pos", "--labels", TAGS,
                  "--connect", backend.url)
    assert created.returncode == 0, created.stderr
    project_id = int(created.stdout.split("created project ")[1].split()[0])
    label_config = ls.projects.get(id=project_id).label_config
    assert 'dense="true"' in label_config  # Label Studio keeps the attribute that marks dense tagging

    rng = np.random.default_rng(5)
    data = [sentence(rng) for _ in range(30)]
    ls.projects.import_tasks(id=project_id, request=[{"text": t} for t, _ in data])
    by_text = {t.data["text"]: t.id for t in tasks_of(ls, project_id)}
    for text, spans in data[:20]:
        ls.annotations.create(id=by_text[text], result=regions(spans), project=project_id)

    version = wait_for(lambda: published_version(ls, backend.url, project_id), timeout=240,
                       what="the trained word tagger's predictions in the project")
    tasks = check_stored_predictions(ls, project_id, label_config, version)  # Label Studio's own validation
    right = total = 0
    for text, spans in data[20:]:
        task = next(t for t in tasks if t.data["text"] == text)
        result = current_predictions(task, version)[-1]["result"]
        assert [(r["value"]["start"], r["value"]["end"]) for r in result] == [(a, b) for a, b, _ in spans]
        right += sum(r["value"]["labels"][0] == tag for r, (_, _, tag) in zip(result, spans))
        total += len(spans)
    assert right / total > 0.9, right / total
    # Label Studio's labeling page draws a tag on every word of a pre-annotated sentence
    text, spans = data[20]
    task = next(t for t in tasks if t.data["text"] == text)
    driver = open_in_label_studio(label_studio, project_id, task.id, "label-studio-pos")
    try:
        from selenium.webdriver.common.by import By

        assert len(driver.find_elements(By.CSS_SELECTOR, "[class*=htx-highlight]")) == len(spans)
    finally:
        driver.quit()

    rows = exported_rows(cli, project_id, tmp_path / "data")
    assert len(rows) == 20
    gold = {t: [tag for _, _, tag in s] for t, s in data[:20]}
    for row in rows:
        assert row["tags"] == gold[row["text"]] and len(row["tokens"]) == len(row["tags"])
