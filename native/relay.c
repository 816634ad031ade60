// raven_relay: the proxy channels' data path, in native code on a thread of its own.
//
// Why native: a relay written on Node's event loop with Node's TLS streams costs 1.3x an OpenSSH tunnel's round
// trip on this class of machine (bench:proxy's node-tls-relay floor), before any of Raven's own work. Here a
// channel's bytes never enter JavaScript: the gateway hands over the two sockets of a channel (their file
// descriptors, duplicated), and one epoll thread per process moves bytes between them until both directions end.
//
// A channel joins a plain socket (the client, or the target) with a socket to the peer gateway. Between the
// gateways a channel is either
//   - sealed: frames of at most 64 KiB, AES-256-GCM with one key per direction (the TLS connection's exported
//     keying material, so the TLS handshake still authenticates the peer), nonce = 4 zero bytes || 64-bit
//     big-endian frame counter, the frame header as additional data. Layout:
//       u8 type (0 data, 1 end) | u24 big-endian ciphertext length | ciphertext | 16-byte tag
//     An end frame carries the sender's half-close; a connection that ends without one was truncated and
//     aborts the channel, as does a frame that fails authentication (a gap or a replay cannot authenticate).
//   - plain: the bytes as they are, for an underlay that is already private (ChannelTransport "tcp").
// The side that must not speak first (the edge, `gated`) holds its sealed direction until the peer's first frame
// authenticates: until then the peer may still be reading the connection through TLS, which must not see frames.
//
// Backpressure is end to end: a direction reads its source only when everything it read before has been
// written to its destination, so a slow reader stops the far writer through TCP, and memory per channel is
// bounded (two buffers per direction, allocated when the direction first moves bytes). Half-close is carried
// across (end frame, then shutdown(SHUT_WR)). An error on either side, or `abort`, resets both sockets
// (SO_LINGER 0), so neither end mistakes a broken channel for a clean end. Each channel's end is reported once
// to JavaScript with the plaintext bytes each way and the error, if any.
//
// Sockets are registered edge-triggered; every event runs the channel's pump, which advances both directions
// until neither can (EAGAIN) or a fairness budget runs out, in which case the channel is queued to run again
// after the other ready channels.
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/evp.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PLAIN 65536
#define HDR 4
#define TAG 16
#define MAX_FRAME (HDR + MAX_PLAIN + TAG)
#define OPEN_CAP (2 * MAX_FRAME)
#define KEY_BYTES 32
#define PUMP_BUDGET 32
#define ERR_BYTES 200

enum { K_PLAIN = 0, K_SEAL = 1, K_OPEN = 2 };
enum { F_DATA = 0, F_END = 1 };
enum { SIDE_PLAIN = 0, SIDE_PEER = 1 };

typedef struct dir {
  int kind;
  int src, dst;
  unsigned char *buf; // bytes for dst: [off, len) still to write
  size_t off, len;
  unsigned char *in; // K_OPEN: ciphertext read from src, not yet a whole frame
  size_t in_len;
  int eof;   // nothing more comes from src
  int fin;   // the end has been passed on to dst (end frame queued, or dst shut down)
  int gated; // K_SEAL: hold until the peer's first frame authenticates
  size_t pre; // K_SEAL: plaintext handed over with the channel, waiting at buf+HDR to be sealed
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
  int fd[2]; // SIDE_PLAIN, SIDE_PEER
  dir_t d[2]; // 0: plain -> peer, 1: peer -> plain
  ep_t ep[2];
  chan_t *prev, *next; // the relay's open channels
  chan_t *ready_next;
  chan_t *dead_next; // the relay's graveyard: freed at the end of the loop round it died in
  int queued;
  int dead;
};

typedef struct cmd {
  int type; // CMD_ADD, CMD_ABORT, CMD_ABORT_ALL
  uint32_t id;
  chan_t *c;
  struct cmd *next;
} cmd_t;
enum { CMD_ADD = 1, CMD_ABORT = 2, CMD_ABORT_ALL = 3 };

typedef struct closed_msg {
  uint32_t id;
  double bytes[2];
  char err[ERR_BYTES];
  int has_err;
} closed_msg_t;

typedef struct relay {
  int epfd, evfd;
  pthread_t thread;
  int running;
  int stopping;
  pthread_mutex_t mu;
  cmd_t *cmds, *cmds_tail;
  chan_t *open; // owned by the thread
  chan_t *ready, *ready_tail;
  chan_t *graveyard;
  uint32_t next_id;
  uint32_t count; // open channels, written by the thread, read by JS (approximate)
  napi_threadsafe_function on_closed;
} relay_t;

