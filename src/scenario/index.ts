/**
 * Scenarios: YAML (or JSON) files that describe a host, processes and steps with expectations
 * (docs/scenarios.md). `loadScenario` validates (throwing ScenarioError at file:line:col: field),
 * `ScenarioRunner` runs.
 */

import { loadDocument } from './load.ts';
import { type Scenario, validateScenario } from './schema.ts';

export {
  collapseIoctls,
  describeAnswer,
  describeRequest,
  type IoctlCall,
  readAtText,
  recordIoctls,
  type ShownIoctl,
  translatingText,
} from './describe.ts';
export { diff } from './expect.ts';
export { formatPath, ScenarioError } from './load.ts';
export { isProbeNumber, parseU64 } from './probe/parse.ts';
export { eventWords32, ScenarioRunner, type StepResult } from './run.ts';
export { type Scenario, type Step, TYPED_STEPS } from './schema.ts';

export function loadScenario(text: string, file: string): Scenario {
  return validateScenario(loadDocument(text, file));
}
