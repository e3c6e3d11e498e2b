// Health: readiness, and queue depth, message rates and bot latency over the last minutes (from /metrics).

import { api, publicGet } from "./api.js";
import { chart } from "./chart.js";
import { INTERVAL_MS, series, WINDOW_MS } from "./metrics.js";
import { badge, errorText, facts, h } from "./dom.js";

export function mount(main, ctx) {
  const alive = { on: true };
  const readiness = h("div");
  const charts = h("div", { class: "charts" });
  const queue = h("p", { class: "meta" });
  const sampling = h("p", { class: "meta" });
  const pluginSummary = h("div");

  main.append(
    h("h1", {}, "Health"),
    h("h2", {}, "Readiness"),
    readiness,
    h("h2", {}, "The last minutes"),
    sampling,
    charts,
    queue,
    h("h2", {}, "Plugins"),
    pluginSummary,
  );

  async function ready() {
    try {
      const answer = await publicGet("readyz");
      if (!alive.on) return;
      let body = {};
      try {
        body = JSON.parse(answer.text);
      } catch {
        body = { status: answer.text };
      }
      const ok = answer.status === 200;
      const store = body.store;
      readiness.replaceChildren(
        facts([
          ["Status", h("span", {}, badge(ok ? "ready" : "not ready", ok ? "ok" : "bad"), " ", ok ? "" : body.status || "")],
          ["Store keeps work through its own crash", store ? (store.durable === null ? "unknown" : store.durable ? "yes" : "no") : undefined],
          ["Store", store && store.detail ? store.detail : undefined],
        ]),
      );
    } catch (error) {
      readiness.replaceChildren(h("p", { class: "form-error", role: "alert" }, "The readiness check (readyz) did not answer: " + errorText(error)));
    }
  }

  function draw(sampler) {
    if (!alive.on) return;
    const points = series(sampler.readings);
    const latest = sampler.readings[sampler.readings.length - 1];
    const depthPoints = sampler.readings.map((r) => ({ at: r.at, value: r.queueDepth }));
    const minutes = Math.round(WINDOW_MS / 60000);
    charts.replaceChildren(
      chart({
        title: "Queue depth",
        unit: "jobs",
        windowMs: WINDOW_MS,
        lines: [{ name: "jobs", points: depthPoints }],
        describe: `Queue depth over the last ${minutes} minutes: now ${latest ? latest.queueDepth : "unknown"} jobs, at most ${Math.max(0, ...depthPoints.map((p) => p.value))}.`,
      }),
      chart({
        title: "Messages per second",
        unit: "msg/s",
        windowMs: WINDOW_MS,
        lines: [
          { name: "sent", points: points.map((p) => ({ at: p.at, value: p.sentPerSecond })) },
          { name: "received", points: points.map((p) => ({ at: p.at, value: p.receivedPerSecond })) },
        ],
        describe: `Messages per second over the last ${minutes} minutes: ${points.length ? `now ${points[points.length - 1].sentPerSecond.toFixed(2)} sent and ${points[points.length - 1].receivedPerSecond.toFixed(2)} received` : "not enough samples yet"}.`,
      }),
      chart({
        title: "Bot latency (mean per interval)",
        unit: "ms",
        windowMs: WINDOW_MS,
        lines: [{ name: "ms", points: points.map((p) => ({ at: p.at, value: p.latencyMs })) }],
        describe: `Mean bot call latency over the last ${minutes} minutes: ${(() => {
          const last = [...points].reverse().find((p) => p.latencyMs !== null);
          return last ? `latest ${Math.round(last.latencyMs)} ms` : "no bot calls yet";
        })()}.`,
      }),
    );
    queue.textContent = latest
      ? "Unfinished jobs now: " + Object.entries(latest.queueByKind).map(([kind, n]) => `${kind} ${n}`).join(", ")
      : "";
    sampling.textContent = sampler.error
      ? `Reading /metrics failed: ${sampler.error}`
      : `Sampled from /metrics every ${INTERVAL_MS / 1000} s while the console is open (${sampler.readings.length} samples); rates are between consecutive samples.`;
    ready();
  }

  async function plugins() {
    try {
      const found = (await api("GET", "v1/plugins")).plugins;
      if (!alive.on) return;
      const broken = found.filter((p) => p.errors && p.errors.length);
      pluginSummary.replaceChildren(
        h(
          "p",
          {},
          `${found.length} plugins, `,
          broken.length ? badge(`${broken.length} with load errors`, "bad") : badge("none with load errors", "ok"),
          " · ",
          h("a", { href: "#/plugins" }, "See the plugins"),
        ),
      );
    } catch (error) {
      pluginSummary.replaceChildren(h("p", { class: "form-error", role: "alert" }, "Could not list plugins: " + errorText(error)));
    }
  }

  const unsubscribe = ctx.sampler.subscribe(draw);
  draw(ctx.sampler);
  plugins();
  return () => {
    alive.on = false;
    unsubscribe();
  };
}
