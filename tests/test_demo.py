"""The demo end to end at its default scale on the bundled data (about 3 minutes on 2 CPU cores).

The bundled "raw" particles carry real micrograph noise, so this is where the model must beat the
white-Gaussian baseline on both RPSD L1 and the classifier two-sample AUC (issue: learned model
ahead of the Gaussian baseline), and where the demo's report must come out complete.
"""

from __future__ import annotations

import json

import torch

from cryorefine.demo import DemoConfig, run_demo


def test_reduced_demo_report_and_model_beats_gaussian(tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "demo"
    report = run_demo(DemoConfig(out=out, generate=8))
    text = report.read_text()
    assert "real ice and detector noise over simulated signal" in text
    for plot in ("model/plots/panels.png", "model/plots/rpsd.png", "model/plots/losses.png",
                 "evaluation/gan/plots/rpsd.png"):
        assert (out / plot).stat().st_size > 1000, plot
    methods = json.loads((out / "metrics.json").read_text())["methods"]
    gan, gaussian, sim = methods["gan"], methods["gaussian"], methods["sim (no noise)"]
    print({name: (round(m["rpsd_l1"], 4), round(m["classifier_auc"], 3)) for name, m in methods.items()})
    assert gan["rpsd_l1"] < 0.6 * gaussian["rpsd_l1"] < 0.6 * sim["rpsd_l1"]
    assert gan["classifier_auc"] < gaussian["classifier_auc"] - 0.05
    check = json.loads((out / "metrics.json").read_text())["real_data_check"]
    assert check["mean_stated"] >= 0.17 and all(
        s > r for s, r in zip(check["correlation_at_stated_pose"], check["median_correlation_random_poses"]))
    assert len(list((out / "generated").glob("*.star"))) == 2
