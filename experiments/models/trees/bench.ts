/**
 * Latency of BeatClassifier.classify (one onnxruntime-node run per call) at batch 1 and 3, on real
 * feature vectors of the model's feature set (record 208, so tree paths are realistic), plus the TS predictor.
 *
 *   npx tsx experiments/models/trees/bench.ts <mitdb dir> <model.onnx> [...]
 */
import { readFile } from 'node:fs/promises';
import { BeatClassifier } from '../../../functions/model/index.js';
import { loadBeats } from './data.js';

const [dataDir, ...files] = process.argv.slice(2);
if (!dataDir || files.length === 0) {
  console.error('usage: bench.ts <mitdb dir> <model.onnx> [...]');
  process.exit(2);
}
for (const file of files) {
  const classifier = await BeatClassifier.fromBytes(new Uint8Array(await readFile(file)));
  // Real feature vectors of the model's own feature set, so tree paths are realistic.
  const [beats] = await loadBeats(dataDir, ['208'], classifier.info.featureSet);
  const rows = beats!.features;
  const line: string[] = [];
  for (const batch of [1, 3]) {
    const calls = 3000;
    const times: number[] = [];
    for (let i = 0; i < 200 + calls; i++) {
      const at = (i * batch) % (rows.length - batch);
      const input = rows.slice(at, at + batch);
      const t0 = process.hrtime.bigint();
      await classifier.classify(input);
      if (i >= 200) times.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    times.sort((a, b) => a - b);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    line.push(`batch ${batch}: median ${times[times.length >> 1]!.toFixed(1)} µs/call, mean ${mean.toFixed(1)}, p99 ${times[Math.floor(times.length * 0.99)]!.toFixed(1)}`);
  }
  console.log(`${file} (${classifier.info.name}, sha256 ${classifier.info.sha256.slice(0, 16)}…): ${line.join('; ')}`);
  await classifier.close();
}
