// The sharp side of bench/run: the same protocol as edge/examples/bench_transform.rs.
// `node worker.mjs worker` reads one JSON request per stdin line and answers one JSON line.
// `node worker.mjs once MASTER W FMT Q OUT` renders once in a fresh process (one-shot time).
// SHARP_THREADS=1 sets sharp.concurrency(1) (libvips threads per image); unset keeps
// sharp's default (one per core). The libvips operation cache is off: every request of a
// real origin is a different master, and a cache hit would measure nothing.
import { readFile, writeFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import sharp from "sharp";

if (process.env.SHARP_THREADS) sharp.concurrency(Number(process.env.SHARP_THREADS));
sharp.cache(false);

// `?w=W&fmt=F&q=Q` as AWS's image-optimization sample does it: resize by width, aspect
// kept, never enlarged; sharp's defaults otherwise (Lanczos3, WebP effort 4, JPEG 4:2:0,
// AVIF effort 4; a master's ICC profile converted to sRGB and not kept). q null: the
// format's own defaults (avif(): quality 50).
export function render(master, w, fmt, q) {
  const img = sharp(master).resize({ width: w, withoutEnlargement: true });
  const f = fmt === "jpg" ? "jpeg" : fmt;
  const out = fmt === "png" ? img.png() : q == null ? img.toFormat(f) : img.toFormat(f, { quality: q });
  return out.toBuffer({ resolveWithObject: true });
}

async function worker() {
  const masters = new Map();
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const req = JSON.parse(line);
    const reply = { ms: [], bytes: 0, width: 0, height: 0, error: null };
    try {
      if (!masters.has(req.master)) masters.set(req.master, await readFile(req.master));
      const master = masters.get(req.master);
      let last;
      for (let i = 0; i < (req.iters ?? 1); i++) {
        const t = performance.now();
        last = await render(master, req.w, req.fmt, req.q === undefined ? 80 : req.q);
        reply.ms.push(performance.now() - t);
      }
      reply.bytes = last.data.length;
      reply.width = last.info.width;
      reply.height = last.info.height;
      if (req.out) await writeFile(req.out, last.data);
    } catch (e) {
      reply.error = String(e);
    }
    process.stdout.write(JSON.stringify(reply) + "\n");
  }
}

async function once([master, w, fmt, q, out]) {
  const { data } = await render(await readFile(master), Number(w), fmt, q === "default" ? null : Number(q));
  await writeFile(out, data);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "worker") await worker();
else if (mode === "once") await once(args);
else {
  console.error("usage: node worker.mjs worker | once MASTER W FMT Q OUT");
  process.exit(2);
}
