/**
 * The scenarios of examples/, bundled into the page at build time (the demo first), each with the
 * description its file gives.
 */

export interface Example {
  /** The file name, `demo.yaml`. */
  name: string;
  /** As `vfio-nest run` names it from the repository: `examples/demo.yaml`. */
  path: string;
  text: string;
  description: string;
}

const files = import.meta.glob('../examples/*.yaml', {
  query: '?raw',
  import: 'default',
  eager: true,
}) as Record<string, string>;

export const EXAMPLES: Example[] = Object.entries(files)
  .map(([key, text]) => {
    const name = key.slice(key.lastIndexOf('/') + 1);
    const description = /^description:\s*(.*)$/m.exec(text)?.[1]?.trim() ?? '';
    return { name, path: `examples/${name}`, text, description };
  })
  .sort((a, b) => (a.name === 'demo.yaml' ? -1 : b.name === 'demo.yaml' ? 1 : a.name.localeCompare(b.name)));

export const DEMO: Example = EXAMPLES.find((e) => e.name === 'demo.yaml')!;
