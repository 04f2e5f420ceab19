package webhook

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// RejectedError says why a webhook URL, or an address it resolved to, may not
// be called. Reason is written for the subscription's creator and never
// contains anything but the URL's host and the rule it broke.
type RejectedError struct {
	Reason string
}

func (e *RejectedError) Error() string { return "webhook URL rejected: " + e.Reason }

func rejectf(format string, args ...any) error {
	return &RejectedError{Reason: fmt.Sprintf(format, args...)}
}

// maxURLLength bounds what a subscription may store and what we parse.
const maxURLLength = 2048

// localNameSuffixes are DNS names that never mean a public host: RFC 6761's
// localhost, mDNS's local (RFC 6762), ICANN's private-use internal, RFC 8375's
// home.arpa, and the suffixes routers and corporate resolvers answer for
// (localdomain, lan, home, corp, intranet; none is a delegated TLD). A name
// equal to one of them or ending in "."+one is refused at create time.
// Anything else is a public-looking name: it is allowed here and its
// addresses are checked when the sender dials them.
var localNameSuffixes = []string{
	"localhost", "local", "localdomain", "internal", "home.arpa",
	"lan", "home", "corp", "intranet",
}

// CheckURL is the create-time check of a webhook URL (PROTOCOL.md §12.8). It
// accepts only absolute https URLs whose host is a public IP address written
// canonically or a DNS name that is not obviously local; with allowDev it also
// accepts http and https to `localhost` and to 127.0.0.0/24 written
// canonically (127.0.0.1 … 127.0.0.255), the development switch of `dev` and
// the tests. Everything else gets a *RejectedError:
//   - user info (`https://user@host`), an empty host or port, opaque URLs,
//     non-ASCII or otherwise invalid host names, and trailing dots;
//   - IPv4 written any way but dotted decimal (decimal `2130706433`, octal
//     `0177.0.0.1`, hex `0x7f.1`, short `127.1`), whatever address it means,
//     because other parsers read such spellings differently;
//   - IPv6 literals with a zone, IPv4-mapped (`::ffff:a.b.c.d`),
//     IPv4-compatible (`::a.b.c.d`) and NAT64 (`64:ff9b::/96`) forms;
//   - private, loopback, link-local (with cloud metadata 169.254.169.254),
//     CGNAT, unique-local, multicast, unspecified, documentation, benchmark
//     and other special-purpose addresses (see blockedPrefixes);
//   - single-label names (they resolve through the server's search domains)
//     and names under localNameSuffixes.
//
// A DNS name's addresses can change after this check (DNS rebinding), which
// is why the Sender checks every address it dials as well.
func CheckURL(raw string, allowDev bool) error {
	if len(raw) > maxURLLength {
		return rejectf("the URL is longer than %d bytes", maxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return rejectf("not a valid URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return rejectf("the scheme must be https")
	}
	if u.Opaque != "" || u.Host == "" {
		return rejectf("the URL must be absolute (https://host/path)")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return rejectf("the URL must not contain user info")
	}
	if err := checkPort(u); err != nil {
		return err
	}
	host := strings.ToLower(u.Hostname())
	devHost, err := checkHost(host, strings.HasPrefix(u.Host, "["))
	if err != nil {
		return err
	}
	if devHost {
		if !allowDev {
			return rejectf("%s is a loopback host; only the development switch allows it", host)
		}
		return nil
	}
	if u.Scheme != "https" {
		return rejectf("the scheme must be https (http is allowed only for localhost and 127.0.0.x with the development switch)")
	}
	return nil
}

func checkPort(u *url.URL) error {
	if strings.HasSuffix(u.Host, ":") {
		return rejectf("empty port")
	}
	p := u.Port()
	if p == "" {
		return nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || p[0] == '0' {
		return rejectf("invalid port %q", p)
	}
	return nil
}

// checkHost classifies a lower-cased host name. devHost reports the loopback
// hosts the development switch allows (localhost, canonical 127.0.0.x);
// every other host returned without error is public-looking.
func checkHost(host string, bracketed bool) (devHost bool, err error) {
	if host == "" {
		return false, rejectf("empty host")
	}
	if bracketed || strings.Contains(host, ":") {
		return false, checkIPv6Literal(host)
	}
	if strings.HasSuffix(host, ".") {
		return false, rejectf("host %q ends with a dot", host)
	}
	labels := strings.Split(host, ".")
	if looksNumeric(labels[len(labels)-1]) {
		return checkIPv4Literal(host, labels)
	}
	if err := checkHostName(host, labels); err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	if len(labels) == 1 {
		return false, rejectf("host %q is a single-label name, resolved through the server's search domains", host)
	}
	for _, s := range localNameSuffixes {
		if host == s || strings.HasSuffix(host, "."+s) {
			return false, rejectf("host %q is a local name (.%s)", host, s)
		}
	}
	return false, nil
}

func checkHostName(host string, labels []string) error {
	if len(host) > 253 {
		return rejectf("host name too long")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return rejectf("host %q is not a valid DNS name", host)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return rejectf("host %q is not a valid DNS name (use punycode for international names)", host)
			}
		}
	}
	return nil
}

// looksNumeric tells whether a label makes the host an IPv4 address in the
// WHATWG URL parser's (and inet_aton's) eyes: all decimal digits, or 0x
// followed by hex digits.
func looksNumeric(label string) bool {
	if label == "" {
		return false
	}
	if strings.HasPrefix(label, "0x") {
		for _, c := range label[2:] {
			if !isHex(c) {
				return false
			}
		}
		return true
	}
	for _, c := range label {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isHex(c rune) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func checkIPv4Literal(host string, labels []string) (bool, error) {
	addr, ok := parseInetAton(labels)
	if !ok {
		return false, rejectf("host %q is not a valid IPv4 address", host)
	}
	canonical := addr.String() == host
	if !canonical {
		reason := ""
		if why := blockedReason(addr); why != "" {
			reason = ", " + why
		}
		return false, rejectf("host %q is a non-canonical spelling of IPv4 %s%s; write addresses as dotted decimal", host, addr, reason)
	}
	if devLoopback.Contains(addr) {
		return true, nil
	}
	if why := blockedReason(addr); why != "" {
		return false, rejectf("%s is %s", addr, why)
	}
	return false, nil
}

// devLoopback is what "127.0.0.x" means for the development switch.
var devLoopback = netip.MustParsePrefix("127.0.0.0/24")

// parseInetAton reads 1 to 4 parts, each decimal, octal (leading 0) or hex
// (0x), the last part filling the remaining bytes, as inet_aton(3) and the
// WHATWG URL parser do, so the address we classify is the one any of them
// would connect to.
func parseInetAton(labels []string) (netip.Addr, bool) {
	if len(labels) > 4 {
		return netip.Addr{}, false
	}
	var parts []uint64
	for _, l := range labels {
		base, digits := 10, l
		switch {
		case strings.HasPrefix(l, "0x"):
			base, digits = 16, l[2:]
			if digits == "" {
				digits = "0"
			}
		case len(l) > 1 && l[0] == '0':
			base, digits = 8, l[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		parts = append(parts, v)
	}
	last := parts[len(parts)-1]
	lastBytes := 5 - len(parts)
	if last >= 1<<(8*lastBytes) {
		return netip.Addr{}, false
	}
	var v uint32
	for i, p := range parts[:len(parts)-1] {
		if p > 255 {
			return netip.Addr{}, false
		}
		v |= uint32(p) << (8 * (3 - i))
	}
	v |= uint32(last)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func checkIPv6Literal(host string) error {
	if strings.Contains(host, "%") {
		return rejectf("IPv6 zones are not allowed")
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Is6() {
		return rejectf("host %q is not a valid IPv6 address", host)
	}
	switch {
	case addr.Is4In6():
		return rejectf("%s is an IPv4-mapped IPv6 address (of %s); write public IPv4 addresses as dotted decimal", addr, addr.Unmap())
	case nat64.Contains(addr):
		return rejectf("%s is a NAT64 address; use the IPv4 address or the host name", addr)
	}
	if why := blockedReason(addr); why != "" {
		return rejectf("%s is %s", addr, why)
	}
	return nil
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// checkDialedAddr is the connect-time check: the address the sender is about
// to connect to, after DNS. allowDev lets loopback through (localhost may
// resolve to ::1). A NAT64 address (DNS64 on IPv6-only networks) is judged
// by the IPv4 address it embeds.
func checkDialedAddr(addr netip.Addr, allowDev bool) error {
	addr = addr.WithZone("").Unmap()
	if nat64.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if allowDev && addr.IsLoopback() {
		return nil
	}
	if why := blockedReason(addr); why != "" {
		return rejectf("%s is %s", addr, why)
	}
	return nil
}

type blockedPrefix struct {
	prefix netip.Prefix
	why    string
}

func bp(p, why string) blockedPrefix { return blockedPrefix{netip.MustParsePrefix(p), why} }

// blockedPrefixes are the IANA special-purpose ranges (RFC 6890 and its
// updates) that are not public unicast. The IPv6 list is checked after the
// rule that only global unicast (2000::/3) is allowed at all.
var blockedPrefixes = []blockedPrefix{
	bp("0.0.0.0/8", `"this network" (0.0.0.0/8, includes unspecified)`),
	bp("10.0.0.0/8", "private (RFC 1918)"),
	bp("100.64.0.0/10", "shared address space (CGNAT, 100.64.0.0/10)"),
	bp("127.0.0.0/8", "loopback"),
	bp("169.254.0.0/16", "link-local (includes cloud metadata 169.254.169.254)"),
	bp("172.16.0.0/12", "private (RFC 1918)"),
	bp("192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"),
	bp("192.0.2.0/24", "documentation (TEST-NET-1)"),
	bp("192.88.99.0/24", "6to4 relay anycast"),
	bp("192.168.0.0/16", "private (RFC 1918)"),
	bp("198.18.0.0/15", "benchmarking (198.18.0.0/15)"),
	bp("198.51.100.0/24", "documentation (TEST-NET-2)"),
	bp("203.0.113.0/24", "documentation (TEST-NET-3)"),
	bp("224.0.0.0/4", "multicast"),
	bp("240.0.0.0/4", "reserved (240.0.0.0/4, includes broadcast)"),

	bp("::/128", "unspecified"),
	bp("::1/128", "loopback"),
	bp("::ffff:0:0/96", "IPv4-mapped"),
	bp("::/96", "IPv4-compatible (deprecated)"),
	bp("64:ff9b::/96", "NAT64"),
	bp("64:ff9b:1::/48", "local-use NAT64"),
	bp("100::/64", "discard-only"),
	bp("fc00::/7", "unique-local (fc00::/7)"),
	bp("fe80::/10", "link-local"),
	bp("fec0::/10", "site-local (deprecated)"),
	bp("ff00::/8", "multicast"),
	bp("2001::/23", "IETF protocol assignments (2001::/23, includes Teredo)"),
	bp("2001:db8::/32", "documentation"),
	bp("2002::/16", "6to4"),
	bp("3fff::/20", "documentation"),
}

var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// blockedReason names the special-purpose range addr is in, or "" if it is
// public unicast.
func blockedReason(addr netip.Addr) string {
	for _, b := range blockedPrefixes {
		if b.prefix.Contains(addr) {
			return b.why
		}
	}
	if addr.Is6() && !globalUnicast6.Contains(addr) {
		return "not IPv6 global unicast (2000::/3)"
	}
	return ""
}
