/**
 * ONNX export of a GbdtModel (trees.ts) as one `ai.onnx.ml` TreeEnsembleClassifier (ai.onnx.ml
 * opset 3, IR version 7), written with the onnx-proto message classes like onnx.ts.
 *
 * Graph: features [N, dim] float → TreeEnsembleClassifier(post_transform SOFTMAX, base_values)
 * → label [N] int64 (not a graph output) and probabilities [N, classes] float. The input and output
 * names are those of the MLP (onnx.ts), so BeatClassifier (index.ts) loads and runs it unchanged.
 * Splits are BRANCH_LEQ (x ≤ threshold goes to the "true" child = left). The bytes depend only on
 * the model and metadata.
 */
import onnxProto from 'onnx-proto';
import { INPUT_NAME, IR_VERSION, OUTPUT_NAME } from './onnx.js';
import type { GbdtModel } from './trees.js';

const { onnx } = onnxProto;

export const ML_OPSET = 3;

function valueInfo(name: string, cols: number): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }, { dimValue: cols }] } } },
  };
}

export function exportGbdtOnnx(m: GbdtModel, metadata: ReadonlyArray<readonly [string, string]>): Uint8Array {
  const A = onnx.AttributeProto.AttributeType;
  const treeIds: number[] = [];
  const nodeIds: number[] = [];
  const featureIds: number[] = [];
  const values: number[] = [];
  const modes: Uint8Array[] = [];
  const trueIds: number[] = [];
  const falseIds: number[] = [];
  const classTree: number[] = [];
  const classNode: number[] = [];
  const classIds: number[] = [];
  const classWeights: number[] = [];
  const enc = new TextEncoder();
  const LEQ = enc.encode('BRANCH_LEQ');
  const LEAF = enc.encode('LEAF');
  m.trees.forEach((tree, t) => {
    for (let j = 0; j < tree.feature.length; j++) {
      const f = tree.feature[j] as number;
      treeIds.push(t);
      nodeIds.push(j);
      if (f >= 0) {
        featureIds.push(f);
        values.push(tree.threshold[j] as number);
        modes.push(LEQ);
        trueIds.push(tree.left[j] as number);
        falseIds.push(tree.right[j] as number);
      } else {
        featureIds.push(0);
        values.push(0);
        modes.push(LEAF);
        trueIds.push(0);
        falseIds.push(0);
        classTree.push(t);
        classNode.push(j);
        classIds.push(m.treeClass[t] as number);
        classWeights.push(tree.value[j] as number);
      }
    }
  });
  const ints = (name: string, v: number[]) => ({ name, type: A.INTS, ints: v });
  const floats = (name: string, v: number[]) => ({ name, type: A.FLOATS, floats: v });
  const node: onnxProto.onnx.INodeProto = {
    opType: 'TreeEnsembleClassifier',
    domain: 'ai.onnx.ml',
    name: 'gbdt',
    input: [INPUT_NAME],
    output: ['label', OUTPUT_NAME],
    attribute: [
      floats('base_values', m.base),
      ints('class_ids', classIds),
      ints('class_nodeids', classNode),
      ints('class_treeids', classTree),
      floats('class_weights', classWeights),
      ints('classlabels_int64s', Array.from({ length: m.classes }, (_, k) => k)),
      ints('nodes_falsenodeids', falseIds),
      ints('nodes_featureids', featureIds),
      { name: 'nodes_modes', type: A.STRINGS, strings: modes },
      ints('nodes_nodeids', nodeIds),
      ints('nodes_treeids', treeIds),
      ints('nodes_truenodeids', trueIds),
      floats('nodes_values', values),
      { name: 'post_transform', type: A.STRING, s: enc.encode('SOFTMAX') },
    ],
  };
  const graph: onnxProto.onnx.IGraphProto = {
    name: 'ecgfaas_gbdt',
    input: [valueInfo(INPUT_NAME, m.dim)],
    output: [valueInfo(OUTPUT_NAME, m.classes)],
    node: [node],
  };
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: 13 }, { domain: 'ai.onnx.ml', version: ML_OPSET }],
    producerName: 'ecg-faas',
    producerVersion: '1',
    graph,
    metadataProps: metadata.map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}
