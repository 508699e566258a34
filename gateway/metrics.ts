/** The gateway's Prometheus metrics (prom-client), on a registry of its own so several gateways can share a process (tests). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly packets = new Counter({ name: 'ecgfaas_gateway_packets_total', help: 'Packets by outcome (accepted, duplicate, rejected).', labelNames: ['outcome', 'format'] as const, registers: [this.registry] });
  readonly errors = new Counter({ name: 'ecgfaas_gateway_errors_total', help: 'Error answers by code.', labelNames: ['code'] as const, registers: [this.registry] });
  readonly waits = new Counter({ name: 'ecgfaas_gateway_waits_total', help: '?wait=1 requests by outcome (result, deadline).', labelNames: ['outcome'] as const, registers: [this.registry] });
  readonly acceptMs = new Histogram({
    name: 'ecgfaas_gateway_accept_ms', help: 'Receipt to durable enqueue, ms.', buckets: [0.5, 1, 2, 5, 10, 20, 50, 100, 250, 1000], registers: [this.registry],
  });
  readonly backlog: Gauge;
  readonly waiting: Gauge;
  readonly sse: Gauge;

  constructor(sources: { backlog: () => number; waiting: () => number; sse: () => number }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'ecgfaas_gateway_' });
    this.backlog = new Gauge({ name: 'ecgfaas_gateway_ingest_backlog', help: 'Packets waiting for the next enqueue flush.', registers: [this.registry], collect() { this.set(sources.backlog()); } });
    this.waiting = new Gauge({ name: 'ecgfaas_gateway_waiting_requests', help: 'Requests waiting for their result (?wait=1).', registers: [this.registry], collect() { this.set(sources.waiting()); } });
    this.sse = new Gauge({ name: 'ecgfaas_gateway_sse_clients', help: 'Open SSE streams.', registers: [this.registry], collect() { this.set(sources.sse()); } });
  }
}
