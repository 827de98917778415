/**
 * The playground's views, from the plain data of session.ts, grid.ts and state.ts to DOM: the step
 * card, the 2-D walk grid with its event record, and the VFIO, host SMMU and guest vSMMU panels.
 */

import { describeRequest, readAtText, translatingText } from '../src/scenario/index.ts';
import type { ExplainedRead } from '../src/smmu/index.ts';
import { type Child, h, table } from './dom.ts';
import type { GridCell, WalkGrid } from './grid.ts';
import type { Session, StepOutcome } from './session.ts';
import type { GuestView, QueueView, SmmuView, StructView, VfioView } from './state.ts';

const hex = (v: number): string => `0x${v.toString(16)}`;

/** An address that opens the walk grid for itself. */
export type Explore = (iova: number) => void;

function addrButton(text: string, explore: Explore | null): Child {
  const n = Number(text);
  if (explore === null || !Number.isSafeInteger(n)) return h('code', null, text);
  return h(
    'button',
    {
      class: 'link addr',
      type: 'button',
      title: `Show the walk of ${text}`,
      onclick: () => explore(n),
    },
    text,
  );
}

// ---- The step card --------------------------------------------------------------------------

export function renderStepCard(s: Session): HTMLElement {
  const p = s.position;
  const sc = s.scenario;
  if (p === 0) {
    const first = sc.steps[0];
    return h(
      'article',
      { class: 'card', 'aria-labelledby': 'card-title' },
      h('h2', { id: 'card-title' }, sc.name),
      sc.description ? h('p', { class: 'say' }, sc.description) : null,
      h(
        'p',
        null,
        first
          ? ['No step has run yet. ', h('kbd', null, '→'), ' or Next runs step 0.']
          : 'This scenario has no steps.',
      ),
    );
  }
  const o = s.outcomes[p - 1];
  const step = sc.steps[o.index];
  return h(
    'article',
    { class: `card ${o.ok ? 'ok' : 'failed'}`, 'aria-labelledby': 'card-title', 'data-step': o.index },
    h(
      'h2',
      { id: 'card-title' },
      `Step ${o.index} `,
      h('span', { class: 'of' }, `· ${o.index + 1} of ${s.length} · line ${o.line}`),
    ),
    step.say ? h('p', { class: 'say' }, step.say) : null,
    h(
      'dl',
      { class: 'exchange' },
      h('dt', null, 'asked'),
      h('dd', null, h('code', null, o.request)),
      h('dt', null, 'answer'),
      h('dd', { 'data-testid': 'answer' }, h('code', null, o.answer)),
      step.process !== 'main' ? [h('dt', null, 'process'), h('dd', null, step.process)] : null,
    ),
    o.ok
      ? step.expect
        ? h('p', { class: 'verdict ok' }, '✓ every expectation held')
        : null
      : h(
          'div',
          { class: 'verdict failed', role: 'status' },
          h('p', null, '✗ not as expected:'),
          h(
            'ul',
            null,
            o.failures.map((f) => h('li', null, h('code', null, `${sc.file}:${o.line}: ${f}`))),
          ),
        ),
    step.rule ? h('p', { class: 'rule' }, h('span', { class: 'tag' }, 'rule'), ' ', step.rule) : null,
    o.ioctls.length > 0
      ? h(
          'details',
          { class: 'ioctls', open: o.ioctls.length <= 6 },
          h('summary', null, `${o.ioctls.reduce((n, c) => n + c.count, 0)} ioctl(s)`),
          h(
            'ul',
            null,
            o.ioctls.map((c) =>
              h(
                'li',
                null,
                h('code', null, `ioctl(${c.fd}, ${c.name}) = ${c.ret}`),
                c.count > 1 ? h('span', { class: 'count' }, ` ×${c.count}`) : null,
              ),
            ),
          ),
        )
      : null,
  );
}

/** One line per step for the list: mark, index, request, answer. */
export function renderStepItem(s: Session, i: number, onSelect: (position: number) => void): HTMLElement {
  const step = s.scenario.steps[i];
  const o: StepOutcome | undefined = s.outcomes[i];
  const current = s.position - 1 === i;
  const state = o === undefined ? 'todo' : o.ok ? 'ok' : 'failed';
  const mark = o === undefined ? '' : o.ok ? '✓' : '✗';
  const req = o?.request ?? describeRequest(step);
  return h(
    'li',
    null,
    h(
      'button',
      {
        type: 'button',
        class: `step ${state}${current ? ' current' : ''}`,
        'aria-current': current ? 'step' : null,
        'data-index': i,
        title: `Go to the state after step ${i}`,
        onclick: () => onSelect(i + 1),
      },
      h(
        'span',
        { class: 'mark', 'aria-label': o === undefined ? 'not run' : o.ok ? 'held' : 'failed' },
        mark,
      ),
      h('span', { class: 'idx' }, String(i)),
      h('span', { class: 'req' }, req),
      o !== undefined ? h('span', { class: 'ans' }, `→ ${o.answer}`) : null,
    ),
  );
}

