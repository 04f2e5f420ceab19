/* Stand-in for the macOS SDK's <CoreFoundation/CoreFoundation.h>, for cross
 * builds with zig, which ships no Apple frameworks. It declares only what
 * the one cgo file that includes it in our dependency tree uses
 * (certificate-transparency-go's x509/root_cgo_darwin.go, built on amd64
 * only): opaque object types, the integer types and constants with the
 * SDK's sizes and values, and the functions with the SDK's signatures, so
 * calls compile to the same ABI the real framework implements. The link
 * goes against tools/release/darwin-stubs.sh's CoreFoundation stub, which
 * lists the same symbols; at run time macOS's real framework provides them.
 * Add a declaration here and its symbol there together. */
#ifndef DS_RELEASE_COREFOUNDATION_H
#define DS_RELEASE_COREFOUNDATION_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef unsigned char Boolean;
typedef uint8_t UInt8;
typedef int32_t SInt32;
typedef uint32_t UInt32;
typedef SInt32 OSStatus;
typedef long CFIndex;
typedef UInt32 CFStringEncoding;
typedef CFIndex CFNumberType;
typedef unsigned long CFTypeID;

enum { noErr = 0 };
enum { kCFStringEncodingUTF8 = 0x08000100 };
enum { kCFNumberSInt32Type = 3 };

typedef const void *CFTypeRef;
typedef const struct __CFAllocator *CFAllocatorRef;
typedef const struct __CFString *CFStringRef;
typedef const struct __CFArray *CFArrayRef;
typedef const struct __CFDictionary *CFDictionaryRef;
typedef const struct __CFData *CFDataRef;
typedef struct __CFData *CFMutableDataRef;
typedef const struct __CFNumber *CFNumberRef;
typedef struct __CFError *CFErrorRef;

/* cgo gives a CF...Ref type a uintptr Go type (CoreFoundation stores
 * tagged non-pointers in them, which the garbage collector must not
 * follow) only when the matching ...GetTypeID function is declared, as the
 * SDK does for every such type. */
extern CFTypeID CFAllocatorGetTypeID(void);
extern CFTypeID CFStringGetTypeID(void);
extern CFTypeID CFArrayGetTypeID(void);
extern CFTypeID CFDictionaryGetTypeID(void);
extern CFTypeID CFDataGetTypeID(void);
extern CFTypeID CFNumberGetTypeID(void);
extern CFTypeID CFErrorGetTypeID(void);

extern const CFAllocatorRef kCFAllocatorDefault;

extern void CFRelease(CFTypeRef cf);
extern Boolean CFEqual(CFTypeRef a, CFTypeRef b);

extern CFIndex CFArrayGetCount(CFArrayRef array);
extern const void *CFArrayGetValueAtIndex(CFArrayRef array, CFIndex index);

extern Boolean CFDictionaryGetValueIfPresent(CFDictionaryRef dict, const void *key, const void **value);
extern Boolean CFDictionaryContainsKey(CFDictionaryRef dict, const void *key);

extern Boolean CFNumberGetValue(CFNumberRef number, CFNumberType type, void *value);

extern CFStringRef CFStringCreateWithCString(CFAllocatorRef alloc, const char *cstr, CFStringEncoding encoding);
extern CFIndex CFStringGetLength(CFStringRef s);
extern CFIndex CFStringGetMaximumSizeForEncoding(CFIndex length, CFStringEncoding encoding);
extern Boolean CFStringGetCString(CFStringRef s, char *buffer, CFIndex size, CFStringEncoding encoding);

extern CFMutableDataRef CFDataCreateMutable(CFAllocatorRef alloc, CFIndex capacity);
extern void CFDataAppendBytes(CFMutableDataRef data, const UInt8 *bytes, CFIndex length);
extern const UInt8 *CFDataGetBytePtr(CFDataRef data);
extern CFIndex CFDataGetLength(CFDataRef data);

#endif
