"""Stand-in for PyTorch, only so that transformers' GGUF *metadata* reader (config + tokenizer)
imports on machines without torch. Tensors are never built through it: convert_gguf.py
dequantizes with numpy. Used by scripts/fetch_models.sh's fallback only."""


class _Any:
    def __init__(self, name="x"):
        self._name = name

    def __call__(self, *args, **kwargs):
        return _Any(self._name)

    def __getattr__(self, key):
        return _Any(self._name + "." + key)

    def __getitem__(self, key):
        return _Any(self._name)

    def __or__(self, other):
        return self

    __ror__ = __or__

    def __repr__(self):
        return "torch." + self._name


class Tensor:
    pass


class device:
    pass


class dtype:
    pass


def __getattr__(name):
    return _Any(name)
