"""`labelloop al simulate` end to end on a small labeled file: curves beside random, JSON and a plot."""

import json
import subprocess
import sys

TOPICS = {"sport": ["striker", "goalkeeper", "league", "referee", "marathon", "tennis"],
          "cooking": ["oven", "recipe", "flour", "simmer", "garlic", "dough"]}


def test_simulation_reports_curves_beside_random_and_draws_them(tmp_path):
    rows = [{"text": f"A story about the {w} number {i}.", "label": label}
            for label, words in TOPICS.items() for i in range(5) for w in words]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = subprocess.run([sys.executable, "-m", "labelloop.cli", "--log-level", "warning", "al", "simulate", "--data",
                          str(data), "--seed-size", "4", "--batch", "4", "--rounds", "3", "--repeats", "2", "--json",
                          "--plot", str(tmp_path / "curves.png")], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "LABELLOOP_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["strategies"]) == {"random", "margin"}  # random always runs beside the others
    for s in result["strategies"].values():
        assert [n for n, _ in s["curve"]] == [4, 8, 12, 16] and len(s["curve_std"]) == 4
        assert all(0.0 <= a <= 1.0 for _, a in s["curve"]) and 0.0 <= s["auc"] <= 1.0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
