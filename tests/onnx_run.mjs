// onnx_run.mjs - runs an ONNX model in onnxruntime (the npm package
// onnxruntime-node, installed by deploy/install-deps.sh) on a raw float32
// input and compares its output "logits" with the engine's logits: prints
// the max abs difference relative to the max abs logit and exits 1 when it
// is above the tolerance (or anything is missing or mis-shaped).
// usage: node onnx_run.mjs ORT_DIR MODEL.onnx X.bin B C H W LOGITS.bin CLASSES [TOL]
//   ORT_DIR: the directory whose node_modules holds onnxruntime-node
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const [ortDir, modelPath, xPath, Bs, Cs, Hs, Ws, logitsPath, Ks, tolS] =
  process.argv.slice(2);
if (!logitsPath || !Ks) {
  console.error('usage: onnx_run.mjs ORT_DIR MODEL X B C H W LOGITS CLASSES [TOL]');
  process.exit(2);
}
const [B, C, H, W, K] = [Bs, Cs, Hs, Ws, Ks].map(Number);
const tol = tolS ? Number(tolS) : 1e-4;

let ort;
try {
  ort = createRequire(path.join(ortDir, 'package.json'))('onnxruntime-node');
} catch (e) {
  console.error(`onnx_run: cannot load onnxruntime-node from ${ortDir}: ${e.message}`);
  process.exit(1);
}

function floats(file, n) {
  const b = readFileSync(file);
  if (b.length !== 4 * n) {
    console.error(`onnx_run: ${file}: ${b.length} bytes, expected ${4 * n}`);
    process.exit(1);
  }
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

const x = floats(xPath, B * C * H * W);
const want = floats(logitsPath, B * K);
const session = await ort.InferenceSession.create(modelPath);
if (session.inputNames.join() !== 'input' || session.outputNames.join() !== 'logits') {
  console.error(`onnx_run: inputs [${session.inputNames}] outputs [${session.outputNames}], ` +
                'expected [input] and [logits]');
  process.exit(1);
}
const out = await session.run({ input: new ort.Tensor('float32', x, [B, C, H, W]) });
const y = out.logits;
if (y.dims.join() !== [B, K].join()) {
  console.error(`onnx_run: logits shape [${y.dims}], expected [${B},${K}]`);
  process.exit(1);
}
let maxDiff = 0, maxAbs = 0;
for (let i = 0; i < want.length; i++) {
  const d = Math.abs(y.data[i] - want[i]);
  if (!(d <= maxDiff)) maxDiff = d; // NaN counts as the largest
  maxAbs = Math.max(maxAbs, Math.abs(want[i]));
}
const rel = maxDiff / maxAbs;
console.log(`onnxruntime ${ort.env.versions?.common ?? ''}: max|diff| ${maxDiff.toExponential(3)}, ` +
            `max|logit| ${maxAbs.toExponential(3)}, relative ${rel.toExponential(3)} (tol ${tol})`);
process.exit(maxAbs > 0 && rel <= tol ? 0 : 1);
