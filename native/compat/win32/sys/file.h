// <sys/file.h> for Windows: flock(2)'s operations. flock itself is in
// native/win32_compat.h (force-included).
#pragma once
#define LOCK_SH 1
#define LOCK_EX 2
#define LOCK_NB 4
#define LOCK_UN 8
