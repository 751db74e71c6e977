// Stream an eddy model with onnxruntime-node: raw samples in, raw predictions out, state carried between calls.
//
//   node stream.mjs MODEL_VERSION_DIR [GRAPH]  < samples.csv  > predictions.csv
//
// Reads one sample per line on stdin (F comma-separated numbers, no header) and prints one line per sample:
// the O predicted values for `horizon` steps after it. GRAPH is step.onnx (default) or step.ort.
// It needs nothing but the graph: every input other than `x` is a state tensor that starts at zero
// (shape [1, ...] from the graph's own input metadata) and is replaced by the output `<name>_out` after
// each call. The graph takes and returns raw units (eddy.io = raw in its metadata_props).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

const [dir, graph = 'step.onnx'] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node stream.mjs MODEL_VERSION_DIR [step.onnx|step.ort] < samples.csv');
  process.exit(2);
}
const session = await ort.InferenceSession.create(join(dir, graph), { intraOpNumThreads: 1 });
const xMeta = session.inputMetadata.find((m) => m.name === 'x');
const nFeatures = xMeta.shape[xMeta.shape.length - 1];

// Zero initial state: one Float32Array per state input, batch 1.
let state = {};
for (const m of session.inputMetadata) {
  if (m.name === 'x') continue;
  const dims = [1, ...m.shape.slice(1)];
  state[m.name] = new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
}

const lines = readFileSync(0, 'utf8').split('\n').filter((l) => l.trim() !== '');
const out = [];
for (const [i, line] of lines.entries()) {
  const values = line.split(',').map(Number);
  if (values.length !== nFeatures || values.some((v) => !Number.isFinite(v))) {
    console.error(`line ${i + 1}: expected ${nFeatures} finite number(s), got ${JSON.stringify(line)}`);
    process.exit(1);
  }
  const x = new ort.Tensor('float32', Float32Array.from(values), [1, nFeatures]);
  const result = await session.run({ x, ...state });
  const next = {};
  for (const name of Object.keys(state)) next[name] = result[`${name}_out`];
  state = next;
  out.push(Array.from(result.y.data).map((v) => v.toPrecision(9)).join(','));
}
process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
