/**
 * The playground page: choose or edit a scenario, step through it, and see the model's state and
 * the 2-D walk of any translation. Everything runs here, in the page: the same model `vfio-nest run`
 * runs, imported from src/. The URL fragment holds the scenario and the step, so links reopen them.
 */

import { $, fill, h } from './dom.ts';
import { DEMO, EXAMPLES, type Example } from './examples.ts';
import { buildGrid } from './grid.ts';
import { renderGrid, renderGuest, renderSmmu, renderStepCard, renderStepItem, renderVfio } from './render.ts';
import { isLoadError, type LoadError, parseScenario, Session } from './session.ts';
import { guestView, smmuView, vfioView } from './state.ts';
import { decodeState, encodeState, parseNumber, TABS, type Tab } from './url.ts';

const hex = (v: number): string => `0x${v.toString(16)}`;

interface Source {
  text: string;
  /** The name messages use: the example's path, as `vfio-nest run examples/x.yaml` shows it. */
  path: string;
  /** The example the text is, unchanged; null once edited. */
  example: Example | null;
}

interface Explore {
  iova?: number;
  write: boolean;
  sid?: number;
  cold: boolean;
}

const TAB_NAMES: Record<Tab, string> = {
  walk: 'Walk',
  vfio: 'VFIO',
  smmu: 'Host SMMU',
  guest: 'Guest vSMMU',
};

class App {
  private source: Source = { text: DEMO.text, path: DEMO.path, example: DEMO };
  private session: Session | null = null;
  private error: LoadError | null = null;
  private tab: Tab = 'walk';
  private explore: Explore = { write: false, cold: false };
  private urlSeq = 0;
  private lastHash = '';