// ---- The walk grid --------------------------------------------------------------------------

function shortLabel(r: ExplainedRead): string {
  if (r.kind === 's1') return `S1 L${r.level}`;
  if (r.kind === 's2') return `${r.label} L${r.level}`;
  return r.label;
}

function cellLabel(c: GridCell): string {
  const r = c.read;
  if (c.state === 'skipped') return `${shortLabel(r)}: not read, ${c.why}`;
  const n = r.n ? `read ${r.n}` : 'configuration read';
  return `${n}${c.state === 'fault' ? ', faulted' : ''}: ${shortLabel(r)} at ${readAtText(r)}, value ${r.value}, ${r.meaning}`;
}

function cell(c: GridCell, onCell: (c: GridCell) => void): HTMLElement {
  const r = c.read;
  const kind = r.kind === 's1' ? 's1' : r.kind === 's2' ? (r.label === 'S2 CD' ? 'cfg s2' : 's2') : 'cfg';
  const skipped = c.state === 'skipped';
  return h(
    'button',
    {
      type: 'button',
      class: `cell ${kind} ${c.state}`,
      'data-state': c.state,
      'data-n': r.n || null,
      'aria-label': cellLabel(c),
      onclick: () => onCell(c),
    },
    h('span', { class: 'n' }, skipped ? '–' : r.n ? String(r.n) : '•'),
    h('span', { class: 'lbl' }, shortLabel(r)),
    skipped
      ? h('span', { class: 'why' }, c.why === 'TLB hit' ? 'TLB hit' : 'cached')
      : [
          h('span', { class: 'addr' }, `PA ${hex(r.pa)}`),
          h('span', { class: 'val' }, r.value),
          h('span', { class: 'mean' }, r.meaning.replace(' -> ', ' → ')),
        ],
  );
}

function eventRecord(g: WalkGrid): HTMLElement | null {
  if (g.outcome.kind !== 'fault') return null;
  const e = g.outcome.event;
  const nested = g.s2Levels.length > 0 && g.rows.some((r) => r.s1 !== null);
  const owner = e.silent
    ? 'not recorded: the CD (R) or STE (S2R) asks for no record'
    : nested
      ? e.s2
        ? 'stage 2 faulted: the host keeps this record'
        : 'stage 1 faulted: the guest owns stage 1, so the host hands this record to it'
      : 'written to the event queue';
  const fields: [string, string][] = [
    ['type', `${e.name} (0x${e.type.toString(16).padStart(2, '0')})`],
    ['StreamID', hex(e.sid)],
    ...(e.ssv ? ([['SubstreamID', String(e.ssid)]] as [string, string][]) : []),
    ['S2', String(e.s2)],
    ['CLASS', e.cls],
    ['RnW', `${e.rnw} (${e.rnw ? 'read' : 'write'})`],
    ['InD', String(e.ind)],
    ['PnU', String(e.pnu)],
    ['InputAddr', hex(e.inputAddr)],
  ];
  if (e.s2) fields.push(['IPA', hex(e.ipa)]);
  if (e.type === 0x0b || e.type === 0x03 || e.type === 0x09) fields.push(['FetchAddr', hex(e.fetchAddr)]);
  return h(
    'section',
    { class: 'event', 'data-testid': 'event-record', 'aria-label': 'Event record' },
    h('h4', null, `Event record: ${e.name}`),
    h('p', { class: 'owner' }, owner),
    h(
      'dl',
      { class: 'fields' },
      fields.map(([k, v]) => [h('dt', null, k), h('dd', null, h('code', null, v))]),
    ),
    h(
      'p',
      { class: 'words' },
      h('span', { class: 'tag' }, 'record'),
      ' ',
      h('code', null, e.words.join(' ')),
    ),
  );
}

