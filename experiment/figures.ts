/**
 * The paper's figures for a table: the density of the metric per row (its Figures 1-9) and a CDF
 * per table, as Vega-Lite specs rendered to SVG offline by Vega in this process (no browser, no
 * network). The densities are Vega's kernel density estimate over the row's values (at most 5,000
 * per row, an even subsample beyond that); the CDF is the empirical one at 200 quantiles.
 */
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';
import { quantileSorted } from 'simple-statistics';
import type { ExperimentResult } from './runner.js';

const MAX_POINTS = 5000;
const CDF_POINTS = 200;

function rowValues(result: ExperimentResult): Array<{ label: string; values: number[] }> {
  return result.samples.map((row) => ({
    label: row.label,
    values: row.runs.flatMap((run) => run.samples.map((sample) => sample.metricMs).filter((value): value is number => value !== null)),
  })).filter((row) => row.values.length > 0);
}

function subsample(values: readonly number[], limit: number): number[] {
  if (values.length <= limit) return [...values];
  const step = values.length / limit;
  return Array.from({ length: limit }, (_, index) => values[Math.floor(index * step)] as number);
}

async function render(spec: vegaLite.TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const METRIC_TITLE: Record<string, string> = { compute: 'Time in the function (ms)', roundTrip: 'Round trip (ms)', write: 'Storage write (ms)' };

export interface Figures {
  density: string;
  cdf: string;
}

/** Both figures as SVG text; null when no row has values. */
export async function renderFigures(result: ExperimentResult): Promise<Figures | null> {
  const rows = rowValues(result);
  if (rows.length === 0) return null;
  const all = rows.flatMap((row) => row.values).sort((a, b) => a - b);
  // The far tail would squash the densities into a corner: the x axis ends at the 99.9th percentile.
  const upper = quantileSorted(all, 0.999);
  const title = METRIC_TITLE[result.metric] ?? result.metric;
  const points = rows.flatMap((row) => subsample(row.values, MAX_POINTS).map((value) => ({ row: row.label, ms: value })));
  const density = await render({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `Table ${result.paperTable}: density per row`, subtitle: result.title },
    width: 560, height: 260, background: 'white',
    data: { values: points },
    transform: [{ density: 'ms', groupby: ['row'], extent: [0, upper], steps: 300 }],
    mark: { type: 'line', strokeWidth: 2 },
    encoding: {
      x: { field: 'value', type: 'quantitative', title, scale: { domain: [0, upper] } },
      y: { field: 'density', type: 'quantitative', title: 'Density' },
      color: { field: 'row', type: 'nominal', title: 'Row' },
    },
  });
  const cdfPoints = rows.flatMap((row) => {
    const sorted = [...row.values].sort((a, b) => a - b);
    return Array.from({ length: CDF_POINTS + 1 }, (_, index) => {
      const fraction = index / CDF_POINTS;
      return { row: row.label, ms: quantileSorted(sorted, fraction), fraction };
    });
  });
  // The deadline is drawn when the values come near it (it would stretch the axis of a fast row).
  const deadline = result.metric !== 'write' && (all.at(-1) as number) >= 0.5 * result.deadlineMs ? [{ ms: result.deadlineMs }] : [];
  const cdfUpper = deadline.length > 0 ? Math.max(upper, result.deadlineMs * 1.05) : upper;
  const cdf = await render({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `Table ${result.paperTable}: CDF per row`, subtitle: deadline.length > 0 ? `${result.title}; dashed: the deadline` : result.title },
    width: 560, height: 260, background: 'white',
    layer: [
      {
        data: { values: cdfPoints },
        mark: { type: 'line', strokeWidth: 2, interpolate: 'step-after' },
        encoding: {
          x: { field: 'ms', type: 'quantitative', title, scale: { domain: [0, cdfUpper] } },
          y: { field: 'fraction', type: 'quantitative', title: 'Fraction at or below' },
          color: { field: 'row', type: 'nominal', title: 'Row' },
        },
      },
      ...(deadline.length > 0 ? [{
        data: { values: deadline },
        mark: { type: 'rule' as const, strokeDash: [4, 4], color: '#888', clip: true },
        encoding: { x: { field: 'ms', type: 'quantitative' as const } },
      }] : []),
    ],
  });
  return { density, cdf };
}
