// raven_netns: sockets and files inside other network namespaces, and netlink requests over them, so that
// tunnel mode reads and changes kernel state (links, addresses, routes, neighbours, FDB, sysctls) and probes
// its tunnels without spawning `ip`, `bridge`, `sysctl` or `ping` (a process per read made a busy edge box
// busier: issue 12).
//
// - socketIn / openIn create the descriptor on a short-lived thread that joins the namespace first (setns
//   changes only the calling thread, and the JavaScript thread must never leave its own namespace, or every
//   socket it opens afterwards would land in the wrong one). A socket or file keeps its namespace for life.
// - Every socket is non-blocking and close-on-exec. `transact` is the one blocking call: it sends one
//   netlink request and reads its replies (the kernel answers rtnetlink requests in the sender's context, so
//   this takes microseconds), bounded by a timeout.
// - `watch` reports readability through libuv (no thread, no polling); the caller drains with `recv`.
// The message formats are JavaScript's business (services/tunnel/rtnetlink.ts); this file moves bytes.
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

#define RECV_BYTES (256 * 1024)
#define NS_NAME_MAX 200

// --- errors ---------------------------------------------------------------------------------------------

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  char codebuf[32];
  snprintf(codebuf, sizeof codebuf, "E%d", err);
  napi_create_string_utf8(env, codebuf, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, message, &error);
  napi_value errnum;
  napi_create_int32(env, err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_msg(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int arg_int(napi_env env, napi_value v, int *out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

// A namespace argument: null/undefined is the caller's own; a name must be a plain `ip netns` name.
static int arg_ns(napi_env env, napi_value v, char *out, size_t cap, int *present) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_null || t == napi_undefined) {
    *present = 0;
    return 0;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, out, cap, &len) != napi_ok || len == 0 || len >= cap - 1) return -1;
  if (strchr(out, '/') || strcmp(out, ".") == 0 || strcmp(out, "..") == 0) return -1;
  *present = 1;
  return 0;
}

// --- creating descriptors inside a namespace -------------------------------------------------------------

typedef struct make {
  const char *ns;  // NULL: the caller's namespace
  int is_file;
  int family, type, protocol;
  const char *path;
  int flags;
  int fd;
  int err;
  const char *step;
} make_t;

static void *make_thread(void *arg) {
  make_t *m = arg;
  if (m->ns) {
    char path[NS_NAME_MAX + 16];
    snprintf(path, sizeof path, "/run/netns/%s", m->ns);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      m->err = errno;
      m->step = "open the namespace";
      return NULL;
    }
    int rc = setns(nsfd, CLONE_NEWNET);
    int e = errno;
    close(nsfd);
    if (rc < 0) {
      m->err = e;
      m->step = "enter the namespace";
      return NULL;
    }
  }
  if (m->is_file) {
    m->fd = open(m->path, m->flags | O_CLOEXEC);
    m->step = "open";
  } else {
    m->fd = socket(m->family, m->type | SOCK_CLOEXEC | SOCK_NONBLOCK, m->protocol);
    m->step = "socket";
  }
  if (m->fd < 0) m->err = errno;
  return NULL;
}

static int make_in(make_t *m) {
  m->fd = -1;
  m->err = 0;
  if (!m->ns) {
    make_thread(m);
    return m->fd;
  }
  pthread_t t;
  int rc = pthread_create(&t, NULL, make_thread, m);
  if (rc != 0) {
    m->err = rc;
    m->step = "start a thread";
    return -1;
  }
  pthread_join(t, NULL);
  return m->fd;
}

// socketIn(ns: string | null, family: number, type: number, protocol: number): number
static napi_value socket_in(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ns[NS_NAME_MAX];
  int has_ns = 0;
  make_t m = {0};
  if (argc < 4 || arg_ns(env, argv[0], ns, sizeof ns, &has_ns) < 0 || arg_int(env, argv[1], &m.family) < 0 ||
      arg_int(env, argv[2], &m.type) < 0 || arg_int(env, argv[3], &m.protocol) < 0)
    return throw_msg(env, "socketIn(ns, family, type, protocol): bad arguments");
  m.ns = has_ns ? ns : NULL;
  if (make_in(&m) < 0) return throw_errno(env, m.step, m.err);
  napi_value out;
  napi_create_int32(env, m.fd, &out);
  return out;
}

