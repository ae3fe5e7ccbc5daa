// kjarni-web: errors and request validation (no wasm here, so it is tested without a browser:
// tests/page/request.test.mjs). Every refusal is INVALID_ARGUMENT with `field` naming the field.

/** An error from kjarni-web. `code` is stable (see README: Errors); `field` names the bad field. */
export class KjarniError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'KjarniError';
    this.code = code;
    if (options?.field !== undefined) this.field = options.field;
  }
}

/** The roles a chat message may have. */
export const ROLES = ['system', 'user', 'assistant', 'tool'];
/** At most this many stop strings (as OpenAI). */
export const MAX_STOP = 4;
/** Longest stop string, in UTF-16 code units. */
export const MAX_STOP_LENGTH = 256;
/** Seeds are integers below 2^53 (exact as JS numbers and in the JSON sent to the engine). */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

function invalid(field, what) {
  return new KjarniError('INVALID_ARGUMENT', `${field} ${what}`, { field });
}

/** Lone UTF-16 surrogates are replaced by U+FFFD (String.prototype.toWellFormed). */
export function wellFormed(s) {
  return typeof s.toWellFormed === 'function'
    ? s.toWellFormed()
    : s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

function number(req, key, { integer = false, min = -Infinity, max = Infinity, minExclusive = false, what }) {
  const v = req[key];
  if (v == null) return undefined;
  const ok =
    typeof v === 'number' && Number.isFinite(v) && (!integer || Number.isInteger(v)) &&
    (minExclusive ? v > min : v >= min) && v <= max;
  if (!ok) throw invalid(key, `must be ${what} (got ${typeof v === 'number' ? v : typeof v})`);
  return v;
}

/**
 * Validate an OpenAI-style chat request and keep what the engine uses. `maxContext`: the
 * engine's context (max_tokens beyond it is refused). Throws INVALID_ARGUMENT naming the field.
 */
export function normaliseRequest(req, maxContext) {
  if (!req || typeof req !== 'object') throw invalid('request', 'must be an object');
  if (!Array.isArray(req.messages) || req.messages.length === 0) {
    throw invalid('messages', 'must be a non-empty array of { role, content }');
  }
  const messages = req.messages.map((m, i) => {
    if (!m || typeof m !== 'object') throw invalid(`messages[${i}]`, 'must be an object { role, content }');
    if (typeof m.role !== 'string' || !ROLES.includes(m.role)) {
      throw invalid(`messages[${i}].role`, `must be one of ${ROLES.join(', ')} (got ${JSON.stringify(m.role)})`);
    }
    // An assistant message may call tools (then its content may be null); a tool message
    // names the call it answers. Both render through the model's chat template.
    let toolCalls;
    if (m.tool_calls != null) {
      if (m.role !== 'assistant') throw invalid(`messages[${i}].tool_calls`, 'only an assistant message may have tool_calls');
      if (!Array.isArray(m.tool_calls)) throw invalid(`messages[${i}].tool_calls`, "must be an array of { id, type: 'function', function: { name, arguments } }");
      toolCalls = m.tool_calls.map((c, j) => {
        const f = c?.function;
        if (typeof f?.name !== 'string' || typeof f?.arguments !== 'string') {
          throw invalid(`messages[${i}].tool_calls[${j}].function`, 'must be { name, arguments } (arguments: JSON text)');
        }
        let args;
        try {
          args = JSON.parse(f.arguments);
        } catch {
          args = null;
        }
        if (args === null || typeof args !== 'object' || Array.isArray(args)) {
          throw invalid(`messages[${i}].tool_calls[${j}].function.arguments`, 'must be the JSON text of an object');
        }
        return { id: String(c.id ?? `call_${j}`), type: 'function', function: { name: f.name, arguments: f.arguments } };
      });
    }
    let content = m.content == null && toolCalls ? '' : m.content;
    if (Array.isArray(content)) {
      content = content
        .map((p, j) => {
          if (p?.type !== 'text' || typeof p.text !== 'string') {
            throw invalid(`messages[${i}].content[${j}]`, "must be a text part { type: 'text', text }");
          }
          return p.text;
        })
        .join('');
    }
    if (typeof content !== 'string') throw invalid(`messages[${i}].content`, 'must be a string or an array of text parts');
    const out = { role: m.role, content: wellFormed(content) };
    if (toolCalls) out.tool_calls = toolCalls;
    if (m.role === 'tool' && typeof m.tool_call_id === 'string') out.tool_call_id = m.tool_call_id;
    return out;
  });
  let stop = req.stop == null ? [] : Array.isArray(req.stop) ? req.stop : [req.stop];
  if (stop.length > MAX_STOP) throw invalid('stop', `may hold at most ${MAX_STOP} strings (got ${stop.length})`);
  stop = stop.map((s, i) => {
    if (typeof s !== 'string' || s.length === 0 || s.length > MAX_STOP_LENGTH) {
      throw invalid(`stop[${i}]`, `must be a non-empty string of at most ${MAX_STOP_LENGTH} characters`);
    }
    return wellFormed(s);
  });
  const body = { messages, stop };
  if (req.max_tokens != null && req.max_completion_tokens != null && req.max_tokens !== req.max_completion_tokens) {
    throw invalid('max_tokens', 'and max_completion_tokens disagree');
  }
  const key = req.max_tokens != null ? 'max_tokens' : 'max_completion_tokens';
  const limit = maxContext > 0 ? maxContext : Infinity;
  const maxTokens = number(req, key, { integer: true, min: 1, max: limit, what: `an integer from 1 to the context (${limit})` });
  if (maxTokens !== undefined) body.max_tokens = maxTokens;
  const fields = {
    temperature: { min: 0, what: 'a finite number ≥ 0' },
    top_p: { min: 0, minExclusive: true, max: 1, what: 'a number in (0, 1]' },
    top_k: { integer: true, min: 0, what: 'an integer ≥ 0' },
    min_p: { min: 0, max: 1, what: 'a number in [0, 1]' },
    repetition_penalty: { min: 0, minExclusive: true, what: 'a finite number > 0' },
    seed: { integer: true, min: 0, max: MAX_SEED, what: `an integer from 0 to 2^53 - 1` },
  };
  for (const [k, spec] of Object.entries(fields)) {
    const v = number(req, k, spec);
    if (v !== undefined) body[k] = v;
  }
  // Structured output (the schema itself is checked in Rust: INVALID_ARGUMENT names its path).
  if (req.response_format != null) {
    if (typeof req.response_format !== 'object' || typeof req.response_format.type !== 'string') {
      throw invalid('response_format', "must be { type: 'text' | 'json_object' | 'json_schema' | 'regex' | 'grammar', ... }");
    }
    body.response_format = req.response_format;
  }
  if (req.tools != null) {
    if (!Array.isArray(req.tools)) throw invalid('tools', 'must be an array of { type: "function", function: { name, description, parameters } }');
    body.tools = req.tools;
    if (req.tool_choice != null) body.tool_choice = req.tool_choice;
  }
  return body;
}
