"""The einforge command's contracts: JSON shapes and exit codes."""

import json
import re

from click.testing import CliRunner

from einforge.cli import main, parse_count


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_parse_count():
    assert parse_count("64K") == 65536 and parse_count("1M") == 1 << 20 and parse_count("4096") == 4096


def test_cascade_list_json():
    r = run("cascade", "list", "--json")
    assert r.exit_code == 0
    items = json.loads(r.output)
    names = {i["name"] for i in items}
    for required in ("attention-3pass", "attention-2pass", "attention-1pass", "attention-naive",
                     "attention-causal", "attention-gqa", "attention-decode", "attention-sigmoid",
                     "attention-linear", "cascade1", "cascade2", "cascade3"):
        assert required in names
    assert all(set(i) == {"name", "family", "description", "file"} and i["description"] for i in items)
    # grouped by family, and every description cites where the algorithm comes from (author, year)
    families = [i["family"] for i in items]
    assert all(families) and families == sorted(families)
    bad = [i["name"] for i in items if not re.search(r"\(.*[A-Z][a-z]+.*(19|20)\d\d.*\)", i["description"])]
    assert not bad, bad


def test_cascade_run_json_contract():
    r = run("cascade", "run", "attention-1pass", "--size", "M=64", "P=8", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["cascade"] == "attention-1pass"
    assert out["sizes"]["M"] == 64 and out["sizes"]["P"] == 8 and out["sizes"]["M1"] == 8
    assert out["max_rel_error"] < 1e-9 and out["max_abs_error"] < 1e-9 and out["seconds"] >= 0


def test_cascade_run_fails_with_exit_1_beyond_tolerance():
    # the naive cascade overflows on large inputs: the comparison fails, exit code 1
    r = run("cascade", "run", "attention-naive", "--scale", "40", "--json")
    assert r.exit_code == 1
    assert float(json.loads(r.output)["max_rel_error"]) > 1e-9   # "inf" when the outputs overflow


def test_cascade_run_checks_a_fixed_point_format_against_its_derived_bound(tmp_path):
    r = run("cascade", "run", "attention-1pass", "--fixed", "8.8", "--json")
    out = json.loads(r.output)
    fx = out["fixed_point"]
    assert r.exit_code == 0 and out["passed"] and fx["format"] == "Q8.8" and fx["within_bound"]
    assert 0 < fx["outputs"]["AV"]["max_abs_error"] <= fx["outputs"]["AV"]["bound"] < 1
    # RoPE's BASE=10000 does not fit Q8.8: no finite bound, exit 1; wider formats are certified
    r = run("cascade", "run", "rope", "--fixed", "8.8", "--json")
    assert r.exit_code == 1 and json.loads(r.output)["fixed_point"]["outputs"]["YE"]["bound"] == "inf"
    assert run("cascade", "run", "rope", "--fixed", "16.12", "--json").exit_code == 0
    # a user's cascade without a reference: the format check is a comparison, so the run can pass
    f = tmp_path / "gemm.cascade"
    f.write_text("ranks K=3 M=2 N=2\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] * B[k,n]\n")
    out = json.loads(run("cascade", "run", str(f), "--fixed", "6.10", "--json").output)
    assert out["passed"] is True and out["fixed_point"]["outputs"]["Z"]["bound"] <= 0.5 / 1024
    bad = run("cascade", "run", "gemm", "--fixed", "eight")
    assert bad.exit_code == 2 and "give I.F" in bad.output


def test_rewrite_keeps_a_stage_of_a_cascade(tmp_path):
    f = tmp_path / "core.cascade"
    r = run("rewrite", "attention-mla", "--stage", "OC:QC,CKV", "-o", str(f))
    assert r.exit_code == 0 and "input QC[c,h,p] CKV[c,m]" in f.read_text()
    bad = run("rewrite", "attention-mla", "--stage", "OC")
    assert bad.exit_code == 2 and "OUTPUTS:INPUTS" in bad.output
    missing = run("rewrite", "attention-mla", "--stage", "OC:QC")
    assert missing.exit_code == 2 and "CKV" in missing.output


def test_cascade_show_and_file(tmp_path):
    f = tmp_path / "gemm.cascade"
    f.write_text("ranks K=3 M=2 N=2\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] * B[k,n]\n")
    r = run("cascade", "show", str(f), "--json")
    assert r.exit_code == 0
    out = json.loads(r.output)
    assert out["tensors"]["Z"]["output"] and out["einsums"][0]["reduce"] == [["k", "+"]]
    r = run("cascade", "run", str(f), "--json")
    out = json.loads(r.output)
    # a user's file has no reference: the run says that nothing was compared, never "passed"
    assert r.exit_code == 0 and out["max_rel_error"] is None and out["compared"] == [] and out["passed"] is None


def test_cascade_run_fails_on_non_finite_outputs(tmp_path):
    f = tmp_path / "nan.cascade"
    f.write_text("ranks K=3\ninput A[k]\nZ[k] = log(A[k] - A[k] - 1)\n")
    r = run("cascade", "run", str(f), "--json")
    out = json.loads(r.output)
    assert r.exit_code == 1 and out["non_finite_outputs"] == ["Z"] and out["passed"] is False


def test_cascade_run_against_a_reference(tmp_path):
    from einforge.einsum import library

    text = library()["attention-1pass"].file.read_text()
    same, wrong = tmp_path / "same.cascade", tmp_path / "wrong.cascade"
    same.write_text(text.replace("cascade attention-1pass", "cascade mine"))
    wrong.write_text(text.replace("cascade attention-1pass", "cascade mine").replace(
        "PRM[m1,p]        = exp(RM[m1,p] - RM[m1+1,p])", "PRM[m1,p]        = exp(RM[m1+1,p] - RM[m1,p])"))
    r = run("cascade", "run", str(same), "--reference", "attention-3pass", "M=64", "P=16", "--json")
    out = json.loads(r.output)
    assert r.exit_code == 0 and out["compared"] == ["AV"] and out["passed"] is True and out["max_rel_error"] < 1e-9
    r = run("cascade", "run", str(wrong), "--reference", "attention-1pass", "--json")
    assert r.exit_code == 1 and json.loads(r.output)["passed"] is False


def test_bad_input_exits_2_with_location(tmp_path):
    f = tmp_path / "bad.cascade"
    f.write_text("ranks K\ninput A[k]\nY = A[k] * B[k]\n")
    r = CliRunner().invoke(main, ["cascade", "show", str(f)])
    assert r.exit_code == 2
    assert "bad.cascade:3:12: unknown tensor B" in r.output
    r = CliRunner().invoke(main, ["cascade", "run", "no-such-cascade"])
    assert r.exit_code == 2 and "cascade list" in r.output
    r = CliRunner().invoke(main, ["cascade", "run", "attention-1pass", "M=60"])
    assert r.exit_code == 2 and "does not divide" in r.output


def test_real_parameters_on_the_command_line():
    r = run("cascade", "run", "attention-softcap", "--size", "CAP=7.5", "--size", "M=16", "--size", "P=4",
            "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["sizes"]["CAP"] == 7.5 and json.loads(r.output)["passed"] is True
    bad = run("evaluate", "--cascade", "attention-softcap", "--param", "CAP=wide")
    assert bad.exit_code == 2 and "CAP is a real-valued parameter" in bad.output
    bad = run("evaluate", "--cascade", "attention-softcap", "--size", "CAP=3")
    assert bad.exit_code == 2 and "set it with --param CAP=X" in bad.output


def test_llm_commands():
    r = run("llm", "models", "--json")
    assert r.exit_code == 0 and {"Llama-3-8B", "GPT-3-175B"} <= {m["name"] for m in json.loads(r.output)}
    r = run("llm", "generate", "--model", "Llama-3-8B", "--batch", "2", "--prompt", "256", "--tokens", "8", "--json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.output)
    assert g["ttft_s"] > 0 and g["tpot_s"] > 0 and len(g["prefill_layer"]) == 9
    r = run("llm", "generate", "--model", "Llama-3-70B", "--memory", "16GiB", "--json")
    assert r.exit_code == 2 and "do not fit 16.0 GiB" in r.output
    r = run("llm", "decode", "--chips", "16", "--memory", "96GiB", "--json")
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert d["best"] and len(d["rows"]) == 5


def test_rtl_generate_says_which_rank_the_vector_lanes_take(tmp_path):
    r = CliRunner().invoke(main, ["rtl", "generate", "residual", "--array", "4x4", "--size", "D=3", "T=8",
                                  "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "vector lanes" in r.output and "lanes across T (default" in r.output
    r = CliRunner().invoke(main, ["rtl", "generate", "residual", "--array", "4x4", "--size", "D=3", "T=8",
                                  "--lane-rank", "D", "-o", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["mapping"]["cols"] == "D"
    r = CliRunner().invoke(main, ["rtl", "generate", "examples/gemm.cascade", "--lane-rank", "M", "-o", str(tmp_path)])
    assert r.exit_code != 0 and "--lane-rank applies to stages the vector unit runs" in r.output
