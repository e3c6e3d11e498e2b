// The host's /metrics (Prometheus text format), parsed and sampled for the health charts.

import { publicGet } from "./api.js";

// [{name, labels: {..}, value}] for every sample line; comments and blank lines skipped.
export function parseMetrics(text) {
  const samples = [];
  for (const raw of String(text).split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    if (match[2]) {
      for (const pair of match[2].matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      }
    }
    samples.push({ name: match[1], labels, value: number(match[3]) });
  }
  return samples;
}

function number(text) {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

// The sum of a metric over all its label sets (null when the host has none).
export function total(samples, name) {
  let found = false;
  let sum = 0;
  for (const sample of samples) {
    if (sample.name === name && Number.isFinite(sample.value)) {
      found = true;
      sum += sample.value;
    }
  }
  return found ? sum : null;
}

// The names core's metrics module registers (prometheus_client adds _total, _sum, _count).
export const NAMES = {
  queueDepth: "botbridge_queue_depth",
  mtSent: "botbridge_mt_sent_total",
  moAccepted: "botbridge_mo_accepted_total",
  botLatencySum: "botbridge_bot_call_seconds_sum",
  botLatencyCount: "botbridge_bot_call_seconds_count",
};

export function reading(samples, at) {
  const byKind = {};
  for (const sample of samples) {
    if (sample.name === NAMES.queueDepth) byKind[sample.labels.kind || "?"] = sample.value;
  }
  return {
    at,
    queueDepth: total(samples, NAMES.queueDepth) ?? 0,
    queueByKind: byKind,
    mtSent: total(samples, NAMES.mtSent) ?? 0,
    moAccepted: total(samples, NAMES.moAccepted) ?? 0,
    latencySum: total(samples, NAMES.botLatencySum) ?? 0,
    latencyCount: total(samples, NAMES.botLatencyCount) ?? 0,
  };
}

// Rates between consecutive readings: messages per second, mean bot latency (ms) of the calls in between.
export function series(readings) {
  const points = [];
  for (let i = 1; i < readings.length; i += 1) {
    const before = readings[i - 1];
    const now = readings[i];
    const seconds = (now.at - before.at) / 1000;
    if (seconds <= 0) continue;
    // a counter that went down means the host restarted: count from zero
    const sent = now.mtSent >= before.mtSent ? now.mtSent - before.mtSent : now.mtSent;
    const received = now.moAccepted >= before.moAccepted ? now.moAccepted - before.moAccepted : now.moAccepted;
    const calls = now.latencyCount - before.latencyCount;
    const spent = now.latencySum - before.latencySum;
    points.push({
      at: now.at,
      queueDepth: now.queueDepth,
      sentPerSecond: sent / seconds,
      receivedPerSecond: received / seconds,
      latencyMs: calls > 0 && spent >= 0 ? (spent / calls) * 1000 : null,
    });
  }
  return points;
}

export const INTERVAL_MS = 3000;
export const WINDOW_MS = 10 * 60 * 1000;

// Polls /metrics while signed in, keeping the last WINDOW_MS of readings.
export class Sampler {
  constructor() {
    this.readings = [];
    this.listeners = new Set();
    this.timer = null;
    this.error = null;
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start() {
    if (this.timer) return;
    this.tick();
    this.timer = setInterval(() => this.tick(), INTERVAL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.readings = [];
  }

  async tick() {
    try {
      const answer = await publicGet("metrics");
      if (answer.status !== 200) throw new Error("metrics answered " + answer.status);
      const now = Date.now();
      this.readings.push(reading(parseMetrics(answer.text), now));
      this.readings = this.readings.filter((r) => now - r.at <= WINDOW_MS + INTERVAL_MS);
      this.error = null;
    } catch (error) {
      this.error = error.message || String(error);
    }
    for (const fn of this.listeners) fn(this);
  }
}
