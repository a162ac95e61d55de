"""Direct numpy computations of the library's cascades: what each built-in is checked against
(hypothesis, 1e-9). Loaded with the library listing, not with a single cascade."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _softmax(s, axis):
    s = s - np.max(s, axis=axis, keepdims=True)
    e = np.exp(s)
    return e / np.sum(e, axis=axis, keepdims=True)


def _masked_softmax(s, mask, axis):
    s = np.where(mask, s, -np.inf)
    return _softmax(s, axis)


def _attention(x, sz):
    """Q[e,p], K[e,m], V[f,m] -> AV[f,p] = V softmax_m(K^T Q)."""
    s = x["K"].T @ x["Q"]
    return {"AV": x["V"] @ _softmax(s, 0)}


def _attention_masked(mask_fn):
    def ref(x, sz):
        s = x["K"].T @ x["Q"]
        m = np.arange(s.shape[0])[:, None]
        p = np.arange(s.shape[1])[None, :]
        return {"AV": x["V"] @ _masked_softmax(s, mask_fn(m, p, sz), 0)}
    return ref


def _attention_grouped(x, sz, causal_window=None):
    s = np.einsum("bgrep,bgem->bgrmp", x["Q"], x["K"])
    if causal_window is None:
        return {"AV": np.einsum("bgfm,bgrmp->bgrfp", x["V"], _softmax(s, 3))}
    m = np.arange(s.shape[3])[:, None]
    p = np.arange(s.shape[4])[None, :]
    return {"AV": np.einsum("bgfm,bgrmp->bgrfp", x["V"], _masked_softmax(s, (p - causal_window < m) & (m <= p), 3))}


def _attention_mha(x, sz):
    s = np.einsum("bhep,bhem->bhmp", x["Q"], x["K"]) / np.sqrt(sz["E"])
    return {"AV": np.einsum("bhfm,bhmp->bhfp", x["V"], _softmax(s, 2))}


def _attention_decode(x, sz):
    s = np.einsum("gre,gem->grm", x["Q"], x["K"])
    valid = np.arange(s.shape[-1]) < sz["L"]
    return {"AV": np.einsum("gfm,grm->grf", x["V"], _masked_softmax(s, valid, 2))}


def _attention_sigmoid(x, sz):
    s = x["K"].T @ x["Q"] / np.sqrt(sz["E"]) - np.log(sz["M"])
    return {"AV": x["V"] @ (1.0 / (1.0 + np.exp(-s)))}


def _elu1(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def _attention_linear(x, sz):
    fq, fk = _elu1(x["Q"]), _elu1(x["K"])
    num = (fk @ x["V"].T).T @ fq          # V phi(K)^T phi(Q)
    den = fk.sum(axis=1) @ fq
    return {"AV": num / den}


def _attention_hedgehog(x, sz):
    hq = x["WQ"] @ x["Q"] + x["BQ"][:, None]
    hk = x["WK"] @ x["K"] + x["BK"][:, None]
    fq = _softmax(np.concatenate([hq, -hq]), 0)        # features over [h; -h]
    fk = _softmax(np.concatenate([hk, -hk]), 0)
    num = x["V"] @ fk.T @ fq
    den = fk.sum(axis=1) @ fq
    return {"AV": num / den}


def _softmax_only(x, sz):
    return {"A": _softmax(x["S"], 0)}


def _toy(x, sz):
    return {"Z": np.array(np.dot(x["A"], x["B"]) * np.sum(x["A"]))}


def _encoder_linear(x, sz):
    return {"QP": x["X"] @ x["WQ"], "KP": x["X"] @ x["WK"], "VP": x["X"] @ x["WV"],
            "H2": (x["ATT"] @ x["WO"] @ x["W1"]) @ x["W2"]}


def _attention_alibi(x, sz):
    s = x["K"].T @ x["Q"]
    m = np.arange(s.shape[0])[:, None]
    p = np.arange(s.shape[1])[None, :]
    return {"AV": x["V"] @ _masked_softmax(s - sz["S"] * (p - m), m <= p, 0)}


def _attention_softcap(x, sz):
    s = x["K"].T @ x["Q"]
    return {"AV": x["V"] @ _softmax(sz["CAP"] * np.tanh(s / sz["CAP"]), 0)}


def _attention_linformer(x, sz):
    kr, vr = x["K"] @ x["PK"].T, x["V"] @ x["PV"].T       # [e,r], [f,r]
    return {"AV": vr @ _softmax(kr.T @ x["Q"], 0)}


def _attention_channel(x, sz):
    a = _softmax(x["Q"] @ x["K"].T, 1)                     # [c,d]: over channels d
    return {"AV": a @ x["V"]}


def _attention_mla(x, sz):
    """The unabsorbed form: every head's keys and values up-projected from the latent cache."""
    k = np.einsum("ehc,cm->ehm", x["WUK"], x["CKV"])
    v = np.einsum("fhc,cm->fhm", x["WUV"], x["CKV"])
    q = x["Q"] if x["Q"].ndim == 3 else x["Q"][:, :, None]
    a = _softmax(np.einsum("ehp,ehm->hmp", q, k), 1)
    out = np.einsum("fhm,hmp->fhp", v, a)
    return {"AV": out if x["Q"].ndim == 3 else out[:, :, 0]}


