/** Turns a validated request body (JSON or binary) into the ADC packet every worker receives. */
import { decodePacket, PacketDecodeError, type AdcPacket } from '../contracts/packet-binary.js';
import { SAMPLE_RATE, type PacketBody } from '../contracts/packet.js';
import { GatewayError } from './errors.js';

/** Storage scale for packets given in mV: 1 µV per ADC unit, ±32.767 mV (as the function stores them). */
const MV_GAIN = 1000;

export function packetFromBinary(body: Buffer): AdcPacket {
  let packet: AdcPacket;
  try {
    packet = decodePacket(body);
  } catch (error) {
    if (error instanceof PacketDecodeError) throw new GatewayError('BAD_BINARY_PACKET', error.message);
    throw error;
  }
  checkSampleRate(packet.sampleRate);
  return packet;
}

export function packetFromJson(body: PacketBody): AdcPacket {
  checkSampleRate(body.sampleRate);
  const length = body.leads[0]?.samples.length ?? 0;
  if (body.leads.some((lead) => lead.samples.length !== length)) {
    throw new GatewayError('LEAD_LENGTH_MISMATCH', `leads have ${body.leads.map((lead) => lead.samples.length).join(' and ')} samples; they must be equal`);
  }
  const isAdc = body.gain !== undefined;
  const gain = body.gain ?? MV_GAIN;
  const baseline = isAdc ? body.baseline ?? 0 : 0;
  const leads = body.leads.map((lead, leadIndex) => {
    const samples = new Int16Array(length);
    for (let i = 0; i < length; i++) {
      const value = lead.samples[i] as number;
      const adc = isAdc ? value : Math.round(value * MV_GAIN);
      if (!Number.isInteger(adc) || adc < -32768 || adc > 32767) {
        throw new GatewayError('SAMPLE_OUT_OF_RANGE', isAdc
          ? `lead ${leadIndex} sample ${i} is not an integer ADC value in int16 range`
          : `lead ${leadIndex} sample ${i} is outside ±32.767 mV`);
      }
      samples[i] = adc;
    }
    return { name: lead.name, samples };
  });
  return {
    ...(body.session !== undefined ? { session: body.session } : {}),
    seq: body.seq,
    ...(body.sentAt !== undefined ? { sentAt: body.sentAt } : {}),
    sampleRate: body.sampleRate,
    gain,
    baseline,
    leads,
  };
}

function checkSampleRate(sampleRate: number): void {
  if (sampleRate !== SAMPLE_RATE) {
    throw new GatewayError('UNSUPPORTED_SAMPLE_RATE', `sample rate ${sampleRate} Hz is not supported; send ${SAMPLE_RATE} Hz`);
  }
}
