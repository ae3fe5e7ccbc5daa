#!/usr/bin/env python3
"""Tiny random-weight BERT encoders with transformers' reference outputs (run where torch and
transformers are installed; no network, no GPU needed).

    python3 scripts/gen_tiny_encoders.py OUT_DIR

writes
  OUT_DIR/bert_cls/   BertModel + sentence-transformers head files: modules.json (Transformer,
                      Pooling, Normalize), 1_Pooling/config.json (CLS), config.json,
                      model.safetensors, tokenizer.json, vocab.txt, reference.json with the
                      normalised CLS embedding of each sentence
  OUT_DIR/cross/      BertForSequenceClassification (1 label) + tokenizer, reference.json with
                      the logit of each (query, document) pair, tokenised as a pair
                      ([CLS] q [SEP] d [SEP], token types 0 / 1)

Both: 2 layers, hidden 64, 4 heads, a made-up WordPiece vocabulary of ~200 tokens, f32 weights.
The encoders' tests (tests/gpu/sentence.rs) can then compare against transformers itself.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

WORDS = ("a man is playing guitar someone plays music the new movie awesome actors are great in it "
         "cats dogs how many people live berlin has million paris france of and to what where who").split()
SENTENCES = ["A man is playing a guitar.", "Someone plays music.", "The new movie is awesome.", "Cats."]
QUERY = "how many people live in berlin?"
DOCS = ["Berlin has 3.5 million people.", "Paris is in France.", "cats and dogs", "music"]


def vocab_file(d):
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + list("abcdefghijklmnopqrstuvwxyz0123456789.,?!")
    toks += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    seen, out = set(), []
    for t in toks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(out) + "\n")
    return len(out)


def tokenizer(d):
    n = vocab_file(d)
    tok = BertTokenizerFast(vocab_file=os.path.join(d, "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(d)
    return tok, n


def config(n, **kw):
    return BertConfig(vocab_size=n, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=64, **kw)


def save(model, d):
    state = {k: v.contiguous() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    save_file(state, os.path.join(d, "model.safetensors"))
    model.config.save_pretrained(d)


def main(out):
    torch.manual_seed(0)
    d = os.path.join(out, "bert_cls")
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    tok, n = tokenizer(d)
    m = BertModel(config(n)).eval()
    save(m, d)
    with open(os.path.join(d, "modules.json"), "w") as f:
        json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}], f)
    with open(os.path.join(d, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": 64, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, f)
    cases = []
    with torch.no_grad():
        for s in SENTENCES:
            enc = tok(s, return_tensors="pt")
            cls = m(**enc).last_hidden_state[0, 0]
            cases.append({"text": s, "ids": enc["input_ids"][0].tolist(),
                          "embedding": torch.nn.functional.normalize(cls, dim=0).tolist()})
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"pooling": "cls", "normalize": True, "cases": cases}, f)

    d = os.path.join(out, "cross")
    os.makedirs(d, exist_ok=True)
    tok, n = tokenizer(d)
    m = BertForSequenceClassification(config(n, num_labels=1, architectures=["BertForSequenceClassification"])).eval()
    save(m, d)
    pairs = []
    with torch.no_grad():
        for doc in DOCS:
            enc = tok(QUERY, doc, return_tensors="pt")
            pairs.append({"doc": doc, "ids": enc["input_ids"][0].tolist(),
                          "token_types": enc["token_type_ids"][0].tolist(),
                          "logit": m(**enc).logits[0, 0].item()})
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"query": QUERY, "pairs": pairs}, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tiny")
