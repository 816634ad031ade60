// lib/vpn: tunnel mode's VPN between gateways: the desired-state contract every driver keeps (vpn-driver.ts),
// the strongSwan and WireGuard drivers, a fake with error injection, and what they share (the PSK file, the
// daemons, the anchors on lo, the per-packet overheads). Named exports only.
export { PeerState, initiates, validateVpnDesired } from "./vpn-driver";
export { IPSEC_OVERHEAD_BYTES, WIREGUARD_OVERHEAD_BYTES, MIN_IPV4_MTU } from "./overhead";
export type { VpnPeer, VpnDesired, VpnPeerStatus, VpnStatus, VpnDriver } from "./vpn-driver";
export { FakeVpnDriver } from "./fake-vpn";
export { StrongSwanDriver } from "./strongswan";
export {
  STRONGSWAN_PACKAGES,
  DEFAULT_CHARON,
  VICI_PLUGIN,
  kernelHasEsp,
  checkStrongSwanInstalled,
} from "./strongswan-host";
export { MIN_PSK_BYTES, ensurePskFile, readPsk } from "./psk";
export { daemonArgv } from "./daemon";
export type { StrongSwanOptions, EspMode, CharonLauncher } from "./strongswan";
export {
  renderStrongswanConf,
  connectionMessage,
  sharedKeyMessage,
  sharedKeyId,
  ikeSasOf,
  uncoveredSubnets,
  IKE_PROPOSALS,
  ESP_PROPOSALS,
} from "./strongswan-conf";
export type { IkeSaInfo, ChildSaInfo, CharonConfInput } from "./strongswan-conf";
export {
  viciCall,
  ViciClient,
  encodeMessage,
  decodeMessage,
  encodePacket,
  checkSuccess,
  Packet,
  ViciError,
} from "./vici";
export type { ViciSection, ViciValue, ViciMessage, ViciPacket, ViciReply, ViciCallOptions } from "./vici";
export { ensureAnchors, anchorOf, ANCHOR_LABEL } from "./anchors";
export {
  TUNNEL_DRIVERS,
  TunnelDriverName,
  WIREGUARD_DEVICE,
  tunnelDriverFlag,
  underlayMtuFlag,
  vpnOverheadFor,
} from "./drivers";
export {
  WireGuardDriver,
  WIREGUARD_PACKAGES,
  DEFAULT_WIREGUARD_GO,
  DEFAULT_WIREGUARD_PORT,
  checkWireGuardInstalled,
} from "./wireguard";
export type { WireGuardOptions } from "./wireguard";
export {
  wireguardKeyPair,
  wireguardPresharedKey,
  publicKeyOf,
  parseUapiGet,
  uapiSet,
  uapiDevice,
  uapiPeer,
  uapiRemovePeer,
  uapiErrno,
  planWireGuardPeers,
  diffWireGuardPeers,
  WIREGUARD_KEY_SALT,
  WIREGUARD_PSK_SALT,
  PERSISTENT_KEEPALIVE_SEC,
  HANDSHAKE_FRESH_SEC,
} from "./wireguard-conf";
export type { WireGuardKeyPair, WgDeviceDump, WgPeerDump, WgWantedPeer, WgPeerOp } from "./wireguard-conf";
