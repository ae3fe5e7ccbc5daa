// Model directories for the Dawn benchmark (benches/dawn.mjs): Hugging Face layout, random weights
// of the real tensor names and shapes (speed does not depend on the values), the real
// config/tokenizer files where a directory of them is given, generated ones otherwise.
//
// Decoders: the rows of the end-of-sequence tokens in the (tied) embedding are zero, so their
// logit is 0 and greedy decoding of random weights never stops early; generated tokenizers are
// a WordLevel vocabulary of plain words (one word = one token) with a ChatML template.
import { mkdir, readFile, writeFile, copyFile, stat, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { WORDS, sentences } from '../www/bench.js';
import { mulberry32 } from '../tests/page/fixtures/mulberry32.js';

/** The shapes of kjarni-bench's decoder cases (benches/models.rs) and MiniLM. */
export const SHAPES = {
  'smollm2_135m': {
    kind: 'decoder', files: 'SmolLM2-135M-Instruct', model_type: 'llama', hidden: 576, layers: 30, heads: 9, kv_heads: 3,
    ff: 1536, vocab: 49152, qkv_bias: false, rope_theta: 100000,
  },
  'qwen2.5_0.5b': {
    kind: 'decoder', files: null, model_type: 'qwen2', hidden: 896, layers: 24, heads: 14, kv_heads: 2, ff: 4864,
    vocab: 151936, qkv_bias: true, rope_theta: 1000000,
  },
  // Models II: kjarni-bench's decoder_qwen3_0.6b / decoder_gemma3_270m shapes (src/cpu/synthetic.rs).
  'qwen3_0.6b': {
    kind: 'decoder', files: null, model_type: 'qwen3', hidden: 1024, layers: 28, heads: 16, kv_heads: 8, head_dim: 128,
    ff: 3072, vocab: 151936, qkv_bias: false, rope_theta: 1000000,
  },
  'gemma3_270m': {
    kind: 'decoder', files: null, model_type: 'gemma3_text', hidden: 640, layers: 18, heads: 4, kv_heads: 1, head_dim: 256,
    ff: 2048, vocab: 262144, qkv_bias: false, rope_theta: 1000000,
  },
  'minilm_l6': { kind: 'encoder', files: 'all-MiniLM-L6-v2', hidden: 384, layers: 6, heads: 12, ff: 1536, vocab: 30522, max_pos: 512 },
  // The smoke run (scripts/test.sh) on SwiftShader: small enough for seconds per step.
  'tiny_decoder': { kind: 'decoder', files: null, model_type: 'llama', hidden: 128, layers: 1, heads: 2, kv_heads: 1, ff: 256, vocab: 1024, qkv_bias: false, rope_theta: 10000 },
  'tiny_encoder': { kind: 'encoder', files: null, hidden: 64, layers: 2, heads: 2, ff: 128, vocab: 1024, max_pos: 128 },
};

const SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];

