// The relay thread: moves each channel's bytes between its plain socket (the client, or the target) and its
// socket to the peer gateway, sealed (frames.c) or as they are, until both directions have ended.
//
// Backpressure is end to end: a direction reads its source only when everything it read before has been written
// to its destination, so a slow reader stops the far writer through TCP. A direction's buffers are allocated
// when it first has data (a first read lands in the relay's scratch buffer), at most MAX_FRAME for a sealing or
// plain direction and 2 x OPEN_CAP for an opening one; an idle channel holds none. Half-close is carried across
// (an end frame, then shutdown(SHUT_WR) on the far side); a sealed connection that ends without an end frame was
// truncated. Any failure, or an abort, resets both sockets (SO_LINGER 0), so neither end takes a broken channel
// for a clean end; each channel's end is reported once (r->on_ended).
//
// The side that must not speak first (the edge: `gated`) holds its sealing direction until the peer's first frame
// authenticates: until then the peer may still be reading the connection through TLS, which must not see frames.
//
// Sockets are registered edge-triggered. Every event runs the channel's pump, which advances both directions
// until neither can (each stop is an EAGAIN, the gate, or the end) or a fairness budget runs out, in which case
// the channel is queued to run again after the other channels of this round.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

#define PUMP_BUDGET 32

void chan_free(chan_t *c) {
  for (int i = 0; i < 2; i++) {
    free(c->d[i].buf);
    free(c->d[i].in);
    free(c->d[i].pre);
    if (c->d[i].ctx) EVP_CIPHER_CTX_free(c->d[i].ctx);
  }
  free(c);
}

static size_t cap_of(int kind) { return kind == K_OPEN ? OPEN_CAP : kind == K_SEAL ? MAX_FRAME : MAX_PLAIN; }

static int alloc_bufs(dir_t *d) {
  if (!d->buf && !(d->buf = malloc(cap_of(d->kind)))) return 0;
  if (d->kind == K_OPEN && !d->in && !(d->in = malloc(OPEN_CAP))) return 0;
  return 1;
}

// Keeps a copy of bytes handed over with the channel, to go to dst before anything read from src.
int chan_preload(dir_t *d, const void *bytes, size_t n) {
  if (n == 0) return 1;
  if (!(d->pre = malloc(n))) return 0;
  memcpy(d->pre, bytes, n);
  d->pre_len = n;
  d->bytes += n;
  return 1;
}

// Queues an empty data frame: an ungated sealing direction sends one at once when it has nothing else, since
// the gated peer speaks only after the first frame.
int chan_hello(dir_t *d) { return alloc_bufs(d) && seal_frame(d, F_DATA, 0); }

static void reset_fd(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

// Ends a channel once: both sockets closed (reset on error), the end reported. The channel is freed at the end
// of the loop round, since events of this round may still name it.
static void finish(relay_t *r, chan_t *c, int code, const char *err) {
  if (c->dead) return;
  c->dead = 1;
  for (int s = 0; s < 2; s++) {
    if (code) reset_fd(c->fd[s]);
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd[s], NULL);
    close(c->fd[s]);
  }
  if (c->prev) c->prev->next = c->next;
  else r->open = c->next;
  if (c->next) c->next->prev = c->prev;
  c->dead_next = r->graveyard;
  r->graveyard = c;
  r->on_ended(r, c, code, err);
}

static int fail(relay_t *r, chan_t *c, int code, const char *what, int e) {
  char msg[ERR_BYTES];
  if (e) snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  else snprintf(msg, sizeof msg, "%s", what);
  finish(r, c, code, msg);
  return -1;
}

#define WOULD_BLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)

