"""The cost model against the FuseMax artifact's pregenerated results (../shared/reference).

Latency, traffic, utilization and per-Einsum utilization must be within 1% of every row; energy
within 2% of the artifact's number, corrected where research/fusemax-artifact.md documents a
quirk of the artifact (the derivation of each correction is next to it, below).
"""

import csv
import math
from pathlib import Path

import pytest

from einforge.arch import end_to_end, evaluate_design, headline_ratios, load_architecture, load_workload, pareto_sweep

REF = Path(__file__).resolve().parents[1] / "data" / "fusemax-artifact"

FILES = {"unfused": "attn-unfused.csv", "flat": "attn-flat.csv", "cascade": "attn-cascade.csv",
         "arch": "attn-arch.csv", "fusemax": "attn-binding.csv"}
# the artifact names the 1-pass cascade's tile product QK; the library calls it BQK (paper Einsum 44)
COLUMN = {"QK": "BQK"}

# Accelergy 45 nm energies (research notes 4.5.1): global buffer per word, read/write
R16, W16 = 12518.9 / 256, 15751.5 / 256
R32, W32 = 23860.8 / 256, 27097.6 / 256
EXP = 94.6475


def rows(design):
    with open(REF / FILES[design], newline="") as f:
        return list(csv.DictReader(f))


def cases():
    return [(d, r["model"], r["seq_len"]) for d in FILES for r in rows(d)]


_REPORTS = {}


def report(design, model, seq):
    key = (design, model, seq)
    if key not in _REPORTS:
        _REPORTS[key] = evaluate_design(design, load_workload(model, seq))
    return _REPORTS[key]


def row_of(design, model, seq):
    return next(r for r in rows(design) if r["model"] == model and r["seq_len"] == seq)


def close(ours, ref, tol):
    return abs(ours - ref) <= tol * abs(ref)


@pytest.mark.parametrize("design,model,seq", cases())
def test_latency_traffic_utilization_within_1_percent(design, model, seq):
    r, ref = report(design, model, seq), row_of(design, model, seq)
    assert close(r.latency_s, float(ref["latency"]), 0.01), (r.latency_s, ref["latency"])
    assert close(r.traffic_bytes, float(ref["traffic"]), 0.01), (r.traffic_bytes, ref["traffic"])
    assert close(r.util_2d, float(ref["util_2d"]), 0.01), (r.util_2d, ref["util_2d"])
    assert close(r.util_1d, float(ref["util_1d"]), 0.01), (r.util_1d, ref["util_1d"])
    for col in ("QK", "AV", "LM", "SLN", "SLD", "SLNV"):
        if ref.get(col):
            label = col if col in r.per_einsum else COLUMN[col]
            assert close(r.einsum_util(label, "2d"), float(ref[col]), 0.01), (col, r.einsum_util(label, "2d"), ref[col])


def corrected_energy(design, model, seq, ref_energy):
    """The artifact's energy with its documented quirks undone (research notes 4.5-4.6)."""
    w = load_workload(model, seq)
    bhmp = w.batch * w.heads * w.keys * w.queries
    y = bhmp / 256                       # per-(m1, p) count: BHMP / PE
    yf = y * w.head_dim
    big = seq == "1M" or (seq == "256K" and model in ("TrXL", "XLM"))
    excess = 0.0
    missing = 0.0
    if design in ("fusemax", "arch"):
        # 4.6: one extra buffer-read stream the size of RNV's updates at 256K and 1M (2/3 of it for BERT 256K)
        if seq in ("256K", "1M"):
            excess = yf * R16 * (2 / 3 if (model, seq) == ("BERT", "256K") else 1)
    elif design == "flat":
        # 4.6: + BHMP buffer reads at 64K, TrXL/XLM 256K and 1M
        if seq == "64K" or big:
            excess = bhmp * R32
    elif design == "unfused":
        # 4.6: + BHMP buffer reads at TrXL/XLM 256K and 1M
        if big:
            excess = bhmp * R32
    elif design == "cascade":
        # 4.6: + 2 BHMP reads at 256K; + 2 BHMP + Y*F at 1M and XLM 256K
        if seq == "256K" and model != "XLM":
            excess = 2 * bhmp * R32
        elif big:
            excess = 2 * bhmp * R32 + yf * R32
        # 4.5.2: the misspelt "exponentiatial" component drops the exp energy of SLN (BHMP) and PRM (Y)
        missing += EXP * (bhmp + y)
        # 3.3: FLAT's 1D register file has 16 entries (Accelergy), so the 1D array reads the QK tile row
        # from the buffer twice (LM, then SLN); the artifact's Timeloop model gave it 512 entries
        missing += bhmp * R32
        # 3.3: FLAT has no register file shared by the 1D array, so SLNV reaches the 1D array through
        # the buffer (one write, one read); the artifact's Timeloop model added a 65536-word one
        missing += yf * (R32 + W32)
    return ref_energy - excess + missing


