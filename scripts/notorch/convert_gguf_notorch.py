"""Run scripts/models/convert_gguf.py where torch is absent: transformers >= 5.x refuses to
read GGUF metadata without torch although convert_gguf.py needs no tensors from it.
Usage: convert_gguf_notorch.py CONVERT_GGUF_PY MODEL.gguf OUT_DIR"""
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the torch stand-in
import transformers.modeling_gguf_pytorch_utils as gguf_utils  # noqa: E402

gguf_utils.is_torch_available = lambda: True
script = sys.argv[1]
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
