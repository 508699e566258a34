/**
 * Latency of BeatClassifier.classify (one onnxruntime-node run per call) at small batch sizes.
 *
 *   npx tsx experiments/models/bench.ts models/paper.onnx models/default.onnx
 */
import { BeatClassifier } from '../../functions/model/index.js';
import { mulberry32 } from '../../functions/model/mlp.js';

for (const file of process.argv.slice(2)) {
  const classifier = await BeatClassifier.load(file);
  const rand = mulberry32(1);
  const { dim } = classifier.info;
  const line: string[] = [];
  for (const batch of [1, 3, 64]) {
    const rows = Array.from({ length: batch }, () => Float32Array.from({ length: dim }, () => rand() - 0.5));
    for (let i = 0; i < 200; i++) await classifier.classify(rows);
    const calls = 3000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) await classifier.classify(rows);
    const us = Number(process.hrtime.bigint() - t0) / 1000 / calls;
    line.push(`batch ${batch}: ${us.toFixed(1)} µs/call (${(us / batch).toFixed(2)} µs/beat)`);
  }
  console.log(`${file} (${classifier.info.name}, dim ${dim}, sha256 ${classifier.info.sha256.slice(0, 16)}…): ${line.join('; ')}`);
  await classifier.close();
}
