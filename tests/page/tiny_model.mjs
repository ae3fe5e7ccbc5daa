// A tiny Llama checkpoint (2 layers, hidden 128, a 300-word WordLevel tokenizer, seeded random
// f32 weights) in Hugging Face layout, for page tests that need many or long generations:
// SwiftShader (headless Chromium's CPU WebGPU) takes tens of seconds per SmolLM2 token.
// Its output is word salad; the tests check mechanics (streaming, stop, buffers), not text.
import { mkdir, writeFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { mulberry32 } from './fixtures/mulberry32.js';

const H = 128;
const HEADS = 2;
const KV_HEADS = 1;
const HEAD_DIM = 64;
const FFN = 256;
const LAYERS = 2;

const WORDS = (
  'the of and to a in is you that it he was for on are as with his they i at be this have from or one had by word but not what ' +
  'all were we when your can said there use an each which she do how their if will up other about out many then them these so ' +
  'some her would make like him into time has look two more write go see number no way could people my than first water been ' +
  'call who oil its now find long down day did get come made may part over new sound take only little work know place year ' +
  'live me back give most very after thing our just name good sentence man think say great where help through much before line ' +
  'right too mean old any same tell boy follow came want show also around form three small set put end does another well large ' +
  'must big even such because turn here why ask went men read need land different home us move try kind hand picture again ' +
  'change off play spell air away animal house point page letter mother answer found study still learn should america world ' +
  'paris france capital city river story dragon cat dog music guitar computer model token . , ! ? : system user assistant'
).split(' ');

export const SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
export const VOCAB = [...SPECIAL, ...new Set(WORDS)];

function safetensors(tensors) {
  const header = {};
  let offset = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json), ...tensors.map(([, , d]) => Buffer.from(d.buffer, d.byteOffset, d.byteLength))]);
}

/** Write the tiny model into `dir` (once; it is deterministic). Returns `dir`. */
export async function ensureTinyModel(dir) {
  try {
    await stat(join(dir, 'model.safetensors'));
    return dir;
  } catch {}
  await mkdir(dir, { recursive: true });
  const V = VOCAB.length;
  const rand = mulberry32(1234);
  const mat = (rows, cols, scale) => Float32Array.from({ length: rows * cols }, () => (rand() * 2 - 1) * scale);
  const ones = (n) => new Float32Array(n).fill(1);
  const tensors = [['model.embed_tokens.weight', [V, H], mat(V, H, 1)]];
  for (let i = 0; i < LAYERS; i++) {
    const p = `model.layers.${i}`;
    tensors.push(
      [`${p}.input_layernorm.weight`, [H], ones(H)],
      [`${p}.self_attn.q_proj.weight`, [HEADS * HEAD_DIM, H], mat(HEADS * HEAD_DIM, H, 0.15)],
      [`${p}.self_attn.k_proj.weight`, [KV_HEADS * HEAD_DIM, H], mat(KV_HEADS * HEAD_DIM, H, 0.15)],
      [`${p}.self_attn.v_proj.weight`, [KV_HEADS * HEAD_DIM, H], mat(KV_HEADS * HEAD_DIM, H, 0.15)],
      [`${p}.self_attn.o_proj.weight`, [H, HEADS * HEAD_DIM], mat(H, HEADS * HEAD_DIM, 0.1)],
      [`${p}.post_attention_layernorm.weight`, [H], ones(H)],
      [`${p}.mlp.gate_proj.weight`, [FFN, H], mat(FFN, H, 0.15)],
      [`${p}.mlp.up_proj.weight`, [FFN, H], mat(FFN, H, 0.15)],
      [`${p}.mlp.down_proj.weight`, [H, FFN], mat(H, FFN, 0.1)],
    );
  }
  const head = mat(V, H, 0.2);
  head.fill(0, 2 * H, 3 * H); // <|im_end|> (EOS) gets logit 0: greedy decoding never ends on its own
  tensors.push(['model.norm.weight', [H], ones(H)], ['lm_head.weight', [V, H], head]);
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 2,
    hidden_act: 'silu',
    hidden_size: H,
    intermediate_size: FFN,
    num_hidden_layers: LAYERS,
    num_attention_heads: HEADS,
    num_key_value_heads: KV_HEADS,
    head_dim: HEAD_DIM,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    tie_word_embeddings: false,
    vocab_size: V,
    dtype: 'float32',
  };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: Object.fromEntries(VOCAB.map((w, i) => [w, i])), unk_token: '<|endoftext|>' },
  };
  const template =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' + message['content'] + '<|im_end|>' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant ' }}{% endif %}";
  const tokenizerConfig = { bos_token: '<|im_start|>', eos_token: '<|im_end|>', pad_token: '<|im_end|>', unk_token: '<|endoftext|>', chat_template: template };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2));
  await writeFile(join(dir, 'model.safetensors'), safetensors(tensors));
  return dir;
}
