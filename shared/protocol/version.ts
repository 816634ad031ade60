// PROTOCOL_VERSION — bump when a message changes shape in a way an older peer would misread.
// History:
//   1 (2026-11): node register/heartbeat, gateway heartbeat with data-path health, assignments with acks
//                and lease, errors, status request/reply.
//                Later in 1 (additive: new types only, which an older peer rejects as UNKNOWN_TYPE and counts):
//                chan.hello/welcome/open/opened for proxy channels, gw.proxy for their state; gw.tunnel for tunnel mode; inspect.viewer and inspect.batch for the
//                statechart debugger; chan.sealed for channels whose bytes travel as sealed frames outside TLS
//                (an older edge refuses it as UNKNOWN_TYPE instead of misreading the frames as raw bytes).
//                Also later in 1, optional fields added to nested maps, which an older peer drops and a newer
//                one reads as absent from an older peer: status.reply domains[].tunnelProblem and
//                domains[].termChangesLastMinute.
export const PROTOCOL_VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [1];
/** Control messages are small; anything larger is refused before it is decoded. */
export const MAX_MESSAGE_BYTES = 256 * 1024;