function outcome(g: WalkGrid): HTMLElement {
  const o = g.outcome;
  if (o.kind === 'fault')
    return h('p', { class: 'outcome fault', 'data-testid': 'walk-outcome' }, `Fault: ${o.event.name}`);
  if (o.kind === 'silent')
    return h('p', { class: 'outcome fault', 'data-testid': 'walk-outcome' }, 'Terminated without an event');
  return h(
    'div',
    { class: 'outcome ok', 'data-testid': 'walk-outcome' },
    h(
      'p',
      null,
      `Result: PA ${hex(o.pa)}${o.ipa >= 0 && o.ipa !== o.pa ? ` (IPA ${hex(o.ipa)})` : ''}`,
      o.tlbHit ? ' — from the TLB' : '',
    ),
    o.stale
      ? h(
          'p',
          { class: 'stale' },
          `Stale: the tables now give ${o.stale.fault ?? `PA ${hex(o.stale.pa)} (IPA ${hex(o.stale.ipa)})`}; the TLB keeps the old translation until an invalidation reaches it.`,
        )
      : null,
  );
}

function cellDetail(c: GridCell): Child[] {
  const r = c.read;
  const rows: [string, string][] = [
    ['read', c.state === 'skipped' ? `not read: ${c.why}` : r.n ? `${r.n} of the walk` : 'configuration'],
    [
      'what',
      `${r.label}${r.level !== null ? ` level ${r.level}` : ''}${r.index !== null ? ` index ${r.index}` : ''}`,
    ],
  ];
  if (r.kind === 's1' || r.kind === 's2') rows.push(['translating', translatingText(r)]);
  rows.push(['descriptor at', readAtText(r)], ['value', r.value], ['meaning', r.meaning]);
  return [
    h(
      'dl',
      { class: 'fields' },
      rows.map(([k, v]) => [h('dt', null, k), h('dd', null, h('code', null, v))]),
    ),
    c.state === 'skipped' ? h('p', { class: 'note' }, 'What a walk with nothing cached reads here.') : null,
  ];
}

export function renderGrid(g: WalkGrid, opts: { title: string; intro?: string; id: string }): HTMLElement {
  const detail = h('div', { class: 'cell-detail', 'aria-live': 'polite' });
  const show = (c: GridCell): void => {
    detail.replaceChildren(...(cellDetail(c) as Node[]).filter((n) => n !== null));
  };
  const walkCells = g.rows.flatMap((r) => [...r.s2, r.s1]).filter((c): c is GridCell => c !== null);
  const s1 = walkCells.filter((c) => c.read.kind === 's1').length;
  const total = walkCells.length;
  const summary = [
    `${g.write ? 'Write' : 'Read'} of ${hex(g.iova)} by StreamID ${hex(g.sid)}: `,
    h('strong', null, `${g.reads} read${g.reads === 1 ? '' : 's'}`),
    total > 0 && s1 > 0 && total > s1
      ? ` (${s1} stage 1, ${total - s1} stage 2${g.shape ? ` = ${g.shape}` : ''})`
      : '',
    g.skipped > 0 ? `, ${g.skipped} skipped (${walkCells.find((c) => c.state === 'skipped')?.why})` : '',
  ];
  const cols = g.s2Levels;
  const head = h(
    'tr',
    null,
    h('th', { scope: 'col', class: 'corner' }, 'stage 1 ↓ stage 2 →'),
    cols.map((l) => h('th', { scope: 'col' }, `S2 L${l}`)),
    h('th', { scope: 'col' }, g.rows.some((r) => r.s1 !== null) ? 'S1 descriptor' : 'result'),
  );
  const body = g.rows.map((r, i) => {
    const last = i === g.rows.length - 1;
    let end: Child;
    if (r.s1 !== null) end = cell(r.s1, show);
    else if (last && g.outcome.kind === 'pa')
      end = h(
        'div',
        { class: 'cell result' },
        h('span', { class: 'lbl' }, 'PA'),
        h('span', { class: 'addr' }, hex(g.outcome.pa)),
      );
    else end = h('div', { class: 'cell none' }, '');
    return h(
      'tr',
      null,
      h(
        'th',
        { scope: 'row' },
        r.label,
        r.ipa >= 0
          ? h('small', null, r.label === 'output' ? `IPA ${hex(r.ipa)}` : `table at IPA ${hex(r.ipa)}`)
          : null,
      ),
      r.s2.map((c) => h('td', null, c === null ? h('div', { class: 'cell none' }, '') : cell(c, show))),
      h('td', null, end),
    );
  });
  const readsInOrder = [...g.config, ...walkCells];
  return h(
    'section',
    { class: 'walk', id: opts.id, 'aria-labelledby': `${opts.id}-title` },
    h(
      'h3',
      { id: `${opts.id}-title` },
      opts.title,
      opts.intro ? h('small', { class: 'intro' }, ` — ${opts.intro}`) : null,
    ),
    h('p', { class: 'walk-summary', 'data-testid': 'walk-summary' }, summary),
    g.config.length > 0
      ? h(
          'div',
          { class: 'config-strip' },
          h('span', { class: 'strip-label' }, 'Configuration'),
          h(
            'div',
            { class: 'strip' },
            g.config.map((c) => cell(c, show)),
          ),
        )
      : null,
    walkCells.length > 0
      ? h(
          'div',
          { class: 'grid-wrap' },
          h(
            'table',
            { class: 'grid', 'data-testid': 'walk-grid' },
            h('caption', { class: 'sr-only' }, 'Table walk: stage-1 levels down, stage-2 levels across'),
            h('thead', null, head),
            h('tbody', null, body),
          ),
        )
      : h('p', { class: 'empty' }, 'The table walk read nothing.'),
    outcome(g),
    eventRecord(g),
    detail,
    h(
      'details',
      { class: 'reads' },
      h(
        'summary',
        null,
        `Every read in order, as \`vfio-nest walk\` lists them (${readsInOrder.length} rows)`,
      ),
      table(
        ['#', 'read', 'lvl', 'translating', 'descriptor at', 'value', 'meaning'],
        readsInOrder.map((c) => {
          const r = c.read;
          const skip = c.state === 'skipped';
          return [
            r.n ? String(r.n) : '',
            r.label,
            r.level === null ? '' : `L${r.level}`,
            translatingText(r),
            skip ? `(${c.why})` : readAtText(r),
            skip ? '' : h('code', null, r.value),
            skip ? 'not read' : c.state === 'fault' ? h('strong', null, `${r.meaning} — fault`) : r.meaning,
          ];
        }),
        { class: 'reads-table' },
      ),
    ),
  );
}

