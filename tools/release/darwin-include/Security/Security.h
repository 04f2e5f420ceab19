/* Stand-in for the macOS SDK's <Security/Security.h>: what
 * certificate-transparency-go's x509/root_cgo_darwin.go uses and nothing
 * more, with the SDK's types, values and signatures (see
 * ../CoreFoundation/CoreFoundation.h for why and how it links). */
#ifndef DS_RELEASE_SECURITY_H
#define DS_RELEASE_SECURITY_H

#include <CoreFoundation/CoreFoundation.h>

typedef struct __SecCertificate *SecCertificateRef;
typedef struct __SecPolicy *SecPolicyRef;

extern CFTypeID SecCertificateGetTypeID(void);
extern CFTypeID SecPolicyGetTypeID(void);

enum { errSecSuccess = 0 };

typedef uint32_t SecTrustSettingsDomain;
enum {
  kSecTrustSettingsDomainUser = 0,
  kSecTrustSettingsDomainAdmin = 1,
  kSecTrustSettingsDomainSystem = 2,
};

typedef uint32_t SecTrustSettingsResult;
enum {
  kSecTrustSettingsResultInvalid = 0,
  kSecTrustSettingsResultTrustRoot = 1,
  kSecTrustSettingsResultTrustAsRoot = 2,
  kSecTrustSettingsResultDeny = 3,
  kSecTrustSettingsResultUnspecified = 4,
};

typedef uint32_t SecExternalFormat;
enum { kSecFormatX509Cert = 9 };
typedef uint32_t SecItemImportExportFlags;
enum { kSecItemPemArmour = 1 };
/* Only ever passed as NULL by the file this serves. */
typedef struct SecItemImportExportKeyParameters SecItemImportExportKeyParameters;

extern const CFStringRef kSecPolicyOid;
extern const CFStringRef kSecPolicyAppleSSL;

extern CFDictionaryRef SecPolicyCopyProperties(SecPolicyRef policy);
extern OSStatus SecTrustSettingsCopyCertificates(SecTrustSettingsDomain domain, CFArrayRef *certs);
extern OSStatus SecTrustSettingsCopyTrustSettings(SecCertificateRef cert, SecTrustSettingsDomain domain,
                                                  CFArrayRef *settings);
extern CFDataRef SecCertificateCopyNormalizedSubjectContent(SecCertificateRef cert, CFErrorRef *error);
extern CFDataRef SecCertificateCopyNormalizedIssuerContent(SecCertificateRef cert, CFErrorRef *error);
extern CFStringRef SecCertificateCopyShortDescription(CFAllocatorRef alloc, SecCertificateRef cert,
                                                      CFErrorRef *error);
extern OSStatus SecItemExport(CFTypeRef item, SecExternalFormat format, SecItemImportExportFlags flags,
                              const SecItemImportExportKeyParameters *params, CFDataRef *exported);

#endif
