/* Test harness only, never shipped: Debian 12's Wine 8.0 has no
 * bcryptprimitives.dll, whose ProcessPrng the Go runtime (1.22+) loads at
 * start on Windows. tests/release/windows.sh builds this stand-in with zig
 * and puts it beside the .exe under test; it fills the buffer from
 * RtlGenRandom (advapi32's SystemFunction036), which Wine has. Windows 10+
 * ships the real DLL. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
    if (!SystemFunction036(data, chunk)) return FALSE;
    data += chunk;
    len -= chunk;
  }
  return TRUE;
}