static void chan_free(chan_t *c) {
  for (int i = 0; i < 2; i++) {
    free(c->d[i].buf);
    free(c->d[i].in);
    if (c->d[i].ctx) EVP_CIPHER_CTX_free(c->d[i].ctx);
  }
  free(c);
}

// ---- framing ---------------------------------------------------------------------------------------------

static void nonce_of(uint64_t seq, unsigned char iv[12]) {
  memset(iv, 0, 4);
  for (int i = 0; i < 8; i++) iv[4 + i] = (unsigned char)(seq >> (56 - 8 * i));
}

// Seals `n` plaintext bytes already at buf+HDR into a frame of `type`, in place; 0 on failure.
static int seal(dir_t *d, int type, size_t n) {
  unsigned char iv[12];
  unsigned char *h = d->buf;
  int outl = 0;
  h[0] = (unsigned char)type;
  h[1] = (unsigned char)(n >> 16);
  h[2] = (unsigned char)(n >> 8);
  h[3] = (unsigned char)n;
  nonce_of(d->seq++, iv);
  if (EVP_EncryptInit_ex(d->ctx, NULL, NULL, NULL, iv) != 1) return 0;
  if (EVP_EncryptUpdate(d->ctx, NULL, &outl, h, HDR) != 1) return 0;
  if (n > 0 && EVP_EncryptUpdate(d->ctx, h + HDR, &outl, h + HDR, (int)n) != 1) return 0;
  if (EVP_EncryptFinal_ex(d->ctx, h + HDR + n, &outl) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_GCM_GET_TAG, TAG, h + HDR + n) != 1) return 0;
  d->off = 0;
  d->len = HDR + n + TAG;
  return 1;
}

// Opens the frame at f (header, n ciphertext bytes, tag) into out; 0 when it does not authenticate.
static int open_frame(dir_t *d, unsigned char *f, size_t n, unsigned char *out) {
  unsigned char iv[12];
  int outl = 0;
  nonce_of(d->seq++, iv);
  if (EVP_DecryptInit_ex(d->ctx, NULL, NULL, NULL, iv) != 1) return 0;
  if (EVP_DecryptUpdate(d->ctx, NULL, &outl, f, HDR) != 1) return 0;
  if (n > 0 && EVP_DecryptUpdate(d->ctx, out, &outl, f + HDR, (int)n) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_GCM_SET_TAG, TAG, f + HDR + n) != 1) return 0;
  return EVP_DecryptFinal_ex(d->ctx, out + n, &outl) == 1;
}

// ---- the data path (relay thread only) -------------------------------------------------------------------

static void reset_fd(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

static void post_closed(relay_t *r, chan_t *c, const char *err) {
  closed_msg_t *m = calloc(1, sizeof *m);
  if (!m) return;
  m->id = c->id;
  m->bytes[0] = (double)c->d[0].bytes;
  m->bytes[1] = (double)c->d[1].bytes;
  if (err) {
    m->has_err = 1;
    snprintf(m->err, sizeof m->err, "%s", err);
  }
  if (napi_call_threadsafe_function(r->on_closed, m, napi_tsfn_nonblocking) != napi_ok) free(m);
}

// Ends a channel once: both sockets closed (reset when err), JavaScript told. The channel is freed at the end of
// the loop round, since events of this round may still name it.
static void finish(relay_t *r, chan_t *c, const char *err) {
  if (c->dead) return;
  c->dead = 1;
  for (int s = 0; s < 2; s++) {
    if (err) reset_fd(c->fd[s]);
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd[s], NULL);
    close(c->fd[s]);
  }
  if (c->prev) c->prev->next = c->next;
  else r->open = c->next;
  if (c->next) c->next->prev = c->prev;
  __atomic_sub_fetch(&r->count, 1, __ATOMIC_RELAXED);
  c->dead_next = r->graveyard;
  r->graveyard = c;
  post_closed(r, c, err);
}

static int fail(relay_t *r, chan_t *c, const char *what, int e) {
  char msg[ERR_BYTES];
  if (e) snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  else snprintf(msg, sizeof msg, "%s", what);
  finish(r, c, msg);
  return -1;
}

static int ensure(dir_t *d) {
  size_t cap = d->kind == K_OPEN ? OPEN_CAP : d->kind == K_SEAL ? MAX_FRAME : MAX_PLAIN;
  if (!d->buf && !(d->buf = malloc(cap))) return 0;
  if (d->kind == K_OPEN && !d->in && !(d->in = malloc(OPEN_CAP))) return 0;
  return 1;
}

