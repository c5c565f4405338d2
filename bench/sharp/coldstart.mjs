// Cold start of an origin-request handler: `node coldstart.mjs HANDLER.mjs EVENT.json`
// imports the handler in this fresh process, sends it one event, prints
// {"import_ms","first_ms","total_ms","uri"} and exits (a Lambda sandbox's first invoke:
// module load + init + first event; the caller adds process start-up by timing the whole).
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";

const t0 = performance.now();
const [handlerPath, eventPath] = process.argv.slice(2);
const { handler } = await import(pathToFileURL(handlerPath).href);
const t1 = performance.now();
const event = JSON.parse(await readFile(eventPath, "utf8"));
const result = await handler(event, {});
const t2 = performance.now();
process.stdout.write(
  JSON.stringify({
    import_ms: t1 - t0,
    first_ms: t2 - t1,
    total_ms: t2,
    status: result.status ?? null,
    uri: result.uri ?? null,
  }) + "\n",
);
process.exit(0);