// Opens every whole frame in d->in into d->buf; keeps a partial one. 1, or -1 when the channel failed.
static int open_frames(relay_t *r, chan_t *c, int i) {
  dir_t *d = &c->d[i];
  size_t p = 0;
  while (d->in_len - p >= HDR) {
    unsigned char *f = d->in + p;
    int type = f[0];
    size_t n = ((size_t)f[1] << 16) | ((size_t)f[2] << 8) | f[3];
    if (type > F_END || n > MAX_PLAIN) return fail(r, c, E_PROTOCOL, "malformed frame from the peer gateway", 0);
    if (d->in_len - p < HDR + n + TAG) break;
    if (!open_frame(d, f, n, d->buf + d->len)) return fail(r, c, E_PROTOCOL, "a frame from the peer gateway failed authentication", 0);
    d->len += n;
    d->bytes += n;
    p += HDR + n + TAG;
    c->d[1 - i].gated = 0; // the peer has spoken: its TLS reading is over
    if (type == F_END) {
      if (p != d->in_len) return fail(r, c, E_PROTOCOL, "bytes after the end frame from the peer gateway", 0);
      d->eof = 1;
      break;
    }
  }
  if (p > 0) memmove(d->in, d->in + p, d->in_len - p);
  d->in_len -= p;
  return 1;
}

#define BLOCKED (-2)

// Writes what it can of [p, p + n) to direction i's destination: the bytes written (0 when interrupted),
// BLOCKED, or -1 when the channel failed (and is finished).
static ssize_t write_some(relay_t *r, chan_t *c, int i, const unsigned char *p, size_t n) {
  ssize_t w = send(c->d[i].dst, p, n, MSG_NOSIGNAL);
  if (w >= 0) return w;
  if (WOULD_BLOCK(errno)) return BLOCKED;
  if (errno == EINTR) return 0;
  return fail(r, c, E_CLOSED, i == 0 ? "write to the peer gateway" : "write to the local side", errno);
}

// Advances one direction by one step: 1 progress, 0 blocked, -1 the channel failed (and is finished).
static int step(relay_t *r, chan_t *c, int i) {
  dir_t *d = &c->d[i];
  const char *to = i == 0 ? "the peer gateway" : "the local side";
  const char *from = i == 0 ? "the local side" : "the peer gateway";
  char what[64];
  if (d->off < d->len) {
    ssize_t n = write_some(r, c, i, d->buf + d->off, d->len - d->off);
    if (n < 0) return n == BLOCKED ? 0 : -1;
    d->off += (size_t)n;
    if (d->off == d->len) d->off = d->len = 0;
    return 1;
  }
  if (d->pre_off < d->pre_len) {
    size_t left = d->pre_len - d->pre_off;
    if (d->kind == K_SEAL) {
      if (d->gated) return 0;
      size_t n = left < MAX_PLAIN ? left : MAX_PLAIN;
      if (!alloc_bufs(d)) return fail(r, c, E_CLOSED, "out of memory", 0);
      memcpy(d->buf + HDR, d->pre + d->pre_off, n);
      if (!seal_frame(d, F_DATA, n)) return fail(r, c, E_CLOSED, "sealing a frame failed", 0);
      d->pre_off += n;
    } else {
      ssize_t n = write_some(r, c, i, d->pre + d->pre_off, left);
      if (n < 0) return n == BLOCKED ? 0 : -1;
      d->pre_off += (size_t)n;
    }
    if (d->pre_off == d->pre_len) {
      free(d->pre);
      d->pre = NULL;
      d->pre_off = d->pre_len = 0;
    }
    return 1;
  }
  if (d->eof) {
    if (d->fin) return 0;
    d->fin = 1;
    if (d->kind == K_SEAL) {
      if (!alloc_bufs(d) || !seal_frame(d, F_END, 0)) return fail(r, c, E_CLOSED, "sealing the end frame failed", 0);
    } else if (shutdown(d->dst, SHUT_WR) < 0 && errno != ENOTCONN) {
      snprintf(what, sizeof what, "half-close toward %s", to);
      return fail(r, c, E_CLOSED, what, errno);
    }
    return 1;
  }
  if (d->gated) return 0;
  // Read: into the direction's own buffer once it has one, else into the scratch buffer (an idle channel
  // allocates nothing; the first bytes are copied over).
  int first = d->kind == K_OPEN ? !d->in : !d->buf;
  unsigned char *into;
  size_t room;
  if (d->kind == K_OPEN) {
    into = d->in ? d->in + d->in_len : r->scratch;
    room = OPEN_CAP - d->in_len;
  } else {
    size_t at = d->kind == K_SEAL ? HDR : 0;
    into = (d->buf ? d->buf : r->scratch) + at;
    room = MAX_PLAIN;
  }
  ssize_t n = recv(d->src, into, room, 0);
  if (n < 0) {
    if (WOULD_BLOCK(errno)) return 0;
    if (errno == EINTR) return 1;
    snprintf(what, sizeof what, "read from %s", from);
    return fail(r, c, E_CLOSED, what, errno);
  }
  if (n == 0) {
    if (d->kind == K_OPEN) return fail(r, c, E_PROTOCOL, "the peer gateway closed the channel without an end frame (truncated)", 0);
    d->eof = 1;
    return 1;
  }
  if (first) {
    if (!alloc_bufs(d)) return fail(r, c, E_CLOSED, "out of memory", 0);
    if (d->kind == K_OPEN) memcpy(d->in, into, (size_t)n);
    else memcpy(d->buf + (into - r->scratch), into, (size_t)n);
  }
  if (d->kind == K_OPEN) {
    d->in_len += (size_t)n;
    return open_frames(r, c, i);
  }
  d->bytes += (size_t)n;
  if (d->kind == K_SEAL) return seal_frame(d, F_DATA, (size_t)n) ? 1 : fail(r, c, E_CLOSED, "sealing a frame failed", 0);
  d->off = 0;
  d->len = (size_t)n;
  return 1;
}

