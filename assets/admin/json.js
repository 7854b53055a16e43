// JSON text with a member per line, for people, without parsing it: every key, number
// and string stays the exact text stored (JSON.parse would round 1.0000000000000001 and
// big integers, and merge repeated keys). The same rules as src/indent.rs.
'use strict';

window.posthornIndentJson = (text) => {
  const src = String(text);
  let out = '';
  let depth = 0;
  let inString = false;
  let escaped = false;
  const newline = () => {
    out += `\n${'  '.repeat(depth)}`;
  };
  for (let i = 0; i < src.length; i += 1) {
    const c = src[i];
    if (inString) {
      out += c;
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '{' || c === '[') {
      out += c;
      let j = i + 1;
      while (j < src.length && /\s/.test(src[j])) j += 1;
      const close = c === '{' ? '}' : ']';
      if (src[j] === close) {
        out += close;
        i = j;
      } else {
        depth += 1;
        newline();
      }
    } else if (c === '}' || c === ']') {
      depth = Math.max(0, depth - 1);
      newline();
      out += c;
    } else if (c === ',') {
      out += c;
      newline();
    } else if (c === ':') {
      out += ': ';
    } else if (!/\s/.test(c)) {
      out += c;
    }
  }
  return out;
};
