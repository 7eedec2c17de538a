"""The benchmarks (benchmarks/, BENCHMARKS.md) in smoke mode: they run end to end and produce
well-formed tables. No timing is asserted: smoke figures are meaningless by design."""

from __future__ import annotations

import json

import pytest
from benchmarks.document import update_markdown
from benchmarks.run import run


@pytest.fixture(autouse=True)
def _restore_thread_env(monkeypatch):
    # benchmarks.run exports OMP/MKL_NUM_THREADS for its children; keep that out of later tests
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


def check_structure(path, ids):
    result = json.loads(path.read_text())
    assert result["mode"] == "smoke"
    assert {"cpu", "torch", "commit", "torch_threads"} <= set(result["machine"])
    sections = {s["id"]: s for s in result["sections"]}
    assert sorted(sections) == sorted(ids)
    for s in sections.values():
        assert s["title"] and s["description"] and s["command"].startswith("python -m benchmarks.run")
        for t in s["tables"]:
            assert t["rows"], f"section {s['id']}: empty table {t['caption']}"
            assert all(len(r) == len(t["headers"]) for r in t["rows"]), f"section {s['id']}: ragged table"
    return sections


#: a stand-in for a checkout of the research code (its ``model/LSTM.py`` constructor and output): the
#: comparison's mechanics run in CI, its figures need the real checkout (LIGHTQUANT_RESEARCH_CODE)
FAKE_RESEARCH_LSTM = """
import torch
from torch import nn

class LSTM(nn.Module):
    def __init__(self, input_size=5, hidden_size=64, num_layers=2, output_size=1, dropout=0.2, batch_first=True):
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers, batch_first=batch_first, dropout=dropout)
        self.linear = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        return torch.sigmoid(self.linear(self.rnn(x)[0][:, -1]))
"""


def test_smoke_in_process_sections(tmp_path, monkeypatch):
    (tmp_path / "research" / "model").mkdir(parents=True)
    (tmp_path / "research" / "model" / "LSTM.py").write_text(FAKE_RESEARCH_LSTM)
    monkeypatch.setenv("LIGHTQUANT_RESEARCH_CODE", str(tmp_path / "research"))
    ids = [1, 2, 3, 4, 5, 8, 10]
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## GPU\n\nHand-written GPU figures.\n")
    run(["--smoke", "--sections", ",".join(map(str, ids)), "--results-dir", str(tmp_path / "results"),
         "--out", str(tmp_path / "r.json"), "--out", str(tmp_path / "fragment.md"), "--update", str(md)])
    sections = check_structure(tmp_path / "r.json", ids)
    assert len(sections[1]["tables"][0]["rows"]) == 6  # LSTM, ALSTM, HAN x batch 64, 512
    assert [len(t["rows"]) for t in sections[2]["tables"]] == [2, 2]
    assert [r[0] for r in sections[3]["tables"][0]["rows"]] == ["lstm", "han", "stocknet"]
    assert [t["caption"].split(":")[0] for t in sections[5]["tables"]] == ["universe", "window", "texts"]
    assert len(sections[10]["tables"][0]["rows"]) == 9 and [r[0] for r in sections[10]["tables"][1]["rows"]] == [
        "han", "stocknet", "pen"]
    policy = sections[10]["data"]["threads"]  # the thread policy's table, idle and beside a busy core
    assert len(policy) == 9 and all(min(r["loaded"]["auto_threads"]) >= 1 for r in policy)
    speed = sections[10]["data"]["throughput"]  # FLOPs counted for every model, LSTMs included
    assert all(r["flops_per_sample"] > 0 and 0 < r["gemm_share"] for r in speed)
    assert sections[10]["data"]["gemm_flops_per_s"] > 0
    research = sections[10]["data"]["research_code"]
    assert [r["model"] for r in research] == ["lstm"] and research[0]["research"] > 0 and research[0]["project"] > 0
    vs = sections[10]["data"]["vs_commit"]  # None in a clone without the earlier commit
    assert vs is None or (vs[0]["model"] == "scinet" and vs[0]["before"] > 0 and vs[0]["now"] > 0)
    for i in (1, 2, 4):
        assert sections[i]["targets"], f"section {i} states its target"
    fragment = (tmp_path / "fragment.md").read_text()
    assert all(f"## {i}." in fragment for i in ids)

    text = md.read_text()
    assert "Hand-written GPU figures." in text  # another section of the file is kept
    assert all(text.count(f"<!-- bench:section-{i}:begin -->") == 1 for i in ids)
    update_markdown(md, {"section-2": "## 2. Data path\n\nrerun"})  # a rerun replaces its block only
    text2 = md.read_text()
    assert text2.count("<!-- bench:section-2:begin -->") == 1 and "rerun" in text2
    assert "## 1. Engine overhead" in text2 and "Hand-written GPU figures." in text2


