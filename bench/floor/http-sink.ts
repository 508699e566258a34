/**
 * The least any gateway must do per packet, as a process of its own: fastify with the gateway's
 * binary body parser and packet decoding, answering each POST at once with a small result-shaped
 * JSON body. No Redis, no queue, no function. Prints {"url"} on stdout when listening; SIGTERM stops it.
 */
import Fastify from 'fastify';
import { packetFromBinary } from '../../gateway/packets.js';

const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
app.post<{ Params: { monitorId: string } }>('/v1/monitors/:monitorId/packets', async (request) => {
  const packet = packetFromBinary(request.body as Buffer);
  return { invocationId: `${request.params.monitorId}-${packet.seq}`, status: 'processed', seq: packet.seq, beats: [] };
});
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ url })}\n`);
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