static int dir_done(const dir_t *d) { return d->eof && d->fin && d->off == d->len && d->pre_off == d->pre_len; }

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
    if (dir_done(&c->d[0]) && dir_done(&c->d[1])) {
      finish(r, c, 0, NULL);
      return;
    }
    if (!progress) return;
  }
  enqueue_ready(r, c); // still moving: the other channels have their turn first
}

static void on_error_event(relay_t *r, chan_t *c, int side) {
  int e = 0;
  socklen_t len = sizeof e;
  getsockopt(c->fd[side], SOL_SOCKET, SO_ERROR, &e, &len);
  if (e) fail(r, c, E_CLOSED, side == SIDE_PLAIN ? "local side" : "peer gateway", e);
}

static void add_chan(relay_t *r, chan_t *c) {
  c->next = r->open;
  if (r->open) r->open->prev = c;
  r->open = c;
  for (int s = 0; s < 2; s++) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &c->ep[s]};
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd[s], &ev) < 0) {
      fail(r, c, E_CLOSED, "epoll_ctl", errno);
      return;
    }
  }
  pump(r, c);
}

static void free_graveyard(relay_t *r) {
  while (r->graveyard) {
    chan_t *g = r->graveyard;
    r->graveyard = g->dead_next;
    chan_free(g);
  }
}

// Runs the commands queued by JavaScript; 1 when the relay is to stop.
static int run_commands(relay_t *r) {
  uint64_t v;
  if (read(r->evfd, &v, sizeof v) < 0) { /* nothing to read: the queue below is the truth */ }
  pthread_mutex_lock(&r->mu);
  cmd_t *q = r->cmds;
  int stopping = r->stopping;
  r->cmds = r->cmds_tail = NULL;
  pthread_mutex_unlock(&r->mu);
  while (q) {
    cmd_t *next = q->next;
    if (q->type == CMD_ADD) {
      add_chan(r, q->c);
    } else {
      for (chan_t *c = r->open; c; c = c->next) {
        if (c->id == q->id) {
          fail(r, c, E_CLOSED, "channel closed by the gateway", 0);
          break;
        }
      }
    }
    free(q);
    q = next;
  }
  return stopping;
}

void *relay_main(void *arg) {
  relay_t *r = arg;
  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(r->epfd, evs, 64, r->ready ? 0 : -1);
    if (n < 0 && errno != EINTR) break;
    for (int k = 0; k < n; k++) {
      if (evs[k].data.ptr == NULL) {
        if (run_commands(r)) goto out;
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
    free_graveyard(r);
  }
out:
  __atomic_store_n(&r->exited, 1, __ATOMIC_SEQ_CST);
  while (r->open) fail(r, r->open, E_CLOSED, "relay stopped", 0);
  free_graveyard(r);
  return NULL;
}
