#!/usr/bin/env python3
"""Blocks and gguf-py's dequantisation of them, for the CPU dequantiser's unit test
(src/gguf/dequant.rs). Usage: gen_dequant_fixture.py > tests/fixtures/dequant_gguf_py.json
Needs: numpy, gguf."""
import json

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

# (type, offsets of f16 scale fields to overwrite with sane values)
TYPES = [(T.Q4_0, [0]), (T.Q4_1, [0, 2]), (T.Q5_0, [0]), (T.Q5_1, [0, 2]), (T.Q8_0, [0]),
         (T.Q4_K, [0, 2]), (T.Q5_K, [0, 2]), (T.Q6_K, [208])]
rng = np.random.default_rng(7)
out = []
for t, scales in TYPES:
    bs, bb = GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, size=(3, bb), dtype=np.uint8)
    for i, blk in enumerate(raw):
        for a in scales:
            blk[a:a + 2] = np.frombuffer(np.float16(0.01 + 0.003 * i + 0.001 * a).tobytes(), np.uint8)
    vals = dequantize(raw.reshape(-1), t).reshape(-1).astype(np.float32)
    out.append({"type": t.name, "hex": raw.tobytes().hex(), "values": [float(v) for v in vals]})
print(json.dumps(out))
