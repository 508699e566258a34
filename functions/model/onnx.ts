/**
 * ONNX export of the MLP with the onnx-proto message classes (protobufjs under the hood).
 *
 * Graph (opset 13, IR version 7): features [N, dim] → Sub(mean) → Div(std) → Gemm(W1, b1, transB)
 * → Tanh | Relu → Gemm(W2, b2, transB) → Softmax(axis 1) → probabilities [N, classes].
 * The standardisation is part of the graph, so the runtime feeds raw features. The bytes depend
 * only on the parameters and metadata (no timestamps, no random ids; metadata in a fixed order).
 */
import onnxProto from 'onnx-proto';
import type { MlpParams } from './mlp.js';

const { onnx } = onnxProto;

export const OPSET = 13;
export const IR_VERSION = 7;
export const INPUT_NAME = 'features';
export const OUTPUT_NAME = 'probabilities';

function floatTensor(name: string, dims: number[], values: Float64Array): onnxProto.onnx.ITensorProto {
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i] as number, true);
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: raw };
}

function valueInfo(name: string, cols: number): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }, { dimValue: cols }] } } },
  };
}

/** Metadata entries are written in the given key order. */
export function exportOnnx(p: MlpParams, metadata: ReadonlyArray<readonly [string, string]>): Uint8Array {
  const INT = onnx.AttributeProto.AttributeType.INT;
  const graph: onnxProto.onnx.IGraphProto = {
    name: 'ecgfaas_mlp',
    input: [valueInfo(INPUT_NAME, p.dim)],
    output: [valueInfo(OUTPUT_NAME, p.classes)],
    initializer: [
      floatTensor('mean', [p.dim], p.mean),
      floatTensor('std', [p.dim], p.std),
      floatTensor('W1', [p.hidden, p.dim], p.w1),
      floatTensor('b1', [p.hidden], p.b1),
      floatTensor('W2', [p.classes, p.hidden], p.w2),
      floatTensor('b2', [p.classes], p.b2),
    ],
    node: [
      { opType: 'Sub', name: 'center', input: [INPUT_NAME, 'mean'], output: ['centered'] },
      { opType: 'Div', name: 'scale', input: ['centered', 'std'], output: ['standardized'] },
      { opType: 'Gemm', name: 'dense1', input: ['standardized', 'W1', 'b1'], output: ['h'], attribute: [{ name: 'transB', type: INT, i: 1 }] },
      { opType: p.activation === 'tanh' ? 'Tanh' : 'Relu', name: 'act1', input: ['h'], output: ['a'] },
      { opType: 'Gemm', name: 'dense2', input: ['a', 'W2', 'b2'], output: ['logits'], attribute: [{ name: 'transB', type: INT, i: 1 }] },
      { opType: 'Softmax', name: 'softmax', input: ['logits'], output: [OUTPUT_NAME], attribute: [{ name: 'axis', type: INT, i: 1 }] },
    ],
  };
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'ecg-faas',
    producerVersion: '1',
    graph,
    metadataProps: metadata.map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}

/** The metadata_props of an ONNX file, and its input width. */
export function readOnnxMetadata(bytes: Uint8Array): { metadata: Record<string, string>; inputDim: number | undefined } {
  const model = onnx.ModelProto.decode(bytes);
  const metadata: Record<string, string> = {};
  for (const e of model.metadataProps) if (e.key) metadata[e.key] = e.value ?? '';
  const dims = model.graph?.input?.[0]?.type?.tensorType?.shape?.dim;
  const last = dims && dims.length > 1 ? dims[dims.length - 1]?.dimValue : undefined;
  return { metadata, inputDim: last === undefined || last === null ? undefined : Number(last) };
}