// Advances one direction by one step: 1 progress, 0 blocked, -1 the channel failed (and is finished).
static int step(relay_t *r, chan_t *c, int i) {
  dir_t *d = &c->d[i];
  if (d->off < d->len) {
    ssize_t n = send(d->dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (errno == EINTR) return 1;
      return fail(r, c, i == 0 ? "write to the peer gateway" : "write to the local side", errno);
    }
    d->off += (size_t)n;
    if (d->off == d->len) d->off = d->len = 0;
    return 1;
  }
  if (d->pre > 0) {
    if (d->gated) return 0;
    size_t n = d->pre;
    d->pre = 0;
    return seal(d, F_DATA, n) ? 1 : fail(r, c, "sealing a frame failed", 0);
  }
  if (d->eof) {
    if (d->fin) return 0;
    d->fin = 1;
    if (d->kind == K_SEAL) {
      if (!ensure(d) || !seal(d, F_END, 0)) return fail(r, c, "sealing the end frame failed", 0);
    } else if (shutdown(d->dst, SHUT_WR) < 0 && errno != ENOTCONN) {
      return fail(r, c, i == 0 ? "half-close toward the peer gateway" : "half-close toward the local side", errno);
    }
    return 1;
  }
  if (d->gated) return 0;
  if (!ensure(d)) return fail(r, c, "out of memory", 0);
  if (d->kind == K_OPEN) {
    ssize_t n = recv(d->src, d->in + d->in_len, OPEN_CAP - d->in_len, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (errno == EINTR) return 1;
      return fail(r, c, "read from the peer gateway", errno);
    }
    if (n == 0) return fail(r, c, "the peer gateway closed the channel without an end frame (truncated)", 0);
    d->in_len += (size_t)n;
    size_t p = 0;
    while (d->in_len - p >= HDR) {
      unsigned char *f = d->in + p;
      int type = f[0];
      size_t flen = ((size_t)f[1] << 16) | ((size_t)f[2] << 8) | f[3];
      if (type > F_END || flen > MAX_PLAIN) return fail(r, c, "malformed frame from the peer gateway", 0);
      if (d->in_len - p < HDR + flen + TAG) break;
      if (!open_frame(d, f, flen, d->buf + d->len)) return fail(r, c, "a frame from the peer gateway failed authentication", 0);
      d->len += flen;
      d->bytes += flen;
      p += HDR + flen + TAG;
      c->d[1 - i].gated = 0;
      if (type == F_END) {
        if (p != d->in_len) return fail(r, c, "bytes after the end frame from the peer gateway", 0);
        d->eof = 1;
        break;
      }
    }
    if (p > 0) memmove(d->in, d->in + p, d->in_len - p);
    d->in_len -= p;
    return 1;
  }
  unsigned char *into = d->kind == K_SEAL ? d->buf + HDR : d->buf;
  ssize_t n = recv(d->src, into, MAX_PLAIN, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno == EINTR) return 1;
    return fail(r, c, i == 0 ? "read from the local side" : "read from the peer gateway", errno);
  }
  if (n == 0) {
    d->eof = 1;
    return 1;
  }
  d->bytes += (size_t)n;
  if (d->kind == K_SEAL) {
    if (!seal(d, F_DATA, (size_t)n)) return fail(r, c, "sealing a frame failed", 0);
  } else {
    d->off = 0;
    d->len = (size_t)n;
  }
  return 1;
}

static int dir_done(const dir_t *d) { return d->eof && d->fin && d->off == d->len; }

static void enqueue_ready(relay_t *r, chan_t *c) {
  if (c->queued) return;
  c->queued = 1;
  c->ready_next = NULL;
  if (r->ready_tail) r->ready_tail->ready_next = c;
  else r->ready = c;
  r->ready_tail = c;
}

static void pump(relay_t *r, chan_t *c) {
  for (int round = 0; round < PUMP_BUDGET; round++) {
    int progress = 0;
    for (int i = 0; i < 2; i++) {
      int s = step(r, c, i);
      if (s < 0) return;
      progress |= s;
    }
    if (dir_done(&c->d[0]) && dir_done(&c->d[1])) return finish(r, c, NULL);
    if (!progress) return;
  }
  enqueue_ready(r, c); // still moving: let the other channels have their turn first
}