// ---- VFIO -----------------------------------------------------------------------------------

export function renderVfio(v: VfioView, explore: Explore | null): HTMLElement {
  return h(
    'div',
    { class: 'state' },
    h('p', { class: 'note' }, `Kernel ${v.kernel} profile, ${v.iommu} IOMMU.`),
    v.groups.map((g) =>
      h(
        'section',
        null,
        h(
          'h3',
          null,
          `Group ${g.id}`,
          h('small', null, ` ${g.devices.join(', ')} · /dev/vfio/${g.id} ${g.open ? 'open' : 'closed'}`),
        ),
        g.container === null
          ? h('p', { class: 'empty' }, 'Not in a container.')
          : [
              h(
                'dl',
                { class: 'fields' },
                h('dt', null, 'container type'),
                h(
                  'dd',
                  { 'data-testid': 'container-type' },
                  g.container.type === null
                    ? g.container.typeName
                    : `${g.container.type} (${g.container.typeName})`,
                ),
                g.container.type !== null
                  ? [
                      h('dt', null, 'nesting domains'),
                      h('dd', null, g.container.nesting ? 'yes: mappings are stage 2' : 'no'),
                      h('dt', null, 'domains'),
                      h('dd', null, g.container.domains.join(', ') || 'none'),
                      h('dt', null, 'dma_avail'),
                      h('dd', null, String(g.container.dmaAvail)),
                    ]
                  : null,
              ),
              g.container.type !== null
                ? table(
                    ['iova', 'last', 'size', 'vaddr', 'prot', 'locked pages'],
                    g.container.dmas.map((d) => [
                      addrButton(d.iova, explore),
                      d.last,
                      d.size,
                      d.vaddr,
                      d.prot,
                      String(d.lockedPages),
                    ]),
                    { caption: 'vfio_dma', empty: 'No vfio_dma: nothing mapped.' },
                  )
                : null,
            ],
      ),
    ),
    h('h3', null, 'Processes'),
    table(
      ['process', 'uid', 'VmLck', 'VmPin', 'RLIMIT_MEMLOCK'],
      v.processes.map((p) => [p.name, String(p.uid), `${p.VmLck_kB} kB`, `${p.VmPin_kB} kB`, p.memlock]),
      { empty: 'No process has run a step yet.', class: 'procs' },
    ),
  );
}

// ---- SMMUs ----------------------------------------------------------------------------------

function struct(s: StructView): HTMLElement {
  const set = s.fields.filter((f) => f.value !== 0);
  const row = (f: StructView['fields'][number]) => [
    h('code', null, f.name),
    h('span', { class: 'bits' }, f.bits),
    h('code', null, f.text),
  ];
  return h(
    'div',
    { class: 'struct' },
    h('p', null, h('strong', null, s.what), ` at ${s.at}`),
    h('p', { class: 'words' }, h('code', null, s.words.join(' '))),
    table(['field', 'bits', 'value'], set.map(row), { empty: 'every field is 0', class: 'fields-table' }),
    h(
      'details',
      null,
      h('summary', null, `all ${s.fields.length} fields`),
      table(['field', 'bits', 'value'], s.fields.map(row), { class: 'fields-table' }),
    ),
  );
}