def _attention_aaren(x, sz):
    q, k, v = x["Q"], x["K"], x["V"]                  # [e,h], [e,m,h], [f,m,h]
    out = np.empty((v.shape[0], k.shape[1], q.shape[1]))
    for h in range(q.shape[1]):
        s = q[:, h] @ k[:, :, h]
        for i in range(len(s)):
            w = np.exp(s[:i + 1] - s[:i + 1].max())
            out[:, i, h] = v[:, :i + 1, h] @ w / w.sum()
    return {"O": out}


def _attention_lolcats(x, sz):
    s = x["K"].T @ x["Q"]
    m = np.arange(s.shape[0])[:, None]
    p = np.arange(s.shape[1])[None, :]
    win = (p - sz["W"] < m) & (m <= p)
    lin = (_elu1(x["K"]).T @ _elu1(x["Q"])) * (m <= p - sz["W"])
    e = np.where(win, np.exp(s - np.max(np.where(win, s, -np.inf), axis=0)), 0.0)
    scale = np.exp(-np.max(np.where(win, s, -np.inf), axis=0))
    return {"AV": (x["V"] @ e + (x["V"] @ lin) * scale) / (e.sum(0) + lin.sum(0) * scale)}


def _attention_mossformer(x, sz):
    s = x["K"].T @ x["Q"]
    m = np.arange(s.shape[0])[:, None]
    p = np.arange(s.shape[1])[None, :]
    local = x["V"] @ _masked_softmax(s, m // sz["C"] == p // sz["C"], 0)
    fq, fk = _elu1(x["Q"]), _elu1(x["K"])
    return {"AV": local + ((fk @ x["V"].T).T @ fq) / (fk.sum(axis=1) @ fq)}


def _attention_cca(x, sz):
    g, w = sz["G"], sz["W"]
    e_, m_ = x["K"].shape
    kc = x["K"].reshape(e_, m_ // g, g).mean(axis=2)
    vc = x["V"].reshape(x["V"].shape[0], m_ // g, g).mean(axis=2)
    p = np.arange(x["Q"].shape[1])[None, :]
    n = np.arange(m_ // g)[:, None]
    m = np.arange(m_)[:, None]
    s = np.concatenate([kc.T @ x["Q"], x["K"].T @ x["Q"]])          # core keys, then local keys
    mask = np.concatenate([np.broadcast_to(n * g + g <= p - w + 1, (m_ // g, p.size)),
                           (p - w < m) & (m <= p)])
    return {"AV": np.concatenate([vc, x["V"]], axis=1) @ _masked_softmax(s, mask, 0)}


def _rmsnorm(x, sz):
    return {"Y": x["X"] / np.sqrt(np.mean(x["X"] ** 2, axis=0) + sz["EPS"]) * x["G"][:, None]}


def _layernorm(x, sz):
    mu, var = x["X"].mean(axis=0), x["X"].var(axis=0)
    return {"Y": (x["X"] - mu) / np.sqrt(var + sz["EPS"]) * x["G"][:, None] + x["B"][:, None]}


def _gelu(x, sz):
    v = x["X"]
    return {"Y": 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))}


def _silu(x, sz):
    return {"Y": x["X"] / (1 + np.exp(-x["X"]))}


def _ffn_swiglu(x, sz):
    h1, h3 = x["W1"].T @ x["X"], x["W3"].T @ x["X"]
    return {"Y": x["W2"].T @ (h1 / (1 + np.exp(-h1)) * h3)}


def _rope(x, sz):
    i = np.arange(sz["I"])[:, None, None]
    p = np.arange(sz["P"])[None, :, None]
    ang = p * sz["BASE"] ** (-i / sz["I"])           # one angle per (pair, position), for every head
    xe, xo = x["XE"], x["XO"]
    return {"YE": xe * np.cos(ang) - xo * np.sin(ang), "YO": xe * np.sin(ang) + xo * np.cos(ang)}


def _residual(x, sz):
    return {"Y": x["X"] + x["F"]}


def _attention_seer(x, sz):
    s = x["K"].T @ x["Q"]
    m = np.arange(s.shape[0])[:, None]
    p = np.arange(s.shape[1])[None, :]
    keep = x["BM"][m // sz["M0"], p // sz["B0"]] != 0
    e = np.where(keep, np.exp(s - np.max(np.where(keep, s, -np.inf), axis=0, initial=-np.inf)), 0.0)
    den = e.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, (x["V"] @ e) / den, 0.0)      # a query block that keeps no tile: empty (0)
    return {"AV": out}


def _attention_chunked(x, sz):
    s = x["K"].T @ x["Q"]
    m = np.arange(s.shape[0])[:, None]
    p = np.arange(s.shape[1])[None, :]
    return {"AV": x["V"] @ _masked_softmax(s, m // sz["K0"] == p // sz["Q0"], 0)}


REFERENCES: dict[str, Callable] = {
    "encoder-linear": _encoder_linear,
    "attention-3pass": _attention,
    "attention-3pass-deferred": _attention,
    "attention-naive": _attention,
    "attention-naive-deferred": _attention,
    "attention-2pass": _attention,
    "attention-2pass-deferred": _attention,
    "attention-1pass": _attention,
    "attention-fa1": _attention,
    "attention-cross": _attention,
    "attention-causal": _attention_masked(lambda m, p, sz: m <= p),
    "attention-window": _attention_masked(lambda m, p, sz: (p - sz["W"] < m) & (m <= p)),
    "attention-sinks": _attention_masked(lambda m, p, sz: ((m < sz["S"]) | (p - sz["W"] < m)) & (m <= p)),
    "attention-alibi": _attention_alibi,
    "attention-softcap": _attention_softcap,
    "attention-linformer": _attention_linformer,
    "attention-channel": _attention_channel,
    "attention-mla": _attention_mla,
    "attention-mla-decode": _attention_mla,
    "attention-aaren": _attention_aaren,
    "attention-lolcats": _attention_lolcats,
    "attention-mossformer": _attention_mossformer,
    "attention-cca": _attention_cca,
    "attention-seer": _attention_seer,
    "attention-chunked": _attention_chunked,
    "rmsnorm": _rmsnorm,
    "layernorm": _layernorm,
    "layernorm-welford": _layernorm,
    "gelu": _gelu,
    "silu": _silu,
    "ffn-swiglu": _ffn_swiglu,
    "rope": _rope,
    "residual": _residual,
    "attention-gqa": _attention_grouped,
    "attention-gqa-causal": lambda x, sz: _attention_grouped(x, sz, causal_window=sz["W"]),
    "gemm": lambda x, sz: {"C": x["A"].T @ x["B"]},
    "bmm": lambda x, sz: {"C": np.matmul(x["A"].transpose(0, 2, 1), x["Y"])},
    "attention-mqa": _attention_grouped,
    "attention-mha": _attention_mha,
    "attention-decode": _attention_decode,
    "attention-sigmoid": _attention_sigmoid,
    "attention-sigmoid-tiled": _attention_sigmoid,
    "attention-linear": _attention_linear,
    "attention-hedgehog": _attention_hedgehog,
    "softmax-online": _softmax_only,
    "softmax": _softmax_only,
    "cascade1": _toy,
    "cascade2": _toy,
    "cascade3": _toy,
}

# inputs that are weights get a smaller scale so feature maps stay in a sensible range