static void on_error_event(relay_t *r, chan_t *c, int side) {
  int e = 0;
  socklen_t len = sizeof e;
  getsockopt(c->fd[side], SOL_SOCKET, SO_ERROR, &e, &len);
  if (e) fail(r, c, side == SIDE_PLAIN ? "local side" : "peer gateway", e);
}

static void add_chan(relay_t *r, chan_t *c) {
  c->next = r->open;
  if (r->open) r->open->prev = c;
  r->open = c;
  __atomic_add_fetch(&r->count, 1, __ATOMIC_RELAXED);
  for (int s = 0; s < 2; s++) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &c->ep[s]};
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd[s], &ev) < 0) {
      fail(r, c, "epoll_ctl", errno);
      return;
    }
  }
  pump(r, c);
}

static void *relay_main(void *arg) {
  relay_t *r = arg;
  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(r->epfd, evs, 64, r->ready ? 0 : -1);
    if (n < 0 && errno != EINTR) break;
    for (int k = 0; k < n; k++) {
      if (evs[k].data.ptr == NULL) {
        uint64_t v;
        if (read(r->evfd, &v, sizeof v) < 0) { /* spurious: the queue below is the truth */ }
        pthread_mutex_lock(&r->mu);
        cmd_t *q = r->cmds;
        int stopping = r->stopping;
        r->cmds = r->cmds_tail = NULL;
        pthread_mutex_unlock(&r->mu);
        while (q) {
          cmd_t *next = q->next;
          if (q->type == CMD_ADD) add_chan(r, q->c);
          else {
            for (chan_t *c = r->open; c;) {
              chan_t *cn = c->next;
              if (q->type == CMD_ABORT_ALL || c->id == q->id) fail(r, c, "channel closed by the gateway", 0);
              c = cn;
            }
          }
          free(q);
          q = next;
        }
        if (stopping) goto out;
        continue;
      }
      ep_t *ep = evs[k].data.ptr;
      chan_t *c = ep->c;
      if (c->dead) continue;
      if (evs[k].events & EPOLLERR) on_error_event(r, c, ep->side);
      if (!c->dead) pump(r, c);
    }
    // Channels that used their budget: one more turn each, in order.
    chan_t *q = r->ready;
    r->ready = r->ready_tail = NULL;
    while (q) {
      chan_t *next = q->ready_next;
      q->queued = 0;
      if (!q->dead) pump(r, q);
      q = next;
    }
    // Only live channels were queued again above, and no later event can name a dead one: free them.
    while (r->graveyard) {
      chan_t *g = r->graveyard;
      r->graveyard = g->dead_next;
      chan_free(g);
    }
  }
out:
  for (chan_t *c = r->open; c;) {
    chan_t *cn = c->next;
    fail(r, c, "relay stopped", 0);
    c = cn;
  }
  while (r->graveyard) {
    chan_t *g = r->graveyard;
    r->graveyard = g->dead_next;
    chan_free(g);
  }
  return NULL;
}

// ---- JavaScript side -------------------------------------------------------------------------------------

static void push_cmd(relay_t *r, cmd_t *q) {
  pthread_mutex_lock(&r->mu);
  if (r->cmds_tail) r->cmds_tail->next = q;
  else r->cmds = q;
  r->cmds_tail = q;
  pthread_mutex_unlock(&r->mu);
  uint64_t one = 1;
  if (write(r->evfd, &one, sizeof one) < 0) { /* the counter saturates only after 2^64 wakes */ }
}

static void call_on_closed(napi_env env, napi_value fn, void *context, void *data) {
  (void)context;
  closed_msg_t *m = data;
  if (env && fn) {
    napi_value argv[4], undefined;
    napi_get_undefined(env, &undefined);
    napi_create_uint32(env, m->id, &argv[0]);
    if (m->has_err) napi_create_string_utf8(env, m->err, NAPI_AUTO_LENGTH, &argv[1]);
    else argv[1] = undefined;
    napi_create_double(env, m->bytes[0], &argv[2]);
    napi_create_double(env, m->bytes[1], &argv[3]);
    napi_call_function(env, undefined, fn, 4, argv, NULL);
  }
  free(m);
}

