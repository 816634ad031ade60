// Bulk client of bench:tunnel, as a process of its own so that it can run inside a network namespace
// (`ip netns exec NS node --import tsx bench/bulk-send.ts …`): pushes --bytes into a proxy-lib sink
// (bench/targets.ts) with measureBulk — the clock runs from the first write to the sink's byte count, dialing
// excluded — and prints one JSON line {"mbps":X,"bytes":N} (1 MB = 1e6 bytes). Exits when its stdin closes
// (the benchmark that started it is gone) and never outlives one measurement.
import { parseFlags, requireFlag } from "../shared/args";
import { runMain } from "../shared/process";
import { integerFlag, parseBytes } from "./flags";
import { connectTcp, measureBulk } from "./proxy-lib";

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "node --import tsx bench/bulk-send.ts --host IP --port N --bytes N [--local-address IP]",
    "Pushes bytes into a bench sink and prints MB/s.",
    {
      host: { type: "string", help: "the sink's address" },
      port: { type: "string", help: "the sink's port" },
      bytes: { type: "string", help: "bytes to push (1073741824, 256MiB, …)" },
      "local-address": { type: "string", help: "source address to bind the connection to" },
    },
  );
  if (!parsed) return;
  const { flags } = parsed;
  const host = requireFlag(flags.host, "host");
  const port = integerFlag(flags.port ?? "", "--port", 1);
  const bytes = parseBytes(flags.bytes ?? "", "--bytes");
  process.stdin.on("end", () => process.exit(1));
  process.stdin.on("error", () => process.exit(1));
  process.stdin.resume();
  const mbps = await measureBulk(() => connectTcp(host, port, 10_000, flags["local-address"]), bytes);
  process.stdout.write(JSON.stringify({ mbps, bytes }) + "\n", () => process.exit(0));
});
