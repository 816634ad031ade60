// The kubelet stand-in's `exec`: the remote-command protocol over WebSocket as kubelets and kube-apiserver
// speak it to kubectl (subprotocols v5.channel.k8s.io and v4.channel.k8s.io). Every binary message starts with
// its stream: 0 stdin, 1 stdout, 2 stderr, 3 error (the command's final metav1.Status, JSON), 4 resize; v5
// adds 255, a control message whose next byte names a stream the client closed (its stdin: EOF).
// Commands, answered in the stand-in's own process (there is no container):
//   hostname        the node's name            echo ARGS...   ARGS joined by spaces
//   cat             stdin back on stdout until the client closes stdin (v5) or the connection
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

function status(exitCode: number, message: string): string {
  if (exitCode === 0) return JSON.stringify({ metadata: {}, status: "Success" });
  return JSON.stringify({
    metadata: {},
    status: "Failure",
    message,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(exitCode) }] },
  });
}

/** Runs one command over an upgraded socket (`head`: bytes read past the handshake). */
export function serveExec(socket: Duplex, head: Buffer, node: string, command: readonly string[], v5: boolean): void {
  const reader = new FrameReader();
  let done = false;
  const send = (stream: number, data: string | Buffer) => {
    if (!socket.writable) return;
    socket.write(encodeFrame(Opcode.Binary, Buffer.concat([Buffer.from([stream]), Buffer.from(data)])));
  };
  const finish = (exitCode: number, message = "") => {
    if (done) return;
    done = true;
    send(Stream.Error, status(exitCode, message));
    if (socket.writable) socket.write(encodeFrame(Opcode.Close, Buffer.from([0x03, 0xe8])));
    socket.end();
  };
  const [cmd, ...args] = command;
  const interactive = cmd === "cat";
  socket.on("data", (chunk: Buffer) => {
    for (const r of reader.push(chunk)) {
      if (r.type === "error") return void socket.destroy();
      const { opcode, payload } = r.frame;
      if (opcode === Opcode.Close) return finish(0);
      if (opcode === Opcode.Ping) {
        if (socket.writable) socket.write(encodeFrame(Opcode.Pong, payload));
        continue;
      }
      if (opcode !== Opcode.Binary || payload.length === 0) continue;
      const stream = payload[0]!;
      if (interactive && stream === Stream.Stdin) send(Stream.Stdout, payload.subarray(1));
      // v5: stdin closed by the client; cat ends as it would at EOF.
      if (v5 && stream === Stream.Close && payload[1] === Stream.Stdin && interactive) finish(0);
    }
  });
  socket.on("error", () => socket.destroy());
  if (head.length > 0) socket.emit("data", head);
  if (interactive) return;
  if (cmd === "hostname") {
    send(Stream.Stdout, `${node}\n`);
    return finish(0);
  }
  if (cmd === "echo") {
    send(Stream.Stdout, `${args.join(" ")}\n`);
    return finish(0);
  }
  const name = cmd ?? "";
  send(Stream.Stderr, `${name}: command not found\n`);
  finish(127, `command terminated with non-zero exit code: exit status 127`);
}