// openIn(ns: string | null, path: string, flags: number): number — a file as seen from inside the namespace
// (a /proc/sys/net sysctl: which namespace's value it reads and writes is fixed when it is opened).
static napi_value open_in(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ns[NS_NAME_MAX], path[512];
  int has_ns = 0;
  size_t len = 0;
  make_t m = {0};
  m.is_file = 1;
  if (argc < 3 || arg_ns(env, argv[0], ns, sizeof ns, &has_ns) < 0 ||
      napi_get_value_string_utf8(env, argv[1], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1 ||
      arg_int(env, argv[2], &m.flags) < 0)
    return throw_msg(env, "openIn(ns, path, flags): bad arguments");
  m.ns = has_ns ? ns : NULL;
  m.path = path;
  if (make_in(&m) < 0) return throw_errno(env, path, m.err);
  napi_value out;
  napi_create_int32(env, m.fd, &out);
  return out;
}

// --- socket operations -----------------------------------------------------------------------------------

// bindNetlink(fd, groups): joins the multicast groups (0: none) and asks for extended acks (the kernel's own
// words for a refusal) without the request echoed back.
static napi_value bind_netlink(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, groups;
  if (argc < 2 || arg_int(env, argv[0], &fd) < 0 || arg_int(env, argv[1], &groups) < 0) return throw_msg(env, "bindNetlink(fd, groups): bad arguments");
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = (unsigned)groups};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return throw_errno(env, "bind netlink", errno);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  if (groups != 0) {
    int rcvbuf = 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  return NULL;
}

static int parse_ipv4(napi_env env, napi_value v, struct sockaddr_in *sa) {
  char ip[64];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, ip, sizeof ip, &len) != napi_ok || len == 0) return -1;
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

// bindInet(fd, ipv4): the source address of what the socket sends.
static napi_value bind_inet(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  struct sockaddr_in sa;
  if (argc < 2 || arg_int(env, argv[0], &fd) < 0 || parse_ipv4(env, argv[1], &sa) < 0) return throw_msg(env, "bindInet(fd, ipv4): bad arguments");
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return throw_errno(env, "bind", errno);
  return NULL;
}

// send(fd, data, ipv4?): to the kernel (netlink, no address) or to an IPv4 address. Returns the bytes sent.
static napi_value send_to(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  void *data;
  size_t len;
  if (argc < 2 || arg_int(env, argv[0], &fd) < 0 || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) return throw_msg(env, "send(fd, data, ipv4?): bad arguments");
  ssize_t n;
  napi_valuetype t = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &t);
  if (t == napi_string) {
    struct sockaddr_in sa;
    if (parse_ipv4(env, argv[2], &sa) < 0) return throw_msg(env, "send: not an IPv4 address");
    n = sendto(fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa);
  } else {
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    n = sendto(fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa);
  }
  if (n < 0) return throw_errno(env, "send", errno);
  napi_value out;
  napi_create_int64(env, n, &out);
  return out;
}

// recv(fd): the next datagram, or null when there is none now. A netlink monitor that fell behind gets ENOBUFS
// (events were lost): thrown, so the caller re-reads the whole state.
static napi_value recv_one(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc < 1 || arg_int(env, argv[0], &fd) < 0) return throw_msg(env, "recv(fd): bad arguments");
  char *buf = malloc(RECV_BYTES);
  if (!buf) return throw_errno(env, "recv", ENOMEM);
  ssize_t n = recv(fd, buf, RECV_BYTES, MSG_DONTWAIT | MSG_TRUNC);
  if (n < 0) {
    int e = errno;
    free(buf);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    return throw_errno(env, "recv", e);
  }
  if (n > RECV_BYTES) {
    free(buf);
    return throw_errno(env, "recv (datagram larger than the buffer)", EMSGSIZE);
  }
  napi_value out;
  void *copy;
  napi_create_buffer_copy(env, (size_t)n, buf, &copy, &out);
  free(buf);
  return out;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// transact(fd, request, seq, timeoutMs): sends one netlink request and returns its replies (every message
