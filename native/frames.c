// Sealed frames between the gateways: AES-256-GCM with one key per direction (exported from the channel's TLS
// session, native-relay.ts), nonce = 4 zero bytes || the direction's 64-bit big-endian frame counter, and the
// 4-byte header as additional data. Each direction seals or opens with its own counter from 0, so a nonce is
// never used twice under a key, and a dropped, repeated or reordered frame fails authentication.
#include <string.h>

#include "relay.h"

static void nonce_of(uint64_t seq, unsigned char iv[12]) {
  memset(iv, 0, 4);
  for (int i = 0; i < 8; i++) iv[4 + i] = (unsigned char)(seq >> (56 - 8 * i));
}

int init_cipher(dir_t *d, const void *key) {
  d->ctx = EVP_CIPHER_CTX_new();
  if (!d->ctx) return 0;
  if (d->kind == K_SEAL) return EVP_EncryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, key, NULL) == 1;
  return EVP_DecryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, key, NULL) == 1;
}

// Seals the `n` plaintext bytes at d->buf + HDR into one frame of `type`, in place, as d's next bytes to write.
int seal_frame(dir_t *d, int type, size_t n) {
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
int open_frame(dir_t *d, unsigned char *f, size_t n, unsigned char *out) {
  unsigned char iv[12];
  int outl = 0;
  nonce_of(d->seq++, iv);
  if (EVP_DecryptInit_ex(d->ctx, NULL, NULL, NULL, iv) != 1) return 0;
  if (EVP_DecryptUpdate(d->ctx, NULL, &outl, f, HDR) != 1) return 0;
  if (n > 0 && EVP_DecryptUpdate(d->ctx, out, &outl, f + HDR, (int)n) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_GCM_SET_TAG, TAG, f + HDR + n) != 1) return 0;
  return EVP_DecryptFinal_ex(d->ctx, out + n, &outl) == 1;
}
