// Request validation of the JS API (js/request.js): no browser, no wasm. Every refusal is a
// KjarniError INVALID_ARGUMENT whose `field` names the field (the table in js/README.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normaliseRequest, KjarniError, MAX_STOP } from '../../js/request.js';

const user = (content) => ({ role: 'user', content });
const ok = (extra, ctx = 2048) => normaliseRequest({ messages: [user('hi')], ...extra }, ctx);

function refused(req, field, ctx = 2048) {
  assert.throws(
    () => normaliseRequest(req, ctx),
    (e) => e instanceof KjarniError && e.code === 'INVALID_ARGUMENT' && e.field === field && e.message.startsWith(field),
    `${JSON.stringify(req)} → ${field}`,
  );
}

test('a valid request keeps what the engine uses', () => {
  const b = ok({ max_tokens: 8, temperature: 0.7, top_p: 0.9, top_k: 40, min_p: 0.05, repetition_penalty: 1.1, seed: 2 ** 53 - 1, stop: 'END' });
  assert.deepEqual(b, {
    messages: [{ role: 'user', content: 'hi' }], stop: ['END'], max_tokens: 8, temperature: 0.7, top_p: 0.9, top_k: 40,
    min_p: 0.05, repetition_penalty: 1.1, seed: 2 ** 53 - 1,
  });
  assert.deepEqual(ok({ max_completion_tokens: 3 }).max_tokens, 3);
  assert.deepEqual(normaliseRequest({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }] }).messages[0].content, 'ab');
});

test('bad requests are INVALID_ARGUMENT naming the field', () => {
  refused(null, 'request');
  refused({}, 'messages');
  refused({ messages: [] }, 'messages');
  refused({ messages: 'hi' }, 'messages');
  refused({ messages: [null] }, 'messages[0]');
  refused({ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role');
  refused({ messages: [user('a'), { content: 'x' }] }, 'messages[1].role');
  refused({ messages: [user(42)] }, 'messages[0].content');
  refused({ messages: [user({ text: 'x' })] }, 'messages[0].content');
  refused({ messages: [user([{ type: 'image_url', image_url: 'x' }])] }, 'messages[0].content[0]');
  const m = [user('hi')];
  for (const v of [0, -1, 1.5, NaN, Infinity, '8', 2049]) refused({ messages: m, max_tokens: v }, 'max_tokens');
  refused({ messages: m, max_completion_tokens: 0 }, 'max_completion_tokens');
  refused({ messages: m, max_tokens: 4, max_completion_tokens: 5 }, 'max_tokens');
  for (const v of [NaN, -0.1, Infinity, '1']) refused({ messages: m, temperature: v }, 'temperature');
  for (const v of [0, 1.01, NaN]) refused({ messages: m, top_p: v }, 'top_p');
  for (const v of [-1, 2.5]) refused({ messages: m, top_k: v }, 'top_k');
  for (const v of [-0.1, 1.1]) refused({ messages: m, min_p: v }, 'min_p');
  for (const v of [0, -1, NaN]) refused({ messages: m, repetition_penalty: v }, 'repetition_penalty');
  for (const v of [2 ** 53, -1, 0.5, 1e300]) refused({ messages: m, seed: v }, 'seed');
  refused({ messages: m, stop: Array(MAX_STOP + 1).fill('x') }, 'stop');
  refused({ messages: m, stop: [''] }, 'stop[0]');
  refused({ messages: m, stop: ['a', 7] }, 'stop[1]');
  refused({ messages: m, stop: 'x'.repeat(257) }, 'stop[0]');
});

test('max_tokens up to the context is accepted; without a known context there is no bound', () => {
  assert.equal(ok({ max_tokens: 2048 }).max_tokens, 2048);
  assert.equal(normaliseRequest({ messages: [user('hi')], max_tokens: 1e6 }).max_tokens, 1e6);
});

test('lone surrogates are repaired to U+FFFD, pairs are kept', () => {
  const b = ok({ messages: [user('a\uD800b\uDC00c\uD83D\uDE00')], stop: ['\uDFFF'] });
  assert.equal(b.messages[0].content, 'a\uFFFDb\uFFFDc\uD83D\uDE00');
  assert.deepEqual(b.stop, ['\uFFFD']);
  assert.ok(!JSON.stringify(b).includes('\\ud8'), 'the JSON sent to the engine has no lone surrogate');
});

test('tool calls and tool answers are kept for the next turn', () => {
  const call = { id: 'call_0', type: 'function', function: { name: 'add', arguments: '{"a":1}' } };
  const b = normaliseRequest({
    messages: [user('1+2?'), { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: 'call_0', content: '3' }],
  });
  assert.deepEqual(b.messages.slice(1), [
    { role: 'assistant', content: '', tool_calls: [call] },
    { role: 'tool', content: '3', tool_call_id: 'call_0' },
  ]);
  refused({ messages: [{ role: 'user', content: 'x', tool_calls: [call] }] }, 'messages[0].tool_calls');
  refused({ messages: [{ role: 'assistant', content: null, tool_calls: {} }] }, 'messages[0].tool_calls');
  refused({ messages: [{ role: 'assistant', content: null, tool_calls: [{ function: { name: 'f' } }] }] }, 'messages[0].tool_calls[0].function');
  refused({ messages: [{ role: 'assistant', content: null }] }, 'messages[0].content');
  refused({ messages: [{ role: 'assistant', content: null, tool_calls: [{ function: { name: 'f', arguments: '[1]' } }] }] }, 'messages[0].tool_calls[0].function.arguments');
});