// carrying `seq`, concatenated) up to and including the NLMSG_DONE or NLMSG_ERROR that ends it. Replies to
// other sequence numbers (an earlier request that timed out) are skipped.
static napi_value transact(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, timeout_ms;
  uint32_t seq;
  void *req;
  size_t req_len;
  if (argc < 4 || arg_int(env, argv[0], &fd) < 0 || napi_get_buffer_info(env, argv[1], &req, &req_len) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &seq) != napi_ok || arg_int(env, argv[3], &timeout_ms) < 0)
    return throw_msg(env, "transact(fd, request, seq, timeoutMs): bad arguments");
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, req, req_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return throw_errno(env, "netlink send", errno);

  char *buf = malloc(RECV_BYTES);
  size_t cap = 64 * 1024, used = 0;
  char *out = malloc(cap);
  if (!buf || !out) {
    free(buf);
    free(out);
    return throw_errno(env, "netlink receive", ENOMEM);
  }
  double deadline = now_ms() + timeout_ms;
  int done = 0, err = 0;
  const char *what = "netlink receive";
  while (!done) {
    double left = deadline - now_ms();
    if (left <= 0) {
      err = ETIMEDOUT;
      what = "netlink reply";
      break;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, (int)left + 1);
    if (pr < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (pr == 0) continue;
    ssize_t n = recv(fd, buf, RECV_BYTES, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      err = errno;
      break;
    }
    if (n > RECV_BYTES) {
      err = EMSGSIZE;
      break;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq) continue;
      size_t step = NLMSG_ALIGN(h->nlmsg_len);
      if (used + step > cap) {
        while (used + step > cap) cap *= 2;
        char *grown = realloc(out, cap);
        if (!grown) {
          err = ENOMEM;
          done = 1;
          break;
        }
        out = grown;
      }
      memset(out + used, 0, step);
      memcpy(out + used, h, h->nlmsg_len);
      used += step;
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) done = 1;
    }
  }
  free(buf);
  if (err) {
    free(out);
    return throw_errno(env, what, err);
  }
  napi_value result;
  void *copy;
  napi_create_buffer_copy(env, used, out, &copy, &result);
  free(out);
  return result;
}

// --- readability through libuv ----------------------------------------------------------------------------

typedef struct watcher {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  int closed;
} watcher_t;

static void on_closed(uv_handle_t *h) {
  free(h->data);
}

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)events;
  watcher_t *w = p->data;
  if (w->closed) return;
  napi_handle_scope scope;
  napi_open_handle_scope(w->env, &scope);
  napi_value fn, undefined, arg;
  napi_get_reference_value(w->env, w->callback, &fn);
  napi_get_undefined(w->env, &undefined);
  napi_create_int32(w->env, status, &arg);
  napi_value result;
  // An exception thrown by the callback becomes an uncaught exception of the process, as any callback's.
  if (napi_call_function(w->env, undefined, fn, 1, &arg, &result) == napi_pending_exception) {
    napi_value exc;
    napi_get_and_clear_last_exception(w->env, &exc);
    napi_fatal_exception(w->env, exc);
  }
  napi_close_handle_scope(w->env, scope);
}

// watch(fd, onReadable(status)): an opaque handle for unwatch. The callback runs on this thread's loop.
static napi_value watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  napi_valuetype t;
  if (argc < 2 || arg_int(env, argv[0], &fd) < 0 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function)
    return throw_msg(env, "watch(fd, callback): bad arguments");
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_msg(env, "watch: no event loop");
  watcher_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "watch", ENOMEM);
  w->env = env;
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc != 0) {
    free(w);
    return throw_msg(env, uv_strerror(rc));
  }
  w->poll.data = w;
  napi_create_reference(env, argv[1], 1, &w->callback);
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  napi_value handle;
  napi_create_external(env, w, NULL, NULL, &handle);
  return handle;
}

// unwatch(handle): stops the callbacks (idempotent); the descriptor stays open, the caller closes it.
static napi_value unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  watcher_t *w = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&w) != napi_ok || !w) return throw_msg(env, "unwatch(handle): bad arguments");
  if (w->closed) return NULL;
  w->closed = 1;
  uv_poll_stop(&w->poll);
  napi_delete_reference(env, w->callback);
  uv_close((uv_handle_t *)&w->poll, on_closed);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"socketIn", NULL, socket_in, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openIn", NULL, open_in, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bindNetlink", NULL, bind_netlink, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bindInet", NULL, bind_inet, NULL, NULL, NULL, napi_enumerable, NULL},
      {"send", NULL, send_to, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recv", NULL, recv_one, NULL, NULL, NULL, napi_enumerable, NULL},
      {"transact", NULL, transact, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watch", NULL, watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unwatch", NULL, unwatch, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(raven_netns, init)
