// Counting the processes a piece of code starts: every spawn, execFile and exec of node:child_process goes
// through ChildProcess#spawn (an undocumented method, absent from the typings), which is wrapped while `fn`
// runs (spawnSync is not counted; nothing under test uses it). Used to hold steady states to "no process":
// a busy edge box must not pay a fork per resync.
import { ChildProcess } from "node:child_process";

type SpawnOptions = { file?: string; args?: string[] };
type Spawnable = { spawn(this: ChildProcess, options: SpawnOptions): unknown };

export async function countSpawns(fn: () => Promise<unknown>): Promise<{ count: number; commands: string[] }> {
  const commands: string[] = [];
  const proto = ChildProcess.prototype as unknown as Spawnable;
  const original = proto.spawn;
  proto.spawn = function (options) {
    commands.push((options.args ?? [options.file ?? "?"]).join(" "));
    return original.call(this, options);
  };
  try {
    await fn();
  } finally {
    proto.spawn = original;
  }
  return { count: commands.length, commands };
}
