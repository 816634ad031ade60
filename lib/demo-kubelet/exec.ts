// The kubelet stand-in's `exec`: the remote-command protocol over WebSocket as kubelets and kube-apiserver
// speak it to kubectl (subprotocols v5.channel.k8s.io and v4.channel.k8s.io). Every binary message starts with
// its stream: 0 stdin, 1 stdout, 2 stderr, 3 error (the command's final metav1.Status, JSON), 4 resize; v5
// adds 255, a control message whose next byte names a stream the client closed (its stdin: EOF).
// Commands, answered in the stand-in's own process (there is no container):
//   hostname        the node's name            echo ARGS...   ARGS joined by spaces
//   cat             stdin back on stdout until the client closes stdin (v5) or the connection; nothing
//                   without stdin
//   anything else   "<cmd>: command not found" on stderr, exit code 127
// The final Status goes on stream 3, then a close frame; the connection then ends.
import type { Duplex } from "node:stream";
import { FrameReader, Opcode, encodeFrame } from "./websocket";

export const EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"] as const;
export type ExecProtocol = (typeof EXEC_PROTOCOLS)[number];

const Stream = { Stdin: 0, Stdout: 1, Stderr: 2, Error: 3, Resize: 4, Close: 255 } as const;

/** The first protocol of ours the client offered (in our order of preference), if any. */
export function pickExecProtocol(offered: string | undefined): ExecProtocol | undefined {
  const list = (offered ?? "").split(",").map((p) => p.trim());
  return EXEC_PROTOCOLS.find((p) => list.includes(p));
}

/** The command's final metav1.Status, as the error stream carries it. */
export function statusJson(exitCode: number, message = ""): string {
  if (exitCode === 0) return JSON.stringify({ metadata: {}, status: "Success" });
  return JSON.stringify({
    metadata: {},
    status: "Failure",
    message,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(exitCode) }] },
  });
}

export type CommandResult = { stdout: string; stderr: string; status: string };

/** A command that reads no stdin (not `cat`), run at once. */
export function runCommand(node: string, command: readonly string[]): CommandResult {
  const [cmd, ...args] = command;
  if (cmd === "cat") return { stdout: "", stderr: "", status: statusJson(0) };
  if (cmd === "hostname") return { stdout: `${node}\n`, stderr: "", status: statusJson(0) };
  if (cmd === "echo") return { stdout: `${args.join(" ")}\n`, stderr: "", status: statusJson(0) };
  return {
    stdout: "",
    stderr: `${cmd ?? ""}: command not found\n`,
    status: statusJson(127, "command terminated with non-zero exit code: exit status 127"),
  };
}

/** Runs one command over an upgraded socket (`head`: bytes read past the handshake). */
export function serveExec(
  socket: Duplex,
  head: Buffer,
  node: string,
  command: readonly string[],
  opts: { v5: boolean; stdin: boolean },
): void {
  const { v5 } = opts;
  const reader = new FrameReader();
  let done = false;
  const send = (stream: number, data: string | Buffer) => {
    if (!socket.writable) return;
    socket.write(encodeFrame(Opcode.Binary, Buffer.concat([Buffer.from([stream]), Buffer.from(data)])));
  };
  const finish = (status: string) => {
    if (done) return;
    done = true;
    send(Stream.Error, status);
    if (socket.writable) socket.write(encodeFrame(Opcode.Close, Buffer.from([0x03, 0xe8])));
    socket.end();
  };
  // cat with no stdin asked for (exec without -i) reads EOF at once: it runs like any other command.
  const interactive = command[0] === "cat" && opts.stdin;
  socket.on("data", (chunk: Buffer) => {
    for (const r of reader.push(chunk)) {
      if (r.type === "error") return void socket.destroy();
      const { opcode, payload } = r.frame;
      if (opcode === Opcode.Close) return finish(statusJson(0));
      if (opcode === Opcode.Ping) {
        if (socket.writable) socket.write(encodeFrame(Opcode.Pong, payload));
        continue;
      }
      if (opcode !== Opcode.Binary || payload.length === 0) continue;
      const stream = payload[0]!;
      if (interactive && stream === Stream.Stdin) send(Stream.Stdout, payload.subarray(1));
      // v5: stdin closed by the client; cat ends as it would at EOF.
      if (v5 && stream === Stream.Close && payload[1] === Stream.Stdin && interactive) finish(statusJson(0));
    }
  });
  socket.on("error", () => socket.destroy());
  if (head.length > 0) socket.emit("data", head);
  if (interactive) return;
  const { stdout, stderr, status } = runCommand(node, command);
  if (stdout) send(Stream.Stdout, stdout);
  if (stderr) send(Stream.Stderr, stderr);
  finish(status);
}