@pytest.mark.parametrize("design,model,seq", cases())
def test_energy_within_2_percent_of_the_corrected_artifact(design, model, seq):
    r, ref = report(design, model, seq), row_of(design, model, seq)
    target = corrected_energy(design, model, seq, float(ref["energy"]))
    # the artifact counts each per-PE register file once (4.5.2): compare without them ...
    assert close(r.details["energy_without_pe_rf_pJ"], target, 0.02), (r.details["energy_without_pe_rf_pJ"], target)
    # ... and check them separately against their own count
    assert close(r.energy_pJ - r.details["energy_without_pe_rf_pJ"], pe_rf_energy(design, model, seq), 1e-9)


def rf(depth):
    """Accelergy register file (read, write) pJ: 0.288 + 0.02947*max(64,d) + 0.0041*ceil(log2 d)."""
    b = 0.0041 * max(1, math.ceil(math.log2(max(2, depth))))
    return 0.288 + 0.02947 * max(64, depth) + b, 0.02947 * max(64, depth) + b


def pe_rf_energy(design, model, seq):
    """Per-PE register-file energy, counted for every PE.

    FuseMax placement (fusemax, arch): the 2D PEs keep the BQK/SLN tile; per element of BQK they
    read it for LM and SLN, read SLN for SLD and (stationary) for SLNV, and write BQK and SLN: 4
    reads and 2 writes of a 12-entry file. The 1D PEs keep PRM: written once per (m1, p) and read
    by SPD and SPNV: Y writes and 2Y reads of a 32-entry file.
    +Cascade: the 1D PEs (16 entries) keep PRM (as above) and SLD, written once per (m1, p) and read
    by RD two Einsums later: 2Y writes and 3Y reads. FLAT and unfused keep nothing there.
    """
    w = load_workload(model, seq)
    bhmp = w.batch * w.heads * w.keys * w.queries
    y = bhmp / 256
    if design == "cascade":
        r1, w1 = rf(16)
        return y * (3 * r1 + 2 * w1)
    if design not in ("fusemax", "arch"):
        return 0.0
    r2, w2 = rf(12)
    r1, w1 = rf(32)
    return bhmp * (4 * r2 + 2 * w2) + y * (2 * r1 + w1)


E2E = {"flat": "end2end-flat.csv", "fusemax": "end2end-proposal.csv"}


@pytest.mark.parametrize("design", sorted(E2E))
def test_end_to_end_linear_layers(design):
    with open(REF / E2E[design], newline="") as f:
        ref_rows = list(csv.DictReader(f))
    for ref in ref_rows:
        _, lin = end_to_end(design, load_workload(ref["model"], ref["seq_len"]))
        assert close(lin.latency_s, float(ref["latency"]), 0.01), (ref["model"], ref["seq_len"])
        assert close(lin.energy_pJ, float(ref["energy"]), 0.02), (ref["model"], ref["seq_len"])
        if ref["model"] != "XLM":
            # XLM's 32 MiB FFN weights exceed the buffer and the artifact's Timeloop mapper re-streams
            # them (1.5-2.1x the minimum, research notes 7); the other models move the minimum
            assert close(lin.traffic_bytes, float(ref["traffic"]), 0.01), (ref["model"], ref["seq_len"])


def test_pareto_sweep():
    with open(REF / "pareto.csv", newline="") as f:
        ref = {(r["model"], int(r["PE_dim"])): r for r in csv.DictReader(f)}
    pts = pareto_sweep()
    assert {(p.model, p.pe) for p in pts} == set(ref)
    base = load_architecture("fusemax")
    for p in pts:
        r = ref[(p.model, p.pe)]
        for k in ("traffic", "mem_lat", "comp_2d_lat", "comp_1d_lat", "latency", "array_2d_area"):
            assert close(getattr(p, k), float(r[k]), 0.01), (p.model, p.pe, k)
        # the artifact leaves the shared 1D register file (8*PE*min_tiles words) out of the area
        w = load_workload(p.model)
        min_tiles = 2 * max(1, p.pe // w.head_dim)
        shared = base.area.rf_area(8 * p.pe * min_tiles)
        assert close(p.area, float(r["area"]) + shared, 0.001), (p.model, p.pe)


def test_headline_ratios():
    """Paper: FuseMax is 6.7x faster than FLAT on attention at 79% of its energy; 5.3x and 83% end to end
    (arithmetic means over 4 models x 6 lengths, as recomputed from the artifact in research notes 5.2)."""
    h = headline_ratios()
    assert abs(h["attention_speedup"] - 6.72) < 0.05
    assert abs(h["e2e_speedup"] - 5.30) < 0.05
    # energy: FLAT's artifact number carries the extra read stream (corrected here), so ours is a bit lower
    assert 0.77 < h["attention_energy"] < 0.81
    assert 0.81 < h["e2e_energy"] < 0.85
