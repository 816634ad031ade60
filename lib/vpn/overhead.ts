// What each VPN adds to a packet (IPv4 underlay; the worst case, so the inner packet always fits one outer
// packet), for the MTU arithmetic of tunnel mode (../vxlan/routes.ts):
//   ESP in UDP (NAT-T, UDP 4500) with AES-GCM-128, as strongSwan negotiates it here:
//             65 = outer IPv4 20 + UDP 8 + ESP header (SPI, seq) 8 + GCM IV 8 + padding <= 3 (4-byte
//                  alignment) + pad length 1 + next header 1 + ICV 16
//             Raven upstream subtracts 64 (one short in the worst case); an IPv6 underlay would need 85.
//             The figure is checked by the root integration test: a DF ping of exactly that inner size
//             crosses the tunnel and the outer packet is not fragmented.
//   WireGuard 80 = outer IPv6 40 (wg-quick's conservative choice; 60 over IPv4) + UDP 8 + type/index 8 +
//                  counter 8 + Poly1305 tag 16

export const IPSEC_OVERHEAD_BYTES = 20 + 8 + 8 + 8 + 3 + 1 + 1 + 16; // 65, see above
export const WIREGUARD_OVERHEAD_BYTES = 80;
/** The smallest MTU every IPv4 link must carry: no tunnel may leave less. */
export const MIN_IPV4_MTU = 576;