static void relay_cleanup(void *arg) {
  relay_t *r = arg;
  if (r->running) {
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_mutex_unlock(&r->mu);
    uint64_t one = 1;
    if (write(r->evfd, &one, sizeof one) < 0) { /* see push_cmd */ }
    pthread_join(r->thread, NULL);
    napi_release_threadsafe_function(r->on_closed, napi_tsfn_abort);
  }
  for (cmd_t *q = r->cmds; q;) {
    cmd_t *next = q->next;
    if (q->c) {
      close(q->c->fd[0]);
      close(q->c->fd[1]);
      chan_free(q->c);
    }
    free(q);
    q = next;
  }
  if (r->epfd >= 0) close(r->epfd);
  if (r->evfd >= 0) close(r->evfd);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static relay_t *relay_of(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

static napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, "RELAY", msg);
  return NULL;
}

// start(onClosed(id, error | undefined, bytesPlainToPeer, bytesPeerToPlain)): starts this thread's relay.
static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = relay_of(env);
  if (r->running) return throw_error(env, "the relay is already started");
  if (argc < 1) return throw_error(env, "start(onClosed) needs a callback");
  napi_create_string_utf8(env, "raven-relay", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_on_closed, &r->on_closed) != napi_ok) {
    return throw_error(env, "cannot create the relay's callback");
  }
  napi_unref_threadsafe_function(env, r->on_closed);
  r->epfd = epoll_create1(EPOLL_CLOEXEC);
  r->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (r->epfd < 0 || r->evfd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->evfd, &ev) < 0) {
    return throw_error(env, "cannot create the relay's epoll instance");
  }
  if (pthread_create(&r->thread, NULL, relay_main, r) != 0) return throw_error(env, "cannot start the relay thread");
  r->running = 1;
  return NULL;
}

static int get_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  bool has = false;
  napi_has_named_property(env, obj, key, &has);
  if (!has) return 0;
  napi_get_named_property(env, obj, key, out);
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined && t != napi_null;
}

static int get_int(napi_env env, napi_value obj, const char *key, int32_t *out) {
  napi_value v;
  return get_prop(env, obj, key, &v) && napi_get_value_int32(env, v, out) == napi_ok;
}

// The buffer at obj[key] (absent: len 0); 0 when it is there but not a buffer.
static int get_buf(napi_env env, napi_value obj, const char *key, void **data, size_t *len) {
  napi_value v;
  *data = NULL;
  *len = 0;
  if (!get_prop(env, obj, key, &v)) return 1;
  bool is = false;
  napi_is_buffer(env, v, &is);
  return is && napi_get_buffer_info(env, v, data, len) == napi_ok;
}

static int init_dir(dir_t *d, int kind, int src, int dst, const void *key) {
  d->kind = kind;
  d->src = src;
  d->dst = dst;
  if (kind == K_PLAIN) return 1;
  d->ctx = EVP_CIPHER_CTX_new();
  if (!d->ctx) return 0;
  if (kind == K_SEAL) return EVP_EncryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, key, NULL) == 1;
  return EVP_DecryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, key, NULL) == 1;
}

// Queues bytes for dst before anything read from src: plaintext (K_PLAIN, K_OPEN), or one frame's worth for
// K_SEAL, sealed once the direction is not gated. An ungated sealing direction always preloads (empty if there
// is nothing), so its first frame goes out at once: that frame is what lets the gated peer speak.
static int preload(dir_t *d, const void *bytes, size_t n) {
  if (!ensure(d)) return 0;
  if (d->kind == K_SEAL) {
    if (n > 0) memcpy(d->buf + HDR, bytes, n);
    d->bytes += n;
    if (n > 0 || d->gated) {
      d->pre = n;
      return 1;
    }
    return seal(d, F_DATA, 0);
  }
  memcpy(d->buf, bytes, n);
  d->off = 0;
  d->len = n;
  d->bytes += n;
  return 1;
}

