// A JSON editor: a textarea with line numbers, and the API's validation errors shown next
// to the line of the field they name (`spec.listeners[0].portMapping.port: ...`).

const LINE_HEIGHT = 20; // px; style.css sets the same for .editor textarea and .gutter

// Where each JSON path starts in `text`: {"spec.listeners[0].portMapping.port": offset}.
// A small recursive-descent walk; on a syntax error it returns what it found so far.
export function locatePaths(text) {
  const found = {};
  let i = 0;
  const ws = () => { while (i < text.length && /\s/.test(text[i])) i++; };
  const str = () => {
    const start = ++i;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    return text.slice(start, i++);
  };
  const value = (path) => {
    ws();
    found[path] = i;
    if (text[i] === '{') {
      i++; ws();
      while (i < text.length && text[i] !== '}') {
        ws();
        const keyAt = i;
        const key = str();
        const child = path ? `${path}.${key}` : key;
        ws(); i++; // ':'
        value(child);
        found[child] = keyAt; // point at the key, where a reader looks
        ws();
        if (text[i] === ',') i++;
        ws();
      }
      i++;
    } else if (text[i] === '[') {
      i++; ws();
      let n = 0;
      while (i < text.length && text[i] !== ']') {
        value(`${path}[${n++}]`);
        ws();
        if (text[i] === ',') i++;
        ws();
      }
      i++;
    } else if (text[i] === '"') {
      str();
    } else {
      while (i < text.length && !/[,\]}\s]/.test(text[i])) i++;
    }
  };
  try { value(''); } catch (_) { /* partial map is still useful */ }
  return found;
}

// The line (1-based) an API error message points at, or null. Falls back to the nearest
// ancestor path that exists, so a missing member marks its parent object.
export function lineOfError(text, message) {
  const m = /^([A-Za-z_][\w.[\]]*): /.exec(message || '');
  if (!m) return null;
  const paths = locatePaths(text);
  let path = m[1];
  while (path && !(path in paths)) {
    path = path.replace(/(\.[^.[\]]*|\[\d+\])$/, '');
    if (!/[.[]/.test(path) && !(path in paths)) break;
  }
  if (!(path in paths)) return null;
  return text.slice(0, paths[path]).split('\n').length;
}

export class JsonEditor {
  constructor(container, { label, value, id }) {
    this.root = document.createElement('div');
    this.root.className = 'editor';
    this.gutter = document.createElement('pre');
    this.gutter.className = 'gutter';
    this.gutter.setAttribute('aria-hidden', 'true');
    this.area = document.createElement('textarea');
    this.area.id = id;
    this.area.spellcheck = false;
    this.area.setAttribute('aria-label', label);
    this.area.value = JSON.stringify(value, null, 2);
    this.marker = document.createElement('div');
    this.marker.className = 'field-error';
    this.marker.id = `${id}-error`;
    this.marker.setAttribute('role', 'alert');
    this.marker.hidden = true;
    this.area.setAttribute('aria-describedby', this.marker.id);
    this.root.append(this.gutter, this.area, this.marker);
    container.append(this.root);
    this.errorLine = null;
    this.dirty = false;
    this.area.addEventListener('input', () => { this.dirty = true; this.clearError(); this.renderGutter(); });
    this.area.addEventListener('scroll', () => { this.gutter.scrollTop = this.area.scrollTop; this.place(); });
    // Tab indents instead of leaving the field; Escape then Tab leaves it (keyboard users).
    this.area.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { this.escaped = true; return; }
      if (e.key === 'Tab' && !e.shiftKey && !this.escaped) {
        e.preventDefault();
        this.area.setRangeText('  ', this.area.selectionStart, this.area.selectionEnd, 'end');
        this.dirty = true;
      }
      this.escaped = false;
    });
    this.renderGutter();
  }

  renderGutter() {
    const lines = this.area.value.split('\n').length;
    const out = [];
    for (let n = 1; n <= lines; n++) out.push(n === this.errorLine ? `! ${n}` : `${n}`);
    this.gutter.textContent = out.join('\n');
    this.area.rows = Math.min(Math.max(lines + 1, 8), 30);
  }

  // Parses the text; throws an Error naming the JSON problem.
  value() {
    try { return JSON.parse(this.area.value); } catch (e) { throw new Error(`not valid JSON: ${e.message}`); }
  }

  showError(message) {
    this.errorLine = lineOfError(this.area.value, message);
    this.marker.textContent = message;
    this.marker.hidden = false;
    this.marker.classList.toggle('at-line', this.errorLine !== null);
    this.area.setAttribute('aria-invalid', 'true');
    this.renderGutter();
    this.place();
  }

  clearError() {
    if (this.marker.hidden) return;
    this.errorLine = null;
    this.marker.hidden = true;
    this.area.removeAttribute('aria-invalid');
    this.renderGutter();
  }

  // Puts the message beside its line, following the textarea's scroll.
  place() {
    if (this.errorLine === null || this.marker.hidden) {
      this.marker.style.top = '';
      return;
    }
    const top = 8 + (this.errorLine - 1) * LINE_HEIGHT - this.area.scrollTop;
    this.marker.style.top = `${Math.max(0, top)}px`;
  }
}
