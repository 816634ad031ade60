// Standalone bench:proxy targets: the sink and echo servers of proxy-lib in a process of their own, so that a
// benchmark can run them elsewhere (e.g. `ip netns exec edge node --import tsx bench/targets.ts`). Prints
// one JSON line {"ready":true,"host","sinkPort","echoPort","pid"} once both listen; exits when stdin closes
// (the benchmark that started it closed the pipe or died) or on SIGTERM/SIGINT.
import { parseFlags } from "../shared/args";
import { ConfigError } from "../shared/errors";
import { runMain } from "../shared/process";
import { startTargets } from "./proxy-lib";

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "node --import tsx bench/targets.ts [options]",
    "Sink and echo servers for bench:proxy; exits when stdin closes.",
    {
      host: { type: "string", default: "127.0.0.1", help: "address to listen on" },
      "sink-port": { type: "string", default: "0", help: "sink port (0 = free port)" },
      "echo-port": { type: "string", default: "0", help: "echo port (0 = free port)" },
    },
  );
  if (!parsed) return;
  const port = (name: "sink-port" | "echo-port") => {
    const v = Number(parsed.flags[name]);
    if (!Number.isInteger(v) || v < 0 || v > 65535)
      throw new ConfigError(`--${name}`, `must be a port number, got ${parsed.flags[name]}`);
    return v;
  };
  const targets = await startTargets(parsed.flags.host!, { sink: port("sink-port"), echo: port("echo-port") });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void targets.close().finally(() => process.exit(0));
  };
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdout.on("error", stop);
  process.stdout.write(
    JSON.stringify({
      ready: true,
      host: targets.host,
      sinkPort: targets.sinkPort,
      echoPort: targets.echoPort,
      pid: process.pid,
    }) + "\n",
  );
});
