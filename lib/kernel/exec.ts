// argv that starts a VPN daemon (charon, wireguard-go) inside a network namespace. Everything else tunnel mode
// does to the kernel goes over netlink (kernel-net.ts), without a process.

/** argv that runs any command inside `netns` (or as is). */
export function execInNs(netns: string | undefined, argv: readonly string[]): string[] {
  return netns ? ["ip", "netns", "exec", netns, ...argv] : [...argv];
}
