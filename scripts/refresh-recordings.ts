/**
 * Copies the shared recordings (../shared/reference/kernel-answers) into test/kernel-answers so the
 * tests run on any clone: `npm run refresh-recordings [-- SOURCE_DIR]`.
 */
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const source = resolve(process.argv[2] ?? join(import.meta.dirname, '../../shared/reference/kernel-answers'));
const target = resolve(import.meta.dirname, '../test/kernel-answers');
if (!existsSync(source)) {
  console.error(`refresh-recordings: ${source} does not exist`);
  process.exit(2);
}
rmSync(target, { recursive: true, force: true });
cpSync(source, target, { recursive: true });
console.log(`copied ${source} -> ${target}`);
