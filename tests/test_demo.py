"""The demo's report over several seeds: mean and sample spread of every number, every seed's
value kept, the thresholds each seed chose."""
import pytest

import wsol_fast.commands.demo


@pytest.fixture(scope="module")
def demo():
    return vars(wsol_fast.commands.demo)


def result(value: float, threshold: float) -> dict:
    keys = ("top1_loc", "top5_loc", "gt_known", "maxboxaccv2", "top1_cls")
    return {**{key: value + k for k, key in enumerate(keys)}, "settings": {"threshold": threshold}}


def test_mean_and_spread_over_seeds(demo):
    per_seed = [{"CAM": result(40.0, 0.2)}, {"CAM": result(44.0, 0.25)}, {"CAM": result(48.0, 0.2)}]
    summary = demo["summarize"](per_seed)
    assert summary["CAM"]["gt_known"] == {"mean": 46.0, "std": 4.0, "values": [42.0, 46.0, 50.0]}
    assert summary["CAM"]["thresholds"] == [0.2, 0.25, 0.2]
    table = demo["results_markdown"](summary, 3)
    assert "| CAM | 44.00 ± 4.00 | 45.00 ± 4.00 | 46.00 ± 4.00 | 47.00 ± 4.00 | 48.00 ± 4.00 | 0.2, 0.25, 0.2 |" \
        in table


def test_one_seed_reports_plain_values(demo):
    summary = demo["summarize"]([{"CAM": result(40.0, 0.2)}])
    assert summary["CAM"]["top1_loc"]["std"] == 0.0
    assert "| CAM | 40.00 | 41.00 | 42.00 | 43.00 | 44.00 | 0.2 |" in demo["results_markdown"](summary, 1)


def test_resume_reuses_finished_seeds_and_clears_unfinished_ones(demo, tmp_path, monkeypatch):
    finished, unfinished = tmp_path / "seed0", tmp_path / "seed1"
    for label, name, norm in demo["ROWS"]:
        path = demo["evaluation_path"](finished, name, norm)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"top1_loc": 1.0, "label": "%s"}' % label)
    (unfinished / "early").mkdir(parents=True)
    ran = []
    monkeypatch.setitem(demo["seed_results"].__globals__, "run_seed",
                        lambda folder, seed, root: ran.append((folder, seed, folder.exists())) or {"ran": seed})
    reused = demo["seed_results"](finished, 0, "data", resume=True)
    assert set(reused) == {label for label, _, _ in demo["ROWS"]} and not ran
    assert reused["CAM"] == {"top1_loc": 1.0, "label": "CAM"}
    assert demo["seed_results"](unfinished, 1, "data", resume=True) == {"ran": 1}
    assert ran == [(unfinished, 1, False)]  # cleared before the rerun
    assert demo["seed_results"](finished, 0, "data", resume=False) == {"ran": 0}
