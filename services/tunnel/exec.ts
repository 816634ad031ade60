// Running the external commands of tunnel mode (ip, bridge, sysctl, wg) without a shell: argv in,
// exit code and output back. A Runner is passed to the drivers so that tests can record or fake commands.
import { execFile } from "node:child_process";
import { CommandError } from "../../shared/errors";

export type CommandResult = Readonly<{ code: number; stdout: string; stderr: string }>;
export type RunOptions = Readonly<{ env?: NodeJS.ProcessEnv; timeoutMs?: number; /** Written to stdin, which is then closed. */ input?: string }>;
/** Runs argv[0] with the rest as arguments. Resolves with any exit code; rejects only when it cannot start. */
export type Runner = (argv: readonly string[], options?: RunOptions) => Promise<CommandResult>;

export const execRunner: Runner = (argv, options = {}) =>
  new Promise((resolve, reject) => {
    const [file, ...args] = argv;
    if (file === undefined) return reject(new CommandError([], "empty command", null));
    const child = execFile(
      file,
      args,
      { maxBuffer: 64 * 1024 * 1024, timeout: options.timeoutMs ?? 30_000, ...(options.env ? { env: options.env } : {}) },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: string };
        if (typeof e.code === "number") return resolve({ code: e.code, stdout, stderr });
        if (e.killed || e.signal) return resolve({ code: -1, stdout, stderr: `${stderr}\nkilled by ${e.signal ?? "timeout"}` });
        reject(new CommandError(argv, e.code === "ENOENT" ? `${file} not found` : String(e.message), null, { cause: err }));
      },
    );
    if (options.input !== undefined) {
      child.stdin?.on("error", () => undefined); // a command that exits without reading: its exit code tells
      child.stdin?.end(options.input);
    }
  });

/** Runs argv and returns stdout; a non-zero exit becomes a CommandError with stderr. */
export async function runOk(run: Runner, argv: readonly string[], options?: RunOptions): Promise<string> {
  const r = await run(argv, options);
  if (r.code !== 0) throw new CommandError(argv, r.stderr || r.stdout, r.code);
  return r.stdout;
}

/** argv for `ip`/`bridge` inside namespace `netns` (their own -n flag: no mount namespace, cheaper). */
export function inNs(netns: string | undefined, tool: "ip" | "bridge", ...args: string[]): string[] {
  return netns ? [tool, "-n", netns, ...args] : [tool, ...args];
}

/** argv that runs any command inside `netns` (or as is). */
export function execInNs(netns: string | undefined, argv: readonly string[]): string[] {
  return netns ? ["ip", "netns", "exec", netns, ...argv] : [...argv];
}
