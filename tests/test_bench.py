"""The bench/ scripts run in CI-sized settings: they exit 0 and print one JSON line per result
plus a table. Their numbers are not asserted (timings depend on the machine and its load).

One parametrized test over ``BENCH_CASES``; to add a script, add an entry:
``pytest.param("bench/<script>.py", [args...], id="<name>")``, tiny settings (a few
images, ``--repeats 2``, one or two nets), keeping the whole file under about a minute.
"""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_script

BENCH_CASES = [
    # evaluation: eval_ssd's loop vs pure forward, with the plain (unoptimized) variant and COCOeval
    pytest.param("bench/eval.py", ["--nets", "mb2-ssd-lite", "--images", "8", "--image-size", "160", "120",
                                   "--batch-size", "4", "--workers", "1", "--repeats", "2", "--threads", "1",
                                   "--compare-plain"], id="eval"),
    # batch-1 latency: eager, folded + channels_last, ONNX Runtime, torchvision reference
    pytest.param("bench/inference.py", ["--nets", "mb2-ssd-lite", "--resolution", "160", "--repeats", "2",
                                        "--warmup", "1", "--threads", "1"], id="inference"),
    # the user-facing predict(image): upstream's way, our Predictor on the plain net, create_predictor's default
    pytest.param("bench/inference.py", ["--predict", "--nets", "mb2-ssd-lite", "--resolution", "160", "--repeats",
                                        "2", "--warmup", "1", "--threads", "1", "--image-size", "200", "150"],
                 id="inference_predict"),
    # bf16 autocast NaN hunt: a random training step per layout, every module output and gradient checked
    pytest.param("bench/bf16_nan.py", ["--resolution", "64", "--steps", "1", "--threads", "1"], id="bf16_nan"),
    # training data pipeline, fast and baseline
    pytest.param("bench/data.py", ["--images", "8", "--dataset-images", "4", "--image-size", "160", "120",
                                   "--repeats", "2", "--baseline"], id="data"),
    # training speed: real DataLoader (0 and 1 workers) beside the compute-only bound
    pytest.param("bench/train.py", ["--cpu-smoke", "--nets", "mb2-ssd-lite", "--workers", "0", "1",
                                    "--threads", "1"], id="train"),
    # COCO metrics: pycocotools vs faster-coco-eval on a tiny COCO-shaped problem (same numbers, both timed)
    pytest.param("bench/coco_eval.py", ["--images", "40", "--dets-per-image", "20"], id="coco_eval"),
    # time to accuracy: calibration + budgeted train_ssd.py run + COCO evaluation, tiny budget and data
    pytest.param("bench/time_to_accuracy.py", ["--minutes", "0.4", "--train-images", "16", "--val-images", "4",
                                               "--", "--resolution", "64", "--batch-size", "8", "--workers", "0"],
                 id="time_to_accuracy"),
    # dataset preparation: COCO annotation index and synthetic picture generation (were timing asserts in tests)
    pytest.param("bench/datasets.py", ["--index-images", "500", "--index-boxes", "2000", "--generate", "2"],
                 id="datasets"),
    # background images: one tiny training run per hard-negative mining rule, then AP and false positives
    pytest.param("bench/background_mining.py", ["--work", "{tmp}", "--train", "12", "--val", "6", "--epochs", "1",
                                                "--resolution", "64", "--workers", "0", "--rules",
                                                "batch"], id="background_mining"),
]


@pytest.mark.slow
@pytest.mark.parametrize("script,args", BENCH_CASES)
def test_bench_script_runs(script: str, args: list[str], tmp_path) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run_script(script, *args, "--log-level", "warning", cwd=tmp_path)  # from any folder, not only the root
    assert r.returncode == 0, f"{script} exited {r.returncode}:\n{r.stderr[-3000:]}"
    records = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert records, f"{script} printed no JSON result line:\n{r.stdout[-2000:]}"
    assert all(isinstance(rec, dict) and rec.get("bench") for rec in records)
    # one spelling of the load average (bench/common.py) where a result records it
    assert all("load_avg_1min" in rec for rec in records if rec["bench"] in ("eval", "inference", "predict", "train"))
    if script.endswith("time_to_accuracy.py"):  # the recipe's first step: priors fitted to the training boxes
        assert records[0]["flags"][:1] == ["--priors"] and records[0]["priors_s"] > 0, records[0]
    table = [line for line in r.stdout.splitlines() if line.strip() and not line.startswith("{")]
    assert table, f"{script} printed no table"