@pytest.mark.slow
def test_smoke_subprocess_sections(tmp_path):
    """Sections 6 (a real Optuna sweep), 7 (train.py per model/seed), 11 (start-up) and 12 (the text
    encoders) run train.py itself."""
    run(["--smoke", "--sections", "6,7,11,12", "--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "r.json")])
    sections = check_structure(tmp_path / "r.json", [6, 7, 11, 12])
    assert [r[0] for r in sections[11]["tables"][0]["rows"]][:2] == ["`python train.py --help`", "`python train.py --cfg job`"]
    assert len(sections[6]["tables"][0]["rows"]) == 2  # two trials
    (run_,) = sections[7]["data"]["runs"]
    assert not run_["failed"] and 0 <= run_["test_accuracy"] <= 1
    assert "SMOKE" in sections[7]["tables"][0]["caption"]
    assert (tmp_path / "results" / "quality" / "smoke" / "synthetic" / "lstm" / "seed1" / "metrics.json").exists()
    enc = sections[12]["data"]  # StockNet through each text encoder: trained, and its epoch measured
    assert [(r["encoder"], r["failed"]) for r in enc["runs"]] == [("tfidf", False), ("word2vec", False), ("words", False)]
    assert [c["vocab"] > 0 for c in enc["costs"]] == [False, False, True] and all(c["samples_per_s"] > 0 for c in enc["costs"])


def test_quality_chooses_each_models_config_on_validation_not_test():
    from benchmarks.quality import chosen_on_validation

    def runs(model, val, test, variant=None):
        base = {"model": model, "failed": False, "test_mcc": test, "test_accuracy": 0.5 + test}
        return [dict(base, val_mcc=val, seed=s, **({"variant": variant} if variant else {})) for s in (1, 2)]

    defaults = runs("lstm", 0.10, 0.20) + runs("pen", 0.05, 0.01)
    tried = runs("lstm", 0.20, 0.00, "sweep") + runs("pen", 0.01, 0.30, "paper")
    rows = {r[0]: r for r in chosen_on_validation(defaults, tried).rows}
    assert rows["lstm"][1].startswith("sweep")  # better on validation, worse on test: still chosen
    assert rows["pen"][1].startswith("defaults")  # better on test only: not chosen
    assert rows["lstm"][-1] == "no" and set(rows) == {"lstm", "pen"}

    # the chosen config's own seeds (more than the search's) give the test figures; the choice stays on validation
    asked = []

    def confirm(model, name):
        asked.append((model, name))
        return [dict(r, seed=s, test_accuracy=0.6) for s, r in enumerate(runs(model, -1.0, 0.1) * 2, 1)]

    rows = {r[0]: r for r in chosen_on_validation(defaults, tried, confirm).rows}
    assert sorted(asked) == [("lstm", "sweep"), ("pen", "defaults")]
    assert rows["lstm"][3] == "1, 2, 3, 4" and rows["lstm"][4].startswith("60.00") and rows["lstm"][2] == "0.200"


def test_every_tried_variant_composes_for_each_of_its_models(cfg_factory):
    """Section 7's variants are conf (conf/experiment/tried/): each says what it is and passes the config checks."""
    from benchmarks.quality import run_overrides, variant_overrides, variants

    from lightquant.config_check import validate_config

    assert {"paper", "features", "sweep"} <= set(variants())
    for name, meta in variants().items():
        assert meta["about"] and meta["models"], name
        for model, overrides in variant_overrides(name).items():
            cfg = cfg_factory(run_overrides("acl18", model, 1, None, overrides), tiny=False)
            validate_config(cfg)
            assert cfg.dataset.name == "acl18" and cfg.model_name == model


def test_smoke_reproducibility_section_lists_every_recipe(tmp_path):
    run(["--smoke", "--sections", "9", "--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "r.json")])
    sections = check_structure(tmp_path / "r.json", [9])
    rows = sections[9]["tables"][0]["rows"]
    assert {r[0] for r in rows} >= {"alstm_acl18", "adv_alstm_acl18", "stocknet_acl18", "han_acl18", "pen_acl18"}
    assert {r[1] for r in rows} == {"acl18", "acl18_stocknet"}


def test_flop_count_sees_the_lstm_the_counter_cannot():
    # torch's FlopCounterMode counts nothing for nn.LSTM's fused CPU kernel; the benchmark adds it
    # from the sizes: forward 4 gates x (input + hidden) x hidden multiply-adds per step, backward twice
    import torch
    from benchmarks.model_speed import flops_per_sample

    from lightquant.batch import Batch
    from lightquant.models.lstm import LSTM

    b, t, f, h = 8, 6, 5, 16
    batch = Batch(x=torch.randn(b, t, f), y=torch.randint(0, 2, (b,)).float(), stock=torch.zeros(b, dtype=torch.long),
                  date=torch.zeros(b, dtype=torch.long), row=torch.zeros(b, dtype=torch.long))
    lstm_fwd = 4 * 2 * t * (f + h) * h  # per sample
    head = 2 * h  # the linear head, per sample and product (forward; backward: input and weight gradients)
    assert flops_per_sample(LSTM(f, hidden_size=h, layers=1, dropout=0.0), batch, b) == 3 * lstm_fwd + 3 * head
