// The Node-API side of raven_relay: one relay (thread, epoll instance, command queue) per JavaScript environment
// (the proxy's worker thread has its own), started by `start(onEnded)`. `open` takes over a channel's two
// sockets by duplicating their descriptors (the caller then closes its own) and queues it for the relay thread,
// which owns the channel from then on; `abort(id)` queues its reset. Ends come back through a thread-safe
// function, once per channel: onEnded(id, code | undefined, message, bytesPlainToPeer, bytesPeerToPlain).
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

typedef struct ended_msg {
  uint32_t id;
  int code;
  double bytes[2];
  char err[ERR_BYTES];
} ended_msg_t;

typedef struct host {
  napi_threadsafe_function on_ended;
} host_t;

// Relay thread: hands a channel's end to JavaScript. Nothing is lost while the environment lives: the queue is
// unbounded; once it is closing (the environment is going away), there is nobody left to tell.
static void post_ended(relay_t *r, chan_t *c, int code, const char *err) {
  host_t *h = r->host;
  ended_msg_t *m = calloc(1, sizeof *m);
  if (!m) return;
  m->id = c->id;
  m->code = code;
  m->bytes[0] = (double)c->d[0].bytes;
  m->bytes[1] = (double)c->d[1].bytes;
  if (err) snprintf(m->err, sizeof m->err, "%s", err);
  if (napi_call_threadsafe_function(h->on_ended, m, napi_tsfn_nonblocking) != napi_ok) free(m);
}

static void call_on_ended(napi_env env, napi_value fn, void *context, void *data) {
  (void)context;
  ended_msg_t *m = data;
  if (env && fn) {
    napi_value argv[5], undefined;
    napi_get_undefined(env, &undefined);
    napi_create_uint32(env, m->id, &argv[0]);
    if (m->code == 0) argv[1] = undefined;
    else napi_create_string_utf8(env, m->code == E_PROTOCOL ? "PROTOCOL" : "CLOSED", NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_string_utf8(env, m->err, NAPI_AUTO_LENGTH, &argv[2]);
    napi_create_double(env, m->bytes[0], &argv[3]);
    napi_create_double(env, m->bytes[1], &argv[4]);
    napi_call_function(env, undefined, fn, 5, argv, NULL);
  }
  free(m);
}

static void push_cmd(relay_t *r, cmd_t *q) {
  pthread_mutex_lock(&r->mu);
  if (r->cmds_tail) r->cmds_tail->next = q;
  else r->cmds = q;
  r->cmds_tail = q;
  pthread_mutex_unlock(&r->mu);
  uint64_t one = 1;
  if (write(r->evfd, &one, sizeof one) < 0) { /* the counter saturates only after 2^64 wakes */ }
}

static void relay_cleanup(void *arg) {
  relay_t *r = arg;
  host_t *h = r->host;
  if (r->running) {
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_mutex_unlock(&r->mu);
    uint64_t one = 1;
    if (write(r->evfd, &one, sizeof one) < 0) { /* see push_cmd */ }
    pthread_join(r->thread, NULL);
    napi_release_threadsafe_function(h->on_ended, napi_tsfn_release);
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
  free(r->scratch);
  free(h);
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

// start(onEnded): starts this environment's relay thread.
static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = relay_of(env);
  host_t *h = r->host;
  if (r->running) return throw_error(env, "the relay is already started");
  if (argc < 1) return throw_error(env, "start(onEnded) needs a callback");
  if (!(r->scratch = malloc(OPEN_CAP))) return throw_error(env, "out of memory");
  napi_create_string_utf8(env, "raven-relay", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_on_ended, &h->on_ended) != napi_ok) {
    return throw_error(env, "cannot create the relay's callback");
  }
  napi_unref_threadsafe_function(env, h->on_ended);
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

// Both descriptors duplicated, non-blocking, no Nagle; 0 with errno set when one cannot be.
static int take_fds(chan_t *c, int plain_fd, int peer_fd) {
  c->fd[SIDE_PLAIN] = fcntl(plain_fd, F_DUPFD_CLOEXEC, 0);
  c->fd[SIDE_PEER] = c->fd[SIDE_PLAIN] < 0 ? -1 : fcntl(peer_fd, F_DUPFD_CLOEXEC, 0);
  if (c->fd[SIDE_PEER] < 0) return 0;
  for (int s = 0; s < 2; s++) {
    int one = 1, fl = fcntl(c->fd[s], F_GETFL);
    if (fl < 0 || fcntl(c->fd[s], F_SETFL, fl | O_NONBLOCK) != 0) return 0;
    setsockopt(c->fd[s], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); // not TCP (a Unix socket): no matter
  }
  return 1;
}

// open({ plainFd, peerFd, sealed, gated, sealKey, openKey, toPeer, toPlain }) -> id.
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = relay_of(env);
  if (!r->running || __atomic_load_n(&r->exited, __ATOMIC_SEQ_CST)) return throw_error(env, "the relay is not running");
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
  chan_t *c = calloc(1, sizeof *c);
  cmd_t *q = calloc(1, sizeof *q);
  if (!c || !q) {
    free(c);
    free(q);
    return throw_error(env, "open: out of memory");
  }
  c->fd[0] = c->fd[1] = -1;
  dir_t *out = &c->d[0], *in = &c->d[1];
  *out = (dir_t){.kind = sealed ? K_SEAL : K_PLAIN, .src = -1, .dst = -1, .gated = sealed && gated};
  *in = (dir_t){.kind = sealed ? K_OPEN : K_PLAIN, .src = -1, .dst = -1};
  int ok = take_fds(c, plain_fd, peer_fd);
  int e = errno;
  out->src = in->dst = c->fd[SIDE_PLAIN];
  out->dst = in->src = c->fd[SIDE_PEER];
  ok = ok && (!sealed || (init_cipher(out, seal_key) && init_cipher(in, open_key)));
  ok = ok && chan_preload(out, to_peer, to_peer_len) && chan_preload(in, to_plain, to_plain_len);
  if (ok && sealed && !gated && to_peer_len == 0) ok = chan_hello(out);
  if (!ok) {
    if (c->fd[0] >= 0) close(c->fd[0]);
    if (c->fd[1] >= 0) close(c->fd[1]);
    chan_free(c);
    free(q);
    char msg[ERR_BYTES];
    snprintf(msg, sizeof msg, "open: cannot take over the channel's sockets: %s", strerror(e ? e : ENOMEM));
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

// abort(id): resets that channel (its end is still reported).
static napi_value js_abort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t id = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = relay_of(env);
  if (!r->running) return NULL;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &id) != napi_ok) return throw_error(env, "abort(id) needs a channel id");
  cmd_t *q = calloc(1, sizeof *q);
  if (!q) return throw_error(env, "abort: out of memory");
  q->type = CMD_ABORT;
  q->id = id;
  push_cmd(r, q);
  return NULL;
}

NAPI_MODULE_INIT() {
  relay_t *r = calloc(1, sizeof *r);
  host_t *h = calloc(1, sizeof *h);
  if (!r || !h) {
    free(r);
    free(h);
    return NULL;
  }
  r->epfd = r->evfd = -1;
  r->host = h;
  r->on_ended = post_ended;
  pthread_mutex_init(&r->mu, NULL);
  napi_set_instance_data(env, r, NULL, NULL);
  napi_add_env_cleanup_hook(env, relay_cleanup, r);
  napi_property_descriptor props[] = {
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"abort", NULL, js_abort, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
