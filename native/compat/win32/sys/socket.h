// <sys/socket.h> for Windows, as far as Engine::AdoptSse needs it. Sockets
// are never handed to the engine there (sse_takeover is Linux only), so
// getsockopt says "not a socket" and the adoption is refused.
#pragma once
#include <errno.h>
typedef int socklen_t;
#define SOL_SOCKET 0xffff
#define SO_TYPE 0x1008
#define SOCK_STREAM 1
inline int getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  (void)fd, (void)level, (void)name, (void)value, (void)len;
  errno = ENOTSOCK;
  return -1;
}
