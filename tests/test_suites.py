from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InputError
from harness.suites import expand, list_suites, load_suite, parse_suite
from harness.variants import QUANT_LEVELS, parse_prune, parse_quant
from harness.workloads import get_workload, registered

BASE = {"schema_version": 1, "workloads": ["digits_cnn"], "quant": ["fp32", "int8-static"],
        "prune": [0, 50]}


def test_shipped_suites_load() -> None:
    assert {"default", "smoke", "quant"} <= set(list_suites())
    default = load_suite("default")
    # the default sweep covers every built-in workload, each over its own levels
    assert sorted(w.name for w in default.workloads) == registered()
    assert [w.name for w in load_suite("smoke").workloads] == ["digits_cnn", "ppocr_rec"]
    assert [q.name for q in default.quant] == ["fp32", "int8-dynamic", "int8-static"]
    assert [p.name for p in default.prune] == ["0", "50"]
    quant, prune = default.levels_for("digits_cnn")
    assert [q.name for q in quant] == ["fp32", "fp16", "int8-dynamic", "int8-static", "int4",
                                       "int8-mixed-10", "torch-int8-dynamic"]
    assert [p.name for p in prune] == ["0", "50", "2:4", "channel-l2-50", "channel-l2-50+ft"]
    assert "head-l2-25" in {p.name for p in default.levels_for("minilm")[1]}
    assert [q.name for q in default.levels_for("ppocr_det")[0]] == [q.name for q in default.quant]
    # the quant and prune suites name every level the harness has; the language-model levels
    # (genai-*) are the llm suite's, and as-is is the one level of a .tflite file a user gives
    llm_levels = {q.level for q in load_suite("llm").levels_for("smollm2")[0]}
    assert {q.level for q in load_suite("quant").quant} | llm_levels | {"as-is"} == set(
        QUANT_LEVELS)
    assert all(QUANT_LEVELS[n].runtime == "onnxruntime-genai" for n in llm_levels)
    assert {"30", "70", "90", "channel-l1-25", "channel-l1-50+ft"} <= {
        p.name for p in load_suite("prune").prune}


def test_expand_is_the_product_with_stable_ids() -> None:
    cases = expand(parse_suite(BASE), devices=["snapdragon8gen3", "raspberrypi5"])
    assert len(cases) == 2 * 2 * 2
    ids = [c.case_id for c in cases]
    assert len(set(ids)) == len(ids)
    assert "digits_cnn/int8-static/prune-50/raspberrypi5" in ids


def test_filters_narrow_the_sweep() -> None:
    cases = expand(parse_suite(BASE), devices=["d"], quant=["int8-static"], prune=["50%"])
    assert [c.case_id for c in cases] == ["digits_cnn/int8-static/prune-50/d"]


def test_filter_not_in_suite_is_an_error_with_choices() -> None:
    with pytest.raises(InputError, match="int8-dynamic"):
        expand(parse_suite(BASE), devices=["d"], quant=["int8-dynamic"])
    with pytest.raises(InputError, match="Did you mean 'fp32'"):
        expand(parse_suite(BASE), devices=["d"], quant=["fp23"])


def test_unknown_key_is_an_error_with_close_match(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('schema_version = 1\nworkloads = ["digits_cnn"]\nquant = ["fp32"]\n'
                 'prune = [0]\n[measure]\niteration = 5\n')
    with pytest.raises(InputError) as exc:
        load_suite(f)
    msg = str(exc.value)
    assert str(f) in msg and "measure.iteration" in msg and "'iterations'" in msg


@pytest.mark.parametrize(("patch", "field"), [
    ({"quant": ["int9"]}, "quant[0]"),
    ({"prune": [150]}, "prune[0]"),
    ({"prune": ["half"]}, "prune[0]"),
    ({"workloads": ["digit_cnn"]}, "workloads[0]"),
    ({"workloads": []}, "workloads"),
    ({"schema_version": 2}, "schema_version"),
    ({"measure": {"iterations": 0}}, "measure"),
    ({"measure": {"timeout_s": "fast"}}, "measure.timeout_s"),
    ({"workloads": [{"name": "x", "onnx": "missing.onnx"}]}, "workloads[0].onnx"),
])
def test_bad_fields_name_the_field(patch: dict, field: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        parse_suite({**BASE, **patch}, file=tmp_path / "bad.toml")
    assert f"field '{field}'" in str(exc.value)


def test_unknown_suite_suggests_close_match() -> None:
    with pytest.raises(InputError, match="Did you mean 'smoke'"):
        load_suite("smok")


def test_onnx_workload_path_is_relative_to_the_suite(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "suite.toml").write_text(
        'schema_version = 1\nworkloads = [{ name = "mine", onnx = "tiny.onnx" }]\n'
        'quant = ["fp32"]\nprune = [0]\n')
    suite = load_suite(tmp_path / "suite.toml")
    assert suite.workloads[0].onnx == tiny_model.resolve()


def test_level_parsing() -> None:
    assert parse_prune(0).is_dense and parse_prune("0").name == "0"
    assert parse_prune("50%").amount == 0.5
    assert parse_quant("int8-static").precision == "int8"
    with pytest.raises(InputError):
        parse_prune(True)


def test_eval_size_reaches_the_workload_and_is_validated() -> None:
    from harness.core.types import WorkloadRef

    ref = WorkloadRef(name="ppocr_rec", onnx=None)
    assert get_workload(ref).eval_size == "small"
    assert get_workload(ref, eval_size="full").eval_size == "full"
    with pytest.raises(InputError, match=r"evaluation size 'ful'.*'full'"):
        get_workload(ref, eval_size="ful")


def test_a_workload_can_have_its_own_levels(tmp_path: Path) -> None:
    suite = parse_suite({**BASE, "workloads": [
        {"name": "digits_cnn", "quant": ["fp32"], "prune": [0, "2:4"]}]},
        file=tmp_path / "s.toml")
    cases = expand(suite, devices=["d"])
    assert [c.case_id for c in cases] == ["digits_cnn/fp32/prune-0/d",
                                          "digits_cnn/fp32/prune-2:4/d"]
    # a filter must name a level that some workload is swept over
    with pytest.raises(InputError, match="int8-static"):
        expand(suite, devices=["d"], quant=["int8-static"])
    with pytest.raises(InputError) as exc:
        parse_suite({**BASE, "workloads": [{"name": "digits_cnn", "quant": ["int9"]}]},
                    file=tmp_path / "s.toml")
    assert "workloads[0].quant[0]" in str(exc.value)
    with pytest.raises(InputError, match="unknown workload"):
        parse_suite({**BASE, "workloads": [{"name": "digit_cnn", "quant": ["fp32"]}]},
                    file=tmp_path / "s.toml")