/** Tensor names and shapes of a decoder (Llama / Qwen2 layout, tied embeddings). */
function decoderTensors(s) {
  const hd = s.head_dim ?? s.hidden / s.heads;
  const t = [['model.embed_tokens.weight', [s.vocab, s.hidden]]];
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`;
    t.push([`${p}.input_layernorm.weight`, [s.hidden]], [`${p}.post_attention_layernorm.weight`, [s.hidden]]);
    t.push([`${p}.self_attn.q_proj.weight`, [s.heads * hd, s.hidden]]);
    t.push([`${p}.self_attn.k_proj.weight`, [s.kv_heads * hd, s.hidden]]);
    t.push([`${p}.self_attn.v_proj.weight`, [s.kv_heads * hd, s.hidden]]);
    if (s.qkv_bias) {
      t.push([`${p}.self_attn.q_proj.bias`, [s.heads * hd]], [`${p}.self_attn.k_proj.bias`, [s.kv_heads * hd]]);
      t.push([`${p}.self_attn.v_proj.bias`, [s.kv_heads * hd]]);
    }
    if (s.model_type !== 'llama' && s.model_type !== 'qwen2') {
      // Qwen3 and Gemma 3: per-head RMSNorm of q and k before RoPE.
      t.push([`${p}.self_attn.q_norm.weight`, [hd]], [`${p}.self_attn.k_norm.weight`, [hd]]);
    }
    if (s.model_type === 'gemma3_text') {
      t.push([`${p}.pre_feedforward_layernorm.weight`, [s.hidden]], [`${p}.post_feedforward_layernorm.weight`, [s.hidden]]);
    }
    t.push([`${p}.self_attn.o_proj.weight`, [s.hidden, s.heads * hd]]);
    t.push([`${p}.mlp.gate_proj.weight`, [s.ff, s.hidden]], [`${p}.mlp.up_proj.weight`, [s.ff, s.hidden]]);
    t.push([`${p}.mlp.down_proj.weight`, [s.hidden, s.ff]]);
  }
  t.push(['model.norm.weight', [s.hidden]]);
  return t;
}

/** Tensor names and shapes of a BERT encoder (sentence-transformers layout, no prefix). */
function encoderTensors(s) {
  const h = s.hidden;
  const t = [
    ['embeddings.word_embeddings.weight', [s.vocab, h]],
    ['embeddings.position_embeddings.weight', [s.max_pos, h]],
    ['embeddings.token_type_embeddings.weight', [2, h]],
    ['embeddings.LayerNorm.weight', [h]],
    ['embeddings.LayerNorm.bias', [h]],
  ];
  for (let i = 0; i < s.layers; i++) {
    const p = `encoder.layer.${i}`;
    for (const n of ['query', 'key', 'value']) t.push([`${p}.attention.self.${n}.weight`, [h, h]], [`${p}.attention.self.${n}.bias`, [h]]);
    t.push([`${p}.attention.output.dense.weight`, [h, h]], [`${p}.attention.output.dense.bias`, [h]]);
    t.push([`${p}.attention.output.LayerNorm.weight`, [h]], [`${p}.attention.output.LayerNorm.bias`, [h]]);
    t.push([`${p}.intermediate.dense.weight`, [s.ff, h]], [`${p}.intermediate.dense.bias`, [s.ff]]);
    t.push([`${p}.output.dense.weight`, [h, s.ff]], [`${p}.output.dense.bias`, [h]]);
    t.push([`${p}.output.LayerNorm.weight`, [h]], [`${p}.output.LayerNorm.bias`, [h]]);
  }
  return t;
}

/**
 * Write a safetensors file of random values: bf16 (decoders) or f32 (encoders, as MiniLM ships),
 * norm weights 1, biases 0, the rows `zeroRows` of `zeroTensor` 0. Values come from one random
 * block of 1 Mi values read at a different offset per tensor (writing 1 GB stays fast).
 */
async function writeSafetensors(path, tensors, dtype, { zeroTensor, zeroRows = [] } = {}) {
  const size = dtype === 'BF16' ? 2 : 4;
  const header = {};
  let off = 0;
  for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype, shape, data_offsets: [off, off + n * size] };
    off += n * size;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8) json += ' ';
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const BLOCK = 1 << 20;
  const rand = mulberry32(7);
  const f32 = new Float32Array(2 * BLOCK);
  for (let i = 0; i < BLOCK; i++) {
    // ~N(0, 0.02): small enough that activations stay finite through any depth.
    const g = Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
    f32[i] = f32[i + BLOCK] = g * 0.02;
  }
  const block = dtype === 'BF16' ? new Uint16Array(new Uint32Array(f32.buffer).map((u) => u >>> 16)) : f32;
  const fh = await open(path, 'w');
  try {
    await fh.write(head);
    await fh.write(Buffer.from(json));
    let k = 0;
    for (const [name, shape] of tensors) {
      const n = shape.reduce((a, b) => a * b, 1);
      const isNorm = /norm\.weight$|LayerNorm\.weight$/.test(name);
      const isBias = /\.bias$/.test(name);
      const out = dtype === 'BF16' ? new Uint16Array(n) : new Float32Array(n);
      if (isNorm) out.fill(dtype === 'BF16' ? 0x3f80 : 1);
      else if (!isBias) {
        for (let i = 0; i < n; i += BLOCK) {
          const start = (k++ * 7919) % BLOCK;
          out.set(block.subarray(start, start + Math.min(BLOCK, n - i)), i);
        }
      }
      if (name === zeroTensor) for (const r of zeroRows) if (r < shape[0]) out.fill(0, r * shape[1], (r + 1) * shape[1]);
      await fh.write(Buffer.from(out.buffer, out.byteOffset, out.byteLength));
    }
  } finally {
    await fh.close();
  }
  return off;
}

/**
 * A WordLevel tokenizer of `size` entries: the special tokens, the words, then fillers w<i> (every
 * id the model can produce decodes to text).
 */
function wordLevelTokenizer(special, words, size, { lowercase = false, bert = false } = {}) {
  const all = [...special, ...words];
  for (let i = all.length; i < size; i++) all.push(`w${i}`);
  const vocab = Object.fromEntries(all.map((w, i) => [w, i]));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: lowercase ? { type: 'Lowercase' } : null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: bert
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
          pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
          special_tokens: { '[CLS]': { id: '[CLS]', ids: [special.indexOf('[CLS]')], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [special.indexOf('[SEP]')], tokens: ['[SEP]'] } },
        }
      : null,
    decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: special[bert ? 1 : 0] },
  };
}

async function exists(p) {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Write the model directory of `name` (a key of SHAPES) into `dir`, once: a `.done` stamp
 * records what was written. `files`: a directory holding `<SHAPES[name].files>/` with the real
 * config/tokenizer files (used when present). Resolves to { dir, weightBytes, realFiles }.
 */
export async function ensureModel(name, dir, { files = null } = {}) {
  const s = SHAPES[name];
  if (!s) throw new Error(`unknown model '${name}' (known: ${Object.keys(SHAPES).join(', ')})`);
  const src = files && s.files ? join(files, s.files) : null;
  const realFiles = !!src && (await exists(join(src, 'tokenizer.json')));
  const stampText = JSON.stringify({ name, realFiles, v: 5 });
  const stamp = join(dir, '.done');
  if ((await exists(stamp)) && (await readFile(stamp, 'utf8')) === stampText) {
    return { dir, ...JSON.parse(await readFile(join(dir, '.info.json'), 'utf8')) };
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  let weightBytes;
  if (s.kind === 'decoder') {
    let config;
    if (realFiles) {
      for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja']) {
        if (await exists(join(src, f))) await copyFile(join(src, f), join(dir, f));
      }
      config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    } else {
      config = {
        architectures: [s.model_type === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
        model_type: s.model_type,
        bos_token_id: 1,
        eos_token_id: 2,
        pad_token_id: 2,
        hidden_act: 'silu',
        hidden_size: s.hidden,
        intermediate_size: s.ff,
        num_hidden_layers: s.layers,
        num_attention_heads: s.heads,
        num_key_value_heads: s.kv_heads,
        max_position_embeddings: 32768,
        rms_norm_eps: 1e-6,
        rope_theta: s.rope_theta,
        tie_word_embeddings: true,
        vocab_size: s.vocab,
        torch_dtype: 'bfloat16',
      };
      if (s.model_type === 'qwen3') {
        config.architectures = ['Qwen3ForCausalLM'];
        config.head_dim = s.head_dim;
      }
      if (s.model_type === 'gemma3_text') {
        // As Gemma-3-270M's config.json has it: every sixth layer global, the others a 512-token
        // window with their own RoPE base; GELU(tanh) gate; queries scaled by 256^-1/2.
        config.architectures = ['Gemma3ForCausalLM'];
        config.head_dim = s.head_dim;
        delete config.hidden_act;
        delete config.rope_theta;
        config.hidden_activation = 'gelu_pytorch_tanh';
        config.query_pre_attn_scalar = 256;
        config.sliding_window = 512;
        config.layer_types = Array.from({ length: s.layers }, (_, i) => ((i + 1) % 6 === 0 ? 'full_attention' : 'sliding_attention'));
        config.rope_parameters = {
          full_attention: { rope_theta: s.rope_theta, rope_type: 'default' },
          sliding_attention: { rope_theta: 10000, rope_type: 'default' },
        };
      }
      const template =
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' + message['content'] + ' <|im_end|> ' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant ' }}{% endif %}";
      await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
      await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(wordLevelTokenizer(SPECIAL, ['system', 'user', 'assistant', ...WORDS], s.vocab)));
      await writeFile(
        join(dir, 'tokenizer_config.json'),
        JSON.stringify({ bos_token: '<|im_start|>', eos_token: '<|im_end|>', pad_token: '<|im_end|>', unk_token: '<|endoftext|>', chat_template: template }, null, 2),
      );
    }
    const eos = [];
    for (const f of ['config.json', 'generation_config.json']) {
      if (!(await exists(join(dir, f)))) continue;
      const e = JSON.parse(await readFile(join(dir, f), 'utf8')).eos_token_id;
      eos.push(...(Array.isArray(e) ? e : e == null ? [] : [e]));
    }
    weightBytes = await writeSafetensors(join(dir, 'model.safetensors'), decoderTensors(s), 'BF16', { zeroTensor: 'model.embed_tokens.weight', zeroRows: eos });
  } else {
    if (realFiles) {
      for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'sentence_bert_config.json', 'vocab.txt']) {
        if (await exists(join(src, f))) await copyFile(join(src, f), join(dir, f));
      }
    } else {
      const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
      const config = {
        architectures: ['BertModel'], model_type: 'bert', hidden_act: 'gelu', hidden_size: s.hidden, intermediate_size: s.ff,
        layer_norm_eps: 1e-12, max_position_embeddings: s.max_pos, num_attention_heads: s.heads, num_hidden_layers: s.layers,
        pad_token_id: 0, position_embedding_type: 'absolute', type_vocab_size: 2, vocab_size: s.vocab,
      };
      await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
      await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(wordLevelTokenizer(special, WORDS, s.vocab, { lowercase: true, bert: true })));
      await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', mask_token: '[MASK]' }));
    }
    weightBytes = await writeSafetensors(join(dir, 'model.safetensors'), encoderTensors(s), 'F32');
    // The sentences of the embedding case, for kjarni-bench's native run of the same directory.
    await writeFile(join(dir, 'bench_sentences.json'), JSON.stringify(sentences(32)));
  }
  const info = { weightBytes, realFiles };
  await writeFile(join(dir, '.info.json'), JSON.stringify(info));
  await writeFile(stamp, stampText);
  return { dir, ...info };
}

// Command line: node benches/dawn_models.mjs NAME OUT_DIR [FILES_DIR]
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const [name, out, files] = process.argv.slice(2);
  if (!name || !out) {
    console.error(`usage: dawn_models.mjs NAME OUT_DIR [FILES_DIR]   (NAME: ${Object.keys(SHAPES).join(', ')})`);
    process.exit(2);
  }
  const r = await ensureModel(name, out, { files });
  console.log(JSON.stringify(r));
}