function queue(title: string, q: QueueView, empty: string): HTMLElement {
  return h(
    'section',
    null,
    h(
      'h4',
      null,
      title,
      h('small', null, ` base ${q.base}, ${q.entries} entries, PROD ${q.prod}, CONS ${q.cons}`),
    ),
    table(
      ['slot', 'what', 'fields'],
      q.recent.map((e) => [
        hex(e.pos),
        h('code', null, e.name),
        h('code', { title: e.words.join(' ') }, e.detail),
      ]),
      { empty },
    ),
  );
}

export function renderSmmu(v: SmmuView | null, explore: Explore | null): HTMLElement {
  if (v === null) return h('p', { class: 'empty' }, 'This host has no SMMUv3 (choose an smmuv3 scenario).');
  return h(
    'div',
    { class: 'state' },
    h(
      'dl',
      { class: 'fields' },
      h('dt', null, 'preset'),
      h('dd', null, v.preset),
      h('dt', null, 'SMMUEN'),
      h('dd', null, v.enabled ? '1' : '0'),
      h('dt', null, 'stream table'),
      h('dd', null, v.strtab),
      h('dt', null, 'invalidations waiting for CMD_SYNC'),
      h('dd', null, String(v.pendingInvalidations)),
    ),
    v.streams.map((s) =>
      h(
        'section',
        null,
        h('h3', null, `StreamID ${hex(s.sid)}`, h('small', null, ` ${s.device}`)),
        s.l1 ? h('p', null, h('code', null, s.l1)) : null,
        s.note ? h('p', { class: 'note' }, s.note) : null,
        s.ste ? struct(s.ste) : null,
        s.cd ? struct(s.cd) : null,
      ),
    ),
    h(
      'h3',
      null,
      'TLB',
      h('small', null, ` ${v.tlb.entries.length} of ${v.tlb.capacity} entries, ${v.tlb.policy}`),
    ),
    table(
      ['tag', 'VA', 'IPA', 'PA', 'size', 'permissions'],
      v.tlb.entries.map((e) => [e.tag, addrButton(e.va, explore), e.ipa, e.pa, e.size, e.perms]),
      { empty: 'Empty.', class: 'tlb' },
    ),
    h(
      'h3',
      null,
      'Configuration cache',
      h(
        'small',
        null,
        ` ${v.configCache.size} of ${Number.isFinite(v.configCache.capacity) ? v.configCache.capacity : 'unbounded'}`,
      ),
    ),
    table(
      ['StreamID', 'STE', 'CDs'],
      v.configCache.entries.map((e) => [e.sid, e.config, e.cds]),
      { empty: 'Empty.' },
    ),
    queue('Command queue', v.cmdq, 'No command yet.'),
    queue('Event queue', v.eventq, 'No event yet.'),
    h('h4', null, "The host driver's event log"),
    table(
      ['event', 'fields'],
      v.eventLog.map((e) => [h('code', null, e.name), h('code', null, e.detail)]),
      { empty: 'Nothing logged: every record so far went to its owner (or none was written).' },
    ),
  );
}

export function renderGuest(v: GuestView | null): HTMLElement {
  if (v === null)
    return h(
      'p',
      { class: 'empty' },
      'No guest yet: a vmm step creates the VMM and the virtual SMMU it presents.',
    );
  return h(
    'div',
    { class: 'state' },
    h(
      'p',
      { class: 'note' },
      'The virtual SMMUv3 the VMM presents: registers the guest programs, tables and queues in guest RAM (IPAs).',
    ),
    h(
      'dl',
      { class: 'fields' },
      h('dt', null, 'SMMUEN'),
      h('dd', null, v.enabled ? '1' : '0'),
      h('dt', null, 'stream table'),
      h('dd', null, v.strtab),
      h('dt', null, 'records dropped (queue full)'),
      h('dd', null, String(v.dropped)),
    ),
    v.streams.length === 0
      ? h('p', { class: 'empty' }, 'No valid STE yet.')
      : v.streams.map((s) =>
          h('section', null, h('h3', null, `vSID ${hex(s.vsid)}`), struct(s.ste), s.cd ? struct(s.cd) : null),
        ),
    v.cmdq ? queue('Command queue', v.cmdq, 'No command yet.') : null,
    v.eventq ? queue('Event queue', v.eventq, 'No event delivered to the guest.') : null,
  );
}
