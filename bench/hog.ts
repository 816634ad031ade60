// The CPU hog of bench:stability and the stability chaos test: `stress-ng --cpu 4` at the control path's own
// priority (fleet.ts CONTROL_NICE), so that it competes with the heartbeats on equal terms. It runs in a
// process group of its own, which stopCpuHog kills whole (stress-ng and its workers, nothing else).
import { spawn, type ChildProcess } from "node:child_process";
import { CONTROL_NICE } from "../services/fleet/fleet";

export function startCpuHog(onError: (err: Error) => void = () => undefined): ChildProcess {
  const child = spawn("nice", ["-n", String(CONTROL_NICE), "stress-ng", "--cpu", "4", "--quiet"], {
    stdio: "ignore",
    detached: true,
  });
  child.on("error", onError);
  return child;
}

export function stopCpuHog(hog: ChildProcess | null): void {
  if (hog?.pid === undefined || hog.exitCode !== null || hog.signalCode !== null) return;
  try {
    process.kill(-hog.pid, "SIGKILL");
  } catch {
    // gone already
  }
}
