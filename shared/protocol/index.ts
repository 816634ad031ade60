export { PROTOCOL_VERSION, SUPPORTED_VERSIONS, MAX_MESSAGE_BYTES } from "./version";
export {
  subjects,
  SUBJECT_PREFIX,
  domainToken,
  nameToken,
  tokenToName,
  isDomainName,
  isObjectName,
  domainOfSubject,
  subjectMatches,
} from "./subjects";
export { messageSchemas } from "./messages";
export type {
  Message,
  MessageType,
  MessageBody,
  NodeRegister,
  NodeRegistered,
  NodeHeartbeat,
  GatewayHeartbeat,
  Assignment,
  WireError,
  StatusRequest,
  StatusReply,
  DomainStatus,
  CandidateStatus,
  EndpointRef,
  ChanHello,
  ChanOpen,
  GatewayProxy,
  GatewayTunnel,
  L3TunnelReport,
  InspectViewer,
  InspectBatch,
  InspectEntry,
} from "./messages";
export { encode, decode, decodeAs, tryDecode, REJECTED_COUNTER } from "./codec";
