// Drop whole-line comments from the shipped JS (scripts/build_pkg.sh): lines that are only a `//`
// comment, and `/* … */` blocks that start at the beginning of a line (after indentation) and
// end at the end of a line. Code lines are kept as they are (no minification; index.d.ts keeps
// the documentation). Refuses a file where a template literal spans lines (its lines could look
// like comments) and checks the result parses (`node --check`). Usage: node strip_js_comments.mjs FILE…
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

for (const file of process.argv.slice(2)) {
  const src = readFileSync(file, 'utf8');
  const lines = src.split('\n');
  const out = [];
  let inBlock = false;
  for (const line of lines) {
    const t = line.trim();
    if (inBlock) {
      if (t.includes('*/')) {
        if (!t.endsWith('*/')) throw new Error(`${file}: code after the end of a comment block: ${line}`);
        inBlock = false;
      }
      continue;
    }
    if (t.startsWith('//')) continue;
    if (t.startsWith('/*')) {
      const end = t.indexOf('*/', 2);
      if (end < 0) inBlock = true;
      else if (end + 2 !== t.length) out.push(line); // code after the comment: keep the line
      continue;
    }
    // A backtick count that is odd outside comments: a template literal spans lines.
    if ((line.split('`').length - 1) % 2 === 1) throw new Error(`${file}: a template literal spans lines: ${line}`);
    out.push(line);
  }
  if (inBlock) throw new Error(`${file}: unterminated comment block`);
  writeFileSync(file, out.join('\n'));
  execFileSync(process.execPath, ['--check', file], { stdio: 'inherit' });
}