// open({ plainFd, peerFd, sealed, gated, sealKey, openKey, toPeer, toPlain }) -> id. Duplicates both
// descriptors (the caller then closes its own), so the channel belongs to the relay from here on.
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = relay_of(env);
  if (!r->running) return throw_error(env, "the relay is not started");
  int32_t plain_fd = -1, peer_fd = -1, sealed = 0, gated = 0;
  void *seal_key, *open_key, *to_peer, *to_plain;
  size_t seal_len, open_len, to_peer_len, to_plain_len;
  if (argc < 1 || !get_int(env, argv[0], "plainFd", &plain_fd) || !get_int(env, argv[0], "peerFd", &peer_fd) || plain_fd < 0 || peer_fd < 0) {
    return throw_error(env, "open: plainFd and peerFd must be open file descriptors");
  }
  get_int(env, argv[0], "sealed", &sealed);
  get_int(env, argv[0], "gated", &gated);
  if (!get_buf(env, argv[0], "sealKey", &seal_key, &seal_len) || !get_buf(env, argv[0], "openKey", &open_key, &open_len) ||
      !get_buf(env, argv[0], "toPeer", &to_peer, &to_peer_len) || !get_buf(env, argv[0], "toPlain", &to_plain, &to_plain_len)) {
    return throw_error(env, "open: sealKey, openKey, toPeer and toPlain must be Buffers when given");
  }
  if (sealed && (seal_len != KEY_BYTES || open_len != KEY_BYTES)) return throw_error(env, "open: a sealed channel needs two 32-byte keys");
  if (to_peer_len > MAX_PLAIN || to_plain_len > MAX_PLAIN) return throw_error(env, "open: toPeer and toPlain hold at most 64 KiB");
  chan_t *c = calloc(1, sizeof *c);
  cmd_t *q = calloc(1, sizeof *q);
  if (!c || !q) {
    free(c);
    free(q);
    return throw_error(env, "open: out of memory");
  }
  c->fd[SIDE_PLAIN] = fcntl(plain_fd, F_DUPFD_CLOEXEC, 0);
  c->fd[SIDE_PEER] = fcntl(peer_fd, F_DUPFD_CLOEXEC, 0);
  int ok = c->fd[0] >= 0 && c->fd[1] >= 0;
  for (int s = 0; ok && s < 2; s++) {
    int one = 1, fl = fcntl(c->fd[s], F_GETFL);
    ok = fl >= 0 && fcntl(c->fd[s], F_SETFL, fl | O_NONBLOCK) == 0;
    setsockopt(c->fd[s], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); // not TCP (a test's Unix socket): no matter
  }
  ok = ok && init_dir(&c->d[0], sealed ? K_SEAL : K_PLAIN, c->fd[SIDE_PLAIN], c->fd[SIDE_PEER], seal_key) &&
       init_dir(&c->d[1], sealed ? K_OPEN : K_PLAIN, c->fd[SIDE_PEER], c->fd[SIDE_PLAIN], open_key);
  c->d[0].gated = sealed && gated;
  if (ok && (c->d[0].kind == K_SEAL ? !gated || to_peer_len > 0 : to_peer_len > 0)) ok = preload(&c->d[0], to_peer, to_peer_len);
  if (ok && to_plain_len > 0) {
    // An opening direction's first plaintext goes in its buffer as if just decrypted.
    ok = ensure(&c->d[1]);
    if (ok) {
      memcpy(c->d[1].buf, to_plain, to_plain_len);
      c->d[1].len = to_plain_len;
      c->d[1].bytes += to_plain_len;
    }
  }
  if (!ok) {
    int e = errno;
    if (c->fd[0] >= 0) close(c->fd[0]);
    if (c->fd[1] >= 0) close(c->fd[1]);
    chan_free(c);
    free(q);
    char msg[ERR_BYTES];
    snprintf(msg, sizeof msg, "open: cannot take over the channel's sockets: %s", strerror(e));
    return throw_error(env, msg);
  }
  uint32_t id = ++r->next_id;
  c->id = id;
  c->ep[0] = (ep_t){c, SIDE_PLAIN};
  c->ep[1] = (ep_t){c, SIDE_PEER};
  q->type = CMD_ADD;
  q->c = c;
  push_cmd(r, q); // from here on the channel is the relay thread's (it may even be freed already)
  napi_create_uint32(env, id, &result);
  return result;
}

static napi_value js_abort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t id = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = relay_of(env);
  if (!r->running) return NULL;
  cmd_t *q = calloc(1, sizeof *q);
  if (!q) return throw_error(env, "abort: out of memory");
  if (argc >= 1 && napi_get_value_uint32(env, argv[0], &id) == napi_ok) {
    q->type = CMD_ABORT;
    q->id = id;
  } else {
    q->type = CMD_ABORT_ALL;
  }
  push_cmd(r, q);
  return NULL;
}

static napi_value js_count(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_uint32(env, __atomic_load_n(&relay_of(env)->count, __ATOMIC_RELAXED), &v);
  return v;
}

NAPI_MODULE_INIT() {
  relay_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->epfd = r->evfd = -1;
  pthread_mutex_init(&r->mu, NULL);
  napi_set_instance_data(env, r, NULL, NULL);
  napi_add_env_cleanup_hook(env, relay_cleanup, r);
  napi_property_descriptor props[] = {
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"abort", NULL, js_abort, NULL, NULL, NULL, napi_default, NULL},
      {"count", NULL, js_count, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
