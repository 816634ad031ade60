// raven_relay: the proxy channels' data path, in native code on a thread of its own (see relay.c for the data
// path, frames.c for the sealed frames, addon.c for the Node-API side).
//
// Why native: a relay on Node's event loop with Node's TLS streams costs 1.3x an OpenSSH tunnel's round trip on
// this class of machine (bench:proxy's node-tls-relay floor) before any of Raven's own work. Here a channel's
// bytes never enter JavaScript: the gateway hands over a channel's two sockets (duplicated descriptors) and one
// epoll thread per process moves the bytes until both directions have ended.
#ifndef RAVEN_RELAY_H
#define RAVEN_RELAY_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

// Sealed frame: u8 type | u24 big-endian ciphertext length (<= MAX_PLAIN) | ciphertext | 16-byte GCM tag.
#define MAX_PLAIN 65536
#define HDR 4
#define TAG 16
#define MAX_FRAME (HDR + MAX_PLAIN + TAG)
// An opening direction reads up to two frames at once and decrypts every whole one into its plaintext buffer.
#define OPEN_CAP (2 * MAX_FRAME)
#define KEY_BYTES 32
#define ERR_BYTES 200

enum { K_PLAIN = 0, K_SEAL = 1, K_OPEN = 2 };
enum { F_DATA = 0, F_END = 1 };
enum { SIDE_PLAIN = 0, SIDE_PEER = 1 };
// Why a channel ended badly, as JavaScript's error codes: the peer broke the protocol, or a socket broke or the
// gateway closed the channel.
enum { E_CLOSED = 1, E_PROTOCOL = 2 };

typedef struct dir {
  int kind;
  int src, dst;
  unsigned char *buf; // bytes for dst, [off, len) still to write; allocated when the direction first has data
  size_t off, len;
  unsigned char *in; // K_OPEN: ciphertext read from src that is not yet a whole frame
  size_t in_len;
  unsigned char *pre; // bytes handed over with the channel, for dst before anything from src (sealed first
  size_t pre_off, pre_len; // for K_SEAL)
  int eof;   // nothing more comes from src
  int fin;   // the end has been passed on to dst (end frame queued, or dst shut down)
  int gated; // K_SEAL: hold until the peer's first frame authenticates
  uint64_t seq;
  uint64_t bytes; // plaintext carried
  EVP_CIPHER_CTX *ctx;
} dir_t;

typedef struct chan chan_t;
typedef struct ep {
  chan_t *c;
  int side;
} ep_t;

struct chan {
  uint32_t id;
  int fd[2];  // SIDE_PLAIN, SIDE_PEER
  dir_t d[2]; // 0: plain -> peer, 1: peer -> plain
  ep_t ep[2];
  chan_t *prev, *next; // the relay's open channels
  chan_t *ready_next;  // the relay's ready queue (budget used up, more to do)
  chan_t *dead_next;   // the relay's graveyard: freed at the end of the loop round it died in
  int queued;
  int dead;
};

typedef struct cmd {
  int type;
  uint32_t id;
  chan_t *c;
  struct cmd *next;
} cmd_t;
enum { CMD_ADD = 1, CMD_ABORT = 2 };

typedef struct relay relay_t;
typedef void (*ended_fn)(relay_t *r, chan_t *c, int code, const char *err);

struct relay {
  int epfd, evfd;
  pthread_t thread;
  int running;   // the thread was started (JavaScript thread only)
  int stopping;  // under mu
  int exited;    // the thread has left its loop (atomic): opens are refused
  pthread_mutex_t mu;
  cmd_t *cmds, *cmds_tail; // under mu
  chan_t *open;            // the thread's
  chan_t *ready, *ready_tail;
  chan_t *graveyard;
  unsigned char *scratch; // the thread's: a first read lands here, so an idle channel allocates nothing
  uint32_t next_id;       // JavaScript thread only
  ended_fn on_ended;      // called on the relay thread, once per channel
  void *host;             // addon.c's state
};

// frames.c
int seal_frame(dir_t *d, int type, size_t n);
int open_frame(dir_t *d, unsigned char *f, size_t n, unsigned char *out);
int init_cipher(dir_t *d, const void *key);

// relay.c
void *relay_main(void *arg);
void chan_free(chan_t *c);
int chan_preload(dir_t *d, const void *bytes, size_t n);
int chan_hello(dir_t *d);

#endif