  async start(): Promise<void> {
    this.wire();
    await this.fromUrl(location.hash);
    window.addEventListener('hashchange', () => {
      if (location.hash.replace(/^#/, '') !== this.lastHash) void this.fromUrl(location.hash);
    });
  }

  // ---- Loading --------------------------------------------------------------------------------

  private async fromUrl(hash: string): Promise<void> {
    const st = await decodeState(hash);
    const example = st.file !== undefined ? EXAMPLES.find((e) => e.name === st.file) : undefined;
    let notice: string | null = st.damaged ?? null;
    if (st.yaml !== undefined) {
      const same = EXAMPLES.find((e) => e.text === st.yaml) ?? null;
      this.source = { text: st.yaml, path: same?.path ?? st.name ?? 'scenario.yaml', example: same };
    } else if (example !== undefined) {
      this.source = { text: example.text, path: example.path, example };
    } else {
      if (st.file !== undefined) notice = `No example is called ${st.file}: here is the demo.`;
      this.source = { text: DEMO.text, path: DEMO.path, example: DEMO };
    }
    this.tab = st.tab ?? 'walk';
    this.explore = { iova: st.iova, write: st.write ?? false, sid: st.sid, cold: st.cold ?? false };
    this.load();
    this.session?.goto(st.position);
    this.showNotice(notice);
    this.render();
    if (this.error !== null) this.showErrorLine();
  }

  /** Parses the current source; a bad one leaves no session and an error to show at its line. */
  private load(): void {
    this.session?.finish();
    const sc = parseScenario(this.source.text, this.source.path);
    if (isLoadError(sc)) {
      this.session = null;
      this.error = sc;
    } else {
      this.session = new Session(sc);
      this.error = null;
    }
    $<HTMLTextAreaElement>('#yaml').value = this.source.text;
  }

  private choose(name: string): void {
    const ex = EXAMPLES.find((e) => e.name === name);
    if (ex === undefined) return;
    this.source = { text: ex.text, path: ex.path, example: ex };
    this.explore = { write: false, cold: false };
    this.load();
    this.render();
  }

  private runEditor(): void {
    const text = $<HTMLTextAreaElement>('#yaml').value;
    const same = EXAMPLES.find((e) => e.text === text) ?? null;
    this.source = { text, path: same?.path ?? this.source.path, example: same };
    this.load();
    this.render();
    if (this.error === null) $('#next').focus();
    else this.showErrorLine();
  }

  /** Opens the editor with the line the error names selected. */
  private showErrorLine(): void {
    if (this.error === null) return;
    this.openEditor(true);
    selectLine($<HTMLTextAreaElement>('#yaml'), this.error.line);
  }

  // ---- Stepping -------------------------------------------------------------------------------

  private go(f: (s: Session) => void): void {
    if (this.session === null) return;
    f(this.session);
    this.render();
  }

  // ---- Events ---------------------------------------------------------------------------------

  private wire(): void {
    const select = $<HTMLSelectElement>('#scenario');
    select.addEventListener('change', () => this.choose(select.value));
    $('#reset').addEventListener('click', () => this.go((s) => s.reset()));
    $('#back').addEventListener('click', () => this.go((s) => s.back()));
    $('#next').addEventListener('click', () => this.go((s) => s.next()));
    $('#end').addEventListener('click', () => this.go((s) => s.runToEnd()));
    $('#edit').addEventListener('click', () => this.openEditor($('#editor').hidden !== false));
    $('#run-yaml').addEventListener('click', () => this.runEditor());
    $('#revert').addEventListener('click', () => {
      // Back to the example the text came from (or to the text last run, when it is not one).
      const ex = EXAMPLES.find((e) => e.path === this.source.path);
      $<HTMLTextAreaElement>('#yaml').value = ex?.text ?? this.source.text;
    });
    $('#share').addEventListener('click', () => void this.copyLink());
    $('#keys-btn').addEventListener('click', () => this.toggleHelp());
    $<HTMLTextAreaElement>('#yaml').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.runEditor();
      }
    });
    const tabs = $('#tabs');
    for (const [i, t] of TABS.entries()) {
      const b = h(
        'button',
        {
          type: 'button',
          role: 'tab',
          id: `tab-${t}`,
          'aria-controls': 'panel',
          'aria-keyshortcuts': String(i + 1),
          onclick: () => this.setTab(t),
        },
        TAB_NAMES[t],
      );
      tabs.appendChild(b);
    }
    tabs.addEventListener('keydown', (e) => {
      const i = TABS.indexOf(this.tab);
      const k = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (k === 0) return;
      e.preventDefault();
      e.stopPropagation();
      this.setTab(TABS[(i + k + TABS.length) % TABS.length]);
      $(`#tab-${this.tab}`).focus();
    });
    document.addEventListener('keydown', (e) => this.key(e));
  }

  private key(e: KeyboardEvent): void {
    if (e.altKey || e.ctrlKey || e.metaKey || e.defaultPrevented) return;
    const t = e.target as HTMLElement;
    if (t.closest('input, textarea, select, [contenteditable]')) {
      if (e.key === 'Escape') t.blur();
      return;
    }
    const actions: Record<string, () => void> = {
      ArrowRight: () => this.go((s) => s.next()),
      j: () => this.go((s) => s.next()),
      ArrowLeft: () => this.go((s) => s.back()),
      k: () => this.go((s) => s.back()),
      Home: () => this.go((s) => s.reset()),
      End: () => this.go((s) => s.runToEnd()),
      '/': () => {
        this.setTab('walk');
        $('#iova').focus();
      },
      e: () => this.openEditor($('#editor').hidden !== false),
      '?': () => this.toggleHelp(),
      Escape: () => {
        $('#help').hidden = true;
      },
    };
    TABS.forEach((tab, i) => {
      actions[String(i + 1)] = () => this.setTab(tab);
    });
    const a = actions[e.key];
    if (a === undefined) return;
    e.preventDefault();
    a();
  }

  private setTab(t: Tab): void {
    this.tab = t;
    this.render();
  }

  private openEditor(open: boolean): void {
    $('#editor').hidden = !open;
    $('#edit').setAttribute('aria-expanded', String(open));
    if (open) $('#yaml').focus();
  }

  private toggleHelp(): void {
    const help = $('#help');
    help.hidden = !help.hidden;
    $('#keys-btn').setAttribute('aria-expanded', String(!help.hidden));
  }

  private showNotice(text: string | null): void {
    const n = $('#notice');
    n.hidden = text === null;
    n.textContent = text ?? '';
  }

  private async copyLink(): Promise<void> {
    const status = $('#share-status');
    try {
      await navigator.clipboard.writeText(location.href);
      status.textContent = 'Link copied.';
    } catch {
      status.textContent = 'The address bar holds the link to this step.';
    }
  }

  // ---- Rendering ------------------------------------------------------------------------------

  private render(): void {
    this.renderHeader();
    this.renderError();
    const s = this.session;
    $('#main').hidden = s === null;
    if (s !== null) {
      this.renderSteps(s);
      fill($('#card'), renderStepCard(s));
      this.renderTabs(s);
    }
    void this.syncUrl();
  }

  private renderHeader(): void {
    const select = $<HTMLSelectElement>('#scenario');
    const options = EXAMPLES.map((e) =>
      h('option', { value: e.name, selected: this.source.example === e }, e.name),
    );
    if (this.source.example === null)
      options.unshift(h('option', { value: '', selected: true }, `${this.source.path} (edited)`));
    fill(select, options);
    const sc = this.session?.scenario;
    $('#description').textContent = sc?.description ?? this.source.example?.description ?? '';
    $('#host').textContent = sc
      ? `kernel ${sc.host.kernel ?? '6.12'} · ${sc.host.iommu ?? 'intel'}${sc.host.iommu === 'smmuv3' ? ` (${sc.host.smmu ?? 's1s2'})` : ''}${sc.host.nestBind ? ' · nest_bind' : ''}`
      : '';
  }

  private renderError(): void {
    const box = $('#yaml-error');
    const e = this.error;
    box.hidden = e === null;
    if (e === null) {
      box.replaceChildren();
      return;
    }
    const lines = this.source.text.split('\n');
    const from = Math.max(0, e.line - 3);
    const excerpt = lines.slice(from, e.line).map((l, i) => `${String(from + i + 1).padStart(4)} | ${l}`);
    excerpt.push(`${' '.repeat(4)} | ${' '.repeat(Math.max(0, e.col - 1))}^`);
    fill(
      box,
      h('p', null, h('strong', null, 'This scenario cannot run: ')),
      h('p', { 'data-testid': 'yaml-error' }, h('code', null, e.message)),
      h('pre', { class: 'excerpt' }, excerpt.join('\n')),
      h(
        'button',
        {
          type: 'button',
          onclick: () => this.showErrorLine(),
        },
        `Go to line ${e.line}`,
      ),
    );
  }

  private renderSteps(s: Session): void {
    const list = $('#steps');
    fill(
      list,
      s.scenario.steps.map((_, i) =>
        renderStepItem(s, i, (p) => {
          s.goto(p);
          this.render();
        }),
      ),
    );
    const p = s.position;
    $('#position').textContent =
      p === 0 ? `no step run yet, ${s.length} to go` : `after step ${p - 1} of ${s.length - 1}`;
    $<HTMLButtonElement>('#reset').disabled = p === 0;
    $<HTMLButtonElement>('#back').disabled = p === 0;
    $<HTMLButtonElement>('#next').disabled = s.atEnd;
    $<HTMLButtonElement>('#end').disabled = s.atEnd;
    const halted = $('#halted');
    halted.hidden = s.halted === null;
    halted.textContent = s.halted ?? '';
    // Keep the current step in view inside the list, without scrolling the page.
    const current = list.querySelector<HTMLElement>('.current')?.parentElement;
    if (current) {
      const top = current.offsetTop;
      if (top < list.scrollTop) list.scrollTop = top;
      else if (top + current.offsetHeight > list.scrollTop + list.clientHeight)
        list.scrollTop = top + current.offsetHeight - list.clientHeight;
    }
  }

  private renderTabs(s: Session): void {
    for (const t of TABS) {
      const b = $(`#tab-${t}`);
      b.setAttribute('aria-selected', String(t === this.tab));
      b.tabIndex = t === this.tab ? 0 : -1;
    }
    const panel = $('#panel');
    panel.setAttribute('aria-labelledby', `tab-${this.tab}`);
    const explore = (iova: number): void => {
      this.explore = { ...this.explore, iova };
      this.tab = 'walk';
      this.render();
      document.getElementById('explore-walk')?.scrollIntoView({ block: 'start' });
    };
    const runner = s.current;
    switch (this.tab) {
      case 'walk':
        fill(panel, this.walkPanel(s));
        break;
      case 'vfio':
        fill(panel, renderVfio(vfioView(runner), runner.host.smmu !== null ? explore : null));
        break;
      case 'smmu':
        fill(panel, renderSmmu(smmuView(runner.host), explore));
        break;
      case 'guest':
        fill(panel, renderGuest(guestView(runner)));
        break;
    }
  }

  private walkPanel(s: Session): HTMLElement[] {
    const host = s.current.host;
    if (host.smmu === null)
      return [
        h(
          'p',
          { class: 'empty' },
          `This host's IOMMU is ${host.iommu.name}: the walk grid is for SMMUv3 hosts (host: { iommu: smmuv3 }), such as the demo's.`,
        ),
      ];
    const out: HTMLElement[] = [];
    const o = s.position > 0 ? s.outcomes[s.position - 1] : null;
    if (o?.walk) {
      out.push(
        renderGrid(buildGrid(o.walk), {
          id: 'step-walk',
          title: `Step ${o.index}'s translation`,
          intro:
            o.kind === 'walk'
              ? 'A walk step explains a cold walk: every read, with nothing cached.'
              : `The ${o.kind === 'copy' ? "copy's first read" : 'DMA'} as it met the SMMU: caches as they were just before the step (a hit reads nothing).`,
        }),
      );
    }
    // The explorer: a typed or clicked address, else (on a step without one) the last one used.
    const auto = o?.walk ? null : s.position > 0 ? s.lastAddress() : null;
    const iova = this.explore.iova ?? auto?.iova;
    const write = this.explore.iova !== undefined ? this.explore.write : (auto?.write ?? false);
    out.push(this.exploreForm(iova, write));
    if (iova !== undefined) {
      const x = s.explain(iova, { write, sid: this.explore.sid, cold: this.explore.cold });
      if (typeof x === 'string') out.push(h('p', { class: 'empty' }, x));
      else
        out.push(
          renderGrid(buildGrid(x), {
            id: 'explore-walk',
            title: `${write ? 'Write' : 'Read'} of ${hex(iova)} now`,
            intro: `On the state ${s.position === 0 ? 'before any step' : `after step ${s.position - 1}`}, ${this.explore.cold ? 'with nothing cached' : 'with the caches as they are (a hit reads nothing)'}. A dry run: nothing is cached, no event recorded.`,
          }),
        );
    } else if (o?.walk === null || o === null) {
      out.push(
        h(
          'p',
          { class: 'empty' },
          s.position === 0
            ? 'Step forward to a DMA or walk step, or type an address above.'
            : 'Type an address above to see its walk.',
        ),
      );
    }
    return out;
  }

  private exploreForm(iova: number | undefined, write: boolean): HTMLElement {
    const err = h('p', { class: 'form-error', role: 'alert' });
    const form = h(
      'form',
      { class: 'explore', id: 'explore-form', 'aria-label': 'Explain a translation' },
      h(
        'label',
        null,
        'Address ',
        h('input', {
          id: 'iova',
          name: 'iova',
          autocomplete: 'off',
          spellcheck: 'false',
          placeholder: '0x1000000',
          value: iova !== undefined ? hex(iova) : '',
          size: 14,
        }),
      ),
      h(
        'label',
        null,
        'StreamID ',
        h('input', {
          id: 'sid',
          name: 'sid',
          autocomplete: 'off',
          spellcheck: 'false',
          placeholder: this.session ? hex(this.session.current.host.devices[0].rid) : '',
          value: this.explore.sid !== undefined ? hex(this.explore.sid) : '',
          size: 6,
        }),
      ),
      h(
        'label',
        null,
        'Access ',
        h(
          'select',
          { id: 'access', name: 'access' },
          h('option', { value: 'read', selected: !write }, 'read'),
          h('option', { value: 'write', selected: write }, 'write'),
        ),
      ),
      h(
        'label',
        { class: 'check' },
        h('input', { type: 'checkbox', id: 'cold', name: 'cold', checked: this.explore.cold }),
        ' ignore the caches',
      ),
      h('button', { type: 'submit' }, 'Show the walk'),
      err,
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const iovaText = String(data.get('iova') ?? '');
      const sidText = String(data.get('sid') ?? '').trim();
      const n = parseNumber(iovaText);
      const sid = sidText === '' ? undefined : parseNumber(sidText);
      if (n === undefined) {
        err.textContent = `Address: '${iovaText}' is not a number (like 0x1000 or 4096)`;
        return;
      }
      if (sidText !== '' && sid === undefined) {
        err.textContent = `StreamID: '${sidText}' is not a number (like 0x8 or 8)`;
        return;
      }
      this.explore = { iova: n, write: data.get('access') === 'write', sid, cold: data.get('cold') !== null };
      this.render();
      document.getElementById('explore-walk')?.scrollIntoView({ block: 'nearest' });
    });
    return form;
  }

  private async syncUrl(): Promise<void> {
    const seq = ++this.urlSeq;
    const hash = await encodeState({
      ...(this.source.example !== null
        ? { file: this.source.example.name }
        : { yaml: this.source.text, name: this.source.path }),
      position: this.session?.position ?? 0,
      tab: this.tab,
      ...(this.explore.iova !== undefined
        ? {
            iova: this.explore.iova,
            write: this.explore.write,
            sid: this.explore.sid,
            cold: this.explore.cold,
          }
        : {}),
    });
    if (seq !== this.urlSeq || hash === this.lastHash) return;
    this.lastHash = hash;
    history.replaceState(null, '', `#${hash}`);
  }
}

/** Selects line `n` (1-based) of a textarea and scrolls it into view. */
function selectLine(ta: HTMLTextAreaElement, n: number): void {
  const lines = ta.value.split('\n');
  const start = lines.slice(0, n - 1).reduce((a, l) => a + l.length + 1, 0);
  ta.focus();
  ta.setSelectionRange(start, start + (lines[n - 1]?.length ?? 0));
  const lineHeight = ta.scrollHeight / Math.max(lines.length, 1);
  ta.scrollTop = Math.max(0, (n - 3) * lineHeight);
}

void new App().start();
