"""The byoc command line, driven in-process through main()."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from byoc.cli import main


@pytest.fixture
def model_path(tmp_path, mlp_model):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model, path)
    return path


def test_backends_lists_name_priority_and_availability(registry, capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == [
        "backend",
        "version",
        "distribution",
        "priority",
        "available",
    ]
    assert out[2].split()[:5] == ["accel", "1.0", "fake-plugins", "10", "yes"]
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["accel", "fake"]


def test_compile_explain_run_inspect(registry, model_path, tmp_path, capsys):
    out = tmp_path / "m.byoc"
    assert (
        main(
            [
                "compile",
                str(model_path),
                "-o",
                str(out),
                "-b",
                "accel,fake",
                "--explain",
            ]
        )
        == 0
    )
    text = capsys.readouterr()
    assert "byoc placement: 7 nodes -> accel 7" in text.err
    assert "accel_0   accel    7" in text.out
    assert f"wrote {out}" in text.out

    x = np.ones((2, 8), np.float32)
    np.save(tmp_path / "x.npy", x)
    assert (
        main(
            [
                "run",
                str(out),
                "--input",
                f"x={tmp_path / 'x.npy'}",
                "--repeat",
                "3",
                "--save-outputs",
                str(tmp_path / "outs"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "y       float32  [2, 4]" in text
    assert "latency over 3 runs: median" in text
    assert np.load(tmp_path / "outs" / "y.npy").shape == (2, 4)

    assert main(["run", str(out), "--dim", "batch=5", "--repeat", "0"]) == 0
    assert "[5, 4]" in capsys.readouterr().out

    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "inputs:  x: float32['batch', 8]" in text
    assert "constants: 4 tensors" in text
    assert main(["inspect", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["subgraphs"][0]["symbol"] == "accel_0"
    assert doc["subgraphs"][0]["graph"]["nodes"][0]["op"] == "input"


def test_errors_are_one_line_with_exit_code_2(registry, model_path, tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.byoc")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("byoc: error: artifact") and err.count("\n") == 1
    assert main(["compile", str(model_path), "-b", "nope"]) == 2
    assert "'nope' is not installed" in capsys.readouterr().err
    out = tmp_path / "m.byoc"
    main(["compile", str(model_path), "-o", str(out), "-b", "fake"])
    capsys.readouterr()
    assert main(["run", str(out), "--input", "x"]) == 2
    assert "name=value" in capsys.readouterr().err


def test_target_means_one_backend_and_no_fallback(
    registry, model_path, tmp_path, capsys
):
    out = tmp_path / "m.byoc"
    assert main(["compile", str(model_path), "-o", str(out), "--target", "fake"]) == 0
    capsys.readouterr()
    # a node the target lacks is refused, not sent to a fallback
    from conftest import make_model
    from onnx import helper

    model = make_model(
        [helper.make_node("Exp", ["x"], ["y"])], [("x", [2])], [("y", [2])]
    )
    path = tmp_path / "exp.onnx"
    onnx.save(model, path)
    assert main(["compile", str(path), "--target", "accel"]) == 2
    err = capsys.readouterr().err
    assert "no selected backend runs" in err and "accel: no kernel for Exp" in err


def test_demo_times_the_runtimes_in_alternating_blocks():
    from byoc.demo import interleaved_ms

    calls: list[str] = []
    a, b = interleaved_ms([lambda: calls.append("a"), lambda: calls.append("b")], 12)
    assert a >= 0 and b >= 0
    # blocks of one untimed and up to five timed calls, twelve timed each
    assert "".join(calls) == "a" * 6 + "b" * 6 + "a" * 6 + "b" * 6 + "aaa" + "bbb"
